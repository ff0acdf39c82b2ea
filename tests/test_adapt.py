"""``vcd adapt``'s core: adaptation to confident clips, the held-out check that rolls back, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import silence, speak
from vcd.errors import AdaptError, VcdError
from vcd.model import load_model
from vcd.recognizer import DEFAULT_MODEL
from vcd.training.adapt import _HiddenTransform, adapt

TEXTS = ("turn on the kitchen light", "turn off the kitchen light", "set the timer for five minutes",
         "what time is it")


def _clips() -> list[tuple[np.ndarray, str]]:
    return [(np.concatenate([silence(0.3), speak(text), silence(0.3)]), text) for text in TEXTS]


def _shapes(model) -> dict[str, tuple]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("method", ["hidden", "scale", "finetune"])
def test_adapt_keeps_shape_and_extra(tmp_path: Path, method: str) -> None:
    original, labels, extra = load_model(DEFAULT_MODEL)
    out = tmp_path / "adapted.pt"
    result = adapt(DEFAULT_MODEL, _clips(), out, method=method, steps=2)
    report = result.report
    assert (report.clips_given, report.clips_used, report.train_clips, report.heldout_clips) == (4, 4, 3, 1)
    assert report.steps == 2 and np.isfinite(report.heldout_loss_before) and np.isfinite(report.heldout_loss_after)
    saved, saved_labels, saved_extra = load_model(out)
    assert _shapes(saved) == _shapes(original) and saved.hparams == original.hparams and saved_labels == labels
    assert set(extra) <= set(saved_extra) and saved_extra["confidence_scale"] == extra["confidence_scale"]
    assert saved_extra["adapted"]["method"] == method and saved_extra["adapted"]["accepted"] == report.accepted
    if report.accepted:
        moved = any(not torch.equal(a, b) for a, b in zip(saved.state_dict().values(), original.state_dict().values()))
        assert moved


@pytest.mark.parametrize("diagonal", [False, True])
def test_hidden_transform_folds_exactly(diagonal: bool) -> None:
    model, _, _ = load_model(DEFAULT_MODEL)
    wrapped = _HiddenTransform(model, diagonal)
    torch.manual_seed(0)
    with torch.no_grad():
        wrapped.weight.add_(0.05 * torch.randn_like(wrapped.weight))
        wrapped.bias.add_(0.1 * torch.randn_like(wrapped.bias))
    feats = torch.randn(1, 80, 64)
    wrapped.eval()
    with torch.no_grad():
        expected = wrapped(feats)
        wrapped.fold()
        folded = model(feats)
    assert torch.allclose(expected, folded, atol=1e-4)


def test_worse_adaptation_is_rolled_back(tmp_path: Path) -> None:
    original, _, _ = load_model(DEFAULT_MODEL)
    result = adapt(DEFAULT_MODEL, _clips(), tmp_path / "adapted.pt", method="finetune", steps=2, lr=10.0, l2=0.0,
                   augment=False)
    assert not result.report.accepted
    # worse, or diverged to NaN (lr 10 does either, depending on the clips' last bits)
    assert not result.report.heldout_loss_after <= result.report.heldout_loss_before
    saved, _, extra = load_model(tmp_path / "adapted.pt")
    for key, value in original.state_dict().items():
        assert torch.equal(saved.state_dict()[key], value), key
    assert extra["adapted"]["accepted"] is False


def test_no_clips_is_an_error() -> None:
    with pytest.raises(AdaptError, match="at least 2 clips"):
        adapt(DEFAULT_MODEL, [])


def test_clips_without_pronunciation_are_an_error() -> None:
    audio = speak("hello")
    with pytest.raises(AdaptError, match="no pronunciation") as info:
        adapt(DEFAULT_MODEL, [(audio, ""), (audio, "!!!"), (audio, "hello")])
    assert isinstance(info.value, VcdError)


def test_unknown_method_and_missing_model(tmp_path: Path) -> None:
    with pytest.raises(AdaptError, match="method must be one of"):
        adapt(DEFAULT_MODEL, _clips(), method="magic")
    with pytest.raises(AdaptError, match="model file not found"):
        adapt(tmp_path / "missing.pt", _clips())
