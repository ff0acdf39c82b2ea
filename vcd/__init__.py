"""vcd: an offline voice-command daemon.  The names here are the public plugin API.

A plugin needs only ``import vcd``::

    import vcd

    @vcd.hookimpl
    def vcd_intent(site, intent, slots):
        ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vcd.config import Config
from vcd.controls import ListValue, PluginControls
from vcd.errors import ConfigError, ExitCode, VcdError, did_you_mean
from vcd.hookspecs import hookimpl

if TYPE_CHECKING:
    from vcd.grammar import BUNDLED_SENTENCES, number_words, sentence_files

__version__ = "0.1.0"

__all__ = [
    "BUNDLED_SENTENCES",
    "Config",
    "ConfigError",
    "ExitCode",
    "ListValue",
    "PluginControls",
    "VcdError",
    "__version__",
    "did_you_mean",
    "hookimpl",
    "number_words",
    "sentence_files",
]

# Imported on first use: vcd.grammar brings in hassil (~0.15 s), which ``import vcd`` should not pay for.
_LAZY = {"BUNDLED_SENTENCES": "vcd.grammar", "sentence_files": "vcd.grammar", "number_words": "vcd.grammar"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vcd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
