"""Grammar-aware endpointing: a whole command ends after a short silence, one the grammar continues does not.

Real synthesised speech (espeak-ng), the shipped model, the real VAD, and the real daemon.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_RATE_HZ, silence, speak, vcd_command, write_config, write_wav
from vcd.config import VadConfig
from vcd.recognizer import Recognizer
from vcd.vad import Segmenter, SpeechEnd

SENTENCES = """
language: en
intents:
  HassTurnOn:
    data:
      - sentences:
          - "turn on the light [in the {area}]"
          - "turn on the {area} light"
lists:
  area:
    values: [kitchen, bedroom, hallway]
"""
BLOCK = 320  # 20 ms, as a microphone delivers it


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("endpointing") / "lights.yaml"
    path.write_text(SENTENCES)
    return path


@pytest.fixture(scope="module")
def recognizer(sentences: Path) -> Recognizer:
    return Recognizer.load(sentences=sentences)


def segment(audio: np.ndarray, complete, config: VadConfig = VadConfig()) -> list[tuple[int, SpeechEnd]]:
    """Feed ``audio`` in 20 ms blocks; each segment closed, with the sample position at which it closed."""
    segmenter = Segmenter(config, complete=complete)
    ends = []
    for start in range(0, len(audio), BLOCK):
        for event in segmenter.process(audio[start : start + BLOCK]):
            if isinstance(event, SpeechEnd):
                ends.append((start + BLOCK, event))
    return ends


def last_loud(audio: np.ndarray) -> int:
    return int(np.flatnonzero(np.abs(audio) > 0.02)[-1])


def test_a_whole_command_ends_after_the_short_silence(recognizer: Recognizer) -> None:
    words = speak("turn on the kitchen light")
    audio = np.concatenate([silence(0.5), words, silence(1.5)])
    spoken_end = last_loud(audio)
    early = segment(audio, recognizer.complete)
    late = segment(audio, recognizer.complete, replace(VadConfig(), early_silence_ms=0))
    assert len(early) == len(late) == 1
    (early_at, end), (late_at, plain) = early[0], late[0]
    assert end.early and end.result.text == "turn on the kitchen light" and end.result.intent == "HassTurnOn"
    assert not plain.early
    # the early close comes early_silence_ms of unvoiced frames after the voice (webrtcvad hears a little
    # of the fading sound as voice), well before the silence_ms rule would close it
    config = VadConfig()
    assert (early_at - spoken_end) / SAMPLE_RATE_HZ * 1000 < config.early_silence_ms + 200
    assert (late_at - early_at) / SAMPLE_RATE_HZ * 1000 > 250
    assert len(end.samples) <= len(plain.samples)


def test_a_command_the_grammar_continues_waits_for_the_full_silence(recognizer: Recognizer) -> None:
    audio = np.concatenate([silence(0.5), speak("turn on the light"), silence(1.5)])
    checked: list[str] = []

    def complete(samples: np.ndarray):
        result = recognizer.complete(samples)
        checked.append(recognizer.recognize(samples).text)
        return result

    ends = segment(audio, complete)
    plain = segment(audio, None, replace(VadConfig(), early_silence_ms=0))
    assert checked == ["turn on the light"]  # recognised, but "… in the kitchen" may follow
    assert [(at, e.early) for at, e in ends] == [(plain[0][0], False)]  # closed where silence alone closes it
    assert recognizer.recognize(ends[0][1].samples).text == "turn on the light"


def test_a_pause_before_the_rest_of_a_longer_sentence_does_not_cut_the_command(recognizer: Recognizer) -> None:
    first, rest = speak("turn on the light"), speak("in the kitchen")
    pause_ms = (len(first) - last_loud(first)) / SAMPLE_RATE_HZ * 1000  # espeak-ng's own silence after a sentence
    assert VadConfig().early_silence_ms + 100 < pause_ms < VadConfig().silence_ms
    audio = np.concatenate([silence(0.5), first, rest, silence(1.5)])
    ends = segment(audio, recognizer.complete)
    assert len(ends) == 1
    end = ends[0][1]
    text = end.result.text if end.early else recognizer.recognize(end.samples).text
    assert text == "turn on the light in the kitchen"


def test_speech_that_is_not_a_command_is_not_closed_early(recognizer: Recognizer) -> None:
    audio = np.concatenate([silence(0.5), speak("the quick brown fox jumps over the lazy dog"), silence(1.5)])
    ends = segment(audio, recognizer.complete)
    assert ends and not any(e.early for _, e in ends)


def test_a_command_cut_inside_a_word_never_ends_early_as_another_command() -> None:
    """Cut anywhere in "turn off the fish tank", a segment is either not a whole command yet or is this one:
    the learned rejection rule takes some cuts ("turn off the fi…") for another sentence, so ending
    early also needs the gap and the fit floor (Recognizer._fits_closely)."""
    from vcd import ListValue
    from conftest import utterances

    recognizer = Recognizer.load(extra_lists={"name": [ListValue("fish tank", "fish tank")]})
    audio = utterances("turn off the fish tank")
    assert recognizer.complete(audio).text == "turn off the fish tank"
    for end_s in np.arange(0.8, audio.size / SAMPLE_RATE_HZ, 0.05):
        early = recognizer.complete(audio[: int(end_s * SAMPLE_RATE_HZ)])
        assert early is None or early.text == "turn off the fish tank", (end_s, early)


@pytest.mark.parametrize("text", ["how warm is it in the bedroom", "turn on the fish tank"])
def test_a_command_cut_short_by_a_pause_is_not_whole(text: str) -> None:
    """A pause of the early silence anywhere in a command: "how warm is it in the bed…" fits "… garden" well enough
    for the rules, but a sentence cut short fits it far better (Recognizer._cut_short), so it is not ended early."""
    from vcd import ListValue

    recognizer = Recognizer.load(extra_lists={"name": [ListValue("fish tank", "fish tank")]})
    said = speak(text)
    loud = np.flatnonzero(np.abs(said) > 0.02)
    pause = silence(0.15)
    assert recognizer.complete(np.concatenate([silence(0.3), said[: loud[-1] + 1], pause])).text == text
    for end in range(int(loud[0]) + 4000, int(loud[-1]), 800):
        early = recognizer.complete(np.concatenate([silence(0.3), said[:end], pause]))
        assert early is None or early.text == text, (end / SAMPLE_RATE_HZ, early)


def test_a_pause_inside_a_word_does_not_end_the_command_as_another() -> None:
    """"how warm is it in the bed" · 350 ms · "room", through the VAD as the daemon runs it: one command, the
    one said.  (Without the prefix check the pause ended it early as "how warm is it in the garden".)"""
    recognizer = Recognizer.load()
    said = speak("how warm is it in the bedroom")
    cut = int(1.35 * SAMPLE_RATE_HZ)  # inside "bedroom", after "bed"
    audio = np.concatenate([silence(0.5), said[:cut], silence(0.35), said[cut:], silence(1.5)])
    ends = segment(audio, recognizer.complete)
    texts = [e.result.text if e.early else recognizer.recognize(e.samples).text for _, e in ends]
    assert texts == ["how warm is it in the bedroom"], texts


def test_the_daemon_publishes_the_long_command_only(tmp_path: Path, sentences: Path) -> None:
    """"turn on the light", a pause shorter than vad.silence_ms, "in the kitchen": one command, the long one."""
    wav = write_wav(tmp_path / "pause.wav", np.concatenate(
        [silence(1.0), speak("turn on the light"), speak("in the kitchen"), silence(1.5),
         speak("turn on the bedroom light"), silence(1.5)]))
    config = write_config(tmp_path / "config.toml", {
        "plugins": {"enabled": ["console"]},
        "plugins.console": {"format": "json", "events": ["intent", "unrecognized"]},
        "recognizer": {"sentences": str(sentences)},
    })
    result = subprocess.run([*vcd_command(), "run", "--config", str(config), "--input", str(wav)],
                            capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["event"], e.get("text")) for e in events] == [
        ("intent", "turn on the light in the kitchen"),
        ("intent", "turn on the bedroom light"),
    ], result.stderr
    assert events[0]["slots"] == {"area": "kitchen"}
