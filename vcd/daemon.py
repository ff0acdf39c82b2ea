"""The daemon: pipeline threads (source → VAD → recogniser → plugins), signals, shutdown, systemd notify."""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcd.config import Config
from vcd.errors import ExitCode, VcdError
from vcd.plugins import PluginHost, load_plugins
from vcd.sources import END, BlockQueue, Source, StreamResampler, open_source
from vcd.vad import Segmenter, SpeechEnd, SpeechStart

_LOGGER = logging.getLogger(__name__)

SEGMENT_QUEUE = 4  # speech segments waiting for the recogniser
STOP_JOIN_S = 0.5  # how long a stop (signal) waits for the pipeline threads
END_JOIN_S = 120.0  # how long end of input waits for queued segments to be decoded
DRAIN_STOP_S = 0.3  # plugins: time to deliver queued events after a signal
DRAIN_END_S = 10.0  # plugins: time to deliver queued events at end of input
MAX_ASR_FAILURES = 3  # recogniser failures in a row that stop the daemon


class _Notifier:
    """systemd sd_notify messages (no-ops when not started by systemd)."""

    def __init__(self) -> None:
        self._notifier: Any = None
        if os.environ.get("NOTIFY_SOCKET"):
            try:
                import sdnotify

                self._notifier = sdnotify.SystemdNotifier()
                if self._notifier.socket is not None:
                    self._notifier.socket.setblocking(False)  # never stall the daemon on a full socket
            except ImportError:
                _LOGGER.warning("daemon: sdnotify is not installed; systemd will not be notified")
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_s = usec / 2e6 if usec and (not pid or pid == str(os.getpid())) else 0.0

    def notify(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))


@dataclass
class _Segment:
    samples: np.ndarray
    speech_end: float  # time.time() when the segment closed


