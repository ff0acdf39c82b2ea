"""The denoising front end: RNNoise (through ``pyrnnoise``) on 16 kHz speech before the features."""

from __future__ import annotations

import ctypes
import logging

import numpy as np

from vcd.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

FRONT_ENDS = ("rnnoise", "none")
_RNNOISE_RATE_HZ = 48000  # RNNoise works on 10 ms frames of 48 kHz audio
_INT16_SCALE = 32767.0  # RNNoise expects samples on the int16 scale


class RNNoise:
    """RNNoise over whole 16 kHz clips: upsampled to 48 kHz, denoised frame by frame, downsampled.

    Each call starts from a fresh RNNoise state, so a clip is denoised the same way wherever it
    comes from (a file for ``vcd transcribe``/``eval``, a daemon segment, a training clip).  The
    first 10–20 ms are denoised less while the state adapts; the quiet margins the recogniser
    adds and the daemon's pre-roll lie there.
    """

    name = "rnnoise"

    def __init__(self) -> None:
        try:
            from pyrnnoise import rnnoise
        except (ImportError, OSError) as exc:  # the wheel ships librnnoise; a broken install lands here
            raise ConfigError(f"recognizer.front_end: rnnoise needs the pyrnnoise package ({exc})") from None
        self._lib = rnnoise
        self._frame = int(rnnoise.FRAME_SIZE)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Denoise 16 kHz mono float32 ``samples``; the result has the same length."""
        from vcd.audio import resample

        samples = np.asarray(samples, dtype=np.float32)
        if samples.size == 0:
            return samples
        up = resample(samples, 16000, _RNNOISE_RATE_HZ) * _INT16_SCALE
        n = self._frame
        padded = np.zeros(-(-up.size // n) * n, dtype=np.float32)
        padded[: up.size] = up
        frame = np.empty(n, dtype=np.float32)
        pointer = frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        state = self._lib.create()
        try:
            for start in range(0, padded.size, n):
                frame[:] = padded[start : start + n]
                self._lib.lib.rnnoise_process_frame(state, pointer, pointer)
                padded[start : start + n] = frame
        finally:
            self._lib.destroy(state)
        down = resample(padded[: up.size] / _INT16_SCALE, _RNNOISE_RATE_HZ, 16000)
        out = np.zeros(samples.size, dtype=np.float32)
        out[: min(out.size, down.size)] = down[: out.size]
        return np.clip(out, -1.0, 1.0)


def make_front_end(name: str) -> RNNoise | None:
    """The front end called ``name`` (one of :data:`FRONT_ENDS`); None for ``"none"``."""
    if name == "none":
        return None
    if name == "rnnoise":
        return RNNoise()
    raise ConfigError(f"recognizer.front_end: must be one of {', '.join(FRONT_ENDS)} (got {name!r})")
