"""A dataset of one's own: `gdrae-data prepare --spec FILE.yaml` for each format, layout and bad case."""
import hashlib
import os

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from cli.data import main as gdrae_data
from gdrae.data.cache import cache_path, open_cache
from pipelines import raw_writers
from pipelines.checks import RESIZE_FILTER


def prepare(tmp_path, declaration, *extra):
    """Write ``declaration`` to decl.yaml and run `gdrae-data prepare --spec` on it."""
    spec = tmp_path / "decl.yaml"
    spec.write_text(yaml.safe_dump(declaration, sort_keys=False))
    args = ["prepare", *extra, "--spec", spec, "--raw-dir", tmp_path / "raw", "--cache-dir", tmp_path / "cache"]
    return CliRunner().invoke(gdrae_data, [str(a) for a in args])


def cached(tmp_path, name="mine"):
    return open_cache(cache_path(tmp_path / "cache", name))


def assert_rows_in_place(cache):
    """Every stored row shows the grid index its factors name (raw_writers.write_declared draws it)."""
    np.testing.assert_array_equal(raw_writers.decode_index("small_norb", cache.images[:]), cache.grid_index)


@pytest.mark.parametrize("file, options", [
    ("data.npz", {"layout": "NHWC", "shuffled": True}),  # uncompressed: read by rows
    ("data.npz", {"layout": "NCHW", "compressed": True, "shuffled": True}),  # loaded whole
    ("data.h5", {"layout": "NHW", "shuffled": True}),
    ("group.hdf5", {"layout": "NCHW"}),
    ("data.mat", {"layout": "HWCN", "shuffled": True, "label_base": 1}),  # MATLAB v5, MATLAB's own axis order
    ("data.mat", {"layout": "NCWH", "compressed": True, "shuffled": True, "label_base": 1}),  # v7.3 as h5py reads it
    ("data.pth", {"layout": "NHW", "shuffled": True}),
    ("data.pt", {"layout": "NHWC", "dtype": "float32"}),
])
def test_each_format_and_layout_becomes_a_cache_in_grid_order(tmp_path, file, options):
    declaration = raw_writers.write_declared(tmp_path / "raw", file, sizes=(2, 3, 2), **options)
    result = prepare(tmp_path, declaration)
    assert result.exit_code == 0, result.output
    cache = cached(tmp_path)
    assert cache.factor_names == ("f0", "f1", "f2") and cache.factor_sizes == (2, 3, 2)
    assert cache.images.shape == (12, 3 if "C" in options["layout"] else 1, 64, 64)
    assert_rows_in_place(cache)
    assert cache.attrs["pipeline"]["declaration"] == declaration
    (source,) = cache.attrs["source"]
    assert source["name"] == file and source["sha256"] == hashlib.sha256((tmp_path / "raw" / file).read_bytes()).hexdigest()


@pytest.mark.parametrize("side", [32, 96])
def test_other_sizes_are_resized_with_the_pipelines_filter(tmp_path, side):
    declaration = raw_writers.write_declared(tmp_path / "raw", "data.h5", layout="NHWC", side=side, shuffled=True)
    assert prepare(tmp_path, declaration).exit_code == 0
    cache = cached(tmp_path)
    assert cache.images.shape[1:] == (3, 64, 64)
    assert_rows_in_place(cache)
    assert cache.attrs["pipeline"]["resize"] == {"from": [side, side], "to": [64, 64], "filter": RESIZE_FILTER}


def test_float_images_become_uint8_rounded_to_nearest(tmp_path):
    values = np.array([0.0, 0.1, 0.5, 0.999, 1.0], dtype=np.float64)
    images = np.broadcast_to(values[:, None, None], (5, 64, 64)).copy()
    raw_writers.save_arrays(tmp_path / "raw" / "x.npz", {"x": images})
    declaration = {"name": "mine", "file": "x.npz", "images": "x", "layout": "NHW", "factors": [{"name": "v", "size": 5}]}
    assert prepare(tmp_path, declaration).exit_code == 0
    cache = cached(tmp_path)
    stored = cache.images[:][np.argsort(cache.grid_index), 0, 7, 9]
    np.testing.assert_array_equal(stored, [0, 26, 128, 255, 255])


def test_a_name_given_must_be_the_declared_one_and_info_verify_list_show_the_cache(tmp_path):
    declaration = raw_writers.write_declared(tmp_path / "raw", "data.npz")
    result = prepare(tmp_path, declaration, "other")
    assert result.exit_code == 1 and "decl.yaml: name: expected 'other'" in result.output
    assert prepare(tmp_path, declaration, "mine").exit_code == 0
    run = CliRunner().invoke
    cache_dir = str(tmp_path / "cache")
    info = run(gdrae_data, ["info", "mine", "--cache-dir", cache_dir])
    assert info.exit_code == 0 and "declaration" in info.output and "f1" in info.output
    assert run(gdrae_data, ["verify", "mine", "--cache-dir", cache_dir]).exit_code == 0
    listing = run(gdrae_data, ["list", "--cache-dir", cache_dir, "--raw-dir", str(tmp_path / "raw")])
    assert listing.exit_code == 0
    assert any(line.split()[:3] == ["mine", "declared", "valid"] for line in listing.output.splitlines())


