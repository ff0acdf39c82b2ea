"""Errors vcd raises, and the exit codes the command line turns them into."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit status of every ``vcd`` command (documented in the README).

    The values follow ``sysexits.h`` where one fits, so that systemd's
    ``RestartPreventExitStatus=`` can name the configuration error.
    """

    OK = 0
    FAILURE = 1  # a runtime failure (audio device lost, model broken …)
    USAGE = 2  # bad command line (argparse uses 2 as well)
    NO_INPUT = 66  # an input file (audio, sentences, data folder) is missing or unreadable
    CONFIG = 78  # the configuration file is invalid: restarting will not help


class VcdError(Exception):
    """Base of every error vcd reports as one line, ``Error: <message>``."""

    exit_code = ExitCode.FAILURE


class ConfigError(VcdError):
    """The configuration is invalid; the message names the file and the key path."""

    exit_code = ExitCode.CONFIG


class AudioError(VcdError):
    """Audio could not be read or decoded; the message names the file or device."""

    exit_code = ExitCode.NO_INPUT


class GrammarError(VcdError):
    """A sentence template file is invalid; the message names the file (and line where known)."""

    exit_code = ExitCode.NO_INPUT


class ModelError(VcdError):
    """The acoustic model file is missing or does not load."""

    exit_code = ExitCode.FAILURE


class PluginError(VcdError):
    """A plugin could not be loaded or configured."""

    exit_code = ExitCode.CONFIG


class UsageError(VcdError):
    """A command-line value argparse cannot check itself (e.g. an unknown name in a list)."""

    exit_code = ExitCode.USAGE


class AdaptError(VcdError):
    """Adaptation to a household's voices could not run: no usable clips, or a model that does not load."""

    exit_code = ExitCode.FAILURE


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped, so that an error stays one line.

    TOML keys, file names and exception messages may hold any character; ``\\n`` in one must not
    split the ``Error: …`` line that systemd's journal and scripts read.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def did_you_mean(name: str, known: Iterable[str], quote: bool = True) -> str:
    """`` (did you mean 'NAME'?)`` for the known name closest to a misspelt ``name``, or "" if none is close.

    Keys of a TOML file are quoted (``quote``); names from code, such as hook names, are not.
    """
    close = difflib.get_close_matches(name, list(known), n=1)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if quote else f" (did you mean {close[0]}?)"
