"""Corpus weights and the guard (vcd train --corpus-weights, --guard): visits per epoch, the masked KL, the loop."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vcd.errors import ExitCode, ModelError
from vcd.model import AcousticModel, load_model, save_model
from vcd.phonetics import LABELS
from vcd.recognizer import DEFAULT_MODEL
from vcd.training.cli import main_train
from vcd.training.distil import distillation_loss
from vcd.training.train import epoch_visits, train


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from("abc"), min_size=1, max_size=40),
       st.dictionaries(st.sampled_from("abz"), st.floats(0, 5), max_size=3), st.integers(0, 1000))
def test_each_clip_is_visited_its_corpus_weight_rounded_down_or_up(corpora: list[str], weights: dict[str, float],
                                                                     seed: int) -> None:
    visits = Counter(epoch_visits(corpora, weights, random.Random(seed)))
    for i, corpus in enumerate(corpora):
        weight = weights.get(corpus, 1.0)
        assert visits[i] in {int(weight), int(weight) + (weight > int(weight))}


def test_a_fractional_weight_visits_that_share_of_the_clips_once_more() -> None:
    visits = Counter(epoch_visits(["a"] * 4000 + ["b"] * 10, {"a": 2.25}, random.Random(0)))
    assert sum(visits[i] == 3 for i in range(4000)) / 4000 == pytest.approx(0.25, abs=0.03)
    assert all(visits[i] in {2, 3} for i in range(4000))
    assert all(visits[i] == 1 for i in range(4000, 4010))


def test_the_masked_kl_is_the_kl_of_the_guarded_clips_alone() -> None:
    torch.manual_seed(0)
    teacher, student = torch.randn(3, 8, 5).log_softmax(-1), torch.randn(3, 8, 5).log_softmax(-1)
    frames = torch.tensor([8, 5, 7])
    clips = torch.tensor([True, False, True])
    alone = distillation_loss(student[clips], teacher[clips], frames[clips])
    assert distillation_loss(student, teacher, frames, clips) == pytest.approx(alone.item(), rel=1e-6)
    assert distillation_loss(student, teacher, frames, torch.zeros(3, dtype=torch.bool)) == 0


def _shards(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    for name, shift in (("accented", 3.0), ("native", 0.0)):  # two corpora the model can tell apart
        feats = [torch.from_numpy((rng.standard_normal((60 + 8 * i, 64)) + shift).astype(np.float16)) for i in range(6)]
        torch.save({"feats": feats, "labels": [torch.tensor([1 + i, 2 + i, 3]) for i in range(6)]},
                   str(tmp_path / f"{name}.pt"))
    torch.manual_seed(0)
    save_model(AcousticModel(n_labels=len(LABELS), hidden=24, proj=32, channels=8), tmp_path / "start.pt", list(LABELS))
    return tmp_path / "accented.pt", tmp_path / "native.pt"


def _kl_to_start(model_file: Path, shard: Path, start: Path) -> float:
    student, _, _ = load_model(model_file)
    teacher, _, _ = load_model(start)
    feats = torch.load(str(shard), weights_only=True)["feats"]
    x = torch.nn.utils.rnn.pad_sequence([f.float() for f in feats], batch_first=True)
    frames = AcousticModel.output_frames(torch.tensor([f.shape[0] for f in feats]))
    with torch.inference_mode():
        return distillation_loss(student.eval()(x), teacher.eval()(x), frames).item()


def test_the_guard_keeps_the_corpora_not_weighted_up_near_the_starting_model(tmp_path: Path) -> None:
    accented, native = _shards(tmp_path)
    start = tmp_path / "start.pt"
    drift = {}
    for guard in (0.0, 20.0):
        work = tmp_path / f"work-{guard:g}"
        work.mkdir()
        best = train([accented, native], native, work, steps=12, seed=1, threads=1, max_frames=400, lr=1e-2,
                     init=start, average=1, corpus_weights={"accented": 2.0}, guard=guard)
        _, _, extra = load_model(best)
        assert extra["corpus_weights"] == {"accented": 2.0}
        assert extra.get("guard", 0.0) == guard
        drift[guard] = (_kl_to_start(work / "snapshots" / "step-000012.pt", native, start),
                        _kl_to_start(work / "snapshots" / "step-000012.pt", accented, start))
    assert drift[20.0][0] < drift[0.0][0] / 2  # the guarded corpus stays near the start...
    assert drift[20.0][1] > 2 * drift[20.0][0]  # ...while the weighted-up one, unguarded, moves away


def test_weights_for_a_corpus_with_no_clips_stop_the_run_before_training(tmp_path: Path) -> None:
    accented, native = _shards(tmp_path)
    with pytest.raises(ModelError, match="corpus weights name corpora with no prepared clips: vctk "):
        train([accented, native], native, tmp_path, steps=1, seed=1, threads=1, corpus_weights={"vctk": 3.0})
    with pytest.raises(ModelError, match="a guard and noise distillation both weigh the teacher"):
        train([accented], native, tmp_path, steps=1, seed=1, threads=1, init=tmp_path / "start.pt", guard=1.0,
              distil=object())
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--corpus-weights", "vctk-sample"], "--corpus-weights: 'vctk-sample' is not NAME=W with W a number of 0 or more"),
    (["--corpus-weights", "vctk-sample=-1"], "--corpus-weights: 'vctk-sample=-1' is not NAME=W with W a number of 0 or more"),
    (["--corpus-weights", "=2"], "--corpus-weights: '=2' is not NAME=W with W a number of 0 or more"),
    (["--corpus-weights", "a=nan"], "--corpus-weights: 'a=nan' is not NAME=W with W a number of 0 or more"),
    (["--guard", "1"], "--guard needs --init MODEL (the model to stay near) and cannot go with --distil"),
    (["--guard", "-1"], "--guard must be 0 or more (got -1.0)"),
])
def test_bad_corpus_weights_or_guard_are_one_line_usage_errors(argv: list[str], message: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main_train([*argv, "--work", str(tmp_path / "work")]) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == f"Error: {message}"
    assert not (tmp_path / "work").exists()


def test_a_guard_with_noise_distillation_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--guard", "1", "--distil", "1", "--init", str(DEFAULT_MODEL), "--data", str(tmp_path), "--work",
            str(tmp_path / "work")]
    assert main_train(argv) == ExitCode.USAGE
    assert "cannot go with --distil" in capsys.readouterr().err
