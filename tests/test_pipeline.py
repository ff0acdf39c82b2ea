"""The daemon's pipeline in-process: audio in memory, a fake recogniser, a real pluggy plugin; no model, no broker.

tests/test_daemon.py runs the real daemon as a subprocess with the real
model; here the same :class:`vcd.daemon.Daemon` runs in the test's process so
that the order of hooks, the draining at end of input, recogniser failures and
an ordered stop can be checked exactly and quickly.  The speech is a harmonic
tone burst, which webrtcvad takes for voice.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import pluggy
import pytest

import vcd
from conftest import requires_espeak, utterances
from vcd import hookspecs
from vcd.config import AudioConfig, Config, DaemonConfig
from vcd.daemon import MAX_ASR_FAILURES, Daemon, Stage, Stopper
from vcd.errors import ExitCode, VcdError
from vcd.plugins import LoadedPlugin, PluginHost
from vcd.recognizer import Recognition
from vcd.sources import SAMPLE_RATE_HZ, MemorySource

COMMAND = Recognition(
    text="turn on the kitchen light",
    intent="HassTurnOn",
    slots={"name": "kitchen light", "domain": "light"},
    confidence=0.91234,
    decode_ms=12.34,
)
NOT_A_COMMAND = Recognition(text="", intent=None, confidence=0.2, decode_ms=8.0, best_text="turn on the kitchen fox")
STAGE_THREADS = ("vcd-source", "vcd-vad", "vcd-gate", "vcd-asr")


# --- audio ---------------------------------------------------------------------------------------


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE_HZ), dtype=np.float32)


def burst(seconds: float = 1.0, pitch_hz: float = 150.0) -> np.ndarray:
    """A voiced-sounding tone: a fundamental and its harmonics, which webrtcvad hears as speech."""
    t = np.arange(round(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    wave = sum(0.1 / k * np.sin(2 * np.pi * pitch_hz * k * t) for k in range(1, 20))
    return np.asarray(wave, dtype=np.float32)


def commands(count: int, pause_s: float = 1.2, tail_s: float = 1.5) -> np.ndarray:
    """``count`` bursts, each one segment (the pause is longer than vad.silence_ms)."""
    parts = [silence(0.5)]
    for i in range(count):
        parts += [burst(), silence(pause_s if i < count - 1 else tail_s)]
    return np.concatenate(parts)


# --- the parts around the pipeline ---------------------------------------------------------------


class FakeRecognizer:
    """Returns ``results`` in turn, the last one again when they run out; an exception in them is raised."""

    def __init__(self, *results: Recognition | Exception, delay_s: float = 0.0) -> None:
        self.results = results
        self.delay_s = delay_s
        self.calls: list[tuple[str, int]] = []  # (thread, samples) per segment

    def recognize(self, samples: np.ndarray) -> Recognition:
        self.calls.append((threading.current_thread().name, len(samples)))
        time.sleep(self.delay_s)
        result = self.results[min(len(self.calls), len(self.results)) - 1]
        if isinstance(result, Exception):
            raise result
        return result


class Recorder:
    """A pluggy plugin implementing every event hook: records (hook, thread, arguments) in ``timeline``."""

    def __init__(self, timeline: list[tuple[str, str, dict[str, Any]]], delay_s: float = 0.0) -> None:
        self.timeline = timeline
        self.delay_s = delay_s

    def _record(self, hook: str, **kwargs: Any) -> None:
        time.sleep(self.delay_s)
        self.timeline.append((hook, threading.current_thread().name, kwargs))

    @vcd.hookimpl
    def vcd_startup(self, config: Config) -> None:
        self._record("vcd_startup", site=config.daemon.site)

    @vcd.hookimpl
    def vcd_speech_started(self, site: str, timestamp: float) -> None:
        self._record("vcd_speech_started", site=site, timestamp=timestamp)

    @vcd.hookimpl
    def vcd_speech_ended(self, site: str, timestamp: float, audio_s: float) -> None:
        self._record("vcd_speech_ended", site=site, timestamp=timestamp, audio_s=audio_s)

    @vcd.hookimpl
    def vcd_transcript(self, site: str, text: str, confidence: float, audio_s: float, decode_ms: float) -> None:
        self._record("vcd_transcript", site=site, text=text, confidence=confidence, audio_s=audio_s,
                     decode_ms=decode_ms)

    @vcd.hookimpl
    def vcd_intent(
        self, site: str, intent: str, slots: dict[str, Any], text: str, confidence: float, timings: dict[str, float]
    ) -> None:
        self._record("vcd_intent", site=site, intent=intent, slots=slots, text=text, confidence=confidence,
                     timings=timings)

    @vcd.hookimpl
    def vcd_unrecognized(self, site: str, text: str, confidence: float, audio_s: float) -> None:
        self._record("vcd_unrecognized", site=site, text=text, confidence=confidence, audio_s=audio_s)

    @vcd.hookimpl
    def vcd_shutdown(self, reason: str) -> None:
        alive = sorted(t.name for t in threading.enumerate() if t.name in STAGE_THREADS)
        self._record("vcd_shutdown", reason=reason, pipeline_threads_alive=alive)


class RecordingSource(MemorySource):
    """A :class:`MemorySource` that notes in the timeline when the daemon stops it."""

    def __init__(self, config: Config, samples: np.ndarray, timeline: list) -> None:
        super().__init__(config.audio, samples, "test audio")
        self.timeline = timeline

    def stop(self) -> None:
        self.timeline.append(("source stopped", threading.current_thread().name, {}))
        super().stop()


class Notes:
    """Stands in for the systemd notifier: notes each message in the timeline."""

    watchdog_s = 0.0

    def __init__(self, timeline: list) -> None:
        self.timeline = timeline

    def notify(self, *lines: str) -> None:
        self.timeline.append(("notify", threading.current_thread().name, {"lines": lines}))


def plugin_host(plugin: object, name: str = "recorder") -> PluginHost:
    """A host with ``plugin`` registered as load_plugins registers a loaded module."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name=name)
    pm.check_pending()
    hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
    return PluginHost(pm, [LoadedPlugin(name, "test", plugin, hooks)])


