"""Shared test fixtures: a real mosquitto broker, an MQTT subscriber, synthesised speech, the real daemon."""

from __future__ import annotations

import builtins
import contextlib
import getpass
import io
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parent.parent
SAMPLE_RATE_HZ = 16000


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs a command in-process (``main_train``, ``vcd.cli.main``) sets the root logger up
    (:func:`vcd.cli.setup_logging`); put it back, so that what later tests log does not depend on their order."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for handler in [h for h in root.handlers if h not in handlers and type(h) is logging.StreamHandler]:
        root.removeHandler(handler)  # setup_logging's; pytest's own capture handlers are subclasses


def find_program(name: str) -> str | None:
    """``name`` on PATH or in the sbin folders (mosquitto lives in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


MOSQUITTO = find_program("mosquitto")
ESPEAK = find_program("espeak-ng")

requires_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto is not installed (scripts/install.sh installs it)"
)
requires_espeak = pytest.mark.skipif(
    ESPEAK is None, reason="espeak-ng is not installed (scripts/install.sh installs it)"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` has passed; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


# --- mosquitto -----------------------------------------------------------------------------------


class Broker:
    """A real mosquitto on 127.0.0.1:``port`` that a test can stop, kill and start again on the same port."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        persistent: bool = False,
        head: tuple[str, ...] = (),
        tail: tuple[str, ...] = (),
    ):
        """``persistent``: keep sessions and their queued messages across a stop/start (saved on SIGTERM),
        so a durable subscriber misses nothing published while it was reconnecting.  ``head`` and
        ``tail``: configuration lines before and after those of the plain listener on ``port``
        (e.g. ``per_listener_settings true`` and a second listener with TLS or passwords)."""
        self.port = port or free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [*head, f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        if persistent:
            lines += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 0"]
        else:
            lines.append("persistence false")
        lines += tail
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # stay root: no privilege drop to a "mosquitto" user
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        if not wait_until(self._accepts, 10):
            self.stop()
            raise RuntimeError(f"mosquitto did not start on port {self.port}: {self.log.read_text()[-2000:]}")

    def _accepts(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"mosquitto exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
            return True
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh mosquitto for one test (started; stopped afterwards)."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (scripts/install.sh installs it)")
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float  # time.time() when the subscriber's callback ran

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A real paho client subscribed to ``topics`` (default ``#``) that records every message."""

    broker: Broker
    topics: tuple[str, ...] = ("#",)
    durable: bool = False  # a persistent session (clean_session false): the broker queues QoS ≥ 1 while it is away
    # A durable session is found again by its client id, so every durable subscriber of one broker shares
    # one fixed id; other subscribers get a unique one.
    client_id: str = ""
    messages: queue.Queue[Received] = field(default_factory=queue.Queue)
    seen: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt

        self._subscribed = False
        if not self.client_id:
            self.client_id = f"test-durable-{self.broker.port}" if self.durable else f"test-sub-{os.getpid()}-{id(self)}"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=not self.durable,
        )
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: setattr(self, "_subscribed", True)
        self.client.on_message = self._on_message
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if not wait_until(lambda: self._subscribed, 10):
            raise RuntimeError("the test subscriber could not subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe([(t, 2) for t in self.topics])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.messages.put(Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, time.time()))

    def get(self, timeout_s: float = 10) -> Received:
        """The next message; fails the test when none comes in ``timeout_s``."""
        try:
            message = self.messages.get(timeout=timeout_s)
        except queue.Empty:
            pytest.fail(f"no MQTT message within {timeout_s} s (seen so far: {[m.topic for m in self.seen]})")
        self.seen.append(message)
        return message

    def wait_for(self, topic: str, timeout_s: float = 10, payload: str | None = None) -> Received:
        """The next message on ``topic`` (and with ``payload``, when given); others are skipped but kept in ``seen``."""
        deadline = time.monotonic() + timeout_s
        while True:
            message = self.get(max(0.01, deadline - time.monotonic()))
            if message.topic == topic and (payload is None or message.text == payload):
                return message

    def drain(self, quiet_s: float = 0.5, expect: int = 0, timeout_s: float = 10) -> list[Received]:
        """Every message until none has come for ``quiet_s``, once ``expect`` have come (waiting up to
        ``timeout_s`` for those, however slow the machine: a quiet spell before them ends nothing)."""
        out = []
        deadline = time.monotonic() + timeout_s
        while True:
            wait = max(quiet_s, deadline - time.monotonic()) if len(out) < expect else quiet_s
            try:
                message = self.messages.get(timeout=wait)
            except queue.Empty:
                return out
            self.seen.append(message)
            out.append(message)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    """A subscriber to ``#`` on the test broker."""
    sub = Subscriber(broker)
    yield sub
    sub.close()


# --- synthesised speech --------------------------------------------------------------------------


_SPEECH_CACHE: dict[str, np.ndarray] = {}


def speak(text: str, voice: str = "en-us", words_per_minute: int = 150) -> np.ndarray:
    """``text`` spoken by espeak-ng as 16 kHz mono float32 (cached per text and voice)."""
    key = f"{voice}|{words_per_minute}|{text}"
    if key not in _SPEECH_CACHE:
        if ESPEAK is None:
            pytest.skip("espeak-ng is not installed (scripts/install.sh installs it)")
        from vcd.audio import to_mono_16k

        result = subprocess.run(
            [ESPEAK, "-v", voice, "-s", str(words_per_minute), "--stdout", text], check=True, capture_output=True
        )
        samples, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
        _SPEECH_CACHE[key] = to_mono_16k(samples, rate)
    return _SPEECH_CACHE[key]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SAMPLE_RATE_HZ)), dtype=np.float32)


