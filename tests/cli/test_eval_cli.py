"""gdrae-eval: checkpoints from tiny training runs, its outputs, and one clear line for bad input."""
import csv
import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from evalkit import make_cache, train_tiny  # tests/evalkit.py (tests/ is on pytest's pythonpath)

from cli.eval import main
from gdrae.evaluate import METRIC_NAMES
from gdrae.runlog import read_evaluations
from pipelines.store import prepare

FAST = "histogram,mig,sap,geometry"  # the quick metrics; tests/test_evaluate.py runs them all


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """(checkpoint, cache_dir) of a two-step run of the tiny image model on a 60-image cache.

    The run also asks for the histogram metrics at its evaluation step (train.metrics).
    """
    root = tmp_path_factory.mktemp("image")
    make_cache(root / "cache", "tiny2d")
    return train_tiny("image", root / "cache", root / "run", "tiny2d", metrics=["histogram"]), root / "cache"


@pytest.fixture(scope="module")
def sector_run(tmp_path_factory):
    """(checkpoint, cache_dir) of a two-step run of a small Sector2D model; the cache is the 64x64 grid."""
    root = tmp_path_factory.mktemp("sector")
    prepare("sector2dunif", root / "raw", root / "cache", progress=False)
    return train_tiny("sector2d", root / "cache", root / "run", "sector2dunif"), root / "cache"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, *fragments):
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a ClickException, not an unhandled error
    # what a terminal shows: a progress bar (tqdm, leave=False) is overwritten by carriage returns
    lines = [line.split("\r")[-1] for line in result.output.strip().split("\n")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_lists_metric_names():
    result = run("--help")
    assert result.exit_code == 0
    for name in METRIC_NAMES:
        assert name in result.output


def test_trainer_and_gdrae_eval_write_one_record_with_the_same_keys(image_run, tmp_path):
    cache_dir = image_run[1]
    ckpt = train_tiny("image", cache_dir, tmp_path / "run", "tiny2d", metrics=["histogram"])
    trained = read_evaluations(tmp_path / "run")  # the trainer's evaluation at its last step
    assert list(trained) == [2] and 0.0 <= trained[2]["hist20/mig"] <= 1.0
    result = run("--ckpt", ckpt, "--metrics", "histogram,geometry,jacobian", "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    evaluated = read_evaluations(tmp_path / "eval")
    assert list(evaluated[2]) == list(trained[2])  # the same keys, in the same order
    assert evaluated[2] == pytest.approx(trained[2], rel=1e-6)  # and numbers: train.seed 0 is gdrae-eval's seed
    assert run("--ckpt", ckpt, "--metrics", "sap").exit_code == 0  # into the run directory: the same record
    after = read_evaluations(tmp_path / "run")[2]
    assert list(after) == [*trained[2], "sap/sap_score"] and {k: after[k] for k in trained[2]} == trained[2]


def test_evaluates_a_trained_checkpoint(image_run, tmp_path):
    ckpt, _ = image_run
    out = tmp_path / "out"
    result = run("--ckpt", ckpt, "--metrics", FAST, "--out", out)
    assert result.exit_code == 0, result.output
    assert "step 2" in result.output and "hist20/mig" in result.output and "geometry/ortho_sign" in result.output
    record = json.loads((out / "metrics" / "step-2.json").read_text())
    assert record["step"] == 2 and "sap/sap_score" in record["metrics"] and record["seed"] == 0
    with open(out / "metrics" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["step"] == "2"
    assert float(rows[0]["hist20/mig"]) == record["metrics"]["hist20/mig"]
    for name in ("traversal_real", "mi"):
        assert (out / "images" / f"step-2-{name}.png").stat().st_size > 0
    assert len(list((out / "codes").glob("step-2-tiny2d-*.npy"))) == 1

    again = run("--ckpt", ckpt, "--metrics", "histogram,irs", "--out", out)  # codes reused, a new column
    assert again.exit_code == 0, again.output
    with open(out / "metrics" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["irs/irs"] != "" and rows[0]["sap/sap_score"] != ""


def test_default_out_is_the_run_directory(image_run):
    ckpt, _ = image_run
    result = run("--ckpt", ckpt, "--metrics", "histogram", "--seed", "1")
    assert result.exit_code == 0, result.output
    run_dir = ckpt.parent.parent
    assert (run_dir / "metrics" / "step-2.json").is_file() and (run_dir / "metrics" / "metrics.csv").is_file()


def test_sector2d_checkpoint(sector_run, tmp_path):
    ckpt, _ = sector_run
    result = run("--ckpt", ckpt, "--metrics", FAST, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics" / "step-2.json").read_text())["metrics"]
    assert 0.0 <= metrics["hist20/mig"] <= 1.0
    for name in ("sector_grid", "sector_mu", "mi"):
        assert (tmp_path / "images" / f"step-2-{name}.png").is_file()


def test_the_checkpoint_is_read_once(image_run, tmp_path, monkeypatch):
    import gdrae.checkpoint

    real, reads = gdrae.checkpoint.torch_load, []
    monkeypatch.setattr(gdrae.checkpoint, "torch_load", lambda path, *args: reads.append(path) or real(path, *args))
    result = run("--ckpt", image_run[0], "--metrics", "geometry", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert reads == [image_run[0]]


def test_unknown_metric_is_a_bad_parameter(image_run):
    result = run("--ckpt", image_run[0], "--metrics", "histogram,mgi")
    assert result.exit_code == 2
    assert "Invalid value for '--metrics'" in result.output and "got 'mgi'" in result.output


def test_missing_cache_says_what_to_prepare(image_run, tmp_path):
    one_line_error(run("--ckpt", image_run[0], "--cache-dir", tmp_path / "empty", "--out", tmp_path),
                   "not found", "gdrae-data prepare tiny2d")


def test_unwritable_out_dir(image_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    one_line_error(run("--ckpt", image_run[0], "--metrics", "histogram", "--out", blocker / "out"),
                   f"{blocker / 'out' / 'codes'}: cannot write the code table: Not a directory")


def test_a_metrics_table_of_another_shape_is_left_alone(image_run, tmp_path):
    table = tmp_path / "metrics" / "metrics.csv"
    table.parent.mkdir()
    table.write_text("run,score\nmine,0.9\n")
    one_line_error(run("--ckpt", image_run[0], "--metrics", "histogram", "--out", tmp_path),
                   f"{table}: expected step as the first column, got 'run'", "move it aside and evaluate again")
    assert table.read_text() == "run,score\nmine,0.9\n"


def test_corrupt_cache_chunk(image_run, tmp_path):
    shutil.copytree(image_run[1] / "tiny2d.zarr", tmp_path / "tiny2d.zarr")
    chunk = next(f for f in sorted((tmp_path / "tiny2d.zarr" / "images").rglob("*")) if f.is_file() and f.name != "zarr.json")
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    one_line_error(run("--ckpt", image_run[0], "--cache-dir", tmp_path, "--out", tmp_path / "out"),
                   "is corrupt", f"gdrae-data prepare tiny2d --cache-dir {tmp_path} --force")


def test_corrupt_checkpoint(image_run, tmp_path):
    bad = tmp_path / "checkpoints" / "latest.pt"
    bad.parent.mkdir()
    data = image_run[0].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    one_line_error(run("--ckpt", bad), str(bad), "unreadable checkpoint")
    one_line_error(run("--ckpt", tmp_path / "nope.pt"), "checkpoint not found")


def test_zeroed_bytes_in_the_weights_name_the_intact_step_file(image_run, tmp_path):
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(image_run[0].parent, ckpts)  # copies: step-2.pt keeps the good bytes
    weights = max(torch.load(ckpts / "latest.pt", weights_only=True)["model"].values(), key=torch.numel)
    latest = ckpts / "latest.pt"
    raw = bytearray(latest.read_bytes())
    offset = raw.find(weights.numpy().tobytes())
    assert offset > 0
    raw[offset + 8 : offset + 72] = bytes(64)
    latest.write_bytes(bytes(raw))
    one_line_error(run("--ckpt", latest, "--out", tmp_path), f"{latest}: damaged checkpoint",
                   f"the newest intact checkpoint beside it is {ckpts / 'step-2.pt'}")
    assert not (tmp_path / "metrics").exists()


@pytest.mark.parametrize("kind, message", [
    ("channels", "channels expected 1 (model.channels), got 3"),
    ("size", "image size expected 64x64 (the encoders' input), got 32x32"),
    ("dataset", "dataset expected 'tiny2d' (data.name), got 'other'"),
])
def test_checkpoint_and_cache_that_do_not_belong_together(image_run, tmp_path, kind, message):
    cache_dir = tmp_path / "cache"
    if kind == "dataset":  # another dataset's cache under this name
        make_cache(tmp_path / "elsewhere", "other")
        shutil.copytree(tmp_path / "elsewhere" / "other.zarr", cache_dir / "tiny2d.zarr")
    else:
        make_cache(cache_dir, "tiny2d", channels=3 if kind == "channels" else 1, side=32 if kind == "size" else 64)
    one_line_error(run("--ckpt", image_run[0], "--cache-dir", cache_dir, "--out", tmp_path),
                   "do not belong together", message)


def test_latent_size_of_config_and_weights_differ(image_run, tmp_path):
    state = torch.load(image_run[0], weights_only=True)
    state["config"]["model"]["nz"] = 4
    del state["sha256"]  # a hand-edited file; with the digest it would be refused as damaged
    edited = tmp_path / "latest.pt"
    torch.save(state, edited)
    one_line_error(run("--ckpt", edited, "--out", tmp_path), "weights do not fit")


def test_sector_checkpoint_on_an_image_cache(sector_run, image_run, tmp_path):
    shutil.copytree(image_run[1] / "tiny2d.zarr", tmp_path / "sector2dunif.zarr")
    one_line_error(run("--ckpt", sector_run[0], "--cache-dir", tmp_path, "--out", tmp_path),
                   "do not belong together", "dataset expected 'sector2dunif'")