def make_config(realtime: bool = False) -> Config:
    return Config(daemon=DaemonConfig(site="kitchen"), audio=replace(AudioConfig(), realtime=realtime))


class Pipeline:
    """A started plugin host and a :class:`Daemon` over ``audio``, as ``vcd run`` builds them."""

    def __init__(self, audio: np.ndarray, recognizer: FakeRecognizer, realtime: bool = False,
                 plugin_delay_s: float = 0.0, daemon: type[Daemon] = Daemon) -> None:
        self.timeline: list[tuple[str, str, dict[str, Any]]] = []
        self.config = make_config(realtime)
        self.recognizer = recognizer
        self.source = RecordingSource(self.config, audio, self.timeline)
        self.plugins = plugin_host(Recorder(self.timeline, plugin_delay_s))
        self.plugins.startup(self.config)
        self.plugins.start_workers()
        self.daemon = daemon(self.config, recognizer, self.plugins, self.source)

    def run(self) -> int:
        return self.daemon.run(Notes(self.timeline))  # type: ignore[arg-type]

    def hooks(self) -> list[str]:
        return [hook for hook, _, _ in self.timeline if hook.startswith("vcd_")]

    def calls(self, hook: str) -> list[dict[str, Any]]:
        return [kwargs for name, _, kwargs in self.timeline if name == hook]


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)


# --- hooks ---------------------------------------------------------------------------------------


def test_while_a_plugin_pauses_recognition_segments_are_not_decoded() -> None:
    recognizer = FakeRecognizer(COMMAND)
    pipeline = Pipeline(commands(2), recognizer)
    pipeline.daemon.controls.for_plugin("recorder").pause("hermes/asr/toggleOff")
    assert pipeline.run() == ExitCode.OK
    assert recognizer.calls == []
    assert pipeline.hooks() == ["vcd_startup", *["vcd_speech_started", "vcd_speech_ended"] * 2, "vcd_shutdown"]
    assert pipeline.daemon.counts["skipped"] == 2


