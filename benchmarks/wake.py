"""Wake-word benchmark: the shipped microWakeWord "alexa" model behind vcd's VAD, as the daemon runs it.

    nice -n 10 .venv/bin/python benchmarks/wake.py --data ../shared/data [--oww-verify] [--phrases] [--openwakeword]

Everything is split in two halves *before* any choice, by fixed rules written here:

- *Wake clips* (``wakewords/``, no speaker ids): by a stable hash of the file name
  (:func:`clip_half`), half validation, half test; each with 1 s of silence before and after.
- *Talk with no wake word*: every clip with speech and no "alex" in its text of Common Voice,
  speechocean762, AN4, VCTK, alphanumeric and Speech Commands, split by whole speaker: the
  held-out speakers of ``vcd.training.corpora.speaker_split`` keep their validation / test
  split, every other speaker goes to a half by a stable hash of corpus and speaker id
  (:func:`talk_half`).  Each half's clips, shuffled with a fixed seed, are joined with
  0.2–0.8 s pauses into 10-minute streams, cut by the VAD (default ``[vad]``) and fed to the
  wake stage as the daemon feeds it; every segment that wakes it is one false accept.  The
  talk of speakers no vcd model was trained on (the verifier below is vcd's phone model) is
  streamed apart and counted apart as well.
- *Noise* at 10 dB SNR over each clip and each stream: validation uses the noise kept out of
  training for choosing (``noise/train``'s validation fifth), test the ``noise/test`` recordings.

1. *Candidates, chosen on validation only*: microWakeWord's threshold (0.50..0.99), alone or
   with the second stage (``[wake] verify``: when microWakeWord fires, vcd's own phone model
   must find the phrase, "alexa" typed as text, ending near that point above its own threshold:
   :class:`vcd.wake.VerifiedWakeWord`).  The rule: among candidates that detect >= 95 % of the
   clean validation clips, the fewest validation false accepts (clean + 10 dB), then the most
   clips detected in noise.  microWakeWord's sliding window stays the model's own (5
   inferences): 3 and 8 were tried on validation and gained nothing.  With ``--oww-verify`` each
   candidate also comes without or with openWakeWord as a (further) second opinion at 0.05..0.99
   (``pyopen-wakeword``'s "alexa" model scores the segment where microWakeWord fired; its best
   window ending from 1 s before to 0.5 s after that point must pass: the daemon's
   ``[wake] verify``, :class:`vcd.wake.OpenWakeWordVerifier`): 6 500 candidates instead of 500.
2. *Test figures, once*: microWakeWord's own cutoff (0.9) and the chosen settings on the test
   clips and the test talk: detected share, false accepts per hour with the count and the 95 %
   upper bound of the rate (exact Poisson), clean and 10 dB; and a check that the daemon's
   detector with those settings agrees with the table on every clean test clip.
3. *CPU* on the test talk (almost all speech, the worst case): VAD and microWakeWord, and the
   verifiers where they would run (segments where microWakeWord passes the chosen threshold), as
   % of one core (process CPU time / audio time).

Without ``--phrases`` and ``--openwakeword``, ``--oww-verify`` runs in about 11 minutes on this
shared 2-core machine (decoded audio cached).

``--phrases`` also measures the typed-phrase spotter (``wake.phrase``) on each of the four
phrases of ``wakewords/`` (their test halves, clean), its threshold per phrase chosen on
validation as the lowest with at most 0.5 false accepts per hour of clean validation talk.
``--openwakeword`` compares ``pyopen-wakeword``'s "alexa" model alone on the clean test clips
and the first ``--oww-minutes`` of the clean test talk.  ``--max-hours`` takes a quick look
(a tenth of the clips, that much talk per half and group).  Decoded audio is cached under
``--cache``.  Fixed seeds: a rerun prints the same figures (the CPU figures vary).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import zlib
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import read_audio  # noqa: E402
from vcd.config import VadConfig  # noqa: E402
from vcd.training.augment import mix_at_snr  # noqa: E402
from vcd.training.corpora import TRAIN_CORPORA, data_folder, noise_files, speaker_split  # noqa: E402
from vcd.vad import Segmenter, SpeechEnd, float_to_pcm16  # noqa: E402
from vcd.wake import (  # noqa: E402
    FEATURE_STEP_S,
    PHRASE_THRESHOLD,
    VERIFIED_MODEL_THRESHOLD,
    VERIFY_THRESHOLD,
    OpenWakeWordVerifier,
    PhraseSpotter,
    VerifiedWakeWord,
    WakeWordModel,
    crossings,
    oww_verification,
    verification_score,
)

RATE = 16000
TALK_CORPORA = ("commonvoice", "speechocean762", "an4-train", "vctk-sample", "alphanumeric", "speechcommands-v2")
PHRASES = ("alexa", "smart mirror", "snowboy", "view glass")  # the phrases of wakewords/
PAD = np.zeros(RATE, dtype=np.float32)
HALVES = ("validation", "test")
CONDITIONS = ("clean", "10 dB")
CHUNK_S = 600.0  # talk is joined into streams of this length
LOW = 0.3  # segments whose microWakeWord score passes this get the verifier's phrase scores
THRESHOLDS = tuple(round(0.5 + 0.01 * i, 2) for i in range(50))  # 0.50 .. 0.99
WINDOW = 5  # microWakeWord's sliding window (inferences averaged): the model's own (3 and 8 gained nothing on validation)
VERIFY = (None, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)  # None: no second stage
OWW_VERIFY = (None, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)  # --oww-verify; None: without it
TARGET_DETECTED = 0.95
TARGET_FA_H = 0.5


def stable_hash(text: str) -> int:
    """A hash no run changes, for the quick look's subset: SHA-256, whose bits, unlike CRC-32's, bear no
    relation to the halves' CRC-32 (CRC-32 is linear: its bits for similar names are related)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def clip_half(name: str) -> str:
    """The fixed half of a wake clip (no speaker ids): a stable hash of its file name."""
    return "test" if zlib.crc32(f"wake-clip/{name}".encode()) % 2 == 0 else "validation"


