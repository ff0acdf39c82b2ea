"""Real rooms: held-out real speakers' sentences, clean and under real noise, and talk that is no command.

    .venv/bin/python benchmarks/real_rooms.py --data ../shared/data --split validation [--model M]
    .venv/bin/python benchmarks/real_rooms.py --data ../shared/data --split test --model M   # once, at the end

Speakers and noise come from the fixed splits of ``vcd.training.corpora`` (``speaker_split``,
``noise_split``), chosen before any run: choose on ``validation``, report ``test`` once.

1. *Commands*: each corpus's clips of the split's speakers (speechocean762, Common Voice,
   vctk-sample, AN4, Speech Commands words) decoded against a closed grammar of that corpus's
   distinct sentences in the split, as a household's command list; FSDD digits (test split only:
   three speakers) against the digit grammar.  A clip counts as *correct and accepted* when its own
   sentence comes out above the default ``min_confidence``.
2. The same commands with noise mixed in at each ``--snrs`` (SNR of the loudest 2048-sample frames
   of speech and of noise): for ``test`` the ``noise/test`` recordings (other kitchens, household
   machines) or babble of three other test speakers (a quarter of the clips); for ``validation`` the
   validation fifth of ``noise/train`` or babble of validation speakers.  ``room`` adds a simulated
   room (pyroomacoustics, RT60 0.3–0.8 s) before 12 dB noise.
3. *False accepts*: the split's speakers' sentences that the bundled smart-home grammar cannot say,
   decoded against it, clean and under 10 dB babble; and ``--stream-min`` minutes each of white noise
   and of the split's noise recordings through the daemon's VAD and the recogniser (false commands).

One torch thread, a fixed seed: a rerun prints the same figures.
"""

from __future__ import annotations

import argparse
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

from vcd.audio import read_audio  # noqa: E402
from vcd.recognizer import Recognizer  # noqa: E402
from vcd.training.calibrate import word_list_grammar  # noqa: E402
from vcd.training.augment import babble, mix_at_snr as mix  # noqa: E402
from vcd.training.corpora import noise_files, speaker_split  # noqa: E402
from vcd.transcripts import read_transcripts, words_of  # noqa: E402

GRAMMARS = REPO / "benchmarks" / "grammars"
COMMAND_CORPORA = ("speechocean762", "commonvoice", "vctk-sample", "an4-train", "speechcommands-v2")
TALK_CORPORA = ("commonvoice", "vctk-sample", "speechocean762")
PAD = np.zeros(4800, dtype=np.float32)  # 0.3 s of room around each clip: noise covers it too


class Noises:
    """The split's noise recordings and babble of the split's speakers, cut to length on demand."""

    def __init__(self, data: Path, split: str, rng: np.random.Generator) -> None:
        self.rng = rng
        source = "test" if split == "test" else "validation"
        self.recordings = [read_audio(p) for p in noise_files(data, source)]
        self.recordings = [r for r in self.recordings if np.any(r) and r.size > 8000]
        self.talk: list[tuple[str, np.ndarray]] = []
        for corpus in TALK_CORPORA:
            for u in read_transcripts(data / corpus):
                if u.text and speaker_split(corpus, u.speaker) == split:
                    self.talk.append((f"{corpus}/{u.speaker}", read_audio(u.path)))

    def _stretch(self, src: np.ndarray, n: int) -> np.ndarray:
        src = np.tile(src, int(np.ceil(n / src.size)) + 1)
        start = int(self.rng.integers(src.size - n + 1))
        return src[start:start + n]

    def recording(self, n: int) -> np.ndarray:
        return self._stretch(self.recordings[int(self.rng.integers(len(self.recordings)))], n)

    def babble(self, n: int, not_speaker: str, talkers: int = 3) -> np.ndarray:
        return babble([a for s, a in self.talk if s != not_speaker], n, talkers, self.rng)

    def any(self, n: int, speaker: str) -> np.ndarray:
        return self.babble(n, speaker) if self.rng.random() < 0.25 or not self.recordings else self.recording(n)


