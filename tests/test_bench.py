"""The bench scripts' own arithmetic: train_step.py's time breakdown, dtype_curves.py's gaps and speeds,
gpu_suite.py's reading of the logs, budgets and the check of what comes back, reproduce.py's table and outline."""
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


def test_gpu_suite_reads_train_log_and_figure_lines(gpu_suite):
    log = ("2026-11-30 10:12:04 starting step 0 of 100000 on cuda (1 process(es)), 2,055,748 parameters\n"
           "2026-11-30 10:12:11 step 100 total=9501.39 recon=2832.62 recon_l1=0.4992 steps/s=21.4\n"
           "2026-11-30 10:12:40 stopped by a signal at step 137: checkpoint written; continue with --resume\n"
           "2026-11-30 10:12:40 done: step 137 of 100000 in 7.9 s\n")
    assert gpu_suite.train_progress(log) == {"steps_reached": "137", "steps_per_s": "21.4", "run_s": "7.9"}
    assert gpu_suite.train_progress("") == {}
    text = "device=cuda images=16384\nencode_images_per_s=41000\nencode_images_per_s=42000\nnoise\n"
    assert gpu_suite.name_values(text, ("encode_images_per_s",)) == {"encode_images_per_s": "42000"}
    assert gpu_suite.last_line("a\nprogress 10%\rprogress 100%\r\n\n") == "progress 100%"
    assert gpu_suite.last_line("") == "no output"


def test_gpu_suite_budgets(gpu_suite):
    assert gpu_suite.train_budget(400, 160, 60, 300) == 240
    assert gpu_suite.train_budget(1000, 160, 60, 300) == 300
    assert gpu_suite.train_budget(100, 160, 60, 300) == 60
    assert gpu_suite.repro_estimate(100000, 4.0, 150) == pytest.approx(2 * (100000 * 0.004 * 1.5 + 150))
    assert sum(v for k, v in gpu_suite.BUDGETS.items() if k in ("ITEM1_S", "AFTER_TRAIN_S")) \
        + gpu_suite.BUDGETS["TRAIN_MIN_S"] < gpu_suite.BUDGETS["SUITE_S"] <= 570  # inside the device call's 600 s


def test_gpu_suite_checks_what_comes_back(gpu_suite, tmp_path):
    for i in range(8):
        (tmp_path / f"f{i}.txt").write_text("x")
    assert gpu_suite.out_problems(tmp_path) == []
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_text("x")
    (tmp_path / "bad name.txt").write_bytes(b"x" * 20)
    problems = gpu_suite.out_problems(tmp_path, {"files": 8, "file_bytes": 10, "depth": 2})
    assert problems[0] == "10 files, at most 8 come back"
    assert any("deep.txt: more than 2 folders down" in p for p in problems)
    assert any("bad name.txt: 0.0 MiB, over 0" in p for p in problems)
    assert any("bad name.txt: a name other than" in p for p in problems)


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
