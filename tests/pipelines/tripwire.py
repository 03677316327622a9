"""A pickled object that records its own unpickling: proof that a reader never unpickles a raw file."""
from __future__ import annotations

TRIPPED: list[str] = []  # set by PickleTripwire when something unpickles it


class PickleTripwire:
    """An object whose unpickling records itself in :data:`TRIPPED` and raises.

    Put in the dSprites ``metadata`` entry (or beside the 3D-faces tensor), it
    proves a reader never unpickles it.
    """

    def __reduce__(self):
        return (_trip, ("metadata was unpickled",))


def _trip(message: str) -> None:
    TRIPPED.append(message)
    raise RuntimeError(message)
