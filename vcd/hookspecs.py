"""Hook specifications: the moments of the pipeline that plugins can react to.

Every hook is called with keyword arguments only, so an implementation may
accept any subset of the arguments.  Apart from ``vcd_startup`` (main thread)
and ``vcd_shutdown`` (a thread of its own), hooks are delivered on the plugin's own worker thread
(``vcd-plugin-NAME``) through a bounded queue: a slow plugin delays only itself,
and when its queue is full new events for it are dropped (and logged).
Return values are ignored unless a spec says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from vcd.config import Config
    from vcd.controls import PluginControls

PROJECT = "vcd"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def vcd_startup(config: Config, config_path: Path | None, controls: PluginControls) -> None:
    """The daemon is starting: validate your ``[plugins.NAME]`` table and connect.

    :param config: the validated :class:`vcd.Config`; ``config.plugin_table("NAME")``
        returns your raw table (a dict, ``{}`` when absent).
    :param config_path: the configuration file read, or None for built-in defaults;
        name it in error messages (``config.key_error("plugins.NAME.KEY", "…")`` does).
    :param controls: this plugin's :class:`vcd.PluginControls`, to keep and call from any
        thread: ``set_list(name, values)`` adds :class:`vcd.ListValue` s to a grammar list
        (those set before this hook returns are compiled in before the first segment is
        decoded; later ones take effect between segments), ``pause(reason)`` /
        ``resume(reason)`` stop and restart decoding.  See :mod:`vcd.controls`.

    Called on the main thread, once, before the microphone opens and before
    READY is sent to systemd.  Raise :class:`vcd.ConfigError` to abort start-up
    (exit status 78); any other exception also aborts start-up (exit 1).
    May block for a few seconds at most (systemd's start timeout is running).
    """


@hookspec
def vcd_check_config(config: Config, config_path: Path | None) -> None:
    """Validate your ``[plugins.NAME]`` table without side effects (``vcd check-config``).

    :param config: the validated :class:`vcd.Config` (``config.plugin_table("NAME")``).
    :param config_path: the configuration file read, or None for built-in defaults.

    Same errors as :func:`vcd_startup`, but do not connect, start
    threads or keep state: only raise :class:`vcd.ConfigError` naming the file
    and key.  Optional: a plugin without it is only imported by ``check-config``,
    and its table is first checked when the daemon starts.

    Called on the main thread of ``vcd check-config``; must not block.
    """


@hookspec
def vcd_speech_started(site: str, timestamp: float) -> None:
    """The VAD heard the start of speech.

    :param site: the ``daemon.site`` of this hub.
    :param timestamp: when the VAD detected the start, ``time.time()`` seconds (the
        segment's audio begins up to ``vad.preroll_ms`` + ``vad.trigger_window_ms`` earlier).

    Called on the plugin's worker thread; may block (only this plugin waits).
    """


@hookspec
def vcd_speech_ended(site: str, timestamp: float, audio_s: float) -> None:
    """The VAD closed a speech segment; it goes to the recogniser next.

    :param site: the ``daemon.site`` of this hub.
    :param timestamp: when the segment closed, ``time.time()`` seconds.
    :param audio_s: length of the segment's audio, seconds.

    Segments shorter than ``vad.min_speech_ms`` are dropped and do not reach
    the recogniser, but still end with this hook.
    Called on the plugin's worker thread; may block (only this plugin waits).
    """


@hookspec
def vcd_transcript(site: str, text: str, confidence: float, audio_s: float, decode_ms: float) -> None:
    """The recogniser decoded a segment, whether or not it is a known command.

    :param site: the ``daemon.site`` of this hub.
    :param text: the recognised sentence, or the best guess when not recognised ("" allowed).
    :param confidence: the recogniser's confidence, 0..1.
    :param audio_s: length of the decoded audio, seconds.
    :param decode_ms: time the recogniser took, milliseconds.

    Called on the plugin's worker thread; may block (only this plugin waits).
    """


@hookspec
def vcd_intent(
    site: str, intent: str, slots: dict[str, Any], text: str, confidence: float, timings: dict[str, float]
) -> None:
    """A command was recognised: act on it.

    :param site: the ``daemon.site`` of this hub.
    :param intent: the intent name from the sentence templates, e.g. ``"HassTurnOn"``.
    :param slots: slot name → value (str, int or float), e.g. ``{"name": "kitchen light"}``;
        a fresh copy per plugin.
    :param text: the sentence recognised.
    :param confidence: the recogniser's confidence, 0..1 (≥ ``recognizer.min_confidence``).
    :param timings: ``audio_s`` (segment length, s), ``decode_ms`` (recogniser time, ms),
        ``speech_end`` (``time.time()`` when the segment closed, s) and
        ``recognized_at`` (``time.time()`` when decoding finished, s).

    Called on the plugin's worker thread; may block (only this plugin waits),
    but the user is waiting for the action: act within ~100 ms.
    """


@hookspec
def vcd_unrecognized(site: str, text: str, confidence: float, audio_s: float) -> None:
    """Speech was heard but is not a command (or not confidently one): do nothing with it.

    :param site: the ``daemon.site`` of this hub.
    :param text: the best-matching sentence, for diagnostics only ("" allowed).
    :param confidence: the recogniser's confidence, 0..1.
    :param audio_s: length of the decoded audio, seconds.

    Called on the plugin's worker thread; may block (only this plugin waits).
    """


@hookspec
def vcd_feedback(site: str, kind: str, text: str | None) -> None:
    """Let the user hear what happened: play a short sound for ``kind``, and speak ``text`` when given.

    :param site: where the command was heard: ``daemon.site`` for this device's microphone, or
        the satellite's site (the satellites plugin sends it on to that satellite, whose own
        feedback plugins then get this hook with the same arguments).
    :param kind: ``"wake"`` (the wake word was heard), ``"recognized"`` (a command was
        understood) or ``"not_understood"`` (speech, but no command).
    :param text: an answer to speak (a sentence's ``response:``, a plugin's reply), or None.

    Called on the plugin's worker thread; may block while playing (only this plugin waits).
    """


@hookspec
def vcd_shutdown(reason: str) -> None:
    """The daemon is stopping: flush, say goodbye, release resources.

    :param reason: why, e.g. ``"signal SIGTERM"``, ``"end of input"``, ``"error: …"``.

    Called once, after the audio is closed and the queued events have been
    delivered (or given up on), on a short-lived thread per plugin
    (``vcd-shutdown-NAME``), all plugins in parallel so that one slow plugin
    does not delay the others.  Each may block up to ~1 s (vcd waits 1.2 s in
    all, then exits); exceptions are logged and ignored.  Also called when
    start-up fails after this plugin's ``vcd_startup`` succeeded.
    """