def talk_half(corpus: str, speaker: str) -> str:
    """The fixed half of a talking speaker: corpora.py's held-out split, else a stable hash of the speaker."""
    split = speaker_split(corpus, speaker)
    if split != "train":
        return split
    return "test" if zlib.crc32(f"wake-talk/{corpus}/{speaker}".encode()) % 2 == 0 else "validation"


def poisson_upper(k: int, hours: float) -> float:
    """The one-sided 95 % upper bound of a rate (per hour) after ``k`` events in ``hours`` (exact, Poisson)."""
    lo, hi = 0.0, 100.0 + 10.0 * k
    for _ in range(100):  # P(X <= k | mu) = 0.05, by bisection on mu
        mu = (lo + hi) / 2
        cdf = sum(math.exp(-mu) * mu**i / math.factorial(i) for i in range(k + 1))
        lo, hi = (mu, hi) if cdf > 0.05 else (lo, mu)
    return hi / hours


def cached(cache: Path, data: Path, corpus: str, rows: list[dict]) -> list[np.ndarray]:
    """The decoded 16 kHz clips of ``rows``, from ``cache`` when they were decoded before."""
    if not rows:
        return []
    key = zlib.crc32("\n".join(r["file"] for r in rows).encode())
    path = cache / f"{corpus}-{key:08x}.npz"
    if path.exists():
        with np.load(path) as z:
            flat, ends = z["pcm"], z["ends"]
        return [(p.astype(np.float32) / 32768) for p in np.split(flat, ends[:-1])]
    clips = [read_audio(data / corpus / r["file"]) for r in rows]
    cache.mkdir(parents=True, exist_ok=True)
    ends = np.cumsum([c.size for c in clips])
    np.savez(path, pcm=np.concatenate([float_to_pcm16_array(c) for c in clips]), ends=ends)
    return [(float_to_pcm16_array(c).astype(np.float32) / 32768) for c in clips]


