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
        "vcd_shutdown",
    ], result.stderr.decode()
    startup, started, ended, transcript, intent, shutdown = calls
    assert startup["thread"] == "MainThread"
    assert startup["site"] == "kitchen" and startup["config_path"] == "config.toml"
    for call in (started, ended, transcript, intent):
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
    assert [c["hook"] for c in hooks(tmp_path)][-2:] == ["vcd_intent", "vcd_shutdown"]


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

        wait_for(lambda: any(c["hook"] == "vcd_feedback" for c in satellite_calls()), 30, "vcd_feedback")
        got = next(c for c in satellite_calls() if c["hook"] == "vcd_feedback")
        assert (got["site"], got["kind"], got["text"], got["thread"]) == (
            "porch", "recognized", "The kitchen light is on", "vcd-plugin-recorder")
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
