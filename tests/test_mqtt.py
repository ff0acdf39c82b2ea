"""The MQTT plugin against a real mosquitto and a real paho subscriber (its hooks called directly).

What needs no broker is in test_mqtt_pure.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Broker,
    Subscriber,
    find_program,
    free_port,
    requires_mosquitto,
    wait_until,
)
from vcd_plugins import mqtt as mqtt_plugin
from vcd_plugins.mqtt.payloads import MqttPlugin
from vcd_plugins.mqtt.settings import parse_settings

import vcd
from vcd.config import parse_config
from vcd.controls import Controls

pytestmark = requires_mosquitto

SITE = "kitchen"
TIMINGS = {"audio_s": 1.62, "decode_ms": 48.5, "speech_end": 1764000000.25, "recognized_at": 1764000000.31}


def make_plugin(
    broker: Broker, site: str = SITE, intents: list[str] | None = None, **table: Any
) -> MqttPlugin:
    """A started plugin for ``broker``; fast reconnects unless the test says otherwise."""
    raw = {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **table}
    settings = parse_settings(raw, "config.toml", site)
    plugin = MqttPlugin(settings, intents)
    plugin.start()
    return plugin


@pytest.fixture
def plugins() -> Any:
    """Plugins made by a test are stopped after it."""
    made: list[MqttPlugin] = []

    def make(broker: Broker, **kwargs: Any) -> MqttPlugin:
        plugin = make_plugin(broker, **kwargs)
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        plugin.stop()


def turn_on_kitchen_light(plugin: MqttPlugin) -> None:
    plugin.intent(SITE, "HassTurnOn", {"name": "kitchen light"}, "turn on the kitchen light", 0.93, TIMINGS)


# --- default JSON events and availability --------------------------------------------------------


def test_intent_is_published_as_json_event(broker: Broker, subscriber: Subscriber, plugins: Any) -> None:
    plugin = plugins(broker)
    online = subscriber.wait_for("vcd/kitchen/status")
    assert (online.text, online.retain) == ("online", False)  # live message; retained copy for late subscribers

    turn_on_kitchen_light(plugin)

    event = subscriber.wait_for("vcd/kitchen/intent/HassTurnOn")
    payload = event.json()
    assert isinstance(payload.pop("id"), str)
    assert payload == {
        "intent": "HassTurnOn",
        "slots": {"name": "kitchen light"},
        "text": "turn on the kitchen light",
        "confidence": 0.93,
        "site": "kitchen",
        "speech_end": 1764000000.25,
        "recognized_at": 1764000000.31,
        "audio_s": 1.62,
        "decode_ms": 48.5,
    }
    assert (event.qos, event.retain) == (1, False)


def test_numbers_stay_numbers_and_order_is_kept(broker: Broker, subscriber: Subscriber, plugins: Any) -> None:
    plugin = plugins(broker, qos=0)
    subscriber.wait_for("vcd/kitchen/status")
    for degrees in (18, 19, 20, 21.5):
        plugin.intent(
            SITE,
            "HassClimateSetTemperature",
            {"area": "living room", "temperature": degrees},
            f"set the living room to {degrees} degrees",
            0.8,
            TIMINGS,
        )
    got = [subscriber.wait_for("vcd/kitchen/intent/HassClimateSetTemperature").json()["slots"] for _ in range(4)]
    assert got == [{"area": "living room", "temperature": t} for t in (18, 19, 20, 21.5)]


def test_unrecognized_publishes_nothing_by_default(broker: Broker, subscriber: Subscriber, plugins: Any) -> None:
    plugin = plugins(broker)
    subscriber.wait_for("vcd/kitchen/status")
    plugin.transcript(SITE, "", 0.1, 1.2)
    plugin.unrecognized(SITE, "", 0.1, 1.2)
    assert subscriber.drain(0.7) == []


def test_unrecognized_topic_when_enabled(broker: Broker, subscriber: Subscriber, plugins: Any) -> None:
    plugin = plugins(broker, publish_unrecognized=True, publish_intents=False)
    subscriber.wait_for("vcd/kitchen/status")
    turn_on_kitchen_light(plugin)  # publish_intents = false: no event
    plugin.unrecognized(SITE, "turn on the porch light", 0.31, 1.4)
    message = subscriber.wait_for("vcd/kitchen/unrecognized")
    assert message.json() == {"text": "turn on the porch light", "confidence": 0.31, "site": "kitchen", "audio_s": 1.4}
    assert [m.topic for m in subscriber.seen] == ["vcd/kitchen/status", "vcd/kitchen/unrecognized"]


def test_shutdown_delivers_offline_retained(broker: Broker, subscriber: Subscriber, plugins: Any) -> None:
    plugin = make_plugin(broker, topic_prefix="house", shutdown_wait_s=1.0)
    subscriber.wait_for("house/kitchen/status", payload="online")
    turn_on_kitchen_light(plugin)
    started = time.monotonic()
    assert plugin.stop() is True
    assert time.monotonic() - started < 1.5
    subscriber.wait_for("house/kitchen/intent/HassTurnOn")  # queued before shutdown: delivered first
    subscriber.wait_for("house/kitchen/status", payload="offline")

    late = Subscriber(broker, topics=("house/kitchen/status",))
    try:
        retained = late.get()
        assert (retained.text, retained.retain) == ("offline", True)
    finally:
        late.close()


KILLED_CLIENT = textwrap.dedent(
    """
    import sys, time
    from vcd_plugins.mqtt.payloads import MqttPlugin
    from vcd_plugins.mqtt.settings import parse_settings
    settings = parse_settings({"host": "127.0.0.1", "port": int(sys.argv[1]), "keepalive_s": 5}, "test", "attic")
    plugin = MqttPlugin(settings)
    plugin.start()
    while not plugin.publisher.connected:
        time.sleep(0.01)
    print("connected", flush=True)
    time.sleep(120)
    """
)


def test_last_will_offline_when_the_process_is_killed(broker: Broker, subscriber: Subscriber) -> None:
    child = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, str(broker.port)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"connected"
        subscriber.wait_for("vcd/attic/status", payload="online")
        os.kill(child.pid, signal.SIGKILL)
        will = subscriber.wait_for("vcd/attic/status", timeout_s=10)
        assert will.text == "offline"
    finally:
        child.kill()
        child.wait()
    late = Subscriber(broker, topics=("vcd/attic/status",))
    try:
        assert (late.get().text, late.seen[-1].retain) == ("offline", True)
    finally:
        late.close()


# --- command mapping -----------------------------------------------------------------------------


COMMANDS = [
    {"intent": "HassTurnOn", "slots": {"domain": "light"}, "topic": "home/{area|slug}/lights/set", "payload": "ON"},
    {"intent": "HassTurnOn", "topic": "home/{name|slug}/set", "payload": "ON"},
    {"intent": "HassTurnOff", "topic": "home/{name|slug}/set", "payload": "OFF", "qos": 0},
    {
        "intent": "HassClimateSetTemperature",
        "topic": "home/{area|slug}/thermostat/set",
        "payload": '{{"target": {temperature}, "said": {text|json}}}',
        "retain": True,
    },
]


def test_commands_map_intents_to_topics_and_payloads(
    broker: Broker, subscriber: Subscriber, plugins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = plugins(broker, publish_intents=False, commands=COMMANDS)
    subscriber.wait_for("vcd/kitchen/status")
    caplog.set_level(logging.WARNING, logger="vcd_plugins.mqtt")

    turn_on_kitchen_light(plugin)
    plugin.intent(SITE, "HassTurnOff", {"name": "Living Room Lamp"}, "turn off the living room lamp", 0.9, TIMINGS)
    plugin.intent(
        SITE, "HassTurnOn", {"area": "living room", "domain": "light"}, "turn on the living room lights", 0.9, TIMINGS
    )
    plugin.intent(
        SITE,
        "HassClimateSetTemperature",
        {"area": "bedroom", "temperature": 21},
        'set the bedroom to "21" degrees',
        0.9,
        TIMINGS,
    )

    got = [(m.topic, m.text, m.qos, m.retain) for m in subscriber.drain(0.7, expect=4)]
    assert got == [
        ("home/kitchen_light/set", "ON", 1, False),
        ("home/living_room_lamp/set", "OFF", 0, False),
        ("home/living_room/lights/set", "ON", 1, False),
        # rule 1 also matches HassTurnOn but names {name}, which this command lacks: skipped and logged
        ("home/bedroom/thermostat/set", '{"target": 21, "said": "set the bedroom to \\"21\\" degrees"}', 1, False),
    ]
    assert json.loads(got[-1][1]) == {"target": 21, "said": 'set the bedroom to "21" degrees'}
    assert [r.getMessage() for r in caplog.records] == [
        ("commands[1] (intent HassTurnOn) skipped: the template 'home/{name|slug}/set' names {name}, "
         "which this command lacks (slots: area, domain)")
    ]
    late = Subscriber(broker, topics=("home/#",))  # retain = true on the thermostat rule only
    try:
        assert [(m.topic, m.retain) for m in late.drain(0.5, expect=1)] == [("home/bedroom/thermostat/set", True)]
    finally:
        late.close()


def test_command_topic_made_unsafe_by_a_raw_slot_is_skipped(
    broker: Broker, subscriber: Subscriber, plugins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rules = [{"intent": "HassTurnOn", "topic": "home/{name}/set", "payload": "ON"}]
    plugin = plugins(broker, publish_intents=False, commands=rules)
    subscriber.wait_for("vcd/kitchen/status")
    caplog.set_level(logging.WARNING, logger="vcd_plugins.mqtt")
    plugin.intent(SITE, "HassTurnOn", {"name": "tv #2"}, "turn on tv number two", 0.9, TIMINGS)
    turn_on_kitchen_light(plugin)
    assert [(m.topic, m.text) for m in subscriber.drain(0.7, expect=1)] == [("home/kitchen light/set", "ON")]
    assert [r.getMessage() for r in caplog.records] == [
        ("commands[0] (intent HassTurnOn) skipped: topic must not contain the wildcards '+' or '#' "
         "(got 'home/tv #2/set') (template 'home/{name}/set')")
    ]


# --- Rhasspy Hermes --------------------------------------------------------------------------------


def test_hermes_messages(broker: Broker, subscriber: Subscriber, plugins: Any) -> None:
    plugin = plugins(broker, hermes=True, publish_intents=False, site="livingroom")
    subscriber.wait_for("vcd/livingroom/status")
    text = "set the living room to twenty one degrees"
    slots = {"area": "living room", "temperature": 21}

    plugin.transcript("livingroom", text, 0.87, 2.1)
    plugin.intent("livingroom", "HassClimateSetTemperature", slots, text, 0.87, TIMINGS)
    plugin.transcript("livingroom", "play some jazz", 0.2, 1.3)
    plugin.unrecognized("livingroom", "play some jazz", 0.2, 1.3)

    hermes_topics = [m.topic for m in subscriber.drain(0.5) if m.topic.startswith("hermes/")]
    assert hermes_topics == [
        "hermes/dialogueManager/sessionStarted",
        "hermes/asr/textCaptured",
        "hermes/intent/HassClimateSetTemperature",
        "hermes/dialogueManager/sessionEnded",
        "hermes/dialogueManager/sessionStarted",
        "hermes/asr/textCaptured",
        "hermes/nlu/intentNotRecognized",
        "hermes/dialogueManager/sessionEnded",
    ]
    by_topic = [(m.topic, m.json()) for m in subscriber.seen if m.topic.startswith("hermes/")]
    started, captured, (_, intent), ended, started2, _, (_, not_recognized), ended2 = by_topic
    captured = captured[1]
    session = captured.pop("sessionId")
    assert started[1] == {"sessionId": session, "siteId": "livingroom", "customData": None, "lang": "en"}
    assert captured == {
        "text": text,
        "likelihood": 0.87,
        "seconds": 2.1,
        "siteId": "livingroom",
        "wakewordId": "default",
        "asrTokens": captured["asrTokens"],
        "lang": "en",
    }
    assert intent["sessionId"] == session
    query_id = intent["id"]
    assert query_id and query_id != session
    words = text.split()
    assert intent == {
        "input": text,
        "intent": {"intentName": "HassClimateSetTemperature", "confidenceScore": 0.87},
        "slots": [
            {
                "entity": "area",
                "slotName": "area",
                "rawValue": "living room",
                "value": {"kind": "Unknown", "value": "living room"},
                "confidence": 0.87,
                "range": {"start": 8, "end": 19, "rawStart": 8, "rawEnd": 19},
            },
            {
                "entity": "temperature",
                "slotName": "temperature",
                "rawValue": "twenty one",  # the words spoken, as Rhasspy sends
                "value": {"kind": "Number", "value": 21},
                "confidence": 0.87,
                "range": {"start": 23, "end": 33, "rawStart": 23, "rawEnd": 33},
            },
        ],
        "siteId": "livingroom",
        "id": query_id,
        "sessionId": session,
        "customData": None,
        "asrTokens": [
            [
                {
                    "value": w,
                    "confidence": 1.0,
                    "rangeStart": text.index(w),
                    "rangeEnd": text.index(w) + len(w),
                    "time": None,
                }
                for w in words
            ]
        ],
        "asrConfidence": 0.87,
        "rawInput": text,
        "wakewordId": "default",
        "lang": "en",
    }
    assert ended[1] == {"termination": {"reason": "nominal"}, "sessionId": session, "siteId": "livingroom",
                        "customData": None}
    session2 = not_recognized.pop("sessionId")
    assert session2 != session and started2[1]["sessionId"] == session2
    assert not_recognized.pop("id")
    assert not_recognized == {"input": "play some jazz", "siteId": "livingroom", "customData": None}
    assert ended2[1]["termination"] == {"reason": "intentNotRecognized"} and ended2[1]["sessionId"] == session2


# --- Home Assistant discovery ----------------------------------------------------------------------


def test_homeassistant_discovery_and_events(broker: Broker, subscriber: Subscriber, plugins: Any) -> None:
    plugin = plugins(broker, homeassistant_discovery=True, publish_intents=False, intents=["HassTurnOn", "HassTurnOff"])
    config = subscriber.wait_for("homeassistant/event/vcd_kitchen/command/config")
    assert config.retain is False  # live; the broker keeps a retained copy for Home Assistant restarts
    assert config.json() == {
        "name": "Voice command",
        "unique_id": "vcd_kitchen_command",
        "state_topic": "vcd/kitchen/event",
        "event_types": ["HassTurnOn", "HassTurnOff", "unrecognized"],
        "availability_topic": "vcd/kitchen/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "icon": "mdi:microphone-message",
        "device": {
            "identifiers": ["vcd_kitchen"],
            "name": "vcd kitchen",
            "manufacturer": "vcd",
            "model": "offline voice-command daemon",
            "sw_version": vcd.__version__,
        },
    }
    turn_on_kitchen_light(plugin)
    plugin.unrecognized(SITE, "", 0.05, 0.8)
    assert subscriber.wait_for("vcd/kitchen/event").json() == {
        "event_type": "HassTurnOn",
        "name": "kitchen light",
        "text": "turn on the kitchen light",
        "confidence": 0.93,
    }
    assert subscriber.wait_for("vcd/kitchen/event").json() == {
        "event_type": "unrecognized",
        "text": "",
        "confidence": 0.05,
    }

    home_assistant = Subscriber(broker, topics=("homeassistant/#",))  # a restarted Home Assistant
    try:
        retained = home_assistant.get()
        assert retained.retain and retained.json()["unique_id"] == "vcd_kitchen_command"
    finally:
        home_assistant.close()


# --- broker outages --------------------------------------------------------------------------------


def test_broker_down_at_start_then_commands_delivered_in_order(tmp_path: Path) -> None:
    broker = Broker(tmp_path, persistent=True)
    broker.start()
    sub = Subscriber(broker, durable=True)  # the broker keeps its session, so it misses nothing while reconnecting
    sub.close()
    broker.stop()
    plugin = make_plugin(broker)
    try:
        time.sleep(0.3)
        assert not plugin.publisher.connected
        names = ["kitchen light", "tv", "radio", "heater"]
        for name in names:
            plugin.intent(SITE, "HassTurnOn", {"name": name}, f"turn on the {name}", 0.9, TIMINGS)
        assert plugin.publisher.pending() == 4
        broker.start()
        sub = Subscriber(broker, durable=True)
        got = [sub.wait_for("vcd/kitchen/intent/HassTurnOn").json()["slots"]["name"] for _ in names]
        assert got == names
        assert wait_until(lambda: plugin.publisher.pending() == 0, 5)
        sub.close()
    finally:
        plugin.stop()
        broker.stop()


def test_broker_restart_mid_run_loses_nothing(tmp_path: Path) -> None:
    broker = Broker(tmp_path, persistent=True)
    broker.start()
    sub = Subscriber(broker, durable=True)
    plugin = make_plugin(broker, qos=1)
    try:
        sub.wait_for("vcd/kitchen/status", payload="online")
        turn_on_kitchen_light(plugin)
        assert sub.wait_for("vcd/kitchen/intent/HassTurnOn").json()["text"] == "turn on the kitchen light"
        broker.stop()
        assert wait_until(lambda: not plugin.publisher.connected, 5)
        for n in range(5):
            plugin.intent(
                SITE,
                "HassLightSet",
                {"name": "office lamp", "brightness": n * 10},
                f"set the office lamp to {n * 10} percent",
                0.9,
                TIMINGS,
            )
        broker.start()
        got = [sub.wait_for("vcd/kitchen/intent/HassLightSet").json()["slots"]["brightness"] for _ in range(5)]
        assert got == [0, 10, 20, 30, 40]
        assert plugin.publisher.dropped == 0
    finally:
        plugin.stop()
        sub.close()
        broker.stop()


def test_full_queue_drops_the_oldest_and_logs_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vcd_plugins.mqtt")
    broker = Broker(tmp_path, persistent=True)
    broker.start()
    Subscriber(broker, durable=True).close()
    broker.stop()
    plugin = make_plugin(broker, queue_size=2)
    try:
        for name in ("tv", "radio", "heater", "coffee maker"):
            plugin.intent(SITE, "HassTurnOn", {"name": name}, f"turn on the {name}", 0.9, TIMINGS)
        drops = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
        assert (
            drops
            == [
                ("queue full (2 messages, broker unreachable); dropped the oldest: intent HassTurnOn on "
                 "vcd/kitchen/intent/HassTurnOn"),
            ]
            * 2
        )
        assert plugin.publisher.dropped == 2
        broker.start()
        sub = Subscriber(broker, durable=True)
        got = [sub.wait_for("vcd/kitchen/intent/HassTurnOn").json()["slots"]["name"] for _ in range(2)]
        assert got == ["heater", "coffee maker"]
        assert sub.drain(0.5) == [] or all(m.topic == "vcd/kitchen/status" for m in sub.seen[2:])
        sub.close()
    finally:
        plugin.stop()
        broker.stop()


# --- the hooks as the daemon calls them --------------------------------------------------------


def test_hooks_through_a_real_config(broker: Broker, subscriber: Subscriber, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = parse_config(
        {"daemon": {"site": "hall"}, "plugins": {"mqtt": {"host": broker.host, "port": broker.port}}}, path
    )
    mqtt_plugin.vcd_startup(config=config, config_path=path, controls=Controls().for_plugin("mqtt"))
    try:
        subscriber.wait_for("vcd/hall/status", payload="online")
        mqtt_plugin.vcd_transcript(site="hall", text="turn off the tv", confidence=0.9, audio_s=1.1)
        mqtt_plugin.vcd_intent(
            site="hall",
            intent="HassTurnOff",
            slots={"name": "tv"},
            text="turn off the tv",
            confidence=0.9,
            timings=TIMINGS,
        )
        assert subscriber.wait_for("vcd/hall/intent/HassTurnOff").json()["slots"] == {"name": "tv"}
    finally:
        mqtt_plugin.vcd_shutdown(reason="test")
    subscriber.wait_for("vcd/hall/status", payload="offline")


# --- TLS and passwords against a real broker -------------------------------------------------------


def make_certificates(folder: Path, san: str = "IP:127.0.0.1,DNS:localhost") -> None:
    """A throw-away CA and a server certificate for ``san`` (openssl)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vcd test CA")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text(f"subjectAltName={san}\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_connection_with_a_private_ca(tmp_path: Path, plugins: Any) -> None:
    make_certificates(tmp_path)
    tls_port = free_port()
    broker = Broker(
        tmp_path,
        head=("per_listener_settings true",),
        tail=(
            f"listener {tls_port} 127.0.0.1",
            "allow_anonymous true",
            f"cafile {tmp_path}/ca.pem",
            f"certfile {tmp_path}/server.pem",
            f"keyfile {tmp_path}/server.key",
        ),
    )
    broker.start()
    sub = Subscriber(broker)  # on the plain listener
    try:
        settings = parse_settings(
            {"host": "127.0.0.1", "port": tls_port, "tls": {"ca_file": "ca.pem"}}, "config.toml", SITE, tmp_path
        )
        plugin = MqttPlugin(settings)
        plugin.start()
        try:
            sub.wait_for("vcd/kitchen/status", payload="online")
            turn_on_kitchen_light(plugin)
            assert sub.wait_for("vcd/kitchen/intent/HassTurnOn").json()["slots"] == {"name": "kitchen light"}
        finally:
            plugin.stop()
    finally:
        sub.close()
        broker.stop()


