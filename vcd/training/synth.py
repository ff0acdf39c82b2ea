"""Synthetic training speech: random sentences spoken by every free TTS voice installed here."""

from __future__ import annotations

import logging
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile

from vcd.audio import to_mono_16k

_LOGGER = logging.getLogger(__name__)

ESPEAK_LANGS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
                "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = (
    "adam Alex Alicia Andrea Andy Annie antonio aunty belinda benjamin boris caleb david Denis Diogo ed "
    "edward edward2 Gene Gene2 gustave announcer Henrique Hugo iven iven2 iven3 iven4 Jacky john kaukovalta "
    "Lee linda marcelo Marco Mario max Michael michel miguel Mike Mr Nguyen pablo paul pedro quincy "
    "RicishayMax rob robert steph steph2 steph3 Storm zac anika AnxiousAndy f2 f3 f4 f5 grandpa klatt "
    "klatt2 klatt3 klatt4 m2 m3 m4 m5 m6 m7 norbert sandro shelby travis victor m8 f1 m1 grandma"
).split()
# Voices never used in training: the held-out synthetic speakers of the rejection benchmark.
HELD_OUT_ESPEAK_VARIANTS = ("Annie", "Mike", "f4", "m5", "travis", "victor")
FLITE_VOICES = ("kal16", "awb", "slt", "rms")
HELD_OUT_FLITE_VOICES = ("rms",)
FESTIVAL_VOICES = ("voice_kal_diphone", "voice_cmu_us_slt_arctic_hts")


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: engine plus its settings."""

    engine: str  # espeak-ng | flite | festival
    name: str
    rate_wpm: int = 160
    pitch: int = 50

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.name}"


def available_voices(held_out: bool, rng: random.Random) -> list[Voice]:
    """Every installed voice of the free engines, training or held-out set."""
    voices: list[Voice] = []
    if shutil.which("espeak-ng"):
        variants = HELD_OUT_ESPEAK_VARIANTS if held_out else [v for v in ESPEAK_VARIANTS if v not in HELD_OUT_ESPEAK_VARIANTS]
        for variant in variants:
            lang = "en-us" if held_out else rng.choice(ESPEAK_LANGS)
            voices.append(Voice("espeak-ng", f"{lang}+{variant}", rng.randint(125, 185), rng.randint(25, 75)))
    if shutil.which("flite"):
        names = HELD_OUT_FLITE_VOICES if held_out else [v for v in FLITE_VOICES if v not in HELD_OUT_FLITE_VOICES]
        voices += [Voice("flite", n) for n in names]
    if shutil.which("text2wave") and not held_out:
        voices += [Voice("festival", n) for n in FESTIVAL_VOICES]
    return voices


def speak(voice: Voice, text: str) -> np.ndarray | None:
    """Synthesise ``text`` with ``voice`` → 16 kHz mono float32 (None on failure)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        if voice.engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", voice.name, "-s", str(voice.rate_wpm), "-p", str(voice.pitch), "-w", tmp.name, text]
            stdin = None
        elif voice.engine == "flite":
            cmd = ["flite", "-voice", voice.name, "-t", text, "-o", tmp.name]
            stdin = None
        else:
            cmd = ["text2wave", "-eval", f"({voice.name})", "-o", tmp.name]
            stdin = text
        try:
            subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=True)
            samples, rate = soundfile.read(tmp.name, dtype="float32", always_2d=True)
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            _LOGGER.warning("%s failed on %r: %s", voice.label, text, exc)
            return None
    if samples.shape[0] < 800:
        return None
    return to_mono_16k(samples, rate)
