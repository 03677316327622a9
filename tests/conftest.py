import subprocess
import sys

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one thread: tiny tensors avoid OpenMP synchronisation costs (large on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def server():
    """A loopback HTTP server on 127.0.0.1 (tests/loopback.py), closed after the test."""
    from loopback import Server

    s = Server()
    yield s
    s.close()


@pytest.fixture
def dead_pid():
    """The pid of a process that has just ended on this host (what a killed prepare leaves in its names)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture(scope="session")
def sector_cache(tmp_path_factory):
    """A cache folder holding sector2dunif.zarr (the 4,096-point grid that the Sector2D metrics read)."""
    from pipelines.registry import get_spec
    from pipelines.store import prepare

    cache_dir = tmp_path_factory.mktemp("sector-cache")
    prepare(get_spec("sector2dunif"), cache_dir / "raw", cache_dir, progress=False)
    return cache_dir
