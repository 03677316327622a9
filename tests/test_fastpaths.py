"""The switches of gdrae.fastpaths; each fast path's parity test sits with its module's tests (docs/internals.md)."""
import pytest

from gdrae.fastpaths import ENV, FAST_PATHS, fast


def test_every_fast_path_is_on_unless_named(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert all(fast(name) for name in FAST_PATHS)
    monkeypatch.setenv(ENV, "gbt, chunk_files")
    assert [name for name in FAST_PATHS if not fast(name)] == ["chunk_files", "gbt"]
    monkeypatch.setenv(ENV, "all")
    assert not any(fast(name) for name in FAST_PATHS)


def test_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match="fast path: expected one of chunk_files, gbt"):
        fast("chunk")
