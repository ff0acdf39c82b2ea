"""Satellites over the broker, end to end: real ``vcd satellite`` and ``vcd run`` processes, a real mosquitto.

Hubs run with ``audio.source = "none"`` and the satellites plugin; satellites play espeak-ng speech
with ``--input``.  Shared subscriptions need MQTT 5 (mosquitto ≥ 1.6).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Broker,
    Subscriber,
    requires_espeak,
    requires_mosquitto,
    to_pcm16,
    utterances,
    vcd_command,
    wait_until,
    write_config,
    write_wav,
)

pytestmark = [requires_mosquitto, requires_espeak]

COMMANDS = [
    ("turn on the kitchen light", "HassTurnOn", {"name": "kitchen light"}),
    ("turn off the bedroom light", "HassTurnOff", {"name": "bedroom light"}),
    ("set the living room to twenty one degrees", "HassClimateSetTemperature",
     {"area": "living room", "temperature": 21}),
]


class Proc:
    """A ``vcd`` subprocess whose output goes to a log file."""

    def __init__(self, tmp_path: Path, name: str, *args: str, stdin: bool = False) -> None:
        self.log_path = tmp_path / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([*vcd_command(), *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=tmp_path, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"did not exit in {timeout_s} s:\n{self.log[-3000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def procs() -> Any:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


def hub_config(tmp_path: Path, broker: Broker, name: str, mqtt: dict[str, Any] | None = None,
               **satellites: Any) -> Path:
    return write_config(tmp_path / f"{name}.toml", {
        "daemon": {"site": name},
        "audio": {"source": "none"},
        "plugins": {"enabled": ["satellites", "mqtt"]},
        "plugins.satellites": {"host": broker.host, "port": broker.port, **satellites},
        "plugins.mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                         **(mqtt or {})},
    })


def satellite_config(tmp_path: Path, broker: Broker, site: str, **satellite: Any) -> Path:
    return write_config(tmp_path / f"sat-{site}.toml", {
        "daemon": {"site": site},
        "satellite": {"host": broker.host, "port": broker.port, "hold_s": 30.0, **satellite},
        "plugins": {"enabled": []},
    })


def start_hub(tmp_path: Path, broker: Broker, procs: list[Proc], name: str, mqtt: dict[str, Any] | None = None,
              **satellites: Any) -> Proc:
    hub = Proc(tmp_path, name, "run", "--config", str(hub_config(tmp_path, broker, name, mqtt, **satellites)))
    procs.append(hub)
    assert wait_until(lambda: "listening on no local audio" in hub.log, 90), hub.log
    return hub


def start_satellite(tmp_path: Path, broker: Broker, procs: list[Proc], site: str, *args: str, **satellite: Any) -> Proc:
    config = satellite_config(tmp_path, broker, site, **satellite)
    sat = Proc(tmp_path, f"sat-{site}", "satellite", "--config", str(config), *args, stdin="-" in args)
    procs.append(sat)
    return sat


def intents(sub: Subscriber, quiet_s: float = 2.0) -> list[dict[str, Any]]:
    return [m.json() for m in sub.drain(quiet_s) if "/intent/" in m.topic]


def test_two_hubs_share_six_satellites_each_command_once(tmp_path: Path, broker: Broker, procs: list[Proc]) -> None:
    sub = Subscriber(broker, topics=("vcd/+/intent/#",))
    hubs = [start_hub(tmp_path, broker, procs, name) for name in ("hub-a", "hub-b")]
    expected = collections.Counter()
    sats = []
    for n in range(6):
        first, second = COMMANDS[n % 3], COMMANDS[(n + 1) % 3]
        wav = write_wav(tmp_path / f"room{n}.wav", utterances(first[0], 1.5, second[0]))
        sats.append(start_satellite(tmp_path, broker, procs, f"room{n}", "--input", str(wav)))
        for _, intent, _ in (first, second):
            expected[(f"room{n}", intent)] += 1
    for sat in sats:
        assert sat.wait(120) == 0, sat.log
    assert wait_until(lambda: sum(h.log.count("asr: intent") for h in hubs) >= 12, 60), [h.log for h in hubs]
    got = intents(sub)
    sub.close()
    assert collections.Counter((p["site"], p["intent"]) for p in got) == expected
    for payload in got:
        said = next(c for c in COMMANDS if c[1] == payload["intent"])
        assert payload["slots"] == said[2]
    assert all(h.log.count("asr: intent") >= 1 for h in hubs), "the shared subscription gave one hub everything"


def test_a_hub_that_dies_with_segments_queued_for_it_loses_at_most_the_one_it_was_decoding(
    tmp_path: Path, broker: Broker, procs: list[Proc]
) -> None:
    """Hub A freezes (SIGSTOP) while 3 satellites talk, so the broker queues its share for it, then is killed:
    the satellites send again what no hub receipted, hub B decodes it; every command once, but for at most
    the one hub A was decoding (receipted, not yet published) when it froze."""
    sub = Subscriber(broker, topics=("vcd/+/intent/#",))
    hub_a = start_hub(tmp_path, broker, procs, "hub-a")
    hub_b = start_hub(tmp_path, broker, procs, "hub-b")
    sats = []
    for n in range(3):
        wav = write_wav(tmp_path / f"room{n}.wav", utterances(*[p for c in COMMANDS for p in (c[0], 2.0)]))
        sats.append(start_satellite(tmp_path, broker, procs, f"room{n}", "--input", str(wav), "--realtime",
                                    retry_s=3.0))
    assert wait_until(lambda: hub_a.log.count("asr: intent") >= 1, 60), hub_a.log
    hub_a.process.send_signal(signal.SIGSTOP)
    time.sleep(4.0)  # segments go to the frozen hub too
    hub_a.kill()
    for sat in sats:
        assert sat.wait(120) == 0, sat.log
    got = collections.Counter((p["site"], p["intent"]) for p in intents(sub))
    sub.close()
    expected = collections.Counter({(f"room{n}", c[1]): 1 for n in range(3) for c in COMMANDS})
    # never twice; at most the one segment hub A was decoding when it froze (receipted, not yet published) is lost
    assert not got - expected and sum((expected - got).values()) <= 1, (got, hub_b.log)
    assert any("sending it again" in sat.log for sat in sats), "hub A was never handed a segment while frozen"


def test_broker_restart_and_the_satellites_last_will(tmp_path: Path, procs: list[Proc]) -> None:
    broker = Broker(tmp_path, persistent=True)
    broker.start()
    sub = Subscriber(broker, topics=("vcd/+/intent/#", "vcd/satellite/+/status"), durable=True)
    try:
        start_hub(tmp_path, broker, procs, "hub-a")
        sat = start_satellite(tmp_path, broker, procs, "hall", "--input", "-")
        sub.wait_for("vcd/satellite/hall/status", payload="online", timeout_s=60)
        assert sat.process.stdin is not None
        sat.process.stdin.write(to_pcm16(utterances(COMMANDS[0][0])))
        sat.process.stdin.flush()
        assert sub.wait_for("vcd/hall/intent/HassTurnOn", timeout_s=60).json()["site"] == "hall"

        broker.stop()
        sat.process.stdin.write(to_pcm16(utterances(COMMANDS[1][0])))
        sat.process.stdin.flush()
        assert wait_until(lambda: "segment 1:" in sat.log, 30), sat.log  # heard while the broker is down
        time.sleep(0.5)
        broker.start()
        assert sub.wait_for("vcd/hall/intent/HassTurnOff", timeout_s=60).json()["site"] == "hall"

        sat.kill()  # no goodbye: the broker publishes the last will
        sub.wait_for("vcd/satellite/hall/status", payload="offline", timeout_s=30)
    finally:
        sub.close()
        broker.stop()


def test_rhasspy_audio_frames_and_bad_messages(tmp_path: Path, broker: Broker, procs: list[Proc]) -> None:
    """A satellite speaking Rhasspy's audioFrame stream is segmented on the hub; bad messages cost one line each."""
    import paho.mqtt.client as mqtt

    sub = Subscriber(broker, topics=("vcd/+/intent/#",))
    hub = start_hub(tmp_path, broker, procs, "hub-a", hermes_audio=True, sites=["attic", "porch"],
                    max_segment_kb=512)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    bad = [
        ("vcd/satellite/attic/segment", b"RIFF not really a wav file"),
        ("vcd/satellite/garage/segment", write_wav(tmp_path / "g.wav", utterances(COMMANDS[0][0])).read_bytes()),
        ("vcd/satellite/attic/segment", b"\0" * (600 * 1024)),
        ("hermes/audioServer/porch/audioFrame", b"\x01\x02"),
    ]
    for topic, payload in bad:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()

    wav = write_wav(tmp_path / "porch.wav", utterances(COMMANDS[1][0], 1.5, COMMANDS[2][0]))
    sat = start_satellite(tmp_path, broker, procs, "porch", "--input", str(wav), "--realtime", protocol="hermes")
    assert sat.wait(60) == 0, sat.log
    assert wait_until(lambda: hub.log.count("asr: intent") >= 2, 60), hub.log
    got = [(p["site"], p["intent"]) for p in intents(sub)]
    sub.close()
    assert got == [("porch", "HassTurnOff"), ("porch", "HassClimateSetTemperature")], hub.log
    log = hub.log
    assert "vcd/satellite/attic/segment: not a WAV file" in log
    assert "unknown site 'garage'" in log
    assert "over max_segment_kb" in log
    assert "hermes/audioServer/porch/audioFrame: not a WAV file" in log
    assert "Traceback" not in log


