"""The real-speech corpora for training: which may be trained on, the validation speakers, their phones."""

from __future__ import annotations

import json
import logging
import re
import zlib
from pathlib import Path

from vcd.phonetics import Lexicon
from vcd.transcripts import words_of

_LOGGER = logging.getLogger(__name__)

# Corpora that may be used to train; FSDD and the wake words are kept for evaluation only, and
# alphanumeric's prompts are not verbatim transcripts (its speakers are validation and test only).
TRAIN_CORPORA = ("speechocean762", "commonvoice", "an4-train", "speechcommands-v2", "vctk-sample")
# Corpora every model up to the first honest benchmark trained on: their held-out speakers are the
# 8 % below, the same since the first model, so no shipped model has heard them.
ORIGINAL_CORPORA = ("speechocean762", "commonvoice", "an4-train", "speechcommands-v2")
VALIDATION_FRACTION = 0.08
# Corpora added later, never trained on before: a quarter of their speakers is test, a quarter validation.
NEW_CORPUS_TEST, NEW_CORPUS_VALIDATION = 0.25, 0.25
SPLITS = ("train", "validation", "test")


def speaker_split(corpus: str, speaker: str) -> str:
    """Which split a whole speaker belongs to: ``"train"``, ``"validation"`` or ``"test"``.

    Fixed by stable hashes before any run that reports test figures: validation speakers decide
    checkpoints, thresholds and which model ships; test speakers are only ever reported.  In the
    original corpora the 8 % of speakers no model was trained on are split in two halves; in the
    corpora added later a quarter each.  Every other corpus (FSDD, wake words) is test only.
    """
    if corpus in ORIGINAL_CORPORA:
        if zlib.crc32(f"{corpus}/{speaker}".encode()) % 1000 >= VALIDATION_FRACTION * 1000:
            return "train"
        return "test" if zlib.crc32(f"test/{corpus}/{speaker}".encode()) % 2 == 0 else "validation"
    if corpus in TRAIN_CORPORA or corpus == "alphanumeric":
        share = zlib.crc32(f"split/{corpus}/{speaker}".encode()) % 1000 / 1000
        if share < NEW_CORPUS_TEST:
            return "test"
        return "validation" if share < NEW_CORPUS_TEST + NEW_CORPUS_VALIDATION else "train"
    return "test"


def is_held_out_speaker(corpus: str, speaker: str) -> bool:
    """Whether a whole speaker is held out of training (validation or test: see :func:`speaker_split`)."""
    return speaker_split(corpus, speaker) != "train"


def noise_split(name: str) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` for a noise recording (its path under ``noise/``).

    ``noise/test`` is test only (never trained on); a fifth of ``noise/train`` (by a stable hash of
    the file name) is kept out of training to choose with.
    """
    if name.startswith("test/"):
        return "test"
    return "validation" if zlib.crc32(Path(name).name.encode()) % 5 == 0 else "train"


def data_folder(text: str) -> Path:
    """An argparse ``type`` for a ``--data`` option: the shared data folder, which must exist."""
    import argparse

    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such data folder")
    return path


def noise_files(data_dir: Path, split: str) -> list[Path]:
    """The noise recordings of ``split`` listed in ``data_dir/noise/noises.jsonl``."""
    index = Path(data_dir) / "noise" / "noises.jsonl"
    if not index.exists():
        return []
    rows = [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [index.parent / row["file"] for row in rows if noise_split(row["file"]) == split]


# Corpora that bring their own phone dictionary (a file in the corpus folder)
CORPUS_DICTIONARIES = {"an4-train": "an4.dic", "speechocean762": "lexicon.txt"}


def corpus_lexicon(data_dir: str | Path, corpus: str | None = None) -> Lexicon:
    """The lexicon that labels ``corpus``'s clips: its own phone dictionary (AN4's, speechocean762's) ahead of
    cmudict, and cmudict alone for the corpora without one and for synthetic speech.  ``corpus`` None: every
    corpus dictionary ahead of cmudict (what labelled every corpus up to stop 41, and what benchmarks/adapt.py
    scores speechocean762 with)."""
    lexicon = Lexicon()
    data_dir = Path(data_dir)
    for name in [name for name in CORPUS_DICTIONARIES if corpus in (None, name)]:
        dic = data_dir / name / CORPUS_DICTIONARIES[name]
        if dic.exists():
            for line in dic.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    lexicon.add(re.sub(r"\(\d+\)$", "", parts[0]), parts[1:])
    return lexicon


def label_pronunciations(lexicon: Lexicon, words) -> dict[str, list[str]]:
    """The training labels' pronunciation (``lexicon``'s first, as :func:`phones_of` takes it) of each of
    ``words`` that the recogniser's own dictionary does not offer: what a model trained on these labels
    carries in its file (``pronunciations``) so that decoding looks for the phones it learned."""
    runtime = Lexicon()
    carried = {}
    for word in sorted(set(words)):
        prons = lexicon(word)
        if prons and prons[0] not in runtime(word):
            carried[word] = prons[0]
    return carried


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
