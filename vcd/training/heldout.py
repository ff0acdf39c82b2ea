"""Held-out decodes: the fixed splits' commands (clean, in noise, in a room), non-command talk and noise.

What ``benchmarks/real_rooms.py`` reports (validation to choose, test once) and what
:func:`vcd.training.calibrate.fit_learned_rejection` fits a model's rejection rule on (validation only).
Speakers and noise come from the fixed splits of :mod:`vcd.training.corpora`.

1. *Commands*: each corpus's clips of the split's speakers decoded against a closed grammar of that
   corpus's distinct sentences in the split (a household's command list); for ``test`` also FSDD's
   digits.  Clean; clean through an 8 kHz telephone band (as FSDD's digits are, and phones and cheap
   microphones); mixed at each SNR (of the loudest 2048-sample frames) with the split's noise
   recordings or, a quarter of the time, babble of three other speakers of the split; and in a
   simulated room (RT60 0.3–0.8 s) before 12 dB noise.
2. *Talk*: the split's sentences the bundled smart-home grammar cannot say, clean and under 10 dB
   babble (for ``test`` also every fourth wake-word clip).
3. *Noise*: minutes of each noise stream through the daemon's VAD; every segment it keeps.  The
   streams (:data:`NOISE_STREAMS`): white noise; the split's noise recordings; coloured noise whose
   level steps; and the split's recordings changed (sped up or slowed, in a simulated room, two at
   once, or in bursts between quiet), so that a rule fitted on validation noise meets more kinds of it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from vcd.audio import RESAMPLE_QUALITY, SAMPLE_RATE_HZ, read_audio
from vcd.grammar import spoken_words
from vcd.recognizer import Recognizer
from vcd.training.augment import babble, coloured_noise, mix_at_snr
from vcd.training.calibrate import word_list_grammar
from vcd.training.corpora import noise_files, speaker_split
from vcd.transcripts import read_transcripts, words_of

COMMAND_CORPORA = ("speechocean762", "commonvoice", "vctk-sample", "an4-train", "speechcommands-v2")
TALK_CORPORA = ("commonvoice", "vctk-sample", "speechocean762")
PAD = np.zeros(4800, dtype=np.float32)  # 0.3 s of room around each clip: noise covers it too
NARROWBAND = "8 kHz"  # the clean condition through a telephone band
NOISE_STREAMS = ("white noise", "noise recordings", "coloured noise", "noise recordings, changed")
# Commands under noise that neither the rules' fit nor the other conditions mix them with: two of the
# streams, at 12 dB.  A measurement only (``Draw.unfamiliar``), never fitted on: with those streams
# left out of a rule's fit, it shows what the rule costs commands in noise it never met.
UNFAMILIAR = "12 dB, unfamiliar noise"
UNFAMILIAR_STREAMS = ("coloured noise", "noise recordings, changed")


@dataclass(frozen=True)
class Draw:
    """How much of the split is decoded, and the seed of the noise drawn for it."""

    snrs: tuple[float, ...] = (24.0, 18.0, 12.0, 6.0, 0.0)
    limit: int = 0  # clips per command set (0: all)
    noisy_limit: int = 0  # clips per command set also decoded under noise (0: all)
    talk_limit: int = 0  # clips of non-command talk (0: all)
    stream_min: float = 5.0  # minutes of each noise stream (0: none)
    seed: int = 28
    unfamiliar: bool = False  # also the UNFAMILIAR condition (its own random draws: the others stay as they are)

    @property
    def conditions(self) -> list[str]:
        return ["clean", NARROWBAND, *(f"{s:g} dB" for s in self.snrs), "room+12 dB"] + [UNFAMILIAR] * self.unfamiliar


class Noises:
    """The split's noise recordings and babble of the split's speakers, cut to length on demand."""

    def __init__(self, data: Path, split: str, rng: np.random.Generator) -> None:
        self.rng = rng
        source = "test" if split == "test" else "validation"
        named = [(p.name, read_audio(p)) for p in noise_files(data, source)]
        named = [(n, r) for n, r in named if np.any(r) and r.size > 8000]
        self.recordings = [r for _, r in named]
        self.names = [n for n, _ in named]
        self.last = ""  # what the latest noise was made of: a recording's file name, or "babble"
        self.talk: list[tuple[str, np.ndarray]] = []
        for corpus in (c for c in TALK_CORPORA if (data / c / "transcripts.jsonl").exists()):
            for u in read_transcripts(data / corpus):
                if u.text and speaker_split(corpus, u.speaker) == split:
                    self.talk.append((f"{corpus}/{u.speaker}", read_audio(u.path)))

    def can_make(self, stream: str) -> bool:
        """Whether :func:`noise_stream` can make ``stream`` here: those built of recordings need some."""
        return bool(self.recordings) or "recordings" not in stream

    def _stretch(self, src: np.ndarray, n: int) -> np.ndarray:
        src = np.tile(src, int(np.ceil(n / src.size)) + 1)
        start = int(self.rng.integers(src.size - n + 1))
        return src[start:start + n]

    def recording(self, n: int) -> np.ndarray:
        index = int(self.rng.integers(len(self.recordings)))
        self.last = self.names[index]
        return self._stretch(self.recordings[index], n)

    def babble(self, n: int, not_speaker: str, talkers: int = 3) -> np.ndarray:
        self.last = "babble"
        return babble([a for s, a in self.talk if s != not_speaker], n, talkers, self.rng)

    def any(self, n: int, speaker: str) -> np.ndarray:
        return self.babble(n, speaker) if self.rng.random() < 0.25 or not self.recordings else self.recording(n)


def narrowband(x: np.ndarray, rate_hz: int = 8000) -> np.ndarray:
    """``x`` through a ``rate_hz`` telephone band: down to that rate and back up (soxr)."""
    down = soxr.resample(x, SAMPLE_RATE_HZ, rate_hz, quality=RESAMPLE_QUALITY)
    up = soxr.resample(down, rate_hz, SAMPLE_RATE_HZ, quality=RESAMPLE_QUALITY)
    return np.pad(up, (0, max(0, x.size - up.size)))[:x.size].astype(np.float32)


def room(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from vcd.training.augment import _fft_conv, room_rirs

    rir = room_rirs(1, rng)[0]
    return _fft_conv(x, rir)


def command_sets(data: Path, split: str, folder: Path, digits: Path | None = None) -> list[tuple[str, Path, list]]:
    """(set name, grammar, clips) for every command set of ``split``; for ``test``, FSDD against ``digits``."""
    sets = []
    for corpus in COMMAND_CORPORA:
        if not (data / corpus / "transcripts.jsonl").exists():
            continue
        clips = [u for u in read_transcripts(data / corpus) if u.text and speaker_split(corpus, u.speaker) == split]
        if clips:
            grammar = word_list_grammar([" ".join(words_of(u.text)) for u in clips], folder, corpus)
            sets.append((corpus, grammar, clips))
    if split == "test" and digits is not None and (data / "fsdd-dev" / "transcripts.jsonl").exists():
        fsdd = read_transcripts(data / "fsdd-dev")
        for speaker in sorted({u.speaker for u in fsdd}):
            sets.append((f"fsdd {speaker}", digits, [u for u in fsdd if u.speaker == speaker]))
    return sets


def decodes(data: Path, split: str, folder: Path, load: dict, draw: Draw, digits: Path | None = None,
            progress: Callable[[str, int], None] | None = None) -> Iterator[tuple[dict, Recognizer, np.ndarray]]:
    """Every decode of the split, in a fixed order: (what it is, the recogniser to decode with, the audio).

    What it is: ``set`` (a command set, ``"talk"`` or ``"noise"``), ``condition``, ``speaker`` and,
    for commands, ``want`` (the words said) and, in noise, ``noise`` (the recording's file name,
    ``"babble"`` or the unfamiliar stream).  ``load`` are :meth:`Recognizer.load`'s keywords;
    ``folder`` holds the command sets' grammars; ``digits`` is FSDD's (test only).  ``progress(set,
    clips)`` follows each command set.
    """
    rng = np.random.default_rng(draw.seed)
    noises = Noises(data, split, rng)
    other = copy.copy(noises)  # the same recordings, drawn from with another generator
    other.rng = np.random.default_rng(draw.seed + 1)
    unfamiliar = [k for k in UNFAMILIAR_STREAMS if noises.can_make(k)]
    conditions = draw.conditions
    for name, grammar, clips in command_sets(data, split, folder, digits):
        recognizer = Recognizer.load(grammar, **load)
        if draw.limit:
            clips = [clips[i] for i in np.random.default_rng(1).permutation(len(clips))[:draw.limit]]
        noisy = set(np.random.default_rng(3).permutation(len(clips))[:draw.noisy_limit or len(clips)].tolist())
        for index, clip in enumerate(clips):
            speech = np.concatenate([PAD, read_audio(clip.path), PAD])
            speaker = f"{clip.corpus}/{clip.speaker}"
            for condition in conditions if index in noisy else conditions[:1]:
                noise = ""
                if condition == "clean":
                    audio = speech
                elif condition == NARROWBAND:
                    audio = narrowband(speech)
                elif condition.startswith("room"):
                    audio = mix_at_snr(room(speech, rng), noises.any(speech.size, speaker), 12.0)
                    noise = noises.last
                elif condition == UNFAMILIAR:
                    kind = unfamiliar[int(other.rng.integers(len(unfamiliar)))]
                    audio = mix_at_snr(speech, noise_stream(kind, other, speech.size, other.rng), 12.0)
                    noise = kind
                else:
                    audio = mix_at_snr(speech, noises.any(speech.size, speaker), float(condition.split()[0]))
                    noise = noises.last
                yield {"set": name, "condition": condition, "want": " ".join(spoken_words(clip.text)),
                       "speaker": speaker, **({"noise": noise} if noise else {})}, recognizer, audio
        if progress is not None:
            progress(name, len(clips))
    home = Recognizer.load(None, **load)
    for u in talk_clips(data, split, home, draw.talk_limit):
        speech = np.concatenate([PAD, read_audio(u.path), PAD])
        speaker = f"{u.corpus}/{u.speaker}"
        yield {"set": "talk", "condition": "clean", "speaker": speaker}, home, speech
        yield ({"set": "talk", "condition": "babble 10 dB", "speaker": speaker}, home,
               mix_at_snr(speech, noises.babble(speech.size, speaker), 10.0))
    if draw.stream_min > 0:
        yield from noise_segments(home, noises, draw.stream_min, rng)


def talk_clips(data: Path, split: str, home: Recognizer, limit: int = 0) -> list:
    """The split's sentences that ``home``'s grammar cannot say (for ``test`` also every fourth wake-word clip)."""
    talk = [u for corpus in ("commonvoice", "speechocean762", "vctk-sample", "an4-train")
            if (data / corpus / "transcripts.jsonl").exists()
            for u in read_transcripts(data / corpus)
            if u.text and speaker_split(corpus, u.speaker) == split
            and home.word_graph.parse(spoken_words(u.text)) is None]
    if split == "test" and (data / "wakewords" / "transcripts.jsonl").exists():
        talk += read_transcripts(data / "wakewords")[::4]
    if limit:
        talk = [talk[i] for i in sorted(np.random.default_rng(2).permutation(len(talk))[:limit])]
    return talk


def noise_segments(home: Recognizer, noises: Noises, minutes: float,
                   rng: np.random.Generator) -> Iterator[tuple[dict, Recognizer, np.ndarray]]:
    """Each of :data:`NOISE_STREAMS` through the default VAD: each segment it keeps."""
    from vcd.config import VadConfig
    from vcd.vad import Segmenter, SpeechEnd

    n = int(minutes * 60 * 16000)
    for kind in NOISE_STREAMS:
        if not noises.can_make(kind):
            continue
        audio = noise_stream(kind, noises, n, rng)
        segmenter, segments = Segmenter(VadConfig()), 0
        events = [e for start in range(0, audio.size, 16000) for e in segmenter.process(audio[start:start + 16000])]
        for event in events + segmenter.flush():
            if isinstance(event, SpeechEnd) and event.kept:
                segments += 1
                yield {"set": "noise", "condition": kind, "speaker": f"noise/{kind}/{segments}"}, home, event.samples


CHUNK = 16000 * 30  # the streams change every 30 s


def noise_stream(kind: str, noises: Noises, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of one of :data:`NOISE_STREAMS`."""
    chunks = int(np.ceil(n / CHUNK))
    if kind == "white noise":
        return (rng.standard_normal(n) * 0.05).astype(np.float32)
    if kind == "noise recordings":
        return np.concatenate([_peak(noises.recording(CHUNK), 0.3) for _ in range(chunks)])[:n]
    if kind == "coloured noise":  # white, pink or brown; its level steps every 0.5–4 s
        parts = []
        for _ in range(chunks):
            x = coloured_noise(CHUNK, rng)
            edges = np.cumsum(rng.uniform(0.5, 4.0, 40) * 16000).astype(int)
            levels = 10 ** rng.uniform(-2.5, -0.7, edges.size + 1)
            parts.append((x * levels[np.searchsorted(edges, np.arange(CHUNK), side="right")]).astype(np.float32))
        return np.concatenate(parts)[:n]
    if kind == "noise recordings, changed":
        return np.concatenate([_changed(noises, rng) for _ in range(chunks)])[:n]
    raise ValueError(f"unknown noise stream {kind!r}")


