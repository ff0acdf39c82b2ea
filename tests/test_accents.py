"""Foreign-accented synthesis: accent rules on the lexicon's pronunciations, spoken by espeak-ng from phonemes."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
import soundfile

from conftest import ESPEAK, requires_espeak
from vcd.phonetics import Lexicon
from vcd.training.accents import ACCENT_RULES, WORD_FINAL_RULES, Accent, accented_phonemes
from vcd.training.prepare import synthesise_accented
from vcd.training.synth import Voice

WORDS = "three eight bed living"


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon()


def _espeak_phonemes(text: str) -> str:
    """What espeak-ng would say for ``text`` (its -x mnemonics, without the ';' linking marks)."""
    assert ESPEAK is not None
    out = subprocess.run([ESPEAK, "-q", "-x", "-v", "en-us", text], capture_output=True, text=True, check=True)
    return out.stdout.strip().replace(";", "")


def test_no_accent_gives_the_lexicon_pronunciation_in_espeak_mnemonics(lexicon: Lexicon) -> None:
    spoken = accented_phonemes(WORDS, lexicon, Accent((), 0.0), random.Random(0))
    assert spoken == "[[Tr'i: 'eIt b'Ed l'IvIN]]"


@requires_espeak
def test_the_unaccented_string_is_what_espeak_itself_says_for_the_words(lexicon: Lexicon) -> None:
    spoken = accented_phonemes(WORDS, lexicon, Accent((), 0.0), random.Random(0))
    assert spoken is not None
    assert spoken.strip("[]") == _espeak_phonemes(WORDS)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (("th-stopping",), "[[tr'i: 'eIt b'Ed l'IvIN]]"),
        (("th-fronting", "final-devoicing"), "[[fr'i: 'eIt b'Et l'IvIN]]"),
        (("th-sibilants", "pure-vowels"), "[[sr'i: 'et b'Ed l'IvIN]]"),
        (("th-stopping", "ng-with-g"), "[[tr'i: 'eIt b'Ed l'IvINg]]"),
        (("th-stopping", "tense-vowels"), "[[tr'i: 'eIt b'Ed l'i:vi:N]]"),
    ],
)
def test_accent_rules_substitute_sounds_and_keep_the_stress(lexicon: Lexicon, rules: tuple[str, ...],
                                                            expected: str) -> None:
    assert accented_phonemes(WORDS, lexicon, Accent(rules, 1.0), random.Random(0)) == expected


def test_word_without_a_pronunciation_gives_none(lexicon: Lexicon) -> None:
    def no_bed(word: str) -> list[list[str]]:
        return [] if word == "bed" else lexicon(word)

    assert accented_phonemes(WORDS, no_bed, Accent(("th-stopping",), 1.0), random.Random(0)) is None  # type: ignore[arg-type]


def test_drawn_accents_have_one_th_rule_known_rules_and_a_rate_of_most_places() -> None:
    rng = random.Random(5)
    for _ in range(50):
        accent = Accent.draw(rng)
        assert sum(r.startswith("th-") for r in accent.rules) == 1
        assert set(accent.rules) <= set(ACCENT_RULES) | set(WORD_FINAL_RULES)
        assert 0.6 <= accent.rate <= 1.0


@requires_espeak
def test_espeak_reads_the_accented_mnemonics_as_phonemes(lexicon: Lexicon) -> None:
    spoken = accented_phonemes(WORDS, lexicon, Accent(("th-fronting", "final-devoicing", "ng-with-g"), 1.0),
                               random.Random(0))
    assert spoken == "[[fr'i: 'eIt b'Et l'IvINg]]"
    assert _espeak_phonemes(spoken) == spoken.strip("[]")  # every mnemonic is one espeak knows


def test_voice_tag_tells_speakers_of_one_engine_voice_apart() -> None:
    assert Voice("espeak-ng", "en-us+m3").label == "espeak-ng:en-us+m3"
    assert Voice("espeak-ng", "en-us+m3", tag="accent1").label == "espeak-ng:en-us+m3+accent1"


@requires_espeak
def test_accented_clips_keep_the_canonical_transcript_and_name_the_accented_speaker(
        tmp_path: Path, lexicon: Lexicon) -> None:
    out = tmp_path / "synth-accented"
    synthesise_accented(out, 6, ["three", "eight", "bed"], lexicon, seed=3, workers=1)
    rows = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert row["speaker"].startswith("espeak-ng:") and "+accent" in row["speaker"]
        assert row["text"] and all(word.isalpha() and word.islower() for word in row["text"].split())  # words, not phonemes
        audio, rate = soundfile.read(out / row["file"])
        assert rate == 16000 and audio.size > 0.2 * rate and abs(audio).max() > 0.01
    mtime = (out / "transcripts.jsonl").stat().st_mtime_ns
    synthesise_accented(out, 6, ["three"], lexicon, seed=4, workers=1)  # present: left as it is
    assert (out / "transcripts.jsonl").stat().st_mtime_ns == mtime
