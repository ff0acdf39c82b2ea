"""Audio sources: microphone, audio file, raw PCM on stdin and samples in memory, feeding one bounded block queue."""

from __future__ import annotations

import logging
import os
import queue
import select
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vcd.audio import AudioFile, StreamResampler  # noqa: F401 - StreamResampler: where the daemon takes it from
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.config import AudioConfig
from vcd.errors import AudioError, VcdError

_LOGGER = logging.getLogger(__name__)

LOG_EVERY_S = 10.0  # overrun warnings: at most one per this many seconds
END = None  # put on the block queue after the last block of a finite source


class BlockQueue:
    """Bounded queue of ``(frames[, channels])`` blocks (float32, or int16 from a microphone) at the source's rate.

    Live sources use :meth:`offer` (never blocks; overruns are counted and
    logged); finite sources use :meth:`put` (waits, so no audio is lost).
    """

    def __init__(self, maxsize: int) -> None:
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        self._next_log = 0.0

    def offer(self, block: np.ndarray) -> bool:
        try:
            self._queue.put_nowait(block)
            return True
        except queue.Full:
            self.dropped += 1
            now = time.monotonic()
            if now >= self._next_log:  # at most one line per LOG_EVERY_S
                self._next_log = now + LOG_EVERY_S
                _LOGGER.warning(
                    "block queue full (the VAD/recogniser is not keeping up); %d blocks dropped so far",
                    self.dropped,
                )
            return False

    def put(self, block: np.ndarray | None, stop: threading.Event) -> bool:
        """Wait for room; give up (False) when ``stop`` is set."""
        while not stop.is_set():
            try:
                self._queue.put(block, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def end(self) -> None:
        """Put the end marker, discarding the oldest block if the queue is full."""
        while True:
            try:
                self._queue.put_nowait(END)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    def get(self, timeout: float) -> np.ndarray | None:
        """The next block or :data:`END`; raises :class:`queue.Empty` after ``timeout`` seconds."""
        return self._queue.get(timeout=timeout)

    def qsize(self) -> int:
        return self._queue.qsize()


class Source:
    """Base of the audio sources: ``start`` begins filling a :class:`BlockQueue`, ``stop`` ends it."""

    description = "audio"
    rate_hz = SAMPLE_RATE_HZ
    live = False  # True for the microphone: it never ends by itself

    def start(self, blocks: BlockQueue) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def is_alive(self) -> bool:
        raise NotImplementedError

    @property
    def error(self) -> BaseException | None:
        """The failure that ended the source early, if any."""
        return getattr(self, "_error", None)


class _ThreadSource(Source):
    """A source whose reading runs on its own thread (``vcd-source``)."""

    def __init__(self, config: AudioConfig) -> None:
        self.config = config
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, blocks: BlockQueue) -> None:
        self._thread = threading.Thread(target=self._guarded, args=(blocks,), name="vcd-source", daemon=True)
        self._thread.start()

    def _guarded(self, blocks: BlockQueue) -> None:
        try:
            self._run(blocks)
        except Exception as exc:  # reported by the daemon as the reason it stops
            _LOGGER.exception("reading %s failed", self.description)
            self._error = exc
        finally:
            blocks.end()

    def _run(self, blocks: BlockQueue) -> None:
        raise NotImplementedError

    def _pace(self, started: float, played_s: float) -> None:
        if self.config.realtime:
            delay = started + played_s - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=0.5)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class MemorySource(_ThreadSource):
    """Plays 16 kHz mono float32 samples held in memory once, as fast as possible or paced at real time."""

    def __init__(self, config: AudioConfig, samples: np.ndarray, description: str = "audio in memory") -> None:
        super().__init__(config)
        self.description = description
        self._samples = samples

    def _run(self, blocks: BlockQueue) -> None:
        block = SAMPLE_RATE_HZ * self.config.block_ms // 1000
        started = time.monotonic()
        for offset in range(0, len(self._samples), block):
            if not blocks.put(self._samples[offset : offset + block], self._stop):
                return
            self._pace(started, (offset + block) / SAMPLE_RATE_HZ)
        _LOGGER.info("end of %s (%.1f s of audio)", self.description, len(self._samples) / SAMPLE_RATE_HZ)


