"""The MQTT plugin without a broker: settings validation, templates, idle hooks, and a broker that is not there."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from vcd_plugins import mqtt as mqtt_plugin
from vcd_plugins.mqtt import hermes
from vcd_plugins.mqtt.payloads import MqttPlugin
from vcd_plugins.mqtt.settings import parse_settings, sentence_intents
from vcd_plugins.mqtt.templates import MissingField, Template, slugify

import vcd
from vcd.config import parse_config

SITE = "kitchen"
TIMINGS = {"audio_s": 1.62, "decode_ms": 48.5, "speech_end": 1764000000.25, "recognized_at": 1764000000.31}


def turn_on_kitchen_light(plugin: MqttPlugin) -> None:
    plugin.intent(SITE, "HassTurnOn", {"name": "kitchen light"}, "turn on the kitchen light", 0.93, TIMINGS)


# --- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"qos": 3}, "plugins.mqtt.qos: must be 0, 1 or 2 (got 3)"),
        ({"port": 0}, "plugins.mqtt.port: must be 1..65535 (got 0)"),
        ({"prot": 1884}, "plugins.mqtt.prot: unknown key (did you mean 'port'?)"),
        ({"host": ""}, "plugins.mqtt.host: must not be empty"),
        ({"retain": "yes"}, "plugins.mqtt.retain: must be true or false (got 'yes')"),
        (
            {"topic_prefix": "vcd/#"},
            "plugins.mqtt.topic_prefix: must not contain the wildcards '+' or '#' (got 'vcd/#')",
        ),
        (
            {"availability_topic": "vcd/+/status"},
            "plugins.mqtt.availability_topic: must not contain the wildcards '+' or '#' (got 'vcd/+/status')",
        ),
        (
            {"reconnect_min_s": 10, "reconnect_max_s": 5},
            "plugins.mqtt.reconnect_max_s: must be at least reconnect_min_s (5 < 10)",
        ),
        ({"queue_size": 0}, "plugins.mqtt.queue_size: must be 1..1000000 (got 0)"),
        (
            {"password_env": "VCD_TEST_NO_SUCH_VARIABLE", "username": "u"},
            "plugins.mqtt.password_env: environment variable VCD_TEST_NO_SUCH_VARIABLE is not set",
        ),
        (
            {"password_file": "missing.txt", "username": "u"},
            "plugins.mqtt.password_file: {dir}/missing.txt: no such file",
        ),
        ({"tls": {"ca_file": "ca.pem"}}, "plugins.mqtt.tls.ca_file: {dir}/ca.pem: no such file"),
        ({"tls": {"verify": False}}, "plugins.mqtt.tls.verify: unknown key"),
        ({"a\nb": 1}, "plugins.mqtt.a\\nb: unknown key"),  # a quoted TOML key may hold a line break
        (
            {"password_file": "~nosuchuser/pw", "username": "u"},
            "plugins.mqtt.password_file: ~nosuchuser/pw: cannot expand '~': no such user",
        ),
        (
            {"commands": [{"intent": "HassTurnOn", "topic": "home/+/set", "payload": "ON"}]},
            "plugins.mqtt.commands[0].topic: must not contain the wildcards '+' or '#' (got 'home/+/set')",
        ),
        (
            {"commands": [{"intent": "HassTurnOn", "topic": "home/{name|shout}", "payload": "ON"}]},
            ("plugins.mqtt.commands[0].topic: template 'home/{name|shout}': unknown filter 'shout' "
             "(known: json, lower, slug, upper)"),
        ),
        (
            {"commands": [{"intent": "HassTurnOn", "topic": "home/{name.attr}", "payload": "ON"}]},
            ("plugins.mqtt.commands[0].topic: template 'home/{name.attr}': {name.attr} must name a slot, "
             "e.g. {name} or {name|slug}"),
        ),
        (
            {"commands": [{"intent": "HassTurnOn", "topic": "home/x", "payload": "{oops"}]},
            ("plugins.mqtt.commands[0].payload: malformed template '{oops': expected '}' before end of string "
             "(write '{{' or '}}' for a literal brace)"),
        ),
        (
            {"commands": [{"intent": "HassTurnOn", "topic": "home/x"}]},
            "plugins.mqtt.commands[0].payload: missing (every command needs intent, topic and payload)",
        ),
        (
            {"commands": [{"intent": "HassTurnOn", "topic": "t", "payload": "p", "qos": 5}]},
            "plugins.mqtt.commands[0].qos: must be 0, 1 or 2 (got 5)",
        ),
        (
            {"commands": [{"intent": "HassTurnOn", "topic": "t", "payload": "p", "slot": {}}]},
            "plugins.mqtt.commands[0].slot: unknown key (did you mean 'slots'?)",
        ),
        (
            {"node_id": "vcd kitchen", "homeassistant_discovery": True},
            "plugins.mqtt.node_id: must use only letters, digits, '_' and '-' (got 'vcd kitchen')",
        ),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    path = tmp_path / "config.toml"
    config = parse_config({"plugins": {"mqtt": table}}, path)
    with pytest.raises(vcd.ConfigError) as caught:
        mqtt_plugin.vcd_startup(config=config, config_path=path)
    assert str(caught.value) == f"{path}: " + message.replace("{dir}", str(tmp_path))


def test_password_from_environment_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCD_TEST_MQTT_PASSWORD", "s3cret")
    settings = parse_settings({"username": "hub", "password_env": "VCD_TEST_MQTT_PASSWORD"}, "c", SITE)
    assert settings.password == "s3cret" and "s3cret" not in repr(settings)
    (tmp_path / "pw").write_text("from-file\n")
    settings = parse_settings({"username": "hub", "password_file": "pw"}, "c", SITE, tmp_path)
    assert settings.password == "from-file"


def test_a_literal_password_works_but_is_discouraged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vcd_plugins.mqtt")
    settings = parse_settings({"username": "hub", "password": "plain"}, "c", SITE)
    assert settings.password == "plain"
    assert [r.getMessage() for r in caplog.records] == [
        "plugins.mqtt.password is written in the configuration file; prefer password_env or password_file"
    ]
    with pytest.raises(vcd.ConfigError, match=r"^c: plugins.mqtt.password_env: give only one of password, "):
        parse_settings({"username": "hub", "password": "p", "password_env": "X"}, "c", SITE)


def test_event_types_come_from_the_sentence_files(tmp_path: Path) -> None:
    sentences = tmp_path / "mine.yaml"
    sentences.write_text("language: en\nintents:\n  OpenGarage:\n    data:\n      - sentences: [open the garage]\n")
    config = parse_config({"recognizer": {"sentences": str(sentences)}}, tmp_path / "config.toml")
    assert sentence_intents(config) == ["OpenGarage"]
    bundled = sentence_intents(parse_config({}))
    assert {"HassTurnOn", "HassTurnOff", "HassClimateSetTemperature"} <= set(bundled)


# --- templates -----------------------------------------------------------------------------------


def test_template_syntax() -> None:
    template = Template.parse("{{literal}} {name} {name|slug} {name|upper} {n|json} {intent|lower}")
    values = {"name": "Kitchen Light", "n": 2.5, "intent": "HassTurnOn"}
    assert template.render(values) == "{literal} Kitchen Light kitchen_light KITCHEN LIGHT 2.5 hassturnon"
    assert slugify("Café  Lights/2") == "cafe_lights_2"
    with pytest.raises(MissingField):
        template.render({"name": "x"})


# --- the hooks without a [plugins.mqtt] table ----------------------------------------------------


def test_no_table_means_idle(tmp_path: Path) -> None:
    config = parse_config({}, tmp_path / "config.toml")
    mqtt_plugin.vcd_startup(config=config, config_path=tmp_path / "config.toml")
    mqtt_plugin.vcd_intent(site="x", intent="HassTurnOn", slots={}, text="t", confidence=1.0, timings={})
    mqtt_plugin.vcd_shutdown(reason="test")


# --- a broker that is not there ------------------------------------------------------------------


def test_unreachable_broker_is_logged_once_and_shutdown_is_quick(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vcd_plugins.mqtt")
    settings = parse_settings(
        {"host": "127.0.0.1", "port": free_port(), "reconnect_min_s": 0.05, "reconnect_max_s": 0.1}, "config.toml", SITE
    )
    plugin = MqttPlugin(settings)
    plugin.start()
    turn_on_kitchen_light(plugin)
    time.sleep(0.6)  # several failed attempts
    started = time.monotonic()
    assert plugin.stop() is False
    assert time.monotonic() - started < 3
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot reach broker" in m for m in messages) == 1
    assert "1 queued message(s) not delivered before shutdown (broker unreachable)" in messages


# --- Rhasspy Hermes --------------------------------------------------------------------------------


def test_hermes_slot_range_is_in_the_text_as_spoken() -> None:
    text = "İstanbul lights on"  # "İ".lower() is two characters: ranges must not come from text.lower()
    slot = hermes.hermes_slot("name", "Lights", text, 0.9)
    assert slot["range"] == {"start": 9, "end": 15, "rawStart": 9, "rawEnd": 15}
    assert text[9:15] == "lights"
