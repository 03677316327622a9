"""The cache writer: round trip, atomic replace, failures and interruptions."""
import errno
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gdrae.data import lifecycle
from gdrae.data.cache import cache_path, open_cache
from gdrae.data.lifecycle import staged, this_host
from gdrae.errors import GdraeError
from pipelines import store
from pipelines.base import Converted, DatasetSpec, RawFile
from pipelines.row_order import PermutedRows
from pipelines.store import prepare, spec_from_array

ROOT = Path(__file__).resolve().parents[2]


def _spec(name="toy", blocks=None, sizes=(4, 6), raw_files=()):
    """A spec of images whose pixels hold the row index; ``blocks(data)`` may replace the block iterator."""
    n = int(np.prod(sizes))
    data = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 1, 3, 3)).copy()

    def convert(raw_dir):
        return Converted(factor_names=["a", "b"], factor_sizes=list(sizes),
                         factor_values=[list(range(s)) for s in sizes], array_name="images", row_shape=(1, 3, 3),
                         dtype="uint8", blocks=blocks(data) if blocks else iter([data[:5], data[5:]]),
                         pipeline={"p": 1})

    return DatasetSpec(name=name, description="toy", factor_names=("a", "b"), factor_sizes=sizes,
                       raw_files=raw_files, convert=convert)


def _failing_after(k, exc):
    def blocks(data):
        for i in range(0, len(data), 4):
            if i // 4 == k:
                raise exc
            yield data[i:i + 4]
    return blocks


def test_prepare_writes_a_complete_cache_and_summary(tmp_path):
    summary = prepare(_spec(), tmp_path / "raw", tmp_path / "cache", progress=False, chunk_rows=8)
    assert summary.path == tmp_path / "cache" / "toy.zarr" and summary.n == 24
    assert summary.factor_sizes == [4, 6] and summary.bytes_on_disk > 0 and summary.seconds >= 0
    cache = open_cache(summary.path)
    np.testing.assert_array_equal(cache.images[:, 0, 1, 1], cache.grid_index)
    assert cache.attrs["source"] == []  # no raw files
    assert cache.attrs["pipeline"] == {"p": 1}
    assert sorted(os.listdir(tmp_path / "cache")) == ["toy.zarr"]  # no temporary left


def test_existing_cache_needs_force_and_is_checked_before_converting(tmp_path):
    prepare(_spec(), tmp_path, tmp_path / "cache", progress=False)
    called = []
    spec = _spec(blocks=lambda data: called.append(1) or iter([data]))
    with pytest.raises(GdraeError, match="toy.zarr: cache exists.*pass --force"):
        prepare(spec, tmp_path, tmp_path / "cache", progress=False)
    assert called == []


@pytest.mark.parametrize("exc", [GdraeError("toy.bin: truncated"), KeyboardInterrupt(), RuntimeError("boom")])
def test_failure_midway_leaves_no_cache_and_keeps_the_old_one(tmp_path, exc):
    cache_dir = tmp_path / "cache"
    with pytest.raises(type(exc)):
        prepare(_spec(blocks=_failing_after(3, exc)), tmp_path, cache_dir, progress=False, chunk_rows=4)
    assert os.listdir(cache_dir) == []
    prepare(_spec(), tmp_path, cache_dir, progress=False)
    before = open_cache(cache_path(cache_dir, "toy")).images[:]
    with pytest.raises(type(exc)):
        prepare(_spec(blocks=_failing_after(3, exc)), tmp_path, cache_dir, force=True, progress=False, chunk_rows=4)
    assert os.listdir(cache_dir) == ["toy.zarr"]
    np.testing.assert_array_equal(open_cache(cache_path(cache_dir, "toy")).images[:], before)


def test_force_replaces_once_the_new_cache_is_complete(tmp_path):
    cache_dir = tmp_path / "cache"
    prepare(_spec(sizes=(4, 6)), tmp_path, cache_dir, progress=False)
    prepare(_spec(sizes=(2, 6)), tmp_path, cache_dir, force=True, progress=False)
    assert open_cache(cache_path(cache_dir, "toy")).factor_sizes == (2, 6)
    assert os.listdir(cache_dir) == ["toy.zarr"]


