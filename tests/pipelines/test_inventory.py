"""gdrae-data list's report: raw files, caches and leftovers, read without changing anything."""
import os

from gdrae.data.lifecycle import this_host
from pipelines.inventory import DatasetState, inventory
from pipelines.registry import get_spec
from pipelines.store import prepare


def test_inventory_reports_raw_files_caches_and_leftovers_and_changes_nothing(tmp_path, dead_pid):
    raw, cache_dir = tmp_path / "Datasets", tmp_path / "cache"
    for name in ("sector2d", "sector2dunif"):
        prepare(name, raw, cache_dir, progress=False)
    (cache_dir / "sector2d.zarr" / "zarr.json").write_text("{")
    dsprites = raw / get_spec("shapes2d").raw_files[0].relpath
    dsprites.parent.mkdir(parents=True)
    dsprites.write_bytes(b"")
    killed = cache_dir / f".sector2dunif.zarr.tmp-{this_host()}-{dead_pid}-0badc0de"
    killed.mkdir()
    (killed / "chunk").write_bytes(b"x" * 100)
    before = sorted(os.listdir(cache_dir))

    found = inventory(raw, cache_dir)
    states = {d.name: d for d in found.datasets}
    unif = states["sector2dunif"]
    assert (unif.raw, unif.cache, unif.rows, unif.problem) == ("synthetic", "valid", 4096, "")
    assert unif.bytes_on_disk > 0
    assert states["sector2d"].cache == "INVALID" and states["sector2d"].problem.startswith(
        f"{cache_dir / 'sector2d.zarr'}: expected a zarr group")
    assert states["shapes2d"] == DatasetState("shapes2d", "present", "missing")
    assert states["shapes3d"] == DatasetState("shapes3d", "0/1 files", "missing")
    [left] = found.leftovers
    assert (left.path, left.bytes_on_disk) == (killed, 100) and "sector2dunif" in left.note
    assert sorted(os.listdir(cache_dir)) == before  # a pure read: the dead temporary is tidy()'s to remove
