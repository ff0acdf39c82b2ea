"""The acoustic model's forward pass in numpy, read from its ``.npz`` export: what recognition runs (no torch).

Training writes the model as a torch checkpoint (``default.pt``, :mod:`vcd.model`) and, next to it,
the same weights, hyper-parameters, labels and extras as a ``.npz`` (:func:`vcd.model.export_numpy`).
The runtime reads only the ``.npz``; :class:`NumpyModel` computes what
:meth:`vcd.model.AcousticModel.forward` computes in eval mode (to ~1e-5).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vcd.errors import ModelError, one_line

_LOGGER = logging.getLogger(__name__)

META_KEY = "__vcd_meta__"  # the .npz entry holding the JSON metadata (hparams, labels, extra, source_sha256)
EXPORT_SUFFIX = ".npz"
ONNX_SUFFIX = ".onnx"  # the network for ONNX Runtime, beside the numpy export (vcd.model.export_onnx)
_BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default
# Abramowitz & Stegun 7.1.26: erf to 1.5e-7, for the exact (erf) GELU that torch's nn.GELU computes
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def file_digest(path: str | Path) -> str:
    """sha256 of a file, hex (ties an export to the checkpoint it was written from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_path(model_path: str | Path) -> Path:
    """Where the numpy export of a model file lives: ``model.pt`` → ``model.npz``; an ``.npz`` is itself."""
    path = Path(model_path)
    return path if path.suffix == EXPORT_SUFFIX else path.with_suffix(EXPORT_SUFFIX)


def _erf(x: np.ndarray) -> np.ndarray:
    a1, a2, a3, a4, a5 = _ERF_A
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + _ERF_P * x)
    poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    return sign * (1.0 - poly * np.exp(-x * x))


def gelu(x: np.ndarray) -> np.ndarray:
    """x · Φ(x), the exact GELU (torch's default), float32."""
    return (0.5 * x * (1.0 + _erf(x * np.float32(1 / np.sqrt(2))))).astype(np.float32, copy=False)


def _conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """(C_in, T, F) → (C_out, T', F'): a 3×3 convolution with padding 1, as one matrix product (im2col)."""
    c_in, t, f = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # (C_in, T, F, 3, 3)
    windows = windows[:, :: stride[0], :: stride[1]]
    t_out, f_out = windows.shape[1], windows.shape[2]
    cols = windows.transpose(1, 2, 0, 3, 4).reshape(t_out * f_out, c_in * 9)
    out = cols @ weight.reshape(weight.shape[0], -1).T + bias  # (T'·F', C_out)
    return out.T.reshape(weight.shape[0], t_out, f_out)


