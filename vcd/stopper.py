"""Signals: SIGTERM and SIGINT only set a stop event (with its reason) that the daemon's threads watch."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any, Self

_LOGGER = logging.getLogger(__name__)


class Stopper:
    """The stop event and its reason; as a context manager, SIGTERM/SIGINT only set it.

    ``with Stopper() as stopper:`` installs the handlers on entry and puts
    the previous ones back on exit (uvicorn's ``capture_signals``), so vcd can
    run inside another program.  A second SIGINT exits at once.  Unlike
    uvicorn, a signal caught is not raised again on exit: the daemon has
    shut down in order, and ``vcd run`` exits 0.  Outside the main thread,
    where Python cannot install handlers, the context does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self._previous: dict[int, Any] = {}

    def request(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        self.event.set()

    def install(self) -> Self:
        """Install the handlers (main thread only; elsewhere nothing); ``__exit__`` puts the previous ones back."""
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            # None: the handler was not installed from Python; the default is the best guess
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set() and signum == signal.SIGINT:
            sys.stderr.write("vcd: second interrupt, exiting now\n")
            sys.stderr.flush()
            os._exit(130)
        _LOGGER.info("received %s", name)
        self.request(f"signal {name}")
