"""Bounded shutdown: on SIGTERM or SIGINT stop taking work, cancel running work at its next tile, and
exit within ``N2N_SHUTDOWN_SECONDS`` whatever is still running.

The server (uvicorn) owns the signal handlers; ``stop_on_signals`` chains onto them from the
lifespan, which runs in the main thread under a real server (under a test client it does nothing).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger("n2n")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stopping: threading.Event, seconds: float) -> Iterator[None]:
    """Within the block, the first SIGTERM/SIGINT sets ``stopping`` and arms a deadline that ends the
    process ``seconds`` later if it has not exited by then; the previous handlers still run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def handle(sig: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            log.warning("stopping: no new work; running work ends at its next tile; exit within %.0f s", seconds)
            threading.Thread(target=_exit_after, args=(seconds,), daemon=True, name="n2n-shutdown-deadline").start()
        handler = previous[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)

    for sig in SIGNALS:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_after(seconds: float) -> None:
    threading.Event().wait(seconds)
    log.error("shutdown took longer than %.0f s (N2N_SHUTDOWN_SECONDS): exiting now", seconds)
    logging.shutdown()
    os._exit(1)
