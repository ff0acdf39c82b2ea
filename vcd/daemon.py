"""The daemon: pipeline threads (source → VAD → recogniser → plugins), signals, shutdown, systemd notify."""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.config import Config
from vcd.controls import Controls
from vcd.denoise import SegmentDenoiser
from vcd.errors import ConfigError, ExitCode, GrammarError, ModelError, VcdError, one_line
from vcd.keeper import ClipKeeper
from vcd.notify import Notifier
from vcd.plugins import PluginHost, load_plugins
from vcd.presence import SpeechPresence
from vcd.sources import END, BlockQueue, RateChange, Source, StreamResampler, open_source
from vcd.stopper import Stopper
from vcd.vad import Segmenter, SpeechEnd, SpeechStart
from vcd.wake import WakeGate

_LOGGER = logging.getLogger(__name__)

SEGMENT_QUEUE = 4  # items waiting for a stage after the first (speech segments for the recogniser)
STOP_JOIN_S = 0.5  # how long a stop (signal) waits for the pipeline threads
END_JOIN_S = 120.0  # how long end of input waits for queued segments to be decoded
DRAIN_STOP_S = 0.3  # plugins: time to deliver queued events after a signal
DRAIN_END_S = 10.0  # plugins: time to deliver queued events at end of input
MAX_ASR_FAILURES = 3  # recogniser failures in a row that stop the daemon
HEALTH_EVERY_S = 1.0  # how often the daemon checks that it is working (audio, threads, plugins' vcd_health)
AUDIO_STALL_S = 3.0  # no audio block for this long while the source runs: not working
STATUS_EVERY_S = 60.0  # the STATUS= summary while all is well
STEADY_VOICED_SHARE = 0.98  # a segment cut at vad.max_speech_ms this voiced throughout is steady noise


def noise_gate(end: SpeechEnd) -> str | None:
    """Why a VAD segment is noise, not a command, from what the VAD knows; None: decode it.

    A segment that the VAD had to cut at ``vad.max_speech_ms`` and whose frames
    it called speech almost without a break (:data:`STEADY_VOICED_SHARE`) is a
    steady sound — a fan, a tap, a vacuum cleaner, white noise — not a spoken
    command, which has pauses and ends.  Skipping it also spares the
    recogniser decoding 8 s of noise every 8 s.  (Sound that the model cannot
    fit to a sentence is rejected by the recogniser itself: ``fit_floor``.)
    """
    if end.cut and end.voiced_share >= STEADY_VOICED_SHARE:
        return (f"{end.audio_s:.1f} s of unbroken sound ({end.voiced_share:.0%} voiced) cut at vad.max_speech_ms: "
                "steady noise, not a command")
    return None