def test_a_command_calls_every_hook_in_order_with_its_payload() -> None:
    recognizer = FakeRecognizer(COMMAND)
    pipeline = Pipeline(commands(1), recognizer)
    before = time.time()
    assert pipeline.run() == ExitCode.OK
    assert pipeline.hooks() == [
        "vcd_startup",
        "vcd_speech_started",
        "vcd_speech_ended",
        "vcd_transcript",
        "vcd_intent",
        "vcd_shutdown",
    ]
    threads = {hook: thread for hook, thread, _ in pipeline.timeline if hook.startswith("vcd_")}
    assert threads["vcd_startup"] == "MainThread"
    assert {threads[h] for h in ("vcd_speech_started", "vcd_speech_ended", "vcd_transcript", "vcd_intent")} == {
        "vcd-plugin-recorder"
    }
    assert threads["vcd_shutdown"] == "vcd-shutdown-recorder"
    [(thread, samples)] = recognizer.calls
    assert thread == "vcd-asr"  # one thread owns the recogniser
    [started], [ended], [transcript], [intent] = (
        pipeline.calls(h) for h in ("vcd_speech_started", "vcd_speech_ended", "vcd_transcript", "vcd_intent")
    )
    assert started["site"] == ended["site"] == transcript["site"] == intent["site"] == "kitchen"
    assert before < started["timestamp"] <= ended["timestamp"] < time.time()
    assert ended["audio_s"] == round(samples / SAMPLE_RATE_HZ, 3)
    assert 1.0 <= ended["audio_s"] < 2.5
    assert transcript == {
        "site": "kitchen",
        "text": "turn on the kitchen light",
        "confidence": 0.9123,
        "audio_s": ended["audio_s"],  # the recogniser did not say: the segment's length
        "decode_ms": 12.3,
    }
    timings = intent.pop("timings")
    assert intent == {
        "site": "kitchen",
        "intent": "HassTurnOn",
        "slots": {"name": "kitchen light", "domain": "light"},
        "text": "turn on the kitchen light",
        "confidence": 0.9123,
    }
    assert timings["audio_s"] == ended["audio_s"] and timings["decode_ms"] == 12.3
    assert timings["speech_end"] == ended["timestamp"] <= timings["recognized_at"] <= time.time()
    assert pipeline.calls("vcd_shutdown") == [{"reason": "end of input", "pipeline_threads_alive": []}]
    assert pipeline.daemon.counts == {"segments": 1, "intents": 1, "unrecognized": 0}


def test_speech_that_is_not_a_command_calls_vcd_unrecognized_with_the_best_guess() -> None:
    pipeline = Pipeline(commands(1), FakeRecognizer(NOT_A_COMMAND))
    assert pipeline.run() == ExitCode.OK
    assert pipeline.hooks() == [
        "vcd_startup",
        "vcd_speech_started",
        "vcd_speech_ended",
        "vcd_transcript",
        "vcd_unrecognized",
        "vcd_shutdown",
    ]
    [ended], [transcript], [unrecognized] = (
        pipeline.calls(h) for h in ("vcd_speech_ended", "vcd_transcript", "vcd_unrecognized")
    )
    assert transcript["text"] == unrecognized["text"] == "turn on the kitchen fox"
    assert unrecognized == {"site": "kitchen", "text": "turn on the kitchen fox", "confidence": 0.2,
                            "audio_s": ended["audio_s"]}
    assert pipeline.daemon.counts == {"segments": 1, "intents": 0, "unrecognized": 1}


def test_silence_calls_no_event_hook() -> None:
    recognizer = FakeRecognizer(COMMAND)
    pipeline = Pipeline(silence(3), recognizer)
    assert pipeline.run() == ExitCode.OK
    assert pipeline.hooks() == ["vcd_startup", "vcd_shutdown"]
    assert recognizer.calls == []


# --- stages --------------------------------------------------------------------------------------


class GatedDaemon(Daemon):
    """A gate between the VAD and the recogniser (as a wake word would be) that passes every other segment."""

    gate_threads: list[str]

    def _pipeline(self) -> list[Stage]:
        vad, asr = super()._pipeline()
        self.gate_threads = []

        def gate(segment: Any) -> list[Any]:
            self.gate_threads.append(threading.current_thread().name)
            return [segment] if len(self.gate_threads) % 2 else []

        return [vad, Stage("gate", gate), asr]


def test_each_stage_runs_on_its_own_named_thread() -> None:
    pipeline = Pipeline(commands(1), FakeRecognizer(COMMAND))
    assert [stage.name for stage in pipeline.daemon.stages] == ["vad", "asr"]
    assert [stage.thread_name for stage in pipeline.daemon.stages] == ["vcd-vad", "vcd-asr"]


