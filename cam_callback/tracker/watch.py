"""Noticing a ``fit`` that left without ``on_train_end``: a Ctrl-C, or an error raised
through it.

Keras calls no callback when ``fit`` raises (its epoch loop has no ``finally``;
see ``keras/src/backend/*/trainer.py``), so a callback cannot learn of it from
Keras. :class:`FitWatch` finds the frame of the running ``fit`` on the training
thread's stack at ``on_train_begin`` and, from a small daemon thread, looks every
:data:`INTERVAL` seconds whether that frame is still on the stack. Once it is gone
and :meth:`FitWatch.stop` was not called (``on_train_end`` calls it), ``fit`` left
abnormally, and the watch calls back once.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

INTERVAL = 0.2  # seconds between two looks at the training thread's stack
DEPTH = 64  # frames searched above the hook for the ``fit`` that calls it


def fit_frame(model: Any, depth: int = DEPTH) -> FrameType | None:
    """The frame of the ``fit`` of ``model`` that is calling us, or ``None``.

    Example:
        >>> fit_frame(object()) is None  # called outside any fit
        True
    """
    frame: FrameType | None = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model:
            return frame
        frame = frame.f_back
    return None


class FitWatch:
    """Calls ``on_gone(watch)`` once, from its own thread, when ``model``'s running
    ``fit`` has left the training thread's stack before :meth:`stop`.

    Create it inside a callback hook of that ``fit`` (``on_train_begin``). Without a
    ``fit`` above the caller (hooks called by hand), it watches nothing.

    Args:
        model: The model whose ``fit`` calls the hook.
        on_gone: Called with the watch when ``fit`` left without :meth:`stop`.

    Example:
        >>> watch = FitWatch(object(), print)  # not inside a fit: watches nothing
        >>> watch.watching, watch.abandoned()
        (False, False)
    """

    def __init__(self, model: Any, on_gone: Callable[[FitWatch], None]) -> None:
        self._frame: FrameType | None = fit_frame(model)
        self._thread_id = threading.get_ident()
        self._on_gone = on_gone
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        if self._frame is not None:
            self.thread = threading.Thread(target=self._loop, name="cam-tracker-watch", daemon=True)
            self.thread.start()

    @property
    def watching(self) -> bool:
        """Whether a ``fit`` was found and is watched (until it ends or :meth:`stop`)."""
        return self._frame is not None and not self._stop.is_set()

    def abandoned(self) -> bool:
        """Whether the watched ``fit`` left its thread's stack without :meth:`stop`."""
        frame = self._frame
        if frame is None or self._stop.is_set():
            return False
        top = sys._current_frames().get(self._thread_id)
        while top is not None:
            if top is frame:
                return False
            top = top.f_back
        return True

    def stop(self, join: bool = True) -> None:
        """Stops watching (``fit`` ended normally, or its end was handled); repeatable.

        Joins the watch thread unless called from it, or ``join=False`` (the caller
        holds a lock that ``on_gone`` takes).
        """
        self._stop.set()
        self._frame = None  # holds fit's locals (the data) no longer
        thread = self.thread
        if join and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL):
            if self.abandoned():
                self._frame = None
                self._on_gone(self)
                return
