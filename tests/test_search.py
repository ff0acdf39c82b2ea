"""The search that scales: the minimal word automaton, the pruned (beam) search against the exact one."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import speak, utterances, vcd_command, write_wav
from vcd.errors import ExitCode
from vcd.decoder import MARGIN_NONE, beam_search, build_phone_graph, minimize, search, viterbi
from vcd.grammar import compile_word_graph, load_intents, sample_sentence
from vcd.phonetics import LABELS, Lexicon
from vcd.recognizer import DEFAULT_BEAM, Recognizer

LIGHTS = """
language: en
intents:
  HassTurnOn:
    data:
      - sentences:
          - "(turn | switch) on [the] light [in [the] {area}]"
          - "(turn | switch) on [the] {area} light"
  HassTurnOff:
    data:
      - sentences:
          - "(turn | switch) off [the] light [in [the] {area}]"
          - "(turn | switch) [the] {area} light off"
  HassClimateSetTemperature:
    data:
      - sentences:
          - "set [the] {area} to {temperature} [degrees]"
lists:
  area:
    values:
      - kitchen
      - in: living room
        out: lounge
      - bedroom
  temperature:
    range: {from: 15, to: 25}
"""


@pytest.fixture(scope="module")
def lights(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("grammar") / "lights.yaml"
    path.write_text(LIGHTS)
    intents = load_intents(path)
    word_graph = compile_word_graph(intents)
    return intents, word_graph, build_phone_graph(word_graph, Lexicon())


def accepts(automaton, words: list[str]) -> bool:
    node = 0
    for word in words:
        nxt = [v for w, v in automaton.arcs[node] if w == word]
        if not nxt:
            return False
        node = nxt[0]
    return node in automaton.finals


def peaky(words: list[str], lexicon: Lexicon) -> np.ndarray:
    """Log-posteriors a perfect CTC model would give for the words' first pronunciations."""
    ids = {p: i for i, p in enumerate(LABELS)}
    seq = [0] * 6
    for word in words:
        for phone in lexicon(word)[0]:
            seq += [ids[phone]] * 4 + [0] * 2
    seq += [0] * 6
    lp = np.full((len(seq), len(LABELS)), np.log(0.002 / (len(LABELS) - 1)), dtype=np.float32)
    lp[np.arange(len(seq)), seq] = np.log(0.998)
    return lp


def test_the_minimal_automaton_accepts_exactly_the_sentences_of_the_grammar(lights) -> None:
    intents, word_graph, _ = lights
    automaton = minimize(word_graph)
    for arcs in automaton.arcs:
        assert len({w for w, _ in arcs}) == len(arcs)  # deterministic: each word once per node
    rng = random.Random(0)
    for _ in range(200):
        _, text = sample_sentence(intents, rng)
        assert accepts(automaton, text.split()), text
    for text in ("turn on the", "turn on the light in", "set the kitchen to twenty six", "light on turn"):
        assert not accepts(automaton, text.split()), text
        assert word_graph.parse(text.split()) is None
    # "turn" and "switch" lead to the same future, "the" optional: parallel copies merged
    assert len(automaton.arcs) < len(word_graph.arcs) / 3


def test_copies_of_a_list_in_many_sentences_are_searched_once() -> None:
    """30 sentence blocks that differ only in their fixed slots give the phone graph of one block."""
    from hassil import Intents

    devices = {"values": [f"lamp number {n}" for n in range(20)]}

    def graph(blocks: int):
        data = {"language": "en", "lists": {"device": devices},
                "intents": {"Switch": {"data": [{"sentences": ["switch [the] {device} [on]"], "slots": {"k": k}}
                                                for k in range(blocks)]}}}
        return build_phone_graph(compile_word_graph(Intents.from_dict(data)), Lexicon())

    assert graph(30).size == graph(1).size


