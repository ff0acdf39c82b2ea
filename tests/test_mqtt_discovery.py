"""Devices announced by Home Assistant MQTT discovery, and Hermes toggles, against a real mosquitto.

The discovery configs are in the exact shapes Zigbee2MQTT (full keys, ``"name": null``: the entity
takes its device's name, JSON schema, ``brightness_scale`` 254), Tasmota (abbreviated keys, ``~``
base topic, ``SetOption19 1``) and ESPHome (abbreviated keys, JSON schema, ``dev.sa`` area) publish.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Broker, Subscriber, requires_espeak, requires_mosquitto, to_pcm16, utterances, wait_until
from vcd_plugins.mqtt import discovery
from vcd_plugins.mqtt.discovery import Devices, DiscoveryError, commands_for, parse_config
from vcd_plugins.mqtt.payloads import MqttPlugin
from vcd_plugins.mqtt.settings import parse_settings

from vcd.controls import Controls

PREFIX = "homeassistant"


def z2m_device(ieee: str, name: str, model: str) -> dict[str, Any]:
    return {
        "identifiers": [f"zigbee2mqtt_{ieee}"],
        "manufacturer": "IKEA",
        "model": model,
        "name": name,
        "sw_version": "2.3.087",
        "via_device": "zigbee2mqtt_bridge_0x00124b0024c2a1b4",
    }


def z2m(ieee: str, name: str, component: str, model: str, **config: Any) -> tuple[str, dict[str, Any]]:
    """A Zigbee2MQTT discovery message (lib/extension/homeassistant.ts): topic and payload."""
    payload = {
        "availability": [{"topic": "zigbee2mqtt/bridge/state", "value_template": "{{ value_json.state }}"}],
        "device": z2m_device(ieee, name, model),
        "name": None,
        "object_id": f"{name.lower().replace(' ', '_')}",
        "origin": {"name": "Zigbee2MQTT", "sw": "1.40.2", "url": "https://www.zigbee2mqtt.io"},
        "state_topic": f"zigbee2mqtt/{name}",
        "unique_id": f"{ieee}_{component}_zigbee2mqtt",
        **config,
    }
    return f"{PREFIX}/{component}/{ieee}/{component}/config", payload


Z2M_LIGHT = z2m(
    "0x000b57fffec6a5b2", "Reading lamp", "light", "LED1545G12",
    brightness=True, brightness_scale=254, command_topic="zigbee2mqtt/Reading lamp/set", schema="json",
    supported_color_modes=["color_temp"], max_mireds=454, min_mireds=250,
)
Z2M_SWITCH = z2m(
    "0x0017880104e45517", "Fish tank", "switch", "E1603/E1702/E1708",
    command_topic="zigbee2mqtt/Fish tank/set", payload_off="OFF", payload_on="ON",
    value_template="{{ value_json.state }}",
)
Z2M_LOCK = z2m(
    "0x00158d0004866f11", "Front door", "lock", "YRD226HA2619",
    command_topic="zigbee2mqtt/Front door/set", payload_lock="LOCK", payload_unlock="UNLOCK",
    state_locked="LOCK", state_unlocked="UNLOCK", value_template="{{ value_json.state }}",
)
Z2M_COVER = z2m(
    "0x680ae2fffe7e1c3d", "Kitchen blinds", "cover", "E1757",
    command_topic="zigbee2mqtt/Kitchen blinds/set", position_template="{{ value_json.position }}",
    position_topic="zigbee2mqtt/Kitchen blinds", set_position_template='{ "position": {{ position }} }',
    set_position_topic="zigbee2mqtt/Kitchen blinds/set", value_template="{{ value_json.state }}",
)
Z2M_CLIMATE = z2m(
    "0x84fd27fffe7e9a10", "Bedroom radiator", "climate", "SPZB0001",
    current_temperature_topic="zigbee2mqtt/Bedroom radiator",
    current_temperature_template="{{ value_json.local_temperature }}", max_temp="30", min_temp="5",
    mode_command_topic="zigbee2mqtt/Bedroom radiator/set/system_mode", modes=["off", "heat", "auto"],
    temp_step=0.5, temperature_command_topic="zigbee2mqtt/Bedroom radiator/set/current_heating_setpoint",
    temperature_state_template="{{ value_json.current_heating_setpoint }}",
    temperature_state_topic="zigbee2mqtt/Bedroom radiator",
)
# Tasmota (SetOption19 1): abbreviated keys, "~" base topic, a dimmer with brightness 0..100.
TASMOTA_LIGHT = (
    f"{PREFIX}/light/A4CF12_LI_1/config",
    {
        "name": "Desk lamp", "cmd_t": "~cmnd/POWER", "stat_t": "~tele/STATE", "val_tpl": "{{value_json.POWER}}",
        "pl_off": "OFF", "pl_on": "ON", "avty_t": "~tele/LWT", "pl_avail": "Online", "pl_not_avail": "Offline",
        "uniq_id": "A4CF12_LI_1", "device": {"identifiers": ["A4CF12"], "connections": [["mac", "A4CF12ABCDEF"]]},
        "~": "desk_lamp/", "bri_cmd_t": "~cmnd/Dimmer", "bri_stat_t": "~tele/STATE", "bri_scl": 100,
        "on_cmd_type": "brightness", "bri_val_tpl": "{{value_json.Dimmer}}",
    },
)
# ESPHome: abbreviated keys, JSON schema (brightness 0..255), the node's area as dev.sa.
ESPHOME_LIGHT = (
    f"{PREFIX}/light/studio-node/ceiling_light/config",
    {
        "name": "Ceiling light", "schema": "json", "brightness": True, "color_mode": True,
        "supported_color_modes": ["brightness"], "stat_t": "studio-node/light/ceiling_light/state",
        "cmd_t": "studio-node/light/ceiling_light/command", "avty_t": "studio-node/status",
        "uniq_id": "ESPlightceiling_light",
        "dev": {"ids": "a4cf12abcdef", "name": "studio-node", "sw": "esphome v2024.6.1 Jun 20 2024",
                "mdl": "esp01_1m", "mf": "espressif", "sa": "Studio"},
        "o": {"name": "esphome", "sw": "2024.6.1", "url": "https://esphome.io"},
    },
)
ESPHOME_FAN = (
    f"{PREFIX}/fan/studio-node/extractor/config",
    {
        "name": "Extractor", "stat_t": "studio-node/fan/extractor/state", "cmd_t": "studio-node/fan/extractor/command",
        "avty_t": "studio-node/status", "uniq_id": "ESPfanextractor",
        "dev": {"ids": "a4cf12abcdef", "name": "studio-node", "mf": "espressif", "sa": "Studio"},
    },
)
ALL = [Z2M_LIGHT, Z2M_SWITCH, Z2M_LOCK, Z2M_COVER, Z2M_CLIMATE, TASMOTA_LIGHT, ESPHOME_LIGHT, ESPHOME_FAN]


def device(message: tuple[str, dict[str, Any]]) -> discovery.Device:
    topic, payload = message
    found = parse_config(topic, json.dumps(payload).encode(), PREFIX)
    assert found is not None
    return found


def sent(message: tuple[str, dict[str, Any]], intent: str, **slots: Any) -> list[tuple[str, str]]:
    commands = commands_for(device(message), intent, slots)
    assert not isinstance(commands, str), commands
    return [(c.topic, c.payload) for c in commands]


# --- reading configs and building commands (no broker) ---------------------------------------------


def test_names_and_areas_as_announced() -> None:
    assert [(d.component, d.name, d.area) for d in map(device, ALL)] == [
        ("light", "reading lamp", ""),  # Zigbee2MQTT: "name": null → the device's name
        ("switch", "fish tank", ""),
        ("lock", "front door", ""),
        ("cover", "kitchen blinds", ""),
        ("climate", "bedroom radiator", ""),
        ("light", "desk lamp", ""),
        ("light", "ceiling light", "studio"),  # ESPHome's dev.sa
        ("fan", "extractor", "studio"),
    ]
    assert device(TASMOTA_LIGHT).config["command_topic"] == "desk_lamp/cmnd/POWER"  # "~" expanded


def test_commands_as_home_assistant_publishes_them() -> None:
    assert sent(Z2M_LIGHT, "HassTurnOn", name="reading lamp") == [("zigbee2mqtt/Reading lamp/set", '{"state": "ON"}')]
    assert sent(Z2M_LIGHT, "HassLightSet", name="reading lamp", brightness=50) == [
        ("zigbee2mqtt/Reading lamp/set", '{"state": "ON", "brightness": 127}')  # brightness_scale 254
    ]
    assert sent(ESPHOME_LIGHT, "HassLightSet", brightness=100) == [
        ("studio-node/light/ceiling_light/command", '{"state": "ON", "brightness": 255}')  # the default scale
    ]
    assert sent(TASMOTA_LIGHT, "HassTurnOff") == [("desk_lamp/cmnd/POWER", "OFF")]
    assert sent(TASMOTA_LIGHT, "HassLightSet", brightness=40) == [("desk_lamp/cmnd/Dimmer", "40")]  # bri_scl 100
    assert sent(Z2M_SWITCH, "HassTurnOff") == [("zigbee2mqtt/Fish tank/set", "OFF")]
    assert sent(ESPHOME_FAN, "HassTurnOn") == [("studio-node/fan/extractor/command", "ON")]
    assert sent(Z2M_LOCK, "HassTurnOn") == [("zigbee2mqtt/Front door/set", "LOCK")]  # "lock the front door"
    assert sent(Z2M_LOCK, "HassTurnOff") == [("zigbee2mqtt/Front door/set", "UNLOCK")]
    assert sent(Z2M_COVER, "HassTurnOn") == [("zigbee2mqtt/Kitchen blinds/set", "OPEN")]  # "open the kitchen blinds"
    assert sent(Z2M_COVER, "HassTurnOff") == [("zigbee2mqtt/Kitchen blinds/set", "CLOSE")]
    assert sent(Z2M_COVER, "HassSetPosition", position=30) == [("zigbee2mqtt/Kitchen blinds/set", '{ "position": 30 }')]
    assert sent(Z2M_CLIMATE, "HassClimateSetTemperature", temperature=21) == [
        ("zigbee2mqtt/Bedroom radiator/set/current_heating_setpoint", "21")
    ]
    assert commands_for(device(Z2M_SWITCH), "HassLightSet", {"brightness": 5}) == (
        "vcd does not map HassLightSet onto a switch"
    )


def test_configs_vcd_cannot_use() -> None:
    topic, payload = Z2M_SWITCH
    assert parse_config(topic, b"", PREFIX) is None  # an empty retained config: the device is gone
    nameless = {**payload, "device": {**payload["device"], "name": "0x0017880104e45517"}}
    with pytest.raises(DiscoveryError, match="an address"):
        parse_config(topic, json.dumps(nameless).encode(), PREFIX)
    with pytest.raises(DiscoveryError, match="not JSON"):
        parse_config(topic, b"{", PREFIX)
    with pytest.raises(DiscoveryError, match="no command topic"):
        parse_config(topic, json.dumps({"name": "Plug"}).encode(), PREFIX)
    with pytest.raises(DiscoveryError, match="not one vcd drives"):
        parse_config(f"{PREFIX}/sensor/x/temperature/config", b"{}", PREFIX)


def test_targets_by_name_area_domain_and_the_only_thermostat() -> None:
    devices = Devices(PREFIX)
    for topic, payload in ALL:
        assert devices.update(topic, json.dumps(payload).encode())
    names = lambda found: sorted(d.name for d in found)  # noqa: E731
    assert names(devices.targets("HassTurnOn", {"name": "Reading lamp"})) == ["reading lamp"]
    assert names(devices.targets("HassTurnOn", {"domain": "cover", "cover": "kitchen blinds"})) == ["kitchen blinds"]
    assert names(devices.targets("HassTurnOff", {"domain": "light", "area": "studio"})) == ["ceiling light"]
    assert names(devices.targets("HassClimateSetTemperature", {"temperature": 19})) == ["bedroom radiator"]
    assert devices.targets("HassClimateSetTemperature", {"area": "kitchen", "temperature": 19}) == []
    assert devices.targets("HassTurnOn", {"name": "kitchen light"}) == []
    values = devices.list_values()
    assert [v.text for v in values["area"]] == ["studio"]
    assert [v.text for v in values["cover"]] == ["kitchen blinds"]
    lamp = next(v for v in values["name"] if v.text == "ceiling light")
    assert dict(lamp.context) == {"domain": "light", "area": "studio"}
    assert not devices.update(Z2M_SWITCH[0], json.dumps(Z2M_SWITCH[1]).encode())  # the same again: no change
    assert devices.update(Z2M_SWITCH[0], b"")
    assert "fish tank" not in [v.text for v in devices.list_values()["name"]]


# --- against a real mosquitto ----------------------------------------------------------------------


def publish_retained(broker: Broker, *messages: tuple[str, Any]) -> None:
    """Publish retained messages (dict payloads as JSON, "" to clear) as the devices' bridges do, and wait."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bridge-{time.monotonic_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            text = json.dumps(payload) if isinstance(payload, dict) else payload
            client.publish(topic, text, qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def publish(broker: Broker, *messages: Any) -> None:
    """Publish rhasspy-hermes messages (not retained), as Rhasspy's services do."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rhasspy-{time.monotonic_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for message in messages:
            client.publish(message.topic(), message.payload(), qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def plugin_for(broker: Broker, controls: Controls, **table: Any) -> MqttPlugin:
    settings = parse_settings({"host": broker.host, "port": broker.port, **table}, "config.toml", "kitchen")
    return MqttPlugin(settings, [], controls.for_plugin("mqtt"))


@requires_mosquitto
def test_retained_configs_are_read_at_start_and_commands_reach_the_devices(
    broker: Broker, subscriber: Subscriber
) -> None:
    publish_retained(broker, *ALL)
    controls = Controls()
    rule = {"intent": "HassTurnOn", "slots": {"name": "kitchen light"}, "topic": "home/{name|slug}/set", "payload": "ON"}
    plugin = plugin_for(broker, controls, commands=[rule])
    plugin.start()
    try:
        assert plugin.wait_for_devices(5) == len(ALL)
        _, lists = controls.lists()
        assert sorted(v.text for v in lists["name"]) == sorted(device(m).name for m in ALL)
        subscriber.drain(0.3)
        plugin.intent("kitchen", "HassLightSet", {"name": "reading lamp", "brightness": 50}, "set the reading lamp "
                      "to fifty percent", 0.9, {})
        got = subscriber.wait_for("zigbee2mqtt/Reading lamp/set")
        assert got.json() == {"state": "ON", "brightness": 127}
        plugin.intent("kitchen", "HassTurnOn", {"name": "front door", "domain": "lock"}, "lock the front door", 0.9, {})
        assert subscriber.wait_for("zigbee2mqtt/Front door/set").text == "LOCK"
        plugin.intent("kitchen", "HassTurnOn", {"name": "kitchen light"}, "turn on the kitchen light", 0.9, {})
        assert subscriber.wait_for("home/kitchen_light/set").text == "ON"  # a hand-written rule still works

        publish_retained(broker, (Z2M_LOCK[0], ""))  # the lock leaves Zigbee2MQTT: empty retained config
        assert wait_until(lambda: "front door" not in [v.text for v in controls.lists()[1]["name"]], 5)
        subscriber.drain(0.3)
        plugin.intent("kitchen", "HassTurnOn", {"name": "front door"}, "lock the front door", 0.9, {})
        plugin.intent("kitchen", "HassTurnOff", {"name": "fish tank"}, "turn off the fish tank", 0.9, {})
        after = [subscriber.get().topic for _ in range(3)]  # the JSON events of both, then the fish tank's command
        assert after == ["vcd/kitchen/intent/HassTurnOn", "vcd/kitchen/intent/HassTurnOff", "zigbee2mqtt/Fish tank/set"]
        assert subscriber.seen[-1].text == "OFF" and subscriber.drain(0.3) == []
    finally:
        plugin.stop()


@requires_mosquitto
def test_discovery_can_be_switched_off(broker: Broker) -> None:
    publish_retained(broker, Z2M_SWITCH)
    controls = Controls()
    plugin = plugin_for(broker, controls, discover_devices=False)
    plugin.start()
    try:
        assert plugin.wait_for_devices(1) == 0 and plugin.devices is None
        assert controls.lists()[1] == {}
    finally:
        plugin.stop()


@requires_mosquitto
def test_hermes_toggles_for_this_site_pause_recognition(broker: Broker) -> None:
    pytest.importorskip("rhasspyhermes", reason="rhasspy-hermes is installed by scripts/install.sh")
    import paho.mqtt.client as mqtt
    from rhasspyhermes.asr import AsrToggleOff, AsrToggleOn, AsrToggleReason
    from rhasspyhermes.wake import HotwordToggleOff, HotwordToggleOn, HotwordToggleReason

    controls = Controls()
    plugin = plugin_for(broker, controls, hermes=True)
    plugin.start()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rhasspy-dialogue")
    client.connect(broker.host, broker.port)
    client.loop_start()

    def send(message: Any) -> None:
        client.publish(message.topic(), message.payload(), qos=1).wait_for_publish(5)

    try:
        assert plugin.publisher.subscribed.wait(5)
        send(AsrToggleOff(site_id="bedroom"))  # another satellite: not for vcd
        send(HotwordToggleOff(site_id="kitchen", reason=HotwordToggleReason.TTS_SAY))
        assert wait_until(lambda: controls.paused_by() == "mqtt: hermes/hotword/toggleOff (ttsSay)", 5)
        send(AsrToggleOff(site_id="kitchen", reason=AsrToggleReason.DIALOGUE_SESSION))
        send(HotwordToggleOn(site_id="kitchen", reason=HotwordToggleReason.TTS_SAY))
        assert wait_until(lambda: controls.paused_by() == "mqtt: hermes/asr/toggleOff (dialogueSession)", 5)
        send(AsrToggleOn(site_id="kitchen"))  # the unknown reason overrides the others, as in Rhasspy
        assert wait_until(lambda: controls.paused_by() == "", 5)
    finally:
        client.disconnect()
        client.loop_stop()
        plugin.stop()


# --- the real daemon, spoken commands ------------------------------------------------------------


SITE = "e2e"


def daemon_config(tmp_path: Path, broker: Broker, **mqtt: Any) -> Path:
    from test_end_to_end import config_for

    return config_for(tmp_path, broker, **mqtt)


@requires_mosquitto
@requires_espeak
def test_spoken_commands_reach_discovered_devices(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, speech_wav: Any, run_vcd: Any
) -> None:
    """Devices announced before vcd starts are in the grammar for the first segment of an input file."""
    publish_retained(broker, *ALL)
    rule = {"intent": "HassTurnOn", "slots": {"name": "kitchen light"}, "topic": "home/{name|slug}/set", "payload": "ON"}
    config = daemon_config(tmp_path, broker, commands=[rule])
    wav = speech_wav("turn on the reading lamp", 1.5, "set the desk lamp to forty percent", 1.5,
                     "open the kitchen blinds", 1.5, "set the temperature to twenty degrees", 1.5,
                     "turn off the studio lights", 1.5, "turn on the kitchen light")
    daemon = run_vcd(config, "--input", str(wav))
    assert daemon.wait(120) == 0, daemon.log
    got = [(m.topic, m.text) for m in subscriber.drain(1.0) if not m.topic.startswith(("vcd/", PREFIX))]
    assert got == [
        ("zigbee2mqtt/Reading lamp/set", '{"state": "ON"}'),  # Zigbee2MQTT, JSON schema, named after its device
        ("desk_lamp/cmnd/Dimmer", "40"),  # Tasmota, brightness scale 100
        ("zigbee2mqtt/Kitchen blinds/set", "OPEN"),  # a cover: HassTurnOn opens it
        ("zigbee2mqtt/Bedroom radiator/set/current_heating_setpoint", "20"),  # the only thermostat
        ("studio-node/light/ceiling_light/command", '{"state": "OFF"}'),  # ESPHome, by its announced area
        ("home/kitchen_light/set", "ON"),  # the hand-written [[plugins.mqtt.commands]] rule
    ], daemon.log
    assert "discovery: 8 devices" in daemon.log


@requires_mosquitto
@requires_espeak
def test_devices_come_and_go_while_running_and_hermes_toggles(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, run_vcd: Any
) -> None:
    pytest.importorskip("rhasspyhermes", reason="rhasspy-hermes is installed by scripts/install.sh")
    from rhasspyhermes.asr import AsrToggleOff, AsrToggleOn
    from rhasspyhermes.nlu import NluIntent

    daemon = run_vcd(daemon_config(tmp_path, broker, hermes=True), "--input", "-", stdin=True)
    subscriber.wait_for(f"vcd/{SITE}/status", payload="online", timeout_s=60)
    assert wait_until(lambda: "listening on" in daemon.log, 60), daemon.log

    publish_retained(broker, Z2M_SWITCH)  # a new device while vcd runs
    assert wait_until(lambda: "compiled with the plugins' list values" in daemon.log, 30), daemon.log
    daemon.feed(to_pcm16(utterances("turn off the fish tank")))
    assert subscriber.wait_for("zigbee2mqtt/Fish tank/set", timeout_s=60).text == "OFF"
    intent = NluIntent.from_json(subscriber.wait_for("hermes/intent/HassTurnOff").text)
    assert (intent.site_id, intent.raw_input, intent.slots[0].raw_value) == (SITE, "turn off the fish tank",
                                                                             "fish tank")

    publish(broker, AsrToggleOff(site_id=SITE))
    assert wait_until(lambda: "paused recognition" in daemon.log, 10), daemon.log
    daemon.feed(to_pcm16(utterances("turn on the kitchen light")))
    assert wait_until(lambda: "recognition paused" in daemon.log, 60), daemon.log  # heard, not decoded
    publish(broker, AsrToggleOn(site_id=SITE))
    assert wait_until(lambda: "resumed recognition" in daemon.log, 10), daemon.log

    compiled = daemon.log.count("compiled with the plugins' list values")
    publish_retained(broker, (Z2M_SWITCH[0], ""))  # the device is gone
    assert wait_until(lambda: daemon.log.count("compiled with the plugins' list values") > compiled, 30)
    daemon.feed(to_pcm16(utterances("turn on the fish tank", 1.5, "turn on the bedroom light")))
    decoded = lambda: daemon.log.count("asr: intent") + daemon.log.count("asr: not a command")  # noqa: E731
    assert wait_until(lambda: decoded() >= 3, 60), daemon.log  # the first command, then these two
    daemon.close_input()
    assert daemon.wait(60) == 0, daemon.log
    seen = subscriber.seen + subscriber.drain(0.5)
    assert [m.text for m in seen if m.topic == "zigbee2mqtt/Fish tank/set"] == ["OFF"]  # nothing after it left
    named = [m.json()["slots"].get("name") for m in seen if m.topic.startswith(f"vcd/{SITE}/intent/")]
    assert named[0] == "fish tank" and "kitchen light" not in named  # not acted on while toggled off
    assert named[-1] == "bedroom light", daemon.log  # decoding goes on after the device left