def test_a_stage_added_between_the_vad_and_the_recogniser_gets_its_thread_and_queues() -> None:
    recognizer = FakeRecognizer(COMMAND)
    pipeline = Pipeline(commands(3, tail_s=0.1), recognizer, daemon=GatedDaemon)
    assert pipeline.run() == ExitCode.OK
    assert pipeline.daemon.gate_threads == ["vcd-gate"] * 3
    assert [thread for thread, _ in recognizer.calls] == ["vcd-asr"] * 2  # the first and the third
    assert pipeline.hooks().count("vcd_speech_ended") == 3
    assert pipeline.hooks().count("vcd_intent") == 2
    assert pipeline.calls("vcd_shutdown") == [{"reason": "end of input", "pipeline_threads_alive": []}]


# --- end of input --------------------------------------------------------------------------------


def test_end_of_input_drains_every_segment_and_event_before_the_shutdown_hook() -> None:
    """Segments still queued for a slow recogniser, and events queued for a slow plugin, are all delivered.

    The last command runs into the end of the input: only the VAD's flush at the end closes it.
    """
    recognizer = FakeRecognizer(COMMAND, NOT_A_COMMAND, COMMAND, delay_s=0.3)
    pipeline = Pipeline(commands(3, tail_s=0.1), recognizer, plugin_delay_s=0.05)
    assert pipeline.run() == ExitCode.OK
    assert len(recognizer.calls) == 3
    hooks = pipeline.hooks()
    assert hooks.count("vcd_speech_ended") == hooks.count("vcd_transcript") == 3
    assert [h for h in hooks if h in ("vcd_intent", "vcd_unrecognized")] == [
        "vcd_intent",
        "vcd_unrecognized",
        "vcd_intent",
    ]
    assert hooks[-1] == "vcd_shutdown"
    assert pipeline.calls("vcd_shutdown") == [{"reason": "end of input", "pipeline_threads_alive": []}]
    assert pipeline.daemon.counts == {"segments": 3, "intents": 2, "unrecognized": 1}


# --- recogniser failures -------------------------------------------------------------------------


def test_a_recogniser_failure_is_logged_and_the_segment_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """Failures fewer than MAX_ASR_FAILURES in a row: each is logged, the daemon goes on and exits 0."""
    broken = RuntimeError("odd segment")
    results = [broken] * (MAX_ASR_FAILURES - 1) + [COMMAND, broken]
    recognizer = FakeRecognizer(*results)
    pipeline = Pipeline(commands(len(results)), recognizer)
    with caplog.at_level(logging.ERROR, logger="vcd.daemon"):
        assert pipeline.run() == ExitCode.OK
    assert len(recognizer.calls) == len(results)
    failures = [r for r in caplog.records if r.name == "vcd.daemon" and r.levelno == logging.ERROR]
    assert len(failures) == MAX_ASR_FAILURES
    assert all(r.exc_info and r.exc_info[1] is broken for r in failures)
    assert [r.getMessage().startswith("asr: ") for r in failures] == [True] * MAX_ASR_FAILURES
    in_a_row = [*range(1, MAX_ASR_FAILURES), 1]
    assert [r.getMessage().rsplit("(", 1)[-1] for r in failures] == [f"{n} in a row)" for n in in_a_row]
    assert pipeline.hooks().count("vcd_intent") == 1
    assert pipeline.hooks().count("vcd_transcript") == 1
    assert pipeline.calls("vcd_shutdown")[0]["reason"] == "end of input"
    assert pipeline.daemon.counts["segments"] == 1


def test_max_asr_failures_in_a_row_stop_the_daemon_with_an_error() -> None:
    recognizer = FakeRecognizer(RuntimeError("model on fire"))
    pipeline = Pipeline(commands(MAX_ASR_FAILURES + 2), recognizer)
    with pytest.raises(VcdError, match=r"^stopped after a failure: RuntimeError: model on fire$"):
        pipeline.run()
    assert len(recognizer.calls) == MAX_ASR_FAILURES  # the rest of the input is not decoded
    assert "vcd_transcript" not in pipeline.hooks()
    assert pipeline.hooks()[-1] == "vcd_shutdown"
    assert pipeline.calls("vcd_shutdown") == [{"reason": "error: model on fire", "pipeline_threads_alive": []}]


# --- stopping ------------------------------------------------------------------------------------


