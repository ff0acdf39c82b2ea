"""Adaptation benchmark: does ``vcd adapt`` on a speaker's first, unlabelled utterances halve their error rate?

    .venv/bin/python benchmarks/adapt.py --data ../shared/data --split validation [--candidate hidden:lr=1e-3 ...]
    .venv/bin/python benchmarks/adapt.py --data ../shared/data --split test --candidate hidden:lr=1e-3:l2=1e-2

For each speaker of the split, the first utterances (FSDD test speakers: 30, in recording order —
takes 0, 1, 2 of every digit; speechocean762 validation speakers: the first half of their clips) are
decoded by the unadapted recogniser as the daemon decodes them (at the default min_confidence, so the
second opinion is asked where the model's rule weighs it); those above ``thr`` confidence (default 0.5, what
the recogniser accepts) are kept with the recogniser's own text as label (never the transcript), with
``confirm=1`` only those PocketSphinx hears as the same sentence (:mod:`vcd.second_opinion`), and the
model is adapted to them (:func:`vcd.training.adapt.adapt`).
The speaker's other clips are scored before and after: sentence accuracy of the best sentence, and
correct-and-accepted at the default ``min_confidence``; error rate = 1 − correct-and-accepted.
FSDD is decoded against the digit grammar (clips padded with 0.3 s of zeros, as benchmarks/recognizer.py
does); speechocean762 against a closed grammar of the split's distinct sentences.

A candidate is ``METHOD[:lr=X][:l2=X][:steps=N][:thr=X][:aug=0|1][:confirm=0|1]``; several are compared on one decode of the
unadapted model. Choose on ``--split validation``; run ``--split test`` once with the chosen one.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import read_audio  # noqa: E402
from vcd.evaluate import word_errors  # noqa: E402
from vcd.model import load_model  # noqa: E402
from vcd.phonetics import LABEL_ID  # noqa: E402
from vcd.recognizer import DEFAULT_MIN_CONFIDENCE, DEFAULT_MODEL, Recognizer  # noqa: E402
from vcd.second_opinion import second_opinion_or_none  # noqa: E402
from vcd.training.adapt import adapt  # noqa: E402
from vcd.training.calibrate import word_list_grammar  # noqa: E402
from vcd.training.corpora import corpus_lexicon, data_folder, phones_of, speaker_split  # noqa: E402
from vcd.transcripts import read_transcripts, words_of  # noqa: E402

GRAMMARS = REPO / "benchmarks" / "grammars"
FSDD_FIRST = 30
FSDD_PAD_S = 0.3


def parse_candidate(spec: str) -> dict:
    method, *options = spec.split(":")
    out = {"method": method, "thr": 0.5, "steps": 30, "aug": 1, "confirm": 0}
    for option in options:
        key, value = option.split("=")
        out[key] = int(value) if key in ("steps", "aug", "confirm") else float(value)
    return out


def speakers_of(data: Path, split: str, folder: Path) -> tuple[Path, dict[str, list[tuple[np.ndarray, str]]], int | None]:
    """Grammar file, {speaker: [(16 kHz samples, reference words)]} in recording order, and N (None: half)."""
    if split == "test":
        clips = read_transcripts(data / "fsdd-dev")
        take = {c: int(re.search(r"_(\d+)\.\w+$", c.path.name).group(1)) for c in clips}
        clips.sort(key=lambda c: (c.speaker, take[c], c.text))
        pad = np.zeros(int(FSDD_PAD_S * 16000), np.float32)
        out = defaultdict(list)
        for c in clips:
            out[c.speaker].append((np.concatenate([pad, read_audio(c.path), pad]), " ".join(words_of(c.text))))
        return GRAMMARS / "digits.yaml", dict(out), FSDD_FIRST
    clips = [c for c in read_transcripts(data / "speechocean762")
             if c.text and speaker_split("speechocean762", c.speaker) == split]
    out = defaultdict(list)
    for c in clips:
        out[c.speaker].append((read_audio(c.path), " ".join(words_of(c.text))))
    grammar = word_list_grammar([ref for rows in out.values() for _, ref in rows], folder, "speechocean762")
    return grammar, dict(out), None


def score(rec: Recognizer, clips: list[tuple[np.ndarray, str]], lexicon) -> tuple[list[tuple[str, float]], float]:
    """Best sentence and confidence of each clip, and the phone error rate of greedy CTC decoding against the
    references (a finer measure than sentence errors on a few clips: it moves before a sentence flips)."""
    posteriors = []
    decode = rec.posteriors
    rec.posteriors = lambda samples, denoise=True: posteriors.append(decode(samples, denoise)) or posteriors[-1]
    try:
        results = [(r.best_text, r.confidence) for r in (rec.recognize(samples) for samples, _ in clips)]
    finally:
        del rec.posteriors
    errors = total = 0
    for post, (_, ref) in zip(posteriors, clips):
        best = post.argmax(axis=1)
        hyp = [int(p) for j, p in enumerate(best) if p and (j == 0 or best[j - 1] != p)]
        phones = phones_of(ref, lexicon) or []
        errors += word_errors([LABEL_ID[p] for p in phones], hyp)
        total += max(1, len(phones))
    return results, errors / max(1, total)


def error_rate(results: list[tuple[str, float]], refs: list[str]) -> tuple[float, float]:
    """(1 − sentence accuracy, 1 − correct-and-accepted) of best texts and confidences against ``refs``."""
    right = [hyp == ref for (hyp, _), ref in zip(results, refs)]
    kept = [ok and conf >= DEFAULT_MIN_CONFIDENCE for ok, (_, conf) in zip(right, results)]
    return 1 - float(np.mean(right)), 1 - float(np.mean(kept))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=data_folder, required=True, help="the shared speech data folder")
    ap.add_argument("--split", choices=("validation", "test"), required=True)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--candidate", action="append", default=[],
                    help="METHOD[:lr=X][:l2=X][:steps=N][:thr=X][:aug=0|1][:confirm=0|1] (repeatable; default finetune:lr=3e-5, chosen on validation)")
    ap.add_argument("--speakers", type=int, default=0, help="only the first N speakers (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("command:", " ".join(sys.argv), flush=True)
    candidates = [parse_candidate(c) for c in args.candidate or ["finetune:lr=3e-5"]]
    lexicon = corpus_lexicon(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        grammar, speakers, first = speakers_of(args.data, args.split, Path(tmp))
        names = sorted(speakers)[: args.speakers or None]
        rec = Recognizer.load(grammar, args.model, DEFAULT_MIN_CONFIDENCE, lexicon=lexicon)
        confirms = any(c["confirm"] for c in candidates)
        if confirms and rec.second_opinion is None:
            rec.second_opinion = second_opinion_or_none(rec.lexicon)
            if rec.second_opinion is None:
                raise SystemExit("confirm=1 needs pocketsphinx (vcd.second_opinion)")
        original = rec.model
        totals = defaultdict(lambda: [0.0, 0.0, 0, 0.0, 0.0, 0.0])  # candidate -> errors before, after, clips, s, PERs
        rows = []
        for speaker in names:
            clips = speakers[speaker]
            n = first or len(clips) // 2
            rec.model = original
            head, _ = score(rec, clips[:n], lexicon)
            rest, per_before = score(rec, clips[n:], lexicon)
            refs = [ref for _, ref in clips[n:]]
            before = error_rate(rest, refs)
            confirmed = [confirms and bool(hyp) and rec.second_opinion.agrees(rec.word_graph, samples, hyp.split())
                         for (samples, _), (hyp, _) in zip(clips[:n], head)]  # PocketSphinx asked only for confirm=1
            for k, cand in enumerate(candidates):
                keep = [bool(hyp) and conf >= cand["thr"] and (not cand["confirm"] or confirmed[i])
                        for i, (hyp, conf) in enumerate(head)]
                kept = [(samples, hyp) for (samples, _), (hyp, _), ok in zip(clips[:n], head, keep) if ok]
                wrong = sum(hyp != ref for (_, ref), (hyp, _), ok in zip(clips[:n], head, keep) if ok)
                out = Path(tmp) / "adapted.pt"
                try:
                    result = adapt(args.model, kept, out, method=cand["method"], steps=cand["steps"], lr=cand.get("lr"),
                                   l2=cand.get("l2"), augment=bool(cand["aug"]), lexicon=lexicon)
                    rec.model = load_model(out)[0]
                    rep = result.report
                    check = f"{rep.heldout_loss_before:.2f}->{rep.heldout_loss_after:.2f}{'' if rep.accepted else ' ROLLED BACK'}"
                    seconds = rep.seconds
                except Exception as exc:  # noqa: BLE001 - too few confident clips: the model stays as it was
                    rec.model = original
                    check, seconds = f"not adapted ({exc.__class__.__name__})", 0.0
                decoded, per_after = score(rec, clips[n:], lexicon)
                after = error_rate(decoded, refs)
                t = totals[k]
                t[0] += before[1] * len(refs)
                t[1] += after[1] * len(refs)
                t[2] += len(refs)
                t[3] += seconds
                t[4] += per_before
                t[5] += per_after
                ratio = f"{after[1] / before[1]:.2f}" if before[1] else "-"
                rows.append((k, speaker, f"{len(kept)}/{n} ({wrong} wrong)", len(refs), before, after, ratio, check,
                             seconds, per_before, per_after))
                print(f"[{k}] {speaker}: kept {len(kept)}/{n} ({wrong} wrong), error {100 * before[1]:.1f} % -> "
                      f"{100 * after[1]:.1f} % ({ratio}), sentence error {100 * before[0]:.1f} % -> {100 * after[0]:.1f} %,"
                      f" greedy PER {100 * per_before:.1f} % -> {100 * per_after:.1f} %, held-out CTC {check}, {seconds:.1f} s",
                      flush=True)
    for k, cand in enumerate(candidates):
        spec = ":".join(f"{key}={value}" for key, value in cand.items())
        print(f"\ncandidate [{k}] {spec}")
        print(f"{'speaker':<10} {'kept (labels wrong)':<20} {'scored':>6} {'sent.err before':>15} {'after':>7} "
              f"{'error before':>12} {'after':>7} {'ratio':>6} {'PER before':>10} {'after':>6}  held-out CTC loss          adapt s")
        for kk, speaker, kept, scored, before, after, ratio, check, seconds, per_b, per_a in rows:
            if kk == k:
                print(f"{speaker:<10} {kept:<20} {scored:>6} {100 * before[0]:>14.1f}% {100 * after[0]:>6.1f}% "
                      f"{100 * before[1]:>11.1f}% {100 * after[1]:>6.1f}% {ratio:>6} {100 * per_b:>9.1f}% {100 * per_a:>5.1f}%"
                      f"  {check:<26} {seconds:>6.1f}")
        t = totals[k]
        halved = sum(1 for r in rows if r[0] == k and (r[5][1] <= 0.5 * r[4][1]))
        print(f"{'all':<10} {'':<20} {t[2]:>6} {'':>15} {'':>7} {100 * t[0] / t[2]:>11.1f}% {100 * t[1] / t[2]:>6.1f}% "
              f"{(t[1] / t[0] if t[0] else float('nan')):>6.2f} {100 * t[4] / len(names):>9.1f}% {100 * t[5] / len(names):>5.1f}%  speakers halved: {halved}/{len(names)}, "
              f"mean adapt {t[3] / len(names):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
