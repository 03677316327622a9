import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one thread: tiny tensors avoid OpenMP synchronisation costs (large on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