@dataclass
class _Segment:
    samples: np.ndarray
    speech_end: float  # time.time() when the segment closed
    result: Any = None  # the recognition, when the VAD closed the segment early on a complete command
    speech: float | None = None  # its speech presence, measured by the VAD stage as it grew (vcd.presence)
    denoised: np.ndarray | None = None  # it denoised by the VAD stage as it grew (recognizer.denoised_view)
    site: str | None = None  # heard elsewhere (a satellite's site); None: this hub's microphone
    done: Callable[[], None] | None = None  # called once: decoded (before its hooks), skipped or failed

    def settle(self) -> None:
        """Call ``done`` if it has not been called yet."""
        done, self.done = self.done, None
        if done is not None:
            done()

    def __str__(self) -> str:
        where = f" from site {self.site!r}" if self.site else ""
        return f"a {len(self.samples) / SAMPLE_RATE_HZ:.2f} s segment{where}"


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline, on its own thread ``vcd-NAME`` between two queues.

    ``step`` takes one item from the stage's inbox and returns the items for
    the next stage (calling plugin hooks on the way is fine); ``finish``
    returns what the stage still holds at the end of the input.  An exception
    is logged with the item and the item skipped; ``max_failures`` in a row
    stop the daemon.  The first stage reads the source's block queue; each
    later one a queue of ``inbox_size`` items.
    """

    name: str
    step: Callable[[Any], list[Any]]
    finish: Callable[[], list[Any]] = list
    max_failures: int = 1
    inbox_size: int = SEGMENT_QUEUE

    @property
    def thread_name(self) -> str:
        return f"vcd-{self.name}"


class Daemon:
    """Runs the pipeline until a signal, the end of a finite input, or a failure."""

    def __init__(
        self, config: Config, recognizer: Any, plugins: PluginHost, source: Source, stopper: Stopper | None = None,
        controls: Controls | None = None, lists_version: int = 0,
    ) -> None:
        self.config = config
        self.controls = controls or Controls()  # what plugins change at run time (list values, pauses)
        self._lists_version = lists_version  # the version of the list values the recogniser was compiled with
        self._next_grammar: Any = None  # compiled by vcd-grammar, put to use by the asr stage between segments
        self._grammar_lock = threading.Lock()
        self.site = config.daemon.site
        self.recognizer = recognizer
        self.plugins = plugins
        self.source = source
        self.stopper = stopper or Stopper()
        self._stopping = self.stopper.event  # set by stop() and signals: stop now, discard unfinished work
        self._blocks = BlockQueue(config.audio.queue_blocks)
        self._failure: BaseException | None = None
        self.counts = {"segments": 0, "intents": 0, "unrecognized": 0}
        self._resampler = StreamResampler(source.rate_hz)  # the first stage's state: to 16 kHz
        front_end = getattr(recognizer, "front_end", None)
        self._denoiser = front_end.stream() if front_end is not None else None  # the denoise stage's state
        # the recogniser is not thread-safe: the VAD's completeness check and the recogniser stage take turns
        self._recognizer_lock = threading.Lock()
        # a recogniser without a completeness check (a test double) is endpointed by silence alone
        complete = self._complete if hasattr(recognizer, "complete") else None
        # the VAD stage's own speech presence, when the recogniser's rule weighs it: measured as each segment
        # grows, so that a segment's end leaves only the model and the search to run
        presence = SpeechPresence() if getattr(recognizer, "presence", None) is not None else None
        # the same for the denoised view's audio (recognizer.denoised_view): a segment's end leaves only its decode
        view = getattr(recognizer, "view", None)
        denoiser = SegmentDenoiser(view) if view is not None else None
        self._segmenter = Segmenter(config.vad, complete=complete, presence=presence, denoiser=denoiser)
        # vcd's phone model in the wake gate (a typed phrase, verify = "phone") is the recogniser's own
        acoustic = (recognizer.model, recognizer.confidence_scale) if hasattr(recognizer, "confidence_scale") else None
        self._wake = WakeGate.from_config(config, acoustic) if config.wake.enabled else None
        self.stages = self._pipeline()
        # stage i reads inboxes[i] and writes inboxes[i + 1]; the last stage's results go to the plugins only
        self._inboxes: list[BlockQueue | queue.Queue[Any]] = [self._blocks]
        self._inboxes += [queue.Queue(maxsize=stage.inbox_size) for stage in self.stages[1:]]
        self._threads: dict[str, threading.Thread] = {}  # by stage name
        adapt = config.adapt
        self.keeper = ClipKeeper(adapt.folder, adapt.min_confidence, adapt.max_clips) if adapt.keep_clips else None
        self.controls.attach_segment_sink(self._take_segment)  # segments plugins bring (satellites)

    def _take_segment(
        self, samples: np.ndarray, site: str, speech_end: float, done: Callable[[], None] | None, timeout_s: float,
        speech: float | None = None,
    ) -> bool:
        """A segment from a plugin (any thread) → the recogniser's inbox; False when it stayed full or stopping."""
        inbox = self._inboxes[[stage.name for stage in self.stages].index("asr")]
        try:
            if self._stopping.is_set():
                return False
            inbox.put(_Segment(samples, speech_end, site=site, done=done, speech=speech), timeout=timeout_s)
            return True
        except queue.Full:
            return False

    def _pipeline(self) -> list[Stage]:
        """The stages from the source's blocks to the plugins, in order; adding one is one entry here.

        What a stage returns, the next one takes: the VAD takes audio blocks
        at the source's rate and returns 16 kHz speech segments; the
        recogniser takes segments, calls the plugins and returns nothing.  A
        recogniser's front end (a denoiser), when it has one, runs first on the
        stream (blocks in, 16 kHz blocks out), so that when a command ends only
        the model is left to run; the wake-word gate, when ``[wake]`` enables
        it, goes between the VAD and the recogniser (segments in, those to
        decode out).
        """
        stages = [  # the VAD's inbox holds audio blocks when the front end is ahead of it
            Stage("vad", self._segment, finish=self._segment_rest, inbox_size=self.config.audio.queue_blocks),
            Stage("asr", self._recognize, max_failures=MAX_ASR_FAILURES),
        ]
        if self._wake is not None:
            stages.insert(-1, Stage("wake", self._gate, max_failures=MAX_ASR_FAILURES))
        if self._denoiser is not None:
            stages.insert(0, Stage("denoise", self._denoise, finish=self._denoise_rest))
        return stages

    def stop(self, reason: str = "stopped") -> None:
        """Stop the pipeline in order, discarding unfinished work (any thread; what a signal does)."""
        self.stopper.request(reason)

    # --- pipeline threads ---

    def _run_stage(self, stage: Stage, inbox: BlockQueue | queue.Queue[Any], outbox: queue.Queue[Any] | None) -> None:
        """The thread of one stage: until the end marker or a stop; always passes the end marker on."""
        failures = 0  # in a row: one odd item is skipped, a broken stage stops the daemon
        try:
            while not self._stopping.is_set():
                try:
                    item = inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                end = item is END
                if end and self._stopping.is_set():
                    break
                try:
                    results = stage.finish() if end else stage.step(item)
                except Exception as exc:
                    failures += 1
                    what = f"the end of {self.source.description}" if end else self._describe(item)
                    _LOGGER.exception("%s: failed on %s (%d in a row)", stage.name, what, failures)
                    if failures >= stage.max_failures:
                        self._fail(exc)
                        break
                    results = []
                else:
                    failures = 0
                if outbox is not None:
                    for result in results:
                        self._put(outbox, result)
                if end:
                    _LOGGER.debug("%s: end of %s", stage.name, self.source.description)
                    break
        finally:
            if outbox is not None:
                self._put(outbox, END)

    def _put(self, outbox: queue.Queue[Any], item: Any) -> None:
        """Wait for room in the next stage's inbox; once stopping, drop the item (the end marker makes room)."""
        while True:
            try:
                outbox.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stopping.is_set():
                    if item is not END:
                        return
                    try:
                        outbox.get_nowait()
                    except queue.Empty:
                        pass

    def _describe(self, item: Any) -> str:
        """An item of the pipeline, for log lines."""
        if isinstance(item, np.ndarray):
            return f"a {len(item) * 1000 / self.source.rate_hz:.0f} ms block of {self.source.description}"
        if isinstance(item, RateChange):
            return f"the switch of {self.source.description} to {item.rate_hz} Hz"
        return str(item)

    # --- the stages' steps ---

    def _to_16k(self, block: np.ndarray | RateChange) -> np.ndarray:
        """The first stage's resampling: a block at the source's rate → 16 kHz; a :class:`RateChange` switches rate."""
        if isinstance(block, RateChange):  # the microphone was opened again at another rate
            _LOGGER.info("audio now comes at %d Hz", block.rate_hz)
            rest = self._resampler.flush()
            self._resampler = StreamResampler(block.rate_hz)
            return rest
        return self._resampler.process(block)

    def _denoise(self, block: np.ndarray | RateChange) -> list[np.ndarray]:
        """Front end: an audio block at the source's rate → the denoised 16 kHz audio that is ready."""
        assert self._denoiser is not None
        out = self._denoiser.process(self._to_16k(block))
        return [out] if out.size else []

    def _denoise_rest(self) -> list[np.ndarray]:
        """Front end at the end of the input: what the resampler and the denoiser still hold."""
        assert self._denoiser is not None
        return [self._denoiser.process(self._resampler.flush()), self._denoiser.flush()]

    def _segment(self, block: np.ndarray | RateChange) -> list[_Segment]:
        """VAD: an audio block (at the source's rate, or 16 kHz after the front end) → the segments it closed."""
        samples = block if self._denoiser is not None else self._to_16k(block)
        return self._speech(self._segmenter.process(samples))

    def _segment_rest(self) -> list[_Segment]:
        """VAD at the end of the input: close a command still open."""
        rest = np.zeros(0, dtype=np.float32) if self._denoiser is not None else self._resampler.flush()
        return self._speech(self._segmenter.process(rest) + self._segmenter.flush())

    def _decode(self, segment: _Segment) -> Any:
        """The recogniser's Recognition of a segment (recogniser thread)."""
        # what the VAD stage measured and denoised as the segment grew (passed only when there is some)
        known = ({} if segment.speech is None else {"speech": segment.speech}) | (
            {} if segment.denoised is None else {"denoised": segment.denoised})
        with self._recognizer_lock:
            if self._denoiser is not None:  # the stream was denoised ahead of the VAD
                return self.recognizer.recognize(segment.samples, denoise=False, **known)
            return self.recognizer.recognize(segment.samples, **known)

    def _complete(self, samples: np.ndarray) -> Any:
        """Grammar-aware endpointing (VAD thread): the Recognition when the segment so far is a whole command, else None.

        A failure here is logged and the command left to the silence rule: the recogniser stage decodes it
        again and counts its failures; the VAD must not stop on them.
        """
        try:
            presence = self._segmenter.speech_presence(samples)
            speech = {} if presence is None else {"speech": presence}
            with self._recognizer_lock:
                if self._denoiser is not None:
                    return self.recognizer.complete(samples, denoise=False, **speech)
                return self.recognizer.complete(samples, **speech)
        except Exception:
            _LOGGER.exception("vad: the completeness check failed on a %.2f s segment; waiting for the silence",
                              len(samples) / SAMPLE_RATE_HZ)
            return None

    def _speech(self, events: list[SpeechStart | SpeechEnd]) -> list[_Segment]:
        source = self.source.description
        segments = []
        for event in events:
            if isinstance(event, SpeechStart):
                _LOGGER.debug("vad: speech started in %s", source)
                self.plugins.dispatch("vcd_speech_started", site=self.site, timestamp=event.timestamp)
                continue
            self.plugins.dispatch(
                "vcd_speech_ended", site=self.site, timestamp=event.timestamp, audio_s=round(event.audio_s, 3)
            )
            if event.kept:
                noise = noise_gate(event)
                if noise is not None:
                    _LOGGER.debug("vad: skipped %s", noise)
                    continue
                _LOGGER.debug("vad: %.2f s segment from %s goes to the recogniser", event.audio_s, source)
                segments.append(_Segment(event.samples, event.timestamp, result=event.result, speech=event.speech,
                                         denoised=event.denoised))
        return segments

    def _gate(self, segment: _Segment) -> list[_Segment]:
        """Wake word: a speech segment → the command to decode, if it follows the wake word; calls vcd_wake, vcd_feedback."""
        assert self._wake is not None
        heard = self._wake.process(segment.samples, segment.speech_end)
        if heard.detection is not None:
            detection = heard.detection
            heard_at = segment.speech_end - (len(segment.samples) / SAMPLE_RATE_HZ - detection.end_s)
            self.plugins.dispatch(
                "vcd_wake", site=self.site, name=detection.name, score=detection.score, timestamp=round(heard_at, 3)
            )
            self.plugins.dispatch("vcd_feedback", site=self.site, kind="wake", text=None)
        if heard.command is None:
            return []
        # a command in a segment of its own (after a pause) is the whole segment: the VAD stage's speech
        # presence and denoised audio hold for it; one said in the same breath as the wake word is measured
        # (and denoised) when it is decoded
        whole = heard.command is segment.samples
        return [_Segment(heard.command, segment.speech_end, speech=segment.speech if whole else None,
                         denoised=segment.denoised if whole else None)]

    def _recognize(self, segment: _Segment) -> list[Any]:
        """Recogniser: a speech segment → the plugins' transcript and intent or unrecognized hooks."""
        try:
            return self._recognize_segment(segment, segment.site or self.site)
        finally:
            segment.settle()

    def _recognize_segment(self, segment: _Segment, site: str) -> list[Any]:
        with self._grammar_lock:
            grammar, self._next_grammar = self._next_grammar, None
        if grammar is not None:
            with self._recognizer_lock:  # the VAD's completeness check decodes with it too
                self.recognizer.use_grammar(grammar)
            _LOGGER.info("asr: now decoding with the updated grammar")
        paused = self.controls.paused_by()
        if paused:
            self.counts["skipped"] = self.counts.get("skipped", 0) + 1
            _LOGGER.info("asr: %s not decoded: recognition paused (%s)", segment, paused)
            return []
        result = segment.result if segment.result is not None else self._decode(segment)
        recognized_at = time.time()
        segment.settle()  # decoded: whoever brought it hears so before the plugins act on it
        self.counts["segments"] += 1
        confidence = round(float(result.confidence), 4)
        audio_s = round(float(result.audio_s or len(segment.samples) / SAMPLE_RATE_HZ), 3)
        decode_ms = round(float(result.decode_ms), 1)
        text = result.text if result.recognized else (result.best_text or result.text or "")
        self.plugins.dispatch(
            "vcd_transcript", site=site, text=text, confidence=confidence, audio_s=audio_s, decode_ms=decode_ms
        )
        if result.recognized:
            self.counts["intents"] += 1
            if self.keeper is not None:
                self.keeper.keep(segment.samples, result.text, result.intent, float(result.confidence))
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
                site=site,
                intent=result.intent,
                slots=dict(result.slots),
                text=result.text,
                confidence=confidence,
                timings=timings,
            )
            self.plugins.dispatch("vcd_feedback", site=site, kind="recognized",
                                  text=getattr(result, "answer", None))
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
                "vcd_unrecognized", site=site, text=text, confidence=confidence, audio_s=audio_s
            )
            self.plugins.dispatch("vcd_feedback", site=site, kind="not_understood", text=None)
        return []  # the last stage: its results went to the plugins

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self.stopper.request(f"error: {exc}")

    def _compile_grammars(self) -> None:
        """Thread ``vcd-grammar``: recompile when plugins change list values; the asr stage swaps it in."""
        compile_grammar = getattr(self.recognizer, "compile_grammar", None)
        while not self._stopping.is_set():
            if not self.controls.changed.wait(0.2):
                continue
            self.controls.changed.clear()
            version, lists = self.controls.lists()
            if version == self._lists_version:
                continue
            if compile_grammar is None:
                _LOGGER.warning("grammar: this recogniser cannot take list values from plugins")
                return
            try:
                grammar = compile_grammar(lists)
                with self._grammar_lock:
                    self._next_grammar = grammar
            except VcdError as exc:
                _LOGGER.error("grammar: the plugins' new list values are not used (the grammar stays as it was): %s",
                              exc)
            except Exception:
                _LOGGER.exception("grammar: compiling the plugins' new list values failed (the grammar stays as it was)")
            self._lists_version = version

    # --- control ---

    def health(self) -> list[str]:
        """What keeps the daemon from working now, one line each; empty while it works.

        Working means: every stage's thread runs, the source delivers audio
        blocks (a running source silent for :data:`AUDIO_STALL_S`, or one that
        reports a problem such as a missing microphone, is not working), the
        first stage takes them, every plugin's worker runs, and every plugin
        that implements ``vcd_health`` reports no problem.
        """
        source = self.source
        now = time.monotonic()
        problems = []
        if source.is_alive():  # after the end of a finite input the stages end one by one
            problems += [f"the {s.name} thread has stopped" for s in self.stages if not self._threads[s.name].is_alive()]
        if not self.plugins.workers_alive():
            problems.append("a plugin's worker thread has stopped")
        if source.live and not source.is_alive():
            problems.append(f"{source.description}: its thread has stopped")
        elif source.problem:
            problems.append(source.problem)
        elif source.is_alive():
            blocks = self._blocks
            if blocks.qsize() and now - blocks.taken_at > AUDIO_STALL_S:
                problems.append(
                    f"the {self.stages[0].name} stage has taken no audio for {now - blocks.taken_at:.0f} s "
                    f"({blocks.qsize()} blocks waiting)"
                )
            elif now - blocks.offered_at > AUDIO_STALL_S:
                problems.append(f"no audio from {source.description} for {now - blocks.offered_at:.0f} s")
        return problems + self.plugins.health()

    def _check_health(self, notifier: Notifier, problems: list[str]) -> list[str]:
        """Check the health; log and tell systemd (STATUS=) when it changes; returns the problems now."""
        now_problems = self.health()
        key = [re.sub(r"\d+(\.\d+)?", "N", p) for p in now_problems]  # "for 4 s" → "for 5 s" is no change
        before = [re.sub(r"\d+(\.\d+)?", "N", p) for p in problems]
        for problem, k in zip(now_problems, key, strict=True):
            if k not in before:
                _LOGGER.warning("not working: %s", problem)
        if now_problems:
            notifier.notify("STATUS=Not working: " + "; ".join(now_problems))
        elif problems:
            _LOGGER.warning("working again: listening on %s", self.source.description)
            notifier.notify(f"STATUS=Listening on {self.source.description}; {self._summary()}")
        return now_problems

    def run(self, notifier: Notifier | None = None) -> int:
        """Start the threads and the source, wait for the end, shut down in order; returns the exit code."""
        notifier = notifier or Notifier()
        for i, stage in enumerate(self.stages):
            outbox = self._inboxes[i + 1] if i + 1 < len(self.stages) else None
            thread = threading.Thread(
                target=self._run_stage, args=(stage, self._inboxes[i], outbox), name=stage.thread_name, daemon=True
            )
            thread.start()
            self._threads[stage.name] = thread
        threading.Thread(target=self._compile_grammars, name="vcd-grammar", daemon=True).start()
        try:
            self.source.start(self._blocks)
        except VcdError as exc:
            self._fail(exc)
            return self._shutdown(notifier, self.stopper.reason, ended=False)
        if self.source.problem is None:
            _LOGGER.info("listening on %s (site %r)", self.source.description, self.site)
            notifier.notify("READY=1", f"STATUS=Listening on {self.source.description}")
        else:  # a microphone not there (yet): the source retries and says so
            _LOGGER.info("started (site %r); waiting for %s", self.site, self.source.description)
            notifier.notify("READY=1", f"STATUS=Waiting for {self.source.description}: {self.source.problem}")
        next_ping = 0.0
        next_status = time.monotonic() + STATUS_EVERY_S
        next_health = 0.0
        problems: list[str] = []
        last = self._threads[self.stages[-1].name]
        while not self._stopping.is_set():
            if not last.is_alive():
                break  # end of input through every stage, or a failure (recorded)
            now = time.monotonic()
            if now >= next_health:
                problems = self._check_health(notifier, problems)
                next_health = now + HEALTH_EVERY_S
            # the watchdog means "working": no ping while anything is wrong, so systemd restarts vcd
            if notifier.watchdog_s and now >= next_ping and not problems:
                notifier.notify("WATCHDOG=1")
                next_ping = now + notifier.watchdog_s
            if now >= next_status and not problems:
                notifier.notify(f"STATUS=Listening on {self.source.description}; {self._summary()}")
                next_status = now + STATUS_EVERY_S
            self._stopping.wait(0.2)
            self.plugins.check_stuck()
        ended = not self._stopping.is_set() and self._failure is None
        if self.source.error is not None:
            self._fail(self.source.error)
        reason = self.stopper.reason or ("end of input" if ended else "stopped")
        return self._shutdown(notifier, reason, ended)

    def _summary(self) -> str:
        c = self.counts
        dropped = f", {self._blocks.dropped} audio blocks dropped" if self._blocks.dropped else ""
        paused = f", {c['skipped']} not decoded (paused)" if c.get("skipped") else ""
        return (f"{c['segments']} segments, {c['intents']} commands, {c['unrecognized']} not understood"
                f"{paused}{dropped}")

    def _shutdown(self, notifier: Notifier, reason: str, ended: bool) -> int:
        _LOGGER.info("stopping (%s)", reason)
        notifier.notify("STOPPING=1", f"STATUS=Stopping: {reason}")
        self.source.stop()
        self._blocks.end()
        deadline = time.monotonic() + (END_JOIN_S if ended else STOP_JOIN_S)
        for stage in self.stages:  # in order: each ends after the one before it passed the end marker on
            thread = self._threads[stage.name]
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(timeout=0.1)
                if ended and self._stopping.is_set():  # a signal while finishing the input: hurry up
                    ended = False
                    deadline = min(deadline, time.monotonic() + STOP_JOIN_S)
            if thread.is_alive():
                _LOGGER.warning("%s: thread %s did not finish in time; leaving it", stage.name, thread.name)
        self.plugins.drain(DRAIN_END_S if ended else DRAIN_STOP_S)
        self.plugins.shutdown(reason)
        _LOGGER.info("stopped (%s)", self._summary())
        if self._failure is not None:
            if isinstance(self._failure, VcdError):
                raise self._failure
            raise VcdError(f"stopped after a failure: {type(self._failure).__name__}: {self._failure}")
        return ExitCode.OK


