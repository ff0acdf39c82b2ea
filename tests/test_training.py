"""The training pipeline on a tiny corpus: augmentation, feature caching with narrow-band copies, resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from conftest import write_wav
from vcd.errors import ExitCode, ModelError
from vcd.model import AcousticModel, load_model, save_model
from vcd.phonetics import LABELS
from vcd.recognizer import DEFAULT_MODEL
from vcd.training.augment import Augmenter, EdgeCuts, babble, cut_speech_edges, vtlp_warp, warp_mel_bands
from vcd.training.cli import main_train
from vcd.training.prepare import NARROWBAND_DIGIT_COPIES, build_features
from vcd.training.train import average_weights, blend_with, train
from vcd.training.widen import widen

SAMPLE_RATE_HZ = 16000


def _tone(freq_hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _band_energy(x: np.ndarray, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE_HZ)
    return float(spectrum[(freqs >= low_hz) & (freqs < high_hz)].sum())


def test_narrowband_copy_has_nothing_above_4_khz() -> None:
    augment = Augmenter([], seed=3)
    x = _tone(1000.0) + _tone(6000.0)  # as much energy above 4 kHz as below
    for _ in range(5):  # whatever else the chain draws (noise, clipping), the telephone band is applied
        y = augment(x, narrowband=True)
        assert _band_energy(y, 4200, 8000) < 1e-2 * _band_energy(y, 0, 4000)


def test_babble_is_unit_rms_as_long_as_asked_and_made_of_the_talk_clips() -> None:
    rng = np.random.default_rng(0)
    talk = [_tone(300.0, 0.7), _tone(2500.0, 1.3)]
    for talkers in (1, 2, 4):
        mix = babble(talk, 40000, talkers, rng)  # longer than either clip: they repeat
        assert mix.shape == (40000,) and mix.dtype == np.float32
        assert np.sqrt(np.mean(mix**2)) == pytest.approx(1.0, rel=1e-3)
        # nothing but the two voices' frequencies is in it
        assert _band_energy(mix, 250, 350) + _band_energy(mix, 2450, 2550) > 0.99 * _band_energy(mix, 0, 8000)


def test_background_talk_stays_at_least_5_db_under_the_command() -> None:
    x = _tone(1000.0, 2.0)
    talk = [_tone(300.0, 0.8)]
    augment = Augmenter([], seed=1, talk=talk)
    talked = 0
    for _ in range(40):
        y = augment._add_noise(x, snr_db=0.0)  # asked for 0 dB: talk is floored at 5 dB, coloured noise is not
        noise = y - x
        assert np.all(np.isfinite(y))
        if _band_energy(noise, 250, 350) > 0.9 * _band_energy(noise, 0, 8000):  # the talk clip's voice
            talked += 1
            snr_db = 10 * np.log10(np.mean(x**2) / np.mean(noise**2))
            assert snr_db == pytest.approx(5.0, abs=0.01)
    assert 5 <= talked <= 25  # about 30 % of the noisy copies are talk, the rest coloured noise (no noises given)


def _speech_like_feats(silence: int = 30, speech: int = 100) -> torch.Tensor:
    """Log-mel-like frames: quiet noise around a loud span, as the feature cache holds them."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2 * silence + speech, 64, generator=gen) * 0.3 - 4.0
    feats[silence : silence + speech] += 6.0
    return feats


def test_edge_cut_shortens_the_speech_and_keeps_the_silence_around_it() -> None:
    feats = _speech_like_feats()
    for seed in range(20):
        cut = cut_speech_edges(feats, random.Random(seed), EdgeCuts(prob=1.0))
        assert 2 * 2 <= feats.shape[0] - cut.shape[0] <= 2 * 8  # 2-8 frames from each end of the speech
        assert torch.equal(cut[:30], feats[:30]) and torch.equal(cut[-30:], feats[-30:])  # silence untouched
        assert (cut.mean(dim=1) > 0).sum() == 100 - (feats.shape[0] - cut.shape[0])  # only speech went


