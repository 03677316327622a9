"""Pictures of a trained model: image grids, traversals, singular-value bars, Sector2D plots, loss curves.

Every function here but :func:`save_png` is pure: it takes numpy arrays
(already computed by the model) and returns either an RGB uint8 array
(H, W, 3) ready for a PNG file or TensorBoard, or a matplotlib Figure (turn
it into an array with :func:`figure_to_array`). Nothing here touches a model
or a device, and only :func:`save_png` writes a file, so the trainer and the
evaluator draw the same pictures from the same numbers.

Reference: the qualitative outputs of Pan, Niu, Zhang (AAAI 2023), listed in
docs/model.md section 8.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # the object API draws without pyplot: no backend to choose, no window
from PIL import Image

from gdrae.atomic import write_atomic

PAD = 2  # pixels of white between tiles


def to_rgb_uint8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] with C in {1, 3} -> (N, H, W, 3) uint8."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1|3, H, W), got {images.shape}")
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def tile(images: np.ndarray, ncols: int) -> np.ndarray:
    """Lay out (N, C, H, W) images in [0, 1] row by row, ncols per row -> (H', W', 3) uint8."""
    tiles = to_rgb_uint8(images)
    n, h, w, _ = tiles.shape
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + PAD) + PAD, ncols * (w + PAD) + PAD, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = PAD + r * (h + PAD), PAD + c * (w + PAD)
        out[y : y + h, x : x + w] = tiles[i]
    return out


def reconstruction_grid(real: np.ndarray, recon: np.ndarray, pairs_per_row: int = 8) -> np.ndarray:
    """Real images next to their reconstructions: each row holds ``pairs_per_row`` (real, recon) pairs.

    With 64 images this is the 8x8 grid of pairs of the original code.
    """
    if real.shape != recon.shape:
        raise ValueError(f"expected real and recon of the same shape, got {real.shape} and {recon.shape}")
    interleaved = np.stack([real, recon], axis=1).reshape(-1, *real.shape[1:])
    return tile(interleaved, 2 * pairs_per_row)


def traversal_values(radius: float, steps: int = 10) -> np.ndarray:
    """The latent values a traversal visits: ``steps`` points evenly from -radius to radius."""
    return np.linspace(-radius, radius, steps, dtype=np.float32)


def traversal_codes(z: np.ndarray, radius: float, steps: int = 10) -> np.ndarray:
    """(nz,) code -> (nz * steps, nz) codes: row block j sweeps latent j over the prior box, the rest fixed."""
    z = np.asarray(z, dtype=np.float32)
    nz = z.shape[0]
    codes = np.repeat(np.repeat(z[None, None, :], nz, axis=0), steps, axis=1)  # (nz, steps, nz)
    values = traversal_values(radius, steps)
    for j in range(nz):
        codes[j, :, j] = values
    return codes.reshape(nz * steps, nz)


def traversal_grid(sweeps: np.ndarray, real: np.ndarray | None = None, recon: np.ndarray | None = None) -> np.ndarray:
    """One row per latent: [real, reconstruction,] then that latent's sweep.

    sweeps: (nz, steps, C, H, W) decoded traversal images; real, recon: (C, H, W)
    shown at the start of every row when given (traversal from a real image).
    """
    nz, steps = sweeps.shape[:2]
    lead = [x for x in (real, recon) if x is not None]
    rows = []
    for j in range(nz):
        rows.extend(lead)
        rows.extend(sweeps[j])
    return tile(np.stack(rows), len(lead) + steps)


def sv_bars(sv_mean: np.ndarray) -> Figure:
    """Bar chart of the mean predicted singular value of each latent dimension."""
    sv_mean = np.asarray(sv_mean, dtype=np.float64)
    fig = Figure(figsize=(max(3.0, 0.45 * len(sv_mean) + 1.5), 2.8), dpi=100)
    ax = fig.add_subplot()
    ax.bar(np.arange(len(sv_mean)), sv_mean, color="tab:blue")
    ax.set_xticks(np.arange(len(sv_mean)))
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("mean predicted sv")
    ax.set_title("singular values over random z")
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.18, top=0.88)  # fixed margins: tight_layout is slow
    return fig


def draw_grid_lines(ax, points: np.ndarray, lines: int) -> None:
    """The lines of a latent grid (:func:`sector_grid_codes`) or of its decoded image, on ``ax``.

    ``points`` (2 * lines * n, 2): ``lines`` lines of constant z0 (red), then
    as many of constant z1 (blue), each sampled at n points.
    """
    for k, line in enumerate(np.split(np.asarray(points), 2 * lines)):
        shade = 0.3 + 0.7 * (k % lines) / max(lines - 1, 1)
        ax.plot(line[:, 0], line[:, 1], color=("tab:red", "tab:blue")[k // lines], alpha=shade, lw=1)
    ax.set_aspect("equal")


def sector_correspondence(grid_z: np.ndarray, grid_x: np.ndarray, lines: int) -> Figure:
    """The latent grid (left) and its image on the data manifold (right), same colours.

    grid_z: (lines * n, 2) latent points, ``lines`` lines of constant z0 each
    sampled at n points along z1, followed by the same for constant z1;
    grid_x: (same, 2) their decoded points.
    """
    fig = Figure(figsize=(8.0, 4.0), dpi=100)
    ax_z, ax_x = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    draw_grid_lines(ax_z, grid_z, lines)
    draw_grid_lines(ax_x, grid_x, lines)
    ax_z.set_title("latent grid (red: z0 fixed, blue: z1 fixed)")
    ax_x.set_title("decoded grid on the data plane")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.1, top=0.9, wspace=0.25)
    return fig


def sector_grid_codes(radius: float, lines: int = 11, points: int = 50) -> np.ndarray:
    """The latent grid of :func:`sector_correspondence`: (2 * lines * points, 2) codes in [-r, r]^2."""
    fixed = np.linspace(-radius, radius, lines, dtype=np.float32)
    moving = np.linspace(-radius, radius, points, dtype=np.float32)
    first = [np.stack([np.full_like(moving, a), moving], axis=1) for a in fixed]  # z0 fixed
    second = [np.stack([moving, np.full_like(moving, a)], axis=1) for a in fixed]  # z1 fixed
    return np.concatenate(first + second)


def draw_mu(ax, mu: np.ndarray, colour: np.ndarray, radius: float, label: str = "data radius") -> None:
    """Encoded codes mu (N, 2) coloured by a data quantity ``label``, with the prior box, on ``ax``."""
    sc = ax.scatter(mu[:, 0], mu[:, 1], c=colour, s=2, cmap="viridis")
    ax.plot([-radius, radius, radius, -radius, -radius], [-radius, -radius, radius, radius, -radius], "k--", lw=0.8)
    ax.set_aspect("equal")
    ax.set_title(f"encoded mu (colour: {label})")
    ax.figure.colorbar(sc, ax=ax, shrink=0.8)


def mu_scatter(mu: np.ndarray, colour: np.ndarray, radius: float, label: str = "data radius") -> Figure:
    """Scatter of encoded codes mu (N, 2) coloured by a data quantity (e.g. radius), with the prior box."""
    fig = Figure(figsize=(4.2, 4.0), dpi=100)
    draw_mu(fig.add_subplot(), mu, colour, radius, label)
    return fig


def draw_mi(ax, mi: np.ndarray, factor_names: Sequence[str], nbins: int) -> None:
    """A mutual-information matrix (codes x factors, nats) as a heat map with the values written in."""
    mi = np.asarray(mi, dtype=np.float64)
    d, k = mi.shape
    im = ax.imshow(mi, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(np.arange(k), list(factor_names), rotation=30, ha="right")
    ax.set_yticks(np.arange(d), [f"z{j}" for j in range(d)])
    top = mi.max() if mi.size else 0.0
    for j in range(d):
        for i in range(k):
            ax.text(i, j, f"{mi[j, i]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if top and mi[j, i] > 0.6 * top else "white")
    ax.set_title(f"I(z_j; v_k), nats, {nbins} bins")
    ax.figure.colorbar(im, ax=ax, shrink=0.8)


def mi_heatmap(mi: np.ndarray, factor_names: Sequence[str], nbins: int) -> Figure:
    """Heat map of a mutual-information matrix (codes x factors, nats) with the values written in."""
    d, k = np.shape(mi)
    fig = Figure(figsize=(1.2 + 0.9 * k, 1.0 + 0.38 * d), dpi=100)
    draw_mi(fig.add_subplot(), mi, factor_names, nbins)
    fig.tight_layout()
    return fig


def sector_comparison(runs: dict[str, dict[str, np.ndarray]], radius: float, lines: int,
                      factor_names: Sequence[str], nbins: int, outline: np.ndarray | None = None) -> Figure:
    """Sector2D runs side by side, one row each: decoded latent grid, mu coloured by the data's
    radius and by its angle, and the codes x factors mutual information.

    ``runs`` maps a label to arrays ``grid_x`` (the decoded :func:`sector_grid_codes`),
    ``mu`` (N, 2), ``radius`` (N,), ``angle`` (N,) and ``mi`` (2, K). ``outline``
    (M, 2), the data's boundary, is drawn dashed under each decoded grid.
    """
    fig = Figure(figsize=(17.0, 3.9 * len(runs)), dpi=72)
    for row, (label, r) in enumerate(runs.items()):
        axes = [fig.add_subplot(len(runs), 4, 4 * row + i + 1) for i in range(4)]
        if outline is not None:
            axes[0].plot(outline[:, 0], outline[:, 1], "k--", lw=0.8)
        draw_grid_lines(axes[0], r["grid_x"], lines)
        axes[0].set_title(f"{label}: decoded latent grid")
        draw_mu(axes[1], r["mu"], r["radius"], radius, "data radius")
        draw_mu(axes[2], r["mu"], r["angle"], radius, "data angle")
        draw_mi(axes[3], r["mi"], factor_names, nbins)
    fig.tight_layout()
    return fig


def draw_chart(ax, decoded: np.ndarray, lines: int, outline: np.ndarray | None = None) -> None:
    """The coordinate chart on the data plane, as the paper draws it, on ``ax``.

    ``decoded``: the decoded :func:`sector_grid_codes` (2 * lines * n, 2). The
    curves along which z0 varies (z1 fixed) in one colour map (reds, by the
    value of z1) and those along which z1 varies (z0 fixed) in another
    (blues, by the value of z0); ``outline``, the data's boundary, dashed.
    """
    z0_fixed, z1_fixed = np.split(np.asarray(decoded), 2)
    maps = {"z0 varies": (z1_fixed, "Reds"), "z1 varies": (z0_fixed, "Blues")}
    for label, (curves, cmap) in maps.items():
        colours = matplotlib.colormaps[cmap](np.linspace(0.35, 1.0, lines))
        for k, line in enumerate(np.split(curves, lines)):
            ax.plot(line[:, 0], line[:, 1], color=colours[k], lw=1.1, label=label if k == lines - 1 else None)
    if outline is not None:
        ax.plot(outline[:, 0], outline[:, 1], "k--", lw=0.9)
    ax.set_aspect("equal")


def draw_codes(ax, codes: np.ndarray, radius: float) -> None:
    """Codes of data points (N, 2) as a scatter in the latent square [-r, r]^2 (dashed), on ``ax``."""
    ax.scatter(codes[:, 0], codes[:, 1], s=0.5, color="tab:purple", alpha=0.5, rasterized=True)
    ax.plot([-radius, radius, radius, -radius, -radius], [-radius, -radius, radius, radius, -radius], "k--", lw=0.8)
    pad = 0.15 * radius
    ax.set_xlim(-radius - pad, radius + pad)
    ax.set_ylim(-radius - pad, radius + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")


def chart_strip(panels: dict[str, dict[str, np.ndarray]], radius: float, lines: int,
                outline: np.ndarray | None = None) -> Figure:
    """One column per panel: the coordinate chart (:func:`draw_chart`) above the codes of fresh data
    (:func:`draw_codes`). ``panels`` maps a title to arrays ``grid_x`` (decoded latent grid) and
    ``codes`` (N, 2)."""
    fig = Figure(figsize=(3.3 * len(panels), 6.6), dpi=80)
    for col, (title, panel) in enumerate(panels.items()):
        chart = fig.add_subplot(2, len(panels), col + 1)
        draw_chart(chart, panel["grid_x"], lines, outline)
        chart.set_title(title)
        if col == 0:
            chart.legend(loc="upper right", fontsize=7)
        draw_codes(fig.add_subplot(2, len(panels), len(panels) + col + 1), panel["codes"], radius)
    fig.tight_layout()
    return fig


def loss_curves(runs: dict[str, dict[int, dict[str, float]]]) -> Figure:
    """Every loss term of several runs against the step, one panel per term.

    ``runs`` maps a label to {step: {term: value}} (``gdrae.runlog.read_loss_log``).
    A term that is never negative is drawn on a log scale, its zeros left
    out; a term that goes negative (the log capacity, a total that holds it)
    on a symmetric log scale, linear within 0.01 of zero, with every value.
    """
    terms = list(dict.fromkeys(t for curves in runs.values() for values in curves.values() for t in values))
    if not terms:
        raise ValueError("loss_curves: no logged loss values to plot")
    ncols = min(3, len(terms))
    nrows = -(-len(terms) // ncols)
    fig = Figure(figsize=(4.0 * ncols, 2.8 * nrows), dpi=100)
    for i, term in enumerate(terms):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        signed = any(v.get(term, 0.0) < 0 for curves in runs.values() for v in curves.values())
        for label, curves in runs.items():
            points = [(step, v[term]) for step, v in sorted(curves.items())
                      if term in v and (signed or v[term] > 0)]
            if points:
                ax.plot(*zip(*points), label=label, linewidth=1.0)
        if signed:
            ax.set_yscale("symlog", linthresh=1e-2)
        else:
            ax.set_yscale("log")
        ax.set_title(term)
        ax.set_xlabel("step")
        if i == 0:
            ax.legend()
    fig.tight_layout()
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib Figure to an (H, W, 3) uint8 array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(array: np.ndarray, path, colors: int | None = None) -> None:
    """Write an (H, W, 3) uint8 array as a PNG file, whole or not at all (:func:`gdrae.atomic.write_atomic`);
    with ``colors``, as a palette of that many colours (a plot's few flat colours survive, and the file is
    several times smaller)."""
    image = Image.fromarray(array)
    if colors is not None:
        image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    write_atomic(path, lambda f: image.save(f, format="PNG", optimize=colors is not None))
