"""Reading audio files and converting any rate or channel count to 16 kHz mono float32."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.errors import AudioError

_LOGGER = logging.getLogger(__name__)

MIN_RATE_HZ = 8000  # the lowest sample rate that holds speech (telephone band); a file below it is refused
MAX_RATE_HZ = 384000  # the highest a sound card records at; a header above it is refused
MAX_CHANNELS = 32  # a header claiming more is refused
READ_SAMPLES = 1 << 18  # samples (frames × channels) read from a file at a time: 1 MiB of float32
RESAMPLE_QUALITY = "HQ"  # soxr's high quality: flat to 0.91 × Nyquist, 144 dB stop band


def _mono(samples: np.ndarray) -> np.ndarray:
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32)


def to_mono_16k(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """Return ``samples`` (frames[, channels]) as float32 mono at 16 kHz.

    Channels are averaged; the rate is converted with soxr (band-limited, high quality).
    """
    audio = _mono(samples)
    if rate_hz != SAMPLE_RATE_HZ and audio.size:
        audio = soxr.resample(audio, int(rate_hz), SAMPLE_RATE_HZ, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(audio, dtype=np.float32)


class StreamResampler:
    """Converts consecutive blocks at ``rate_hz`` (any channels, float32 or int16 PCM) to 16 kHz mono without seams.

    soxr's streaming resampler: the output lags the input by the filter's delay, and
    :meth:`flush` returns the rest at the end of the stream.
    """

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = int(rate_hz)
        self._stream = None
        if self.rate_hz != SAMPLE_RATE_HZ:
            self._stream = soxr.ResampleStream(self.rate_hz, SAMPLE_RATE_HZ, 1, dtype="float32",
                                               quality=RESAMPLE_QUALITY)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Convert the next block; returns the 16 kHz samples ready so far."""
        mono = block.astype(np.float32) / 32768.0 if block.dtype == np.int16 else block
        mono = _mono(mono)
        if self._stream is None:
            return mono
        return self._stream.resample_chunk(mono)

    def flush(self) -> np.ndarray:
        """The samples still inside the resampler, at the end of the stream."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def _unreadable(path: Path, exc: BaseException) -> AudioError:
    detail = str(exc).split(":")[-1].strip() or type(exc).__name__
    return AudioError(f"{path}: not a readable audio file ({detail})")


class AudioFile:
    """An audio file read in blocks and converted to 16 kHz mono as it is read: memory stays bounded at any length.

    Opening checks what the header says: a rate outside :data:`MIN_RATE_HZ`–:data:`MAX_RATE_HZ`
    (a header that lies, which would make a few megabytes into hours of audio) is refused with
    :class:`AudioError` naming the file, as are a missing or unreadable file.  Use it as a
    context manager.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            found = self.path.is_file()
        except (OSError, ValueError):  # a name too long, a NUL byte
            found = False
        if not found:
            raise AudioError(f"{self.path}: no such file")
        try:
            self._file = soundfile.SoundFile(str(self.path))
        except FileNotFoundError:
            raise AudioError(f"{self.path}: no such file") from None
        except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
            raise _unreadable(self.path, exc) from None
        self.rate_hz = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        if not MIN_RATE_HZ <= self.rate_hz <= MAX_RATE_HZ:
            self._file.close()
            raise AudioError(f"{self.path}: its header gives a sample rate of {self.rate_hz} Hz; vcd reads "
                             f"{MIN_RATE_HZ}–{MAX_RATE_HZ} Hz")
        if not 1 <= self.channels <= MAX_CHANNELS:
            self._file.close()
            raise AudioError(f"{self.path}: its header gives {self.channels} channels; vcd reads 1–{MAX_CHANNELS}")

    @property
    def duration_s(self) -> float:
        """The length the header gives (a damaged file may hold less)."""
        return self._file.frames / self.rate_hz

    def blocks(self, block_s: float = 1.0) -> Iterator[np.ndarray]:
        """16 kHz mono float32 blocks of about ``block_s`` seconds (the last ones shorter), to the end of the file.

        A file that turns out damaged part-way raises :class:`AudioError` naming it.
        """
        frames = max(1, min(int(block_s * self.rate_hz), READ_SAMPLES // self.channels))
        resampler = StreamResampler(self.rate_hz)
        try:
            while True:
                block = self._file.read(frames, dtype="float32", always_2d=True)
                if not len(block):
                    break
                if not np.isfinite(block).all():
                    raise AudioError(f"{self.path}: the audio file holds samples that are not numbers (NaN or infinity)")
                out = resampler.process(block)
                if out.size:
                    yield out
        except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
            raise _unreadable(self.path, exc) from None
        rest = resampler.flush()
        if rest.size:
            yield rest

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "AudioFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_audio(path: str | Path) -> np.ndarray:
    """Read a WAV/FLAC/OGG/Opus file into 16 kHz mono float32 in [-1, 1] (whole: for clips; see :class:`AudioFile`).

    Raises :class:`AudioError` naming the file when it is missing, corrupt,
    holds no samples, or its header gives an impossible sample rate.
    """
    with AudioFile(path) as audio:
        blocks = list(audio.blocks())
    if not blocks:
        raise AudioError(f"{Path(path)}: the audio file holds no samples")
    return np.concatenate(blocks)


QUIET_MARGIN_S = 0.3  # quiet audio the model expects around speech (training pads 0.05–0.5 s)
QUIET_BELOW_DB = -30.0  # a 10 ms frame this far under the clip's loud (95th-percentile) frames is quiet,
QUIET_NEAR_FLOOR_DB = 15.0  # and so is one within this of its floor (10th percentile): a noisy room's level
_DIGITAL_SILENCE = 1e-5  # frame RMS (-100 dBFS) below which a frame is digital silence
_TOP_UP_MIN_S = 0.05  # an end short of its margin by less than this is left as it is


def heard_before(seen: np.ndarray, samples: np.ndarray) -> int | None:
    """How much of ``samples`` (a segment so far) a consumer that goes on where it stopped has handled, given
    ``seen``, what it was fed last: None when ``samples`` is ``seen`` or a start of it (nothing new),
    ``seen.size`` when ``samples`` begins with ``seen``, and less (0) when it is another segment.  The check
    of :class:`vcd.presence.SpeechPresence` and :class:`vcd.denoise.SegmentDenoiser`."""
    n = seen.size
    if samples.size <= n and np.array_equal(samples, seen[: samples.size]):
        return None
    return n if np.array_equal(samples[:n], seen) else 0


def with_quiet_margins(samples: np.ndarray, margin_s: float = QUIET_MARGIN_S) -> np.ndarray:
    """Return 16 kHz ``samples`` with silence added so speech has ``margin_s`` of quiet at each end.

    A recording trimmed to its first and last sound (as a sound editor or
    another tool's voice detection leaves it) starts straight on a phone,
    which the CTC model, trained with quiet around every utterance, often
    misses.  Each end is measured in 10 ms frames: a frame is quiet when it is
    30 dB under the clip's loud frames or within 15 dB of its floor, and zeros
    make up what is missing of ``margin_s``.  The floor rule keeps a noisy
    room's audio as it is: zeros beside noise are something the model never
    heard, and cost it more than a missing margin.  An end short by under
    50 ms, and audio that already has its margins (the daemon's segments keep
    ``vad.preroll_ms``), are left alone.
    """
    frame = SAMPLE_RATE_HZ // 100
    n = samples.size // frame
    if n < 2:
        return samples
    rms = np.sqrt(np.mean(np.square(samples[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    sounding = rms[rms > _DIGITAL_SILENCE]  # the floor is the room's, not that of silence already added
    floor = float(np.percentile(sounding, 10)) if sounding.size else 0.0
    quiet_below = max(float(np.percentile(rms, 95)) * 10.0 ** (QUIET_BELOW_DB / 20.0),
                      floor * 10.0 ** (QUIET_NEAR_FLOOR_DB / 20.0))
    loud = np.flatnonzero(rms > quiet_below)
    if loud.size == 0:
        return samples
    want, least = int(round(margin_s * SAMPLE_RATE_HZ)), int(_TOP_UP_MIN_S * SAMPLE_RATE_HZ)
    before = max(0, want - int(loud[0]) * frame)
    after = max(0, want - (samples.size - (int(loud[-1]) + 1) * frame))
    before, after = (before if before >= least else 0), (after if after >= least else 0)
    if not before and not after:
        return samples
    return np.concatenate([np.zeros(before, np.float32), samples, np.zeros(after, np.float32)])


SNR_CHUNK = 512  # 32 ms at 16 kHz
SNR_LOUD_SHARE = 0.1  # the loudest tenth of a segment's chunks: its speech
SNR_FLOOR_SHARE = 0.2  # the quietest fifth: the room's noise between and around the words
SNR_RANGE_DB = (-10.0, 40.0)
# Below this estimated SNR a rejection rule may grow stricter (its ``snr_shortfall`` feature): chosen on the
# validation speakers and noise among 10, 15, 20, 25 and 30 dB (docs/training-log.md, "Stop 44").
SNR_KNEE_DB = 20.0


def estimate_snr_db(samples: np.ndarray) -> float:
    """A blind estimate of how far a segment's speech stands above the room's noise, in dB.

    The mean power of the segment's loudest tenth of 32 ms chunks (less the floor) against that of its
    quietest fifth (the noise between and around the words), clipped to -10 … 40 dB: about 40 in a
    quiet room, near 0 in a kitchen as loud as the voice.  A segment under five chunks gets NaN.  As
    the mixing of the real-rooms benchmark, it compares loud frames, so figures are comparable to its
    conditions' SNRs (not equal: its noise floor is the noise's quiet chunks, not its loud ones).
    """
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.size // SNR_CHUNK
    if n < 5:
        return float("nan")
    power = np.sort(np.mean(np.square(samples[: n * SNR_CHUNK].reshape(n, SNR_CHUNK)), axis=1))
    floor = float(np.mean(power[: max(1, int(round(n * SNR_FLOOR_SHARE)))]))
    loud = float(np.mean(power[n - max(1, int(round(n * SNR_LOUD_SHARE))):]))
    low, high = SNR_RANGE_DB
    if floor <= 0.0:
        return high
    return float(np.clip(10.0 * np.log10(max(loud - floor, 1e-20) / floor), low, high))


def snr_shortfall_db(snr_db: float) -> float:
    """How many dB an estimated SNR falls short of :data:`SNR_KNEE_DB` (0 above it; NaN for no estimate)."""
    return max(0.0, SNR_KNEE_DB - snr_db) if np.isfinite(snr_db) else float("nan")
