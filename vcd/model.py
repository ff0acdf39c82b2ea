"""The acoustic model: a CNN front end and a bidirectional GRU, trained with CTC over CMU phones."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vcd.errors import ModelError
from vcd.inference import META_KEY, ONNX_SUFFIX, NumpyModel, export_path, file_digest

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
        self._numpy: NumpyModel | None = None

    @staticmethod
    def output_frames(frames: torch.Tensor) -> torch.Tensor:
        """Number of output frames for ``frames`` input frames (the time stride is 2)."""
        return (frames + 1) // 2

    def infer(self, feats: torch.Tensor | np.ndarray) -> np.ndarray:
        """``forward`` of one utterance (1, frames, n_mels) in eval mode → (frames // 2, n_labels) numpy.

        Runs what recognition runs: :class:`vcd.inference.NumpyModel` on a copy of the weights
        (the same result as ``forward`` to ~1e-5).
        """
        if self._numpy is None:
            self._numpy = NumpyModel(self.hparams, {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()})
        return self._numpy.infer(feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else feats)

    def train(self, mode: bool = True) -> "AcousticModel":
        self._numpy = None  # weights may change: take a fresh copy at the next infer()
        return super().train(mode)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.conv(feats.unsqueeze(1))  # (B, C, T/2, F/4)
        b, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
        x, _ = self.rnn(x)
        return self.out(x).log_softmax(dim=-1)


def save_model(model: AcousticModel, path: str | Path, labels: list[str], extra: dict[str, Any] | None = None,
               half: bool = False, export: bool = True) -> None:
    """Write weights, hyper-parameters and the label list to ``path``.

    Weights are stored as float32, or as float16 with ``half`` (the released model: half the file,
    and :func:`load_model` widens them back to float32, so decoding still computes in float32).
    ``export`` also writes the numpy export recognition reads (:func:`export_numpy`); training's
    intermediate snapshots, never run, skip it.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"hparams": model.hparams, "labels": labels, "state_dict": state, "extra": extra or {}}, str(path))
    if export:
        export_numpy(path)
        export_onnx(path)


def export_numpy(path: str | Path) -> Path:
    """Write the numpy export of the checkpoint ``path`` beside it (``.pt`` → ``.npz``); returns its path.

    The export holds the same weights (float16 stays float16), the hyper-parameters, labels,
    extras and the checkpoint's sha256: what :func:`vcd.inference.load_numpy_model` reads, so
    that recognition needs no torch.  :func:`save_model` calls it; ``vcd export-model`` too.
    """
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise ModelError(f"{path}: not a vcd model ({type(exc).__name__}: {exc})") from None
    meta = {"hparams": blob["hparams"], "labels": list(blob["labels"]), "extra": dict(blob.get("extra", {})),
            "source_sha256": file_digest(path)}
    arrays = {k: v.numpy() for k, v in blob["state_dict"].items() if v.is_floating_point()}
    out = export_path(path)
    with open(out, "wb") as f:  # np.savez_compressed would add ".npz" to a name that lacks it
        np.savez_compressed(f, **arrays, **{META_KEY: np.array(json.dumps(meta))})
    return out


def export_onnx(path: str | Path) -> Path | None:
    """Write the ONNX export of the checkpoint ``path`` beside it (``.pt`` → ``.onnx``); returns its path.

    The network only (log-mel frames in, CTC log-probabilities out), what ONNX Runtime runs in place of
    :class:`vcd.inference.NumpyModel` where it is installed (:func:`vcd.inference.load_acoustic_model`);
    labels and extras stay in the numpy export, which is always written too.  Weights that are exact in
    float16 (all but the convolutions with batch norm folded in, for a ``half`` checkpoint) are stored so,
    each widened by a Cast that ONNX Runtime folds when it loads: about half the size.  The checkpoint's
    sha256 goes into the metadata, so that a stale export is never run.  Needs the ``onnx`` package (the
    train extra): without it nothing is written (None) and recognition runs in numpy.
    """
    import io
    import warnings

    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        _LOGGER.warning("%s: no ONNX export written (the onnx package is not installed); recognition runs in numpy",
                        path)
        return None
    model, _labels, _extra = load_model(path)
    buffer = io.BytesIO()
    frames = torch.zeros(1, 101, model.hparams["n_mels"])
    with warnings.catch_warnings():  # the TorchScript exporter's notes on GRUs with batch_first
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (frames,), buffer, input_names=["feats"], output_names=["log_probs"],
                          dynamic_axes={"feats": {1: "frames"}, "log_probs": {1: "out_frames"}}, opset_version=17,
                          do_constant_folding=True, dynamo=False)
    graph = onnx.load_from_string(buffer.getvalue())
    casts, kept = [], []
    for init in graph.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype == np.float32 and values.size > 1024 and np.array_equal(values.astype(np.float16), values):
            half = numpy_helper.from_array(values.astype(np.float16), init.name + "_f16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            kept.append(init)
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)
    nodes = casts + list(graph.graph.node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    helper.set_model_props(graph, {"source_sha256": file_digest(path)})
    onnx.checker.check_model(graph)
    out = Path(path).with_suffix(ONNX_SUFFIX)
    out.write_bytes(graph.SerializeToString())
    return out


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