def test_a_damaged_declared_cache_says_to_rebuild_with_its_declaration(tmp_path):
    from gdrae.data.cache import rebuild_advice
    from gdrae.errors import GdraeError

    assert prepare(tmp_path, raw_writers.write_declared(tmp_path / "raw", "data.npz")).exit_code == 0
    path = cache_path(tmp_path / "cache", "mine")
    assert rebuild_advice(path) == (f"rebuild with `gdrae-data prepare mine --spec FILE.yaml --cache-dir "
                                    f"{path.parent} --force`")
    (path / "images" / "zarr.json").write_text("{")  # damaged array metadata, readable group metadata
    with pytest.raises(GdraeError, match="prepare mine --spec FILE.yaml --cache-dir"):
        open_cache(path)
    (path / "zarr.json").write_text("{")  # nothing readable left: the advice still comes, without --spec
    assert rebuild_advice(path).startswith("rebuild with `gdrae-data prepare mine --cache-dir")


def test_a_declared_cache_trains_and_evaluates(tmp_path):
    from evalkit import train_tiny  # tests/evalkit.py

    from cli.eval import main as gdrae_eval

    declaration = raw_writers.write_declared(tmp_path / "raw", "data.h5", layout="NHW", sizes=(3, 4), shuffled=True)
    assert prepare(tmp_path, declaration).exit_code == 0
    ckpt = train_tiny("image", tmp_path / "cache", tmp_path / "run", "mine")
    result = CliRunner().invoke(gdrae_eval, ["--ckpt", str(ckpt), "--metrics", "histogram,geometry",
                                             "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "mig" in result.output


def test_a_sha256_is_checked_when_declared(tmp_path):
    declaration = raw_writers.write_declared(tmp_path / "raw", "data.npz")
    digest = hashlib.sha256((tmp_path / "raw" / "data.npz").read_bytes()).hexdigest()
    assert prepare(tmp_path, {**declaration, "sha256": digest}).exit_code == 0
    wrong = "0" * 64
    result = prepare(tmp_path, {**declaration, "sha256": wrong}, "--force")
    assert result.exit_code == 1 and f"expected sha256 {wrong} (declared), got {digest}" in result.output


def _error_line(result):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [line.split("\r")[-1] for line in result.output.strip().split("\n")]
    return line


def _break_labels(labels, case):
    if case == "missing_cell":
        labels[1] = labels[0]  # cell of row 0 twice, cell of row 1 missing
    elif case == "out_of_range":
        labels[3, 1] = 7
    elif case == "non_integer":
        return labels + 0.5
    return labels


@pytest.mark.parametrize("change, fragments", [
    ({"images": "pixels"}, ["data.h5: images: expected an array named 'pixels' in the file, got images, labels"]),
    ({"labels": "classes"}, ["data.h5: labels: expected an array named 'classes'"]),
    ({"layout": "NHW"}, ["data.h5: images 'images': expected 3 axes for layout NHW, got shape (12, 64, 64, 3)"]),
    ({"layout": "NCHW"}, ["data.h5: images 'images': expected 1 or 3 channels on axis C of layout NCHW"]),
    ({"factors": [{"name": "a", "size": 5}]}, ["data.h5: labels 'labels': expected shape (12, 1)"]),
    ({"labels": None, "factors": [{"name": "a", "size": 5}]}, ["data.h5: images 'images': expected prod(factor "
                                                              "sizes (5,)) = 5 rows", "got 12"]),
    ({"label_base": 1}, ["data.h5: labels 'labels': column 0 (f0): expected classes 1..2 (label_base 1), got 0"]),
])
def test_a_declaration_that_does_not_fit_the_file_is_one_line(tmp_path, change, fragments):
    declaration = raw_writers.write_declared(tmp_path / "raw", "data.h5", shuffled=True)
    line = _error_line(prepare(tmp_path, {**declaration, **change}))
    for fragment in fragments:
        assert fragment in line, line
    assert not (tmp_path / "cache" / "mine.zarr").exists()


@pytest.mark.parametrize("case, fragment", [
    ("missing_cell", "expected each of the 12 combinations of the factor grid (f0 2, f1 3, f2 2) exactly once, "
                     "got 1 missing (first: f0="),
    ("out_of_range", "column 1 (f1): expected classes 0..2 (label_base 0), got 7 at row 3 (1 rows out of range)"),
    ("non_integer", "expected an integer array of factor classes, got float64 with values that are not whole"),
])
def test_bad_labels_are_one_line(tmp_path, case, fragment):
    declaration = raw_writers.write_declared(tmp_path / "raw", "data.npz", shuffled=True)
    with np.load(tmp_path / "raw" / "data.npz") as f:
        arrays = dict(f)
    arrays["labels"] = _break_labels(arrays["labels"], case)
    raw_writers.save_arrays(tmp_path / "raw" / "data.npz", arrays)
    line = _error_line(prepare(tmp_path, declaration))
    assert line.startswith(f"Error: {tmp_path / 'raw' / 'data.npz'}: labels 'labels': ") and fragment in line, line
    assert not (tmp_path / "cache" / "mine.zarr").exists()


def test_float_images_outside_0_1_are_one_line(tmp_path):
    images = np.full((2, 64, 64), 1.5, dtype=np.float32)
    raw_writers.save_arrays(tmp_path / "raw" / "x.h5", {"x": images})
    declaration = {"name": "mine", "file": "x.h5", "images": "x", "layout": "NHW", "factors": [{"name": "v", "size": 2}]}
    line = _error_line(prepare(tmp_path, declaration))
    assert "x.h5: images 'x': expected float values in [0, 1], got 1.5..1.5" in line
    assert not (tmp_path / "cache").exists() or os.listdir(tmp_path / "cache") == []


@pytest.mark.parametrize("file", ["data.npz", "data.h5", "data.mat", "data.pth"])
def test_a_damaged_or_pickled_file_is_one_line(tmp_path, file):
    declaration = raw_writers.write_declared(tmp_path / "raw", file, shuffled=True)
    path = tmp_path / "raw" / file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    line = _error_line(prepare(tmp_path, declaration))
    assert str(path) in line and "corrupt or truncated" in line, line
    if file == "data.npz":
        np.savez(path, images=np.array([{"a": 1}], dtype=object))
        line = _error_line(prepare(tmp_path, declaration))
        assert "images: expected a numeric array, got pickled Python objects (refused)" in line


@pytest.mark.parametrize("text, fragment", [
    ("name: [", "decl.yaml: expected YAML, got invalid YAML"),
    ("- a\n- b", "decl.yaml: expected a mapping with keys name, file, images, layout, factors"),
    ("name: x\nfile: a.npz\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 2}]\ncolour: red",
     "decl.yaml: colour: unknown key"),
    ("name: x\nfile: a.npz\nimages: i\nlayout: NHW", "decl.yaml: factors: expected a value, got none (missing key)"),
    ("name: ../x\nfile: a.npz\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 2}]", "decl.yaml: name: expected"),
    ("name: shapes3d\nfile: a.npz\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 2}]",
     "decl.yaml: name: expected a name of your own, got 'shapes3d'"),
    ("name: x\nfile: a.csv\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 2}]", "decl.yaml: file: expected a file"),
    ("name: x\nfile: /etc/a.npz\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 2}]", "decl.yaml: file: expected a path"),
    ("name: x\nfile: a.npz\nimages: i\nlayout: NHWD\nfactors: [{name: a, size: 2}]", "decl.yaml: layout: expected"),
    ("name: x\nfile: a.npz\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 0}]", "decl.yaml: factors[0].size: expected"),
    ("name: x\nfile: a.npz\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 2}, {name: a, size: 3}]",
     "decl.yaml: factors: expected distinct names"),
    ("name: x\nfile: a.npz\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 2}]\nlabel_base: 2",
     "decl.yaml: label_base: expected 0 or 1"),
    ("name: x\nfile: a.npz\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 2}]\nsha256: abc",
     "decl.yaml: sha256: expected 64 lowercase hex digits"),
    ("name: x\nfile: a.npz\nimages: i\nlayout: NHW\nfactors: [{name: a, size: 2}]", "a.npz: raw file of dataset x not found"),
])
def test_a_bad_declaration_is_one_line_naming_the_key(tmp_path, text, fragment):
    (tmp_path / "decl.yaml").write_text(text)
    result = CliRunner().invoke(gdrae_data, ["prepare", "--spec", str(tmp_path / "decl.yaml"), "--raw-dir",
                                             str(tmp_path / "raw"), "--cache-dir", str(tmp_path / "cache")])
    assert fragment in _error_line(result)
    assert not (tmp_path / "cache").exists()


def test_transposed_labels_of_a_v73_mat_are_named(tmp_path):
    declaration = raw_writers.write_declared(tmp_path / "raw", "data.mat", layout="NCHW", shuffled=True, compressed=True)
    with raw_writers.h5py.File(tmp_path / "raw" / "data.mat", "r") as f:
        images, labels = f["images"][()], f["labels"][()]
    raw_writers.save_arrays(tmp_path / "raw" / "data.mat", {"images": images, "labels": labels.T}, compressed=True)
    line = _error_line(prepare(tmp_path, declaration))
    assert "labels 'labels': expected shape (12, 3) (rows, factors), got (3, 12): transposed?" in line


def test_a_file_loaded_whole_that_does_not_fit_in_memory_says_which_formats_are_read_in_blocks(tmp_path, monkeypatch):
    declaration = raw_writers.write_declared(tmp_path / "raw", "data.npz", compressed=True)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(np.lib.format, "read_array", no_memory)  # what numpy raises when the array does not fit
    line = _error_line(prepare(tmp_path, declaration))
    assert line == (f"Error: {tmp_path / 'raw' / 'data.npz'}: out of memory: this format is loaded whole (a v5 .mat, "
                    "a compressed .npz, a .pth); save it as .h5, an uncompressed .npz (np.savez) or a v7.3 .mat, "
                    "which are read in blocks")
