"""systemd's sd_notify: READY, STATUS, WATCHDOG and STOPPING lines for `vcd run`, `satellite` and `wyoming`."""

from __future__ import annotations

import logging
import os
from typing import Any

_LOGGER = logging.getLogger(__name__)


class Notifier:
    """systemd sd_notify messages (no-ops when not started by systemd)."""

    def __init__(self) -> None:
        self._notifier: Any = None
        if os.environ.get("NOTIFY_SOCKET"):
            try:
                import sdnotify

                self._notifier = sdnotify.SystemdNotifier()
                if self._notifier.socket is not None:
                    self._notifier.socket.setblocking(False)  # never stall the daemon on a full socket
            except ImportError:
                _LOGGER.warning("sdnotify is not installed; systemd will not be notified")
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_s = usec / 2e6 if usec and (not pid or pid == str(os.getpid())) else 0.0

    def notify(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))
