"""Sounds and the output they play on: sound files loaded to float32, the sound card through sounddevice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

_LOGGER = logging.getLogger(__name__)

MAX_SOUND_S = 5.0  # a feedback sound longer than this is a mistake (a song, a recording)
TAIL_S = 0.05  # silence after each sound, so that the device does not cut its end


class SoundError(Exception):
    """A sound file that cannot be used: one line naming the file and why."""


class NoOutput(Exception):
    """There is no audio output to play on: one line saying why."""


@dataclass(frozen=True)
class Sound:
    """Mono float32 samples and their rate."""

    samples: np.ndarray
    rate_hz: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate_hz


class Output(Protocol):
    """Where sounds go: ``play`` blocks until the samples (mono float32 at ``rate_hz``) have been played."""

    def play(self, samples: np.ndarray, rate_hz: int) -> None: ...


def load_sound(path: Path) -> Sound:
    """A WAV/FLAC/OGG file as mono float32 (channels averaged); :class:`SoundError` when it cannot be used."""
    import soundfile

    if not path.is_file():
        raise SoundError(f"{path}: no such file")
    try:
        audio, rate_hz = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, ValueError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise SoundError(f"{path}: cannot be read as a sound ({exc})") from None
    if audio.shape[0] == 0:
        raise SoundError(f"{path}: holds no audio")
    if audio.shape[0] / rate_hz > MAX_SOUND_S:
        raise SoundError(f"{path}: {audio.shape[0] / rate_hz:.1f} s long; a feedback sound may last {MAX_SOUND_S:g} s")
    samples = audio.mean(axis=1)
    if not np.isfinite(samples).all():
        raise SoundError(f"{path}: holds samples that are not numbers")
    return Sound(np.ascontiguousarray(samples, dtype=np.float32), int(rate_hz))


def prepare(samples: np.ndarray, rate_hz: int, out_rate_hz: int, volume: float, tail_s: float = TAIL_S) -> np.ndarray:
    """``samples`` at ``out_rate_hz`` (soxr), scaled by ``volume`` and clipped to ±1, with ``tail_s`` of silence."""
    audio = np.asarray(samples, dtype=np.float32)
    if rate_hz != out_rate_hz:
        import soxr

        audio = soxr.resample(audio, rate_hz, out_rate_hz).astype(np.float32)
    audio = np.clip(audio * np.float32(volume), -1.0, 1.0)
    return np.concatenate([audio, np.zeros(round(tail_s * out_rate_hz), dtype=np.float32)])


class DeviceOutput:
    """An output device through sounddevice (PortAudio): a stream opened for each sound, at the device's rate."""

    def __init__(self, device: str | int | None = None) -> None:
        try:
            import sounddevice
        except OSError as exc:  # PortAudio itself is missing
            raise NoOutput(f"PortAudio is not available ({exc})") from None
        self._sd = sounddevice
        try:
            info: Any = sounddevice.query_devices(device, kind="output")
        except Exception as exc:  # noqa: BLE001 - sounddevice raises ValueError or PortAudioError
            what = "no default output device" if device is None else f"output device {device!r}"
            raise NoOutput(f"{what}: {exc}") from None
        if int(info.get("max_output_channels", 0)) < 1:
            raise NoOutput(f"{info.get('name', device)!r} has no output channels")
        self.device = info.get("index", device)
        self.name = str(info.get("name", device))
        self.rate_hz = int(info.get("default_samplerate") or 48000)
        self.channels = min(2, int(info["max_output_channels"]))

    def play(self, samples: np.ndarray, rate_hz: int) -> None:
        audio = prepare(samples, rate_hz, self.rate_hz, 1.0, tail_s=0.0)
        frames = np.repeat(audio[:, None], self.channels, axis=1)
        with self._sd.OutputStream(device=self.device, samplerate=self.rate_hz, channels=self.channels,
                                   dtype="float32") as stream:
            stream.write(frames)  # leaving the block stops the stream once the buffers have played
