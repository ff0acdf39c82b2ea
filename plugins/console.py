"""Console plugin: prints what the daemon hears and recognises, one line per event, on stdout.

Configured by an optional ``[plugins.console]`` table::

    [plugins.console]
    format = "text"        # "text" for people, "json" for one JSON object per line
    events = ["speech", "wake", "intent", "unrecognized"]   # any of: speech, wake, transcript, intent, unrecognized, feedback
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import vcd

NAME = "console"
EVENTS = ("speech", "wake", "transcript", "intent", "unrecognized", "feedback")
DEFAULT_EVENTS = ["speech", "wake", "intent", "unrecognized"]
_settings: dict[str, Any] = {"format": "text", "events": set(DEFAULT_EVENTS)}
_lock = threading.Lock()


def _emit(event: str, line: str, **fields: Any) -> None:
    if event.split("_")[0] not in _settings["events"]:
        return
    if _settings["format"] == "json":
        line = json.dumps({"event": event, **fields}, ensure_ascii=False)
    with _lock:
        print(line, file=sys.stdout, flush=True)


@vcd.hookimpl
def vcd_check_config(config: vcd.Config) -> None:
    _parse(config)


@vcd.hookimpl
def vcd_startup(config: vcd.Config, config_path: Path | None) -> None:
    _settings.update(_parse(config))


def _parse(config: vcd.Config) -> dict[str, Any]:
    """The validated ``[plugins.console]`` table; ConfigError naming the file and key otherwise."""
    table = config.plugin_table(NAME)
    unknown = sorted(set(table) - {"format", "events"})
    if unknown:
        raise config.key_error(f"plugins.{NAME}.{unknown[0]}", "unknown key (known: format, events)")
    fmt = table.get("format", "text")
    if fmt not in ("text", "json"):
        raise config.key_error(f"plugins.{NAME}.format", f"must be 'text' or 'json' (got {fmt!r})")
    events = table.get("events", DEFAULT_EVENTS)
    if not isinstance(events, list) or not all(e in EVENTS for e in events):
        raise config.key_error(f"plugins.{NAME}.events", f"must be a list of {', '.join(EVENTS)} (got {events!r})")
    return {"format": fmt, "events": set(events)}


@vcd.hookimpl
def vcd_speech_started(site: str, timestamp: float) -> None:
    _emit("speech_started", f"[{site}] speech started", site=site, timestamp=timestamp)


@vcd.hookimpl
def vcd_speech_ended(site: str, timestamp: float, audio_s: float) -> None:
    _emit("speech_ended", f"[{site}] speech ended ({audio_s:.2f} s)", site=site, timestamp=timestamp, audio_s=audio_s)


@vcd.hookimpl
def vcd_wake(site: str, name: str, score: float, timestamp: float) -> None:
    _emit("wake", f"[{site}] wake word {name!r} (score {score:.2f})", site=site, name=name, score=score,
          timestamp=timestamp)


@vcd.hookimpl
def vcd_transcript(site: str, text: str, confidence: float, audio_s: float, decode_ms: float) -> None:
    _emit(
        "transcript",
        f"[{site}] heard {text!r} (confidence {confidence:.2f}, {audio_s:.2f} s audio, decoded in {decode_ms:.0f} ms)",
        site=site,
        text=text,
        confidence=confidence,
        audio_s=audio_s,
        decode_ms=decode_ms,
    )


@vcd.hookimpl
def vcd_intent(
    site: str, intent: str, slots: dict[str, Any], text: str, confidence: float, timings: dict[str, float]
) -> None:
    latency_ms = (time.time() - timings["speech_end"]) * 1000
    slot_text = " ".join(f"{k}={v!r}" for k, v in slots.items())
    _emit(
        "intent",
        f"[{site}] intent {intent} {slot_text} — {text!r} (confidence {confidence:.2f}, "
        f"{latency_ms:.0f} ms after speech end)".replace("  ", " "),
        site=site,
        intent=intent,
        slots=slots,
        text=text,
        confidence=confidence,
        timings=timings,
    )


@vcd.hookimpl
def vcd_unrecognized(site: str, text: str, confidence: float, audio_s: float) -> None:
    _emit(
        "unrecognized",
        f"[{site}] not a command (best guess {text!r}, confidence {confidence:.2f})",
        site=site,
        text=text,
        confidence=confidence,
        audio_s=audio_s,
    )


@vcd.hookimpl
def vcd_feedback(site: str, kind: str, text: str | None) -> None:
    answer = f": {text!r}" if text else ""
    _emit("feedback", f"[{site}] feedback {kind}{answer}", site=site, kind=kind, text=text)


@vcd.hookimpl
def vcd_shutdown(reason: str) -> None:
    with _lock:
        sys.stdout.flush()
