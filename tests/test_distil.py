"""Noise distillation (vcd train --distil): mixing noise into cached features, the loss, the training loop."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from vcd.audio import read_audio
from vcd.errors import ExitCode
from vcd.features import LOG_FLOOR, log_mel, mel_power
from vcd.model import AcousticModel, load_model, save_model
from vcd.phonetics import LABELS
from vcd.recognizer import DEFAULT_MODEL
from vcd.training.cli import main_train
from vcd.training.distil import NOISY_SHARE, MelNoise, distillation_loss
from vcd.training.train import train

DEMO = Path(__file__).resolve().parent.parent / "demo" / "commands.wav"


def _speech_and_noise() -> tuple[np.ndarray, np.ndarray]:
    speech = read_audio(DEMO)[: 3 * 16000]
    noise = np.random.default_rng(0).standard_normal(speech.size).astype(np.float32)
    noise = np.cumsum(noise) * 0.002  # brown: a colour unlike speech's
    return speech, (noise - noise.mean()).astype(np.float32)


@pytest.mark.parametrize("snr_db", [12.0, 6.0, 0.0])
def test_noise_mixed_into_features_is_close_to_noise_mixed_into_the_audio(snr_db: float) -> None:
    speech, noise = _speech_and_noise()
    power, noise_power = mel_power(speech), mel_power(noise)
    mixer = MelNoise([noise], np.log(power + LOG_FLOOR).mean(0))  # the level of this clip itself
    frames = power.sum(1)
    loud = np.sort(frames)[-frames.size // 5:].mean()
    gain = loud / (noise_power.sum(1).mean() * 10.0 ** (snr_db / 10.0))
    in_audio = log_mel(speech + np.sqrt(gain) * noise)
    clean = torch.from_numpy(log_mel(speech))
    in_features = mixer.mix(clean, random.Random(0), snr_db).numpy()
    assert np.abs(in_features - in_audio).mean() < 0.25
    assert np.abs(clean.numpy() - in_audio).mean() > 1.0  # the noise is no small change
    assert np.abs(in_features.mean(0)).max() < 1e-4  # mean-normalised, as recognition's features are


def test_the_student_hears_most_clips_with_noise_and_the_rest_unchanged() -> None:
    speech, noise = _speech_and_noise()
    mixer = MelNoise([noise], np.log(mel_power(speech) + LOG_FLOOR).mean(0))
    clips = [torch.from_numpy(log_mel(speech[i * 4000:i * 4000 + 16000])) for i in range(8)] * 25
    heard = mixer.student_input(clips, random.Random(1))
    unchanged = sum(h is c for h, c in zip(heard, clips))
    assert [h.shape for h in heard] == [c.shape for c in clips]
    assert abs(unchanged / len(clips) - (1 - NOISY_SHARE)) < 0.1


def test_a_fixed_draw_is_the_same_every_time() -> None:
    speech, noise = _speech_and_noise()
    mixer = MelNoise([noise], np.log(mel_power(speech) + LOG_FLOOR).mean(0))
    clips = [torch.from_numpy(log_mel(speech)).half()]
    assert torch.equal(mixer.fixed_draw(clips, 6.0, 3)[0], mixer.fixed_draw(clips, 6.0, 3)[0])


def test_distillation_loss_is_zero_for_the_teacher_itself_and_ignores_padding() -> None:
    teacher = torch.randn(2, 10, 5).log_softmax(-1)
    frames = torch.tensor([10, 6])
    assert distillation_loss(teacher, teacher, frames).abs() < 1e-6
    student = teacher.clone()
    student[1, 6:] = torch.randn(4, 5).log_softmax(-1)  # padding only
    assert distillation_loss(student, teacher, frames).abs() < 1e-6
    student[0, 0] = torch.randn(5).log_softmax(-1)
    assert distillation_loss(student, teacher, frames) > 0


def test_distilled_training_learns_from_a_frozen_teacher_and_judges_by_clean_and_noisy_clips(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    speech, noise = _speech_and_noise()
    mixer = MelNoise([noise], np.log(mel_power(speech) + LOG_FLOOR).mean(0))
    feats = [torch.from_numpy(log_mel(speech[i * 4000:i * 4000 + 8000])).half() for i in range(6)]
    labels = [torch.tensor([1 + i, 2 + i, 3]) for i in range(6)]
    shard, valid = tmp_path / "train.pt", tmp_path / "valid.pt"
    torch.save({"feats": feats, "labels": labels}, str(shard))
    torch.save({"feats": feats[:2], "labels": labels[:2]}, str(valid))
    torch.manual_seed(0)
    save_model(AcousticModel(n_labels=len(LABELS), hidden=24, proj=32, channels=8), tmp_path / "teacher.pt", list(LABELS))
    teacher_bytes = (tmp_path / "teacher.pt").read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    best = train([shard], valid, work, steps=3, seed=1, threads=1, max_frames=400, init=tmp_path / "teacher.pt",
                 distil=mixer, distil_weight=1.0, valid_noise=mixer)
    printed = capsys.readouterr()
    assert "step 3: validation phone error rate clean" in printed.out + printed.err
    assert " 6 dB " in printed.out + printed.err
    student, _, extra = load_model(best)
    teacher, _, _ = load_model(tmp_path / "teacher.pt")
    assert extra["distil_weight"] == 1.0
    assert (tmp_path / "teacher.pt").read_bytes() == teacher_bytes
    assert any(not torch.equal(a, b) for a, b in zip(student.state_dict().values(), teacher.state_dict().values()))


def test_distil_without_a_teacher_or_data_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main_train(["--distil", "1", "--work", str(tmp_path / "work")]) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == ("Error: --distil needs --init MODEL (the teacher) and --data "
                                               "(the noise recordings)")
    assert main_train(["--distil", "-1", "--init", str(DEFAULT_MODEL), "--work", str(tmp_path / "work")]) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == "Error: --distil must be 0 or more (got -1.0)"
    assert not (tmp_path / "work").exists()  # refused before any data was prepared


def test_distil_with_data_that_holds_no_noise_fails_in_one_line_before_preparing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    work = tmp_path / "work"
    assert main_train(["--distil", "1", "--init", str(DEFAULT_MODEL), "--data", str(data), "--work", str(work)]) == ExitCode.FAILURE
    err = capsys.readouterr().err.strip()
    assert err == f"Error: {data}: --distil: no transcribed training clips to take the speech level from"
    assert not work.exists()  # nothing prepared