def float_to_pcm16_array(x: np.ndarray) -> np.ndarray:
    return np.frombuffer(float_to_pcm16(x), dtype=np.int16)


def talk_rows(data: Path, corpus: str) -> list[dict]:
    rows = [json.loads(line) for line in (data / corpus / "transcripts.jsonl").read_text().splitlines() if line]
    out = []
    for r in rows:
        text = str(r.get("text", r.get("prompt", "")))
        if text.strip() and "alex" not in text.lower():
            out.append(r)
    return out


class RawScorer:
    """microWakeWord's every inference (no sliding window), from which any window's score track is made."""

    def __init__(self, model: str) -> None:
        self.model = WakeWordModel(model)
        self.stride = self.model._model.stride
        self.own_window = self.model._model.sliding_window_size

    def raw(self, samples: np.ndarray) -> np.ndarray:
        m = self.model._model
        m.sliding_window_size = 1
        m.reset()
        m._probabilities = deque(maxlen=1)
        self.model._features.reset()
        out = []
        for count, features in enumerate(self.model._features.process_streaming(float_to_pcm16(samples)), start=1):
            prob = m.process_streaming_prob(features)
            if count % self.stride == 0:
                out.append(prob or 0.0)
        return np.asarray(out, dtype=np.float32)

    def track(self, raw: np.ndarray, window: int, frames: int) -> np.ndarray:
        """The score every 10 ms, as :meth:`vcd.wake.WakeWordModel.scores` gives it with ``window``."""
        means = np.zeros(raw.size + 1, dtype=np.float32)
        if raw.size >= window:
            c = np.r_[0.0, np.cumsum(raw, dtype=np.float64)]
            means[window:] = (c[window:] - c[:-window]) / window
        idx = (np.arange(1, frames + 1) // self.stride).clip(max=raw.size)
        return means[idx]


@dataclass
class Seg:
    """One speech segment (or one clip): what every candidate setting is decided from."""

    raw: np.ndarray  # microWakeWord's inferences
    frames: int  # 10 ms feature frames
    phrase: np.ndarray | None = None  # the verifier's "alexa" scores (only where microWakeWord passed LOW)
    heard: bool = False  # talk by a speaker vcd's phone model was trained on
    verify_cpu_s: float = 0.0  # what the verifier's phone model cost on it
    phrase_max: dict[str, float] = field(default_factory=dict)  # typed phrases: the best score in it
    oww: np.ndarray | None = None  # --oww-verify: openWakeWord's scores (only where microWakeWord passed THRESHOLDS[0])
    oww_cpu_s: float = 0.0  # what openWakeWord cost on it
    best: float = 0.0  # see summarize()
    verified: np.ndarray | None = None
    both: list[np.ndarray] = field(default_factory=list)  # per threshold: (phone, openWakeWord) score per crossing


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.vad = VadConfig()
        self.scorer = RawScorer(args.model)
        self.verifier = PhraseSpotter("alexa")
        self.oww = OpenWakeWordVerifier("alexa", 0.5) if args.oww_verify else None
        self.spotters = {p: PhraseSpotter(p) for p in PHRASES} if args.phrases else {}
        self.cpu = {"vad": 0.0, "wake": 0.0, "verify": 0.0, "phone model": 0.0}

    def segments(self, audio: np.ndarray) -> list[np.ndarray]:
        segmenter = Segmenter(self.vad)
        started = time.process_time()
        events = []
        block = RATE * 30 // 1000
        for i in range(0, len(audio), block):
            events += segmenter.process(audio[i : i + block])
        events += segmenter.flush()
        self.cpu["vad"] += time.process_time() - started
        return [e.samples for e in events if isinstance(e, SpeechEnd) and e.kept]

    def seg(self, samples: np.ndarray, phrases: bool) -> Seg:
        started = time.process_time()
        raw = self.scorer.raw(samples)
        self.cpu["wake"] += time.process_time() - started
        frames = samples.size // (RATE // 100)
        s = Seg(raw, frames)
        lp = None
        if phrases and self.spotters and samples.size >= RATE // 10:
            started = time.process_time()
            lp = self.verifier.posteriors(samples)
            self.cpu["phone model"] += time.process_time() - started
            s.phrase_max = {p: float(sp.scores_of(lp).max(initial=0.0)) for p, sp in self.spotters.items()}
        best = self.scorer.track(raw, WINDOW, frames).max(initial=0.0)
        if best > LOW:
            started = time.process_time()
            s.phrase = self.verifier.scores(samples)
            s.verify_cpu_s = time.process_time() - started
        if self.oww is not None and best > THRESHOLDS[0]:
            started = time.process_time()
            scores = self.oww.scores(samples)
            s.oww_cpu_s = time.process_time() - started
            s.oww = np.stack([scores, OpenWakeWordVerifier.ends(scores, samples.size)])
        return s

    def clip(self, clip: np.ndarray, noise: np.ndarray | None, phrases: bool) -> list[Seg]:
        audio = np.concatenate([PAD, clip, PAD])
        if noise is not None:
            audio = mix_at_snr(audio, noise, 10.0)
        return [self.seg(p, phrases) for p in self.segments(audio)]


def noise_track(paths: list[Path], n: int, rng: np.random.Generator, cache: dict[Path, np.ndarray]) -> np.ndarray:
    """``n`` samples of the noise recordings, in a random order, end to end."""
    pieces, total = [], 0
    while total < n:
        path = paths[rng.integers(len(paths))]
        if path not in cache:
            cache[path] = read_audio(path)
        piece = cache[path]
        if piece.size and np.abs(piece).max() > 0:
            pieces.append(piece)
            total += piece.size
    return np.concatenate(pieces)[:n]


def summarize(s: Seg, scorer: RawScorer) -> None:
    """What every candidate needs of a segment: its highest score and, per threshold, the best verification
    among the points where the score rises above it (the daemon's rule: vcd.wake.VerifiedWakeWord)."""
    track = scorer.track(s.raw, WINDOW, s.frames)
    s.best = float(track.max(initial=0.0))
    s.verified = np.full(len(THRESHOLDS), -1.0)
    if s.phrase is not None:
        for k, t in enumerate(THRESHOLDS):
            ends = crossings(track, t)
            both = [(verification_score(s.phrase, (i + 1) * FEATURE_STEP_S),
                     oww_verification(s.oww[0], s.oww[1], (i + 1) * FEATURE_STEP_S) if s.oww is not None else -1.0)
                    for i in ends]
            s.verified[k] = max((b[0] for b in both), default=-1.0)
            s.both.append(np.array(both).reshape(-1, 2))


def fires(s: Seg, cand: tuple) -> bool:
    """Whether the wake stage with these settings (threshold, phone-model verify threshold or None[, openWakeWord
    threshold or None]) fires on a segment: at some point where microWakeWord's score rises above the threshold,
    every verifier given passes (the daemon's rule)."""
    t, v, w = (*cand, None)[:3]
    if s.best <= t:
        return False
    if w is None:
        return v is None or bool(s.verified[THRESHOLDS.index(t)] > v)
    both = s.both[THRESHOLDS.index(t)]
    ok = both[:, 1] > w
    if v is not None:
        ok &= both[:, 0] > v
    return bool(ok.any())


def detected(clips: list[list[Seg]], cand: tuple) -> float:
    return float(np.mean([any(fires(s, cand) for s in segs) for segs in clips]))


def false_accepts(talk: list[Seg], cand: tuple) -> int:
    return sum(fires(s, cand) for s in talk)


def awake(segs: list[Seg]) -> list[Seg]:
    """The segments any candidate can fire on (microWakeWord passes the lowest threshold): the rest need no look."""
    return [s for s in segs if s.best > THRESHOLDS[0]]


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def name(cand: tuple) -> str:
    t, v, w = (*cand, None)[:3]
    return (f"threshold {t:g}" + (f", verify {v:g}" if v is not None else "")
            + (f", openWakeWord {w:g}" if w is not None else ""))


def choose(results: dict, pool: list) -> tuple[float, float | None]:
    """The rule: of the candidates keeping >= 95 % of the clean clips, the fewest false accepts (clean and
    10 dB together), then the most clips detected in noise, then clean (a tie: the first, lowest threshold)."""
    ok = [c for c in pool if results[c][0] >= TARGET_DETECTED]
    return min(ok, key=lambda c: (results[c][2] + results[c][3], -results[c][1], -results[c][0]))


def build(bench: Bench, args: argparse.Namespace, h: str, wake_rows: list[dict], wake_audio: list[np.ndarray]):
    """One half: its alexa clips (clean, 10 dB), the other phrases' clips, its talk (clean, 10 dB)."""
    rng = np.random.default_rng([args.seed, HALVES.index(h)])
    noises = noise_files(args.data, h)
    noise_cache: dict[Path, np.ndarray] = {}
    clips: dict[str, list[list[Seg]]] = {c: [] for c in CONDITIONS}
    raw_clips: list[np.ndarray] = []
    phrase_clips: dict[str, list[list[Seg]]] = {p: [] for p in PHRASES}
    for row, audio in zip(wake_rows, wake_audio):
        if clip_half(row["file"]) != h or (args.max_hours and stable_hash(f"quick/{row['file']}") % 10):
            continue
        if row["text"] == "alexa":
            raw_clips.append(audio)
            for c in CONDITIONS:
                noise = None if c == "clean" else noise_track(noises, audio.size + 2 * RATE, rng, noise_cache)
                clips[c].append(bench.clip(audio, noise, phrases=c == "clean"))
            phrase_clips["alexa"].append(clips["clean"][-1])
        elif bench.spotters:
            phrase_clips[row["text"]].append(bench.clip(audio, None, phrases=True))
    talk: dict[str, list[Seg]] = {c: [] for c in CONDITIONS}
    hours = {"heard": 0.0, "unheard": 0.0}
    corpus_s: dict[str, float] = {}
    first_stream = None
    cpu_before = dict(bench.cpu)
    for group in ("unheard", "heard"):  # talk by speakers vcd's phone model was never / was trained on
        pieces = []
        for corpus in TALK_CORPORA:
            rows = [r for r in talk_rows(args.data, corpus) if talk_half(corpus, r["speaker"]) == h
                    and (speaker_split(corpus, r["speaker"]) == "train" and corpus in TRAIN_CORPORA) == (group == "heard")]
            audio = cached(args.cache, args.data, corpus, rows)
            corpus_s[corpus] = corpus_s.get(corpus, 0.0) + sum(a.size for a in audio) / RATE
            pieces += audio
        order = rng.permutation(len(pieces))
        chunk, size = [], 0
        for n, i in enumerate(order):
            chunk += [pieces[i], np.zeros(int(rng.uniform(0.2, 0.8) * RATE), np.float32)]
            size += chunk[-2].size + chunk[-1].size
            if size < CHUNK_S * RATE and n + 1 < len(order):
                continue
            stream = np.concatenate(chunk)
            chunk, size = [], 0
            first_stream = stream if first_stream is None else first_stream
            hours[group] += stream.size / RATE / 3600
            talk["clean"] += [replace(bench.seg(p, phrases=True), heard=group == "heard") for p in bench.segments(stream)]
            noisy = mix_at_snr(stream, noise_track(noises, stream.size, rng, noise_cache), 10.0)
            talk["10 dB"] += [replace(bench.seg(p, phrases=False), heard=group == "heard") for p in bench.segments(noisy)]
            if args.max_hours and hours[group] >= args.max_hours:
                break
    talk_cpu = {k: bench.cpu[k] - cpu_before[k] for k in bench.cpu}
    print(f"{h}: {len(clips['clean'])} 'alexa' clips; {sum(hours.values()):.2f} h of talk with its pauses ("
          + ", ".join(f"{c} {s / 3600:.2f} h" for c, s in corpus_s.items())
          + f"), {hours['unheard']:.2f} h of it by speakers no vcd model was trained on; noise: "
          f"{len(noises)} recordings", flush=True)
    return clips, raw_clips, phrase_clips, talk, hours, talk_cpu, first_stream


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=data_folder, required=True, help="the shared data folder (wakewords/, noise/ …)")
    parser.add_argument("--model", default="alexa", help="wake word model (default alexa: the clips say alexa)")
    parser.add_argument("--phrases", action="store_true", help="also measure typed phrases (wake.phrase)")
    parser.add_argument("--openwakeword", action="store_true", help="also measure pyopen-wakeword's alexa model")
    parser.add_argument("--oww-verify", action="store_true", help="also try openWakeWord as the second opinion: "
                        "it scores the segments where microWakeWord fires (vcd.wake.OpenWakeWordVerifier)")
    parser.add_argument("--oww-minutes", type=float, default=10.0, help="minutes of test talk for it (default 10)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vcd-wake-cache"), help="decoded audio cache")
    parser.add_argument("--max-hours", type=float, default=0.0, help="a quick look: at most this much talk per "
                        "half and speaker group, and a tenth of the clips (0: all)")
    parser.add_argument("--seed", type=int, default=30)
    args = parser.parse_args()
    bench = Bench(args)
    scorer = bench.scorer
    print(f"wake word {scorer.model.name!r}: cutoff {scorer.model.model_threshold:g}, sliding window "
          f"{scorer.own_window}; verifier: vcd's phone model spotting 'alexa' ({' '.join(bench.verifier.phones)})")
    wake_rows = [json.loads(line) for line in (args.data / "wakewords" / "transcripts.jsonl").read_text().splitlines()]
    wake_audio = cached(args.cache, args.data, "wakewords", wake_rows)
    half = {h: build(bench, args, h, wake_rows, wake_audio) for h in HALVES}
    for h in HALVES:
        clips, _, _, talk, _, _, _ = half[h]
        for c in CONDITIONS:
            for s in [*talk[c], *(s for segs in clips[c] for s in segs)]:
                summarize(s, scorer)

    looked: dict[tuple, tuple] = {}  # (half, heard): the segments any candidate can fire on

    def row(h: str, cand: tuple, heard: bool | None = None) -> tuple[float, float, int, int]:
        if (h, heard) not in looked:
            clips, _, _, talk, _, _, _ = half[h]
            looked[h, heard] = ({c: [awake(segs) for segs in clips[c]] for c in CONDITIONS},
                                {c: awake([s for s in talk[c] if heard is None or s.heard == heard]) for c in CONDITIONS})
        clips, talk = looked[h, heard]
        return (detected(clips["clean"], cand), detected(clips["10 dB"], cand),
                false_accepts(talk["clean"], cand), false_accepts(talk["10 dB"], cand))

    oww = args.oww_verify
    candidates = [(t, v, w) if oww else (t, v) for t in THRESHOLDS for v in VERIFY for w in (OWW_VERIFY if oww else [None])]
    results = {c: row("validation", c) for c in candidates}
    vh = sum(half["validation"][4].values())
    own = (scorer.model.model_threshold, None, None)[: 3 if oww else 2]
    alone = choose(results, [c for c in candidates if c[1:] == own[1:]])
    phone = choose(results, [c for c in candidates if c[2:] == own[2:]])
    chosen = choose(results, candidates)
    print(f"\nChosen on validation ({len(results)} candidates: threshold 0.50..0.99 by 0.01, each alone or with the "
          f"phone-model verifier at {', '.join(f'{v:g}' for v in VERIFY if v is not None)}"
          + (f", each without or with openWakeWord verifying at {', '.join(f'{w:g}' for w in OWW_VERIFY if w)}"
             if oww else "")
          + "; rule: >= 95 % of the clean clips, then the fewest false accepts clean + 10 dB, then the most clips "
          "detected at 10 dB):")
    print("| setting | validation: detected clean | 10 dB | false accepts clean | 10 dB |")
    print("|---|---|---|---|---|")
    shown = {"microWakeWord's own cutoff": own, "chosen, microWakeWord alone": alone}
    if oww:
        default = (VERIFIED_MODEL_THRESHOLD, VERIFY_THRESHOLD, None)
        shown |= {"chosen, with the phone model": phone, 'verify = "phone" (the default before)': default,
                  "chosen, with openWakeWord": choose(results, [c for c in candidates if c[1] is None and c[2]])}
    shown |= {"**chosen**": chosen}
    for label, cand in shown.items():
        r = results[cand]
        print(f"| {label}: {name(cand)} | {pct(r[0])} | {pct(r[1])} | {r[2]} in {vh:.2f} h | {r[3]} |")

    clips, raw_clips, phrase_clips, talk, hours, talk_cpu, first_stream = half["test"]
    th = sum(hours.values())
    print(f"\nTest ({len(clips['clean'])} 'alexa' clips, {th:.2f} h of talk, {hours['unheard']:.2f} h of it by "
          "speakers no vcd model was trained on), reported once; false accepts per hour, the count and the 95 % upper "
          "bound of the rate (Poisson) in brackets:")
    print("| setting | detected clean | 10 dB | false accepts / h clean | 10 dB | on the unheard speakers' talk, "
          "clean + 10 dB |")
    print("|---|---|---|---|---|---|")
    for label, cand in shown.items():
        d, dn, fa, fan = row("test", cand)
        _, _, ua, uan = row("test", cand, heard=False)
        print(f"| {label}: {name(cand)} | {pct(d)} | {pct(dn)} | {fa / th:.2f} ({fa}; <= {poisson_upper(fa, th):.2f}) "
              f"| {fan / th:.2f} ({fan}; <= {poisson_upper(fan, th):.2f}) | {ua} + {uan} in {hours['unheard']:.2f} h |")
    check_daemon_path(bench, raw_clips, clips["clean"], chosen)

    audio_s = th * 3600
    for c in CONDITIONS:
        if chosen[1] is not None:
            verify_s = sum(s.verify_cpu_s for s in talk[c] if s.best > chosen[0])
            wakes = sum(s.best > chosen[0] for s in talk[c])
            print(f"CPU on the test talk, {c}: the phone-model verifier ran on {wakes} segments: "
                  f"{100 * verify_s / audio_s:.4f} % of one core")
        if oww:
            for label, cand in shown.items():
                if cand[2] is not None:
                    ran = [s for s in talk[c] if s.best > cand[0]]
                    print(f"CPU on the test talk, {c}, {label} ({name(cand)}): openWakeWord ran on {len(ran)} "
                          f"segments ({sum(s.frames for s in ran) / 100:.0f} s of audio): "
                          f"{100 * sum(s.oww_cpu_s for s in ran) / audio_s:.4f} % of one core")
    print(f"CPU on the test talk, both conditions (% of one core): VAD {50 * talk_cpu['vad'] / audio_s:.2f} %, "
          f"microWakeWord {50 * talk_cpu['wake'] / audio_s:.2f} %")
    if bench.spotters:
        phrases_report(bench, half)
    if args.openwakeword:
        openwakeword(raw_clips, first_stream[: int(args.oww_minutes * 60 * RATE)], [own[0], chosen[0], 0.95])
    return 0