def test_feedback_reaches_the_satellites_plugins(tmp_path: Path, broker: Broker, procs: list[Proc]) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "recorder.py").write_text(
        "import json, vcd\n"
        "@vcd.hookimpl\n"
        "def vcd_feedback(site, kind, text):\n"
        f"    with open({str(tmp_path / 'feedback.jsonl')!r}, 'a') as f:\n"
        "        f.write(json.dumps([site, kind, text]) + '\\n')\n"
    )
    config = write_config(tmp_path / "sat.toml", {
        "daemon": {"site": "den"},
        "satellite": {"host": broker.host, "port": broker.port},
        "plugins": {"enabled": [], "dirs": [str(plugins)]},
    })
    sub = Subscriber(broker, topics=("vcd/satellite/den/status",))
    sat = Proc(tmp_path, "sat-den", "satellite", "--config", str(config), "--input", "-", stdin=True)
    procs.append(sat)
    sub.wait_for("vcd/satellite/den/status", payload="online", timeout_s=60)
    topic = "vcd/satellite/den/feedback"
    subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-t", topic, "-m", "not json"], check=True)
    subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", topic, "-m",
                    json.dumps({"kind": "recognized", "text": "The light is on"})], check=True)
    path = tmp_path / "feedback.jsonl"
    assert wait_until(lambda: path.exists() and path.read_text().strip(), 30), sat.log
    assert [json.loads(line) for line in path.read_text().splitlines()] == [["den", "recognized", "The light is on"]]
    assert "feedback: not" in sat.log
    sat.process.send_signal(signal.SIGTERM)
    assert sat.wait(30) == 0, sat.log
    sub.wait_for("vcd/satellite/den/status", payload="offline", timeout_s=10)
    sub.close()


