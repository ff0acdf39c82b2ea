"""Wake-word benchmark: the shipped microWakeWord "alexa" model behind vcd's VAD, as the daemon runs it.

    .venv/bin/python benchmarks/wake.py --data ../shared/data [--minutes 45] [--phrases] [--openwakeword]

1. *Detection*: every real "alexa" clip of ``wakewords/`` (Picovoice's crowd-sourced benchmark,
   ~3 s each with room noise), with 1 s of silence before and after, cut by the VAD (default
   ``[vad]``) and scored by the wake stage: a clip is detected when one of its segments passes
   the threshold.  Clean, and with test noise (``noise/test``: other kitchens, household
   machines, street; never trained on by anyone here) at 10 and 0 dB SNR.
2. *False accepts per hour*: real read speech that holds no wake word — Common Voice,
   speechocean762 and AN4 clips in equal shares (clips whose text has "alex" left out), shuffled
   with a fixed seed and joined with 0.2–0.8 s pauses into one stream of ``--minutes`` — through
   the same VAD and wake stage; every segment that passes is one false accept.  Clean and with
   the test noise at 10 dB over the whole stream.  Also the model alone on the continuous stream
   (no VAD; detections less than 2 s apart count once), to show what the VAD gate changes.
3. *CPU*: process CPU time (all threads, TensorFlow Lite's included) of the VAD, of the wake
   stage and of the model alone, as % of one core per second of audio listened to.  The stream
   is almost all speech, the worst case: in a quiet room the wake model does not run at all.

Every figure is given at the model's own cutoff (0.9) and at the thresholds of ``--thresholds``.
``--phrases`` also measures the typed-phrase spotter (``wake.phrase``: vcd's own phone model against
its free phone loop) on the first ``--phrase-clips`` clips of each of the four phrases of
``wakewords/``, and on the same clean talk.  ``--openwakeword`` also measures ``pyopen-wakeword``'s "alexa" model (if installed) alone on the
same clips and on the first ``--oww-minutes`` of the clean stream, for the comparison in
docs/daemon.md.  A fixed seed: a rerun prints the same figures (the CPU figures vary).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import read_audio  # noqa: E402
from vcd.config import VadConfig  # noqa: E402
from vcd.training.augment import mix_at_snr  # noqa: E402
from vcd.training.corpora import noise_files  # noqa: E402
from vcd.vad import Segmenter, SpeechEnd, float_to_pcm16  # noqa: E402
from vcd.wake import FEATURE_STEP_S, PHRASE_THRESHOLD, PhraseSpotter, WakeWordModel  # noqa: E402

RATE = 16000
TALK_CORPORA = ("commonvoice", "speechocean762", "an4-train")
PHRASES = ("alexa", "smart mirror", "snowboy", "view glass")  # the phrases of wakewords/
PAD = np.zeros(RATE, dtype=np.float32)


def segments(audio: np.ndarray, vad: VadConfig, cpu: dict[str, float]) -> list[np.ndarray]:
    """The speech segments the daemon's VAD stage would hand the wake stage (kept ones only)."""
    segmenter = Segmenter(vad)
    started = time.process_time()
    events = []
    block = RATE * 30 // 1000
    for i in range(0, len(audio), block):
        events += segmenter.process(audio[i : i + block])
    events += segmenter.flush()
    cpu["vad"] = cpu.get("vad", 0.0) + time.process_time() - started
    return [e.samples for e in events if isinstance(e, SpeechEnd) and e.kept]


def peaks(model: WakeWordModel, parts: list[np.ndarray], cpu: dict[str, float]) -> np.ndarray:
    """The highest score of each segment (the wake stage fires on a segment when it passes the threshold)."""
    started = time.process_time()
    out = np.array([model.scores(p).max(initial=0.0) for p in parts], dtype=np.float32)
    cpu["wake"] = cpu.get("wake", 0.0) + time.process_time() - started
    return out


def events_over(scores: np.ndarray, threshold: float, step_s: float, refractory_s: float = 2.0) -> int:
    """Detections in a continuous score track: crossings more than ``refractory_s`` apart."""
    count, last = 0, -1e9
    for i in np.flatnonzero(scores > threshold):
        if i * step_s - last > refractory_s:
            count += 1
        last = i * step_s
    return count


