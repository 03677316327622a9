"""The life cycle of cache directories: staging names, clean-up and restore on this host only, the swap."""
import os
import shutil

import pytest

from gdrae.data.cache import open_cache
from gdrae.data.lifecycle import Staged, cache_path, restorable, staged, staging_path, this_host, tidy, written_aside
from gdrae.errors import GdraeError

from tiny_caches import chunk_file


def _dir(path, size=10):
    path.mkdir(parents=True)
    (path / "chunk").write_bytes(b"x" * size)
    return path


def test_staging_names_carry_the_host_and_the_pid(tmp_path):
    final = cache_path(tmp_path, "toy")
    mine = _dir(staging_path(final, "tmp"))
    assert mine.name.startswith(f".toy.zarr.tmp-{this_host()}-{os.getpid()}-")
    other = _dir(tmp_path / ".toy.zarr.old-node-7.lab-123-abcd0123")  # a host name with a dash
    legacy = _dir(tmp_path / ".toy.zarr.tmp-456-abcd0123")  # written before names carried the host
    _dir(tmp_path / ".toy.zarr.tmp-node")  # not a staging name
    (tmp_path / ".toy.zarr.old-node-1-abcd0123").write_text("a file")  # not a directory
    assert staged(tmp_path) == [Staged(other, "toy", "old", "node-7.lab", 123),
                                Staged(legacy, "toy", "tmp", None, 456),
                                Staged(mine, "toy", "tmp", this_host(), os.getpid())]
    assert [s.here for s in staged(tmp_path)] == [False, True, True]
    assert not staged(tmp_path)[0].dead and not staged(tmp_path)[2].dead  # another host's; this running process


def test_tidy_removes_this_hosts_dead_temporaries_only(tmp_path, dead_pid):
    host = this_host()
    dead = _dir(tmp_path / f".toy.zarr.tmp-{host}-{dead_pid}-0badc0de")
    legacy = _dir(tmp_path / f".toy.zarr.tmp-{dead_pid}-0000abcd")
    running = _dir(tmp_path / f".toy.zarr.tmp-{host}-{os.getpid()}-00c0ffee")
    elsewhere = _dir(tmp_path / f".toy.zarr.tmp-elsewhere-{dead_pid}-0ddba11a")  # its pid means nothing here
    done = tidy(tmp_path)
    assert done == [f"{p}: removed the temporary toy cache of process {dead_pid}, which is no longer running"
                    for p in (legacy, dead)]
    assert not dead.exists() and not legacy.exists() and running.exists() and elsewhere.exists()
    [left] = [s for s in staged(tmp_path) if s.path == elsewhere]
    assert left.describe() == (f"a toy cache being written by process {dead_pid} on host elsewhere, or left by it "
                               "(another host's: left alone)")
    assert tidy(tmp_path) == []


def test_two_set_aside_copies_are_restored_to_the_newest_whole_one(make_cache, dead_pid):
    final = make_cache().path
    cache_dir, host = final.parent, this_host()
    names = {"older": f"{host}-{dead_pid}-0000aaaa", "newer": f"{host}-{dead_pid}-0000bbbb",
             "broken": f"{host}-{dead_pid}-0000cccc", "elsewhere": f"elsewhere-{dead_pid}-0000dddd"}
    copies = {key: cache_dir / f".tiny.zarr.old-{name}" for key, name in names.items()}
    for seconds, (key, copy) in enumerate(copies.items(), start=1):  # in this order, "elsewhere" the newest
        shutil.copytree(final, copy)
        os.utime(copy / "zarr.json", (seconds * 1000, seconds * 1000))
    chunk_file(open_cache(copies["broken"]), 0).unlink()  # a copy whose removal was interrupted
    shutil.rmtree(final)
    tmp_elsewhere = _dir(cache_dir / f".tiny.zarr.tmp-elsewhere-{dead_pid}-0000eeee")

    left = sorted(copies[k] for k in ("older", "broken", "elsewhere"))
    assert restorable(final) == (copies["newer"], left)
    assert not final.exists()  # restorable only reads
    [line] = tidy(cache_dir)
    assert line == (f"{final}: restored from {copies['newer'].name}, where an interrupted `gdrae-data prepare "
                    f"--force` had set it aside; left {', '.join(p.name for p in left)}")
    assert open_cache(final).n == 120 and not copies["newer"].exists()
    assert all(copies[k].exists() for k in ("older", "broken", "elsewhere")) and tmp_elsewhere.exists()
    assert tidy(cache_dir) == []  # the cache is there: nothing more to restore
    [elsewhere] = [s for s in staged(cache_dir) if s.path == copies["elsewhere"]]
    assert elsewhere.describe() == (f"an earlier tiny cache set aside by process {dead_pid} on host elsewhere "
                                    "(another host's: left alone); if that prepare is over, remove it once "
                                    "tiny.zarr is good")


def test_open_cache_renames_nothing_and_names_the_command_that_restores(make_cache, dead_pid):
    final = make_cache().path
    aside = final.with_name(f".tiny.zarr.old-{this_host()}-{dead_pid}-0000aaaa")
    final.rename(aside)
    with pytest.raises(GdraeError) as err:
        open_cache(final)
    assert str(err.value) == (f"cache {final} not found: expected a prepared cache, got an earlier one set aside as "
                              f"{aside.name} by an interrupted `gdrae-data prepare --force`; run "
                              f"`gdrae-data list --cache-dir {final.parent}` to restore it")
    assert os.listdir(final.parent) == [aside.name]


def test_written_aside_swaps_in_only_a_complete_directory(tmp_path):
    final = tmp_path / "cache" / "toy.zarr"
    for text in ("first", "second"):
        with written_aside(final) as tmp:
            _dir(tmp)
            (tmp / "chunk").write_text(text)
        assert (final / "chunk").read_text() == text and os.listdir(final.parent) == ["toy.zarr"]
    with pytest.raises(KeyboardInterrupt):
        with written_aside(final) as tmp:
            _dir(tmp)
            raise KeyboardInterrupt
    assert (final / "chunk").read_text() == "second" and os.listdir(final.parent) == ["toy.zarr"]