@pytest.mark.parametrize("blocks,message", [
    (lambda d: iter([d[:20]]), r"rows expected prod\(factor_sizes \(4, 6\)\) = 24, got 20"),
    (lambda d: iter([d, d[:1]]), r"rows expected prod\(factor_sizes \(4, 6\)\) = 24, got more"),
    (lambda d: iter([d.astype(np.int16)]), r"block at row 0 expected uint8 \(B, 1, 3, 3\), got int16"),
    (lambda d: iter([d[:, :, :2]]), r"expected uint8 \(B, 1, 3, 3\), got uint8 \(24, 1, 2, 3\)"),
])
def test_rows_that_do_not_fill_the_grid_are_refused(tmp_path, blocks, message):
    with pytest.raises(GdraeError, match=message):
        prepare(_spec(blocks=blocks), tmp_path, tmp_path / "cache", progress=False)
    assert os.listdir(tmp_path / "cache") == []


def test_missing_raw_file_names_path_and_source(tmp_path):
    raw = RawFile(relpath="toy/toy.bin", source="https://example.org/toy")
    with pytest.raises(GdraeError) as err:
        prepare(_spec(raw_files=(raw,)), tmp_path / "Datasets", tmp_path / "cache", progress=False)
    assert str(tmp_path / "Datasets" / "toy" / "toy.bin") in str(err.value)
    assert "get it from https://example.org/toy" in str(err.value)


def test_sigterm_during_prepare_leaves_no_cache_and_keeps_the_old_one(tmp_path):
    cache_dir = tmp_path / "cache"
    prepare(_spec(), tmp_path, cache_dir, progress=False)
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from pipelines.store import prepare, spec_from_array
        spec = spec_from_array("toy", np.zeros((24, 1, 3, 3), np.uint8), ["a", "b"], [4, 6], block_rows=1)
        convert = spec.convert
        def slow(raw_dir):
            c = convert(raw_dir)
            inner = c.blocks
            def blocks():
                for i, b in enumerate(inner):
                    if i == 2:
                        print("writing", flush=True)
                    time.sleep(0.5)
                    yield b
            c.blocks = blocks()
            return c
        object.__setattr__(spec, "convert", slow)
        prepare(spec, "raw", {str(cache_dir)!r}, force=True, progress=False, chunk_rows=1)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    assert any(p.name.startswith(".toy.zarr.tmp-") for p in cache_dir.iterdir())
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=30)
    assert child.returncode != 0
    assert os.listdir(cache_dir) == ["toy.zarr"]
    kept = open_cache(cache_path(cache_dir, "toy"))
    np.testing.assert_array_equal(kept.images[:, 0, 1, 1], kept.grid_index)


