"""Foreign-accented synthetic speech: English words said with the sound substitutions of other first languages.

A speaker of English as a second language keeps the words but not all of their sounds: "three" comes out
as "tree", "sree" or "free", "six" as "seeks", a final "d" as "t", "eight" with a pure vowel.  Each
accented synthetic speaker here draws a few such substitution rules (:data:`ACCENT_RULES`) and applies
each to most, not all, of the places it could; espeak-ng speaks the result from phoneme input
(``[[...]]``) while the clip keeps its canonical transcript, so training maps the accented sounds onto
the phones the grammar expects.  Only the free espeak-ng voices speak it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vcd.phonetics import Lexicon, _cmudict, normalize_word

# CMU phone (stress removed) → espeak-ng's English phoneme mnemonic; stressed AH and ER differ from unstressed.
ESPEAK_PHONEMES = {
    "AA": "A:", "AE": "a", "AH": "V", "AO": "O:", "AW": "aU", "AY": "aI", "B": "b", "CH": "tS", "D": "d",
    "DH": "D", "EH": "E", "ER": "3:", "EY": "eI", "F": "f", "G": "g", "HH": "h", "IH": "I", "IY": "i:",
    "JH": "dZ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "N", "OW": "oU", "OY": "OI", "P": "p", "R": "r",
    "S": "s", "SH": "S", "T": "t", "TH": "T", "UH": "U", "UW": "u:", "V": "v", "W": "w", "Y": "j", "Z": "z",
    "ZH": "Z",
}
UNSTRESSED = {"AH": "@", "ER": "3"}
VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
CONSONANTS = frozenset(ESPEAK_PHONEMES.values()) - {ESPEAK_PHONEMES[v] for v in VOWELS}

# Substitutions anywhere in a word: espeak mnemonic → what the accent says instead ("" drops it).
ACCENT_RULES: dict[str, dict[str, str]] = {
    "th-stopping": {"T": "t", "D": "d"},            # French, German, Italian, Hindi, Nigerian ...
    "th-sibilants": {"T": "s", "D": "z"},           # French, German, Japanese, Mandarin
    "th-fronting": {"T": "f", "D": "v"},            # Mandarin, Cantonese, many English dialects
    "tense-vowels": {"I": "i:", "U": "u:"},         # no lax/tense contrast: Spanish, Greek, Italian, Russian
    "short-vowels": {"i:": "i", "u:": "u", "A:": "a", "O:": "o"},  # no length contrast
    "pure-vowels": {"eI": "e", "oU": "o"},          # no diphthongs: Spanish, Greek, Italian, German, Hindi
    "trap-as-dress": {"a": "E"},                    # Greek, Spanish, Japanese, Mandarin
    "strut-as-father": {"V": "a"},
    "full-schwa": {"@": "E", "3": "E"},             # unreduced vowels, as spelled
    "nurse-as-dress": {"3:": "E"},
    "devoiced-z": {"z": "s", "Z": "S"},             # Spanish, Greek, Finnish, Mandarin
    "v-as-w": {"v": "w"},                           # Hindi, German learners
    "w-as-v": {"w": "v"},                           # German, Russian, Turkish
    "h-dropping": {"h": ""},                        # French, Italian, Greek (as a weak "kh" or nothing)
    "r-as-l": {"r": "l"},                           # Japanese, Korean, Cantonese
    "sh-as-s": {"S": "s", "tS": "ts"},              # Greek, Spanish
}
# Rules that look at the end of a word.
FINAL_DEVOICING = {"b": "p", "d": "t", "g": "k", "z": "s", "v": "f", "D": "T", "dZ": "tS"}  # German, Russian, Dutch
WORD_FINAL_RULES = ("final-devoicing", "final-vowel", "ng-with-g")  # final vowel: Italian, Japanese, Korean


@dataclass(frozen=True)
class Accent:
    """One accented speaker: which rules, and how often each substitution happens where it could."""

    rules: tuple[str, ...]
    rate: float

    @classmethod
    def draw(cls, rng: random.Random) -> Accent:
        names = sorted(ACCENT_RULES) + list(WORD_FINAL_RULES)
        th = rng.choice(("th-stopping", "th-sibilants", "th-fronting"))  # one way with "th" per speaker
        others = [n for n in names if not n.startswith("th-")]
        return cls((th, *rng.sample(others, rng.randint(1, 5))), rng.uniform(0.6, 1.0))

    def apply(self, word: list[str], rng: random.Random) -> list[str]:
        """One word's espeak mnemonics (a stress mark ``'`` may precede a vowel), said with this accent."""
        out: list[str] = []
        for token in word:
            for name in self.rules:
                table = ACCENT_RULES.get(name, {})
                if token in table and rng.random() < self.rate:
                    token = table[token]
                    break
            if token:
                out.append(token)
        if not out:
            return word
        last = out[-1]
        if "final-devoicing" in self.rules and last in FINAL_DEVOICING and rng.random() < self.rate:
            out[-1] = FINAL_DEVOICING[last]
        elif "ng-with-g" in self.rules and last == "N" and rng.random() < self.rate:
            out.append("g")
        elif "final-vowel" in self.rules and last in CONSONANTS and rng.random() < self.rate * 0.5:
            out.append("@")
        return out


def espeak_word(word: str, phones: list[str]) -> list[str]:
    """The espeak mnemonics of ``phones`` (one pronunciation of ``word``) with cmudict's stress if it has it."""
    stresses = None
    for pron in _cmudict().get(normalize_word(word), []):
        if [p.rstrip("012") for p in pron] == phones:
            stresses = [p[-1] if p[-1].isdigit() else "" for p in pron]
            break
    if stresses is None:  # not in cmudict in this form: stress the first vowel
        first = next((i for i, p in enumerate(phones) if p in VOWELS), -1)
        stresses = ["1" if i == first else ("0" if p in VOWELS else "") for i, p in enumerate(phones)]
    tokens: list[str] = []
    for phone, stress in zip(phones, stresses):
        if stress == "1":
            tokens.append("'")
        tokens.append(UNSTRESSED[phone] if stress == "0" and phone in UNSTRESSED else ESPEAK_PHONEMES[phone])
    return tokens


def accented_phonemes(text: str, lexicon: Lexicon, accent: Accent, rng: random.Random) -> str | None:
    """espeak-ng phoneme input for ``text`` said with ``accent``; None if a word has no pronunciation."""
    from vcd.transcripts import words_of

    words = []
    for word in words_of(text):
        prons = lexicon(word)
        if not prons:
            return None
        tokens = espeak_word(word, prons[0])  # the pronunciation the training label uses
        said = accent.apply([t for t in tokens if t != "'"], rng)
        if "'" in tokens:  # the stress mark goes back before the first vowel of the stressed syllable's place
            index = min(tokens.index("'"), len(said) - 1)
            vowel = next((i for i in range(index, len(said)) if said[i] not in CONSONANTS), index)
            said.insert(vowel, "'")
        words.append("".join(said))
    return "[[" + " ".join(words) + "]]" if words else None