class NumpyGru:
    """Inference-only (bidirectional, multi-layer) GRU for one sequence, from ``nn.GRU``'s weights.

    PyTorch's gate equations: r, z = σ(W_i x + b_i + W_h h + b_h); n = tanh(W_in x + b_in +
    r ⊙ (W_hn h + b_hn)); h' = n + z ⊙ (h − n).  Input projections are one matrix product per
    layer; the loop does the recurrent part in place (a third of PyTorch's per-step overhead:
    the recurrent steps, not the arithmetic, dominate decoding time on a small CPU).
    """

    def __init__(self, weights: dict[str, np.ndarray], hidden: int, layers: int, bidirectional: bool = True,
                 prefix: str = "rnn.") -> None:
        self.hidden = hidden
        self.layers = []
        suffixes = ("", "_reverse") if bidirectional else ("",)
        for layer in range(layers):
            directions = []
            for suffix in suffixes:
                p = {name: np.asarray(weights[f"{prefix}{name}_l{layer}{suffix}"], dtype=np.float32)
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                b_in = p["bias_ih"].copy()
                b_in[: 2 * hidden] += p["bias_hh"][: 2 * hidden]  # r and z take both biases
                directions.append((np.ascontiguousarray(p["weight_ih"].T), b_in,
                                   np.ascontiguousarray(p["weight_hh"].T), p["bias_hh"][2 * hidden :].copy(),
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


class NumpyModel:
    """The acoustic model in eval mode: (frames, n_mels) log-mel → (frames // 2, n_labels) CTC log-probabilities.

    ``weights`` are :class:`vcd.model.AcousticModel`'s ``state_dict`` as numpy arrays (float16 ones
    are widened to float32, as loading into the torch model does).  Batch norm is folded into the
    convolutions; dropout is the identity.
    """

    engine = "numpy"

    def __init__(self, hparams: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        self.hparams = dict(hparams)
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items() if np.asarray(v).dtype.kind == "f"}
        self.convs = []
        for conv, norm, stride in (("conv.0", "conv.1", (2, 2)), ("conv.3", "conv.4", (1, 2))):
            scale = w[f"{norm}.weight"] / np.sqrt(w[f"{norm}.running_var"] + np.float32(_BN_EPS))
            weight = w[f"{conv}.weight"] * scale[:, None, None, None]
            bias = (w[f"{conv}.bias"] - w[f"{norm}.running_mean"]) * scale + w[f"{norm}.bias"]
            self.convs.append((weight.astype(np.float32), bias.astype(np.float32), stride))
        self.proj = (np.ascontiguousarray(w["proj.0.weight"].T), w["proj.0.bias"])
        self.out = (np.ascontiguousarray(w["out.1.weight"].T), w["out.1.bias"])
        self.gru = NumpyGru(w, int(hparams["hidden"]), int(hparams["layers"]))

    @staticmethod
    def output_frames(frames: int) -> int:
        """Number of output frames for ``frames`` input frames (the time stride is 2)."""
        return (frames + 1) // 2

    def infer(self, feats: Any) -> np.ndarray:
        """Log-probabilities of one utterance: ``feats`` (frames, n_mels) or (1, frames, n_mels), any array-like."""
        x = np.asarray(feats, dtype=np.float32)
        if x.ndim == 3:
            if x.shape[0] != 1:
                raise ValueError(f"one utterance at a time (got a batch of {x.shape[0]})")
            x = x[0]
        x = x[None]  # (1 channel, frames, n_mels)
        for weight, bias, stride in self.convs:
            x = gelu(_conv3x3(x, weight, bias, stride))
        c, t, f = x.shape
        x = x.transpose(1, 0, 2).reshape(t, c * f)  # (frames, channels · bands), as the torch model flattens
        x = gelu(x @ self.proj[0] + self.proj[1])
        x = self.gru(x)
        logits = x @ self.out[0] + self.out[1]
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


class OnnxModel:
    """The same network run by ONNX Runtime from the ONNX export beside the model (``.onnx``, written with the
    numpy export by :func:`vcd.model.export_onnx`): about twice as fast as :class:`NumpyModel` on one thread
    (docs/benchmarks.md, "Speed and size"), the same log-probabilities to ~1e-5."""

    engine = "onnxruntime"

    def __init__(self, session: Any, hparams: dict[str, Any]) -> None:
        self._session = session
        self.hparams = dict(hparams)

    output_frames = staticmethod(NumpyModel.output_frames)

    def infer(self, feats: Any) -> np.ndarray:
        """Log-probabilities of one utterance: ``feats`` (frames, n_mels) or (1, frames, n_mels), any array-like."""
        x = np.asarray(feats, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.shape[0] != 1:
            raise ValueError(f"one utterance at a time (got a batch of {x.shape[0]})")
        return self._session.run(None, {"feats": np.ascontiguousarray(x)})[0][0]


def load_acoustic_model(path: str | Path, threads: int = 1,
                        engine: str = "auto") -> tuple[NumpyModel | OnnxModel, list[str], dict[str, Any]]:
    """Load a model for recognition, run by ONNX Runtime where it is installed and the model's ONNX export is
    beside it and was written from the same checkpoint; else in numpy (:func:`load_numpy_model`).

    The labels and extras always come from the numpy export, so both engines decode the same model; which one
    runs is the model's ``engine`` (logged).  ``threads``: ONNX Runtime's threads for one inference (numpy's
    are :func:`set_threads`).  A stale or unreadable ONNX export is a warning and numpy runs.  ``engine``
    ``"numpy"`` (``recognizer.engine``) runs numpy anyway: about 40 MiB less memory, twice the time.
    """
    if engine == "numpy":
        return load_numpy_model(path)
    meta, _ = _read_export(path, build=False)
    labels, extra = list(meta["labels"]), dict(meta.get("extra", {}))
    onnx = export_path(path).with_suffix(ONNX_SUFFIX)
    if onnx.is_file():
        try:
            import onnxruntime
        except ImportError:
            _LOGGER.debug("%s: onnxruntime is not installed; the model runs in numpy", onnx)
        else:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = max(1, int(threads))
            options.log_severity_level = 3  # errors only: its own warnings would go to stderr, not the log
            try:
                session = onnxruntime.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
                source = session.get_modelmeta().custom_metadata_map.get("source_sha256")
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a damaged file
                _LOGGER.warning("%s: not loadable by onnxruntime (%s); the model runs in numpy", onnx, one_line(str(exc)))
            else:
                if source == meta.get("source_sha256"):
                    _LOGGER.debug("%s: the model runs in onnxruntime", onnx)
                    return OnnxModel(session, meta["hparams"]), labels, extra
                _LOGGER.warning("%s was written from another version of the model; the model runs in numpy "
                                "(write it again with `vcd export-model`)", onnx)
    return load_numpy_model(path)


def load_numpy_model(path: str | Path) -> tuple[NumpyModel, list[str], dict[str, Any]]:
    """Load a model for recognition in numpy: a ``.npz`` export, or a ``.pt`` checkpoint through the export
    beside it.

    Raises :class:`ModelError` naming the file when it is missing, damaged, or (for a ``.pt``) when
    the export beside it is missing or was written from another checkpoint.
    """
    meta, model = _read_export(path)
    assert model is not None
    return model, list(meta["labels"]), dict(meta.get("extra", {}))


def _read_export(path: str | Path, build: bool = True) -> tuple[dict[str, Any], NumpyModel | None]:
    """The numpy export's metadata and (``build``) its :class:`NumpyModel`, checked as :func:`load_numpy_model`
    says; without ``build`` the weights are not read (ONNX Runtime runs the network from its own export)."""
    path = Path(path)
    npz = export_path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if not npz.is_file():
        raise ModelError(f"{path}: no numpy export beside it ({npz.name}); write one with "
                         f"`vcd export-model {path}` (needs vcd[train])")
    try:
        with np.load(npz, allow_pickle=False) as blob:
            meta = json.loads(str(blob[META_KEY]))
            weights = {k: blob[k] for k in blob.files if k != META_KEY} if build else {}
        model = NumpyModel(meta["hparams"], weights) if build else None  # the weights fit the hyper-parameters
        if not isinstance(meta["labels"], list) or not isinstance(meta["hparams"], dict):
            raise TypeError("labels must be a list and hparams a table")
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ModelError(f"{npz}: not a vcd model export ({type(exc).__name__}: {exc})") from None
    if npz != path and meta.get("source_sha256") != file_digest(path):
        raise ModelError(f"{path}: its numpy export {npz.name} was written from another version of it; write "
                         f"it again with `vcd export-model {path}` (needs vcd[train])")
    return meta, model


def set_threads(threads: int) -> None:
    """Limit the BLAS threads behind numpy's matrix products (``recognizer.threads``) for the whole process."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=max(1, int(threads)), user_api="blas")
