"""The real daemon as a subprocess: file, stdin and (fake ALSA) microphone input, every hook, signals, systemd.

Speech is synthesised at test time with espeak-ng.  Tests that decode speech
need the bundled model (vcd/models/default.pt) and are skipped without it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from vcd.audio import SAMPLE_RATE_HZ, read_audio

REPO = Path(__file__).resolve().parents[1]
# $VCD_TEST_MODEL tries a candidate model (e.g. a training checkpoint) instead of the bundled one
MODEL = Path(os.environ.get("VCD_TEST_MODEL") or REPO / "vcd" / "models" / "default.pt").absolute()

needs_model = pytest.mark.skipif(not MODEL.exists(), reason=f"no model at {MODEL} (not built yet?)")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

COMMAND = "turn on the kitchen light"
NOT_A_COMMAND = "the quick brown fox jumps over the lazy dog"

RECORDER = '''
"""Test plugin: writes every hook call, with its arguments and thread, as a JSON line."""
import json
import threading

import vcd

_path = None


def _write(hook, **fields):
    with open(_path, "a") as fh:
        fh.write(json.dumps({"hook": hook, "thread": threading.current_thread().name, **fields}) + "\\n")


@vcd.hookimpl
def vcd_startup(config, config_path):
    global _path
    _path = config.plugin_table("recorder")["path"]
    _write("vcd_startup", site=config.daemon.site, config_path=str(config_path))


@vcd.hookimpl
def vcd_speech_started(site, timestamp):
    _write("vcd_speech_started", site=site, timestamp=timestamp)


@vcd.hookimpl
def vcd_speech_ended(site, timestamp, audio_s):
    _write("vcd_speech_ended", site=site, timestamp=timestamp, audio_s=audio_s)


@vcd.hookimpl
def vcd_transcript(site, text, confidence, audio_s, decode_ms):
    _write("vcd_transcript", site=site, text=text, confidence=confidence, audio_s=audio_s, decode_ms=decode_ms)


@vcd.hookimpl
def vcd_intent(site, intent, slots, text, confidence, timings):
    _write("vcd_intent", site=site, intent=intent, slots=slots, text=text, confidence=confidence, timings=timings)


@vcd.hookimpl
def vcd_unrecognized(site, text, confidence, audio_s):
    _write("vcd_unrecognized", site=site, text=text, confidence=confidence, audio_s=audio_s)


@vcd.hookimpl
def vcd_wake(site, name, score, timestamp):
    _write("vcd_wake", site=site, name=name, score=score, timestamp=timestamp)


@vcd.hookimpl
def vcd_feedback(site, kind, text):
    _write("vcd_feedback", site=site, kind=kind, text=text)


@vcd.hookimpl
def vcd_shutdown(reason):
    _write("vcd_shutdown", reason=reason)
'''


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """16 kHz float32 espeak-ng renderings of the test sentences."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("voices")
    result = {}
    for text in (COMMAND, NOT_A_COMMAND):
        path = folder / (text.replace(" ", "_") + ".wav")
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
        result[text] = read_audio(path)
    return result


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE_HZ), dtype=np.float32)


def write_wav(path: Path, *parts: np.ndarray) -> Path:
    soundfile.write(str(path), np.concatenate(parts), SAMPLE_RATE_HZ, subtype="PCM_16")
    return path


def pcm16(*parts: np.ndarray) -> bytes:
    return (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes()


def setup(tmp_path: Path, extra: str = "", plugins: dict[str, str] | None = None) -> Path:
    """A config with the console plugin (JSON lines) and the hook recorder; returns the config path."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "recorder.py").write_text(RECORDER)
    for name, code in (plugins or {}).items():
        (folder / f"{name}.py").write_text(textwrap.dedent(code))
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [daemon]
            site = "kitchen"
            [plugins]
            enabled = ["console"]
            dirs = ["plugins"]
            [plugins.console]
            format = "json"
            events = ["speech", "transcript", "intent", "unrecognized"]
            [plugins.recorder]
            path = "{tmp_path / 'hooks.jsonl'}"
            """
        )
        + (f'[recognizer]\nmodel = "{MODEL}"\n' if MODEL.exists() else "")
        + extra
    )
    return config


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VCD_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(extra)
    return env


def vcd_run(tmp_path: Path, *args: str, stdin: bytes | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vcd", "run", "--config", "config.toml", *args],
        cwd=tmp_path,
        env=environ(),
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )


def hooks(tmp_path: Path) -> list[dict]:
    path = tmp_path / "hooks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def console(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``vcd run`` in the background; stderr goes to tmp_path/stderr.log."""
    return subprocess.Popen(
        [sys.executable, "-m", "vcd", "run", "--config", "config.toml", *args],
        cwd=tmp_path,
        env=env or environ(),
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "stderr.log", "wb"),
    )


def listening(tmp_path: Path) -> bool:
    log = tmp_path / "stderr.log"
    return log.exists() and "listening on" in log.read_text()


# --- start-up errors (no model needed) -----------------------------------------------------