class Daemon:
    """Runs the pipeline until a signal, the end of a finite input, or a failure."""

    def __init__(
        self, config: Config, recognizer: Any, plugins: PluginHost, source: Source, stopper: Stopper | None = None
    ) -> None:
        self.config = config
        self.site = config.daemon.site
        self.recognizer = recognizer
        self.plugins = plugins
        self.source = source
        self.stopper = stopper or Stopper()
        self.stop = self.stopper.event  # set by signals: stop now, discard unfinished work
        self._blocks = BlockQueue(config.audio.queue_blocks)
        self._segments: queue.Queue[_Segment | None] = queue.Queue(maxsize=SEGMENT_QUEUE)
        self._failure: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self.counts = {"segments": 0, "intents": 0, "unrecognized": 0}

    # --- pipeline threads ---

    def _vad_loop(self) -> None:
        source = self.source.description
        resampler = StreamResampler(self.source.rate_hz)
        segmenter = Segmenter(self.config.vad)
        try:
            while not self.stop.is_set():
                try:
                    block = self._blocks.get(timeout=0.2)
                except queue.Empty:
                    continue
                if block is END:
                    if self.stop.is_set():
                        break
                    events = segmenter.process(resampler.flush()) + segmenter.flush()
                    self._handle_vad(events, source)
                    _LOGGER.debug("vad: end of %s", source)
                    break
                self._handle_vad(segmenter.process(resampler.process(block)), source)
        except Exception as exc:
            _LOGGER.exception("vad: failed while segmenting %s", source)
            self._fail(exc)
        finally:
            self._put_segment(None)

    def _handle_vad(self, events: list[SpeechStart | SpeechEnd], source: str) -> None:
        for event in events:
            if isinstance(event, SpeechStart):
                _LOGGER.debug("vad: speech started in %s", source)
                self.plugins.dispatch("vcd_speech_started", site=self.site, timestamp=event.timestamp)
                continue
            self.plugins.dispatch(
                "vcd_speech_ended", site=self.site, timestamp=event.timestamp, audio_s=round(event.audio_s, 3)
            )
            if event.kept:
                _LOGGER.debug("vad: %.2f s segment from %s goes to the recogniser", event.audio_s, source)
                self._put_segment(_Segment(event.samples, event.timestamp))

    def _put_segment(self, segment: _Segment | None) -> None:
        while True:
            try:
                self._segments.put(segment, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    if segment is None:  # make room for the end marker
                        try:
                            self._segments.get_nowait()
                        except queue.Empty:
                            pass
                        continue
                    return

    def _asr_loop(self) -> None:
        failures = 0  # in a row: one odd segment is skipped, a broken recogniser stops the daemon
        while True:
            segment = self._segments.get()
            if segment is None or self.stop.is_set():
                return
            try:
                self._recognize(segment)
                failures = 0
            except Exception as exc:
                failures += 1
                _LOGGER.exception(
                    "asr: recogniser failed on a %.2f s segment (%d in a row)", len(segment.samples) / 16000, failures
                )
                if failures >= MAX_ASR_FAILURES:
                    self._fail(exc)
                    return

    def _recognize(self, segment: _Segment) -> None:
        result = self.recognizer.recognize(segment.samples)
        recognized_at = time.time()
        self.counts["segments"] += 1
        confidence = round(float(result.confidence), 4)
        audio_s = round(float(result.audio_s or len(segment.samples) / 16000), 3)
        decode_ms = round(float(result.decode_ms), 1)
        text = result.text if result.recognized else (result.best_text or result.text or "")
        self.plugins.dispatch(
            "vcd_transcript", site=self.site, text=text, confidence=confidence, audio_s=audio_s, decode_ms=decode_ms
        )
        if result.recognized:
            self.counts["intents"] += 1
            _LOGGER.info(
                "asr: intent %s %s from %r (confidence %.2f, %.2f s audio, %.0f ms)",
                result.intent,
                result.slots,
                result.text,
                confidence,
                audio_s,
                decode_ms,
            )
            timings = {
                "audio_s": audio_s,
                "decode_ms": decode_ms,
                "speech_end": segment.speech_end,
                "recognized_at": recognized_at,
            }
            self.plugins.dispatch(
                "vcd_intent",
                site=self.site,
                intent=result.intent,
                slots=dict(result.slots),
                text=result.text,
                confidence=confidence,
                timings=timings,
            )
        else:
            self.counts["unrecognized"] += 1
            _LOGGER.info(
                "asr: not a command: best guess %r (confidence %.2f, %.2f s audio, %.0f ms)",
                text,
                confidence,
                audio_s,
                decode_ms,
            )
            self.plugins.dispatch(
                "vcd_unrecognized", site=self.site, text=text, confidence=confidence, audio_s=audio_s
            )

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self.stopper.request(f"error: {exc}")

    # --- control ---

    def _pipeline_alive(self) -> bool:
        source_ok = not self.source.live or self.source.is_alive()
        return source_ok and all(t.is_alive() for t in self._threads) and self.plugins.workers_alive()

    def run(self, notifier: _Notifier | None = None) -> int:
        """Start the threads and the source, wait for the end, shut down in order; returns the exit code."""
        notifier = notifier or _Notifier()
        for name, target in (("vcd-vad", self._vad_loop), ("vcd-asr", self._asr_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        try:
            self.source.start(self._blocks)
        except VcdError as exc:
            self._fail(exc)
            return self._shutdown(notifier, self.stopper.reason, ended=False)
        _LOGGER.info("daemon: listening on %s (site %r)", self.source.description, self.site)
        notifier.notify("READY=1", f"STATUS=Listening on {self.source.description}")
        next_ping = 0.0
        next_status = time.monotonic() + 60
        while not self.stop.is_set():
            asr = self._threads[1]
            if not asr.is_alive():
                break  # end of input fully decoded, or a failure (recorded)
            self.stop.wait(0.2)
            now = time.monotonic()
            self.plugins.check_stuck()
            if notifier.watchdog_s and now >= next_ping and self._pipeline_alive():
                notifier.notify("WATCHDOG=1")
                next_ping = now + notifier.watchdog_s
            if now >= next_status:
                notifier.notify(f"STATUS=Listening on {self.source.description}; {self._summary()}")
                next_status = now + 60
        ended = not self.stop.is_set() and self._failure is None
        if self.source.error is not None:
            self._fail(self.source.error)
        reason = self.stopper.reason or ("end of input" if ended else "stopped")
        return self._shutdown(notifier, reason, ended)

    def _summary(self) -> str:
        c = self.counts
        dropped = f", {self._blocks.dropped} audio blocks dropped" if self._blocks.dropped else ""
        return f"{c['segments']} segments, {c['intents']} commands, {c['unrecognized']} not understood{dropped}"

    def _shutdown(self, notifier: _Notifier, reason: str, ended: bool) -> int:
        _LOGGER.info("daemon: stopping (%s)", reason)
        notifier.notify("STOPPING=1", f"STATUS=Stopping: {reason}")
        self.source.stop()
        self._blocks.end()
        deadline = time.monotonic() + (END_JOIN_S if ended else STOP_JOIN_S)
        for thread in self._threads:
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(timeout=0.1)
                if ended and self.stop.is_set():  # a signal while finishing the input: hurry up
                    ended = False
                    deadline = min(deadline, time.monotonic() + STOP_JOIN_S)
            if thread.is_alive():
                _LOGGER.warning("daemon: thread %s did not finish in time; leaving it", thread.name)
        self.plugins.drain(DRAIN_END_S if ended else DRAIN_STOP_S)
        self.plugins.shutdown(reason)
        _LOGGER.info("daemon: stopped (%s)", self._summary())
        if self._failure is not None:
            if isinstance(self._failure, VcdError):
                raise self._failure
            raise VcdError(f"stopped after a failure: {type(self._failure).__name__}: {self._failure}")
        return ExitCode.OK


class Stopper:
    """The stop event and its reason; SIGTERM/SIGINT only set it (a second SIGINT exits at once)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        self.event.set()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set() and signum == signal.SIGINT:
            sys.stderr.write("vcd: second interrupt, exiting now\n")
            sys.stderr.flush()
            os._exit(130)
        _LOGGER.info("daemon: received %s", name)
        self.request(f"signal {name}")


def load_recognizer(config: Config) -> Any:
    """Load the recogniser the ``[recognizer]`` section names (GrammarError/ModelError propagate)."""
    from vcd.recognizer import Recognizer

    rec = config.recognizer
    return Recognizer.load(
        sentences=rec.sentences, model=rec.model, min_confidence=rec.min_confidence, threads=rec.threads,
        front_end=rec.front_end,
    )


def run_daemon(config: Config) -> int:
    """``vcd run``: load plugins, start them, load the model, open the audio, run until stopped."""
    notifier = _Notifier()
    stopper = Stopper()
    stopper.install()
    try:
        notifier.notify("STATUS=Loading plugins")
        plugins = load_plugins(config)
        _LOGGER.info("daemon: plugins %s", ", ".join(f"{p.name} ({p.source})" for p in plugins.loaded) or "none")
        plugins.startup(config)
        try:
            source = open_source(config.audio)  # reads a file / finds the device; starts nothing
            notifier.notify("STATUS=Loading the recogniser")
            started = time.monotonic()
            recognizer = load_recognizer(config)
            _LOGGER.info("daemon: recogniser loaded in %.1f s", time.monotonic() - started)
        except BaseException as exc:
            plugins.shutdown(f"error: {exc}")
            raise
        if stopper.event.is_set():
            _LOGGER.info("daemon: stopping before start (%s)", stopper.reason)
            notifier.notify("STOPPING=1")
            plugins.shutdown(stopper.reason)
            return ExitCode.OK
        plugins.start_workers()
        return Daemon(config, recognizer, plugins, source, stopper).run(notifier)
    finally:
        stopper.uninstall()
