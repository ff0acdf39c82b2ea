"""Rhasspy Hermes: the payloads vcd publishes (ASR, NLU, dialogue sessions) and the toggles it obeys.

Payloads follow rhasspy-hermes' dataclasses (``rhasspyhermes.asr.AsrTextCaptured``,
``rhasspyhermes.nlu.NluIntent`` …; the tests validate them against those).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import vcd

from .templates import as_text

TEXT_CAPTURED_TOPIC = "hermes/asr/textCaptured"
NOT_RECOGNIZED_TOPIC = "hermes/nlu/intentNotRecognized"
SESSION_STARTED_TOPIC = "hermes/dialogueManager/sessionStarted"
SESSION_ENDED_TOPIC = "hermes/dialogueManager/sessionEnded"
WAKEWORD_ID = "default"  # Rhasspy's wake-word id when none is configured; vcd's "wake word" is its VAD
TTS_SAY_TOPIC = "hermes/tts/say"
TTS_SAY_FINISHED_TOPIC = "hermes/tts/sayFinished"
TOGGLE_TOPICS = ("hermes/asr/toggleOff", "hermes/asr/toggleOn", "hermes/hotword/toggleOff", "hermes/hotword/toggleOn")


@dataclass(frozen=True)
class Toggle:
    """A ``hermes/asr|hotword/toggleOn|Off`` message: which component, on or off, and why."""

    component: str  # "asr" or "hotword"
    on: bool
    site: str
    reason: str  # "" (unknown: overrides all other reasons), "dialogueSession", "playAudio", "ttsSay"


def _json_object(payload: bytes) -> dict[str, Any]:
    """A message's JSON object (an empty payload: ``{}``); ValueError saying what is wrong otherwise."""
    try:
        data = json.loads(payload or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def parse_toggle(topic: str, payload: bytes) -> Toggle:
    """The toggle a message on one of :data:`TOGGLE_TOPICS` asks for (ValueError for a malformed payload)."""
    _, component, action = topic.split("/")
    data = _json_object(payload)
    site, reason = data.get("siteId", "default"), data.get("reason", "") or ""
    if not isinstance(site, str) or not isinstance(reason, str):
        raise ValueError("siteId and reason must be strings")
    return Toggle(component, action == "toggleOn", site, reason)


@dataclass(frozen=True)
class TtsSay:
    """A ``hermes/tts/say`` request (``rhasspyhermes.tts.TtsSay``): what to say, where, and the ids to answer with."""

    text: str
    site: str
    id: str  # "" when the request has none
    session_id: str


def parse_tts_say(payload: bytes) -> TtsSay:
    """The request a ``hermes/tts/say`` message makes (ValueError for a malformed payload)."""
    data = _json_object(payload)
    text, site = data.get("text"), data.get("siteId", "default")
    ident, session = data.get("id") or "", data.get("sessionId") or ""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'text' must be a non-empty string")
    if not all(isinstance(v, str) for v in (site, ident, session)):
        raise ValueError("siteId, id and sessionId must be strings")
    return TtsSay(text, site, ident, session)


def hermes_say_finished(site: str, request_id: str, session_id: str) -> dict[str, Any]:
    """The payload of ``hermes/tts/sayFinished`` (``rhasspyhermes.tts.TtsSayFinished``)."""
    return {"id": request_id or None, "siteId": site, "sessionId": session_id or None}


def spoken_value(value: Any, text: str) -> str:
    """The words of ``text`` that said ``value``: a list value as it is, a number in words ("twenty one")."""
    raw = as_text(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e9 and value == value:
        try:
            words = vcd.number_words(value)
        except (ValueError, ArithmeticError, KeyError):  # unicode-rbnf has no words for it
            return raw
        if re.search(rf"\b{re.escape(words)}\b", text, re.IGNORECASE):
            return words
    return raw


def intent_topic(intent: str) -> str:
    """``hermes/intent/<intentName>``."""
    return f"hermes/intent/{intent}"


def _tokens(text: str) -> list[list[dict[str, Any]]]:
    tokens = []
    for match in re.finditer(r"\S+", text):
        tokens.append(
            {
                "value": match.group(),
                "confidence": 1.0,
                "rangeStart": match.start(),
                "rangeEnd": match.end(),
                "time": None,
            }
        )
    return [tokens]


def hermes_slot(name: str, value: Any, text: str, confidence: float) -> dict[str, Any]:
    """One Rhasspy slot: entity, slotName, rawValue, value{kind, value}, confidence and, when found, range."""
    raw = spoken_value(value, text)
    kind = "Number" if isinstance(value, int | float) and not isinstance(value, bool) else "Unknown"
    slot: dict[str, Any] = {
        "entity": name,
        "slotName": name,
        "rawValue": raw,
        "value": {"kind": kind, "value": value},
        "confidence": round(confidence, 4),
    }
    found = re.search(re.escape(raw), text, re.IGNORECASE) if raw else None
    if found:
        start, end = found.span()  # in ``text`` itself: text.lower() can be longer ("İ" → "i̇")
        slot["range"] = {"start": start, "end": end, "rawStart": start, "rawEnd": end}
    return slot


def hermes_intent(
    site: str, intent: str, slots: dict[str, Any], text: str, confidence: float, session_id: str,
    query_id: str = "", lang: str = "en",
) -> dict[str, Any]:
    """The payload of ``hermes/intent/<intentName>`` in Rhasspy's shape (``rhasspyhermes.nlu.NluIntent``)."""
    return {
        "input": text,
        "intent": {"intentName": intent, "confidenceScore": round(confidence, 4)},
        "slots": [hermes_slot(name, value, text, confidence) for name, value in slots.items()],
        "siteId": site,
        "id": query_id or session_id,
        "sessionId": session_id,
        "customData": None,
        "asrTokens": _tokens(text),
        "asrConfidence": round(confidence, 4),
        "rawInput": text,
        "wakewordId": WAKEWORD_ID,
        "lang": lang,
    }


def hermes_text_captured(
    site: str, text: str, confidence: float, audio_s: float, session_id: str, lang: str = "en"
) -> dict[str, Any]:
    """The payload of ``hermes/asr/textCaptured`` (``rhasspyhermes.asr.AsrTextCaptured``)."""
    return {
        "text": text,
        "likelihood": round(confidence, 4),
        "seconds": round(audio_s, 3),
        "siteId": site,
        "sessionId": session_id,
        "wakewordId": WAKEWORD_ID,
        "asrTokens": _tokens(text),
        "lang": lang,
    }


def hermes_not_recognized(site: str, text: str, session_id: str, query_id: str = "") -> dict[str, Any]:
    """The payload of ``hermes/nlu/intentNotRecognized`` (``rhasspyhermes.nlu.NluIntentNotRecognized``)."""
    return {"input": text, "siteId": site, "sessionId": session_id, "id": query_id or session_id, "customData": None}


def hermes_session_started(site: str, session_id: str, lang: str = "en") -> dict[str, Any]:
    """The payload of ``hermes/dialogueManager/sessionStarted`` (``rhasspyhermes.dialogue.DialogueSessionStarted``)."""
    return {"sessionId": session_id, "siteId": site, "customData": None, "lang": lang}


def hermes_session_ended(site: str, session_id: str, recognized: bool) -> dict[str, Any]:
    """The payload of ``hermes/dialogueManager/sessionEnded``: ``nominal``, or ``intentNotRecognized``."""
    reason = "nominal" if recognized else "intentNotRecognized"
    return {"termination": {"reason": reason}, "sessionId": session_id, "siteId": site, "customData": None}
