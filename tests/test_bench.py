"""The bench scripts' own arithmetic: train_step.py's time breakdown, dtype_curves.py's gaps and speeds,
gpu_suite.py's reading of the logs, of a stopped run and its budgets, reproduce.py's table and outline."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_step():
    return _load("train_step")


@pytest.mark.parametrize("name, shapes, expected", [
    ("aten::_convolution", [[64, 8, 32, 32], [8, 16, 4, 4], [16]], "conv_kxk"),  # transposed, with bias
    ("aten::convolution_backward", [[64, 16, 64, 64], [64, 8, 32, 32], [8, 16, 4, 4], []], "conv_kxk"),
    ("aten::mkldnn_convolution", [[64, 16, 64, 64], [2, 16, 1, 1]], "mix_1x1_and_matmul"),
    ("aten::convolution_backward", [[64, 2, 64, 64], [64, 16, 64, 64], [2, 16, 1, 1], []], "mix_1x1_and_matmul"),
    ("aten::addmm", [[1024], [64, 1024], [1024, 1024]], "mix_1x1_and_matmul"),
    ("aten::pixel_shuffle", [[64, 8, 32, 32]], "layout"),
    ("aten::copy_", [[64, 16, 64, 64], [64, 16, 64, 64]], "layout"),
    ("aten::mul_", [[64, 16, 64, 64], [64, 16, 64, 64]], "other"),
    ("Optimizer.step#Adam.step", [], None),
])
def test_op_category(train_step, name, shapes, expected):
    assert train_step.op_category(name, shapes) == expected


def test_time_breakdown_sums_self_time_per_step(train_step):
    def event(key, shapes, cpu_us, device_us=0.0):
        return SimpleNamespace(key=key, input_shapes=shapes, self_cpu_time_total=cpu_us,
                               self_device_time_total=device_us)

    events = [
        event("aten::_convolution", [[64, 8, 32, 32], [8, 16, 4, 4]], 6000, 300),
        event("aten::mkldnn_convolution", [[64, 32, 32, 32], [32, 32, 4, 4]], 2000, 100),
        event("aten::mm", [[64, 1024], [1024, 1024]], 1000, 50),
        event("aten::cat", [], 500),
        event("aten::add_", [[4], [4]], 300),
        event("ProfilerStep#1", [], 99999),
    ]
    cpu = train_step.time_breakdown(events, steps=2, device="cpu")
    assert cpu == pytest.approx({"conv_kxk": 4.0, "mix_1x1_and_matmul": 0.5, "layout": 0.25, "other": 0.15})
    cuda = train_step.time_breakdown(events, steps=2, device="cuda")
    assert cuda == pytest.approx({"conv_kxk": 0.2, "mix_1x1_and_matmul": 0.025, "layout": 0.0, "other": 0.0})


def test_relative_gaps_over_the_common_steps():
    gaps = _load("dtype_curves").relative_gaps(
        {10: {"total": 4.0}, 20: {"total": 2.0}, 30: {"total": 0.0}, 40: {"total": 1.0}},
        {10: {"total": 5.0}, 20: {"total": 1.5}, 30: {"total": 1.0}},  # stopped before step 40
    )
    assert gaps == {10: 0.25, 20: 0.25}  # step 30: the reference is 0; step 40: only one run


@pytest.fixture(scope="module")
def gpu_suite():
    return _load("gpu_suite")


def test_gpu_suite_reads_the_step_suite_lines(gpu_suite):
    ok = ("shapes2d eager ms_per_step=31.4   (config=/r/configs/shapes2d.yaml device=cuda batch=64 threads=16 "
          "compile=False spectral=auto warmup_s=2.1 steps=20 steps_per_s=31.85 cpu_ms_per_step=30.2 "
          "peak_cuda_mem_mib=812 | conv_kxk_ms=9.1 mix_1x1_and_matmul_ms=6.0 layout_ms=2.2 other_ms=8.8 "
          "profiled_total_ms=26.1 (profiled steps, operator self time))")
    config, mode, figures, failure = gpu_suite.parse_step_line(ok)
    assert (config, mode, failure) == ("shapes2d", "eager", None)
    assert figures == {"ms_per_step": "31.4", "batch": "64", "warmup_s": "2.1", "steps_per_s": "31.85",
                       "cpu_ms_per_step": "30.2", "peak_cuda_mem_mib": "812", "conv_kxk_ms": "9.1",
                       "mix_1x1_and_matmul_ms": "6.0", "layout_ms": "2.2", "other_ms": "8.8",
                       "profiled_total_ms": "26.1"}
    assert gpu_suite.parse_step_line("sector2dunif cudagraphs failed: timed out after 95 s") == \
        ("sector2dunif", "cudagraphs", None, "timed out after 95 s")
    assert gpu_suite.parse_step_line("Traceback (most recent call last):") is None


def test_gpu_suite_reads_a_stopped_run_through_runlog(gpu_suite, tmp_path):
    import torch

    from gdrae.runlog import RunLog

    assert gpu_suite.stopped_run(tmp_path) == {}  # nothing written yet
    log = RunLog(tmp_path, enabled=True, start_step=0, total_steps=100000)
    for step in (100, 137):  # 137: the step a stop signal ended, whose losses it logs
        log.losses(step, {"model": {"recon": torch.tensor(1.0)}}, {"model": torch.tensor(2.0)})
    log.images(100, {"reconstruction": np.zeros((4, 4, 3), np.uint8)})
    log.close()
    (tmp_path / "checkpoints").mkdir()
    for step in (100, 137):
        (tmp_path / "checkpoints" / f"step-{step}.pt").write_bytes(b"")
    figures = gpu_suite.stopped_run(tmp_path)
    assert float(figures.pop("steps_per_s")) > 0
    assert figures == {"logged_step": "137", "checkpoint_step": "137", "pictures_at_stop": "0"}
    (tmp_path / "images" / "step-137-sv_bars.png").write_bytes(b"")
    assert gpu_suite.stopped_run(tmp_path)["pictures_at_stop"] == "1"


def test_gpu_suite_reads_figure_lines(gpu_suite):
    text = "device=cuda images=16384\nencode_images_per_s=41000\nencode_images_per_s=42000\nnoise\n"
    assert gpu_suite.name_values(text, ("encode_images_per_s",)) == {"encode_images_per_s": "42000"}
    assert gpu_suite.last_line("a\nprogress 10%\rprogress 100%\r\n\n") == "progress 100%"
    assert gpu_suite.last_line("") == "no output"


def test_gpu_suite_budgets(gpu_suite):
    assert gpu_suite.train_budget(400, 160, 60, 300) == 240
    assert gpu_suite.train_budget(1000, 160, 60, 300) == 300
    assert gpu_suite.train_budget(100, 160, 60, 300) == 60
    assert gpu_suite.repro_estimate(100000, 4.0, 150) == pytest.approx(2 * (100000 * 0.004 * 1.5 + 150))
    for budgets, total in ((gpu_suite.BUDGETS, gpu_suite.BUDGET_S),
                           (gpu_suite.REHEARSAL_BUDGETS, gpu_suite.REHEARSAL_BUDGET_S)):
        # the step speed, the shortest training and what follows it fit in the default --budget
        assert budgets["STEP_SPEED_S"] + budgets["TRAIN_MIN_S"] + budgets["AFTER_TRAIN_S"] < total


@pytest.mark.parametrize("args, env, message", [
    (["--budget", "0"], {}, "--budget: expected a positive number of seconds, got 0"),
    ([], {"EVAL_S": "2m"}, "EVAL_S: expected whole seconds, got '2m'"),
    ([], {}, "is not an empty folder; expected a new or empty one (nothing is overwritten)"),
])
def test_gpu_suite_refuses_bad_options_before_anything_runs(gpu_suite, tmp_path, monkeypatch, capsys, args, env,
                                                             message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "figures.txt").write_text("kept\n")  # a folder with an earlier suite's results
    out = tmp_path if not args and not env else tmp_path / "new"
    with pytest.raises(SystemExit) as exit_info:
        gpu_suite.main(["--out", str(out), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures.txt"] and not (tmp_path / "new").exists()


def test_reproduce_table_one_row_per_step_and_run_blank_where_not_evaluated():
    reproduce = _load("reproduce")
    full = {k: 0.5 for k in reproduce.COLUMNS}
    early = {k: v for k, v in full.items() if not k.startswith("dci/")}  # DCI at the last step only
    table = reproduce.results_table({"gdrae": {10: early, 20: full}, "ablation": {10: early, 20: full}})
    lines = table.splitlines()
    assert len(lines) == 2 + 4 and [ln.split(" | ")[:2] for ln in lines[2:]] == [
        ["| 10", "gdrae"], ["| 10", "ablation"], ["| 20", "gdrae"], ["| 20", "ablation"]]
    dci = list(reproduce.COLUMNS).index("dci/disentanglement")
    assert lines[2].split("|")[3 + dci].strip() == "" and lines[4].split("|")[3 + dci].strip() == "0.500"


@pytest.mark.parametrize("uniform", [True, False])
def test_reproduce_sector_outline_is_the_quarter_annulus_boundary(uniform):
    outline = _load("reproduce").sector_outline(uniform, n=20)
    radius, angle = np.hypot(outline[:, 0], outline[:, 1]), np.arctan2(outline[:, 1], outline[:, 0])
    assert outline.shape == (80, 2)
    assert radius.min() == pytest.approx(1.0) and radius.max() == pytest.approx(2.0)
    assert angle.min() == pytest.approx(0.0, abs=1e-12) and angle.max() == pytest.approx(np.pi / 2)
    on_rim = np.isclose(radius, 1.0) | np.isclose(radius, 2.0)
    on_edge = np.isclose(angle, 0.0, atol=1e-12) | np.isclose(angle, np.pi / 2)
    assert np.all(on_rim | on_edge)  # every point lies on the boundary


def test_reproduce_evaluation_points_are_the_listed_steps_within_a_run_and_its_last(tmp_path):
    reproduce = _load("reproduce")
    args = reproduce.parse_args(["sector2dunif", "--steps", "100000", "--ablation-steps", "25000",
                                 "--eval-steps", "10000,25000,50000,75000,100000", "--out", str(tmp_path)])
    assert reproduce.evaluation_points(args, "gdrae") == [10000, 25000, 50000, 75000, 100000]
    assert reproduce.evaluation_points(args, "ablation") == [10000, 25000]
    assert reproduce.run_length(args, "ablation") == 25000
    default = reproduce.parse_args(["sector2dunif", "--steps", "1500"])
    assert default.eval_steps == [300, 600, 900, 1200, 1500] and default.ablation_steps is None
    with pytest.raises(SystemExit):
        reproduce.parse_args(["sector2dunif", "--eval-steps", "10,x"])
    with pytest.raises(SystemExit):
        reproduce.parse_args(["sector2dunif", "--seeds", "0"])  # nothing to compare


def test_reproduce_takes_only_the_evaluation_points_for_evaluation(tmp_path):
    reproduce = _load("reproduce")
    (tmp_path / "checkpoints").mkdir()
    for step in (10, 17, 20, 40):  # 17: written by a stop
        (tmp_path / "checkpoints" / f"step-{step}.pt").write_bytes(b"")
    assert [s for s, _ in reproduce.evaluated_steps(tmp_path, [10, 20, 30])] == [10, 20]


def test_reproduce_run_config_keeps_the_evaluation_checkpoints(tmp_path):
    reproduce = _load("reproduce")
    args = reproduce.parse_args(["sector2dunif", "--steps", "10000", "--eval-steps", "2000,10000",
                                 "--ckpt-every", "2500", "--out", str(tmp_path)])
    cfg = reproduce.run_config(args, "ablation", 3, tmp_path / "ablation")
    assert (cfg.train.seed, cfg.train.steps, cfg.train.ckpt_every) == (3, 10000, 2500)
    assert cfg.train.keep_steps == [2000, 10000]
    assert (cfg.loss.sn, cfg.loss.sv) == (0, 0)
