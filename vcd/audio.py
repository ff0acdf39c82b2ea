"""Reading audio files and converting any rate or channel count to 16 kHz mono float32."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from vcd.errors import AudioError

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000


def to_mono_16k(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """Return ``samples`` (frames[, channels]) as float32 mono at 16 kHz.

    Channels are averaged; the rate is converted with torchaudio's
    band-limited sinc resampler.
    """
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if rate_hz != SAMPLE_RATE_HZ and audio.size:
        audio = AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), int(rate_hz), SAMPLE_RATE_HZ).numpy()
    return np.ascontiguousarray(audio, dtype=np.float32)


def read_audio(path: str | Path) -> np.ndarray:
    """Read a WAV/FLAC/OGG/Opus file into 16 kHz mono float32 in [-1, 1].

    Raises :class:`AudioError` naming the file when it is missing, corrupt,
    or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        detail = str(exc).split(":")[-1].strip() or type(exc).__name__
        raise AudioError(f"{path}: not a readable audio file ({detail})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: the audio file holds no samples")
    return to_mono_16k(samples, rate)


