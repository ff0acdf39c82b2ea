"""Recogniser benchmark: prints the figures the README quotes (one BLAS thread).

    .venv/bin/python benchmarks/recognizer.py --data ../shared/data [--heldout runs/train/synth-heldout]

FSDD digits per speaker, AN4 held-out-speaker WER, out-of-grammar rejection
of the wake-word clips against the smart-home grammar, rejection of
in-grammar sentences by held-out synthetic voices, real-time factor,
decode time after the end of a 3 s command, peak RSS of ``vcd transcribe``,
model size and load time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import read_audio  # noqa: E402
from vcd.config import ENGINES  # noqa: E402
from vcd.evaluate import evaluate  # noqa: E402
from vcd.recognizer import DEFAULT_MIN_CONFIDENCE, DEFAULT_MODEL, Recognizer  # noqa: E402
from vcd.training.corpora import data_folder, is_held_out_speaker  # noqa: E402
from vcd.transcripts import read_transcripts  # noqa: E402

GRAMMARS = REPO / "benchmarks" / "grammars"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def starts_mid_word(path: str | Path, within_db: float = 10.0) -> bool:
    """Whether a recording's first 20 ms are already within ``within_db`` of its loud frames (their 95th
    percentile): the file was cut inside the word, so its first sounds are missing (FSDD george's clips
    30-39 of every digit, mostly).  A reading aid for the FSDD rows; the recogniser does not use it."""
    samples = read_audio(path)
    n = 320  # 20 ms at 16 kHz
    frames = samples[: len(samples) // n * n].reshape(-1, n).astype(np.float64)
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    return bool(level[0] >= np.percentile(level, 95) - within_db)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=data_folder, required=True, help="the shared speech data folder")
    ap.add_argument("--heldout", type=Path, default=REPO / "runs" / "train" / "synth-heldout",
                    help="synthetic clips by voices never trained on (made by `vcd train`)")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--min-confidence", type=float, default=None)
    ap.add_argument("--limit", type=int, default=0, help="clips per set (0: all)")
    ap.add_argument("--only", default="", help="comma list of: fsdd,an4,oog,latency")
    ap.add_argument("--engine", choices=ENGINES, default="auto",
                    help="what runs the model in the latency rows (recognizer.engine; default auto)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    rows: list[tuple[str, str, str]] = []

    def want(name: str) -> bool:
        return not only or name in only

    if want("fsdd"):
        # decode with no rejection, then count both ways: pocketsphinx's JSGF set-up never rejects
        rec = Recognizer.load(GRAMMARS / "digits.yaml", args.model, 0.0)
        threshold = DEFAULT_MIN_CONFIDENCE if args.min_confidence is None else args.min_confidence
        clips = read_transcripts(args.data / "fsdd-dev")
        for speaker in ("george", "jackson", "lucas"):
            subset = [c for c in clips if c.speaker == speaker][: args.limit or None]
            r = evaluate(rec, args.data / "fsdd-dev", clips=subset, pad_s=0.3, progress=False)
            kept = sum(row["hyp"] == row["ref"] and row["confidence"] >= threshold for row in r["rows"])
            rows.append((f"FSDD {speaker}: digit accuracy, best sentence ({r['clips']} clips)",
                         pct(r["sentence_accuracy"]), ">= 98 %"))
            rows.append((f"FSDD {speaker}: correct and above min_confidence {threshold}", pct(kept / r["clips"]), ""))
            cut = [starts_mid_word(row["file"]) for row in r["rows"]]
            for label, part in (("that start mid-word", True), ("that start before the word", False)):
                hits = [row["hyp"] == row["ref"] for row, c in zip(r["rows"], cut) if c == part]
                rows.append((f"FSDD {speaker}: best sentence, recordings {label} ({len(hits)})",
                             pct(sum(hits) / len(hits)) if hits else "-", ""))
            # the files as they are, trimmed to the word: the recogniser adds the quiet margins itself
            r = evaluate(rec, args.data / "fsdd-dev", clips=subset, pad_s=0.0, progress=False)
            rows.append((f"FSDD {speaker}: best sentence, files as trimmed (no silence added)",
                         pct(r["sentence_accuracy"]), ""))
            print(rows[-5:], flush=True)
    if want("an4"):
        rec = Recognizer.load(GRAMMARS / "an4.yaml", args.model, args.min_confidence)
        clips = [c for c in read_transcripts(args.data / "an4-train") if is_held_out_speaker("an4-train", c.speaker)]
        r = evaluate(rec, args.data / "an4-train", clips=clips[: args.limit or None], progress=False)
        speakers = len({c.speaker for c in clips})
        rows.append((f"AN4 held-out speakers ({speakers} spk, {r['clips']} clips): WER", pct(r["wer"]), "<= 10 %"))
        rows.append(("AN4 held-out: sentence accuracy", pct(r["sentence_accuracy"]), ""))
        rows.append(("AN4 held-out: real-time factor", f"{r['real_time_factor']:.3f}", ""))
        print(rows[-3:], flush=True)
    if want("oog"):
        rec = Recognizer.load(None, args.model, args.min_confidence)
        wake = read_transcripts(args.data / "wakewords")[: args.limit or None]
        r = evaluate(rec, args.data / "wakewords", clips=wake, progress=False)
        rows.append((f"wake words vs smart-home grammar ({r['clips']} clips): rejected",
                     pct(1 - r["false_accepts"]) if r["false_accepts"] is not None else "-", ">= 95 %"))
        if (args.heldout / "transcripts.jsonl").exists():
            held = read_transcripts(args.heldout)[1::2][: args.limit or None]  # even lines calibrate
            r = evaluate(rec, args.heldout, clips=held, progress=False)
            rows.append((f"held-out synthetic voices, in grammar ({r['clips']} clips): rejected",
                         pct(r["rejected_in_grammar"]), "<= 2 %"))
            rows.append(("held-out synthetic voices: sentence accuracy", pct(r["sentence_accuracy"]), ""))
            rows.append(("held-out synthetic voices: intent + slots accuracy", pct(r["slot_accuracy"]), ""))
        print(rows[-4:], flush=True)
    if want("latency"):
        rows += latency_rows(args.model, args.engine)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'result':>10}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>10}  {target}")
    return 0


def latency_rows(model: Path, engine: str = "auto") -> list[tuple[str, str, str]]:
    rows = []
    t = time.perf_counter()
    Recognizer.load(None, model, engine=engine)
    rows.append(("load model + compile bundled grammar", f"{1000 * (time.perf_counter() - t):.0f} ms", ""))
    t = time.perf_counter()
    from vcd.inference import META_KEY, export_path, load_numpy_model

    load_numpy_model(model)  # what recognition loads: the numpy export
    rows.append(("load model alone", f"{1000 * (time.perf_counter() - t):.0f} ms", "< 1 s"))
    with np.load(export_path(model)) as blob:  # parameters, not batch-norm statistics
        params = sum(blob[k].size for k in blob.files if k != META_KEY and "running_" not in k)
    rows.append(("model size", f"{model.stat().st_size / 1e6:.2f} MB", "<= 10 MB"))
    rows.append(("model parameters", f"{params / 1e6:.2f} M", ""))
    rec = Recognizer.load(None, model, engine=engine)
    rows.append(("the model's engine", rec.model.engine, ""))
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "cmd.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "120", "-w", str(wav),
                        "set the temperature in the living room to twenty one degrees"], check=True)
        from vcd.audio import read_audio

        speech = read_audio(wav)
        audio = np.concatenate([np.zeros(8000, np.float32), speech])
        audio = np.concatenate([audio, np.zeros(max(0, 48000 - audio.size), np.float32)])[:48000]
        times = []
        # as in the daemon: the front end and the speech presence (when the rule weighs it) ran on the stream
        speech = {} if rec.presence is None else {"speech": rec.presence(audio)}
        for _ in range(20):
            r = rec.recognize(audio, denoise=False, **speech)
            times.append(r.decode_ms)
        rows.append(("decode of a 3 s command after its end (median of 20)", f"{np.median(times):.1f} ms", "<= 50 ms"))
        rows.append(("real-time factor, 3 s command", f"{np.median(times) / 3000:.4f}", "<= 0.05"))
        if rec.presence is not None:
            from vcd.presence import SpeechPresence

            presence = []
            for _ in range(20):  # the daemon's VAD stage measures it as the segment grows; transcribe adds it
                fresh = SpeechPresence()
                t = time.perf_counter()
                fresh(audio)
                presence.append(1000 * (time.perf_counter() - t))
            rows.append(("speech presence (Silero VAD) on a 3 s command, as it is spoken", f"{np.median(presence):.1f} ms",
                         ""))
        if importlib.util.find_spec("pocketsphinx") is not None:
            from vcd.second_opinion import SecondOpinion

            opinion = SecondOpinion(rec.lexicon)
            t = time.perf_counter()
            opinion.sentence(rec.word_graph, audio)  # the first ask also builds its grammar
            first = 1000 * (time.perf_counter() - t)
            asked = []
            for _ in range(20):  # only for a sentence whose acceptance it decides, after the segment ends
                t = time.perf_counter()
                opinion.sentence(rec.word_graph, audio)
                asked.append(1000 * (time.perf_counter() - t))
            rows.append(("second opinion (PocketSphinx) on a 3 s command, when asked", f"{np.median(asked):.1f} ms", ""))
            rows.append(("second opinion, first ask (builds its grammar)", f"{first:.0f} ms", ""))
        from vcd.denoise import RNNoise

        denoiser, front = RNNoise(), []
        for _ in range(20):  # the daemon runs it while the command is spoken; transcribe adds it to decode_ms
            t = time.perf_counter()
            denoiser(audio)
            front.append(1000 * (time.perf_counter() - t))
        rows.append(("front end (RNNoise) on a 3 s command, streamed ahead of the VAD", f"{np.median(front):.1f} ms",
                     ""))
        rows.append(("front end real-time factor", f"{np.median(front) / 3000:.4f}", ""))
        from vcd.denoise import SegmentDenoiser, WebRtcNoise

        for name, view in (("WebRTC, the default", WebRtcNoise()), ("RNNoise", denoiser)):
            growing, flush = [], []
            for _ in range(20):  # recognizer.denoised_view: the VAD stage denoises each segment as it grows (30 ms)
                segment = SegmentDenoiser(view)
                t = time.perf_counter()
                for end in range(480, audio.size + 1, 480):
                    segment.feed(audio[:end])
                t1 = time.perf_counter()
                segment(audio)  # the segment's end: what is still inside the denoiser
                flush.append(1000 * (time.perf_counter() - t1))
                growing.append(1000 * (t1 - t))
            rows.append((f"denoised view ({name}) on a 3 s segment as it grows", f"{np.median(growing):.1f} ms", ""))
            rows.append(("  what is left of it at the segment's end", f"{np.median(flush):.1f} ms", ""))
        exe = REPO / ".venv" / "bin" / "vcd"
        cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "vcd"]), "transcribe",
               "--model", str(model), "--engine", engine, str(wav)]
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        rss_kb = int(proc.stderr.strip().splitlines()[-1]) if proc.returncode == 0 else 0
        rows.append(("peak RSS of `vcd transcribe` on one file", f"{rss_kb / 1024:.0f} MiB", ""))
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
