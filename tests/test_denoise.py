"""The denoising front end: RNNoise on real synthesised speech, in the recogniser, the config and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (decodes_in_the_daemon, requires_espeak, speak, utterances, vcd_command, without_module, write_config,
                      write_wav)
from vcd.config import load_config
from vcd.denoise import RNNoise, SegmentDenoiser, WebRtcNoise, make_front_end, make_view
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


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 6000), min_size=1, max_size=8), st.integers(0, 4000), st.sampled_from(["webrtc", "rnnoise"]))
def test_a_segment_denoised_as_it_grows_is_what_one_look_at_the_whole_gives(blocks: list[int], trimmed: int,
                                                                           name: str) -> None:
    """SegmentDenoiser (the daemon's VAD stage with recognizer.denoised_view): fed the segment so far after
    each block, it gives exactly the denoiser on the whole segment; a start of what it heard (the segment's
    trailing silence trimmed) is that output cut short; another segment starts a fresh state."""
    rng = np.random.default_rng(len(blocks))
    audio = (rng.standard_normal(sum(blocks) + trimmed) * 0.05).astype(np.float32)
    view = make_view(name)
    denoiser = SegmentDenoiser(view)
    ends = np.cumsum(blocks)
    for end in ends:
        denoiser.feed(audio[:end])
    denoiser.feed(audio)
    whole = view(audio)
    segment = audio[: ends[-1]]
    assert np.array_equal(denoiser(segment), whole[: segment.size])
    other = audio[::-1].copy()
    assert np.array_equal(denoiser(other), view(other))
    short = SegmentDenoiser(view)
    short(audio[: blocks[0]])  # ended, flushed
    assert np.array_equal(short(audio), whole)  # then grew: denoised again from the start


def test_rnnoise_needs_none_of_pyrnnoises_file_tools() -> None:
    """scripts/install.sh installs pyrnnoise without its dependencies (VCD_EXTRAS=denoise): vcd must not need them."""
    code = (
        "import sys, importlib.abc\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in {'audiolab', 'av', 'matplotlib', 'tqdm', 'click'}:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        "import numpy as np\n"
        "from vcd.denoise import RNNoise\n"
        "out = RNNoise()(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)\n"
        "print(out.size, 'pyrnnoise' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["16000", "False"]


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


@requires_espeak
def test_transcribe_denoised_view_option(tmp_path: Path) -> None:
    """--denoised-view names the view's denoiser, as recognizer.denoised_view; another name is a usage error."""
    wav = write_wav(tmp_path / "radio.wav", speak("turn on the radio"))
    bad = subprocess.run([*vcd_command(), "transcribe", "--denoised-view", "speex", str(wav)], capture_output=True,
                         text=True)
    assert bad.returncode == ExitCode.USAGE and "--denoised-view: invalid choice: 'speex'" in bad.stderr
    for name in ("off", "webrtc"):
        ok = subprocess.run([*vcd_command(), "transcribe", "--denoised-view", name, str(wav)], capture_output=True,
                            text=True, timeout=120)
        assert ok.returncode == 0, ok.stderr
        assert '"text": "turn on the radio"' in ok.stdout


def _noisy_command(seed: int = 0, snr_db: float = 3.0) -> np.ndarray:
    """An espeak command in white noise (lead and tail too): a segment the SNR estimate calls loud."""
    speech = speak("turn on the kitchen light")
    rng = np.random.default_rng(seed)
    level = np.sqrt(np.mean(np.square(speech)) / 10 ** (snr_db / 10))
    audio = np.concatenate([np.zeros(4000, np.float32), speech, np.zeros(4000, np.float32)])
    return (audio + rng.standard_normal(audio.size).astype(np.float32) * level).astype(np.float32)


@requires_espeak
@pytest.mark.parametrize("name", ["webrtc", "rnnoise"])
def test_the_denoised_view_accepts_a_rejected_sentence_when_the_denoised_decode_agrees(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """recognizer.denoised_view: a sentence the rule rejects in a loud segment is decoded again from the view's
    denoiser's output and accepted with that decode's confidence when the same sentence comes out and the rule accepts it;
    a quiet segment is never looked at again; off by default.  The rule here is built from the two decodes' own
    fit so that it rejects the segment as heard and accepts it denoised: what is tested is the mechanism (the
    model, the denoiser and the search are real), not whether denoising helps this synthetic voice."""
    from vcd.audio import estimate_snr_db
    from vcd.decoder import search
    from vcd.model import export_numpy, load_model, save_model
    from vcd.recognizer import DEFAULT_MODEL

    grammar = tmp_path / "s.yaml"
    grammar.write_text(SENTENCES, encoding="utf-8")
    noisy = _noisy_command()
    assert estimate_snr_db(noisy) < 20.0
    plain = Recognizer.load(grammar)
    _, heard = plain.decode(noisy, ask=False)
    view = make_view(name)
    seen = search(plain.graph, plain.posteriors(view(noisy), denoise=False), plain.beam)
    assert heard.words == seen.words == "turn on the kitchen light".split()
    raw_fit, view_fit = heard.fit_per_frame, seen.fit_per_frame
    assert abs(view_fit - raw_fit) > 0.05
    weight = 10.0 if view_fit > raw_fit else -10.0
    model, labels, extra = load_model(DEFAULT_MODEL)
    model_file = tmp_path / "rule.pt"
    save_model(model, model_file, labels, {**extra, "rejection": {
        "features": ["fit"], "weights": [weight], "bias": -weight * (raw_fit + view_fit) / 2}}, half=True)
    export_numpy(model_file)

    off = Recognizer.load(grammar, model_file)
    assert off.view is None and not off.recognize(noisy).recognized
    on = Recognizer.load(grammar, model_file, denoised_view=name)
    result = on.recognize(noisy)
    assert result.recognized and result.text == "turn on the kitchen light"
    assert result.confidence == pytest.approx(1 / (1 + np.exp(-weight * (view_fit - raw_fit) / 2)), rel=1e-3)
    denoised = view(noisy)  # denoised by the caller as the segment grew: the view does not denoise again
    monkeypatch.setattr(on, "view", lambda samples: pytest.fail("denoised a second time"))
    again = on.recognize(noisy, denoised=denoised)
    assert (again.text, again.confidence) == (result.text, result.confidence)
    looked = []
    monkeypatch.setattr(on, "view", lambda samples: looked.append(samples.size) or view(samples))
    quiet = utterances("turn on the kitchen light", lead_s=0.3, tail_s=0.3)
    assert estimate_snr_db(quiet) >= 20.0
    on.recognize(quiet)
    assert looked == []  # a quiet room: decided as heard
    assert Recognizer.load(grammar, model_file, front_end="rnnoise", denoised_view=name).view is None


def test_the_denoised_view_without_its_package_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import vcd.denoise

    def missing(self) -> None:
        raise ConfigError("recognizer.front_end: rnnoise needs the pyrnnoise package, pip install 'vcd[denoise]'")

    monkeypatch.setattr(vcd.denoise.RNNoise, "__init__", missing)
    assert isinstance(Recognizer.load(None, denoised_view=True).view, WebRtcNoise)  # the default view: no pyrnnoise
    with pytest.raises(ConfigError) as err:
        Recognizer.load(None, denoised_view="rnnoise")
    assert str(err.value) == ("recognizer.denoised_view: rnnoise needs the pyrnnoise package, "
                              "VCD_EXTRAS=denoise scripts/install.sh or pip install 'vcd[denoise]'")
    without_module(monkeypatch, "webrtc_noise_gain")
    assert Recognizer.load(None, denoised_view="off").view is None  # nothing needed
    with pytest.raises(ConfigError) as err:
        Recognizer.load(None, denoised_view="webrtc")
    assert str(err.value).startswith("recognizer.denoised_view: webrtc needs the webrtc-noise-gain package (")
    assert "\n" not in str(err.value)


@requires_espeak
def test_the_daemon_denoises_each_segment_as_it_grows_for_the_denoised_view() -> None:
    """With recognizer.denoised_view, the VAD stage denoises the open segment as it grows (in its thread) and
    the recogniser stage gets that audio with the segment, so that the end of speech leaves only the decode."""
    recognizer = Recognizer.load(denoised_view=True)
    assert isinstance(recognizer.view, WebRtcNoise)  # the shipped model has a learned rule; WebRTC's, the default
    audio = utterances("turn on the kitchen light", 1.5, "what a lovely day it is", tail_s=2.0)
    seen = decodes_in_the_daemon(recognizer, audio)
    decoded = [(samples, denoised) for thread, samples, _, denoised in seen if thread == "vcd-asr"]
    assert decoded  # "what a lovely day it is" is decoded after its end (the command may end early)
    for samples, denoised in decoded:
        assert denoised is not None and denoised.shape == samples.shape
        assert np.allclose(denoised, WebRtcNoise()(samples), atol=1e-4)  # only the trimmed end's last ms may differ
