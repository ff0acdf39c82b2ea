"""Rejection rules compared on the per-decode scores that ``real_rooms.py --dump`` writes (validation only).

    .venv/bin/python benchmarks/rejection_study.py runs/dump-validation.jsonl

For each rule and threshold: the share of in-grammar clips right and accepted, per noise condition,
and the share of non-command talk accepted, clean and under 10 dB babble.  Rules:

- ``gap/speech``: how much worse per speech frame the best sentence scores than the free phone
  loop (what the recogniser uses: confidence = exp(-scale · gap));
- ``gap/frame``: the same gap per frame of audio;
- ``gap/speech + fit``: the recogniser's rule, and also the best sentence's own log-probability per
  speech frame at least the threshold (an absolute fit that background talk cannot inflate).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump", type=Path)
    ap.add_argument("--scale", type=float, required=True, help="the model's confidence_scale")
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.dump.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        speech = max(row["speech_frames"], 1)
        row["gap_speech"] = (row["free"] - row["score"]) / speech
        row["gap_frame"] = (row["free"] - row["score"]) / max(row["frames"], 1)
        row["fit"] = row["score"] / speech
        row["right"] = row.get("want") == row["best"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        key = f"FA {row['condition']}" if row["set"] == "talk" else row["condition"]
        groups[key].append(row)
    keys = sorted(k for k in groups if not k.startswith("FA")) + sorted(k for k in groups if k.startswith("FA"))
    g0 = float(np.log(2.0) / args.scale)  # the recogniser's gap at confidence 0.5

    def report(label: str, accept) -> None:
        cells = []
        for key in keys:
            group = groups[key]
            if key.startswith("FA"):
                cells.append(f"{100 * np.mean([accept(r) for r in group]):.1f}")
            else:
                cells.append(f"{100 * np.mean([accept(r) and r['right'] for r in group]):.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |")

    print("| rule | " + " | ".join(f"{k} ({len(groups[k])})" for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for factor in (0.6, 0.8, 1.0, 1.2):
        report(f"gap/speech ≤ {factor:g}·{g0:.2f}", lambda r, g=factor * g0: r["gap_speech"] <= g)
    for g in np.percentile([r["gap_frame"] for r in groups.get("clean", rows)], (90, 95, 98)):
        report(f"gap/frame ≤ {g:.3f}", lambda r, g=g: r["gap_frame"] <= g)
    for tau in np.percentile([r["fit"] for r in groups.get("clean", rows) if r["right"]], (1, 2, 5, 10)):
        report(f"gap/speech ≤ {g0:.2f} and fit ≥ {tau:.2f}", lambda r, t=tau: r["gap_speech"] <= g0 and r["fit"] >= t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
