"""Local text to speech: espeak-ng (Debian's package, run as a program) or a Piper voice (``piper-tts``)."""

from __future__ import annotations

import importlib.util
import io
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, Protocol

import numpy as np

_LOGGER = logging.getLogger(__name__)

SPEAK_TIMEOUT_S = 30.0  # one answer's synthesis; espeak-ng takes ~50 ms for a sentence


class SpeechError(Exception):
    """Speech cannot be made: one line saying why."""


class Speaker(Protocol):
    name: str

    def problem(self) -> str | None:
        """Why this speaker cannot speak (not installed, no such voice), or None when it can."""

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """``text`` spoken: mono float32 samples and their rate; :class:`SpeechError` when it fails."""


class Espeak:
    """espeak-ng through its command line: the text on stdin (no shell), a WAV on stdout."""

    name = "espeak-ng"

    def __init__(self, voice: str, program: str | None = None) -> None:
        self.voice = voice
        self.program = program or shutil.which("espeak-ng")

    def problem(self) -> str | None:
        if self.program is None:
            return "espeak-ng is not installed (Debian: apt install espeak-ng)"
        try:
            self.synthesize("ok")
        except SpeechError as exc:
            return str(exc)
        return None

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        import soundfile

        if self.program is None:
            raise SpeechError("espeak-ng is not installed")
        command = [self.program, "-v", self.voice, "--stdout"]
        try:
            done = subprocess.run(command, input=text.encode("utf-8"), capture_output=True,
                                  timeout=SPEAK_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechError(f"espeak-ng failed: {exc}") from None
        if done.returncode != 0 or not done.stdout:
            why = done.stderr.decode("utf-8", "replace").strip().splitlines()
            why_line = why[-1].removeprefix("Error: ").rstrip(".") if why else f"exit status {done.returncode}"
            raise SpeechError(f"espeak-ng -v {self.voice}: {why_line}")
        try:
            audio, rate_hz = soundfile.read(io.BytesIO(done.stdout), dtype="float32", always_2d=True)
        except (RuntimeError, ValueError) as exc:
            raise SpeechError(f"espeak-ng wrote no readable WAV ({exc})") from None
        return audio.mean(axis=1), int(rate_hz)


class Piper:
    """A Piper voice (``piper-tts`` ≥ 1.3, a ``.onnx`` model with its ``.onnx.json`` beside it), loaded once."""

    name = "piper"

    def __init__(self, model: Path) -> None:
        self.model = model
        self._voice: Any = None

    def problem(self) -> str | None:
        if not self.model.is_file():
            return f"{self.model}: no such Piper voice file"
        config = Path(f"{self.model}.json")
        if not config.is_file():
            return f"{config}: the voice's config file is missing (Piper voices come as .onnx + .onnx.json)"
        if importlib.util.find_spec("piper") is None:
            return "piper-tts is not installed (pip install piper-tts)"
        return None

    def load(self) -> None:
        """Load the voice now (start-up), so that a broken file is reported before the first answer."""
        try:
            from piper import PiperVoice
        except ImportError as exc:  # a module "piper" that is not piper-tts's (PyPI's "piper" is another project)
            raise SpeechError(f"piper-tts is not installed (pip install piper-tts): {exc}") from None
        try:
            self._voice = PiperVoice.load(str(self.model))
        except Exception as exc:  # noqa: BLE001 - onnxruntime and json raise many types for a bad voice
            raise SpeechError(f"{self.model}: the Piper voice does not load ({type(exc).__name__}: {exc})") from None

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        if self._voice is None:
            self.load()
        try:
            chunks = [chunk.audio_float_array for chunk in self._voice.synthesize(text)]
        except Exception as exc:  # noqa: BLE001 - whatever the voice raises, the answer is not spoken
            raise SpeechError(f"piper failed: {type(exc).__name__}: {exc}") from None
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return np.asarray(audio, dtype=np.float32), int(self._voice.config.sample_rate)