def test_the_hub_sends_feedback_to_the_satellite_that_spoke(broker: Broker, tmp_path: Path) -> None:
    """The satellites plugin's ``vcd_feedback``: to ``vcd/satellite/SITE/feedback`` for a site that sent a segment."""
    import numpy as np
    import paho.mqtt.client as mqtt

    from vcd.config import parse_config
    from vcd.controls import Controls
    from vcd.satellite_protocol import encode_wav, segment_properties
    from vcd_plugins.satellites import Hub, parse_settings

    config = parse_config({"plugins": {"satellites": {"host": broker.host, "port": broker.port}}})
    settings = parse_settings(config)
    assert settings is not None
    taken: list[tuple[str, float]] = []
    controls = Controls()

    def sink(samples: Any, site: str, speech_end: float, done: Any, timeout_s: float) -> bool:
        taken.append((site, speech_end))
        done()
        return True

    controls.attach_segment_sink(sink)
    hub = Hub(settings, "hub", config.vad, controls.for_plugin("satellites"))
    sub = Subscriber(broker, topics=("vcd/satellite/+/feedback",))
    hub.start()
    try:
        assert hub.subscribed.wait(10)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect(broker.host, broker.port)
        client.loop_start()
        wav = encode_wav(np.zeros(8000, dtype=np.float32))
        client.publish("vcd/satellite/kitchen/segment", wav, qos=1,
                       properties=segment_properties(7, 1234.5)).wait_for_publish(5)
        assert wait_until(lambda: taken, 10)
        assert taken == [("kitchen", 1234.5)]
        hub.feedback("garage", "recognized", None)  # never heard from: not a satellite of ours
        hub.feedback("kitchen", "recognized", "The kitchen light is on")
        message = sub.wait_for("vcd/satellite/kitchen/feedback", timeout_s=10)
        assert message.json() == {"kind": "recognized", "text": "The kitchen light is on"}
        assert [m.topic for m in sub.drain(0.5)] == []
        client.loop_stop()
        client.disconnect()
    finally:
        hub.stop(1.0)
        sub.close()


