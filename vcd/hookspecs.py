"""Hook specifications: the moments of the pipeline that plugins can react to.

Every hook is called with keyword arguments only, so an implementation may
accept any subset of the arguments.  Apart from ``vcd_startup`` and ``vcd_health`` (main
thread) and ``vcd_shutdown`` (a thread of its own), hooks are delivered on the plugin's own worker thread
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
def vcd_wake(site: str, name: str, score: float, timestamp: float) -> None:
    """The wake word was heard: the next command goes to the recogniser (only with ``[wake] enabled``).

    :param site: the ``daemon.site`` of this hub.
    :param name: which wake word, e.g. ``"alexa"`` (a built-in model's name, the stem of
        the ``.tflite`` file of a model named by its ``.json`` path, or the typed
        ``wake.phrase`` in lower case, e.g. ``"hey computer"``).
    :param score: the model's probability (a typed phrase: its confidence) when it crossed
        ``wake.threshold``, 0..1.
    :param timestamp: when the wake word ended, ``time.time()`` seconds (estimated from the
        end of its speech segment; the hook comes after that segment closed).

    The command that follows is reported by :func:`vcd_transcript` and
    :func:`vcd_intent` or :func:`vcd_unrecognized` as usual; when none
    comes within ``wake.window_ms`` nothing more is called.
    Called on the plugin's worker thread; may block (only this plugin waits),
    but a plugin that plays a sound should do so at once.
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
def vcd_health() -> str | None:
    """Can this plugin do its work right now?  The daemon's liveness check (systemd's watchdog).

    :return: None when the plugin is working (or recovering by itself, e.g. reconnecting
        to a server), else a short description of what is wrong, e.g.
        ``"network thread has died"``.  It goes to the log (once per change) and to
        systemd's ``STATUS=``, and while any plugin reports a problem vcd stops
        pinging the watchdog (so systemd restarts it).

    Optional: a plugin without it counts as healthy.  Called on the main thread
    about once a second while the daemon runs (after :func:`vcd_startup`);
    must not block: look at state, do no I/O (well under 10 ms).  An
    exception counts as a problem.
    """


@hookspec
def vcd_feedback(site: str, kind: str, text: str | None) -> None:
    """Something happened that the person speaking should hear about: play a sound, speak an answer.

    :param site: where the person is: the ``daemon.site`` of this hub, or the satellite's site.
    :param kind: ``"wake"`` (a wake word was heard), ``"recognized"`` (a command was understood)
        or ``"not_understood"`` (speech was heard but is not a command).
    :param text: an answer to speak (the rendered ``response`` of the sentence file), or None.

    The daemon calls it after each decoded segment (after ``vcd_intent`` / ``vcd_unrecognized``);
    the wake-word stage calls it with ``"wake"``; a satellite calls it on its own plugin host.
    Called on the plugin's worker thread; may block while the sound plays (only this plugin waits).
    """


@hookspec
def vcd_say(site: str, text: str, request_id: str) -> None:
    """Speak ``text`` at ``site``: asked by a plugin through ``controls.say(text, site)`` (:mod:`vcd.controls`).

    :param site: where to speak it.
    :param text: what to say, plain words.
    :param request_id: the asker's id for this request ("" when none), handed back in :func:`vcd_said`.

    A plugin that speaks (the shipped ``feedback`` plugin) implements it and calls
    ``controls.said(site, text, request_id)`` when it has finished, spoken or not.
    Called on the plugin's worker thread; may block while it speaks (only this plugin waits).
    """


@hookspec
def vcd_said(site: str, text: str, request_id: str) -> None:
    """A :func:`vcd_say` request is done (spoken, or given up on): e.g. publish Hermes ``sayFinished``.

    :param site: the site of the request.
    :param text: what was to be said.
    :param request_id: the id the asker gave ("" when none).

    When no plugin speaks (none implements ``vcd_say``) it follows the request at once.
    Called on the plugin's worker thread; may block (only this plugin waits).
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