def load_recognizer(config: Config, extra_lists: dict[str, Any] | None = None) -> Any:
    """Load the recogniser the ``[recognizer]`` section names: the model, and the sentences compiled to its grammar.

    ``vcd check-config`` and ``vcd run`` (before the microphone opens) both call this.  A
    sentences or model file that the configuration names and that does not compile or load
    is a :class:`ConfigError` naming the file and key (exit 78: restarting will not help);
    the bundled ones failing stay :class:`GrammarError` / :class:`ModelError` (a broken install).
    ``extra_lists``: list values plugins add (:meth:`vcd.controls.Controls.lists`).
    """
    from vcd.recognizer import Recognizer

    rec = config.recognizer
    try:
        return Recognizer.load(
            sentences=list(rec.sentences), model=rec.model, min_confidence=rec.min_confidence, threads=rec.threads,
            front_end=rec.front_end, extra_lists=extra_lists or None, bundled=rec.sentences_mode == "add",
            beam=rec.beam, second_opinion=None if rec.second_opinion else False, denoised_view=rec.denoised_view,
            engine=rec.engine,
        )
    except GrammarError as exc:
        if not rec.sentences:
            raise
        raise config.key_error("recognizer.sentences", one_line(str(exc))) from None
    except ModelError as exc:
        if rec.model is None:
            raise
        raise config.key_error("recognizer.model", one_line(str(exc))) from None
    except ConfigError as exc:  # the front end's, which does not know the file's name
        if str(exc).startswith(f"{config.label}: "):
            raise
        raise ConfigError(one_line(f"{config.label}: {exc}")) from None