def check_daemon_path(bench: Bench, raw_clips: list[np.ndarray], clips: list[list[Seg]], cand: tuple) -> None:
    """The daemon's own detector (vcd.wake.VerifiedWakeWord) with the chosen settings agrees with the table."""
    t, v, w = (*cand, None)[:3]
    if v is None and w is None:
        return
    model = WakeWordModel(bench.args.model, t)
    daemon = VerifiedWakeWord(model, PhraseSpotter(model.phrase, threshold=v) if v is not None else None,
                              OpenWakeWordVerifier(model.name, w) if w is not None else None)
    agree = sum(any(daemon.detect(p) is not None for p in bench.segments(np.concatenate([PAD, clip, PAD])))
                == any(fires(s, cand) for s in segs) for clip, segs in zip(raw_clips, clips))
    print(f"vcd.wake.VerifiedWakeWord with these settings agrees on {agree} of the {len(clips)} clean test clips")


def phrases_report(bench: Bench, half: dict) -> None:
    """The typed-phrase spotter: threshold per phrase from validation, test figures once."""
    vtalk, vh = half["validation"][3]["clean"], sum(half["validation"][4].values())
    ttalk, th = half["test"][3]["clean"], sum(half["test"][4].values())
    print(f"\nTyped phrases (`wake.phrase`; default threshold {PHRASE_THRESHOLD:g}), behind the VAD, clean. Threshold "
          f"per phrase, chosen on validation ({vh:.2f} h of talk): the lowest of 0.30..0.99 (by 0.01) with <= "
          f"{TARGET_FA_H} false accepts per hour; test talk {th:.2f} h:")
    print("| phrase | phones | threshold | test clips detected | test false accepts / h (count; 95 % upper bound) |")
    print("|---|---|---|---|---|")
    grid = [round(0.3 + 0.01 * i, 2) for i in range(70)]
    for phrase, spotter in bench.spotters.items():
        val = np.array([s.phrase_max.get(phrase, 0.0) for s in vtalk])
        threshold = next((t for t in grid if (val > t).sum() / vh <= TARGET_FA_H), grid[-1])
        clips = half["test"][2][phrase]
        det = float(np.mean([any(s.phrase_max.get(phrase, 0.0) > threshold for s in segs) for segs in clips]))
        fa = int(sum(s.phrase_max.get(phrase, 0.0) > threshold for s in ttalk))
        print(f"| {phrase} | {' '.join(spotter.phones)} | {threshold:g} | {pct(det)} of {len(clips)} | "
              f"{fa / th:.2f} ({fa}; <= {poisson_upper(fa, th):.2f}) |")
    talk_s = (vh + th) * 3600
    print(f"CPU: the phone model {100 * bench.cpu['phone model'] / talk_s:.2f} % of one core on the clean talk")


