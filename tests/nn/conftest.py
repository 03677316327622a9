import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (the fixture is in tests/conftest.py)."""
