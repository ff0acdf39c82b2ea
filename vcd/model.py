"""The acoustic model: a CNN front end and a bidirectional GRU, trained with CTC over CMU phones."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vcd.errors import ModelError

_LOGGER = logging.getLogger(__name__)


class AcousticModel(nn.Module):
    """(batch, frames, n_mels) log-mel → (batch, frames // 2, n_labels) CTC log-probabilities.

    Two 3×3 convolutions (the first halves time and frequency, the second
    halves frequency again) feed a projection and a stack of bidirectional
    GRUs.  Label 0 is the CTC blank.
    """

    def __init__(self, n_labels: int, n_mels: int = 64, channels: int = 32, proj: int = 256,
                 hidden: int = 160, layers: int = 2, dropout: float = 0.15) -> None:
        super().__init__()
        self.hparams = dict(n_labels=n_labels, n_mels=n_mels, channels=channels, proj=proj,
                            hidden=hidden, layers=layers, dropout=dropout)
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=(2, 2), padding=1),
            nn.BatchNorm2d(channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, stride=(1, 2), padding=1),
            nn.BatchNorm2d(channels),
            nn.GELU(),
        )
        freq = (n_mels + 1) // 2
        freq = (freq + 1) // 2
        self.proj = nn.Sequential(nn.Linear(channels * freq, proj), nn.GELU(), nn.Dropout(dropout))
        self.rnn = nn.GRU(proj, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, n_labels))
        self._numpy_gru: NumpyGru | None = None

    @staticmethod
    def output_frames(frames: torch.Tensor) -> torch.Tensor:
        """Number of output frames for ``frames`` input frames (the time stride is 2)."""
        return (frames + 1) // 2

    def infer(self, feats: torch.Tensor) -> np.ndarray:
        """``forward`` of one utterance (1, frames, n_mels) in eval mode → (frames // 2, n_labels) numpy.

        Same result as ``forward`` (to ~1e-5); the GRU stack runs in numpy
        (:class:`NumpyGru`), which has a third of PyTorch's per-time-step overhead: the
        recurrent steps, not the arithmetic, dominate decoding time on a small CPU.
        """
        if self._numpy_gru is None:
            self._numpy_gru = NumpyGru(self.rnn)
        with torch.inference_mode():
            x = self.conv(feats.unsqueeze(1))
            b, c, t, f = x.shape
            x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))[0].numpy()
        x = self._numpy_gru(x)
        lin = self.out[1]
        logits = x @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def train(self, mode: bool = True) -> "AcousticModel":
        self._numpy_gru = None  # weights may change: take a fresh copy at the next infer()
        return super().train(mode)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.conv(feats.unsqueeze(1))  # (B, C, T/2, F/4)
        b, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
        x, _ = self.rnn(x)
        return self.out(x).log_softmax(dim=-1)


class NumpyGru:
    """Inference-only copy of a (bidirectional, multi-layer, batch-first) ``nn.GRU`` for one sequence.

    PyTorch's gate equations: r, z = σ(W_i x + b_i + W_h h + b_h); n = tanh(W_in x + b_in +
    r ⊙ (W_hn h + b_hn)); h' = n + z ⊙ (h − n).  Input projections are one matrix product per
    layer; the loop does the recurrent part in place.
    """

    def __init__(self, gru: nn.GRU) -> None:
        self.hidden = gru.hidden_size
        self.layers = []
        suffixes = ("", "_reverse") if gru.bidirectional else ("",)
        for layer in range(gru.num_layers):
            directions = []
            for suffix in suffixes:
                p = {name: getattr(gru, f"{name}_l{layer}{suffix}").detach().numpy().astype(np.float32)
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                b_in = p["bias_ih"].copy()
                b_in[: 2 * self.hidden] += p["bias_hh"][: 2 * self.hidden]  # r and z take both biases
                directions.append((np.ascontiguousarray(p["weight_ih"].T), b_in,
                                   np.ascontiguousarray(p["weight_hh"].T), p["bias_hh"][2 * self.hidden :].copy(),
                                   suffix == "_reverse"))
            self.layers.append(directions)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(frames, input) → (frames, directions · hidden), float32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        for directions in self.layers:
            x = np.concatenate([self._run(x, *d) for d in directions], axis=1)
        return x

    def _run(self, x: np.ndarray, w_ih: np.ndarray, b_in: np.ndarray, w_hh: np.ndarray, b_hn: np.ndarray,
             reverse: bool) -> np.ndarray:
        size = self.hidden
        gates_in = x @ w_ih + b_in
        out = np.empty((x.shape[0], size), dtype=np.float32)
        h = np.zeros(size, dtype=np.float32)
        for t in range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0]):
            gh = h @ w_hh
            rz = gh[: 2 * size]
            rz += gates_in[t, : 2 * size]
            np.negative(rz, out=rz)
            np.exp(rz, out=rz)
            rz += 1.0
            np.reciprocal(rz, out=rz)  # σ
            n = gh[2 * size :]
            n += b_hn
            n *= rz[:size]
            n += gates_in[t, 2 * size :]
            np.tanh(n, out=n)
            h = n + rz[size:] * (h - n)
            out[t] = h
        return out


def save_model(model: AcousticModel, path: str | Path, labels: list[str], extra: dict[str, Any] | None = None,
               half: bool = False) -> None:
    """Write weights, hyper-parameters and the label list to ``path``.

    Weights are stored as float32, or as float16 with ``half`` (the released model: half the file,
    and :func:`load_model` widens them back to float32, so decoding still computes in float32).
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"hparams": model.hparams, "labels": labels, "state_dict": state, "extra": extra or {}}, str(path))


def load_model(path: str | Path) -> tuple[AcousticModel, list[str], dict[str, Any]]:
    """Load a model written by :func:`save_model`; raises :class:`ModelError` naming the file."""
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
        model = AcousticModel(**blob["hparams"])
        model.load_state_dict(blob["state_dict"])  # copies cast float16 weights to the float32 parameters
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        first = (str(exc).strip().splitlines() or [""])[0][:160]  # torch's messages run to many lines
        raise ModelError(f"{path}: not a vcd model ({type(exc).__name__}: {first})") from None
    model.eval()
    return model, list(blob["labels"]), dict(blob.get("extra", {}))