def noise(seconds: float, level: float = 0.003, seed: int = 0) -> np.ndarray:
    """Quiet white noise (a room), which the VAD should not take for speech."""
    return (np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE_HZ)) * level).astype(np.float32)


def utterances(*parts: str | float, lead_s: float = 0.5, tail_s: float = 1.5) -> np.ndarray:
    """Concatenate spoken texts (str) and pauses (float, seconds), with silence before and after."""
    pieces = [silence(lead_s)]
    for part in parts:
        pieces.append(silence(part) if isinstance(part, int | float) else speak(part))
    pieces.append(silence(tail_s))
    return np.concatenate(pieces)


ALSA_OUTPUT = """\
pcm.vcdout_file {{
    type file
    slave.pcm "null"
    file "| cat >> {raw}"
    format "raw"
}}
pcm.vcdout {{
    type plug
    slave {{ pcm "vcdout_file"; format S16_LE; rate 48000; channels 1 }}
}}
"""


def alsa_output(tmp_path: Path) -> tuple[Path, Path]:
    """An ALSA output device ``vcdout`` that appends what is played (48 kHz S16 mono) to a file.

    Returns (the asound.conf to add to ``ALSA_CONFIG_PATH``, the raw file that collects the samples).
    """
    raw = tmp_path / "played.raw"
    conf = tmp_path / "asound.conf"
    conf.write_text(ALSA_OUTPUT.format(raw=raw))
    return conf, raw


