"""VAD segmentation: webrtcvad frames grouped into speech segments, one per spoken command."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import webrtcvad

from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.config import VadConfig

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeechStart:
    """The segmenter heard speech begin."""

    timestamp: float  # time.time() when the start was detected, seconds


@dataclass(frozen=True)
class SpeechEnd:
    """The segmenter closed a segment; ``kept`` is False when it was too short to be a command."""

    timestamp: float  # time.time() when the segment closed, seconds
    samples: np.ndarray  # float32 mono 16 kHz, including pre-roll
    kept: bool
    cut: bool = False  # closed by vad.max_speech_ms rather than by silence
    start_sample: int = 0  # where ``samples`` begin in the stream fed to the segmenter (16 kHz samples)
    voiced_frames: int = 0  # frames of the segment that webrtcvad called speech
    frames: int = 0  # frames in the segment
    speech: float | None = None  # speech presence of a kept segment, with the segmenter's ``presence`` (vcd.presence)

    @property
    def voiced_share(self) -> float:
        """The share of the segment's frames that webrtcvad called speech, 0..1."""
        return self.voiced_frames / self.frames if self.frames else 0.0
    result: Any = None  # what the completeness check decoded when it closed the segment early (None otherwise)
    denoised: np.ndarray | None = None  # a kept segment denoised, with the segmenter's ``denoiser``

    @property
    def early(self) -> bool:
        """Closed after ``vad.early_silence_ms`` because the command was complete."""
        return self.result is not None

    @property
    def audio_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE_HZ