def test_meanings_come_from_the_word_graph(lights) -> None:
    _, word_graph, graph = lights
    lexicon = Lexicon()
    for text, expected in [
        ("switch on the light in the living room", ("HassTurnOn", {"area": "lounge"})),
        ("turn the bedroom light off", ("HassTurnOff", {"area": "bedroom"})),
        ("set kitchen to twenty one degrees", ("HassClimateSetTemperature", {"area": "kitchen", "temperature": 21})),
    ]:
        for hyp in (viterbi(graph, peaky(text.split(), lexicon)), beam_search(graph, peaky(text.split(), lexicon), 20)):
            assert hyp.words == text.split()
            assert word_graph.parse(hyp.words) == expected == word_graph.parse(text.split())


def test_the_pruned_search_finds_what_the_exact_search_finds_in_ideal_posteriors(lights) -> None:
    intents, _, graph = lights
    lexicon = Lexicon()
    rng = random.Random(1)
    for _ in range(15):
        _, text = sample_sentence(intents, rng)
        lp = peaky(text.split(), lexicon)
        exact, pruned = viterbi(graph, lp), beam_search(graph, lp, 10.0)
        assert pruned.words == exact.words == text.split()
        assert pruned.score == pytest.approx(exact.score, abs=1e-3)
        assert pruned.free_score == exact.free_score and pruned.speech_frames == exact.speech_frames
    lp = peaky(["switch", "on", "light"], lexicon)
    assert search(graph, lp, beam=0).score == viterbi(graph, lp).score  # beam 0: the exact search


def test_a_sentence_the_grammar_continues_says_so(lights) -> None:
    _, _, graph = lights
    lexicon = Lexicon()
    for text, continues in [("turn on the light", True), ("turn on the light in the kitchen", False),
                            ("turn on the kitchen light", False), ("set the bedroom to twenty", True),
                            ("set the bedroom to twenty degrees", False)]:
        lp = peaky(text.split(), lexicon)
        for hyp in (viterbi(graph, lp), beam_search(graph, lp, DEFAULT_BEAM)):
            assert hyp.words == text.split()
            assert hyp.continues is continues, text


def test_skip_words_after_a_sentence_do_not_keep_it_open() -> None:
    """Home Assistant's skip words may follow any sentence: "… please" does not make a command unfinished,
    but a continuation through a skip word to other words ("… for me" vs "… for five minutes") does."""
    from hassil.intents import Intents

    data = {"language": "en", "skip_words": ["please", "for me"],
            "intents": {"HassTurnOn": {"data": [{"sentences": ["turn on the light"]}]},
                        "HassStartTimer": {"data": [{"sentences": ["start a timer [for {minutes} minutes]"]}]}},
            "lists": {"minutes": {"range": {"from": 1, "to": 10}}}}
    lexicon = Lexicon()
    graph = build_phone_graph(compile_word_graph(Intents.from_dict(data)), lexicon)
    for text, continues in [("turn on the light", False), ("turn on the light please", False),
                            ("please turn on the light", False), ("start a timer", True),
                            ("start a timer for five minutes", False)]:
        lp = peaky(text.split(), lexicon)
        for hyp in (viterbi(graph, lp), beam_search(graph, lp, DEFAULT_BEAM)):
            assert hyp.words == text.split()
            assert hyp.continues is continues, text


