"""Log-mel filterbank features (numpy) shared by training and recognition.

They are what the shipped model was trained on: torchaudio's ``MelSpectrogram`` (25 ms Hann
window, 10 ms hop, 512-point FFT, centred frames with reflected edges, 64 HTK mel bands from 20 to
7600 Hz, power spectrum), logged and mean-normalised per band.  tests/test_runtime.py checks
this module against torchaudio (equal in float64; in float32, within torchaudio's own rounding).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from vcd.audio_format import SAMPLE_RATE_HZ

HOP_MS = 10
N_MELS = 64
N_FFT = 512
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = SAMPLE_RATE_HZ * HOP_MS // 1000
F_MIN_HZ = 20.0
F_MAX_HZ = 7600.0
LOG_FLOOR = 1e-6


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = N_MELS) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular HTK mel filters, unnormalised (torchaudio's ``melscale_fbanks``)."""
    freqs = np.linspace(0.0, SAMPLE_RATE_HZ // 2, N_FFT // 2 + 1)
    points = _mel_to_hz(np.linspace(_hz_to_mel(F_MIN_HZ), _hz_to_mel(F_MAX_HZ), n_mels + 2))
    widths = np.diff(points)
    slopes = points[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(down, up))


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """The periodic Hann window of ``WIN_LENGTH``, centred in ``N_FFT`` zeros (as torch.stft pads it)."""
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)
    left = (N_FFT - WIN_LENGTH) // 2
    return np.pad(hann, (left, N_FFT - WIN_LENGTH - left))


def mel_power(samples: np.ndarray, n_mels: int = N_MELS) -> np.ndarray:
    """(frames, n_mels) mel power spectrogram of 16 kHz audio; frames = 1 + len // hop."""
    x = np.asarray(samples, dtype=np.float64)
    half = N_FFT // 2
    mode = "reflect" if x.size > half else "constant"  # reflection needs more samples than the pad
    padded = np.pad(x, (half, half), mode=mode)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    spectrum = np.fft.rfft(frames * _window(), axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    return power @ mel_filters(n_mels)


def log_mel(samples: np.ndarray, n_mels: int = N_MELS) -> np.ndarray:
    """Features of one 16 kHz float32 clip as a (frames, n_mels) float32 array.

    Each mel band has its utterance mean removed (cepstral mean normalisation), which takes away
    the fixed colour of a microphone or a telephone band without amplifying empty bands the way
    variance normalisation would.
    """
    feats = np.log(mel_power(samples, n_mels) + LOG_FLOOR)
    return (feats - feats.mean(axis=0, keepdims=True)).astype(np.float32)