def test_stop_from_another_thread_shuts_down_in_order() -> None:
    """Source closed, pipeline threads ended, plugin events delivered, then vcd_shutdown; exit 0."""
    pipeline = Pipeline(np.concatenate([commands(1), silence(60)]), FakeRecognizer(COMMAND), realtime=True)

    def stop_after_the_command() -> None:
        assert wait_until(lambda: "vcd_intent" in pipeline.hooks(), 30)
        pipeline.daemon.stop("stopped by the test")

    stopper = threading.Thread(target=stop_after_the_command, name="test-stopper")
    stopper.start()
    started = time.monotonic()
    assert pipeline.run() == ExitCode.OK
    took = time.monotonic() - started
    stopper.join()
    assert took < 20  # not the 60 s of silence
    steps = [
        " ".join(kwargs["lines"]) if name == "notify" else name
        for name, _, kwargs in pipeline.timeline
        if name in ("notify", "source stopped", "vcd_intent", "vcd_shutdown")
    ]
    assert steps == [
        "READY=1 STATUS=Listening on test audio",
        "vcd_intent",
        "STOPPING=1 STATUS=Stopping: stopped by the test",
        "source stopped",
        "vcd_shutdown",
    ]
    assert pipeline.calls("vcd_shutdown") == [{"reason": "stopped by the test", "pipeline_threads_alive": []}]
    assert not pipeline.source.is_alive()


# --- signals -------------------------------------------------------------------------------------


@pytest.fixture
def own_handlers() -> Any:
    """SIGTERM/SIGINT handlers of the program vcd runs in: they note the signals they get."""
    caught: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        caught.append(signum)

    before = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield handler, caught
    for signum, previous in before.items():
        signal.signal(signum, previous)


def test_stopper_turns_signals_into_a_stop_and_restores_the_previous_handlers(own_handlers: Any) -> None:
    handler, caught = own_handlers
    with Stopper() as stopper:
        assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGINT) == stopper._handle
        signal.raise_signal(signal.SIGTERM)
        assert stopper.event.is_set() and stopper.reason == "signal SIGTERM"
        signal.raise_signal(signal.SIGTERM)  # another SIGTERM is noted, the first reason kept
        assert stopper.reason == "signal SIGTERM"
    assert caught == []  # the program's handlers did not see vcd's signals ...
    assert signal.getsignal(signal.SIGTERM) is handler and signal.getsignal(signal.SIGINT) is handler
    signal.raise_signal(signal.SIGINT)  # ... and have them again afterwards
    assert caught == [signal.SIGINT]


def test_stopper_restores_the_handlers_after_an_exception(own_handlers: Any) -> None:
    handler, _ = own_handlers
    with pytest.raises(VcdError), Stopper():
        raise VcdError("the model did not load")
    assert signal.getsignal(signal.SIGTERM) is handler and signal.getsignal(signal.SIGINT) is handler


def test_stopper_outside_the_main_thread_leaves_signals_alone(own_handlers: Any) -> None:
    handler, _ = own_handlers

    def use() -> str:
        with Stopper() as stopper:
            assert signal.getsignal(signal.SIGTERM) is handler
            stopper.request("stopped")
        return stopper.reason

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(use).result() == "stopped"  # raises here what it raised there
    assert signal.getsignal(signal.SIGTERM) is handler


