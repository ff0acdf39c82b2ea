"""Example plugin: run a program when a command is recognised — a template for your own plugins.

Enable it and map intents to programs in config.toml::

    [plugins]
    enabled = ["console", "mqtt", "example_command"]

    [plugins.example_command]
    # intent name = the program and its arguments; {slot} is replaced by the slot's value
    HassTurnOn = ["notify-send", "Turning on {name}"]
    HassTurnOff = ["/usr/local/bin/lights", "off", "{name}"]
    timeout_s = 10   # optional: a program still running after this is killed

The program is started directly, not through a shell, so slot values cannot
inject shell commands.  Copy this file into a folder listed in
``plugins.dirs`` (and rename it) to start your own plugin.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import vcd

_LOGGER = logging.getLogger(__name__)

NAME = "example_command"
_commands: dict[str, list[str]] = {}
_timeout_s = 10.0


@vcd.hookimpl
def vcd_check_config(config: vcd.Config) -> None:
    """``vcd check-config``: only validate the table."""
    _parse(config)


@vcd.hookimpl
def vcd_startup(config: vcd.Config, config_path: Path | None) -> None:
    """Check the ``[plugins.example_command]`` table; raise ConfigError to stop vcd from starting."""
    global _timeout_s
    _timeout_s, commands = _parse(config)
    _commands.clear()
    _commands.update(commands)
    _LOGGER.info("%s: programs for %s", NAME, ", ".join(_commands) or "no intents")


def _parse(config: vcd.Config) -> tuple[float, dict[str, list[str]]]:
    """(timeout_s, intent → argv) from the table; ConfigError naming the file and key otherwise."""
    table = config.plugin_table(NAME)
    timeout = table.pop("timeout_s", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < float("inf"):
        raise config.key_error(f"plugins.{NAME}.timeout_s", f"must be a number of seconds > 0 (got {timeout!r})")
    for intent, argv in table.items():
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            example = '["notify-send", "hi"]'
            raise config.key_error(
                f"plugins.{NAME}.{intent}", f"must be a program and its arguments, e.g. {example} (got {argv!r})"
            )
    return float(timeout), table


@vcd.hookimpl
def vcd_intent(intent: str, slots: dict[str, Any]) -> None:
    """Run the program mapped to ``intent`` (this runs on this plugin's own thread; blocking is fine)."""
    argv = _commands.get(intent)
    if argv is None:
        return
    try:
        command = [arg.format_map(slots) for arg in argv]
    except (KeyError, ValueError) as exc:
        _LOGGER.warning("%s: %s: cannot fill in %s from slots %s (%s)", NAME, intent, argv, slots, exc)
        return
    _LOGGER.info("%s: %s: running %s", NAME, intent, command)
    try:
        done = subprocess.run(command, timeout=_timeout_s, capture_output=True, text=True, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _LOGGER.warning("%s: %s: %s failed: %s", NAME, intent, command[0], exc)
        return
    if done.returncode != 0:
        _LOGGER.warning("%s: %s: %s exited with %d: %s", NAME, intent, command[0], done.returncode, done.stderr.strip())