Event = SpeechStart | SpeechEnd


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] → little-endian 16-bit PCM bytes, as webrtcvad wants."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class Segmenter:
    """Turns a stream of 16 kHz mono blocks (any length) into start/end events.

    Speech starts when at least ``trigger_ratio`` of the last
    ``trigger_window_ms`` of frames are voiced; it ends when at least that
    share of the last ``silence_ms`` is unvoiced, or at ``max_speech_ms``.
    The segment keeps ``preroll_ms`` before the trigger window and at most
    ``preroll_ms`` of the trailing silence.  Not thread-safe: one thread feeds it.

    Grammar-aware endpointing: with a ``complete`` check and ``early_silence_ms``, a third of the way into
    that much silence after speech the segment so far is passed to ``complete`` (so its decode runs
    while the silence goes on); when it returned something (the decoded command: whole, confident,
    nothing in the grammar could follow it) and the silence reaches ``early_silence_ms``, the segment
    closes, carrying that result.  Otherwise the silence runs on to ``silence_ms`` as usual; if
    speech resumes, the result is dropped and the check runs again at the next pause.

    With a ``presence`` (a :class:`vcd.presence.SpeechPresence` of its own), the open segment's speech
    presence is measured after each block, so that a kept segment closes with it (``SpeechEnd.speech``)
    and :meth:`speech_presence` of the audio a completeness check gets costs next to nothing.
    With a ``denoiser`` (a :class:`vcd.denoise.SegmentDenoiser` of its own), the open segment is denoised
    the same way as it grows, and a kept segment closes with that audio (``SpeechEnd.denoised``), which the
    recogniser's denoised view looks at (``recognizer.denoised_view``).
    """

    def __init__(self, config: VadConfig, complete: Callable[[np.ndarray], Any] | None = None,
                 presence: Callable[[np.ndarray], float] | None = None,
                 denoiser: Any = None) -> None:
        self.config = config
        self._complete = complete if config.early_silence_ms else None
        self._presence = presence
        self._denoiser = denoiser
        self._vad = webrtcvad.Vad(config.aggressiveness)
        self._frame_len = SAMPLE_RATE_HZ * config.frame_ms // 1000
        frames = lambda ms: max(1, round(ms / config.frame_ms))  # noqa: E731
        self._window_frames = frames(config.trigger_window_ms)
        self._preroll_frames = round(config.preroll_ms / config.frame_ms)
        self._silence_frames = frames(config.silence_ms)
        self._early_frames = frames(config.early_silence_ms)
        # the check starts a third of the way into that silence, so that its decode overlaps the wait
        self._check_frames = max(1, self._early_frames // 3)
        self._max_frames = frames(config.max_speech_ms)
        self._min_voiced_frames = config.min_speech_ms / config.frame_ms
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_seen = 0  # frames of the stream so far: where a segment starts
        self._start_frame = 0
        self._reset()

    def _reset(self) -> None:
        self._triggered = False
        self._history: collections.deque[tuple[np.ndarray, bool]] = collections.deque(
            maxlen=self._window_frames + self._preroll_frames
        )
        self._window: collections.deque[bool] = collections.deque(maxlen=self._window_frames)
        self._tail: collections.deque[bool] = collections.deque(maxlen=self._silence_frames)
        self._segment: list[tuple[np.ndarray, bool]] = []
        self._quiet_frames = 0  # unvoiced frames since the last voiced one
        self._checked = False  # the completeness check ran during this pause
        self._whole: tuple[Any, np.ndarray] | None = None  # what it found when whole: (the command, the audio decoded)

    @property
    def in_speech(self) -> bool:
        """True between a :class:`SpeechStart` and its :class:`SpeechEnd`."""
        return self._triggered

    def process(self, samples: np.ndarray) -> list[Event]:
        """Feed 16 kHz mono float32 samples; return the events they complete, in order."""
        audio = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        events: list[Event] = []
        n_frames = len(audio) // self._frame_len
        for i in range(n_frames):
            frame = audio[i * self._frame_len : (i + 1) * self._frame_len]
            events.extend(self._frame(frame, self._vad.is_speech(float_to_pcm16(frame), SAMPLE_RATE_HZ)))
        self._pending = audio[n_frames * self._frame_len :]
        if self._triggered and (self._presence is not None or self._denoiser is not None):
            audio = self.open_audio()  # the open segment so far: only its new audio is measured and denoised
            if self._presence is not None:
                self._presence(audio)
            if self._denoiser is not None:
                self._denoiser.feed(audio)
        return events

    def speech_presence(self, samples: np.ndarray) -> float | None:
        """The speech presence of (a start of) the open segment's audio; None without a ``presence``."""
        return None if self._presence is None else self._presence(samples)

    def flush(self) -> list[Event]:
        """End of the stream: close an open segment (as if silence followed)."""
        self._pending = np.zeros(0, dtype=np.float32)
        if not self._triggered:
            self._reset()
            return []
        return [self._close(cut=False)]

    def reset(self) -> None:
        """Forget any open segment without reporting it (used when stopping on a signal)."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._reset()

    def _frame(self, frame: np.ndarray, voiced: bool) -> list[Event]:
        self._frames_seen += 1
        if not self._triggered:
            self._history.append((frame, voiced))
            self._window.append(voiced)
            if len(self._window) == self._window.maxlen and sum(self._window) >= self.config.trigger_ratio * len(
                self._window
            ):
                self._triggered = True
                self._segment = list(self._history)
                self._start_frame = self._frames_seen - len(self._segment)
                self._tail.clear()
                return [SpeechStart(timestamp=time.time())]
            return []
        self._segment.append((frame, voiced))
        self._tail.append(voiced)
        if voiced:
            self._quiet_frames, self._checked, self._whole = 0, False, None
        else:
            self._quiet_frames += 1
        if self._complete is not None:
            if not self._checked and self._quiet_frames >= self._check_frames:
                self._checked = True
                samples, voiced_frames = self._audio()
                result = self._complete(samples) if voiced_frames >= self._min_voiced_frames else None
                self._whole = None if result is None else (result, samples)
            if self._whole is not None and self._quiet_frames >= self._early_frames:
                _LOGGER.debug("vad: a whole command and %d ms of silence; closing early",
                              self._quiet_frames * self.config.frame_ms)
                return [self._close(cut=False, whole=self._whole)]
        silent = len(self._tail) - sum(self._tail)
        if len(self._tail) == self._tail.maxlen and silent >= self.config.trigger_ratio * len(self._tail):
            return [self._close(cut=False)]
        if len(self._segment) >= self._max_frames:
            _LOGGER.info("speech longer than %d ms; cutting the segment", self.config.max_speech_ms)
            return [self._close(cut=True)]
        return []

    def open_audio(self) -> np.ndarray:
        """All the audio of the open segment so far (empty outside speech); what it closes with starts the same."""
        return np.concatenate([f for f, _ in self._segment]) if self._segment else np.zeros(0, dtype=np.float32)

    def _audio(self) -> tuple[np.ndarray, int]:
        """The open segment's audio (at most ``preroll_ms`` of its trailing silence) and its voiced frames."""
        segment = self._segment
        trailing = 0
        for _, voiced in reversed(segment):
            if voiced:
                break
            trailing += 1
        if trailing > self._preroll_frames:
            segment = segment[: len(segment) - (trailing - self._preroll_frames)]
        voiced_frames = sum(v for _, v in segment)
        samples = np.concatenate([f for f, _ in segment]) if segment else np.zeros(0, dtype=np.float32)
        return samples, voiced_frames

    def _close(self, cut: bool, whole: tuple[Any, np.ndarray] | None = None) -> SpeechEnd:
        """End the segment; closed early on a whole command, it is the audio that was decoded, with its result."""
        samples, voiced_frames = self._audio()
        result = None
        if whole is not None:
            result, samples = whole
        frames = len(samples) // self._frame_len
        kept = voiced_frames >= self._min_voiced_frames
        if not kept:
            _LOGGER.debug(
                "dropped a %.2f s segment with %d ms of speech (< vad.min_speech_ms)",
                len(samples) / SAMPLE_RATE_HZ,
                voiced_frames * self.config.frame_ms,
            )
        speech = self.speech_presence(samples) if kept else None
        # a segment closed early on a whole command was recognised already: nothing to look at again
        denoised = self._denoiser(samples) if kept and result is None and self._denoiser is not None else None
        self._reset()
        return SpeechEnd(timestamp=time.time(), samples=samples, kept=kept, cut=cut,
                         start_sample=self._start_frame * self._frame_len, voiced_frames=int(voiced_frames),
                         frames=frames, result=result, speech=speech, denoised=denoised)
