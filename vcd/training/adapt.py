"""``vcd adapt``: adapt the acoustic model to a household's voices from clips it recognised with confidence.

The labels are the recogniser's own confident results (never a human transcript): each clip's text is
turned into CMU phones and the model is trained with CTC on them for a few steps, in one of two ways:

``finetune``
    every weight moves with a small learning rate, pulled back toward the shipped weights by an L2-SP
    penalty ``l2 · Σ ||w − w0||²`` (BatchNorm statistics stay frozen);
``hidden``
    a speaker-level linear transform, initialised to the identity, on the 256 features the projection
    hands the GRUs, trained while the network is frozen and then folded exactly into the first GRU
    layer's input weights, so the adapted model has the shape (and run time) of the original;
``scale``
    the same with a diagonal transform: a scale and a bias per feature (512 numbers, in the manner of
    LHUC), which a few clips can hardly overfit.

A fifth of the clips is held out: the adapted model is kept only if its CTC loss on them is no worse
than the original's; otherwise the original weights are returned unchanged (rolled back).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vcd.errors import AdaptError, ModelError
from vcd.model import AcousticModel, load_model, save_model
from vcd.phonetics import LABEL_ID, Lexicon

_LOGGER = logging.getLogger(__name__)

METHODS = ("finetune", "hidden", "scale")
MAX_CLIPS = 500  # the most recent clips kept: bounds memory and time on a hub
MIN_CLIPS = 2  # one to train on, one to check with
HELDOUT_FRACTION = 0.2
MAX_BATCH_FRAMES = 6000  # padded feature frames per training batch


@dataclass(frozen=True)
class AdaptReport:
    """What one adaptation did: how many clips it used and the held-out CTC loss before and after.

    ``accepted`` is False when the held-out loss got worse and the original weights were kept.
    Losses are mean CTC loss per clip (nats), on the held-out clips' own recognised labels.
    """

    method: str
    clips_given: int
    clips_used: int  # of those, with a pronunciation for every word
    train_clips: int
    heldout_clips: int
    steps: int
    lr: float
    heldout_loss_before: float
    heldout_loss_after: float
    accepted: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AdaptResult:
    """The model after adaptation (the original's weights when rolled back), its labels, extra and report."""

    model: AcousticModel
    labels: list[str]
    extra: dict[str, Any]
    report: AdaptReport


def clip_labels(text: str, lexicon: Lexicon) -> torch.Tensor | None:
    """CTC label ids of ``text`` (first pronunciation of each word); None when a word has none or there are none."""
    from vcd.training.corpora import phones_of

    phones = phones_of(text, lexicon)
    if not phones:
        return None
    return torch.tensor([LABEL_ID[p] for p in phones], dtype=torch.long)


class _HiddenTransform(torch.nn.Module):
    """The frozen ``model`` with an identity-initialised linear map between its projection and its GRUs."""

    def __init__(self, model: AcousticModel, diagonal: bool = False) -> None:
        super().__init__()
        self.model = model
        size = model.hparams["proj"]
        self.diagonal = diagonal
        self.weight = torch.nn.Parameter(torch.ones(size) if diagonal else torch.eye(size))
        self.bias = torch.nn.Parameter(torch.zeros(size))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.conv(feats.unsqueeze(1))
        b, c, t, f = x.shape
        x = m.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
        x = (x * self.weight if self.diagonal else x @ self.weight.T) + self.bias
        x, _ = m.rnn(x)
        return m.out(x).log_softmax(dim=-1)

    def matrix(self) -> torch.Tensor:
        return torch.diag(self.weight) if self.diagonal else self.weight

    def penalty(self) -> torch.Tensor:
        return ((self.matrix() - torch.eye(self.bias.numel())) ** 2).sum() + (self.bias**2).sum()

    def fold(self) -> None:
        """Fold the transform into the first GRU layer's input weights: W (A x + c) + b = (W A) x + (W c + b)."""
        rnn = self.model.rnn
        a, c = self.matrix().detach(), self.bias.detach()
        with torch.no_grad():
            for suffix in ("", "_reverse") if rnn.bidirectional else ("",):
                w = getattr(rnn, f"weight_ih_l0{suffix}")
                b = getattr(rnn, f"bias_ih_l0{suffix}")
                b.add_(w @ c)
                w.copy_(w @ a)


def _batches(lengths: list[int], rng: random.Random) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, batch = [], []
    for i in order:
        if batch and lengths[i] * (len(batch) + 1) > MAX_BATCH_FRAMES:
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    rng.shuffle(batches)
    return batches


def _ctc_loss(net: torch.nn.Module, feats: list[torch.Tensor], labels: list[torch.Tensor], idx: list[int],
              augment: random.Random | None = None) -> torch.Tensor:
    from vcd.training.augment import spec_augment

    xs = [feats[i] for i in idx]
    if augment is not None:  # light SpecAugment: one narrow mask in frequency and in time
        xs = [spec_augment(x, augment, freq_masks=1, max_freq=6, time_masks=1, max_time_frac=0.05) for x in xs]
    lengths = torch.tensor([x.shape[0] for x in xs])
    x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True)
    ys = [labels[i] for i in idx]
    log_probs = net(x)
    return torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.cat(ys),
                                        AcousticModel.output_frames(lengths), torch.tensor([y.numel() for y in ys]),
                                        blank=0, reduction="sum", zero_infinity=True) / len(idx)


