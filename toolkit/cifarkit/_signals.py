"""Process-level signal handling for the entry points (the CLI, benchmark scripts)."""

from __future__ import annotations

import signal
import threading
from typing import Any


def sigterm_as_interrupt() -> None:
    """Make a kill (SIGTERM) stop the process the way Ctrl-C does.

    Training catches ``KeyboardInterrupt``: the run is marked interrupted and its last
    finished epoch stays resumable. Without this, ``kill`` (the usual way to stop a job run
    with ``nohup … &``, which ignores Ctrl-C's SIGINT) ended the process with no record.
    Only possible from the main thread; elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
