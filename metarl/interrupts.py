"""Ctrl-C and SIGTERM for long runs: both stop at once, but never in the middle of a write.

:func:`metarl.training.train` turns SIGTERM into :class:`Stop` (Ctrl-C raises
``KeyboardInterrupt``), catches both, saves the last finished iteration and returns. The writes of
the run's files happen inside :func:`held_signals`, so that a signal never lands inside them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Stop", "held_signals", "stop_on_sigterm"]


class Stop(Exception):
    """Raised by :func:`stop_on_sigterm` to stop like Ctrl-C."""


def stop_on_sigterm(signum: int, frame: Any) -> None:
    """A SIGTERM handler that raises :class:`Stop`."""
    raise Stop()


@contextlib.contextmanager
def held_signals(reraise: bool = True) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the block writes files.

    Both stop training by raising an exception at whatever line runs when they arrive. Inside a
    write that can leave a log line half-written, or a lock of the TensorBoard writer held so
    that the save on the way out waits for it forever (seen: a SIGTERM right after an iteration
    hung ``train.py``). Here a signal is only noted; when the block ends it is raised as it
    would have been (``reraise``: ``KeyboardInterrupt`` or :class:`Stop`) or dropped (the save
    on the way out: a second Ctrl-C must not cut that save short).
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives Python signal handlers; nothing to hold
        return
    caught: list[int] = []

    def note(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught and reraise:
        if caught[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stop()
