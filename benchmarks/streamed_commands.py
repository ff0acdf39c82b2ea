"""Commands in a room whose noise never stops, through the daemon's VAD stage, against the same clips decoded whole.

    .venv/bin/python benchmarks/streamed_commands.py --data ../shared/data --split validation [--snrs 12,6] [--quiet]
    .venv/bin/python benchmarks/streamed_commands.py --data ../shared/data --split validation --vad silence_ms=1200
    .venv/bin/python benchmarks/streamed_commands.py --data ../shared/data --split validation --where

``benchmarks/real_rooms.py`` decodes each command as a clip with 0.3 s of room on each side: it assumes the
VAD found the command's edges.  Here each command set's clips (the split's speakers, as in real_rooms.py) are
laid into one continuous stream of the split's noise recordings, 4-10 s apart, and the stream goes through
what ``vcd run`` does between the microphone and a command: the :class:`vcd.vad.Segmenter` with the
recogniser's completeness check (early endpointing) and the denoised view's audio, then the daemon's noise
gate, then the recogniser.  A command counts as *right* when a segment that overlaps it was accepted as its
sentence, *wrong* when one was accepted as another and none as its own; a segment accepted without
overlapping any command is a *false command*.  Each clip is also decoded whole, from the same mixed stream
(0.3 s each side), so the two columns differ only in who found the command's edges.

Levels: every clip's speech at the same level (its loudest 2 048-sample frame at RMS 0.1, -20 dBFS), the noise
in 30 s pieces each at RMS 0.1 / 10^(SNR/20), so SNR here is the speech's loudest frames against the noise's
mean power (real_rooms.py's against the noise's loudest frames: the same figure is a harder mix there).
``--quiet``: SNR 40 dB, a quiet room.  One thread, fixed seeds: a rerun prints the same figures.  ``--where``
also counts where each command not recognised through the VAD was lost (:func:`why_lost`): in no segment, only
in segments the noise gate dropped, across a cut at ``vad.max_speech_ms``, split by a pause, whole in one
segment (cut or closed on silence) that was rejected or heard as another sentence, or partly in one segment.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import read_audio  # noqa: E402
from vcd.audio_format import SAMPLE_RATE_HZ  # noqa: E402
from vcd.config import DENOISED_VIEWS, AudioConfig, VadConfig, parse_config  # noqa: E402
from vcd.daemon import noise_gate  # noqa: E402
from vcd.denoise import SegmentDenoiser  # noqa: E402
from vcd.errors import ConfigError  # noqa: E402
from vcd.grammar import spoken_words  # noqa: E402
from vcd.recognizer import Recognizer  # noqa: E402
from vcd.training.augment import loud_power  # noqa: E402
from vcd.training.corpora import data_folder  # noqa: E402
from vcd.training.heldout import PAD, Noises, command_sets  # noqa: E402
from vcd.vad import Segmenter, SpeechEnd  # noqa: E402

SPEECH_RMS = 0.1  # the loudest 2048-sample frame of every command: a voice a metre or two from the microphone
PIECE = 16000 * 30  # the noise changes recording every 30 s
QUIET_DB = 40.0


def vad_config(pairs: list[str]) -> VadConfig:
    """``[vad]`` with ``key=value`` overrides, each value read as TOML (bare text as a string) and checked as the
    config file's are (:func:`vcd.config.parse_config`)."""
    values = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            values[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            values[key] = value
    return parse_config({"vad": values}).vad


def stream_of(clips: list[np.ndarray], noises: Noises, snr_db: float, rng: np.random.Generator, gap_s=(4.0, 10.0)):
    """(the stream, each clip's (start, end) sample in it) at ``snr_db``."""
    spans, t = [], int(rng.uniform(*gap_s) * 16000)
    for x in clips:
        spans.append((t, t + x.size))
        t += x.size + int(rng.uniform(*gap_s) * 16000)
    noise = np.concatenate([noises.recording(PIECE) for _ in range(t // PIECE + 1)])[:t]
    level = SPEECH_RMS / 10 ** (snr_db / 20)
    for start in range(0, t, PIECE):
        piece = noise[start:start + PIECE]
        piece *= level / max(float(np.sqrt(np.mean(piece**2))), 1e-9)
    stream = noise.copy()
    for (a, b), x in zip(spans, clips):
        stream[a:b] += x * (SPEECH_RMS / np.sqrt(loud_power(x)))
    return np.clip(stream, -1, 1).astype(np.float32), spans


@dataclass(frozen=True)
class Segment:
    """A segment the daemon's VAD stage kept: samples ``start``-``end`` of the stream, whether the VAD cut it at
    ``vad.max_speech_ms``, and the sentence accepted ("": rejected; None: the noise gate dropped it)."""

    start: int
    end: int
    cut: bool
    text: str | None

    def over(self, a: int, b: int) -> bool:
        """Whether it overlaps samples ``a``-``b`` (a command)."""
        return self.start < b and self.end > a


def through_vad(recognizer: Recognizer, stream: np.ndarray, config: VadConfig) -> list[Segment]:
    """Each segment the daemon's VAD stage keeps, decoded as the daemon would decode it."""
    view = SegmentDenoiser(recognizer.view) if recognizer.view is not None else None
    segmenter = Segmenter(config, complete=recognizer.complete, denoiser=view)
    block = SAMPLE_RATE_HZ * AudioConfig().block_ms // 1000  # the daemon's blocks
    events = [e for start in range(0, stream.size, block) for e in segmenter.process(stream[start:start + block])]
    segments = []
    for end in events + segmenter.flush():
        if not isinstance(end, SpeechEnd) or not end.kept:
            continue
        span = (end.start_sample, end.start_sample + end.samples.size, end.cut)
        if noise_gate(end) is not None:
            segments.append(Segment(*span, None))
            continue
        known = {} if end.denoised is None else {"denoised": end.denoised}
        result = end.result if end.result is not None else recognizer.recognize(end.samples, **known)
        segments.append(Segment(*span, result.text if result.recognized else ""))
    return segments


LOSSES = ("in no segment", "only in gated segments", "across a cut", "split by a pause", "whole in a cut segment",
          "whole in a closed segment", "partly in one segment")


def why_lost(a: int, b: int, segments: list[Segment]) -> str:
    """Where a command at samples ``a``-``b`` that was not recognised went (one of :data:`LOSSES`)."""
    over = [s for s in segments if s.over(a, b)]
    decoded = [s for s in over if s.text is not None]
    if not over:
        return LOSSES[0]
    if not decoded:
        return LOSSES[1]
    if any(s.cut and a < s.end < b for s in over):
        return LOSSES[2]
    if len(over) > 1:
        return LOSSES[3]
    whole = over[0].start <= a and over[0].end >= b
    return (LOSSES[4] if over[0].cut else LOSSES[5]) if whole else LOSSES[6]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=data_folder, required=True)
    ap.add_argument("--split", choices=("validation", "test"), required=True)
    ap.add_argument("--snrs", default="12,6", help="dB, comma list (speech's loudest frames against the noise's mean)")
    ap.add_argument("--quiet", action="store_true", help=f"a quiet room instead: the noise {QUIET_DB:g} dB under")
    ap.add_argument("--limit", type=int, default=0, help="clips per command set (0: all)")
    ap.add_argument("--vad", action="append", default=[], metavar="KEY=VALUE", help="a [vad] setting (repeatable)")
    ap.add_argument("--denoised-view", choices=DENOISED_VIEWS, default=DENOISED_VIEWS[0])
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--dump", type=Path, help="also write one JSON line per command")
    ap.add_argument("--where", action="store_true", help="also count where the commands not recognised were lost")
    args = ap.parse_args()
    try:
        config = vad_config(args.vad)
    except ConfigError as exc:
        ap.error(f"--vad: {exc}")  # exit 2, one line
    snrs = [QUIET_DB] if args.quiet else [float(s) for s in args.snrs.split(",") if s.strip()]
    folder = Path(tempfile.mkdtemp())
    sets = command_sets(args.data, args.split, folder)
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None
    started = time.time()
    print(f"[vad] {', '.join(args.vad) or 'as shipped'}; {args.split} speakers and noise")
    print(f"{'SNR':>6}  {'set':18} {'clips':>5}  {'whole: right':>12} {'wrong':>6}  {'streamed: right':>15} {'wrong':>6}  "
          f"{'false':>5}  minutes")
    totals: dict[float, list[int]] = {}
    lost: dict[float, Counter] = {}
    noises = Noises(args.data, args.split, np.random.default_rng(0))
    for snr in snrs:
        noises.rng = np.random.default_rng(int(snr * 10) + 7)  # the gaps and the noise drawn from it, per SNR
        for name, grammar, clips in sets:
            if args.limit:
                clips = [clips[i] for i in sorted(np.random.default_rng(1).permutation(len(clips))[:args.limit])]
            recognizer = Recognizer.load(grammar, model=args.model, denoised_view=args.denoised_view)
            stream, spans = stream_of([read_audio(c.path) for c in clips], noises, snr, noises.rng)
            segments = through_vad(recognizer, stream, config)
            counts = [0, 0, 0, 0]  # whole right, whole wrong, streamed right, streamed wrong
            for (a, b), clip in zip(spans, clips):
                want = " ".join(spoken_words(clip.text))
                whole = recognizer.recognize(stream[max(0, a - PAD.size):b + PAD.size])
                heard = [s.text for s in segments if s.over(a, b) and s.text]
                streamed = want if want in heard else (heard[0] if heard else "")
                counts[0] += whole.recognized and whole.text == want
                counts[1] += whole.recognized and whole.text != want
                counts[2] += streamed == want
                counts[3] += bool(streamed) and streamed != want
                if streamed != want:
                    lost.setdefault(snr, Counter())[why_lost(a, b, segments)] += 1
                if dump is not None:
                    dump.write(json.dumps({"snr": snr, "set": name, "want": want, "whole": whole.text,
                                           "streamed": streamed, "segments": [(round((s.start - a) / 16000, 2),
                                           round((s.end - s.start) / 16000, 2), s.text, s.cut) for s in segments
                                           if s.over(a, b)]}) + "\n")
            false = sum(1 for s in segments if s.text and not any(s.over(a, b) for a, b in spans))
            n = len(clips)
            print(f"{snr:4g} dB  {name:18} {n:5}  {counts[0] / n * 100:12.1f} {counts[1] / n * 100:6.1f}  "
                  f"{counts[2] / n * 100:15.1f} {counts[3] / n * 100:6.1f}  {false:5}  {stream.size / 16000 / 60:.1f}",
                  flush=True)
            total = totals.setdefault(snr, [0, 0, 0, 0, 0, 0])
            for i, c in enumerate(counts + [false, n]):
                total[i] += c
    for snr, (wr, ww, sr, sw, false, n) in totals.items():
        print(f"{snr:4g} dB  {'all':18} {n:5}  {wr / n * 100:12.1f} {ww / n * 100:6.1f}  {sr / n * 100:15.1f} "
              f"{sw / n * 100:6.1f}  {false:5}")
    if args.where:
        print("\nwhere the commands not recognised through the VAD were lost (a cut: the VAD closed a segment at "
              "vad.max_speech_ms)")
        for snr, counter in lost.items():
            print(f"{snr:4g} dB  " + ", ".join(f"{why} {counter[why]}" for why in LOSSES))
    print(f"({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
