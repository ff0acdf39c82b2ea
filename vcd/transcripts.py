"""Transcribed audio folders (``transcripts.jsonl`` + audio), their words, and word errors."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from vcd.phonetics import normalize_word


@dataclass(frozen=True)
class Utterance:
    """One clip: audio file, transcript, speaker and corpus; ``text`` "" means no speech."""

    path: Path
    text: str
    speaker: str
    corpus: str


def read_transcripts(folder: str | Path) -> list[Utterance]:
    """Read ``folder/transcripts.jsonl`` (fields ``file``, ``text``, optional ``speaker``)."""
    folder = Path(folder)
    index = folder / "transcripts.jsonl"
    utterances = []
    with open(index, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            speaker = str(row.get("speaker") or Path(row["file"]).parent.name or f"clip{n}")
            utterances.append(Utterance(folder / row["file"], str(row.get("text", "")), speaker, folder.name))
    return utterances


def words_of(text: str) -> list[str]:
    """Split a transcript into lower-case words, dropping punctuation."""
    text = text.replace("’", "'")
    return [w for w in (normalize_word(t) for t in re.split(r"[\s,;:!?\"“”‘()]+|(?<!\w)-|-(?!\w)", text)) if w]


def word_errors(ref: list, hyp: list) -> int:
    """Levenshtein distance between two sequences (words, or phones in training)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]
