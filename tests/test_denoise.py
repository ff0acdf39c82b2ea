"""The denoising front end: RNNoise on real synthesised speech, in the recogniser, the config and the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import requires_espeak, speak, utterances, vcd_command, write_config, write_wav
from vcd.config import load_config
from vcd.denoise import RNNoise, make_front_end
from vcd.errors import ConfigError, ExitCode
from vcd.recognizer import Recognizer

SENTENCES = """
language: en
intents:
  HassTurnOn:
    data:
      - sentences: ["turn on [the] {name}"]
lists:
  name:
    values: [kitchen light, radio]
"""


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def test_rnnoise_keeps_length_and_removes_steady_noise() -> None:
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(16000 * 2) * 0.02).astype(np.float32)
    out = RNNoise()(hiss)
    assert out.shape == hiss.shape and out.dtype == np.float32
    assert power_db(out[8000:]) < power_db(hiss[8000:]) - 15.0  # after the first half second


@requires_espeak
def test_rnnoise_keeps_speech() -> None:
    speech = utterances("turn on the radio", lead_s=0.3, tail_s=0.3)
    out = RNNoise()(speech)
    assert abs(power_db(out) - power_db(speech)) < 6.0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False, width=32), min_size=0, max_size=2000))
def test_rnnoise_any_input_gives_bounded_audio_of_the_same_length(values: list[float]) -> None:
    samples = np.asarray(values, dtype=np.float32)
    out = RNNoise()(samples)
    assert out.shape == samples.shape
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1.0)


def test_unknown_front_end_is_a_config_error() -> None:
    assert make_front_end("none") is None
    with pytest.raises(ConfigError, match="recognizer.front_end"):
        make_front_end("speex")


@requires_espeak
def test_recognizer_with_the_front_end_understands_a_command_in_noise(tmp_path: Path) -> None:
    grammar = tmp_path / "s.yaml"
    grammar.write_text(SENTENCES, encoding="utf-8")
    speech = utterances("turn on the kitchen light", lead_s=0.3, tail_s=0.3)
    rng = np.random.default_rng(1)
    noisy = np.clip(speech + rng.standard_normal(speech.size).astype(np.float32) * 0.01, -1, 1)
    recognizer = Recognizer.load(grammar, front_end="rnnoise")
    assert recognizer.front_end is not None
    result = recognizer.recognize(noisy)
    assert result.intent == "HassTurnOn" and result.slots == {"name": "kitchen light"}


def test_config_front_end_is_checked(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path / "ok.toml", {"recognizer": {"front_end": "none"}})).recognizer.front_end == "none"
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path / "bad.toml", {"recognizer": {"front_end": "speex"}}))
    assert "recognizer.front_end" in str(err.value) and "\n" not in str(err.value)


@requires_espeak
def test_transcribe_front_end_option(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "radio.wav", speak("turn on the radio"))
    grammar = tmp_path / "s.yaml"
    grammar.write_text(SENTENCES, encoding="utf-8")
    bad = subprocess.run([*vcd_command(), "transcribe", "--front-end", "speex", str(wav)], capture_output=True, text=True)
    assert bad.returncode == ExitCode.USAGE
    ok = subprocess.run([*vcd_command(), "transcribe", "--front-end", "rnnoise", "--sentences", str(grammar), str(wav)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert '"text": "turn on the radio"' in ok.stdout
