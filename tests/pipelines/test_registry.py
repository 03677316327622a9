"""The registry finds every module in pipelines/datasets/: a new dataset is one new module."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import datasets, registry

TOY = '''
"""A toy point set: 3 x 4 grid of points (a, b)."""
import numpy as np

from pipelines.base import Converted, DatasetSpec


def convert(raw_dir):
    a, b = np.meshgrid(np.arange(3.0), np.arange(4.0), indexing="ij")
    return Converted(factor_sizes=[3, 4], factor_values=[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0]],
                     array_name="points", row_shape=(2,), dtype="float32",
                     blocks=iter([np.stack([a.ravel(), b.ravel()], axis=1).astype(np.float32)]))


SPEC = DatasetSpec(name="{name}", description="toy points", factor_names=("a", "b"),
                   factor_sizes=(3, 4), raw_files=(), convert=convert)
'''


def _extra_folder(tmp_path: Path, **modules: str) -> Path:
    folder = tmp_path / "more_datasets"
    folder.mkdir()
    for module, name in modules.items():
        (folder / f"{module}.py").write_text(TOY.replace("{name}", name))
    return folder


def test_every_builtin_module_is_found():
    assert sorted(registry.NAMES) == ["cars3d", "faces", "sector2d", "sector2dunif", "shapes2d", "shapes2d-synth",
                                      "shapes2d-synth-small", "shapes3d", "small_norb"]
    assert all(registry.get_spec(name).name == name for name in registry.NAMES)


def test_a_new_module_is_a_new_dataset_end_to_end(tmp_path):
    """One file dropped beside the built-in modules: prepare, info and verify know it by name."""
    folder = _extra_folder(tmp_path, toy_points="toy-points")
    boot = (f"import sys; import pipelines.datasets as d; d.__path__.append({str(folder)!r}); "
            "from cli.data import main; sys.argv[0] = 'gdrae-data'; main()")
    cache = tmp_path / "cache"
    for command in (["prepare", "toy-points"], ["verify", "toy-points"], ["info", "toy-points"]):
        done = subprocess.run([sys.executable, "-c", boot, *command, "--cache-dir", str(cache)],
                              capture_output=True, text=True, cwd=Path(__file__).parents[2])
        assert done.returncode == 0, done.stderr
    assert "dataset toy-points" in done.stdout and "points: float32 (12, 2)" in done.stdout
    assert [line.split()[:2] for line in done.stdout.splitlines()[-2:]] == [["a", "3"], ["b", "4"]]


def test_a_name_declared_twice_is_refused(tmp_path, monkeypatch):
    folder = _extra_folder(tmp_path, one="toy", two="toy")
    monkeypatch.setattr(datasets, "__path__", [*datasets.__path__, str(folder)])
    with pytest.raises(RuntimeError, match="'toy' is declared twice"):
        registry._discover()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(registry.GdraeError, match="unknown dataset 'mnist'.*shapes3d"):
        registry.get_spec("mnist")
