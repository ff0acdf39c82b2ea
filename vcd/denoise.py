"""Denoisers of 16 kHz speech: RNNoise (through ``pyrnnoise``, resampled with ``soxr``), the front end a model
may be trained with; and WebRTC's noise suppressor (through rhasspy's ``webrtc-noise-gain``), the default
denoised view's (``recognizer.denoised_view``)."""

from __future__ import annotations

import ctypes
import importlib.util
import logging
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np

from vcd.audio import heard_before
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.config import DENOISED_VIEWS
from vcd.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

FRONT_ENDS = ("rnnoise", "none")
WEBRTC_LEVEL = 3  # webrtc-noise-gain's suppression level (0-4) for the view: chosen on validation from 2, 3, 4
_WEBRTC_FRAME = 160  # it takes 10 ms frames of 16 kHz int16
_RNNOISE_RATE_HZ = 48000  # RNNoise works on 10 ms frames of 48 kHz audio
_INT16_SCALE = 32767.0  # RNNoise expects samples on the int16 scale


@lru_cache(maxsize=1)
def _rnnoise_binding() -> ModuleType:
    """pyrnnoise's ctypes binding of the librnnoise it ships (its ``rnnoise`` module), loaded on its own.

    ``import pyrnnoise`` runs the package's ``__init__``, which imports its file tools' audiolab,
    PyAV and tqdm: tens of MB of memory and start-up for nothing the daemon uses.
    """
    spec = importlib.util.find_spec("pyrnnoise")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'pyrnnoise'")
    path = Path(list(spec.submodule_search_locations)[0]) / "rnnoise.py"
    binding = importlib.util.spec_from_file_location("vcd._rnnoise", path)
    if binding is None or binding.loader is None:
        raise ImportError(f"{path}: not loadable")
    module = importlib.util.module_from_spec(binding)
    binding.loader.exec_module(module)
    return module


class RNNoise:
    """RNNoise at 16 kHz: upsampled to 48 kHz (soxr), denoised in 10 ms frames, downsampled again.

    Calling it denoises a whole clip from a fresh state, so a clip is denoised the same way
    wherever it comes from (``vcd transcribe``/``eval``, a training clip); :meth:`stream` gives
    a stateful denoiser for an endless stream, which the daemon runs ahead of the VAD so that
    after a command ends only the model is left to run.  The first 10–20 ms of a state are
    denoised less while it adapts.
    """

    name = "rnnoise"

    def __init__(self) -> None:
        try:
            self._lib = _rnnoise_binding()
        except (ImportError, OSError) as exc:  # the wheel ships librnnoise; a broken install lands here
            raise ConfigError(f"recognizer.front_end: rnnoise needs the pyrnnoise package, pip install "
                              f"'vcd[denoise]' ({exc})") from None

    def stream(self) -> "RNNoiseStream":
        """A denoiser for one continuous stream of 16 kHz blocks."""
        return RNNoiseStream(self._lib)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Denoise a whole 16 kHz mono float32 clip; the result has the same length."""
        return _whole_clip(self.stream(), samples)


def _whole_clip(stream, samples: np.ndarray) -> np.ndarray:
    """A whole clip through a fresh ``stream`` (:class:`RNNoiseStream`, :class:`WebRtcStream`), flushed, and fitted
    to the clip's length."""
    samples = np.asarray(samples, dtype=np.float32)
    out = np.concatenate([stream.process(samples), stream.flush()])
    fitted = np.zeros(samples.size, dtype=np.float32)
    fitted[: min(out.size, samples.size)] = out[: samples.size]
    return fitted


