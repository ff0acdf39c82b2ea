"""The second opinion (vcd.second_opinion): PocketSphinx over vcd's word graph, and when the recogniser asks it."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import noise, utterances, without_module
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.errors import ModelError
from vcd.recognizer import Recognizer, RejectionRule
from vcd.second_opinion import SecondOpinion, dictionary_entries, second_opinion_or_none


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load(None)


def test_pocketsphinx_hears_a_spoken_command_as_the_same_sentence_and_noise_as_none(recognizer: Recognizer) -> None:
    opinion = SecondOpinion(recognizer.lexicon)
    graph = recognizer.word_graph
    assert opinion.sentence(graph, utterances("turn on the kitchen light")) == "turn on the kitchen light".split()
    assert opinion.agrees(graph, utterances("turn off the kitchen light"), "turn off the kitchen light".split())
    assert not opinion.agrees(graph, utterances("turn off the kitchen light"), "turn on the kitchen light".split())
    assert not opinion.agrees(graph, noise(2.0, level=0.05), [])  # no sentence: nothing to agree with
    heard = opinion.sentence(graph, noise(2.0, level=0.05))
    assert heard == [] or graph.parse(heard) is not None  # forced onto the grammar, if anywhere


def test_a_word_missing_from_its_dictionary_is_taken_from_vcds_lexicon() -> None:
    from vcd.phonetics import Lexicon

    recognizer = Recognizer.load(None, extra_lists={"name": []})
    from vcd.controls import ListValue

    grammar = recognizer.compile_grammar({"name": [ListValue("nanoleaf lamp", "light.nanoleaf")]})
    asked: list[str] = []
    lexicon = Lexicon()

    def pronounce(word: str):
        asked.append(word)
        return lexicon(word)

    opinion = SecondOpinion(pronounce)
    heard = opinion.sentence(grammar.word_graph, utterances("turn on the nanoleaf lamp"))
    assert "nanoleaf" in asked and "turn" not in asked  # only what PocketSphinx's own dictionary lacks
    assert heard == "turn on the nanoleaf lamp".split()


class WholeDictionary(SecondOpinion):
    """The second opinion as it was up to stop 47: PocketSphinx's whole dictionary loaded."""

    def _load_decoder(self):
        return self._make(hmm=str(self._model / "en-us"), dict=str(self._model / "cmudict-en-us.dict"), lm=None,
                          samprate=16000, loglevel="FATAL")


def test_it_hears_what_it_heard_with_pocketsphinxs_whole_dictionary(recognizer: Recognizer) -> None:
    graph = recognizer.word_graph
    ours, whole = SecondOpinion(recognizer.lexicon), WholeDictionary(recognizer.lexicon)
    said = ["turn on the kitchen light", "set the living room to twenty one degrees", "what time is it",
            "open the garage door"]
    clips = [utterances(text) for text in said]
    noisy = [clip + noise(clip.size / SAMPLE_RATE_HZ, level=0.03, seed=i) for i, clip in enumerate(clips)]
    for audio in clips + noisy + [noise(2.0, level=0.05)]:
        assert ours.sentence(graph, audio) == whole.sentence(graph, audio)
    words = {w for arcs in graph.arcs for _, w, _ in arcs if w}
    assert ours._decoder.lookup_word("the") == whole._decoder.lookup_word("the")
    assert ours._decoder.lookup_word("aardvark") is None and "aardvark" not in words  # only the grammar's words


def test_dictionary_entries_keep_the_files_alternates_in_order(tmp_path) -> None:
    dic = tmp_path / "words.dict"
    dic.write_text("read R EH D\nread(2) R IY D\nread's R IY D Z\nred R EH D\n", encoding="utf-8")
    assert dictionary_entries(dic, ["read", "red", "absent"]) == {
        "read": [("read", "R EH D"), ("read(2)", "R IY D")], "red": [("red", "R EH D")]}