def openwakeword(clips: list[np.ndarray], stream: np.ndarray, thresholds: list[float]) -> None:
    """pyopen-wakeword's alexa model alone on the clips and a stream: detection, false accepts, CPU."""
    try:
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures
    except ImportError:
        print("\npyopen-wakeword is not installed: `pip install pyopen-wakeword` to compare")
        return
    model = OpenWakeWord.from_builtin(Model.ALEXA)
    features = OpenWakeWordFeatures.from_builtin()

    def scores(audio: np.ndarray) -> np.ndarray:
        model.reset()
        features.reset()
        pcm, out = float_to_pcm16(audio), []
        for i in range(0, len(pcm), 2560):  # 80 ms chunks, as the library's own command reads
            for embedding in features.process_streaming(pcm[i : i + 2560]):
                out.extend(model.process_streaming(embedding))
        return np.asarray(out, dtype=np.float32)

    peaks = np.array([scores(np.concatenate([PAD, c, PAD])).max(initial=0.0) for c in clips])
    started = time.process_time()
    track = scores(stream)
    cpu_s = time.process_time() - started
    hours = stream.size / RATE / 3600
    step_s = stream.size / RATE / max(1, track.size)
    print(f"\nopenWakeWord (pyopen-wakeword) alexa alone, the {len(clips)} clean test clips, {hours * 60:.0f} min of "
          "clean test talk (detections less than 2 s apart count once):")
    print("| threshold | detected | false accepts / h |")
    print("|---|---|---|")
    for t in sorted(set(thresholds)):
        above = np.flatnonzero(track > t) * step_s
        events = int(above.size and 1 + (np.diff(above) > 2.0).sum())
        print(f"| {t:g} | {pct(float((peaks > t).mean()))} | {events / hours:.2f} |")
    print(f"CPU: {100 * cpu_s / (stream.size / RATE):.2f} % of one core")


if __name__ == "__main__":
    sys.exit(main())