def run_daemon(config: Config, stopper: Stopper | None = None) -> int:
    """``vcd run``: load plugins, start them, load the model, open the audio, run until stopped.

    ``stopper``: signal handlers the caller installed as early as it could
    (``vcd run`` does so before reading the configuration), so that a
    SIGTERM during start-up also takes the orderly path; None installs them here.
    """
    if stopper is None:
        with Stopper() as own:
            return run_daemon(config, own)
    notifier = Notifier()

    def stopped_early(plugins: PluginHost | None) -> bool:
        if not stopper.event.is_set():
            return False
        _LOGGER.info("stopping before start (%s)", stopper.reason)
        notifier.notify("STOPPING=1", f"STATUS=Stopping: {stopper.reason}")
        if plugins is not None:
            plugins.shutdown(stopper.reason)
        return True

    notifier.notify("STATUS=Loading plugins")
    plugins = load_plugins(config)
    _LOGGER.info("plugins loaded: %s", ", ".join(f"{p.name} ({p.source})" for p in plugins.loaded) or "none")
    if stopped_early(None):
        return ExitCode.OK
    controls = Controls()
    plugins.startup(config, controls)
    if stopped_early(plugins):
        return ExitCode.OK
    try:
        source = open_source(config.audio)  # reads a file / finds the device; starts nothing
        if stopped_early(plugins):
            return ExitCode.OK
        notifier.notify("STATUS=Loading the recogniser")
        started = time.monotonic()
        lists_version, lists = controls.lists()  # what the plugins added during start-up
        recognizer = load_recognizer(config, lists)
        from vcd.recognizer import runs_with

        _LOGGER.info("recogniser loaded in %.1f s (%s)", time.monotonic() - started, runs_with(recognizer))
    except BaseException as exc:
        plugins.shutdown(f"error: {exc}")
        raise
    if stopped_early(plugins):
        return ExitCode.OK
    plugins.start_workers()
    return Daemon(config, recognizer, plugins, source, stopper, controls, lists_version).run(notifier)