def test_a_second_sigint_exits_at_once_with_130() -> None:
    program = textwrap.dedent(
        """\
        import os, signal, time
        from vcd.daemon import Stopper

        with Stopper() as stopper:
            os.kill(os.getpid(), signal.SIGINT)
            assert stopper.event.wait(5)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)
        """
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 130, result.stderr
    assert result.stderr.endswith("vcd: second interrupt, exiting now\n")


def wait_until(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class DenoisedRecognizer(FakeRecognizer):
    """A fake recogniser with the real RNNoise front end, as a model trained on denoised audio has."""

    def __init__(self, *results: Recognition) -> None:
        from vcd.denoise import RNNoise

        super().__init__(*results)
        self.front_end = RNNoise()
        self.denoise_flags: list[bool] = []

    def recognize(self, samples: np.ndarray, denoise: bool = True) -> Recognition:
        self.denoise_flags.append(denoise)
        return super().recognize(samples)


@requires_espeak
def test_the_front_end_runs_as_a_stage_ahead_of_the_vad() -> None:
    recognizer = DenoisedRecognizer(COMMAND)
    pipeline = Pipeline(utterances("turn on the kitchen light", 1.5, "turn off the radio"), recognizer)
    assert [stage.name for stage in pipeline.daemon.stages] == ["denoise", "vad", "asr"]
    assert pipeline.run() == ExitCode.OK
    assert pipeline.hooks().count("vcd_intent") == 2  # speech comes through the denoiser: two commands
    assert recognizer.denoise_flags == [False, False]  # segments are already denoised: not twice
    assert [thread for thread, _ in recognizer.calls] == ["vcd-asr", "vcd-asr"]


class RateSwitchingSource(MemorySource):
    """Plays its first part at 48 kHz, then a :class:`RateChange` and the rest at 16 kHz (a microphone reopened)."""

    def __init__(self, config: Config, first: np.ndarray, rest: np.ndarray) -> None:
        super().__init__(config.audio, rest, "a switching microphone")
        self.rate_hz = 48000
        self._first = first

    def _run(self, blocks: Any) -> None:
        from vcd.sources import RateChange

        at_48k = np.repeat(self._first, 3)  # a crude upsampling: what matters is the count of samples
        for offset in range(0, at_48k.size, 1440):
            blocks.put(at_48k[offset : offset + 1440], self._stop)
        blocks.put(RateChange(SAMPLE_RATE_HZ), self._stop)
        super()._run(blocks)


def test_a_rate_change_on_the_block_queue_switches_the_resampler() -> None:
    recognizer = FakeRecognizer(COMMAND)
    config = make_config()
    plugins = plugin_host(Recorder([]))
    plugins.startup(config)
    plugins.start_workers()
    source = RateSwitchingSource(config, commands(1), commands(1))
    daemon = Daemon(config, recognizer, plugins, source)
    assert daemon.run(Notes([])) == ExitCode.OK  # type: ignore[arg-type]
    lengths = [n / SAMPLE_RATE_HZ for _, n in recognizer.calls]
    assert len(lengths) == 2  # one burst before the switch, one after, each about 1 s long at 16 kHz
    assert all(1.0 < s < 2.2 for s in lengths), lengths


# --- grammar-aware endpointing (the real recogniser and VAD: tests/test_endpointing.py) ---------------


class EndpointingRecognizer(FakeRecognizer):
    """Answers the VAD's completeness check with ``complete`` (a Recognition, None, or an exception to raise)."""

    def __init__(self, complete: Recognition | Exception | None, *results: Recognition) -> None:
        super().__init__(*results)
        self.answer = complete
        self.checks: list[str] = []  # threads

    def complete(self, samples: np.ndarray) -> Recognition | None:
        self.checks.append(threading.current_thread().name)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_a_whole_command_is_decoded_once_by_the_vad_s_check() -> None:
    recognizer = EndpointingRecognizer(COMMAND, NOT_A_COMMAND)
    pipeline = Pipeline(commands(1), recognizer)
    assert pipeline.run() == ExitCode.OK
    assert recognizer.checks == ["vcd-vad"] and recognizer.calls == []  # its decode is the command's decode
    assert pipeline.hooks() == ["vcd_startup", "vcd_speech_started", "vcd_speech_ended", "vcd_transcript",
                                "vcd_intent", "vcd_shutdown"]
    [ended], [intent] = pipeline.calls("vcd_speech_ended"), pipeline.calls("vcd_intent")
    assert intent["text"] == COMMAND.text and intent["timings"]["speech_end"] == ended["timestamp"]


def test_a_failing_completeness_check_leaves_the_command_to_the_silence_rule(caplog: pytest.LogCaptureFixture) -> None:
    recognizer = EndpointingRecognizer(RuntimeError("model exploded"), COMMAND)
    pipeline = Pipeline(commands(2), recognizer)
    with caplog.at_level(logging.ERROR, logger="vcd.daemon"):
        assert pipeline.run() == ExitCode.OK
    assert recognizer.checks == ["vcd-vad", "vcd-vad"]
    assert [thread for thread, _ in recognizer.calls] == ["vcd-asr", "vcd-asr"]
    assert pipeline.hooks().count("vcd_intent") == 2
    assert sum("completeness check failed" in r.getMessage() for r in caplog.records) == 2