def write_wav(path: Path, audio: np.ndarray) -> Path:
    soundfile.write(str(path), audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    return path


def to_pcm16(audio: np.ndarray) -> bytes:
    """Raw s16le bytes, what ``vcd run --input -`` reads."""
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


@pytest.fixture
def speech_wav(tmp_path: Path) -> Any:
    """``speech_wav("turn on the kitchen light", 1.0, "turn off the tv")`` → a WAV file path."""
    counter = iter(range(1_000_000))

    def make(*parts: str | float, lead_s: float = 0.5, tail_s: float = 1.5) -> Path:
        return write_wav(tmp_path / f"speech-{next(counter)}.wav", utterances(*parts, lead_s=lead_s, tail_s=tail_s))

    return make


# --- configuration files ---------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A TOML literal for the plain values tests use (str, bool, numbers, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def toml_document(sections: dict[str, dict[str, Any]]) -> str:
    """``{"daemon": {"site": "x"}, "plugins.mqtt": {...}}`` → TOML text; list-of-dict values become [[arrays]]."""
    out = []
    for name, table in sections.items():
        out.append(f"[{name}]")
        arrays = {}
        for key, value in table.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                arrays[key] = value
            else:
                out.append(f"{key} = {toml_value(value)}")
        for key, entries in arrays.items():
            for entry in entries:
                out.append(f"\n[[{name}.{key}]]")
                out.extend(f"{k} = {toml_value(v)}" for k, v in entry.items())
        out.append("")
    return "\n".join(out)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    path.write_text(toml_document(sections))
    return path


# --- the real daemon -------------------------------------------------------------------------------


def decodes_in_the_daemon(recognizer: Any, audio: np.ndarray) -> list[tuple[str, np.ndarray, Any, Any]]:
    """Run the real :class:`vcd.daemon.Daemon` (no plugins) over ``audio`` with ``recognizer`` and return what
    each of the recogniser's decodes got, in order: (the thread's name, the samples, ``speech``, ``denoised``)."""
    import threading

    import pluggy

    from vcd import hookspecs
    from vcd.config import Config
    from vcd.daemon import Daemon
    from vcd.errors import ExitCode
    from vcd.plugins import PluginHost
    from vcd.sources import MemorySource

    seen: list[tuple[str, np.ndarray, Any, Any]] = []
    decode = recognizer._decode  # what decode() and complete() both search with

    def spy(samples, denoise, speech, ask, denoised=None):
        seen.append((threading.current_thread().name, np.array(samples), speech, denoised))
        return decode(samples, denoise, speech, ask, denoised)

    recognizer._decode = spy
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins = PluginHost(pm, [])
    config = Config()
    plugins.startup(config)
    plugins.start_workers()
    daemon = Daemon(config, recognizer, plugins, MemorySource(config.audio, audio, "test audio"))
    assert daemon.run() == ExitCode.OK
    return seen


def vcd_command() -> list[str]:
    """How to run the installed ``vcd`` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "vcd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "vcd"]


@dataclass
class Daemon:
    """A running ``vcd run`` subprocess; stdout/stderr go to a log file the test can read."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def feed(self, pcm: bytes, realtime: bool = False, chunk_s: float = 0.1) -> None:
        """Write raw s16le 16 kHz audio to the daemon's stdin (paced at real time when asked)."""
        assert self.process.stdin is not None
        step = int(chunk_s * SAMPLE_RATE_HZ) * 2
        for start in range(0, len(pcm), step):
            self.process.stdin.write(pcm[start : start + step])
            self.process.stdin.flush()
            if realtime:
                time.sleep(chunk_s)

    def close_input(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout_s: float = 60) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            pytest.fail(f"vcd did not exit within {timeout_s} s; log:\n{self.log[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.close_input()


@pytest.fixture
def run_vcd(tmp_path: Path) -> Iterator[Any]:
    """``run_vcd(config_path, "--input", wav)`` → a started :class:`Daemon` (killed after the test if still running)."""
    started: list[Daemon] = []

    def start(config: Path, *args: str, stdin: bool = False, env: dict[str, str] | None = None) -> Daemon:
        log_path = tmp_path / f"vcd-{len(started)}.log"
        command = [*vcd_command(), "run", "--config", str(config), *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("NOTIFY_SOCKET", None)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=tmp_path,
            )
        daemon = Daemon(process, log_path)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def without_module(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``import module`` fail as it does where the package is not installed."""
    real_import = builtins.__import__

    def importer(name, *args, **kwargs):
        if name == module:
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", importer)
