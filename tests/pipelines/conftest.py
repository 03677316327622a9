"""Shared helpers for the raw-format pipeline tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.checks import convert_raw
from pipelines.registry import get_spec


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    """An empty raw directory, like ``Datasets/``."""
    path = tmp_path / "Datasets"
    path.mkdir()
    return path


@pytest.fixture
def convert_all():
    """``convert_all(name, raw_dir) -> (Converted, all rows as one array)``."""

    def run(name: str, raw_dir: Path):
        converted = convert_raw(get_spec(name), raw_dir)
        blocks = list(converted.blocks)
        for block in blocks:
            assert block.dtype == np.dtype(converted.dtype)
            assert block.shape[1:] == converted.row_shape
        return converted, np.concatenate(blocks)

    return run