class RNNoiseStream:
    """One RNNoise state with its two streaming resamplers; blocks of any length in, the same audio out.

    What comes out of :meth:`process` lags what went in by under a frame (10 ms) and the
    resamplers' delay; :meth:`flush` returns the rest at the end of the stream.
    """

    def __init__(self, lib) -> None:
        import soxr

        self._lib = lib
        self._frame = int(lib.FRAME_SIZE)
        self._up = soxr.ResampleStream(SAMPLE_RATE_HZ, _RNNOISE_RATE_HZ, 1, dtype="float32", quality="HQ")
        self._down = soxr.ResampleStream(_RNNOISE_RATE_HZ, SAMPLE_RATE_HZ, 1, dtype="float32", quality="HQ")
        self._pending = np.zeros(0, dtype=np.float32)  # 48 kHz samples short of a whole frame
        self._buffer = np.empty(self._frame, dtype=np.float32)
        self._pointer = self._buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        self._state = lib.create()

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Denoise the next 16 kHz block; returns the denoised audio that is ready (16 kHz float32)."""
        up = self._up.resample_chunk(np.asarray(samples, dtype=np.float32), last=last)
        audio = np.concatenate([self._pending, up * _INT16_SCALE])
        n = self._frame
        whole = audio.size // n * n
        if last and whole < audio.size:  # the last part frame, padded with silence
            audio = np.concatenate([audio, np.zeros(n - (audio.size - whole), np.float32)])
            whole = audio.size
        out = np.empty(whole, dtype=np.float32)
        for start in range(0, whole, n):
            self._buffer[:] = audio[start : start + n]
            self._lib.lib.rnnoise_process_frame(self._state, self._pointer, self._pointer)
            out[start : start + n] = self._buffer
        self._pending = audio[whole:]
        down = self._down.resample_chunk(out / _INT16_SCALE, last=last)
        return np.clip(down, -1.0, 1.0).astype(np.float32)

    def flush(self) -> np.ndarray:
        """The audio still inside the denoiser and resamplers, at the end of the stream."""
        return self.process(np.zeros(0, dtype=np.float32), last=True)

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state is not None:
            self._lib.destroy(state)


class WebRtcNoise:
    """WebRTC's noise suppressor (``webrtc-noise-gain``, by rhasspy: what wyoming-satellite runs) on 16 kHz audio,
    10 ms at a time, automatic gain off; about 3 ms of CPU per second of audio here (RNNoise: 88).  Calling it
    denoises a whole clip from a fresh state; :meth:`stream` gives a stateful one, whose output, block by
    block, is the whole clip's, frame for frame."""

    name = "webrtc"

    def __init__(self, level: int = WEBRTC_LEVEL) -> None:
        try:
            from webrtc_noise_gain import AudioProcessor
        except (ImportError, OSError) as exc:
            raise ConfigError(f"recognizer.denoised_view: webrtc needs the webrtc-noise-gain package ({exc}); "
                              f"or set it to \"off\"") from None
        self._make = lambda: AudioProcessor(0, level)

    def stream(self) -> "WebRtcStream":
        return WebRtcStream(self._make())

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Denoise a whole 16 kHz mono float32 clip; the result has the same length."""
        return _whole_clip(self.stream(), samples)


class WebRtcStream:
    """One WebRTC noise suppressor's state: blocks of any length in, the denoised whole 10 ms frames out;
    :meth:`flush` pads the last part frame with silence."""

    def __init__(self, processor) -> None:
        self._processor = processor
        self._pending = np.zeros(0, dtype=np.int16)

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        pcm = (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * _INT16_SCALE).astype(np.int16)
        pcm = np.concatenate([self._pending, pcm])
        if last and pcm.size % _WEBRTC_FRAME:
            pcm = np.concatenate([pcm, np.zeros(_WEBRTC_FRAME - pcm.size % _WEBRTC_FRAME, np.int16)])
        whole = pcm.size // _WEBRTC_FRAME * _WEBRTC_FRAME
        out = [np.frombuffer(self._processor.Process10ms(pcm[k : k + _WEBRTC_FRAME].tobytes()).audio, np.int16)
               for k in range(0, whole, _WEBRTC_FRAME)]
        self._pending = pcm[whole:]
        return (np.concatenate(out) if out else np.zeros(0, np.int16)).astype(np.float32) / _INT16_SCALE

    def flush(self) -> np.ndarray:
        return self.process(np.zeros(0, dtype=np.float32), last=True)


def make_view(name: str) -> RNNoise | WebRtcNoise | None:
    """The denoiser ``recognizer.denoised_view`` names (one of :data:`vcd.config.DENOISED_VIEWS`); None for
    ``"off"``."""
    if name == "off":
        return None
    if name == "webrtc":
        return WebRtcNoise()
    if name == "rnnoise":
        try:
            return RNNoise()
        except ConfigError:
            raise ConfigError("recognizer.denoised_view: rnnoise needs the pyrnnoise package, "
                              "VCD_EXTRAS=denoise scripts/install.sh or pip install 'vcd[denoise]'") from None
    raise ConfigError(f"recognizer.denoised_view: must be one of {', '.join(DENOISED_VIEWS)} (got {name!r})")


class SegmentDenoiser:
    """A denoiser (:class:`RNNoise`, :class:`WebRtcNoise`) over one growing segment at a time, from a fresh state:
    what it gives the whole segment, computed as the segment grows.

    A call whose segment begins with the previous call's goes on from where that one stopped, so asking
    after each block of a segment, as the daemon's VAD thread does (``recognizer.denoised_view``), costs only
    the new audio, and a segment's end leaves at most the stream's flush.  A segment that is the start of
    what was heard (trailing silence trimmed) is cut from what is ready; one that does not begin with it
    starts a fresh state.  Not thread-safe: one thread owns each instance.
    """

    def __init__(self, denoiser: RNNoise | WebRtcNoise) -> None:
        self._denoiser = denoiser
        self._reset()

    def _reset(self) -> None:
        self._stream: RNNoiseStream | WebRtcStream | None = self._denoiser.stream()
        self._seen = np.zeros(0, dtype=np.float32)  # the segment fed so far
        self._out = np.zeros(0, dtype=np.float32)  # its denoised audio that is ready

    def feed(self, samples: np.ndarray) -> None:
        """Denoise what is new in ``samples``, the segment so far."""
        samples = np.asarray(samples, dtype=np.float32)
        done = heard_before(self._seen, samples)
        if done is None:
            return  # what was heard, or less of it
        if self._stream is None or done < self._seen.size:
            self._reset()  # another segment, or this one grew after its stream was flushed
            done = 0
        assert self._stream is not None
        self._out = np.concatenate([self._out, self._stream.process(samples[done:])])
        self._seen = samples.copy()

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """The denoised ``samples`` (same length): the segment so far, or a start of it."""
        samples = np.asarray(samples, dtype=np.float32)
        self.feed(samples)
        if self._out.size < samples.size:  # the last few ms are still inside the denoiser: the segment has ended
            assert self._stream is not None
            self._out = np.concatenate([self._out, self._stream.flush()])
            self._stream = None
        fitted = np.zeros(samples.size, dtype=np.float32)
        ready = min(self._out.size, samples.size)
        fitted[:ready] = self._out[:ready]
        return fitted


def make_front_end(name: str, model_extra: dict | None = None) -> RNNoise | None:
    """The front end called ``name`` (one of :data:`FRONT_ENDS`, or ``"auto"``); None for ``"none"``.

    ``"auto"`` is the one the model was trained with: ``front_end`` in its ``model_extra``, else none.
    """
    if name == "auto":
        name = str((model_extra or {}).get("front_end", "none"))
    if name == "none":
        return None
    if name == "rnnoise":
        return RNNoise()
    raise ConfigError(f"recognizer.front_end: must be one of {', '.join(FRONT_ENDS)} (got {name!r})")
