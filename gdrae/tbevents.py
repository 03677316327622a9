"""TensorBoard scalars and images of a run, written in the caller's thread.

tensorboardX's ``SummaryWriter`` writes its event file from a thread of its
own: a write that fails there (a full disk) ends that thread with a
traceback of its own, and the writer's next calls wait forever on its full
queue. :class:`EventFile` writes the same records (tensorboardX's summaries
and record format) where it is called, so a failed write is the one-line
error of :func:`gdrae.errors.writing`, naming the folder.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.summary import image, scalar

from gdrae.errors import writing

FLUSH_SECONDS = 120  # as SummaryWriter: the file reaches the disk at least this often (and when its buffer fills)
WHAT = "the TensorBoard events"


class EventFile:
    """A new event file in ``logdir``, with ``SummaryWriter``'s ``add_scalar``, ``add_image`` and ``close``.

    ``purge_step`` (a resumed run's next step): TensorBoard hides the records
    of that step and later ones in the files before this one.
    """

    def __init__(self, logdir: str | Path, purge_step: int | None = None) -> None:
        self.logdir = Path(logdir)
        with writing(self.logdir, WHAT):
            self.logdir.mkdir(parents=True, exist_ok=True)
            self.events = EventsWriter(str(self.logdir / "events"))
        self.flushed = time.monotonic()
        if purge_step is not None:
            self._write(Event(step=purge_step, file_version="brain.Event:2"))
            self._write(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._write(Event(step=step, summary=scalar(tag, value)))

    def add_image(self, tag: str, array: np.ndarray, step: int, dataformats: str = "CHW") -> None:
        self._write(Event(step=step, summary=image(tag, array, dataformats=dataformats)))

    def _write(self, event: Event) -> None:
        event.wall_time = time.time()
        with writing(self.logdir, WHAT):
            self.events.write_event(event)
            if time.monotonic() - self.flushed > FLUSH_SECONDS:
                self.events.flush()
                self.flushed = time.monotonic()

    def close(self) -> None:
        with writing(self.logdir, WHAT):
            self.events.close()
