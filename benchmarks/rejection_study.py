"""Rejection rules compared on the per-decode scores that ``real_rooms.py --dump`` writes (validation only).

    .venv/bin/python benchmarks/rejection_study.py runs/dump-validation.jsonl

For each rule and threshold: the share of in-grammar clips right and accepted, per noise condition,
and the share of non-command talk accepted, clean and under 10 dB babble.  Rules:

- ``gap/speech``: how much worse per speech frame the best sentence scores than the free phone
  loop (what the recogniser uses: confidence = exp(-scale · gap));
- ``gap/frame``: the same gap per frame of audio;
- ``gap/speech + fit``: the recogniser's rule, and also the best sentence's own log-probability per
  speech frame at least the threshold (an absolute fit that background talk cannot inflate);
- ``learned``: a logistic regression on the gap, the fit, the *agreement* (share of speech frames
  where the sentence's phone is the frame's best label) and the model's sureness of its best labels
  (:func:`vcd.training.calibrate.fit_rejection_rule`), cut at the loosest point that accepts at most
  1 % of the talk clean and 3 % under babble, and none of the noise segments (``--stream-min``).  First fitted and cut on half the speakers and scored on
  the other half (both ways: how well it carries to speakers it was not fitted on), then on all.

With commands under unfamiliar noise in the dump (``real_rooms.py --unfamiliar``), each candidate is
also fitted with those noise streams left out and scored on them: what it costs commands in noise it
never met (those commands are never fitted on).  Where the dump names each command's noise (its
``noise`` field), each candidate is also refitted without the commands mixed with one half of the
noise recordings and scored on them: how much the rule's figures for commands in noise owe to
having been fitted on commands in those very recordings.

The last line names the candidate the choice rule (:func:`choose`) picks.  ``--write MODEL.pt`` writes
it (or ``--rule NAME``), fitted on every decode of the dump, into the model file (its weights
unchanged) and its numpy export beside it.  The dump must be of validation speakers:

    .venv/bin/python benchmarks/real_rooms.py --data ../shared/data --split validation --limit 0 \
        --talk-limit 0 --snrs 12,6,0 --stream-min 60 --dump runs/dump-validation.jsonl
    .venv/bin/python benchmarks/rejection_study.py runs/dump-validation.jsonl --write vcd/models/default.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import SNR_KNEE_DB, snr_shortfall_db  # noqa: E402
from vcd.grammar import spoken_words  # noqa: E402
from vcd.inference import load_numpy_model  # noqa: E402
from vcd.recognizer import DEFAULT_MODEL  # noqa: E402
from vcd.training.calibrate import (  # noqa: E402
    REJECTION_FEATURES,
    SECOND_OPINION_FLOORS,
    SECOND_OPINION_TALK_ASKS,
    second_opinion_asks,
    choose_second_opinion,
    with_second_opinion,
    without_second_opinion,
    candidate_rules,
    choose,
    ELIGIBLE_LEFT_OUT,
    left_out_accepts,
    left_out_fits,
    left_out_margin,
    noise_kinds,
    rule_accepts,
    with_snr_strictness,
)
from vcd.training.heldout import UNFAMILIAR, UNFAMILIAR_STREAMS  # noqa: E402

# Where each of vcd.training.calibrate.REJECTION_FEATURES is in a dump row (gap and fit: main() computes them from
# the scores, as vcd.decoder.Hypothesis.gap_per_frame and fit_per_frame do).
DUMP_FIELDS = {"gap": "gap_speech", "fit": "fit", "agreement": "agreement", "free_confidence": "free_confidence",
               "coverage": "coverage", "speech": "speech", "weakest": "weakest", "second": "second",
               "margin": "margin", "snr_shortfall": "snr_shortfall"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump", type=Path)
    ap.add_argument("--scale", type=float, default=None, help="the model's confidence_scale (default: --write's)")
    ap.add_argument("--write", type=Path, help="write the learned rule into this model file (.pt) and its .npz")
    ap.add_argument("--rule", help="the candidate to --write (default: the one the choice rule picks)")
    ap.add_argument("--second-opinion", action="store_true",
                    help="--write the model's own rule with the second opinion's floor the choice picks (a dump "
                         "with 'second': real_rooms.py with pocketsphinx installed) instead of a candidate")
    ap.add_argument("--snr-strictness", type=float, metavar="PER_DB",
                    help="--write the model's own rule made stricter by PER_DB (logit) per dB of estimated SNR under "
                         "the knee (vcd.training.calibrate.with_snr_strictness; a dump with 'snr') instead of a candidate")
    args = ap.parse_args()
    if args.snr_strictness is not None and args.second_opinion:
        ap.error("--snr-strictness and --second-opinion each write the model's own rule: use one at a time")
    if args.scale is None:
        args.scale = float(load_numpy_model(args.write or DEFAULT_MODEL)[2].get("confidence_scale", 1.0))
    rows = [json.loads(line) for line in args.dump.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.snr_strictness is not None and not any("snr" in row for row in rows):
        print("Error: the dump has no estimated SNR ('snr'): rerun real_rooms.py with this vcd", file=sys.stderr)
        return 1
    for row in rows:
        speech = max(row["speech_frames"], 1)
        row["gap_speech"] = (row["free"] - row["score"]) / speech
        row["gap_frame"] = (row["free"] - row["score"]) / max(row["frames"], 1)
        row["fit"] = row["score"] / speech
        if "snr" in row:  # as vcd.decoder.Hypothesis.snr_shortfall
            row["snr_shortfall"] = snr_shortfall_db(row["snr"])
        if "want" in row:  # dumps before stop 40 kept the transcript's hyphens and digits
            row["want"] = " ".join(spoken_words(row["want"]))
        row["right"] = row.get("want") == row["best"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        key = f"FA {row['condition']}" if row["set"] in ("talk", "noise") else row["condition"]
        groups[key].append(row)
    keys = sorted(k for k in groups if not k.startswith("FA")) + sorted(k for k in groups if k.startswith("FA"))
    g0 = float(np.log(2.0) / args.scale)  # the recogniser's gap at confidence 0.5

    def report(label: str, accept) -> None:
        report_on(groups, keys, label, accept)

    print("| rule | " + " | ".join(f"{k} ({len(groups[k])})" for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for factor in (0.6, 0.8, 1.0, 1.2):
        report(f"gap/speech ≤ {factor:g}·{g0:.2f}", lambda r, g=factor * g0: r["gap_speech"] <= g)
    for g in np.percentile([r["gap_frame"] for r in groups.get("clean", rows)], (90, 95, 98)):
        report(f"gap/frame ≤ {g:.3f}", lambda r, g=g: r["gap_frame"] <= g)
    for tau in np.percentile([r["fit"] for r in groups.get("clean", rows) if r["right"]], (1, 2, 5, 10)):
        report(f"gap/speech ≤ {g0:.2f} and fit ≥ {tau:.2f}", lambda r, t=tau: r["gap_speech"] <= g0 and r["fit"] >= t)
    report("the model's own rule (the dump's)", lambda r: r["recognized"])
    for r in rows:  # the rule's features by name (a dump from before coverage existed has none: NaN)
        r["x"] = np.array([r.get(DUMP_FIELDS[f], np.nan) for f in REJECTION_FEATURES], dtype=np.float64)
    decoded = [r for r in rows if r["best"]]
    speakers = sorted({r["speaker"] for r in rows})
    half = {s: i % 2 for i, s in enumerate(np.random.default_rng(0).permutation(speakers))}
    kinds = noise_kinds(rows)
    rules, margins = {}, {}
    in_dump = tuple(f for f in REJECTION_FEATURES if f in ("gap", "fit") or DUMP_FIELDS[f] in rows[0])
    for name, features, monotone, guard in candidate_rules(in_dump):
        def learned(subset: list[dict], m: bool = monotone, f: tuple = features, g: bool = guard) -> dict:
            from vcd.training.calibrate import rejection_rule_from

            return rejection_rule_from(subset, m, f, g)

        for k in (0, 1):
            rule = learned([r for r in decoded if half[r["speaker"]] != k])
            held_out = {key: [r for r in group if half[r["speaker"]] == k] for key, group in groups.items()}
            report_on(held_out, keys, f"{name}: fitted on half {1 - k}, scored on half {k}", lambda r, q=rule: rule_accepts(q, r))
        # each noise stream left out of the fit, then scored: noise the rule never met
        fits = left_out_fits(rows, learned)
        margins[name] = left_out_margin(fits)
        unseen = [f"{kind} {n}/{len(groups[f'FA {kind}'])}" for kind, n in zip(kinds, left_out_accepts(fits))]
        rules[name] = rule = learned(decoded)
        report(f"{name}: fitted on every speaker", lambda r, q=rule: rule_accepts(q, r))
        print(f"|   noise segments accepted when their stream is left out of the fit: {'; '.join(unseen)}; "
              f"the margin that would keep each to {ELIGIBLE_LEFT_OUT}: {margins[name]:.3g} |")
        if UNFAMILIAR in groups:  # the cost to commands of noise the rule never met
            rule = learned([r for r in decoded if not (r["set"] == "noise" and r["condition"] in UNFAMILIAR_STREAMS)])
            report(f"{name}: {' and '.join(UNFAMILIAR_STREAMS)} left out of the fit", lambda r, q=rule: rule_accepts(q, r))
        if any(r.get("noise") for r in rows):
            recordings_left_out(name, learned, rules[name], decoded, groups, keys)
    for name, rule in rules.items():
        print(f"\n{name}: {json.dumps(rule)}")
    chosen, chosen_rule = choose(rules, margins, rows)
    print(f"\nchosen by the rule (of {len(rules)} candidates): {chosen}")
    second = None
    if any(np.isfinite(r.get("second", np.nan)) for r in rows):  # the second opinion as a bonus on the model's rule
        own = without_second_opinion(load_numpy_model(args.write or DEFAULT_MODEL)[2]["rejection"])
        print("\n| the model's own rule, a sentence PocketSphinx confirms accepted from confidence F up | "
              + " | ".join(keys) + " |")
        report("F = none (the rule alone)", lambda r, q=own: rule_accepts(q, r))
        for floor in SECOND_OPINION_FLOORS:
            q = with_second_opinion(own, floor)
            report(f"F = {floor:g} (asks about {100 * second_opinion_asks(q, rows):.0f} % of the talk)",
                   lambda r, q=q: rule_accepts(q, r))
        floor, second, unseen = choose_second_opinion(own, rows)
        print(f"\nsecond opinion chosen (of {len(SECOND_OPINION_FLOORS)} floors; asking about at most "
              f"{100 * SECOND_OPINION_TALK_ASKS:.0f} % of the talk): F = {floor}; each noise stream "
              f"with F chosen without it: " + "; ".join(f"{k} {n}" for k, n in zip(kinds, unseen)))
    elif args.second_opinion:
        print("Error: the dump has no second opinion ('second'): rerun real_rooms.py with pocketsphinx installed",
              file=sys.stderr)
        return 1
    if "snr_shortfall" in in_dump:  # stricter under the knee, on the model's own rule: right and wrong per condition
        own = load_numpy_model(args.write or DEFAULT_MODEL)[2]["rejection"]
        commands = [r for r in rows if r["set"] not in ("talk", "noise")]
        conditions = sorted({r["condition"] for r in commands})
        print(f"\n| the model's own rule, stricter per dB under {SNR_KNEE_DB:g} dB estimated SNR | "
              + " | ".join(f"{c} right / wrong" for c in conditions) + " |")
        for per_db in sorted({0.0, 0.01, 0.02, 0.05, 0.1, args.snr_strictness or 0.0}):
            q = with_snr_strictness(own, per_db)
            cells = []
            for c in conditions:
                group = [r for r in commands if r["condition"] == c]
                accepted = [rule_accepts(q, r) for r in group]
                cells.append(f"{100 * np.mean([a and r['right'] for a, r in zip(accepted, group)]):.1f} / "
                             f"{100 * np.mean([a and not r['right'] for a, r in zip(accepted, group)]):.1f}")
            print(f"| {per_db:g} | " + " | ".join(cells) + " |")
    if args.write:
        if args.second_opinion:
            rule = second
        elif args.snr_strictness is not None:
            rule = with_snr_strictness(load_numpy_model(args.write)[2]["rejection"], args.snr_strictness)
        else:
            rule = rules[args.rule] if args.rule else chosen_rule
        write(args.write, rule)
    return 0


def recording_half(row: dict) -> int | None:
    """Which half of the noise recordings a command decode's noise is (a stable hash of the file name);
    None for clean commands, babble and the unfamiliar streams."""
    noise = row.get("noise", "")
    if row["set"] in ("talk", "noise") or not noise or noise == "babble" or noise in UNFAMILIAR_STREAMS:
        return None
    return zlib.crc32(noise.encode()) % 2


def recordings_left_out(name: str, learned, rule: dict, decoded: list[dict], groups: dict, keys: list[str]) -> None:
    """Commands in noise recordings the rule's fit never had commands in: refitted without the commands
    mixed with one half of the recordings, scored on them, beside the rule fitted on every decode.
    (The noise streams, the fit's negatives, still hold every recording.)"""
    pairs = []
    for k in (0, 1):
        kept = learned([r for r in decoded if recording_half(r) != k])
        scored = {key: [r for r in group if recording_half(r) == k] for key, group in groups.items()}
        scored = {key: group for key, group in scored.items() if group}
        for label, q in ((f"{name}: fitted on every decode, commands in recordings of half {k}", rule),
                         (f"{name}: commands in recordings of half {k} left out of the fit", kept)):
            report_on(scored, [key for key in keys if key in scored], label, lambda r, q=q: rule_accepts(q, r))
        rows = [r for group in scored.values() for r in group]
        pairs.append((np.mean([rule_accepts(rule, r) and r["right"] for r in rows]),
                      np.mean([rule_accepts(kept, r) and r["right"] for r in rows]), len(rows)))
    print("|   commands in noise recordings, right and accepted: " + "; ".join(
        f"half {k}: {100 * a:.1f} % in the fit, {100 * b:.1f} % left out ({n})" for k, (a, b, n) in enumerate(pairs)) + " |")



def report_on(groups: dict, keys: list[str], label: str, accept) -> None:
    cells = []
    for key in keys:
        group = groups[key]
        hits = [accept(r) if key.startswith("FA") else accept(r) and r["right"] for r in group]
        cells.append(f"{100 * np.mean(hits):.1f}" if hits else "-")
    print(f"| {label} | " + " | ".join(cells) + " |")


def write(model_file: Path, rule: dict) -> None:
    from vcd.training.calibrate import write_rejection_rule

    write_rejection_rule(model_file, rule)
    print(f"{model_file}: rejection rule written, and into {model_file.with_suffix('.npz')}")


if __name__ == "__main__":
    sys.exit(main())
