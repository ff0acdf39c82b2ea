"""Reading audio files and converting any rate or channel count to 16 kHz mono float32."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.errors import AudioError

_LOGGER = logging.getLogger(__name__)

MIN_RATE_HZ = 8000  # audio files outside these sample rates are refused (audio.input_rate_hz has the same range)
MAX_RATE_HZ = 192000
MAX_CHANNELS = 32
MAX_SINC_KERNEL = 2_000_000  # torchaudio's kernel for one rate ratio: above this many taps, soxr resamples


def to_mono_16k(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """Return ``samples`` (frames[, channels]) as float32 mono at 16 kHz.

    Channels are averaged; the rate is converted with torchaudio's
    band-limited sinc resampler.  Its kernel has ``16000/g × rate/g`` taps
    (``g`` the two rates' greatest common divisor): tiny for the usual rates,
    gigabytes for an odd one such as 44101 Hz, which soxr converts instead.
    """
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if rate_hz != SAMPLE_RATE_HZ and audio.size:
        g = math.gcd(int(rate_hz), SAMPLE_RATE_HZ)
        if (int(rate_hz) // g) * (SAMPLE_RATE_HZ // g) <= MAX_SINC_KERNEL:
            audio = AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), int(rate_hz), SAMPLE_RATE_HZ).numpy()
        else:
            import soxr

            audio = soxr.resample(audio, int(rate_hz), SAMPLE_RATE_HZ)
    return np.ascontiguousarray(audio, dtype=np.float32)


def read_audio(path: str | Path, max_s: float | None = None) -> np.ndarray:
    """Read a WAV/FLAC/OGG/Opus file into 16 kHz mono float32 in [-1, 1].

    The header is checked before any sample is read, so a lying one costs
    nothing: a rate outside 8000–192000 Hz, more than 32 channels, or more
    than ``max_s`` seconds of audio (None: no limit) is refused.  Raises
    :class:`AudioError` naming the file when it is missing, corrupt, refused,
    holds no samples, or holds samples that are not numbers (NaN, infinity).
    """
    path = Path(path)
    try:
        found = path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        found = False
    if not found:
        raise AudioError(f"{path}: no such file")
    try:
        with soundfile.SoundFile(str(path)) as sound:
            _check_header(path, sound.samplerate, sound.channels, sound.frames, max_s)
            samples = sound.read(dtype="float32", always_2d=True)
            rate = sound.samplerate
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        detail = str(exc).split(":")[-1].strip() or type(exc).__name__
        raise AudioError(f"{path}: not a readable audio file ({detail})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: the audio file holds no samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: the audio file holds samples that are not numbers (NaN or infinity)")
    return to_mono_16k(samples, rate)


def _check_header(path: Path, rate_hz: int, channels: int, frames: int, max_s: float | None) -> None:
    """Refuse what a file's header claims before reading it (the frame count libsndfile gives is bounded by the file's size)."""
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise AudioError(f"{path}: sample rate {rate_hz} Hz is outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{path}: {channels} channels (at most {MAX_CHANNELS})")
    if max_s is not None and frames > max_s * rate_hz:
        raise AudioError(f"{path}: {frames / rate_hz:.1f} s of audio; at most {max_s:g} s is recognised")




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
