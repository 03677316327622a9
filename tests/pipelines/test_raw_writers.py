import zipfile

import numpy as np
import pytest

from gdrae.errors import GdraeError
from pipelines import raw_writers
from pipelines.checks import convert_raw
from pipelines.registry import get_spec


def test_dsprites_file_has_the_real_keys_and_a_pickled_metadata(tmp_path):
    (path,) = raw_writers.write_dsprites(tmp_path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["imgs.npy", "latents_classes.npy", "latents_values.npy", "metadata.npy"]
    with np.load(path, allow_pickle=True) as f:
        assert f["imgs"].dtype == np.uint8 and set(np.unique(f["imgs"])) == {0, 1}
        assert f["latents_classes"].shape == (48, 6) and f["latents_classes"].dtype == np.int64
        assert (f["latents_classes"][:, 0] == 0).all()
        assert f["latents_values"].dtype == np.float64
        assert f["metadata"].dtype == object and "latents_sizes" in f["metadata"].item()


@pytest.mark.parametrize("name", sorted(raw_writers.WRITERS))
def test_every_writer_puts_files_where_the_pipeline_looks(tmp_path, name):
    raw_writers.WRITERS[name](tmp_path, raw_writers.DEFAULT_SIZES[name], seed=1)
    for raw in get_spec(name).raw_files:
        assert (tmp_path / raw.relpath).exists()


def test_seed_changes_content_not_layout(tmp_path):
    (a,) = raw_writers.write_3dfaces(tmp_path / "a", seed=1)
    (b,) = raw_writers.write_3dfaces(tmp_path / "b", seed=2)
    assert a.read_bytes() != b.read_bytes() and a.stat().st_size == b.stat().st_size


def test_decode_index_refuses_unknown_names():
    with pytest.raises(GdraeError, match="expected one of shapes2d"):
        raw_writers.decode_index("mnist", np.zeros((1, 1, 64, 64), np.uint8))


def test_command_line_writes_a_small_raw_set(tmp_path, capsys):
    raw_writers.main(["cars3d", "--raw-dir", str(tmp_path), "--sizes", "1,2,2", "--seed", "3"])
    written = capsys.readouterr().out.split()
    assert len(written) == 2 and all(p.startswith(str(tmp_path / "cars3d/raw/car_")) for p in written)
    converted = convert_raw(get_spec("cars3d"), tmp_path)
    assert converted.factor_sizes == [1, 2, 2]


def test_command_line_refuses_bad_sizes(tmp_path, capsys):
    with pytest.raises(SystemExit):
        raw_writers.main(["faces", "--raw-dir", str(tmp_path), "--sizes", "2,2"])
    assert "--sizes: expected 4 positive integers, got 2,2" in capsys.readouterr().err
