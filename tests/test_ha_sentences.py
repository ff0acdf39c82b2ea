"""Home Assistant's sentence files unchanged: layouts, wildcards, context, skip words, priority, and `vcd parse`.

tests/data/ha-intents is a small excerpt of Home Assistant intents (CC BY 4.0, see its README.md).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import requires_espeak, utterances, vcd_command, write_wav
from vcd.errors import ExitCode, GrammarError
from vcd.grammar import compile_word_graph, load_grammar
from vcd.ha_sentences import PRIORITY_USER, load_sentences

HA = Path(__file__).parent / "data" / "ha-intents"
SENTENCES = HA / "sentences" / "en"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from ha_conformance import fixture_lists  # noqa: E402


@pytest.fixture(scope="module")
def home():
    """The excerpt compiled with the lists HA's test harness builds from its fixtures."""
    fixtures = yaml.safe_load((HA / "tests" / "en" / "_fixtures.yaml").read_text(encoding="utf-8"))
    return compile_word_graph(load_sentences([SENTENCES], bundled=False), fixture_lists(fixtures), {"area"})


def test_the_folder_loads_and_wildcard_templates_are_left_out_with_one_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        graph = load_grammar([SENTENCES], bundled=False)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert f"{SENTENCES / 'assist_satellite_HassBroadcast.yaml'}:6: HassBroadcast" in message
    assert "{message}" in message and "\n" not in message
    assert graph.left_out and len(graph.left_out) == 1
    assert graph.understand_text("broadcast that dinner is ready") is None


def test_both_layouts_load(home) -> None:
    # HassTurnOff comes only from HassTurnOff/name_only.yaml (the Intent/ layout): name_domains restricts {name}
    assert home.parse("turn off the bedroom lamp".split()) == ("HassTurnOff", {"name": "Bedroom Lamp"})
    close = home.understand_text("close the curtain left")
    assert (close.intent, close.slots, close.response) == ("HassTurnOff", {"name": "Curtain Left"}, "cover")
    assert home.understand_text("turn off the curtain left") is None  # a cover is not in the first block's domains


def test_requires_context_restricts_the_values_a_template_accepts(home) -> None:
    # fan_HassTurnOn: "turn on the fans" needs the satellite's area (requires_context area, slot: true)
    assert home.understand_text("turn on the fans") is None
    fans = home.understand_text("turn on the fans", {"area": "Living Room"})
    assert (fans.intent, fans.slots, fans.response) == ("HassTurnOn", {"domain": "fan", "area": "Living Room"},
                                                       "fans_area")
    temperature = home.understand_text("what is the temperature?", {"area": "Office"})
    assert (temperature.intent, temperature.slots) == ("HassClimateGetTemperature", {"area": "Office"})


def test_excludes_context_keeps_sensors_out_of_turn_on(home) -> None:
    # homeassistant_HassTurnOn excludes binary_sensor, cover, lock …: "turn on CO" is not a command
    assert home.understand_text("turn on the ceiling fan").slots == {"name": "Ceiling Fan"}
    assert home.understand_text("turn on CO") is None
    assert home.understand_text("turn on the front door") is None


def test_skip_words_before_after_and_inside(home) -> None:
    expected = ("HassTurnOn", {"name": "Ceiling Fan"})
    for text in ("please turn on the ceiling fan", "turn on the ceiling fan for me", "could you turn on the ceiling fan"):
        parse = home.understand_text(text)
        assert (parse.intent, parse.slots) == expected, text
    assert home.parse("please turn on the ceiling fan".split()) == expected  # in the graph the decoder searches


def test_words_built_from_pieces_and_fixed_slots(home) -> None:
    # "fan[s]" is one word, "fans"; the block's fixed slots come with it, as HA's test expects
    assert home.parse("turn on kitchen fans".split()) == ("HassTurnOn", {"area": "Kitchen", "domain": "fan",
                                                                         "name": "all"})


def test_range_multiplier_as_hassil(tmp_path: Path) -> None:
    path = tmp_path / "volume.yaml"
    path.write_text("language: en\nintents:\n  HassSetVolume:\n    data:\n      - sentences:\n"
                    "          - \"volume {volume} percent\"\nlists:\n  volume:\n    range:\n      from: 0\n"
                    "      to: 100\n      multiplier: 0.01\n", encoding="utf-8")
    graph = load_grammar([path], bundled=False)
    assert graph.parse("volume fifty percent".split()) == ("HassSetVolume", {"volume": 0.5})
    assert graph.understand_text("volume 50 percent").slots == {"volume": 0.5}


