"""Audio sources: microphone, audio file, raw PCM on stdin and samples in memory, feeding one bounded block queue."""

from __future__ import annotations

import logging
import os
import queue
import select
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vcd.audio import AudioFile, StreamResampler  # noqa: F401 - StreamResampler: where the daemon takes it from
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.config import AudioConfig
from vcd.errors import AudioError

_LOGGER = logging.getLogger(__name__)

LOG_EVERY_S = 10.0  # overrun warnings: at most one per this many seconds
END = None  # put on the block queue after the last block of a finite source
RETRY_MIN_S = 1.0  # a missing microphone: first wait before looking again, seconds (doubles each try)
RETRY_MAX_S = 30.0  # … up to this, seconds
STALL_S = 3.0  # an open microphone that delivers nothing for this long is closed and opened again, seconds
CLOSE_WAIT_S = 2.0  # closing a microphone stream: give up after this long, seconds


@dataclass(frozen=True)
class RateChange:
    """On the block queue before the first block at another rate (a microphone opened again at its new rate)."""

    rate_hz: int


class BlockQueue:
    """Bounded queue of ``(frames[, channels])`` blocks (float32, or int16 from a microphone) at the source's rate.

    Live sources use :meth:`offer` (never blocks; overruns are counted and
    logged); finite sources use :meth:`put` (waits, so no audio is lost).
    """

    def __init__(self, maxsize: int) -> None:
        self._queue: queue.Queue[np.ndarray | RateChange | None] = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        self._next_log = 0.0
        now = time.monotonic()
        self.offered_at = now  # time.monotonic() when the source last delivered a block (kept or dropped)
        self.taken_at = now  # … and when the first stage last took one

    def offer(self, block: np.ndarray) -> bool:
        self.offered_at = time.monotonic()
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

    def put(self, block: np.ndarray | RateChange | None, stop: threading.Event) -> bool:
        """Wait for room; give up (False) when ``stop`` is set."""
        while not stop.is_set():
            try:
                self._queue.put(block, timeout=0.1)
                self.offered_at = time.monotonic()
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

    def get(self, timeout: float) -> np.ndarray | RateChange | None:
        """The next block, a :class:`RateChange` or :data:`END`; raises :class:`queue.Empty` after ``timeout`` seconds."""
        item = self._queue.get(timeout=timeout)
        self.taken_at = time.monotonic()
        return item

    def qsize(self) -> int:
        return self._queue.qsize()