def noise_track(paths: list[Path], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of the test noise recordings, in a random order, end to end."""
    pieces, total = [], 0
    cache: dict[Path, np.ndarray] = {}
    while total < n:
        path = paths[rng.integers(len(paths))]
        if path not in cache:
            cache[path] = read_audio(path)
        piece = cache[path]
        if piece.size and np.abs(piece).max() > 0:
            pieces.append(piece)
            total += piece.size
    return np.concatenate(pieces)[:n]


def talk_stream(data: Path, minutes: float, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """Real speech with no wake word: equal minutes of each corpus, shuffled, 0.2–0.8 s pauses."""
    per_corpus = minutes * 60 / len(TALK_CORPORA)
    clips, seconds = [], {}
    for corpus in TALK_CORPORA:
        rows = [json.loads(line) for line in (data / corpus / "transcripts.jsonl").read_text().splitlines() if line]
        order = rng.permutation(len(rows))
        got = 0.0
        for i in order:
            if "alex" in rows[i]["text"].lower():
                continue
            audio = read_audio(data / corpus / rows[i]["file"])
            clips.append(audio)
            got += audio.size / RATE
            if got >= per_corpus:
                break
        seconds[corpus] = got
    parts = []
    for i in rng.permutation(len(clips)):
        parts += [clips[i], np.zeros(int(rng.uniform(0.2, 0.8) * RATE), np.float32)]
    return np.concatenate(parts), seconds


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def phrases(data: Path, rows: list[dict], talk: list[np.ndarray], hours: float, limit: int,
            thresholds: list[float], vad: VadConfig) -> None:
    """The typed-phrase spotter (vcd's phone model) on each phrase of wakewords/ and on the talk."""
    spotters = {p: PhraseSpotter(p) for p in PHRASES}
    audio_s = hours * 3600
    started = time.process_time()
    talk_posteriors = [spotters["alexa"].posteriors(t) for t in talk]  # the same model for every phrase
    posterior_cpu = time.process_time() - started
    print(f"\nTyped phrases (`wake.phrase`, vcd's phone model; default threshold {PHRASE_THRESHOLD:g}), behind the "
          f"VAD, clean; the first {limit} clips of each phrase; false accepts on the same {hours * 60:.0f} min of talk:")
    print("| phrase | phones | " + " | ".join(f"{t:g}: detected, FA/h" for t in thresholds)
          + " | lowest threshold with no false accept: detected |")
    print("|---|---|" + "---|" * (len(thresholds) + 1))
    search_cpu = 0.0
    for phrase, spotter in spotters.items():
        clips = [read_audio(data / "wakewords" / r["file"]) for r in rows if r["text"] == phrase][:limit]
        best = []
        for clip in clips:
            parts = segments(np.concatenate([PAD, clip, PAD]), vad, {})
            best.append(max((spotter.scores(p).max(initial=0.0) for p in parts), default=0.0))
        detected = np.array(best)
        started = time.process_time()
        fa = np.array([spotter.scores_of(lp).max(initial=0.0) for lp in talk_posteriors])
        search_cpu += time.process_time() - started
        cells = [f"{pct(float((detected > t).mean()))}, {int((fa > t).sum()) / hours:.2f}" for t in thresholds]
        zero = float(fa.max(initial=0.0))
        print(f"| {phrase} | {' '.join(spotter.phones)} | {' | '.join(cells)} | "
              f"> {zero:.3f}: {pct(float((detected > zero).mean()))} |")
    print(f"CPU on the talk: the phone model {100 * posterior_cpu / audio_s:.2f} % of one core, the phrase search "
          f"{100 * search_cpu / len(spotters) / audio_s:.2f} % per phrase")


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

    peaks_ = np.array([scores(np.concatenate([PAD, c, PAD])).max(initial=0.0) for c in clips])
    started = time.process_time()
    track = scores(stream)
    cpu_s = time.process_time() - started
    hours = stream.size / RATE / 3600
    step_s = stream.size / RATE / max(1, track.size)
    print(f"\nopenWakeWord (pyopen-wakeword) alexa alone, {len(clips)} clips, {hours * 60:.0f} min of talk:")
    print("| threshold | detected | false accepts / hour |")
    print("|---|---|---|")
    for th in thresholds:
        print(f"| {th:g} | {pct(float((peaks_ > th).mean()))} | {events_over(track, th, step_s) / hours:.2f} |")
    print(f"CPU: {100 * cpu_s / (stream.size / RATE):.2f} % of one core")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (wakewords/, noise/ …)")
    parser.add_argument("--model", default="alexa", help="wake word model (default alexa: the clips say alexa)")
    parser.add_argument("--minutes", type=float, default=45.0, help="minutes of talk for false accepts (default 45)")
    parser.add_argument("--thresholds", default="0.5,0.7,0.8,0.95", help="thresholds besides the model's own")
    parser.add_argument("--phrases", action="store_true", help="also measure typed phrases (wake.phrase)")
    parser.add_argument("--phrase-clips", type=int, default=100, help="clips per phrase for it (default 100)")
    parser.add_argument("--openwakeword", action="store_true", help="also measure pyopen-wakeword's alexa model")
    parser.add_argument("--oww-minutes", type=float, default=10.0, help="minutes of talk for it (default 10)")
    parser.add_argument("--clips", type=int, default=0, help="use only the first N alexa clips (0: all)")
    parser.add_argument("--seed", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    vad = VadConfig()
    model = WakeWordModel(args.model)
    thresholds = sorted({model.model_threshold, *(float(t) for t in args.thresholds.split(","))})

    rows = [json.loads(line) for line in (args.data / "wakewords" / "transcripts.jsonl").read_text().splitlines()]
    clips = [read_audio(args.data / "wakewords" / r["file"]) for r in rows if r["text"] == "alexa"]
    clips = clips[: args.clips or None]
    noises = noise_files(args.data, "test")
    print(f"wake word {model.name!r} (model cutoff {model.model_threshold:g}); {len(clips)} real 'alexa' clips "
          f"({sum(c.size for c in clips) / RATE / 60:.1f} min); test noise: {len(noises)} recordings")

    cpu: dict[str, float] = {}
    detected: dict[str, np.ndarray] = {}
    missed_by_vad: dict[str, int] = {}
    for label, snr in (("clean", None), ("10 dB", 10.0), ("0 dB", 0.0)):
        best = []
        none = 0
        for clip in clips:
            audio = np.concatenate([PAD, clip, PAD])
            if snr is not None:
                audio = mix_at_snr(audio, noise_track(noises, audio.size, rng), snr)
            parts = segments(audio, vad, cpu)
            none += not parts
            best.append(peaks(model, parts, cpu).max(initial=0.0))
        detected[label] = np.array(best)
        missed_by_vad[label] = none

    stream, seconds = talk_stream(args.data, args.minutes, rng)
    hours = stream.size / RATE / 3600
    print(f"talk without the wake word: {hours * 60:.1f} min ("
          + ", ".join(f"{c} {s / 60:.1f} min" for c, s in seconds.items()) + ")")
    fa: dict[str, np.ndarray] = {}
    listen_cpu: dict[str, dict[str, float]] = {}
    talk_parts: dict[str, list[np.ndarray]] = {}
    noisy = mix_at_snr(stream, noise_track(noises, stream.size, rng), 10.0)
    for label, audio in (("clean", stream), ("10 dB", noisy)):
        listen_cpu[label] = {}
        parts = talk_parts[label] = segments(audio, vad, listen_cpu[label])
        fa[label] = peaks(model, parts, listen_cpu[label])
        listen_cpu[label]["segments"] = len(parts)
        listen_cpu[label]["speech_s"] = sum(p.size for p in parts) / RATE
    started = time.process_time()
    alone = model.scores(stream)
    alone_cpu = time.process_time() - started

    print("\nDetected (share of the clips) and false accepts per hour, wake stage behind the VAD:")
    print("| threshold | detected clean | 10 dB | 0 dB | false accepts / h clean | 10 dB | model alone, clean |")
    print("|---|---|---|---|---|---|---|")
    for th in thresholds:
        mark = " (model's own)" if th == model.model_threshold else ""
        d = [pct(float((detected[k] > th).mean())) for k in ("clean", "10 dB", "0 dB")]
        f = [f"{int((fa[k] > th).sum()) / hours:.2f}" for k in ("clean", "10 dB")]
        print(f"| {th:g}{mark} | {' | '.join(d)} | {' | '.join(f)} | "
              f"{events_over(alone, th, FEATURE_STEP_S) / hours:.2f} |")
    print("clips where the VAD found no speech segment: "
          + ", ".join(f"{k} {v}" for k, v in missed_by_vad.items()))
    print(f"false accepts counted over {hours:.2f} h; with none, the 95 % upper bound is {3 / hours:.1f} per hour")

    audio_s = stream.size / RATE
    print("\nCPU while listening to the talk stream (% of one core; process CPU time / audio time):")
    for label, c in listen_cpu.items():
        print(f"  {label}: VAD {100 * c['vad'] / audio_s:.2f} %, wake stage {100 * c['wake'] / audio_s:.2f} % "
              f"({int(c['segments'])} segments, {c['speech_s'] / audio_s:.0%} of the audio), "
              f"together {100 * (c['vad'] + c['wake']) / audio_s:.2f} %")
    print(f"  the model alone on every 10 ms of the stream (no VAD): {100 * alone_cpu / audio_s:.2f} %")

    if args.phrases:
        phrases(args.data, rows, talk_parts["clean"], hours, args.phrase_clips, [0.5, 0.6, PHRASE_THRESHOLD, 0.8], vad)
    if args.openwakeword:
        openwakeword(clips, stream[: int(args.oww_minutes * 60 * RATE)], thresholds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