def test_user_files_add_to_the_bundled_sentences_and_win_ties(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("language: en\nintents:\n  WatchTv:\n    data:\n      - sentences: [\"turn on the tv\"]\n"
                    "  HassTurnOn:\n    data:\n      - sentences: [\"wake up [the] {name}\"]\n"
                    "lists:\n  name:\n    values: [tv, aquarium]\n", encoding="utf-8")
    sentences = load_sentences([mine])
    assert {"HassTurnOn", "HassClimateSetTemperature", "WatchTv"} <= set(sentences.intents.intents)
    graph = compile_word_graph(sentences)
    tv = graph.understand_text("turn on the tv")  # the bundled HassTurnOn says this too
    assert (tv.intent, tv.slots, tv.priority) == ("WatchTv", {}, PRIORITY_USER)
    assert graph.parse("turn on the aquarium".split()) == ("HassTurnOn", {"name": "aquarium"})  # my list …
    assert graph.parse("turn on the kitchen light".split()) is None  # … replaces the bundled one
    assert graph.parse("wake up the aquarium".split()) == ("HassTurnOn", {"name": "aquarium"})
    replaced = load_grammar([mine], bundled=False)
    assert replaced.parse("set the bedroom to twenty degrees".split()) is None


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "HassTurnOn"
    folder.mkdir()
    (folder / "broken.yaml").write_text('language: en\ndata:\n  - sentences:\n      - "turn on <nothing>"\n',
                                        encoding="utf-8")
    with pytest.raises(GrammarError, match=rf"^{folder / 'broken.yaml'}:4: intent HassTurnOn: rule <nothing>"):
        load_grammar([tmp_path], bundled=False)


def test_conformance_benchmark_on_the_excerpt() -> None:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "ha_conformance.py"), "--ha", str(HA)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "intent and slots as Home Assistant expects: 36 / 36 = 100.0 %" in proc.stdout


HOME = ("language: en\nlists:\n  name:\n    values:\n      - in: desk lamp\n        out: light.desk\n"
        "        context: {domain: light}\n      - in: ceiling fan\n        out: fan.ceiling\n"
        "        context: {domain: fan}\n  area:\n    values: [Office, Kitchen]\n")


@requires_espeak
def test_spoken_commands_through_home_assistant_files_with_skip_words_and_context(tmp_path: Path) -> None:
    from vcd.recognizer import Recognizer

    home = tmp_path / "home.yaml"
    home.write_text(HOME, encoding="utf-8")
    recognizer = Recognizer.load([SENTENCES, home], bundled=False, context={"area": "Office"})
    for said, intent, slots in [("please turn on the desk lamp", "HassTurnOn", {"name": "light.desk"}),
                                ("turn on the ceiling fan for me", "HassTurnOn", {"name": "fan.ceiling"}),
                                ("what is the temperature", "HassClimateGetTemperature", {"area": "Office"})]:
        got = recognizer.recognize(utterances(said, lead_s=0.3, tail_s=0.5))
        assert (got.text, got.intent, got.slots) == (said, intent, slots)