def test_a_plugin_rejecting_its_table_stops_start_up_before_audio_opens(tmp_path: Path) -> None:
    setup(tmp_path, '[plugins.example_command]\nHassTurnOn = "notify-send"\n')
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('enabled = ["console"]', 'enabled = ["console", "example_command"]'))
    # the microphone does not exist either: the plugin's config error must come first
    result = vcd_run(tmp_path, "--device", "no such microphone")
    assert result.returncode == 78, result.stderr
    assert result.stderr.decode().splitlines()[-1] == (
        "Error: config.toml: plugins.example_command.HassTurnOn: must be a program and its arguments, "
        "e.g. [\"notify-send\", \"hi\"] (got 'notify-send')"
    )
    assert "Traceback" not in result.stderr.decode()
    assert hooks(tmp_path) == []  # shipped plugins start first: the recorder was never started


def test_console_plugin_validates_its_table(tmp_path: Path) -> None:
    setup(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('format = "json"', 'format = "xml"'))
    result = vcd_run(tmp_path, "--input", "-", stdin=b"")
    assert result.returncode == 78
    assert result.stderr.decode().splitlines()[-1] == (
        "Error: config.toml: plugins.console.format: must be 'text' or 'json' (got 'xml')"
    )


CHECKED = """
import vcd


@vcd.hookimpl
def vcd_check_config(config):
    if config.plugin_table("checked").get("rooms", 1) < 1:
        raise config.key_error("plugins.checked.rooms", "must be at least 1")
"""