def test_the_pruned_search_agrees_with_the_exact_one_on_spoken_commands() -> None:
    """The shipped model, the bundled sentences, espeak-ng voices: the same sentences and scores."""
    recognizer = Recognizer.load()
    rng = random.Random(3)
    voices = ["en-us", "en", "en-us+f2"]
    for k in range(9):
        _, text = sample_sentence(recognizer.intents, rng)
        lp = recognizer.posteriors(speak(text, voice=voices[k % len(voices)]))
        exact = viterbi(recognizer.graph, lp, margin=True)
        pruned = beam_search(recognizer.graph, lp, DEFAULT_BEAM, margin=True)
        assert pruned.words == exact.words, text
        assert pruned.score == pytest.approx(exact.score, abs=1e-2)
        assert pruned.tags == exact.tags and pruned.continues == exact.continues
        assert pruned.agreement == pytest.approx(exact.agreement)
        assert pruned.free_confidence == exact.free_confidence
        assert pruned.coverage == pytest.approx(exact.coverage)
        assert pruned.weakest == pytest.approx(exact.weakest, abs=1e-3)
        # the same rival, or one the pruned search lost far behind (it then says the beam per speech frame)
        lost = DEFAULT_BEAM / max(exact.speech_frames, 1)
        assert (pruned.margin == pytest.approx(exact.margin, abs=1e-2)
                or (pruned.margin == pytest.approx(lost) and exact.margin * exact.speech_frames > DEFAULT_BEAM / 2))


def test_agreement_is_the_share_of_speech_frames_the_sentence_explains(lights) -> None:
    """Ideal posteriors of a sentence the grammar has: every speech frame's best label is the path's.
    The same phones with one word swapped for one the grammar lacks: the path explains fewer of them."""
    _, _, graph = lights
    lexicon = Lexicon()
    for decode in (viterbi, lambda g, lp: beam_search(g, lp, DEFAULT_BEAM)):
        hyp = decode(graph, peaky("turn on the kitchen light".split(), lexicon))
        assert hyp.agreement == 1.0 and hyp.free_confidence == pytest.approx(0.998)
        off = decode(graph, peaky("turn on the garden light".split(), lexicon))
        assert off.words and 0.0 < off.agreement < 0.9
        assert off.free_confidence == pytest.approx(0.998)  # sure of its labels, but they are not the sentence's