@requires_espeak
def test_transcribe_a_users_intent_wins_over_the_bundled_one(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text('language: en\nintents:\n  WatchTv:\n    data:\n      - sentences: ["turn on the tv"]\n',
                    encoding="utf-8")
    wav = write_wav(tmp_path / "tv.wav", utterances("turn on the tv", lead_s=0.3, tail_s=0.5))
    proc = subprocess.run([*vcd_command(), "transcribe", "--sentences", str(mine), str(wav)], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == ExitCode.OK, proc.stderr
    line = json.loads(proc.stdout)
    assert (line["text"], line["intent"], line["slots"]) == ("turn on the tv", "WatchTv", {})


@requires_espeak
def test_conformance_benchmark_says_sentences_with_held_out_voices() -> None:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "ha_conformance.py"), "--ha", str(HA), "--spoken", "6"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    spoken = [line for line in proc.stdout.splitlines() if line.startswith("spoken by")]
    assert len(spoken) == 1 and "espeak-ng:en-us+Annie" in spoken[0]
    assert "Home Assistant expects: 6 / 6 = 100.0 %; rejected 0" in spoken[0]


# --- vcd parse -------------------------------------------------------------------------------------------


def run_parse(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*vcd_command(), "parse", *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_parse_prints_transcribe_lines_for_arguments() -> None:
    proc = run_parse("turn on the kitchen light", "set the bedroom to 21 degrees")
    assert proc.returncode == ExitCode.OK, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert set(lines[0]) == {"input", "text", "intent", "slots", "confidence", "audio_s", "decode_ms"}
    assert (lines[0]["text"], lines[0]["intent"], lines[0]["slots"]) == (
        "turn on the kitchen light", "HassTurnOn", {"name": "kitchen light"})
    assert (lines[1]["input"], lines[1]["text"], lines[1]["slots"]) == (
        "set the bedroom to 21 degrees", "set the bedroom to twenty one degrees", {"area": "bedroom", "temperature": 21})


def test_parse_reads_stdin_and_exits_1_when_a_sentence_is_not_understood() -> None:
    proc = run_parse(stdin="turn on the radio\n\nthe quick brown fox\n")
    assert proc.returncode == ExitCode.FAILURE
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["intent"] for line in lines] == ["HassTurnOn", None]
    assert lines[1] == {"input": "the quick brown fox", "text": "", "intent": None, "slots": {}, "confidence": 0.0,
                        "audio_s": 0.0, "decode_ms": lines[1]["decode_ms"]}


def test_parse_home_assistant_folder_with_context_and_several_files(tmp_path: Path) -> None:
    lists = tmp_path / "home.yaml"
    lists.write_text("language: en\nlists:\n  name:\n    values:\n      - in: desk lamp\n        out: light.desk\n"
                     "        context: {domain: light}\n  area:\n    values: [Office]\n", encoding="utf-8")
    proc = run_parse("--sentences", str(SENTENCES), "--sentences", str(lists), "--context", "area=Office",
                     "please turn on the desk lamp", "what is the temperature", "set the temperature to 20 degrees")
    assert proc.returncode == ExitCode.OK, proc.stderr
    got = [(line["intent"], line["slots"]) for line in map(json.loads, proc.stdout.splitlines())]
    assert got == [("HassTurnOn", {"name": "light.desk"}), ("HassClimateGetTemperature", {"area": "Office"}),
                   ("HassClimateSetTemperature", {"temperature": 20})]  # the bundled sentences are still there
    assert proc.stderr.count("WARNING") == 1 and "assist_satellite_HassBroadcast.yaml:6" in proc.stderr
    only = run_parse("--replace-sentences", "--sentences", str(SENTENCES), "--sentences", str(lists),
                     "set the temperature to 20 degrees")
    assert only.returncode == ExitCode.FAILURE


def test_parse_errors_are_one_line_with_documented_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('language: en\nintents:\n  A:\n    data:\n      - sentences: ["(turn on"]\n', encoding="utf-8")
    proc = run_parse("--sentences", str(bad), "turn on")
    assert proc.returncode == ExitCode.NO_INPUT
    assert proc.stderr.startswith(f"Error: {bad}:5: intent A: bad template '(turn on'")
    assert len(proc.stderr.strip().splitlines()) == 1
    usage = run_parse("--context", "area", "turn on the tv")
    assert usage.returncode == ExitCode.USAGE and usage.stderr.startswith("Error: --context: expected KEY=VALUE")
    missing = run_parse("--sentences", str(tmp_path / "nope.yaml"), "x")
    assert missing.returncode == ExitCode.NO_INPUT and "no such sentences file or folder" in missing.stderr


def test_a_heater_is_not_answered_with_a_sensors_slots(tmp_path: Path) -> None:
    """The issue's case: a block for carbon-monoxide sensors must not take "is the kitchen heater on"."""
    path = tmp_path / "state.yaml"
    path.write_text("""language: en
intents:
  HassGetState:
    data:
      - sentences: ["is [the] {name} {co_states:state}"]
        requires_context: {domain: binary_sensor, device_class: carbon_monoxide}
        slots: {domain: binary_sensor, device_class: carbon_monoxide}
      - sentences: ["is [the] {name} {on_off:state}"]
        excludes_context: {domain: [binary_sensor, cover]}
lists:
  co_states:
    values: [{in: "(detected|on)", out: "on"}, {in: clear, out: "off"}]
  on_off:
    values: ["on", "off"]
  name:
    values:
      - {in: kitchen heater, out: climate.kitchen, context: {domain: climate}}
      - {in: co sensor, out: binary_sensor.co, context: {domain: binary_sensor, device_class: carbon_monoxide}}
""", encoding="utf-8")
    graph = load_grammar([path], bundled=False)
    assert graph.parse("is the kitchen heater on".split()) == ("HassGetState", {"name": "climate.kitchen",
                                                                                "state": "on"})
    assert graph.parse("is the co sensor on".split()) == (
        "HassGetState", {"name": "binary_sensor.co", "state": "on", "domain": "binary_sensor",
                         "device_class": "carbon_monoxide"})
    assert graph.parse("is the kitchen heater detected".split()) is None


def random_sentence(graph, rng) -> list[str]:
    """The words of a random path from start to final (every arc of a compiled graph leads to the end)."""
    node, words = graph.start, []
    while node != graph.final:
        node, word, _tag = rng.choice(graph.arcs[node])
        if word:
            words.append(word)
    return words


def test_the_decoder_searches_the_same_sentences_as_one_minimal_automaton(home) -> None:
    import random

    from vcd.decoder import build_phone_graph, minimize, viterbi
    from vcd.phonetics import Lexicon

    automaton = minimize(home)  # deterministic: each (word, next state) once, whatever the templates repeat

    def accepted(words: list[str]) -> bool:
        state = 0
        for word in words:
            state = next((v for w, v in automaton.arcs[state] if w == word), None)
            if state is None:
                return False
        return state in automaton.finals

    def drawn(rng: random.Random) -> list[str]:
        state, words = 0, []
        while automaton.arcs[state] and not (state in automaton.finals and rng.random() < 0.3):
            word, state = rng.choice(automaton.arcs[state])
            words.append(word)
        return words

    rng = random.Random(0)
    for _ in range(300):
        said = random_sentence(home, rng)
        assert accepted(said), said
        heard = drawn(rng)
        assert home.paths(heard), heard
    lexicon = Lexicon()
    phones = build_phone_graph(home, lexicon)
    from test_recognizer import peaky_posteriors

    for text in ("turn on the ceiling fan", "what is the temperature in the living room"):
        words = text.split()
        hyp = viterbi(phones, peaky_posteriors([p for w in words for p in lexicon(w)[0]]))
        assert hyp.words == words
