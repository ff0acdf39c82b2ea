"""Rhasspy Hermes: the topics and payloads of ``hermes/asr/textCaptured``, ``hermes/intent/…`` and ``hermes/nlu/…``."""

from __future__ import annotations

import re
from typing import Any

from .templates import as_text

TEXT_CAPTURED_TOPIC = "hermes/asr/textCaptured"
NOT_RECOGNIZED_TOPIC = "hermes/nlu/intentNotRecognized"


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
    raw = as_text(value)
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
    site: str, intent: str, slots: dict[str, Any], text: str, confidence: float, session_id: str
) -> dict[str, Any]:
    """The payload of ``hermes/intent/<intentName>`` in Rhasspy's shape."""
    return {
        "input": text,
        "intent": {"intentName": intent, "confidenceScore": round(confidence, 4)},
        "slots": [hermes_slot(name, value, text, confidence) for name, value in slots.items()],
        "siteId": site,
        "id": None,
        "sessionId": session_id,
        "customData": None,
        "asrTokens": _tokens(text),
        "asrConfidence": round(confidence, 4),
        "rawInput": text,
        "wakewordId": None,
        "lang": None,
    }


def hermes_text_captured(site: str, text: str, confidence: float, audio_s: float, session_id: str) -> dict[str, Any]:
    """The payload of ``hermes/asr/textCaptured``."""
    return {
        "text": text,
        "likelihood": round(confidence, 4),
        "seconds": round(audio_s, 3),
        "siteId": site,
        "sessionId": session_id,
        "wakewordId": None,
        "asrTokens": _tokens(text),
        "lang": None,
    }


def hermes_not_recognized(site: str, text: str, session_id: str) -> dict[str, Any]:
    """The payload of ``hermes/nlu/intentNotRecognized``."""
    return {"input": text, "siteId": site, "sessionId": session_id, "id": None, "customData": None}
