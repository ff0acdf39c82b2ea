"""Log-mel filterbank features (torchaudio) shared by training and recognition."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

from vcd.audio_format import SAMPLE_RATE_HZ

HOP_MS = 10
N_MELS = 64


class LogMel(torch.nn.Module):
    """16 kHz waveform → (frames, n_mels) log-mel, 25 ms window, 10 ms hop.

    Each mel band has its utterance mean removed (cepstral mean
    normalisation), which takes away the fixed colour of a microphone or
    a telephone band without amplifying empty bands the way variance
    normalisation would.
    """

    def __init__(self, n_mels: int = N_MELS) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE_HZ,
            n_fft=512,
            win_length=400,
            hop_length=160,
            f_min=20.0,
            f_max=7600.0,
            n_mels=n_mels,
            power=2.0,
        )

    @torch.inference_mode(False)
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        feats = torch.log(self.mel(waveform) + 1e-6).transpose(-1, -2)  # (..., frames, mels)
        return feats - feats.mean(dim=-2, keepdim=True)


_EXTRACTOR: LogMel | None = None


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Features of one 16 kHz float32 clip as a (frames, n_mels) float32 array."""
    global _EXTRACTOR
    if _EXTRACTOR is None:
        _EXTRACTOR = LogMel()
    with torch.no_grad():
        return _EXTRACTOR(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))).numpy()