def test_edge_cut_leaves_flat_clips_and_unlucky_draws_alone() -> None:
    noise = torch.randn(160, 64, generator=torch.Generator().manual_seed(1)) * 0.3
    assert torch.equal(cut_speech_edges(noise, random.Random(0), EdgeCuts(prob=1.0)), noise)
    feats = _speech_like_feats()
    assert torch.equal(cut_speech_edges(feats, random.Random(0), EdgeCuts(prob=0.0)), feats)


def test_default_edge_cuts_leave_isolated_words_alone_and_deeper_cuts_reach_them() -> None:
    word = _speech_like_feats(silence=20, speech=40)  # a 0.4 s word, as in FSDD or Speech Commands
    assert all(torch.equal(cut_speech_edges(word, random.Random(s), EdgeCuts(prob=1.0)), word) for s in range(10))
    deep = EdgeCuts.parse("1,150,200")
    assert deep == EdgeCuts(prob=1.0, max_cut=15, min_speech=20)
    for seed in range(20):
        cut = cut_speech_edges(word, random.Random(seed), deep)
        removed = word.shape[0] - cut.shape[0]
        assert 2 * 2 <= removed <= 2 * (40 // 3)  # 2 frames at least, never over a third of the speech per end
        assert torch.equal(cut[:20], word[:20]) and torch.equal(cut[-20:], word[-20:])
    short = _speech_like_feats(silence=20, speech=15)  # under MIN_SPEECH_MS: left alone
    assert torch.equal(cut_speech_edges(short, random.Random(0), deep), short)


@pytest.mark.parametrize("text", ["0.2", "1.5,80", "0.2,5", "0.2,80,-1", "a,b", "0.1,80,200,4"])
def test_edge_cuts_option_rejects_malformed_values(text: str) -> None:
    with pytest.raises(ValueError, match="PROB,MAX_MS"):
        EdgeCuts.parse(text)


def test_vtlp_moves_a_formant_down_for_a_longer_vocal_tract_and_up_for_a_shorter() -> None:
    feats = torch.zeros(5, 64)
    feats[:, 30] = 1.0  # one spectral peak, in band 30 (about 2 kHz)

    def peak(alpha: float) -> float:
        warped = warp_mel_bands(feats, alpha)
        assert warped.shape == feats.shape
        return float((warped[0] * torch.arange(64)).sum() / warped[0].sum())

    assert peak(1.1) < 29.5 and peak(0.9) > 30.5
    assert torch.allclose(warp_mel_bands(feats, 1.0), feats, atol=1e-4)
    assert torch.equal(vtlp_warp(feats, random.Random(0), prob=0.0), feats)
    draw = random.Random(3)
    draw.random()
    assert torch.equal(vtlp_warp(feats, random.Random(3), prob=1.0), warp_mel_bands(feats, draw.uniform(0.9, 1.1)))


def test_features_cache_holds_clean_augmented_and_narrowband_copies(tmp_path: Path) -> None:
    clips = []
    for i, narrow in enumerate((0, NARROWBAND_DIGIT_COPIES)):
        path = tmp_path / f"clip{i}.wav"
        write_wav(path, _tone(440.0 * (i + 1), 0.8))
        clips.append((str(path), [5, 6, 7], narrow))
    out = tmp_path / "feats.pt"
    build_features("tiny", clips, copies=2, clean=True, noise_files=[], out_file=out, seed=1, workers=1)
    blob = torch.load(str(out), weights_only=True)
    assert len(blob["feats"]) == 2 + 2 + NARROWBAND_DIGIT_COPIES
    assert all(f.shape[1] == 64 and f.dtype == torch.float16 for f in blob["feats"])
    assert all(lab.tolist() == [5, 6, 7] for lab in blob["labels"])


def _tiny_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A training shard of six random clips, a validation shard of two of them, and an empty work folder."""
    rng = np.random.default_rng(0)
    feats = [torch.from_numpy(rng.standard_normal((60 + 10 * i, 64)).astype(np.float16)) for i in range(6)]
    labels = [torch.tensor([1 + i, 2 + i, 3]) for i in range(6)]
    shard, valid = tmp_path / "train.pt", tmp_path / "valid.pt"
    torch.save({"feats": feats, "labels": labels}, str(shard))
    torch.save({"feats": feats[:2], "labels": labels[:2]}, str(valid))
    work = tmp_path / "work"
    work.mkdir()
    return shard, valid, work


def test_training_checkpoints_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    shard, valid, work = _tiny_run(tmp_path)

    best = train([shard], valid, work, steps=2, seed=1, threads=1, max_frames=200)
    first = torch.load(str(work / "checkpoint.pt"), weights_only=False)
    assert first["step"] == 2 and best.exists()

    train([shard], valid, work, steps=4, seed=1, threads=1, max_frames=200)
    second = torch.load(str(work / "checkpoint.pt"), weights_only=False)
    assert second["step"] == 4
    assert any(not torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
    log = (work / "train-log.tsv").read_text().splitlines()
    assert [line.split("\t")[1] for line in log] == ["2", "4"]
    assert sorted(p.name for p in (work / "snapshots").iterdir()) == ["step-000002.pt", "step-000004.pt"]
    extra = torch.load(str(best), weights_only=True)["extra"]
    assert extra["step"] in {2, 4}
    assert extra.get("averaged") in (None, ["step-000002", "step-000004"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (vcd train --device cuda)")
def test_training_on_a_gpu_leaves_cpu_checkpoints_that_resume_on_the_cpu(tmp_path: Path) -> None:
    shard, valid, work = _tiny_run(tmp_path)
    train([shard], valid, work, steps=2, seed=1, threads=1, max_frames=200, device="cuda")
    blob = torch.load(str(work / "checkpoint.pt"), weights_only=False)
    tensors = [*blob["model"].values(), *(t for state in blob["opt"]["state"].values() for t in state.values()
                                          if isinstance(t, torch.Tensor))]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    train([shard], valid, work, steps=4, seed=1, threads=1, max_frames=200, device="cpu")
    assert torch.load(str(work / "checkpoint.pt"), weights_only=False)["step"] == 4


def test_device_cuda_without_a_gpu_is_a_usage_error_before_any_preparation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert main_train(["--device", "cuda", "--work", str(tmp_path / "work")]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: --device cuda: torch sees no CUDA GPU here") and "\n" not in err
    assert not (tmp_path / "work").exists()  # refused before any data was prepared


def test_training_keeps_only_the_latest_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    feats = [torch.from_numpy(rng.standard_normal((60, 64)).astype(np.float16)) for _ in range(4)]
    labels = [torch.tensor([1, 2]) for _ in range(4)]
    shard = tmp_path / "train.pt"
    torch.save({"feats": feats, "labels": labels}, str(shard))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr("vcd.training.train.SNAPSHOTS_KEPT", 2)
    for steps in (1, 2, 3):
        train([shard], shard, work, steps=steps, seed=1, threads=1, max_frames=200, average=1)
    assert sorted(p.name for p in (work / "snapshots").iterdir()) == ["step-000002.pt", "step-000003.pt"]


def test_average_weights_is_the_mean_of_models_and_checkpoints(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a, b = AcousticModel(n_labels=len(LABELS)), AcousticModel(n_labels=len(LABELS))
    save_model(a, tmp_path / "a.pt", list(LABELS))
    torch.save({"model": b.state_dict(), "step": 7}, str(tmp_path / "b.pt"))  # a training checkpoint
    mean = average_weights([tmp_path / "a.pt", tmp_path / "b.pt"])
    for key, value in a.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(mean[key], (value + b.state_dict()[key]) / 2, atol=1e-6)


def test_blend_with_init_writes_the_mean_of_both_models_and_refuses_another_shape(tmp_path: Path) -> None:
    torch.manual_seed(3)
    trained, start = AcousticModel(n_labels=len(LABELS), hidden=24), AcousticModel(n_labels=len(LABELS), hidden=24)
    save_model(trained, tmp_path / "trained.pt", list(LABELS), {"step": 9})
    save_model(start, tmp_path / "start.pt", list(LABELS))
    blend_with(tmp_path / "trained.pt", tmp_path / "start.pt")
    blended, _, extra = load_model(tmp_path / "trained.pt")
    for key, value in blended.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (trained.state_dict()[key] + start.state_dict()[key]) / 2, atol=1e-6)
    assert extra == {"step": 9, "blended_with": str(tmp_path / "start.pt")}
    save_model(AcousticModel(n_labels=len(LABELS), hidden=32), tmp_path / "wide.pt", list(LABELS))
    with pytest.raises(ModelError, match="wide.pt: cannot blend"):
        blend_with(tmp_path / "trained.pt", tmp_path / "wide.pt")


def test_malformed_edge_cuts_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_train(["--edge-cuts", "0.3", "--work", "unused"]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: --edge-cuts '0.3': want PROB,MAX_MS") and "\n" not in err


def test_blend_init_of_a_widened_model_is_refused_before_training(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main_train(["--blend-init", "--init", str(DEFAULT_MODEL), "--hidden", "320",
                       "--work", str(tmp_path / "work")]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert err == (f"Error: --blend-init: {DEFAULT_MODEL} has 288 GRU units and the model trained in "
                   f"{tmp_path / 'work'} would have 320; blend only models of one shape")
    assert not (tmp_path / "work").exists()  # refused before any data was prepared


def test_blend_init_without_init_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_train(["--blend-init", "--work", "unused"]) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == "Error: --blend-init needs --init MODEL: the weights to blend with"


def test_widened_model_computes_what_the_narrow_one_did() -> None:
    torch.manual_seed(2)
    narrow = AcousticModel(n_labels=len(LABELS), hidden=24, proj=32, channels=8).eval()
    wide = widen(narrow, 40).eval()
    assert wide.hparams == {**narrow.hparams, "hidden": 40} and wide.rnn.hidden_size == 40
    x = torch.randn(1, 90, 64)
    with torch.inference_mode():
        assert torch.allclose(narrow(x), wide(x), atol=1e-5)
    assert np.allclose(narrow.infer(x), wide.infer(x), atol=1e-5)  # the numpy GRU of decoding as well
    new_units = wide.rnn.weight_ih_l0[40 + 24 : 80]  # z-gate rows of the new units: freshly initialised
    assert new_units.abs().sum() > 0
    with pytest.raises(ModelError, match="cannot narrow"):
        widen(wide, 24)


def test_training_widens_its_init_model_and_resumes_wide(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    feats = [torch.from_numpy(rng.standard_normal((60, 64)).astype(np.float16)) for _ in range(4)]
    labels = [torch.tensor([1, 2]) for _ in range(4)]
    shard = tmp_path / "train.pt"
    torch.save({"feats": feats, "labels": labels}, str(shard))
    torch.manual_seed(0)
    save_model(AcousticModel(n_labels=len(LABELS), hidden=16), tmp_path / "init.pt", list(LABELS))
    work = tmp_path / "work"
    work.mkdir()
    for steps, hidden in ((1, 24), (2, None)):  # the resumed run keeps its checkpoint's width
        best = train([shard], shard, work, steps=steps, seed=1, threads=1, max_frames=200, average=1,
                     init=tmp_path / "init.pt", hidden=hidden)
    model, _, extra = load_model(best)
    assert model.hparams["hidden"] == 24 and model.rnn.hidden_size == 24 and extra["step"] in {1, 2}
    assert torch.load(str(work / "checkpoint.pt"), weights_only=False)["step"] == 2
    with pytest.raises(ModelError, match="cannot narrow"):
        train([shard], shard, tmp_path, steps=1, seed=1, threads=1, init=tmp_path / "init.pt", hidden=8)


def test_word_spans_reach_halfway_to_the_neighbours_and_no_further_than_the_cap() -> None:
    from torchaudio.functional import TokenSpan

    from vcd.training.wordcuts import MAX_REACH_FRAMES, word_spans

    # two words of two phones each: spikes at 10-11, 14-15 and 20-21, 40-41 of 100 frames
    spans = [TokenSpan(5, 10, 11, 0.9), TokenSpan(6, 14, 15, 0.7), TokenSpan(7, 20, 21, 0.8),
             TokenSpan(8, 40, 41, 0.6)]
    first, second = word_spans(spans, [2, 2], total=100)
    assert first[:2] == (10 - MAX_REACH_FRAMES, (15 + 20 + 1) // 2)
    assert second[:2] == ((15 + 20) // 2, 41 + MAX_REACH_FRAMES)
    assert first[2] == pytest.approx(0.8) and second[2] == pytest.approx(0.7)


def test_digits_are_cut_out_of_a_spoken_digit_string_as_words_the_model_recognises(tmp_path: Path) -> None:
    from conftest import speak
    from vcd.recognizer import DEFAULT_MODEL, Recognizer
    from vcd.training.corpora import corpus_lexicon
    from vcd.training.prepare import DIGITS
    from vcd.training.wordcuts import cut_words
    from vcd.transcripts import Utterance

    path = tmp_path / "digits.wav"
    write_wav(path, np.concatenate([np.zeros(4000, np.float32), speak("seven two nine", words_per_minute=110),
                                    np.zeros(4000, np.float32)]))
    # speechocean762's speaker 1026 is a training speaker (see speaker_split)
    utterances = {"speechocean762": [Utterance(path, "seven two nine", "1026", "speechocean762"),
                                     Utterance(path, "hello", "1026", "speechocean762")]}
    out = tmp_path / "words"
    cut_words(utterances, {"speechocean762": corpus_lexicon(tmp_path, "speechocean762")}, DEFAULT_MODEL, out,
              frozenset(DIGITS))
    rows = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["seven", "two", "nine"]
    assert {r["speaker"] for r in rows} == {"speechocean762/1026"}
    digits = Recognizer.load(Path(__file__).parent.parent / "benchmarks" / "grammars" / "digits.yaml", None, 0.0)
    for row in rows:
        clip, rate = soundfile.read(str(out / row["file"]), dtype="float32")
        assert rate == SAMPLE_RATE_HZ and 0.15 < clip.size / rate < 0.9
        padded = np.concatenate([np.zeros(4800, np.float32), clip, np.zeros(4800, np.float32)])
        assert digits.recognize(padded).text == row["text"]


def test_half_precision_model_file_is_half_the_size_and_decodes_the_same(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = AcousticModel(n_labels=len(LABELS)).eval()
    save_model(model, tmp_path / "full.pt", list(LABELS), {"confidence_scale": 0.3})
    save_model(model, tmp_path / "half.pt", list(LABELS), {"confidence_scale": 0.3}, half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.55 * (tmp_path / "full.pt").stat().st_size
    loaded, labels, extra = load_model(tmp_path / "half.pt")
    assert labels == list(LABELS) and extra == {"confidence_scale": 0.3}
    assert all(p.dtype == torch.float32 for p in loaded.parameters())  # decoding still computes in float32
    x = torch.randn(1, 120, 64)
    assert np.abs(np.exp(loaded.infer(x)) - np.exp(model.infer(x))).max() < 2e-3


def test_calibrate_writes_a_float16_model_with_its_confidence_scale(tmp_path: Path) -> None:
    from conftest import utterances
    from vcd.recognizer import DEFAULT_MODEL
    from vcd.training.calibrate import calibrate

    model_file = tmp_path / "model.pt"
    net, labels, extra = load_model(DEFAULT_MODEL)
    save_model(net, model_file, labels, extra)  # float32, as training leaves it
    float32_size = model_file.stat().st_size
    heldout = tmp_path / "synth-heldout"
    heldout.mkdir()
    rows = []
    for i, text in enumerate(["turn on the kitchen light", "turn off the kitchen light"]):
        write_wav(heldout / f"{i}.wav", utterances(text, lead_s=0.3, tail_s=0.3))
        rows.append(json.dumps({"file": f"{i}.wav", "text": text, "speaker": "espeak"}))
    (heldout / "transcripts.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    scale = calibrate(model_file, None, heldout)  # positives only: every other held-out clip
    assert model_file.stat().st_size < 0.55 * float32_size
    state = torch.load(str(model_file), map_location="cpu", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    _, _, extra = load_model(model_file)
    assert extra["confidence_scale"] == pytest.approx(scale) and scale > 0
    assert extra["calibration"]["positives"] == 1 and extra["calibration"]["negatives"] == 0


def test_the_fit_floor_is_the_loosest_that_keeps_babble_false_accepts_in_budget() -> None:
    from vcd.training.calibrate import choose_fit_floor

    neg_gaps = np.array([0.5] * 10 + [5.0] * 90)  # 10 of 100 negatives pass the gap threshold of 2.0
    neg_fits = np.array([-1.0, -1.5, -2.0, -2.2, -2.4, -2.6, -2.8, -3.0, -3.2, -3.4] + [-1.0] * 90)
    pos_fits = np.full(50, -1.0)
    floor = choose_fit_floor(neg_gaps, neg_fits, 2.0, pos_fits, budget=0.03)
    assert -2.2 < floor < -2.0 + 1e-9 and floor == pytest.approx(-2.2)  # just above the 4th best fit
    assert int(np.sum((neg_gaps <= 2.0) & (neg_fits >= floor))) == 3  # three negatives pass: 3 % of 100
    assert choose_fit_floor(np.full(100, 5.0), neg_fits, 2.0, pos_fits) is None  # the gap alone suffices
    assert choose_fit_floor(neg_gaps, neg_fits, 2.0, np.full(50, -3.0), budget=0.03) == -3.0  # positives first


@pytest.mark.parametrize("skip", [False, True])
def test_the_rejection_fit_at_the_end_of_training_can_be_left_to_the_study(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skip: bool) -> None:
    """With --data, vcd train ends by fitting the rejection rule on the validation decodes (as long as a short
    run); --no-rejection-fit leaves the model's rule as it was, for benchmarks/rejection_study.py --write."""
    import vcd.training.calibrate as calibrate_module
    import vcd.training.prepare as prepare_module
    import vcd.training.train as train_module

    work, data = tmp_path / "work", tmp_path / "data"
    data.mkdir()
    work.mkdir()
    (work / prepare_module.PRONUNCIATIONS).write_text("{}", encoding="utf-8")
    fitted = []
    monkeypatch.setattr(prepare_module, "prepare", lambda *a, **k: [])
    monkeypatch.setattr(train_module, "train", lambda *a, **k: DEFAULT_MODEL)  # the shipped weights stand in for a run
    monkeypatch.setattr(calibrate_module, "calibrate", lambda *a, **k: 1.0)
    monkeypatch.setattr(calibrate_module, "fit_learned_rejection",
                        lambda model, folder, **k: fitted.append((model, folder)))
    output = tmp_path / "model.pt"
    args = ["--data", str(data), "--work", str(work), "--output", str(output)]
    assert main_train(args + (["--no-rejection-fit"] if skip else [])) == ExitCode.OK
    assert fitted == ([] if skip else [(output, data)])
    assert load_model(output)[2]["rejection"] == load_model(DEFAULT_MODEL)[2]["rejection"]  # untouched either way here
