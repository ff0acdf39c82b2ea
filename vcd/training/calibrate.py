"""Confidence calibration: choose the rejection point from held-out voices and held-out speakers."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vcd.audio import read_audio
from vcd.decoder import viterbi
from vcd.model import load_model, save_model
from vcd.training.corpora import Utterance, is_validation_speaker, read_transcripts, words_of

_LOGGER = logging.getLogger(__name__)


def gaps(recognizer, clips: list[Utterance]) -> np.ndarray:
    """Per-speech-frame log-probability gap between the free phone loop and the best grammar path."""
    out = []
    for clip in tqdm(clips, desc="calibrating", unit="clip", leave=False):
        try:
            audio = read_audio(clip.path)
        except Exception:  # noqa: BLE001 - an unreadable clip is just left out
            continue
        hyp = viterbi(recognizer.graph, recognizer.posteriors(audio))
        out.append(hyp.gap_per_frame if hyp.words else math.inf)
    return np.asarray(out, dtype=np.float64)


def calibration_sets(data_dir: Path | None, heldout_dir: Path, intents_graph) -> tuple[list[Utterance], list[Utterance]]:
    """Positives: every other clip of the held-out synthetic voices (the rest stay for the benchmark).

    Negatives: held-out speakers' clips whose transcript the grammar cannot say (Common Voice,
    speechocean762, Speech Commands) — never the wake-word or FSDD clips the benchmark uses.
    """
    positives = read_transcripts(heldout_dir)[0::2] if (heldout_dir / "transcripts.jsonl").exists() else []
    negatives: list[Utterance] = []
    if data_dir:
        for corpus in ("commonvoice", "speechocean762", "speechcommands-v2"):
            if (data_dir / corpus / "transcripts.jsonl").exists():
                negatives += [u for u in read_transcripts(data_dir / corpus)
                              if is_validation_speaker(corpus, u.speaker)
                              and intents_graph.parse(words_of(u.text)) is None]
    return positives, negatives[:200]


def choose_threshold(pos: np.ndarray, neg: np.ndarray) -> float:
    """The gap above which a sentence is rejected: ≤ 2 % of positives, as many negatives as possible."""
    pos = pos[np.isfinite(pos)]
    if not pos.size:
        return 1.0
    limit = float(np.percentile(pos, 98))
    if neg.size:
        neg_low = float(np.percentile(neg[np.isfinite(neg)], 3)) if np.isfinite(neg).any() else limit * 2
        if neg_low > limit:
            return 0.5 * (limit + neg_low)
    return limit


def calibrate(model_file: Path, data_dir: Path | None, heldout_dir: Path) -> float:
    """Write ``confidence_scale`` into ``model_file`` so that confidence 0.5 is the chosen rejection point."""
    from vcd.recognizer import Recognizer

    torch.set_num_threads(2)
    recognizer = Recognizer.load(None, model_file)
    positives, negatives = calibration_sets(data_dir, heldout_dir, recognizer.word_graph)
    pos, neg = gaps(recognizer, positives), gaps(recognizer, negatives)
    threshold = choose_threshold(pos, neg)
    scale = math.log(2.0) / max(threshold, 1e-3)
    model, labels, extra = load_model(model_file)
    extra.update(confidence_scale=scale, calibration={
        "threshold_gap": threshold, "positives": int(pos.size), "negatives": int(neg.size),
        "positives_rejected": float(np.mean(pos > threshold)) if pos.size else None,
        "negatives_rejected": float(np.mean(neg > threshold)) if neg.size else None})
    save_model(model, model_file, labels, extra)
    _LOGGER.info("calibration: reject above a gap of %.3f per speech frame (%s)", threshold, extra["calibration"])
    return scale
