"""Noisy-room benchmark: real speakers' commands under noise, and real talk that is not a command.

    .venv/bin/python benchmarks/noisy_room.py --data ../shared/data [--model M] [--limit N]

1. FSDD digits (george, jackson, lucas; 0.3 s of silence around each clip, as in
   ``benchmarks/recognizer.py``) decoded against the digit grammar with noise mixed over the whole
   clip at 20 / 10 / 5 / 0 dB SNR (speech power of the clip against the noise's):
   - *babble*: three overlapping streams of held-out Common Voice speakers, people the model never
     heard (a television or a conversation in the room);
   - *pink*: 1/f noise (a fan or a hood; training mixes white, pink and brown noise);
   - *household*: Speech Commands' background recordings (running tap, dishes, exercise bike …).
     Training mixes these very recordings, so this column flatters the model.
   The table gives the best sentence and what is right *and* above the default ``min_confidence``.
2. Talk that is not a command: held-out real speakers' sentences (speechocean762, Speech Commands,
   AN4 and Common Voice speakers kept out of training, none of the 200 clips ``vcd train``
   calibrates the threshold on) against the bundled smart-home grammar, clean and with babble at
   10 dB: the share wrongly accepted as a command.

``--min-confidence 0.5,0.7`` gives the accepted shares at each of those thresholds (default: the
recogniser's default), to read what a stricter ``recognizer.min_confidence`` costs and saves.

One torch thread; a fixed seed, so a rerun mixes the same noise (and prints the same figures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import read_audio  # noqa: E402
from vcd.grammar import spoken_words  # noqa: E402
from vcd.recognizer import DEFAULT_MIN_CONFIDENCE, DEFAULT_MODEL, Recognizer  # noqa: E402
from vcd.training.calibrate import calibration_sets  # noqa: E402
from vcd.training.corpora import data_folder, is_held_out_speaker  # noqa: E402
from vcd.transcripts import read_transcripts  # noqa: E402

GRAMMARS = REPO / "benchmarks" / "grammars"
SNRS_DB = (20, 10, 5, 0)
PAD = np.zeros(4800, dtype=np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n), 1.0 / n))
    return np.fft.irfft(spectrum, n).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / (np.sqrt(np.mean(np.square(x))) + 1e-9)).astype(np.float32)


class NoiseBank:
    """Long noise tracks to cut random stretches from."""

    def __init__(self, data: Path, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        voices = [u for u in read_transcripts(data / "commonvoice") if is_held_out_speaker("commonvoice", u.speaker)]
        talk = [unit(read_audio(u.path)) for u in voices]
        streams = []
        for _ in range(3):  # three people talking at once, each a shuffled run of held-out clips
            order = self.rng.permutation(len(talk))
            streams.append(np.concatenate([talk[i] for i in order]))
        n = min(s.size for s in streams)
        background = [read_audio(u.path) for u in read_transcripts(data / "speechcommands-v2") if not u.text]
        self.tracks = {
            "babble": unit(sum(s[:n] for s in streams)),
            "pink": unit(pink(16000 * 120, self.rng)),
            "household": np.concatenate([unit(b) for b in background if np.any(b)]),
        }

    def cut(self, kind: str, n: int) -> np.ndarray:
        track = self.tracks[kind]
        start = int(self.rng.integers(track.size - n))
        return unit(track[start:start + n])


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` padded as the benchmark pads it, with ``noise`` over all of it at ``snr_db``."""
    padded = np.concatenate([PAD, speech, PAD])
    level = np.sqrt(np.mean(np.square(speech))) / 10 ** (snr_db / 20)
    return np.clip(padded + noise[: padded.size] * level, -1.0, 1.0).astype(np.float32)


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=data_folder, required=True, help="the shared speech data folder")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--limit", type=int, default=0, help="FSDD clips per speaker (0: all 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-confidence", default=str(DEFAULT_MIN_CONFIDENCE), metavar="T[,T...]",
                    help=f"thresholds to count accepted clips at (default {DEFAULT_MIN_CONFIDENCE})")
    args = ap.parse_args()
    try:
        thresholds = [float(t) for t in args.min_confidence.split(",")]
    except ValueError:
        ap.error(f"--min-confidence: not a comma list of numbers: {args.min_confidence!r}")
    torch.set_num_threads(1)
    bank = NoiseBank(args.data, args.seed)
    rows: list[tuple[str, str, list[str]]] = []

    rec = Recognizer.load(GRAMMARS / "digits.yaml", args.model, 0.0)  # no rejection: count both ways below
    clips = read_transcripts(args.data / "fsdd-dev")
    if args.limit:
        clips = [c for s in ("george", "jackson", "lucas") for c in [c for c in clips if c.speaker == s][: args.limit]]
    audio = [read_audio(c.path) for c in clips]
    speakers = sorted({c.speaker for c in clips})
    for kind in ("clean", "babble", "pink", "household"):
        for snr in (None,) if kind == "clean" else SNRS_DB:
            best = {s: [0] * (1 + len(thresholds)) for s in speakers}
            for clip, x in zip(clips, audio):
                y = np.concatenate([PAD, x, PAD]) if snr is None else mix(x, bank.cut(kind, x.size + 2 * PAD.size), snr)
                r = rec.recognize(y)
                best[clip.speaker][0] += r.best_text == clip.text
                for i, t in enumerate(thresholds, 1):
                    best[clip.speaker][i] += r.best_text == clip.text and r.confidence >= t
            label = "clean" if snr is None else f"{kind} {snr} dB"
            n = {s: sum(c.speaker == s for c in clips) for s in speakers}
            rows.append((f"FSDD {label}: best sentence ({' / '.join(speakers)})",
                         " / ".join(f"{100 * best[s][0] / n[s]:.1f}" for s in speakers) + " %",
                         [" / ".join(f"{100 * best[s][i] / n[s]:.1f}" for s in speakers) + " %"
                          for i in range(1, 1 + len(thresholds))]))
            print(rows[-1], flush=True)

    rec = Recognizer.load(None, args.model, 0.0)
    used = {str(u.path) for u in calibration_sets(args.data, Path("/nonexistent"), rec.word_graph)[1]}
    talk = []
    for corpus in ("commonvoice", "speechocean762", "speechcommands-v2", "an4-train"):
        talk += [u for u in read_transcripts(args.data / corpus)
                 if u.text and is_held_out_speaker(corpus, u.speaker) and str(u.path) not in used
                 and rec.word_graph.parse(spoken_words(u.text)) is None]
    for label, snr in (("clean", None), ("babble 10 dB", 10)):
        accepted = [0] * len(thresholds)
        for u in talk:
            x = read_audio(u.path)
            y = np.concatenate([PAD, x, PAD]) if snr is None else mix(x, bank.cut("babble", x.size + 2 * PAD.size), snr)
            r = rec.recognize(y)
            for i, t in enumerate(thresholds):
                accepted[i] += r.recognized and r.confidence >= t
        rows.append((f"talk that is not a command, {label} ({len(talk)} clips): accepted", "",
                     [pct(a / len(talk)) for a in accepted]))
        print(rows[-1], flush=True)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'best sentence':>22}  "
          + "  ".join(f"{'correct/accepted at ' + str(t):>24}" for t in thresholds))
    for name, value, kept in rows:
        print(f"{name:<{width}}  {value:>22}  " + "  ".join(f"{k:>24}" for k in kept))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