class FileSource(_ThreadSource):
    """Plays an audio file (WAV/FLAC/OGG) once, read in blocks and converted to 16 kHz as it plays.

    The file is opened (and its header checked) at start-up, so a missing or unusable file is an
    :class:`AudioError` before READY; memory stays bounded at any length.
    """

    def __init__(self, config: AudioConfig, path: Path) -> None:
        super().__init__(config)
        self.path = path
        self.description = f"file {path}"
        self._file = AudioFile(path)  # AudioError naming the file, before READY
        if self._file.duration_s == 0:
            self._file.close()
            raise AudioError(f"{path}: the audio file holds no samples")

    def _run(self, blocks: BlockQueue) -> None:
        started = time.monotonic()
        played = 0
        with self._file:
            for block in self._file.blocks(self.config.block_ms / 1000):
                if not blocks.put(block, self._stop):
                    return
                played += len(block)
                self._pace(started, played / SAMPLE_RATE_HZ)
        _LOGGER.info("end of %s (%.1f s of audio)", self.description, played / SAMPLE_RATE_HZ)


class StdinSource(_ThreadSource):
    """Reads raw signed 16-bit little-endian PCM (``audio.input_rate_hz``, ``audio.channels``) until EOF."""

    def __init__(self, config: AudioConfig, stream: BinaryIO | None = None) -> None:
        super().__init__(config)
        self.rate_hz = config.input_rate_hz
        self.description = f"stdin (s16le, {config.input_rate_hz} Hz, {config.channels} ch)"
        self._fd = (stream or sys.stdin.buffer).fileno()

    def _run(self, blocks: BlockQueue) -> None:
        frame_bytes = 2 * self.config.channels
        want = self.rate_hz * self.config.block_ms // 1000 * frame_bytes
        buffer = b""
        started = time.monotonic()
        played = 0
        eof = False
        while not eof and not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(self._fd, want - len(buffer))
            eof = not chunk
            buffer += chunk
            if len(buffer) >= want or (eof and len(buffer) >= frame_bytes):
                usable = len(buffer) // frame_bytes * frame_bytes
                pcm = np.frombuffer(buffer[:usable], dtype="<i2").reshape(-1, self.config.channels)
                buffer = buffer[usable:]
                if not blocks.put(pcm.astype(np.float32) / 32768.0, self._stop):
                    return
                played += len(pcm)
                self._pace(started, played / self.rate_hz)
        if eof:
            _LOGGER.info("end of stdin (%.1f s of audio)", played / self.rate_hz)


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # PortAudio library missing
        raise AudioError(f"microphone: PortAudio is not available ({exc})") from None
    return sounddevice


def input_devices() -> list[dict[str, Any]]:
    """Every PortAudio device with input channels: index, name, channels, default rate, is default."""
    sd = _sounddevice()
    try:
        default = sd.default.device[0]
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise AudioError(f"microphone: cannot list audio devices ({exc})") from None
    result = []
    for index, dev in enumerate(devices):
        if dev["max_input_channels"] > 0:
            result.append(
                {
                    "index": index,
                    "name": dev["name"],
                    "channels": dev["max_input_channels"],
                    "rate_hz": int(dev["default_samplerate"]),
                    "default": index == default,
                }
            )
    return result