class Source:
    """Base of the audio sources: ``start`` begins filling a :class:`BlockQueue`, ``stop`` ends it."""

    description = "audio"
    rate_hz = SAMPLE_RATE_HZ
    live = False  # True for the microphone: it never ends by itself

    @property
    def problem(self) -> str | None:
        """Why the source delivers no audio now (while it retries by itself), or None."""
        return None

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
    """A PortAudio input stream at the device's native rate and channels, kept open by a thread of its own.

    The callback runs on PortAudio's thread and only copies the block into
    the queue; conversion to 16 kHz mono happens on the VAD thread.  The
    thread ``vcd-mic`` opens the stream and watches it: a microphone that is
    missing (at start, or unplugged), whose stream stops, or that delivers no
    audio for :data:`STALL_S` is opened again after a back-off of
    :data:`RETRY_MIN_S` doubling to :data:`RETRY_MAX_S`, looked up again by
    name (a USB microphone plugged in later is found).  Each change (lost,
    back) is logged once; :attr:`problem` says what is wrong meanwhile.  When
    it comes back at another rate, a :class:`RateChange` goes on the queue
    before its first block.
    """

    live = True

    def __init__(self, config: AudioConfig, device: str | int) -> None:
        self.config = config
        self.wanted = device
        self._sd = _sounddevice()  # no PortAudio at all: an error now, retrying cannot help
        self.device: dict[str, Any] | None = None
        self.channels = 0  # chosen when the stream opens
        self.overflows = 0
        self._stream: Any = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._finished = threading.Event()  # PortAudio ended the stream (device gone, or our abort)
        self._thread: threading.Thread | None = None
        self._stuck: threading.Thread | None = None  # closing a stream that did not close in time
        self._last_block = 0.0  # time.monotonic() of the last callback
        self._problem: str | None = None  # what is wrong now (None: delivering)
        self._logged: str | None = None  # the problem last logged, without its retry delay
        self.description = f"microphone {device!r}" if device != "" else "the default microphone"
        try:
            self._look_up()  # the rate and name for the log before the daemon starts, if it is there
        except AudioError as exc:
            self._problem = str(exc)

    def _look_up(self) -> dict[str, Any]:
        self.device = find_device(self.wanted)
        self.rate_hz = self.device["rate_hz"]
        self.description = f"microphone {self.device['name']!r} (#{self.device['index']}, {self.rate_hz} Hz)"
        return self.device

    @property
    def problem(self) -> str | None:
        """What keeps the microphone from delivering audio now (missing, stalled, reopening), or None."""
        return self._problem

    def start(self, blocks: BlockQueue) -> None:
        self._thread = threading.Thread(target=self._guarded, args=(blocks,), name="vcd-mic", daemon=True)
        self._thread.start()

    def _guarded(self, blocks: BlockQueue) -> None:
        try:
            self._keep_open(blocks)
        except Exception as exc:  # a bug: reported by the daemon as the reason it stops
            _LOGGER.exception("%s: watching the microphone failed", self.description)
            self._error = exc
            blocks.end()
        finally:
            self._close()

    def _keep_open(self, blocks: BlockQueue) -> None:
        """Open the stream, watch it, and open it again (with back-off) whenever it fails, until stopped."""
        delay = RETRY_MIN_S
        refresh = False  # re-read the device list before the next look-up
        while not self._stop.is_set():
            try:
                if refresh:
                    self._refresh_devices()
                self._open(blocks)
            except AudioError as exc:
                self._report(str(exc), f"; trying again in {delay:.0f} s")
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, RETRY_MAX_S)
                refresh = True
                continue
            if self._logged is not None:
                _LOGGER.warning("%s is there now; listening", self.description)
            else:
                _LOGGER.debug("%s is open", self.description)
            self._problem = self._logged = None
            delay = RETRY_MIN_S
            lost = self._watch()
            self._close()
            if lost is None:
                return  # stopped
            self._report(lost, "; opening it again")
            self.device = None  # look it up again: it may come back under another index
            refresh = True

    def _report(self, problem: str, retry: str) -> None:
        """Set the current problem; log it when it differs from the one last logged."""
        self._problem = problem + retry
        if problem != self._logged:
            self._logged = problem
            _LOGGER.warning("%s%s", problem, retry)
        else:
            _LOGGER.debug("%s%s", problem, retry)

    def _watch(self) -> str | None:
        """Wait while the stream delivers; return why it stopped being usable, or None when asked to stop."""
        while not self._stop.wait(0.2):
            if self._finished.is_set():
                return f"{self.description}: the input stream stopped (device unplugged?)"
            idle = time.monotonic() - self._last_block
            if idle > STALL_S:
                return f"{self.description}: no audio for {idle:.0f} s"
        return None

    def _refresh_devices(self) -> None:
        """Re-initialise PortAudio so that devices plugged in since show up (only while no stream is open)."""
        if self._stuck is not None and self._stuck.is_alive():
            return  # terminating PortAudio would wait for the stream that does not close
        try:
            self._sd._terminate()
            self._sd._initialize()
        except self._sd.PortAudioError as exc:
            raise AudioError(f"{self.description}: cannot re-read the audio devices ({exc})") from None

    def _open(self, blocks: BlockQueue) -> None:
        """Look the device up (if needed) and start a stream on it; AudioError when that fails."""
        sd = self._sd
        expected_rate = self.rate_hz  # what the VAD thread converts from
        device = self.device or self._look_up()
        self._finished.clear()

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status.input_overflow:
                self.overflows += 1
            self._last_block = time.monotonic()
            blocks.offer(indata.copy())

        # One channel where the device (or ALSA's plug layer) can mix down itself; else the
        # fewest it takes.  Extra channels are averaged on the VAD thread.
        max_ch = device["channels"]
        last: Exception | None = None
        stream = None
        for channels in dict.fromkeys(c for c in (1, 2, max_ch) if c <= max_ch):
            try:
                stream = sd.InputStream(
                    device=device["index"],
                    samplerate=self.rate_hz,
                    channels=channels,
                    dtype="int16",  # what microphones deliver; converted on the VAD thread
                    blocksize=self.rate_hz * self.config.block_ms // 1000,
                    callback=callback,
                    finished_callback=self._finished.set,
                )
                self.channels = channels
                break
            except (sd.PortAudioError, ValueError) as exc:
                last = exc
        if stream is None:
            self.device = None
            raise AudioError(f"{self.description}: cannot open ({last})")
        self._stream = stream
        self.description = (
            f"microphone {device['name']!r} (#{device['index']}, {self.rate_hz} Hz, {self.channels} ch)"
        )
        if self.rate_hz != expected_rate and not blocks.put(RateChange(self.rate_hz), self._stop):
            return
        self._last_block = time.monotonic()
        try:
            stream.start()
        except sd.PortAudioError as exc:
            self._close()
            self.device = None
            raise AudioError(f"{self.description}: cannot start ({exc})") from None

    def _close(self) -> None:
        """Abort and close the stream, giving up after :data:`CLOSE_WAIT_S`.

        A stream whose device stopped answering can block PortAudio's abort
        indefinitely (its thread sits in a read); it is then left to a thread
        of its own, and PortAudio is not re-initialised while that thread lives.
        """
        stream, self._stream = self._stream, None
        if stream is None:
            return

        def close() -> None:
            try:
                stream.abort()
                stream.close()
            except Exception:
                _LOGGER.exception("closing %s failed", self.description)

        closer = threading.Thread(target=close, name="vcd-mic-close", daemon=True)
        closer.start()
        closer.join(CLOSE_WAIT_S)
        if closer.is_alive():
            _LOGGER.warning("%s: the stream does not close (the device does not answer); leaving it", self.description)
            self._stuck = closer

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        else:
            self._close()
        if self.overflows:
            _LOGGER.warning("%s reported %d input overflows", self.description, self.overflows)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


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