def _peak(x: np.ndarray, peak: float) -> np.ndarray:
    return (x / (np.abs(x).max() + 1e-9) * peak).astype(np.float32)


def _changed(noises: Noises, rng: np.random.Generator) -> np.ndarray:
    """30 s of the split's recordings, changed one way: speed, room, two at once, or bursts between quiet."""
    way = int(rng.integers(4))
    if way == 0:  # faster or slower (pitch with it), 0.7–1.4 ×
        speed = float(rng.uniform(0.7, 1.4))
        src = noises.recording(int(CHUNK * speed) + 1)
        x = np.interp(np.arange(CHUNK) * speed, np.arange(src.size), src)
    elif way == 1:
        x = room(noises.recording(CHUNK), rng)[:CHUNK]
    elif way == 2:
        x = _peak(noises.recording(CHUNK), 1.0) + _peak(noises.recording(CHUNK), float(rng.uniform(0.3, 1.0)))
    else:  # bursts of 0.2–1.5 s, 0.3–3 s apart, over a quiet floor
        x = 0.01 * _peak(noises.recording(CHUNK), 1.0)
        at = 0
        while at < CHUNK:
            at += int(rng.uniform(0.3, 3.0) * 16000)
            length = min(int(rng.uniform(0.2, 1.5) * 16000), CHUNK - at)
            if length > 0:
                x[at:at + length] += noises.recording(length)
            at += max(length, 0)
    return _peak(np.asarray(x, dtype=np.float32), float(rng.uniform(0.05, 0.5)))
