"""Noise that acts: minutes of white noise and of real noise through the daemon's VAD and recogniser, commands counted.

    .venv/bin/python benchmarks/noise_commands.py --minutes 10 --data ../shared/data
    .venv/bin/python benchmarks/noise_commands.py --minutes 2 --levels 0.01,0.05 --no-data   # white noise only

Each stream goes through what ``vcd run`` runs on a microphone: the default ``[vad]``
segmenter in 30 ms blocks, then, for each segment it keeps, the noise gate
(:func:`vcd.daemon.noise_gate`: a segment cut at ``vad.max_speech_ms`` and voiced throughout is
steady noise) and the shipped recogniser (which rejects a sentence that does not fit the sound,
its model's ``fit_floor``) at the default ``min_confidence``.  Printed per
stream: segments, commands without the gate and with it, and the spread of what the gate
looks at.  White noise at each ``--levels`` (standard deviation, full scale 1.0), steady and
(the two highest levels) in bursts of 0.4–3 s with 1–2 s of quiet between; real noise:
every recording under ``DATA/noise/test`` (dishwashers, air conditioners, a running tap, street),
each peak-normalised to 0.3, looped to the length.  One torch thread, a fixed seed: a rerun
prints the same figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import read_audio  # noqa: E402
from vcd.config import VadConfig  # noqa: E402
from vcd.daemon import noise_gate  # noqa: E402
from vcd.recognizer import Recognizer  # noqa: E402
from vcd.training.corpora import data_folder  # noqa: E402
from vcd.vad import Segmenter, SpeechEnd  # noqa: E402
from vcd.config import DENOISED_VIEWS  # noqa: E402

RATE = 16000
BLOCK = RATE * 30 // 1000  # the daemon's default audio.block_ms


def real_noise(data: Path, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of the test noise recordings, peak-normalised, in a fixed random order, looped."""
    files = sorted(p for p in (data / "noise" / "test").rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg", ".opus"))
    if not files:
        raise SystemExit(f"no noise recordings under {data / 'noise' / 'test'}")
    clips = [read_audio(p) for p in files]
    out, filled = [], 0
    while filled < n:
        clip = clips[int(rng.integers(len(clips)))]
        clip = clip / (np.abs(clip).max() + 1e-9) * 0.3
        out.append(clip.astype(np.float32))
        filled += clip.size
    return np.concatenate(out)[:n]


def bursts(n: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """White noise in bursts of 0.4–3 s with 1–2 s of quiet between: segments of a command's length."""
    out = np.zeros(n, dtype=np.float32)
    at = 0
    while at < n:
        at += int(rng.uniform(1.0, 2.0) * RATE)
        length = int(rng.uniform(0.4, 3.0) * RATE)
        burst = (rng.standard_normal(length) * level).astype(np.float32)[: max(0, n - at)]
        out[at : at + burst.size] = burst
        at += length
    return out


def stream(recognizer: Recognizer, audio: np.ndarray) -> dict:
    """The daemon's VAD over ``audio`` in blocks; each kept segment gated and decoded."""
    segmenter = Segmenter(VadConfig())
    ends = []
    for start in range(0, audio.size, BLOCK):
        ends += [e for e in segmenter.process(audio[start : start + BLOCK]) if isinstance(e, SpeechEnd)]
    ends += [e for e in segmenter.flush() if isinstance(e, SpeechEnd)]
    kept = [e for e in ends if e.kept]
    result = {"segments": len(kept), "commands": 0, "gated_commands": 0, "gated_out": 0,
              "voiced": [], "fit": [], "examples": []}
    for end in kept:
        recognition, hyp = recognizer.decode(end.samples)
        result["voiced"].append(end.voiced_share)
        if hyp is not None and hyp.words:
            result["fit"].append(hyp.fit_per_frame)
        reason = noise_gate(end)
        result["gated_out"] += reason is not None
        if recognition.recognized:
            result["commands"] += 1
            if reason is None:
                result["gated_commands"] += 1
                result["examples"].append(f"{recognition.text!r} ({recognition.confidence:.2f})")
    return result


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    q = np.percentile(values, [5, 50, 95])
    return f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of each stream")
    ap.add_argument("--levels", default="0.003,0.01,0.03,0.1", help="white noise standard deviations")
    ap.add_argument("--data", type=data_folder, default="../shared/data", help="the shared data (noise/test)")
    ap.add_argument("--no-data", action="store_true", help="white noise only")
    ap.add_argument("--model", default=None, help="acoustic model (default: the shipped one)")
    ap.add_argument("--no-fit-floor", action="store_true", help="without the model's fit_floor (what it is worth)")
    ap.add_argument("--denoised-view", choices=DENOISED_VIEWS, default=DENOISED_VIEWS[0],
                    help="as recognizer.denoised_view (default webrtc, what ships; off for the rule alone)")
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    recognizer = Recognizer.load(model=args.model, threads=1, denoised_view=args.denoised_view)
    if args.no_fit_floor:
        recognizer.fit_floor = None
    n = int(args.minutes * 60 * RATE)
    streams = {f"white noise, sd {level}": (rng.standard_normal(n) * float(level)).astype(np.float32)
               for level in args.levels.split(",")}
    for level in args.levels.split(",")[-2:]:
        streams[f"white noise bursts, sd {level}"] = bursts(n, float(level), rng)
    if not args.no_data:
        streams["noise/test recordings"] = real_noise(args.data, n, rng)
    print(f"## Noise through the VAD and the recogniser ({args.minutes:g} min per stream, "
          f"min_confidence {recognizer.min_confidence}, fit_floor {recognizer.fit_floor})\n")
    print("| stream | VAD segments | commands, no gate | commands, gated | segments gated out | "
          "voiced share p5/p50/p95 | fit per frame p5/p50/p95 |")
    print("|---|---|---|---|---|---|---|")
    examples = {}
    started = time.perf_counter()
    for name, audio in streams.items():
        r = stream(recognizer, audio)
        examples[name] = r["examples"]
        print(f"| {name} | {r['segments']} | {r['commands']} | {r['gated_commands']} | {r['gated_out']} | "
              f"{spread(r['voiced'])} | {spread(r['fit'])} |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all.")
    for name, texts in examples.items():
        if texts:
            print(f"commands that passed the gate in {name}: {', '.join(texts[:10])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
