"""Reading audio files and converting any rate or channel count to 16 kHz mono float32."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.errors import AudioError

_LOGGER = logging.getLogger(__name__)


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




QUIET_MARGIN_S = 0.3  # quiet audio the model expects around speech (training pads 0.05–0.5 s)
QUIET_BELOW_DB = -30.0  # a 10 ms frame this far under the clip's loud (95th-percentile) frames is quiet,
QUIET_NEAR_FLOOR_DB = 15.0  # and so is one within this of its floor (10th percentile): a noisy room's level
_DIGITAL_SILENCE = 1e-5  # frame RMS (-100 dBFS) below which a frame is digital silence
_TOP_UP_MIN_S = 0.05  # an end short of its margin by less than this is left as it is


def with_quiet_margins(samples: np.ndarray, margin_s: float = QUIET_MARGIN_S) -> np.ndarray:
    """Return 16 kHz ``samples`` with silence added so speech has ``margin_s`` of quiet at each end.

    A recording trimmed to its first and last sound (as a sound editor or
    another tool's voice detection leaves it) starts straight on a phone,
    which the CTC model, trained with quiet around every utterance, often
    misses.  Each end is measured in 10 ms frames: a frame is quiet when it is
    30 dB under the clip's loud frames or within 15 dB of its floor, and zeros
    make up what is missing of ``margin_s``.  The floor rule keeps a noisy
    room's audio as it is: zeros beside noise are something the model never
    heard, and cost it more than a missing margin.  An end short by under
    50 ms, and audio that already has its margins (the daemon's segments keep
    ``vad.preroll_ms``), are left alone.
    """
    frame = SAMPLE_RATE_HZ // 100
    n = samples.size // frame
    if n < 2:
        return samples
    rms = np.sqrt(np.mean(np.square(samples[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    sounding = rms[rms > _DIGITAL_SILENCE]  # the floor is the room's, not that of silence already added
    floor = float(np.percentile(sounding, 10)) if sounding.size else 0.0
    quiet_below = max(float(np.percentile(rms, 95)) * 10.0 ** (QUIET_BELOW_DB / 20.0),
                      floor * 10.0 ** (QUIET_NEAR_FLOOR_DB / 20.0))
    loud = np.flatnonzero(rms > quiet_below)
    if loud.size == 0:
        return samples
    want, least = int(round(margin_s * SAMPLE_RATE_HZ)), int(_TOP_UP_MIN_S * SAMPLE_RATE_HZ)
    before = max(0, want - int(loud[0]) * frame)
    after = max(0, want - (samples.size - (int(loud[-1]) + 1) * frame))
    before, after = (before if before >= least else 0), (after if after >= least else 0)
    if not before and not after:
        return samples
    return np.concatenate([np.zeros(before, np.float32), samples, np.zeros(after, np.float32)])