def test_the_recogniser_asks_only_where_the_answer_decides(recognizer: Recognizer) -> None:
    audio = utterances("turn on the kitchen light")
    calls: list[list[str]] = []
    opinion = SecondOpinion(recognizer.lexicon)
    agrees = opinion.agrees

    def counting(graph, samples, words):
        calls.append(list(words))
        return agrees(graph, samples, words)

    opinion.agrees = counting  # type: ignore[method-assign]
    hyp = recognizer.decode(audio)[1]
    features = tuple(f for f in recognizer.rejection.features if f != "second")
    zero = (0.0,) * len(features)
    decided = Recognizer(recognizer.model, recognizer.intents, recognizer.word_graph, recognizer.graph, 0.5,
                         recognizer.confidence_scale, lexicon=recognizer.lexicon, sentence_set=recognizer.sentence_set,
                         rejection=RejectionRule((*features, "second"), (*zero, 10.0), -5.0), presence=recognizer.presence,
                         second_opinion=opinion)
    result, asked = decided.decode(audio)  # rejected without it, accepted with it: asked
    assert calls == [hyp.words] and asked.second == 1.0
    assert result.recognized and result.confidence == pytest.approx(1 / (1 + np.exp(-5.0)))
    assert decided.complete(audio) is None and len(calls) == 1  # early endpointing never waits for it
    decided.rejection = RejectionRule((*features, "second"), (*zero, 10.0), 5.0)  # accepted either way
    result, hyp_sure = decided.decode(audio)
    assert result.recognized and len(calls) == 1 and np.isnan(hyp_sure.second)
    decided.rejection = RejectionRule((*features, "second"), (*zero, 1.0), -5.0)  # rejected either way
    assert not decided.decode(audio)[0].recognized and len(calls) == 1
    decided.rejection = RejectionRule((*features, "second"), (*zero, 10.0), -5.0)
    result = decided.decode(utterances("turn off the kitchen light"))[0]
    assert result.recognized and len(calls) == 2
    decided.second_opinion = None  # `second_opinion = false`, or pocketsphinx missing: counted as not confirmed
    result = decided.decode(audio)[0]
    assert not result.recognized and result.best_text == "turn on the kitchen light" and len(calls) == 2


def test_a_study_records_the_answer_for_every_sentence() -> None:
    always = Recognizer.load(None, second_opinion=True)
    assert always.ask_always and always.decode(utterances("turn on the kitchen light"))[1].second == 1.0
    assert Recognizer.load(None, second_opinion=False).second_opinion is None