def test_a_broker_with_passwords(tmp_path: Path, procs: list[Proc]) -> None:
    """Hub (password_file) and satellite (password_env) log in; a wrong password is one line on the hub."""
    from conftest import find_program, free_port

    mosquitto_passwd = find_program("mosquitto_passwd")
    if mosquitto_passwd is None:
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run([mosquitto_passwd, "-c", "-b", str(tmp_path / "passwd"), "room", "s3cret"], check=True)
    (tmp_path / "passwd").chmod(0o600)
    (tmp_path / "good").write_text("s3cret\n")
    (tmp_path / "bad").write_text("guess\n")
    port = free_port()
    broker = Broker(tmp_path, head=("per_listener_settings true",),
                    tail=(f"listener {port} 127.0.0.1", "allow_anonymous false", f"password_file {tmp_path}/passwd"))
    broker.start()
    open_broker = Broker(tmp_path, port=port)  # the address the processes use: the password listener
    sub = Subscriber(broker, topics=("vcd/+/intent/#",))
    try:
        login = {"username": "room", "password_file": "good"}
        hub = start_hub(tmp_path, open_broker, procs, "hub-a", mqtt=login, **login)
        wrong = start_hub(tmp_path, open_broker, procs, "hub-b", username="room", password_file="bad")
        wav = write_wav(tmp_path / "attic.wav", utterances(COMMANDS[0][0]))
        config = satellite_config(tmp_path, open_broker, "attic", username="room", password_env="VCD_TEST_PASSWORD")
        env = {**os.environ, "VCD_TEST_PASSWORD": "s3cret", "PYTHONUNBUFFERED": "1"}
        sat = subprocess.run([*vcd_command(), "satellite", "--config", str(config), "--input", str(wav)], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert sat.returncode == 0, sat.stderr
        assert [(p["site"], p["intent"]) for p in intents(sub)] == [("attic", "HassTurnOn")], hub.log
        assert wait_until(lambda: "refused the connection: Not authorized" in wrong.log, 10), wrong.log
        missing = subprocess.run([*vcd_command(), "satellite", "--config", str(config), "--input", str(wav)],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                 env={k: v for k, v in os.environ.items() if k != "VCD_TEST_PASSWORD"})
        assert missing.returncode == 78
        assert missing.stderr.strip().endswith("satellite.password_env: environment variable VCD_TEST_PASSWORD "
                                               "is not set"), missing.stderr
    finally:
        sub.close()
        broker.stop()