def _mean_loss(net: torch.nn.Module, feats: list[torch.Tensor], labels: list[torch.Tensor]) -> float:
    net.eval()
    total = 0.0
    with torch.no_grad():
        for idx in _batches([f.shape[0] for f in feats], random.Random(0)):
            total += _ctc_loss(net, feats, labels, idx).item() * len(idx)
    return total / max(1, len(feats))


def adapt(model_file: str | Path, clips: list[tuple[np.ndarray, str]], out_file: str | Path | None = None,
          method: str = "finetune", steps: int = 30, lr: float | None = None, l2: float | None = None,
          augment: bool = True, heldout_fraction: float = HELDOUT_FRACTION, max_clips: int = MAX_CLIPS,
          seed: int = 0, lexicon: Lexicon | None = None, front_end: str = "auto") -> AdaptResult:
    """Adapt ``model_file`` to ``clips`` — (16 kHz float32 samples, the text the recogniser gave them) pairs.

    ``method`` is ``"finetune"`` (all weights, L2-SP toward the originals: the default, chosen on the
    speechocean762 validation speakers from 7 candidates), ``"hidden"`` or ``"scale"`` (speaker-level
    transforms: see the module docstring). ``lr`` and ``l2`` default per method. Only the last ``max_clips`` clips are used; a
    ``heldout_fraction`` of them (at least one) checks the result, and the original weights are kept
    when their CTC loss got worse. ``out_file``, when given, receives the result with the original's
    ``extra`` (confidence scale, front end …) plus an ``adapted`` entry holding the report.
    Raises :class:`AdaptError` when fewer than two clips have a pronunciation for every word.
    """
    if method not in METHODS:
        raise AdaptError(f"adapt: method must be one of {', '.join(METHODS)} (got {method!r})")
    started = time.perf_counter()
    from vcd.denoise import make_front_end
    from vcd.recognizer import model_pronunciations, segment_features

    try:
        model, labels, extra = load_model(model_file)
        carried = model_pronunciations(extra)
    except ModelError as exc:
        raise AdaptError(str(exc)) from None
    denoise = make_front_end(front_end, extra)
    lexicon = (lexicon or Lexicon()).with_trained(carried)  # label the clips as the model was trained
    clips = list(clips)[-max_clips:] if max_clips else list(clips)
    feats, targets, unpronounceable = [], [], []
    for samples, text in clips:
        y = clip_labels(text, lexicon)
        if y is None:
            unpronounceable.append(text)
            continue
        feats.append(torch.from_numpy(segment_features(samples, denoise)))
        targets.append(y)
    if len(feats) < MIN_CLIPS:
        why = f"; no pronunciation for {unpronounceable[:3]!r}" if unpronounceable else ""
        raise AdaptError(f"adapt: need at least {MIN_CLIPS} clips whose text has a pronunciation for every word, "
                         f"got {len(feats)} of {len(clips)}{why}")
    rng = random.Random(seed)
    order = list(range(len(feats)))
    rng.shuffle(order)
    n_held = max(1, round(heldout_fraction * len(feats)))
    held, train = order[:n_held], order[n_held:]
    h_feats, h_targets = [feats[i] for i in held], [targets[i] for i in held]
    t_feats, t_targets = [feats[i] for i in train], [targets[i] for i in train]

    torch.manual_seed(seed)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    if method in ("hidden", "scale"):
        lr = 1e-3 if lr is None else lr
        l2 = 1e-2 if l2 is None else l2
        for p in model.parameters():
            p.requires_grad_(False)
        net = _HiddenTransform(model, diagonal=method == "scale")
        params = [net.weight, net.bias]
        penalty = net.penalty
    else:
        lr = 3e-5 if lr is None else lr
        l2 = 1.0 if l2 is None else l2
        net = model
        params = [p for p in model.parameters()]
        start = [p.detach().clone() for p in params]

        def penalty() -> torch.Tensor:
            return sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start))

    before = _mean_loss(net, h_feats, h_targets)
    opt = torch.optim.Adam(params, lr=lr)
    aug_rng = random.Random(seed + 1) if augment else None
    step = 0
    while step < steps:
        for idx in _batches([f.shape[0] for f in t_feats], rng):
            if step >= steps:
                break
            net.train()
            for m in net.modules():  # a few clips must not overwrite the BatchNorm statistics
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
            loss = _ctc_loss(net, t_feats, t_targets, idx, aug_rng) + l2 * penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            step += 1
    after = _mean_loss(net, h_feats, h_targets)
    accepted = math.isfinite(after) and after <= before
    if isinstance(net, _HiddenTransform) and accepted:
        net.fold()
    if not accepted:
        model.load_state_dict(original)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    report = AdaptReport(method, len(clips), len(feats), len(train), len(held), step, float(lr), before, after,
                         accepted, time.perf_counter() - started)
    _LOGGER.info("adapt (%s, %d clips, %d steps): held-out CTC loss %.3f -> %.3f, %s", method, len(feats), step,
                 before, after, "kept" if accepted else "rolled back to the original weights")
    extra = {**extra, "adapted": report.to_dict()}
    if out_file is not None:
        save_model(model, out_file, labels, extra)
    return AdaptResult(model, labels, extra, report)