def test_check_config_runs_vcd_check_config_and_starts_nothing(tmp_path: Path) -> None:
    setup(tmp_path, "[plugins.checked]\nrooms = 0\n", plugins={"checked": CHECKED})
    result = subprocess.run([sys.executable, "-m", "vcd", "check-config", "--config", "config.toml"], cwd=tmp_path,
                            env=environ(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines()[-1] == "Error: config.toml: plugins.checked.rooms: must be at least 1"
    assert hooks(tmp_path) == []  # no vcd_startup: checking connects and starts nothing


# --- the pipeline ---------------------------------------------------------------------------


@needs_model
def test_a_spoken_command_calls_every_hook_in_order(tmp_path: Path, voices: dict[str, np.ndarray]) -> None:
    """vcd_startup, vcd_speech_started, vcd_speech_ended, vcd_transcript, vcd_intent, vcd_shutdown."""
    setup(tmp_path)
    write_wav(tmp_path / "command.wav", silence(1), voices[COMMAND], silence(1.5))
    before = time.time()
    result = vcd_run(tmp_path, "--input", "command.wav")
    assert result.returncode == 0, result.stderr.decode()
    calls = hooks(tmp_path)
    names = [c["hook"] for c in calls]
    assert names == [
        "vcd_startup",
        "vcd_speech_started",
        "vcd_speech_ended",
        "vcd_transcript",
        "vcd_intent",
        "vcd_feedback",
        "vcd_shutdown",
    ], result.stderr.decode()
    startup, started, ended, transcript, intent, feedback, shutdown = calls
    assert startup["thread"] == "MainThread"
    assert startup["site"] == "kitchen" and startup["config_path"] == "config.toml"
    assert (feedback["kind"], feedback["text"]) == ("recognized", "Turned on the kitchen light")
    for call in (started, ended, transcript, intent, feedback):
        assert call["thread"] == "vcd-plugin-recorder"
        assert call["site"] == "kitchen"
    assert before < started["timestamp"] <= ended["timestamp"] < time.time()
    assert 1.0 < ended["audio_s"] < 4.0
    assert transcript["text"] == COMMAND and 0.5 <= transcript["confidence"] <= 1
    assert transcript["decode_ms"] > 0 and transcript["audio_s"] == pytest.approx(ended["audio_s"], abs=0.05)
    assert intent["intent"] == "HassTurnOn"
    assert intent["slots"]["name"] == "kitchen light"
    assert intent["text"] == COMMAND
    timings = intent["timings"]
    assert set(timings) == {"audio_s", "decode_ms", "speech_end", "recognized_at"}
    assert timings["speech_end"] == pytest.approx(ended["timestamp"], abs=0.01)
    assert timings["speech_end"] <= timings["recognized_at"]
    assert shutdown["reason"] == "end of input"
    events = console(result)
    assert [e["event"] for e in events] == ["speech_started", "speech_ended", "transcript", "intent"]
    assert events[-1]["intent"] == "HassTurnOn" and events[-1]["slots"]["name"] == "kitchen light"


@needs_model
def test_speech_that_is_not_a_command_calls_vcd_unrecognized_only(
    tmp_path: Path, voices: dict[str, np.ndarray]
) -> None:
    setup(tmp_path)
    write_wav(tmp_path / "oov_fox.wav", silence(1), voices[NOT_A_COMMAND], silence(1.5))
    result = vcd_run(tmp_path, "--input", "oov_fox.wav")
    assert result.returncode == 0, result.stderr.decode()
    names = [c["hook"] for c in hooks(tmp_path)]
    assert "vcd_intent" not in names, hooks(tmp_path)
    assert names.count("vcd_unrecognized") == 1
    unrecognized = next(c for c in hooks(tmp_path) if c["hook"] == "vcd_unrecognized")
    assert unrecognized["thread"] == "vcd-plugin-recorder"
    assert isinstance(unrecognized["text"], str) and 0 <= unrecognized["confidence"] <= 1
    assert unrecognized["audio_s"] > 1.0


@needs_model
def test_silence_produces_nothing(tmp_path: Path) -> None:
    setup(tmp_path)
    rng = np.random.default_rng(1)
    hiss = (rng.standard_normal(4 * SAMPLE_RATE_HZ) * 0.002).astype(np.float32)
    write_wav(tmp_path / "silence.wav", silence(4), hiss)
    result = vcd_run(tmp_path, "--input", "silence.wav")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""
    assert [c["hook"] for c in hooks(tmp_path)] == ["vcd_startup", "vcd_shutdown"]


@needs_model
def test_raw_pcm_on_stdin_at_another_rate(tmp_path: Path, voices: dict[str, np.ndarray]) -> None:
    setup(tmp_path, "[audio]\ninput_rate_hz = 22050\nchannels = 2\n")
    path = tmp_path / "espeak.wav"
    subprocess.run(["espeak-ng", "-w", str(path), COMMAND], check=True)
    native, rate = soundfile.read(str(path), dtype="int16")
    assert rate == 22050
    quiet = np.zeros(rate, dtype=np.int16)
    mono = np.concatenate([quiet, native, quiet, quiet])
    stereo = np.stack([mono, mono], axis=1).astype("<i2").tobytes()
    result = vcd_run(tmp_path, "--input", "-", stdin=stereo)
    assert result.returncode == 0, result.stderr.decode()
    intents = [e for e in console(result) if e["event"] == "intent"]
    assert [(e["intent"], e["slots"]["name"]) for e in intents] == [("HassTurnOn", "kitchen light")]


@needs_model
def test_two_commands_in_one_file(tmp_path: Path, voices: dict[str, np.ndarray]) -> None:
    setup(tmp_path)
    write_wav(tmp_path / "two.wav", silence(1), voices[COMMAND], silence(1.5), voices[COMMAND], silence(0.2))
    result = vcd_run(tmp_path, "--input", "two.wav", "--site", "hall")
    assert result.returncode == 0, result.stderr.decode()
    intents = [c for c in hooks(tmp_path) if c["hook"] == "vcd_intent"]
    assert len(intents) == 2  # the second ends with the file: the VAD is flushed at the end of input
    assert {c["site"] for c in intents} == {"hall"}


@needs_model
def test_a_broken_plugin_does_not_silence_the_others(tmp_path: Path, voices: dict[str, np.ndarray]) -> None:
    broken = """
    import vcd

    @vcd.hookimpl
    def vcd_intent(intent):
        raise RuntimeError("broken on purpose")

    @vcd.hookimpl
    def vcd_shutdown(reason):
        raise RuntimeError("broken at shutdown too")
    """
    setup(tmp_path, plugins={"broken": broken})
    write_wav(tmp_path / "command.wav", silence(1), voices[COMMAND], silence(1.5))
    result = vcd_run(tmp_path, "--input", "command.wav")
    assert result.returncode == 0
    stderr = result.stderr.decode()
    assert 'plugin "broken": vcd_intent failed while handling intent HassTurnOn' in stderr
    assert 'plugin "broken": vcd_shutdown failed' in stderr
    assert [e["intent"] for e in console(result) if e["event"] == "intent"] == ["HassTurnOn"]
    assert [c["hook"] for c in hooks(tmp_path)][-3:] == ["vcd_intent", "vcd_feedback", "vcd_shutdown"]


# --- signals and systemd --------------------------------------------------------------------


@needs_model
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_daemon_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    setup(tmp_path)
    write_wav(tmp_path / "long.wav", silence(60))
    process = start(tmp_path, "--input", "long.wav", "--realtime")
    try:
        wait_for(lambda: listening(tmp_path), 240, "the daemon to start listening")
        sent = time.monotonic()
        process.send_signal(signum)
        assert process.wait(timeout=15) == 0
        took = time.monotonic() - sent
    finally:
        process.kill()
        process.wait()
    assert took < 5.0, f"stopping took {took:.1f} s"
    assert hooks(tmp_path)[-1] == {"hook": "vcd_shutdown", "thread": "vcd-shutdown-recorder",
                                   "reason": f"signal {signum.name}"}
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()


@needs_model
def test_systemd_notifications(tmp_path: Path) -> None:
    setup(tmp_path)
    write_wav(tmp_path / "quiet.wav", silence(2))
    path = tmp_path / "notify.sock"
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)

        def receive() -> None:  # as systemd does: read every message as it comes
            while not done.is_set():
                try:
                    messages.append(sock.recv(4096).decode())
                except TimeoutError:
                    continue

        done = threading.Event()
        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        env = environ(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="400000")
        process = start(tmp_path, "--input", "quiet.wav", "--realtime", env=env)
        try:
            assert process.wait(timeout=240) == 0
        finally:
            process.kill()
            time.sleep(0.3)
            done.set()
            reader.join()
    lines = [line for message in messages for line in message.splitlines()]
    assert "READY=1" in lines
    assert "WATCHDOG=1" in lines
    assert "STOPPING=1" in lines
    ready, stopping = lines.index("READY=1"), lines.index("STOPPING=1")
    assert ready < lines.index("WATCHDOG=1") < stopping
    assert any(line.startswith("STATUS=Listening on file quiet.wav") for line in lines)


# --- the microphone path, without hardware ------------------------------------------------


ASKER = """
import json

import vcd

_controls = None
_path = None


def _write(hook, **fields):
    with open(_path, "a") as fh:
        fh.write(json.dumps({"hook": hook, **fields}) + "\\n")


@vcd.hookimpl
def vcd_startup(config, controls):
    global _controls, _path
    _controls, _path = controls, config.plugin_table("asker")["path"]


@vcd.hookimpl
def vcd_feedback(site, kind, text):
    _write("vcd_feedback", site=site, kind=kind, text=text)
    if kind == "recognized":
        _controls.say("The kettle is on", request_id="kettle")  # answered by the feedback plugin's vcd_say


@vcd.hookimpl
def vcd_said(site, text, request_id):
    _write("vcd_said", site=site, text=text, request_id=request_id)
"""


@needs_model
def test_feedback_sound_answer_and_vcd_say_play_on_an_alsa_output(tmp_path: Path, voices: dict[str, np.ndarray]) -> None:
    """The real daemon with the feedback plugin on an ALSA ``file`` output: chime, response, then a plugin's say."""
    from conftest import alsa_output

    conf, raw = alsa_output(tmp_path)
    setup(tmp_path, f'[plugins.asker]\npath = "{tmp_path / "asked.jsonl"}"\n'
                    '[plugins.feedback]\ndevice = "vcdout"\nvolume = 1.0\n', plugins={"asker": ASKER})
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('enabled = ["console"]', 'enabled = ["console", "feedback"]'))
    write_wav(tmp_path / "command.wav", silence(1), voices[COMMAND], silence(1.5))
    env = environ(ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{conf}")
    result = subprocess.run([sys.executable, "-m", "vcd", "run", "--config", "config.toml", "--input", "command.wav"],
                            cwd=tmp_path, env=env, capture_output=True, timeout=240)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    if "feedback off: no audio output" in stderr:
        pytest.skip("PortAudio finds no ALSA output here")
    assert "feedback on vcdout (48000 Hz): sounds on, answers espeak-ng" in stderr
    asked = [json.loads(line) for line in (tmp_path / "asked.jsonl").read_text().splitlines()]
    assert asked == [
        {"hook": "vcd_feedback", "site": "kitchen", "kind": "recognized", "text": "Turned on the kitchen light"},
        {"hook": "vcd_said", "site": "kitchen", "text": "The kettle is on", "request_id": "kettle"},
    ]
    played = np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float32) / 32768
    loud = np.sqrt(np.mean(played[: len(played) // 960 * 960].reshape(-1, 960) ** 2, axis=1)) > 0.02  # 20 ms
    # the chime (0.34 s), "Turned on the kitchen light" and "The kettle is on": ~3 s of sound in all
    assert 2.5 < len(played) / 48000 < 5.0, len(played) / 48000
    assert loud.mean() > 0.4, loud.mean()


@needs_model
def test_a_microphone_through_alsa(tmp_path: Path, voices: dict[str, np.ndarray]) -> None:
    """An ALSA ``file`` pcm reading raw PCM (behind ``plug``) is a microphone to PortAudio."""
    raw = tmp_path / "mic.raw"
    raw.write_bytes(pcm16(silence(2), voices[COMMAND], silence(2)))
    alsa_conf = tmp_path / "asound.conf"
    alsa_conf.write_text(
        textwrap.dedent(
            f"""\
            pcm.vcdtest_file {{
                type file
                slave.pcm "null"
                file "/dev/null"
                infile "{raw}"
                format "raw"
            }}
            pcm.vcdtest {{
                type plug
                slave {{
                    pcm "vcdtest_file"
                    format S16_LE
                    rate 16000
                    channels 1
                }}
            }}
            """
        )
    )
    # the null pcm does not pace reads: a queue holding all the speech means nothing is dropped
    setup(tmp_path, "[audio]\nqueue_blocks = 1000\n")
    env = environ(ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{alsa_conf}")
    devices = subprocess.run(
        [sys.executable, "-m", "vcd", "devices"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert devices.returncode == 0, devices.stderr
    assert "vcdtest " in devices.stdout
    process = start(tmp_path, "--device", "vcdtest", env=env)
    try:
        wait_for(lambda: any(c["hook"] == "vcd_intent" for c in hooks(tmp_path)), 240, "an intent")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.wait()
    intents = [c for c in hooks(tmp_path) if c["hook"] == "vcd_intent"]
    assert [(c["intent"], c["slots"]["name"]) for c in intents] == [("HassTurnOn", "kitchen light")]
    log = (tmp_path / "stderr.log").read_text()
    assert "listening on microphone 'vcdtest'" in log


@needs_model
def test_the_example_plugin_runs_a_program_per_intent(tmp_path: Path, voices: dict[str, np.ndarray]) -> None:
    flag = tmp_path / "flags"
    flag.mkdir()
    setup(tmp_path, f'[plugins.example_command]\nHassTurnOn = ["touch", "{flag}/on {{name}}"]\n')
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('enabled = ["console"]', 'enabled = ["console", "example_command"]'))
    write_wav(tmp_path / "command.wav", silence(1), voices[COMMAND], silence(1.5))
    result = vcd_run(tmp_path, "--input", "command.wav")
    assert result.returncode == 0, result.stderr.decode()
    assert [p.name for p in flag.iterdir()] == ["on kitchen light"]


# --- the watchdog means "working" -----------------------------------------------------------


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; records every line with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._done.is_set():
            try:
                message = self._sock.recv(65536).decode()
            except TimeoutError:
                continue
            self.lines += [(time.monotonic(), line) for line in message.splitlines()]

    def since(self, t: float, prefix: str) -> list[str]:
        return [line for at, line in list(self.lines) if at >= t and line.startswith(prefix)]

    def wait_for(self, prefix: str, timeout: float, after: float = 0.0) -> float:
        """Wait for a line starting with ``prefix`` (after ``after``); returns when it came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if at >= after and line.startswith(prefix):
                    return at
            time.sleep(0.05)
        raise AssertionError(f"no {prefix!r} from vcd in {timeout} s; got {[line for _, line in self.lines][-20:]}")

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._sock.close()


SICK = """
import pathlib
import vcd

_flag = None


@vcd.hookimpl
def vcd_startup(config):
    global _flag
    _flag = pathlib.Path(config.plugin_table("sick")["flag"])


@vcd.hookimpl
def vcd_health():
    return _flag.read_text().strip() if _flag.exists() else None
"""


@needs_model
def test_vcd_health_problem_stops_the_watchdog_and_says_why_in_status(tmp_path: Path) -> None:
    flag = tmp_path / "sick.flag"
    setup(tmp_path, f'[plugins.sick]\nflag = "{flag}"\n', plugins={"sick": SICK})
    write_wav(tmp_path / "quiet.wav", silence(120))
    notify = NotifySocket(tmp_path / "notify.sock")
    env = environ(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000")  # a ping every 0.2 s while working
    process = start(tmp_path, "--input", "quiet.wav", "--realtime", env=env)
    try:
        notify.wait_for("WATCHDOG=1", 240)
        flag.write_text("the widget is unplugged\n")
        broken = notify.wait_for('STATUS=Not working: plugin "sick": the widget is unplugged', 10)
        time.sleep(2.0)
        assert notify.since(broken, "WATCHDOG=1") == []  # not one ping while the plugin says it is broken
        flag.unlink()
        mended = notify.wait_for("STATUS=Listening on file quiet.wav", 10, after=broken)
        notify.wait_for("WATCHDOG=1", 5, after=mended)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.wait()
        notify.close()
    log = (tmp_path / "stderr.log").read_text()
    assert log.count('not working: plugin "sick": the widget is unplugged') == 1  # once, though checked every second
    assert "working again: listening on file quiet.wav" in log


class FakeMicrophone:
    """The far end of an ALSA ``file`` pcm whose ``infile`` is a FIFO: a microphone a test can plug in and pull.

    While plugged in, it writes silence at real time (30 ms chunks), or what :meth:`say` queued; PortAudio
    opening and closing the pcm to list devices breaks the pipe, so it reopens it whenever that happens.
    :meth:`pull` removes the FIFO (the device is gone: opening it fails) and stops writing, keeping its end
    open (the open stream stalls, as one does when a USB microphone is pulled out under PipeWire; closing
    it would make ALSA's file pcm deliver endless silence instead).
    """

    CHUNK = SAMPLE_RATE_HZ * 30 // 1000

    def __init__(self, fifo: Path) -> None:
        self.fifo = fifo
        self._queue: list[np.ndarray] = []
        self._plugged = threading.Event()
        self._pulled = False
        self._done = threading.Event()
        self.said = threading.Event()  # set when the queued speech has been written
        self._thread: threading.Thread | None = None

    def plug_in(self) -> None:
        os.mkfifo(self.fifo)
        self._plugged.set()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def say(self, audio: np.ndarray) -> None:
        self.said.clear()
        self._queue.append(audio)

    def pull(self) -> None:
        self._pulled = True
        self._plugged.clear()
        self.fifo.unlink()

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(5)
        if not self._pulled and self.fifo.exists():
            self.fifo.unlink()

    def _write(self) -> None:
        fd = None
        started, written = time.monotonic(), 0
        pending = np.zeros(0, dtype=np.float32)
        try:
            while not self._done.is_set():
                if not self._plugged.is_set():
                    time.sleep(0.05)  # pulled out: silent, the pipe held open
                    continue
                if fd is None:
                    try:
                        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until a reader opens it
                    except OSError:
                        time.sleep(0.01)
                        continue
                    os.set_blocking(fd, True)
                    started, written = time.monotonic(), 0
                if not pending.size and self._queue:
                    pending = self._queue.pop(0)
                chunk, pending = (pending[: self.CHUNK], pending[self.CHUNK :]) if pending.size else (silence(0.03), pending)
                if not pending.size and not self._queue:
                    self.said.set()
                try:
                    os.write(fd, pcm16(chunk))
                except BrokenPipeError:
                    os.close(fd)
                    fd = None
                    continue
                written += len(chunk)
                time.sleep(max(0.0, started + written / SAMPLE_RATE_HZ - time.monotonic()))
        finally:
            if fd is not None:
                os.close(fd)


@needs_model
def test_a_microphone_missing_at_start_then_pulled_out_is_waited_for_and_picked_up(
    tmp_path: Path, voices: dict[str, np.ndarray]
) -> None:
    """No microphone at start: vcd starts, says so, and retries; it is plugged in, a command works; it is pulled
    out (the stream stalls, the device is gone): no watchdog pings, STATUS says why; back in: a command works."""
    fifo = tmp_path / "mic.fifo"
    alsa_conf = tmp_path / "asound.conf"
    alsa_conf.write_text(
        textwrap.dedent(
            f"""\
            pcm.vcdtest_file {{
                type file
                slave.pcm "null"
                file "/dev/null"
                infile "{fifo}"
                format "raw"
            }}
            pcm.vcdtest {{
                type plug
                slave {{
                    pcm "vcdtest_file"
                    format S16_LE
                    rate 16000
                    channels 1
                }}
            }}
            """
        )
    )
    setup(tmp_path)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = environ(
        ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{alsa_conf}", NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000"
    )
    mic = FakeMicrophone(fifo)
    pulled_mic = None
    process = start(tmp_path, "--device", "vcdtest", env=env)
    log = tmp_path / "stderr.log"
    try:
        # "no input device matches 'vcdtest'", or "no audio input devices found" where it would be the only one
        notify.wait_for("STATUS=Waiting for microphone 'vcdtest': microphone: no ", 120)
        time.sleep(3.5)  # a few retries (1 s, 2 s …)
        assert notify.since(0, "WATCHDOG=1") == []  # no audio, no pings
        mic.plug_in()
        wait_for(lambda: "is there now; listening" in log.read_text(), 30, "the microphone to be opened")
        notify.wait_for("WATCHDOG=1", 10)
        mic.say(np.concatenate([voices[COMMAND], silence(1.5)]))
        wait_for(lambda: sum(c["hook"] == "vcd_intent" for c in hooks(tmp_path)) == 1, 60, "the first intent")

        mic.pull()
        pulled = time.monotonic()
        lost = notify.wait_for("STATUS=Not working: ", 10, after=pulled)
        time.sleep(1.0)
        assert notify.since(lost, "WATCHDOG=1") == []
        pulled_mic, mic = mic, FakeMicrophone(fifo)
        mic.plug_in()
        wait_for(lambda: log.read_text().count("is there now; listening") == 2, 30, "the microphone to be back")
        notify.wait_for("WATCHDOG=1", 10, after=lost + 1.0)
        mic.say(np.concatenate([voices[COMMAND], silence(1.5)]))
        wait_for(lambda: sum(c["hook"] == "vcd_intent" for c in hooks(tmp_path)) == 2, 60, "the second intent")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.wait()
        mic.close()
        if pulled_mic is not None:
            pulled_mic.close()
        notify.close()
    text = log.read_text()
    missing = [line for line in text.splitlines() if "WARNING vcd.sources: microphone: no " in line]
    assert len(missing) == 1, text  # logged once, though looked for again every 1, 2, 4 … s
    assert "microphone 'vcdtest' (#" in text and ": no audio for 3 s; opening it again" in text
    intents = [c for c in hooks(tmp_path) if c["hook"] == "vcd_intent"]
    # Through the FIFO the audio arrives altered (run 21 scores the first command 0.72 here against 0.98 from a
    # file, and hears the second as "… kitchen lights"): the test is of the microphone coming and going.
    assert [(c["intent"], c["text"].startswith(COMMAND)) for c in intents] == [("HassTurnOn", True)] * 2, intents
    assert "Traceback" not in text


# --- SIGTERM while starting up ----------------------------------------------------------------


@needs_model
def test_sigterm_during_start_up_takes_the_orderly_path(tmp_path: Path, broker: Any, subscriber: Any) -> None:
    """At once after the configuration is read, and once the broker has the daemon "online" (the model is
    loading or just loaded): exit 0, no traceback, and "offline" published when connected."""
    setup(tmp_path, f'[plugins.mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n')
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('enabled = ["console"]', 'enabled = ["console", "mqtt"]'))
    write_wav(tmp_path / "quiet.wav", silence(60))
    log = tmp_path / "stderr.log"

    process = start(tmp_path, "--input", "quiet.wav", "--realtime")
    try:
        wait_for(lambda: log.exists() and "configuration config.toml" in log.read_text(), 60, "the configuration")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        process.kill()
        process.wait()
    text = log.read_text()
    assert "received SIGTERM" in text and "Traceback" not in text
    assert "stopping before start (signal SIGTERM)" in text
    assert [c["hook"] for c in hooks(tmp_path)] in ([], ["vcd_startup", "vcd_shutdown"])

    process = start(tmp_path, "--input", "quiet.wav", "--realtime")
    try:
        subscriber.wait_for("vcd/kitchen/status", timeout_s=60, payload="online")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        process.kill()
        process.wait()
    subscriber.wait_for("vcd/kitchen/status", timeout_s=10, payload="offline")
    assert "Traceback" not in log.read_text()


# --- noise that must not act ------------------------------------------------------------------


@needs_model
def test_white_noise_steady_and_in_bursts_gives_no_command(tmp_path: Path) -> None:
    """Steady white noise is cut at vad.max_speech_ms and skipped before decoding; bursts of a command's
    length are decoded and rejected by the recogniser.  (benchmarks/noise_commands.py: the long version.)"""
    setup(tmp_path)
    rng = np.random.default_rng(7)
    steady = (rng.standard_normal(20 * SAMPLE_RATE_HZ) * 0.1).astype(np.float32)
    bursts = [part for _ in range(6) for part in (silence(1.5), (rng.standard_normal(int(rng.uniform(0.5, 2.5) *
              SAMPLE_RATE_HZ)) * 0.1).astype(np.float32))]
    write_wav(tmp_path / "noise.wav", steady, *bursts, silence(1.5))
    result = vcd_run(tmp_path, "--input", "noise.wav")
    assert result.returncode == 0, result.stderr.decode()
    names = [c["hook"] for c in hooks(tmp_path)]
    assert "vcd_intent" not in names, hooks(tmp_path)
    ended, decoded = names.count("vcd_speech_ended"), names.count("vcd_transcript")
    assert ended >= 6 and decoded <= ended - 2  # the two 8 s cuts of steady noise were never decoded


@needs_model
def test_a_plugin_raising_in_every_hook_logs_each_traceback_once_then_counts(
    tmp_path: Path, voices: dict[str, np.ndarray]
) -> None:
    broken = """
    import vcd

    @vcd.hookimpl
    def vcd_speech_started(site):
        raise RuntimeError("broken at the start")

    @vcd.hookimpl
    def vcd_speech_ended(site):
        raise RuntimeError("broken at the end")

    @vcd.hookimpl
    def vcd_transcript(text):
        raise RuntimeError("broken transcript")

    @vcd.hookimpl
    def vcd_intent(intent):
        raise RuntimeError("broken on purpose")
    """
    setup(tmp_path, plugins={"broken": broken})
    parts = [silence(1)] + [p for _ in range(3) for p in (voices[COMMAND], silence(1.5))]
    write_wav(tmp_path / "three.wav", *parts)
    result = vcd_run(tmp_path, "--input", "three.wav")
    assert result.returncode == 0, result.stderr.decode()
    stderr = result.stderr.decode()
    assert [e["event"] for e in console(result)].count("intent") == 3  # the others still run
    assert stderr.count("Traceback") == 4, stderr  # 12 failures: one traceback per hook
    for hook, last in (("vcd_speech_started", "broken at the start"), ("vcd_speech_ended", "broken at the end"),
                       ("vcd_transcript", "broken transcript"), ("vcd_intent", "broken on purpose")):
        assert f'plugin "broken": {hook} failed while handling' in stderr
        assert f'plugin "broken" raised in {hook} 2 more times in the last ' in stderr
        assert f"(last: RuntimeError: {last})" in stderr


@needs_model
def test_with_a_wake_word_only_the_command_after_it_is_recognised(
    tmp_path: Path, voices: dict[str, np.ndarray]
) -> None:
    """[wake] enabled: "turn off the tv" before "alexa" is ignored; the command after it calls vcd_intent."""
    setup(tmp_path, "[wake]\nenabled = true\nmodel = \"alexa\"\nwindow_ms = 4000\n")
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace('events = ["speech", ', 'events = ["wake", '))
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "alexa.wav"), "alexa"], check=True)
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "tv.wav"), "turn off the tv"], check=True)
    alexa, tv = read_audio(tmp_path / "alexa.wav"), read_audio(tmp_path / "tv.wav")
    write_wav(tmp_path / "wake.wav", silence(1), tv, silence(1.5), alexa, silence(1.2), voices[COMMAND], silence(1.5))
    before = time.time()
    result = vcd_run(tmp_path, "--input", "wake.wav")
    assert result.returncode == 0, result.stderr.decode()
    calls = [c for c in hooks(tmp_path) if c["hook"] not in ("vcd_speech_started", "vcd_speech_ended")]
    assert [c["hook"] for c in calls] == [
        "vcd_startup", "vcd_wake", "vcd_feedback", "vcd_transcript", "vcd_intent", "vcd_feedback", "vcd_shutdown"
    ], result.stderr.decode()
    wake, intent = calls[1], calls[4]
    assert [(c["kind"], c["text"]) for c in calls if c["hook"] == "vcd_feedback"] == [
        ("wake", None), ("recognized", "Turned on the kitchen light")]
    assert wake["thread"] == "vcd-plugin-recorder" and wake["site"] == "kitchen" and wake["name"] == "alexa"
    assert 0.5 < wake["score"] <= 1.0 and before < wake["timestamp"] < intent["timings"]["speech_end"]
    assert (intent["intent"], intent["slots"]["name"]) == ("HassTurnOn", "kitchen light")
    assert [c["hook"] for c in hooks(tmp_path)].count("vcd_speech_ended") == 3  # the VAD still hears everything
    events = console(result)
    assert [e["event"] for e in events] == ["wake", "transcript", "intent"]
    assert events[0]["name"] == "alexa" and events[0]["site"] == "kitchen"


@needs_model
def test_a_satellites_speech_carries_its_site_and_its_feedback_comes_back(
    tmp_path: Path, voices: dict[str, np.ndarray]
) -> None:
    """``vcd satellite`` → broker → a hub with no microphone: the hooks carry the satellite's site; the
    satellite's own plugins get ``vcd_feedback`` sent to it (docs/satellites.md)."""
    from conftest import MOSQUITTO, Broker

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    broker.start()
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "recorder.py").write_text(RECORDER)
    model = f'[recognizer]\nmodel = "{MODEL}"\n'
    (tmp_path / "config.toml").write_text(
        f'[daemon]\nsite = "hub"\n[audio]\nsource = "none"\n{model}[plugins]\nenabled = ["satellites"]\n'
        f'dirs = ["plugins"]\n[plugins.recorder]\npath = "{tmp_path / "hooks.jsonl"}"\n'
        f'[plugins.satellites]\nport = {broker.port}\nhost = "{broker.host}"\n'
    )
    (tmp_path / "sat.toml").write_text(
        f'[daemon]\nsite = "porch"\n[satellite]\nport = {broker.port}\nhost = "{broker.host}"\n[plugins]\n'
        f'enabled = []\ndirs = ["plugins"]\n[plugins.recorder]\npath = "{tmp_path / "satellite.jsonl"}"\n'
    )
    wav = write_wav(tmp_path / "porch.wav", silence(0.5), voices[COMMAND], silence(1.5))
    hub = start(tmp_path)
    satellite = None
    try:
        wait_for(lambda: listening(tmp_path), 120, "the hub to listen")
        satellite = subprocess.Popen(
            [sys.executable, "-m", "vcd", "satellite", "--config", "sat.toml", "--input", "-"], cwd=tmp_path,
            env=environ(), stdin=subprocess.PIPE, stderr=open(tmp_path / "satellite.log", "wb"))
        assert satellite.stdin is not None
        satellite.stdin.write(pcm16(read_audio(wav)))
        satellite.stdin.flush()
        wait_for(lambda: any(c["hook"] == "vcd_intent" for c in hooks(tmp_path)), 60, "the satellite's command")
        calls = {c["hook"]: c for c in hooks(tmp_path)}
        assert calls["vcd_transcript"]["site"] == calls["vcd_intent"]["site"] == "porch"
        assert calls["vcd_intent"]["slots"] == {"name": "kitchen light"}
        assert "vcd_speech_started" not in calls  # the satellite's VAD heard it, not the hub's

        feedback = json.dumps({"kind": "recognized", "text": "The kitchen light is on"})
        subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t",
                        "vcd/satellite/porch/feedback", "-m", feedback], check=True)

        def satellite_calls() -> list[dict]:
            return [json.loads(line) for line in (tmp_path / "satellite.jsonl").read_text().splitlines()]

        def feedback_calls() -> list[tuple]:
            return [(c["site"], c["kind"], c["text"], c["thread"]) for c in satellite_calls()
                    if c["hook"] == "vcd_feedback"]

        wait_for(lambda: len(feedback_calls()) >= 2, 30, "vcd_feedback")
        assert sorted(feedback_calls()) == [  # ours, and the hub's own after the command (its response), any order
            ("porch", "recognized", "The kitchen light is on", "vcd-plugin-recorder"),
            ("porch", "recognized", "Turned on the kitchen light", "vcd-plugin-recorder"),
        ]
        assert any(c["hook"] == "vcd_speech_ended" and c["site"] == "porch" for c in satellite_calls())
        satellite.send_signal(signal.SIGTERM)
        assert satellite.wait(30) == 0
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(30) == 0
    finally:
        for proc in (satellite, hub):
            if proc is not None and proc.poll() is None:
                proc.kill()
        broker.stop()
