"""Opt-in keeping of confidently recognised commands' audio, for ``vcd adapt`` (``[adapt]`` in config.toml)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import soundfile

from vcd.audio_format import SAMPLE_RATE_HZ

_LOGGER = logging.getLogger(__name__)

INDEX = "clips.jsonl"


class ClipKeeper:
    """Keeps the audio of segments recognised at ``min_confidence`` or above, and nothing else.

    Each kept segment is a FLAC file in ``folder`` and a line of ``folder/clips.jsonl``
    (``file``, ``text`` as recognised, ``intent``, ``confidence``, ``time``).  At most
    ``max_clips`` are kept: the oldest go first.  A failure to write is logged and the
    daemon goes on; only the recogniser's thread calls :meth:`keep`.
    """

    def __init__(self, folder: Path, min_confidence: float, max_clips: int) -> None:
        self.folder = Path(folder)
        self.min_confidence = float(min_confidence)
        self.max_clips = int(max_clips)
        self._count = 0

    def keep(self, samples: np.ndarray, text: str, intent: str | None, confidence: float) -> Path | None:
        """Write one recognised segment if it is confident enough; returns its file, or None."""
        if intent is None or confidence < self.min_confidence or not text:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            now = time.time()
            self._count += 1
            name = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{os.getpid()}-{self._count:04d}.flac"
            soundfile.write(str(self.folder / name), np.asarray(samples, dtype=np.float32), SAMPLE_RATE_HZ)
            row = {"file": name, "text": text, "intent": intent, "confidence": round(float(confidence), 4),
                   "time": round(now, 3)}
            with open(self.folder / INDEX, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            self._prune()
            return self.folder / name
        except OSError as exc:
            _LOGGER.warning("cannot keep a recognised segment in %s: %s", self.folder, exc)
            return None

    def _prune(self) -> None:
        rows = read_kept(self.folder)
        if len(rows) <= self.max_clips:
            return
        drop, rows = rows[: len(rows) - self.max_clips], rows[len(rows) - self.max_clips :]
        tmp = self.folder / (INDEX + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(self.folder / INDEX)
        for row in drop:
            (self.folder / row["file"]).unlink(missing_ok=True)


def read_kept(folder: Path) -> list[dict]:
    """The rows of ``folder/clips.jsonl``, oldest first ([] when there is none)."""
    index = Path(folder) / INDEX
    if not index.exists():
        return []
    rows = []
    for line in index.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a power failure
        if isinstance(row, dict) and "file" in row and "text" in row:
            rows.append(row)
    return rows