def _run_killed_in_replace(cache_dir):
    """A prepare --force of toy that is killed (no cleanup) right after renaming the old cache aside,
    as on an OS without an atomic exchange."""
    script = textwrap.dedent(f"""
        import os, sys
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from gdrae.data import lifecycle
        from pipelines import store
        spec = store.spec_from_array("toy", np.full((24, 1, 3, 3), 9, np.uint8), ["a", "b"], [4, 6])
        rename, swap_in = os.rename, lifecycle._swap_in

        def killed_after_one_rename(src, dst):
            rename(src, dst)
            os._exit(9)

        def swap_in_then_die(tmp, final):
            os.rename = killed_after_one_rename
            swap_in(tmp, final)

        lifecycle._exchange = lambda a, b: False
        lifecycle._swap_in = swap_in_then_die
        store.prepare(spec, "raw", {str(cache_dir)!r}, force=True, progress=False)
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert child.returncode == 9, child.stderr


def test_a_kill_between_the_renames_of_a_replace_loses_nothing(tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    final = cache_path(cache_dir, "toy")
    prepare(_spec(), tmp_path, cache_dir, progress=False)
    before = open_cache(final).images[:]
    _run_killed_in_replace(cache_dir)
    old, tmp = staged(cache_dir)
    assert (old.kind, tmp.kind, old.host, old.dead, tmp.dead) == ("old", "tmp", this_host(), True, True)
    assert not final.exists()
    with pytest.raises(GdraeError, match="toy.zarr: cache exists"):  # the next prepare restores it first
        prepare(_spec(), tmp_path, cache_dir, progress=False)
    assert f"{final}: restored from {old.path.name}" in caplog.text
    assert f"removed the temporary toy cache of process {tmp.pid}" in caplog.text
    assert os.listdir(cache_dir) == ["toy.zarr"]
    np.testing.assert_array_equal(open_cache(final).images[:], before)


def test_prepare_restores_a_lone_earlier_cache_only_when_it_is_valid(tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    final = cache_path(cache_dir, "toy")
    prepare(_spec(), tmp_path, cache_dir, progress=False)
    _run_killed_in_replace(cache_dir)
    old = next(cache_dir.glob(".toy.zarr.old-*"))
    (old / "zarr.json").write_text("{")
    with pytest.raises(GdraeError, match="toy.zarr not found: expected a prepared cache; run `gdrae-data prepare"):
        open_cache(final)  # no whole copy to restore
    prepare(_spec(), tmp_path, cache_dir, progress=False)  # without --force: no cache to keep
    assert "restored" not in caplog.text
    assert sorted(p.name for p in cache_dir.iterdir()) == [old.name, "toy.zarr"]


def test_a_replace_swaps_the_caches_in_one_step_where_the_os_can(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "from_a").touch()
    if not lifecycle._exchange(a, b):
        pytest.skip("no atomic exchange on this OS or file system")
    assert os.listdir(b) == ["from_a"] and os.listdir(a) == []
    cache_dir = tmp_path / "cache"
    prepare(_spec(), tmp_path, cache_dir, progress=False)
    monkeypatch.setattr(os, "rename", lambda *args: pytest.fail("renamed the old cache aside"))
    prepare(_spec(sizes=(2, 6)), tmp_path, cache_dir, force=True, progress=False)
    assert os.listdir(cache_dir) == ["toy.zarr"] and open_cache(cache_path(cache_dir, "toy")).factor_sizes == (2, 6)


@pytest.mark.parametrize("code, message", [
    (errno.ENOSPC, "expected room for the toy cache, got no space left on device"),
    (errno.EROFS, "expected a writable directory for the toy cache, got a read-only file system"),
    (errno.EACCES, "expected a writable .*, got a read-only directory \\(permission denied\\)"),
])
def test_a_full_or_read_only_cache_dir_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, code, message):
    cache_dir = tmp_path / "cache"
    prepare(_spec(), tmp_path, cache_dir, progress=False)
    before = open_cache(cache_path(cache_dir, "toy")).images[:]

    def fail(rows, block):
        raise OSError(code, os.strerror(code), str(rows.work_dir / "bucket-00000"))

    monkeypatch.setattr(PermutedRows, "add", fail)
    with pytest.raises(GdraeError, match=f"^{re.escape(str(cache_dir))}: {message}; nothing was left behind"):
        prepare(_spec(), tmp_path, cache_dir, force=True, progress=False)
    assert os.listdir(cache_dir) == ["toy.zarr"]
    np.testing.assert_array_equal(open_cache(cache_path(cache_dir, "toy")).images[:], before)


def test_a_read_only_cache_dir(tmp_path):
    cache_dir = tmp_path / "cache"
    prepare(_spec(), tmp_path, cache_dir, progress=False)
    cache_dir.chmod(0o555)
    try:
        if os.access(cache_dir, os.W_OK):
            pytest.skip("permissions do not apply to this user (root)")
        with pytest.raises(GdraeError, match=re.escape(str(cache_dir)) + ": .*got a read-only directory"):
            prepare(_spec(), tmp_path, cache_dir, force=True, progress=False)
        assert os.listdir(cache_dir) == ["toy.zarr"]
    finally:
        cache_dir.chmod(0o755)