def find_device(device: str | int) -> dict[str, Any]:
    """The input device for ``audio.device``: "" = default, an index, an exact name or a unique name substring."""
    devices = input_devices()
    if not devices:
        raise AudioError("microphone: no audio input devices found")
    if device == "":
        matches = [d for d in devices if d["default"]] or devices[:1]
    elif isinstance(device, int) or device.isdigit():
        matches = [d for d in devices if d["index"] == int(device)]
    else:
        matches = [d for d in devices if d["name"] == device] or [
            d for d in devices if device.lower() in d["name"].lower()
        ]
    if not matches:
        raise AudioError(f"microphone: no input device matches {device!r} (see `vcd devices`)")
    if len(matches) > 1:
        names = ", ".join(repr(d["name"]) for d in matches)
        raise AudioError(f"microphone: {device!r} matches several input devices: {names}")
    return matches[0]


class MicSource(Source):
    """A PortAudio input stream at the device's native rate and channels.

    The callback runs on PortAudio's thread and only copies the block into
    the queue; conversion to 16 kHz mono happens on the VAD thread.
    """

    live = True

    def __init__(self, config: AudioConfig, device: str | int) -> None:
        self.config = config
        self.device = find_device(device)
        self.rate_hz = self.device["rate_hz"]
        self.channels = 0  # chosen when the stream opens
        self.description = f"microphone {self.device['name']!r} (#{self.device['index']}, {self.rate_hz} Hz)"
        self.overflows = 0
        self._stream: Any = None
        self._error: BaseException | None = None
        self._stopping = False

    def start(self, blocks: BlockQueue) -> None:
        sd = _sounddevice()

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status.input_overflow:
                self.overflows += 1
            blocks.offer(indata.copy())

        def finished() -> None:
            if not self._stopping:
                self._error = VcdError(f"{self.description}: the input stream stopped unexpectedly")
            blocks.end()

        # One channel where the device (or ALSA's plug layer) can mix down itself; else the
        # fewest it takes.  Extra channels are averaged on the VAD thread.
        max_ch = self.device["channels"]
        last: Exception | None = None
        for channels in dict.fromkeys(c for c in (1, 2, max_ch) if c <= max_ch):
            try:
                self._stream = sd.InputStream(
                    device=self.device["index"],
                    samplerate=self.rate_hz,
                    channels=channels,
                    dtype="int16",  # what microphones deliver; converted on the VAD thread
                    blocksize=self.rate_hz * self.config.block_ms // 1000,
                    callback=callback,
                    finished_callback=finished,
                )
                self.channels = channels
                break
            except sd.PortAudioError as exc:
                last = exc
        else:
            raise AudioError(f"{self.description}: cannot open ({last})")
        self.description = (
            f"microphone {self.device['name']!r} (#{self.device['index']}, {self.rate_hz} Hz, {self.channels} ch)"
        )
        try:
            self._stream.start()
        except sd.PortAudioError as exc:
            raise AudioError(f"{self.description}: cannot start ({exc})") from None

    def stop(self) -> None:
        self._stopping = True
        if self._stream is not None:
            try:
                self._stream.abort()
                self._stream.close()
            except Exception:
                _LOGGER.exception("closing %s failed", self.description)
        if self.overflows:
            _LOGGER.warning("%s reported %d input overflows", self.description, self.overflows)

    def is_alive(self) -> bool:
        return self._stream is not None and self._stream.active


class NoSource(Source):
    """``audio.source = "none"``: no local audio; the daemon runs until stopped (a hub that only hears satellites)."""

    description = "no local audio"
    live = True

    def __init__(self) -> None:
        self._stopped = threading.Event()

    def start(self, blocks: BlockQueue) -> None:
        self._stopped.clear()

    def stop(self) -> None:
        self._stopped.set()

    def is_alive(self) -> bool:
        return not self._stopped.is_set()


def open_source(config: AudioConfig) -> Source:
    """The source ``[audio]`` asks for (files are read, devices looked up, nothing started yet)."""
    if config.source == "none":
        return NoSource()
    if config.source == "file":
        assert config.file is not None  # checked by the config
        return FileSource(config, config.file)
    if config.source == "stdin":
        return StdinSource(config)
    return MicSource(config, config.device)
