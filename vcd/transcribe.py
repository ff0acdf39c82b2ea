"""``vcd transcribe``: audio files of any length to JSON results, read and decoded in bounded memory.

A file of up to :data:`WHOLE_FILE_MAX_S` is one command: decoded whole, one result (as a clip
from a sound editor or a phone is).  A longer one is a recording: the VAD (``[vad]`` defaults)
splits it into speech segments of at most ``vad.max_speech_ms``, and each is decoded on its
own, one result per segment with where it starts and ends.  The file is read in blocks, so
memory does not grow with its length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vcd.audio import AudioFile
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.config import VadConfig
from vcd.errors import AudioError

WHOLE_FILE_MAX_S = 10.0  # a file up to this long is one command (vad.max_speech_ms is 8 s); longer: split by the VAD


def _result(path: Path, recognition, start_s: float, end_s: float) -> dict[str, Any]:
    r = recognition
    return {"file": str(path), "start_s": round(start_s, 3), "end_s": round(end_s, 3), "text": r.text,
            "intent": r.intent, "slots": r.slots, "confidence": round(r.confidence, 4),
            "audio_s": round(r.audio_s, 3), "decode_ms": round(r.decode_ms, 1)}


def transcribe_file(recognizer, path: str | Path, vad: VadConfig | None = None) -> Iterator[dict[str, Any]]:
    """The results of one file, in order, as dicts (the JSON lines of ``vcd transcribe``).

    Raises :class:`AudioError` naming the file when it cannot be read (before any result, or
    part-way through a damaged long file).
    """
    from vcd.recognizer import Recognition
    from vcd.vad import Segmenter, SpeechEnd

    path = Path(path)
    head: list[np.ndarray] = []  # the first WHOLE_FILE_MAX_S at most: one command, or the start of a recording
    head_samples = 0
    whole_max = int(WHOLE_FILE_MAX_S * SAMPLE_RATE_HZ)
    with AudioFile(path) as audio:
        blocks = audio.blocks()
        for block in blocks:
            head.append(block)
            head_samples += block.size
            if head_samples > whole_max:
                break
        else:  # the whole file fits: one command
            if not head_samples:
                raise AudioError(f"{path}: the audio file holds no samples")
            yield _result(path, recognizer.recognize(np.concatenate(head)), 0.0, head_samples / SAMPLE_RATE_HZ)
            return
        segmenter = Segmenter(vad or VadConfig())
        total = 0
        found = False

        def decode(events) -> Iterator[dict[str, Any]]:
            nonlocal found
            for event in events:
                if isinstance(event, SpeechEnd) and event.kept:
                    found = True
                    start = event.start_sample / SAMPLE_RATE_HZ
                    yield _result(path, recognizer.recognize(event.samples), start, start + event.audio_s)

        for block in _chain(head, blocks):
            total += block.size
            yield from decode(segmenter.process(block))
        yield from decode(segmenter.flush())
    if not found:  # a long file without speech: one result saying so
        yield _result(path, Recognition("", None, {}, 0.0, total / SAMPLE_RATE_HZ), 0.0, total / SAMPLE_RATE_HZ)


def _chain(first: list[np.ndarray], rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    while first:
        yield first.pop(0)  # let go of the head as it is fed
    yield from rest
