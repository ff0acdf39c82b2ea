"""vcd: an offline voice-command daemon.  The names here are the public plugin API.

A plugin needs only ``import vcd``::

    import vcd

    @vcd.hookimpl
    def vcd_intent(site, intent, slots):
        ...
"""

from __future__ import annotations

from vcd.config import Config
from vcd.errors import ConfigError, ExitCode, VcdError
from vcd.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["Config", "ConfigError", "ExitCode", "VcdError", "hookimpl", "__version__"]
