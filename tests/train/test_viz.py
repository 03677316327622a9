"""Pure picture functions: layout, traversal codes, figure rendering."""
import numpy as np
import pytest

from gdrae import viz


def test_tile_layout_and_colour():
    imgs = np.zeros((5, 1, 4, 4), np.float32)
    imgs[2] = 1.0
    out = viz.tile(imgs, ncols=3)
    assert out.shape == (2 * (4 + viz.PAD) + viz.PAD, 3 * (4 + viz.PAD) + viz.PAD, 3) and out.dtype == np.uint8
    y, x = viz.PAD, viz.PAD + 2 * (4 + viz.PAD)  # third tile of the first row
    assert (out[y : y + 4, x : x + 4] == 255).all()
    assert (out[viz.PAD : viz.PAD + 4, viz.PAD : viz.PAD + 4] == 0).all()


def test_reconstruction_grid_interleaves_pairs():
    real = np.zeros((64, 3, 2, 2), np.float32)
    recon = np.ones((64, 3, 2, 2), np.float32)
    out = viz.reconstruction_grid(real, recon)
    step = 2 + viz.PAD
    assert out.shape[:2] == (8 * step + viz.PAD, 16 * step + viz.PAD)
    assert out[viz.PAD, viz.PAD].tolist() == [0, 0, 0]  # real first
    assert out[viz.PAD, viz.PAD + step].tolist() == [255, 255, 255]  # then its reconstruction
    with pytest.raises(ValueError, match="same shape"):
        viz.reconstruction_grid(real, recon[:3])


def test_traversal_codes_sweep_one_latent_each():
    z = np.array([0.3, -0.2, 0.1], np.float32)
    codes = viz.traversal_codes(z, radius=1.0, steps=10).reshape(3, 10, 3)
    for j in range(3):
        assert np.allclose(codes[j, :, j], np.linspace(-1, 1, 10))
        others = [k for k in range(3) if k != j]
        assert np.allclose(codes[j][:, others], z[others])


def test_traversal_grid_rows():
    sweeps = np.random.rand(4, 10, 1, 3, 3).astype(np.float32)
    real, recon = np.zeros((1, 3, 3)), np.ones((1, 3, 3))
    step = 3 + viz.PAD
    assert viz.traversal_grid(sweeps, real, recon).shape[:2] == (4 * step + viz.PAD, 12 * step + viz.PAD)
    assert viz.traversal_grid(sweeps).shape[:2] == (4 * step + viz.PAD, 10 * step + viz.PAD)


def test_figures_render_to_rgb_arrays():
    bars = viz.figure_to_array(viz.sv_bars(np.array([0.5, 1.0, 2.0])))
    grid = viz.sector_grid_codes(1.0, lines=5, points=7)
    assert grid.shape == (2 * 5 * 7, 2) and np.abs(grid).max() == pytest.approx(1.0)
    corr = viz.figure_to_array(viz.sector_correspondence(grid, grid * 2.0, lines=5))
    scat = viz.figure_to_array(viz.mu_scatter(np.random.rand(50, 2), np.random.rand(50), 1.0))
    for arr in (bars, corr, scat):
        assert arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8
        assert arr.min() < 128 < arr.max()  # something was drawn on the white canvas


def test_save_png_round_trip(tmp_path):
    from PIL import Image

    arr = viz.tile(np.random.rand(2, 3, 5, 5).astype(np.float32), 2)
    viz.save_png(arr, tmp_path / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), arr)


def test_save_png_with_a_palette_keeps_a_plot_s_colours(tmp_path):
    from PIL import Image

    arr = viz.figure_to_array(viz.sv_bars(np.array([0.5, 1.0, 2.0])))
    viz.save_png(arr, tmp_path / "full.png")
    viz.save_png(arr, tmp_path / "palette.png", colors=256)
    small = np.asarray(Image.open(tmp_path / "palette.png").convert("RGB"))
    assert small.shape == arr.shape and np.abs(small.astype(int) - arr).mean() < 2.0
    assert (tmp_path / "palette.png").stat().st_size < (tmp_path / "full.png").stat().st_size