def test_a_rule_that_weighs_it_without_pocketsphinx_goes_on_without_it(monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    without_module(monkeypatch, "pocketsphinx")
    with pytest.raises(ModelError, match="needs the pocketsphinx package"):
        SecondOpinion(lambda word: [])
    assert second_opinion_or_none(lambda word: []) is None
    assert "segments go without a second opinion" in caplog.text



def _decode(kind: str, condition: str, gap: float, second: float, right: bool = True) -> dict:
    from vcd.training.calibrate import REJECTION_FEATURES

    x = [np.nan] * len(REJECTION_FEATURES)
    x[REJECTION_FEATURES.index("gap")], x[REJECTION_FEATURES.index("second")] = gap, second
    return {"set": kind, "condition": condition, "best": "turn on the tv", "want": "turn on the tv" if right else "x",
            "x": x}


def test_the_floor_chosen_is_the_lowest_that_keeps_the_talk_and_noise_budgets() -> None:
    from vcd.training.calibrate import (REJECTION_FEATURES, choose_second_opinion, rule_accepts, with_second_opinion,
                                        without_second_opinion)

    second = REJECTION_FEATURES.index("second")

    rule = {"features": ["gap"], "weights": [-1.0], "bias": 0.0}  # accepted where gap <= 0
    talk = [_decode("talk", "clean", 1.0, 0.0) for _ in range(100)]  # confidence sigmoid(-1) = 0.27
    talk += [_decode("talk", "babble 10 dB", 2.5, 0.0) for _ in range(100)]  # 0.076
    commands = [_decode("commands", "clean", 4.0, 1.0) for _ in range(10)]  # 0.018, confirmed
    noise = [_decode("noise", "white noise", 6.0, np.nan) for _ in range(50)]  # 0.0025, never asked
    decodes = talk + commands + noise
    floor, chosen, left_out = choose_second_opinion(rule, decodes, asks=1.0)  # asks: see the test below
    assert floor == 0.001 and all(rule_accepts(chosen, d) for d in commands) and left_out == [0]  # nothing else confirmed
    talk[0]["x"][second] = talk[1]["x"][second] = 1.0  # two clean talk clips confirmed: 2 % > 1 % from F = 0.27 down
    talk[100]["x"][second] = 1.0
    assert choose_second_opinion(rule, decodes, asks=1.0)[0] == 0.3
    noise[0]["x"][second] = 1.0  # a noise segment confirmed: F must stay above its confidence (0.0025)
    talk[0]["x"][second] = talk[1]["x"][second] = 0.0
    floor, _, left_out = choose_second_opinion(rule, decodes, asks=1.0)
    assert floor == 0.005 and left_out == [1]  # chosen without the white noise, F = 0.001 lets that segment through
    assert without_second_opinion(with_second_opinion(rule, 0.05)) == rule
    both = with_second_opinion({**rule, "noise_guard": {"weights": [-2.0], "bias": 1.0}}, 0.05)
    assert both["noise_guard"]["weights"][-1] == both["weights"][-1] == pytest.approx(np.log(19))
    assert with_second_opinion(both, 0.3)["weights"][-1] == pytest.approx(np.log(7 / 3))  # replaced, not added


def test_the_floor_chosen_asks_pocketsphinx_about_at_most_a_quarter_of_the_talk() -> None:
    from vcd.training.calibrate import (SECOND_OPINION_TALK_ASKS, choose_second_opinion, second_opinion_asks,
                                        with_second_opinion)

    rule = {"features": ["gap"], "weights": [-1.0], "bias": 0.0}
    # Talk at confidence 0.27 (a fifth of it) and 0.076; nothing confirmed, so every floor keeps the budgets.
    talk = [_decode("talk", "clean", 1.0, 0.0) for _ in range(40)] + [_decode("talk", "clean", 2.5, 0.0) for _ in range(160)]
    commands = [_decode("commands", "clean", 4.0, 1.0) for _ in range(10)]
    decodes = talk + commands
    assert second_opinion_asks(rule, decodes) == 0.0  # no second opinion in the rule: nothing asked
    assert second_opinion_asks(with_second_opinion(rule, 0.3), decodes) == 0.0
    assert second_opinion_asks(with_second_opinion(rule, 0.2), decodes) == pytest.approx(0.2)
    assert second_opinion_asks(with_second_opinion(rule, 0.05), decodes) == pytest.approx(1.0)
    assert second_opinion_asks(with_second_opinion(rule, 0.05), decodes, kind="commands") == 0.0  # 0.018: below
    assert second_opinion_asks(with_second_opinion(rule, 0.01), decodes, kind="commands") == 1.0
    assert SECOND_OPINION_TALK_ASKS == 0.25
    assert choose_second_opinion(rule, decodes)[0] == 0.1  # 0.1 asks about the first fifth; 0.05 about all
    assert choose_second_opinion(rule, decodes, asks=1.0)[0] == 0.001
    assert choose_second_opinion(rule, decodes, asks=0.1)[0] == 0.3  # 0.3 asks about none


def test_a_rule_with_a_second_opinion_reads_back_as_the_recogniser_applies_it() -> None:
    from vcd.training.calibrate import rule_accepts, with_second_opinion

    rule = with_second_opinion({"features": ["gap"], "weights": [-1.0], "bias": 0.0}, 0.05)
    runtime = RejectionRule.from_extra({"rejection": rule})
    for gap, second in ((1.0, 1.0), (1.0, 0.0), (3.5, 1.0), (-0.5, 0.0)):
        decode = _decode("commands", "clean", gap, second)
        from vcd.decoder import Hypothesis

        hyp = Hypothesis(["turn"], [], score=-gap, free_score=0.0, speech_frames=1, second=second)
        assert (runtime.confidence(hyp) >= 0.5) == rule_accepts(rule, decode)
    assert not rule_accepts(rule, _decode("commands", "clean", 1.0, np.nan))  # not asked: not confirmed


def test_the_shipped_rule_asks_only_about_the_doubtful_and_the_config_can_turn_it_off() -> None:
    from vcd.config import parse_config
    from vcd.daemon import load_recognizer

    shipped = load_recognizer(parse_config({}))
    assert shipped.rejection.weighs_second and shipped.second_opinion is not None and not shipped.ask_always
    asked: list[list[str]] = []
    agrees = shipped.second_opinion.agrees
    shipped.second_opinion.agrees = lambda graph, samples, words: asked.append(list(words)) or agrees(graph, samples, words)
    result = shipped.recognize(utterances("turn on the kitchen light"))
    assert result.recognized and asked == []  # a clear command is accepted without it
    assert not shipped.recognize(noise(2.0, level=0.05)).recognized and asked == []  # noise is far from the floor
    off = load_recognizer(parse_config({"recognizer": {"second_opinion": False}}))
    assert off.rejection.weighs_second and off.second_opinion is None


def test_sentences_too_large_for_pocketsphinx_go_without_it_in_one_warning(recognizer: Recognizer,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    import vcd.second_opinion

    monkeypatch.setattr(vcd.second_opinion, "MAX_TRANSITIONS", 100)
    opinion = SecondOpinion(recognizer.lexicon)
    audio = utterances("turn on the kitchen light")
    assert opinion.sentence(recognizer.word_graph, audio) == [] and opinion.sentence(recognizer.word_graph, audio) == []
    warnings = [r.getMessage() for r in caplog.records if "second opinion: off" in r.getMessage()]
    assert len(warnings) == 1 and "transitions" in warnings[0]
    assert opinion._decoder is None  # PocketSphinx never loaded for it