def test_transcribe_takes_the_beam_and_refuses_a_negative_one(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "command.wav", utterances("turn on the kitchen light", lead_s=0.3, tail_s=0.5))
    for beam in ("0", "12"):
        proc = subprocess.run([*vcd_command(), "transcribe", "--beam", beam, str(wav)],
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["text"] == "turn on the kitchen light"
    proc = subprocess.run([*vcd_command(), "transcribe", "--beam", "-1", str(wav)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.strip().splitlines() == ["Error: --beam: must be 0 or more (got -1)"]


def test_the_config_default_beam_is_the_recognizer_s() -> None:
    from vcd.config import RecognizerConfig

    assert RecognizerConfig().beam == DEFAULT_BEAM > 0


def test_coverage_is_the_share_of_the_sentences_phones_the_model_heard(lights) -> None:
    """Every phone heard: coverage 1.  A word the model heard nothing of (blank where it should be) that the
    grammar needs: the path still says it and its speech frames still agree, but its phones were not heard."""
    _, _, graph = lights
    lexicon = Lexicon()
    words = "turn on the kitchen light".split()
    unheard = peaky(words, lexicon)
    unsaid = len(lexicon("on")[0])  # "turn the kitchen light" is no sentence: the path must say "on"
    start = 6 + 6 * sum(len(lexicon(w)[0]) for w in words[:1])
    unheard[start:start + 6 * unsaid] = peaky([], lexicon)[0]  # blank, as sure as the model is of silence
    phones = sum(len(lexicon(w)[0]) for w in words)
    for decode in (viterbi, lambda g, lp: beam_search(g, lp, DEFAULT_BEAM)):
        assert decode(graph, peaky(words, lexicon)).coverage == 1.0
        hyp = decode(graph, unheard)
        assert hyp.words == words and hyp.agreement > 0.95  # (its last phone may share turn's "n")
        assert hyp.coverage <= (phones - unsaid + 1) / phones < 1.0


def test_the_weakest_word_is_the_one_the_model_did_not_hear(lights) -> None:
    """Ideal posteriors: every word fits, the weakest word's gap is nearly 0.  One word swapped for one the
    grammar lacks ("garden" for "kitchen"): the path must still say a grammar word there, whose gap per
    speech frame is many nats.  Blurring every frame alike (each label less sure, the best ones unchanged),
    as noise does, leaves every word as near its frames' best labels as before."""
    _, _, graph = lights
    lexicon = Lexicon()
    clean = peaky("turn on the kitchen light".split(), lexicon)
    blurred = np.log(0.6 * np.exp(clean) + 0.4 / clean.shape[1]).astype(np.float32)
    for decode in (viterbi, lambda g, lp: beam_search(g, lp, DEFAULT_BEAM)):
        right = decode(graph, clean)
        assert right.words == "turn on the kitchen light".split() and right.weakest < 0.05
        swapped = decode(graph, peaky("turn on the garden light".split(), lexicon))
        assert swapped.words and swapped.weakest > 2.0
        blur = decode(graph, blurred)
        assert blur.words == right.words and blur.weakest < 0.05 and blur.free_confidence < 0.7


KEYWORDS = """
language: en
intents:
  Keyword:
    data:
      - sentences:
          - "{keyword}"
lists:
  keyword:
    values: ["up", "off", "yes", "no", "stop"]
"""


def test_the_margin_is_how_far_the_sentence_wins_over_one_ending_in_another_word(tmp_path: Path, lights) -> None:
    """A one-word grammar: the right word, heard clearly, wins by several nats per speech frame; the same frames
    made half "off", half "up" (a keyword heard as another in loud noise) leave it winning by little.  Sentences that
    end alike ("turn on the kitchen light", "turn on the bedroom light") still have a rival; a grammar of one
    sentence has none (MARGIN_NONE).  The exact and the pruned search agree."""
    path = tmp_path / "keywords.yaml"
    path.write_text(KEYWORDS)
    lexicon = Lexicon()
    graph = build_phone_graph(compile_word_graph(load_intents(path)), lexicon)
    clear = peaky(["off"], lexicon)
    mixed = np.logaddexp(np.log(0.5) + clear, np.log(0.5) + peaky(["up"], lexicon)[: len(clear)]).astype(np.float32)
    assert np.isnan(viterbi(graph, clear).margin) and np.isnan(beam_search(graph, clear, DEFAULT_BEAM).margin)  # not asked
    for decode in (lambda g, lp: viterbi(g, lp, margin=True),
                   lambda g, lp: beam_search(g, lp, DEFAULT_BEAM, margin=True)):
        sure = decode(graph, clear)
        assert sure.words == ["off"] and sure.margin > 1.0
        unsure = decode(graph, mixed)
        assert unsure.words in (["off"], ["up"]) and 0.0 <= unsure.margin < 0.3
        sentence = decode(lights[2], peaky("turn on the kitchen light".split(), lexicon))
        assert sentence.words == "turn on the kitchen light".split() and 0.5 < sentence.margin <= MARGIN_NONE
    one = tmp_path / "one.yaml"
    one.write_text(KEYWORDS.replace("[\"up\", \"off\", \"yes\", \"no\", \"stop\"]", "[\"off\"]"))
    alone = build_phone_graph(compile_word_graph(load_intents(one)), lexicon)
    assert viterbi(alone, clear, margin=True).margin == MARGIN_NONE


def test_the_recognizer_measures_the_margin_where_its_rule_weighs_it_or_a_study_asks() -> None:
    from dataclasses import replace

    from vcd.recognizer import RejectionRule

    shipped = Recognizer.load()
    assert not shipped.margin  # the shipped rule does not weigh it: no backtraces it does not need
    assert Recognizer.load(margin=True).margin
    rule = RejectionRule(("gap", "margin"), (-1.0, 1.0), 0.0)
    weighs = Recognizer(shipped.model, shipped.intents, shipped.word_graph, shipped.graph, 0.5, 1.0, rejection=rule)
    assert weighs.margin and replace(rule, features=("gap",), weights=(-1.0,)).weighs_margin is False
    shipped.rejection = rule  # a rule put in place later is measured for too
    assert shipped.margin