def test_loss_curves_one_panel_per_term_one_line_per_run():
    runs = {
        "float32": {10: {"total": 5.0, "sn": 0.5, "prior": 0.0}, 20: {"total": 2.0, "sn": 0.25, "prior": 0.0}},
        "bfloat16": {10: {"total": 5.5, "sn": 0.4, "prior": 0.1}, 20: {"total": 2.5, "sn": 0.2, "prior": 0.0}},
    }
    fig = viz.loss_curves(runs)
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert list(axes) == ["total", "sn", "prior"]
    assert [line.get_label() for line in axes["total"].lines] == ["float32", "bfloat16"]
    assert axes["total"].lines[1].get_ydata().tolist() == [5.5, 2.5]
    assert [line.get_label() for line in axes["prior"].lines] == ["bfloat16"]  # zeros are left out of log scale
    assert axes["prior"].lines[0].get_xdata().tolist() == [10]
    assert viz.figure_to_array(fig).shape[2] == 3
    with pytest.raises(ValueError, match="no logged loss values"):
        viz.loss_curves({"float32": {}})


def test_loss_curves_draw_terms_that_go_negative_whole_on_a_symmetric_log_scale():
    runs = {"a": {10: {"cap": 0.05, "total": 3.0}, 20: {"cap": 0.0, "total": 1.0}, 30: {"cap": -0.2, "total": -0.5}}}
    axes = {ax.get_title(): ax for ax in viz.loss_curves(runs).axes}
    assert axes["cap"].get_yscale() == "symlog" and axes["total"].get_yscale() == "symlog"
    assert axes["cap"].lines[0].get_ydata().tolist() == [0.05, 0.0, -0.2]  # zero and negatives kept


def test_sector_comparison_one_row_per_run_four_panels_each():
    grid = viz.sector_grid_codes(1.0, lines=3, points=4)
    mu, colour = np.random.rand(30, 2), np.random.rand(30)
    run = {"grid_x": grid * 1.5, "mu": mu, "radius": colour, "angle": 1 - colour, "mi": np.array([[1.0, 0.1], [0.2, 2.0]])}
    fig = viz.sector_comparison({"gdrae": run, "ablation": run}, radius=1.0, lines=3,
                                factor_names=["radius", "angle"], nbins=20)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]  # colour bars have no title
    assert titles == ["gdrae: decoded latent grid", "encoded mu (colour: data radius)",
                      "encoded mu (colour: data angle)", "I(z_j; v_k), nats, 20 bins"] + \
                     ["ablation: decoded latent grid", "encoded mu (colour: data radius)",
                      "encoded mu (colour: data angle)", "I(z_j; v_k), nats, 20 bins"]
    assert len(fig.axes[0].lines) == 2 * 3  # every grid line drawn
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xydata(), grid[:4] * 1.5)
    assert viz.figure_to_array(fig).shape[2] == 3


def test_chart_strip_draws_both_families_in_their_colour_maps_and_the_codes():
    import matplotlib

    lines, points = 3, 4
    grid = viz.sector_grid_codes(1.0, lines=lines, points=points)  # z0 fixed lines, then z1 fixed lines
    outline = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 1.0]])
    panel = {"grid_x": grid * 2.0, "codes": np.random.RandomState(0).rand(50, 2)}
    fig = viz.chart_strip({"step 1": panel, "step 2": panel}, radius=1.0, lines=lines, outline=outline)
    chart, codes = fig.axes[0], fig.axes[1]  # per panel its chart (top row), then its codes (below)
    assert [ax.get_title() for ax in fig.axes[::2]] == ["step 1", "step 2"]
    drawn = chart.lines
    assert len(drawn) == 2 * lines + 1  # every curve and the dashed boundary
    reds, blues = matplotlib.colormaps["Reds"], matplotlib.colormaps["Blues"]
    # first the curves along which z0 varies (the z1-fixed half of the grid), in reds
    np.testing.assert_allclose(drawn[0].get_xydata(), grid[lines * points: lines * points + points] * 2.0)
    np.testing.assert_allclose(drawn[0].get_color(), reds(0.35))
    np.testing.assert_allclose(drawn[lines].get_xydata(), grid[:points] * 2.0)
    np.testing.assert_allclose(drawn[lines].get_color(), blues(0.35))
    assert drawn[-1].get_linestyle() == "--"
    np.testing.assert_allclose(codes.collections[0].get_offsets(), panel["codes"])
    assert viz.figure_to_array(fig).shape[2] == 3