def room(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from vcd.training.augment import _fft_conv, room_rirs

    rir = room_rirs(1, rng)[0]
    return _fft_conv(x, rir)


def commands(data: Path, split: str, folder: Path) -> list[tuple[str, Path, list]]:
    """(set name, grammar, clips) for every command set of ``split``."""
    sets = []
    for corpus in COMMAND_CORPORA:
        if not (data / corpus / "transcripts.jsonl").exists():
            continue
        clips = [u for u in read_transcripts(data / corpus) if u.text and speaker_split(corpus, u.speaker) == split]
        if clips:
            grammar = word_list_grammar([" ".join(words_of(u.text)) for u in clips], folder, corpus)
            sets.append((corpus, grammar, clips))
    if split == "test" and (data / "fsdd-dev" / "transcripts.jsonl").exists():
        fsdd = read_transcripts(data / "fsdd-dev")
        for speaker in sorted({u.speaker for u in fsdd}):
            sets.append((f"fsdd {speaker}", GRAMMARS / "digits.yaml", [u for u in fsdd if u.speaker == speaker]))
    return sets


def right(recognition, text: str) -> tuple[bool, bool]:
    """(best sentence right, right and accepted)."""
    want = words_of(text)
    best = recognition.best_text.split() == want
    return best, best and recognition.recognized


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}" if d else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
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
    ap.add_argument("--seed", type=int, default=28)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--dump", type=Path, help="also write one JSON line per decode (scores, for studying rejection)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None

    def decode(recognizer, audio: np.ndarray, **note):
        result, hyp = recognizer.decode(audio)
        if dump is not None and hyp is not None:
            dump.write(json.dumps({**note, "best": result.best_text, "confidence": result.confidence,
                                   "score": hyp.score, "free": hyp.free_score, "speech_frames": hyp.speech_frames,
                                   "agreement": hyp.agreement, "free_confidence": hyp.free_confidence,
                                   "recognized": result.recognized,
                                   "frames": int(audio.size // 160)}) + "\n")
        return result

    rng = np.random.default_rng(args.seed)
    snrs = [float(s) for s in args.snrs.split(",") if s.strip()]
    started = time.time()
    noises = Noises(args.data, args.split, rng)
    conditions = ["clean", *(f"{s:g} dB" for s in snrs), "room+12 dB"]
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    load = dict(model=args.model, min_confidence=args.min_confidence, front_end=args.front_end)
    if args.beam is not None:
        load["beam"] = args.beam
    with tempfile.TemporaryDirectory() as tmp:
        for name, grammar, clips in commands(args.data, args.split, Path(tmp)):
            recognizer = Recognizer.load(grammar, **load)
            if args.limit:
                clips = [clips[i] for i in np.random.default_rng(1).permutation(len(clips))[:args.limit]]
            noisy = set(np.random.default_rng(3).permutation(len(clips))[:args.noisy_limit or len(clips)].tolist())
            for index, clip in enumerate(clips):
                speech = np.concatenate([PAD, read_audio(clip.path), PAD])
                speaker = f"{clip.corpus}/{clip.speaker}"
                for condition in conditions if index in noisy else conditions[:1]:
                    if condition == "clean":
                        audio = speech
                    elif condition.startswith("room"):
                        audio = mix(room(speech, rng), noises.any(speech.size, speaker), 12.0)
                    else:
                        audio = mix(speech, noises.any(speech.size, speaker), float(condition.split()[0]))
                    result = decode(recognizer, audio, set=name, condition=condition, want=" ".join(words_of(clip.text)),
                                    speaker=speaker)
                    best, ok = right(result, clip.text)
                    row = counts[name][condition]
                    row[0] += best
                    row[1] += ok
                    row[2] += 1
                    row[3] += result.recognized and not best  # a command, but not the one said
            print(f"{name}: {len(clips)} clips ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
        home = Recognizer.load(None, **load)
        talk = [u for corpus in ("commonvoice", "speechocean762", "vctk-sample", "an4-train")
                if (args.data / corpus / "transcripts.jsonl").exists()
                for u in read_transcripts(args.data / corpus)
                if u.text and speaker_split(corpus, u.speaker) == args.split
                and home.word_graph.parse(words_of(u.text)) is None]
        if args.split == "test" and (args.data / "wakewords" / "transcripts.jsonl").exists():
            talk += read_transcripts(args.data / "wakewords")[::4]
        if args.talk_limit:
            talk = [talk[i] for i in sorted(np.random.default_rng(2).permutation(len(talk))[:args.talk_limit])]
        false_clean = false_babble = 0
        for u in talk:
            speech = np.concatenate([PAD, read_audio(u.path), PAD])
            speaker = f"{u.corpus}/{u.speaker}"
            false_clean += decode(home, speech, set="talk", condition="clean", speaker=speaker).recognized
            babble = mix(speech, noises.babble(speech.size, speaker), 10.0)
            false_babble += decode(home, babble, set="talk", condition="babble 10 dB", speaker=speaker).recognized
        streams = stream_false_commands(home, noises, args.stream_min, rng, decode) if args.stream_min > 0 else {}

    print(f"\n## Real rooms — {args.split} speakers and noise (model {args.model or 'shipped'}, "
          f"front end {args.front_end}, min_confidence {home.min_confidence})\n")
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
    print(f"False accepts, {len(talk)} clips of talk the smart-home grammar cannot say: "
          f"clean {pct(false_clean, len(talk))} %, under 10 dB babble {pct(false_babble, len(talk))} %")
    for kind, (minutes, segments, false) in streams.items():
        print(f"{kind}: {minutes:g} min through the VAD: {segments} segments, {false} false commands")
    print(f"\n({time.time() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "model": str(args.model), "front_end": args.front_end,
                                         "commands": {k: dict(v) for k, v in counts.items()},
                                         "false_accepts": {"clips": len(talk), "clean": false_clean,
                                                           "babble_10db": false_babble},
                                         "streams": streams}, indent=1))
    return 0


def stream_false_commands(recognizer, noises: Noises, minutes: float, rng, decode) -> dict[str, tuple[float, int, int]]:
    """White noise and the split's noise recordings through the default VAD and ``decode`` (the recogniser's)."""
    from vcd.config import VadConfig
    from vcd.vad import Segmenter, SpeechEnd

    n = int(minutes * 60 * 16000)
    streams = {"white noise": (rng.standard_normal(n) * 0.05).astype(np.float32),
               "noise recordings": np.concatenate([r / (np.abs(r).max() + 1e-9) * 0.3 for r in
                                                   (noises.recording(16000 * 30) for _ in range(int(np.ceil(n / 480000))))])[:n]}
    out = {}
    for kind, audio in streams.items():
        segmenter, segments, false = Segmenter(VadConfig()), 0, 0
        events = [e for start in range(0, audio.size, 16000) for e in segmenter.process(audio[start:start + 16000])]
        for event in events + segmenter.flush():
            if isinstance(event, SpeechEnd) and event.kept:
                segments += 1
                false += decode(recognizer, event.samples, set="noise", condition=kind,
                                speaker=f"noise/{kind}/{segments}").recognized
        out[kind] = (minutes, segments, false)
    return out


if __name__ == "__main__":
    sys.exit(main())
