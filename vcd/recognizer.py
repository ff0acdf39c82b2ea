"""The recogniser: audio in, sentence, intent and slots out (model + grammar + decoder)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recognition:
    """What the recogniser made of one speech segment.

    ``intent`` is None and ``text`` empty when the audio is not one of the
    sentences (rejected).  ``slots`` maps slot names to the list's out value;
    numbers come out as int/float.
    """

    text: str
    intent: str | None
    slots: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.0  # 0..1
    audio_s: float = 0.0  # length of the audio decoded, seconds
    decode_ms: float = 0.0  # features + network + search, milliseconds
    best_text: str = ""  # best grammar sentence even when rejected (diagnostics)

    @property
    def recognized(self) -> bool:
        return self.intent is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