def test_password_from_a_file_against_a_real_broker(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mosquitto_passwd = find_program("mosquitto_passwd")
    if mosquitto_passwd is None:
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run([mosquitto_passwd, "-c", "-b", str(tmp_path / "passwd"), "hub", "s3cret"], check=True)
    (tmp_path / "passwd").chmod(0o600)
    (tmp_path / "good").write_text("s3cret\n")
    (tmp_path / "bad").write_text("guess\n")
    auth_port = free_port()
    broker = Broker(
        tmp_path,
        head=("per_listener_settings true",),
        tail=(
            f"listener {auth_port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {tmp_path}/passwd",
        ),
    )
    broker.start()
    sub = Subscriber(broker)
    caplog.set_level(logging.WARNING, logger="vcd_plugins.mqtt")
    made = []
    try:
        for site, password_file in (("good", "good"), ("bad", "bad")):
            table = {
                "host": "127.0.0.1",
                "port": auth_port,
                "username": "hub",
                "password_file": password_file,
                "reconnect_min_s": 5,
                "reconnect_max_s": 5,
            }
            made.append(MqttPlugin(parse_settings(table, "config.toml", site, tmp_path)))
            made[-1].start()
        sub.wait_for("vcd/good/status", payload="online")
        assert wait_until(lambda: any("refused the connection" in r.getMessage() for r in caplog.records), 5)
        refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert refused == [
            f"broker 127.0.0.1:{auth_port} refused the connection: Not authorized (check username and password or "
            "password_file)"
        ]
        assert not made[1].publisher.connected
    finally:
        for plugin in made:
            plugin.stop()
        sub.close()
        broker.stop()


# --- why a connection fails: each reason logged once, in words ---------------------------------------


def tls_broker(folder: Path, tls_port: int, ca: str = "ca.pem") -> Broker:
    """A mosquitto with a plain listener and a TLS listener on ``tls_port`` (certificates from make_certificates)."""
    return Broker(
        folder,
        head=("per_listener_settings true",),
        tail=(
            f"listener {tls_port} 127.0.0.1",
            "allow_anonymous true",
            f"cafile {folder}/{ca}",
            f"certfile {folder}/server.pem",
            f"keyfile {folder}/server.key",
        ),
    )


def connection_log(tmp_path: Path, caplog: pytest.LogCaptureFixture, table: dict[str, Any], wait_s: float = 1.5) -> list[str]:
    """Start a plugin with ``table``, let it fail to connect a few times, stop it; its warnings and errors."""
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="vcd_plugins.mqtt")
    raw = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.2, "connect_timeout_s": 2, **table}
    plugin = MqttPlugin(parse_settings(raw, "config.toml", SITE, tmp_path))
    plugin.start()
    try:
        time.sleep(wait_s)  # several attempts at 0.1..0.2 s
        assert not plugin.publisher.connected
        assert plugin.publisher.health() is None  # failing to connect is not broken: paho keeps retrying
    finally:
        plugin.stop()
    return [r.getMessage() for r in caplog.records if "not delivered" not in r.getMessage()]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_each_reason_a_connection_fails_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_certificates(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    make_certificates(other)  # a second CA that did not sign the broker's certificate
    tls_port = free_port()
    broker = tls_broker(tmp_path, tls_port)
    broker.start()
    try:
        plain = {"host": "127.0.0.1", "port": broker.port}
        tls = {"host": "127.0.0.1", "port": tls_port, "tls": {"ca_file": "ca.pem"}}
        # a CA that did not sign the broker's certificate
        messages = connection_log(tmp_path, caplog, {**tls, "tls": {"ca_file": "other/ca.pem"}})
        assert len(messages) == 1, messages  # logged once, though paho tried several times
        assert messages[0].startswith(f"cannot reach broker 127.0.0.1:{tls_port}: TLS: the broker's certificate is "
                                      "not trusted (")  # OpenSSL's words follow, e.g. "unable to get local issuer…"
        assert messages[0].endswith("); check tls.ca_file; retrying every 0.1..0.2 s, commands are queued (up to 100)")
        # plain MQTT to the TLS port: the broker hangs up before CONNACK
        messages = connection_log(tmp_path, caplog, {"host": "127.0.0.1", "port": tls_port})
        assert len(messages) == 1, messages
        assert messages[0].startswith(f"broker 127.0.0.1:{tls_port} closed the connection before accepting it (")
        assert messages[0].endswith("); is this a TLS port? (set [plugins.mqtt.tls]); retrying")
        # TLS to the plain port
        messages = connection_log(tmp_path, caplog, {**plain, "tls": {"ca_file": "ca.pem"}})
        assert len(messages) == 1, messages
        assert messages[0].startswith(f"cannot reach broker 127.0.0.1:{broker.port}: ")
        assert "TLS handshake" in messages[0] and "is this port a TLS listener?" in messages[0]
        # nothing listening, and a name that does not resolve
        port = free_port()
        messages = connection_log(tmp_path, caplog, {"host": "127.0.0.1", "port": port})
        assert messages == [
            f"cannot reach broker 127.0.0.1:{port}: connection refused (nothing listens on that port?); "
            "retrying every 0.1..0.2 s, commands are queued (up to 100)"
        ]
        messages = connection_log(tmp_path, caplog, {"host": "vcd-test.invalid", "port": port})
        assert len(messages) == 1, messages
        assert messages[0].startswith(f"cannot reach broker vcd-test.invalid:{port}: cannot resolve the host name "
                                      "'vcd-test.invalid' (")
    finally:
        broker.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_a_certificate_for_another_host_name_is_named_as_such(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_certificates(tmp_path, san="DNS:broker.example")
    tls_port = free_port()
    broker = tls_broker(tmp_path, tls_port)
    broker.start()
    try:
        messages = connection_log(tmp_path, caplog, {"host": "127.0.0.1", "port": tls_port, "tls": {"ca_file": "ca.pem"}})
    finally:
        broker.stop()
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"cannot reach broker 127.0.0.1:{tls_port}: TLS: the broker's certificate is not "
                                  "for '127.0.0.1' (")
    assert "connect by the name it was issued to" in messages[0]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # paho's thread dies on purpose
def test_a_dead_network_thread_is_reported_by_vcd_health(broker: Broker, subscriber: Subscriber) -> None:
    """paho's network thread dies on a host name the IDNA codec rejects (a UnicodeError, not an OSError)."""
    settings = replace(parse_settings({"host": broker.host, "port": broker.port}, "config.toml", SITE),
                       host="mqtt..lan")
    plugin = MqttPlugin(settings)
    plugin.start()
    try:
        assert wait_until(lambda: plugin.publisher.health() is not None, 10)
        assert plugin.publisher.health() == "the MQTT network thread has died (broker mqtt..lan:%d); no reconnects" % (
            broker.port)
    finally:
        plugin.stop()
    healthy = make_plugin(broker)
    try:
        subscriber.wait_for("vcd/kitchen/status", payload="online")
        assert healthy.publisher.health() is None
        broker.stop()  # an outage is not broken: paho reconnects
        assert wait_until(lambda: not healthy.publisher.connected, 10)
        assert healthy.publisher.health() is None
    finally:
        healthy.stop()
