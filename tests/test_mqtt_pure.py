"""The MQTT plugin without a broker: settings, templates, payloads, Hermes, properties, and a broker that is not there."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from conftest import free_port
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from vcd_plugins import mqtt as mqtt_plugin
from vcd_plugins.mqtt import hermes, payloads
from vcd_plugins.mqtt import settings as settings_module
from vcd_plugins.mqtt.payloads import MqttPlugin
from vcd_plugins.mqtt.settings import parse_settings, sentence_intents
from vcd_plugins.mqtt.templates import FILTERS, MissingField, Template, slugify

import vcd
from vcd.config import parse_config
from vcd.controls import Controls

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
        ({"discover_devices": "yes"}, "plugins.mqtt.discover_devices: must be true or false (got 'yes')"),
        ({"discovery_wait_s": 60}, "plugins.mqtt.discovery_wait_s: must be 0..30 (got 60)"),
        ({"discovery_prefix": "home/#"}, "plugins.mqtt.discovery_prefix: must not contain the wildcards '+' or '#' "
                                         "(got 'home/#')"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    path = tmp_path / "config.toml"
    config = parse_config({"plugins": {"mqtt": table}}, path)
    with pytest.raises(vcd.ConfigError) as caught:
        mqtt_plugin.vcd_startup(config=config, config_path=path, controls=Controls().for_plugin("mqtt"))
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
    intents = sentence_intents(config)  # the bundled sentences, then the user's, which add to them
    assert intents[-1] == "OpenGarage" and "HassTurnOn" in intents
    replaced = {"recognizer": {"sentences": str(sentences), "sentences_mode": "replace"}}
    assert sentence_intents(parse_config(replaced, tmp_path / "config.toml")) == ["OpenGarage"]
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
    path = tmp_path / "config.toml"
    mqtt_plugin.vcd_startup(config=config, config_path=path, controls=Controls().for_plugin("mqtt"))
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


# --- payloads ------------------------------------------------------------------------------------


def test_payload_builders() -> None:
    event = payloads.intent_event(SITE, "HassTurnOn", {"name": "tv"}, "turn on the tv", 0.912345, TIMINGS)
    assert isinstance(event.pop("id"), str)
    assert event == {
        "intent": "HassTurnOn",
        "slots": {"name": "tv"},
        "text": "turn on the tv",
        "confidence": 0.9123,
        "site": SITE,
        "speech_end": 1764000000.25,
        "recognized_at": 1764000000.31,
        "audio_s": 1.62,
        "decode_ms": 48.5,
    }
    assert payloads.unrecognized_event(SITE, "hm", 0.31, 1.4) == {
        "text": "hm",
        "confidence": 0.31,
        "site": SITE,
        "audio_s": 1.4,
    }
    assert list(payloads.homeassistant_event("HassTurnOn", "turn on the tv", 0.9, {"name": "tv"}).items()) == [
        ("name", "tv"),
        ("event_type", "HassTurnOn"),
        ("text", "turn on the tv"),
        ("confidence", 0.9),
    ]
    settings = parse_settings({"homeassistant_discovery": True, "topic_prefix": "house"}, "c", SITE)
    assert payloads.discovery_topic(settings) == "homeassistant/event/vcd_kitchen/command/config"
    config = payloads.discovery_config(settings, ["HassTurnOn", "unrecognized"])
    assert (config["state_topic"], config["availability_topic"]) == ("house/kitchen/event", "house/kitchen/status")
    assert config["event_types"] == ["HassTurnOn", "unrecognized"]
    assert config["device"]["sw_version"] == vcd.__version__


def test_command_messages_without_a_broker(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vcd_plugins.mqtt")
    rules = parse_settings(
        {
            "commands": [
                {"intent": "HassTurnOn", "topic": "home/{name|slug}/set", "payload": "ON", "qos": 0},
                {"intent": "HassTurnOn", "slots": {"domain": ["light", "switch"]}, "topic": "x/{area}", "payload": ""},
                {"intent": "HassTurnOff", "topic": "home/{name}/set", "payload": "OFF", "retain": True},
            ]
        },
        "c",
        SITE,
    ).commands
    got = payloads.command_messages(rules, SITE, "HassTurnOn", {"name": "Porch Light"}, "turn on the porch light", 1)
    assert [(m.topic, m.payload, m.qos, m.retain, m.what) for m in got] == [
        ("home/porch_light/set", "ON", 0, False, "commands[0] (HassTurnOn)")
    ]
    got = payloads.command_messages(rules, SITE, "HassTurnOn", {"domain": "switch"}, "turn on the switch", 1)
    assert list(got) == []
    got = payloads.command_messages(rules, SITE, "HassTurnOff", {"name": "tv+"}, "turn off tv plus", 1)
    assert list(got) == []
    assert [r.getMessage() for r in caplog.records] == [
        (
            "commands[0] (intent HassTurnOn) skipped: the template 'home/{name|slug}/set' names {name}, "
            "which this command lacks (slots: domain)"
        ),
        (
            "commands[1] (intent HassTurnOn) skipped: the template 'x/{area}' names {area}, "
            "which this command lacks (slots: domain)"
        ),
        (
            "commands[2] (intent HassTurnOff) skipped: topic must not contain the wildcards '+' or '#' "
            "(got 'home/tv+/set') (template 'home/{name}/set')"
        ),
    ]


# --- Rhasspy Hermes --------------------------------------------------------------------------------


def test_hermes_payloads() -> None:
    text = "set the living room to twenty one degrees"
    slots = {"area": "living room", "temperature": 21}
    intent = hermes.hermes_intent("livingroom", "HassClimateSetTemperature", slots, text, 0.87, "s1", "q1", "en")
    assert hermes.intent_topic("HassClimateSetTemperature") == "hermes/intent/HassClimateSetTemperature"
    assert intent["intent"] == {"intentName": "HassClimateSetTemperature", "confidenceScore": 0.87}
    assert intent["slots"][0]["range"] == {"start": 8, "end": 19, "rawStart": 8, "rawEnd": 19}
    # rawValue: the words spoken ("twenty one"), value: the number; the range points at the words
    assert intent["slots"][1]["rawValue"] == "twenty one"
    assert intent["slots"][1]["value"] == {"kind": "Number", "value": 21}
    assert text[slice(*[intent["slots"][1]["range"][k] for k in ("start", "end")])] == "twenty one"
    assert (intent["id"], intent["wakewordId"], intent["lang"]) == ("q1", "default", "en")
    assert [t["value"] for t in intent["asrTokens"][0]] == text.split()
    captured = hermes.hermes_text_captured("livingroom", text, 0.87, 2.1, "s1", "en")
    assert (captured["likelihood"], captured["seconds"], captured["sessionId"]) == (0.87, 2.1, "s1")
    assert (captured["wakewordId"], captured["lang"]) == ("default", "en")
    assert hermes.hermes_not_recognized("livingroom", "play some jazz", "s2", "q2") == {
        "input": "play some jazz",
        "siteId": "livingroom",
        "sessionId": "s2",
        "id": "q2",
        "customData": None,
    }


def test_hermes_payloads_validate_against_rhasspy_hermes() -> None:
    """Every payload vcd publishes parses into rhasspy-hermes' dataclass and back to the same JSON."""
    nlu = pytest.importorskip("rhasspyhermes.nlu", reason="rhasspy-hermes is installed by scripts/install.sh")
    from rhasspyhermes.asr import AsrTextCaptured
    from rhasspyhermes.dialogue import DialogueSessionEnded, DialogueSessionStarted

    text = "set the living room to twenty one degrees"
    slots = {"area": "living room", "temperature": 21}
    intent = hermes.hermes_intent("livingroom", "HassClimateSetTemperature", slots, text, 0.87, "s1", "q1", "en")
    parsed = nlu.NluIntent.from_dict(intent)
    assert parsed.intent.intent_name == "HassClimateSetTemperature"
    assert parsed.site_id == "livingroom" and parsed.session_id == "s1" and parsed.id == "q1"
    assert {s.slot_name: (s.raw_value, s.value["value"]) for s in parsed.slots} == {
        "area": ("living room", "living room"),
        "temperature": ("twenty one", 21),
    }
    assert parsed.raw_input == text and parsed.wakeword_id == "default" and parsed.lang == "en"
    assert parsed.asr_tokens[0][3].value == "room" and parsed.asr_tokens[0][3].range_start == 15
    captured = AsrTextCaptured.from_dict(hermes.hermes_text_captured("livingroom", text, 0.87, 2.1, "s1", "en"))
    assert (captured.text, captured.likelihood, captured.seconds, captured.lang) == (text, 0.87, 2.1, "en")
    missed = nlu.NluIntentNotRecognized.from_dict(hermes.hermes_not_recognized("livingroom", "jazz", "s2", "q2"))
    assert (missed.input, missed.session_id, missed.id) == ("jazz", "s2", "q2")
    started = DialogueSessionStarted.from_dict(hermes.hermes_session_started("livingroom", "s1", "en"))
    assert (started.session_id, started.site_id, started.lang) == ("s1", "livingroom", "en")
    for recognized, reason in ((True, "nominal"), (False, "intentNotRecognized")):
        ended = DialogueSessionEnded.from_dict(hermes.hermes_session_ended("livingroom", "s1", recognized))
        assert (ended.session_id, ended.termination.reason.value) == ("s1", reason)


def test_hermes_toggles_parse_as_rhasspy_sends_them() -> None:
    pytest.importorskip("rhasspyhermes", reason="rhasspy-hermes is installed by scripts/install.sh")
    from rhasspyhermes.asr import AsrToggleOff, AsrToggleReason
    from rhasspyhermes.wake import HotwordToggleOn

    off = AsrToggleOff(site_id="kitchen", reason=AsrToggleReason.TTS_SAY)
    assert hermes.parse_toggle(off.topic(), off.payload().encode()) == hermes.Toggle("asr", False, "kitchen", "ttsSay")
    on = HotwordToggleOn(site_id="kitchen")
    assert hermes.parse_toggle(on.topic(), on.payload().encode()) == hermes.Toggle("hotword", True, "kitchen", "")
    assert hermes.parse_toggle("hermes/asr/toggleOn", b"") == hermes.Toggle("asr", True, "default", "")
    with pytest.raises(ValueError):
        hermes.parse_toggle("hermes/asr/toggleOff", b"[1]")


def test_hermes_slot_range_is_in_the_text_as_spoken() -> None:
    text = "İstanbul lights on"  # "İ".lower() is two characters: ranges must not come from text.lower()
    slot = hermes.hermes_slot("name", "Lights", text, 0.9)
    assert slot["range"] == {"start": 9, "end": 15, "rawStart": 9, "rawEnd": 15}
    assert text[9:15] == "lights"


# --- properties ------------------------------------------------------------------------------------

PROPERTY = hypothesis.settings(
    deadline=None,
    max_examples=150,
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],  # tmp_path is only read
)

# What a TOML table can hold (no datetimes: nothing here reads them, and they are not JSON).
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(),
    # no subnormal floats: a recogniser loaded earlier in this process sets flush-denormal mode
    st.floats(allow_subnormal=False),
    st.text(max_size=12),
    st.sampled_from(["", "~", "~nosuchuser/pw", "x.pem", "vcd/#", "{name|slug}"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
command_tables = st.fixed_dictionaries(
    {"intent": st.text(max_size=8), "topic": st.text(max_size=12), "payload": st.text(max_size=12)},
    optional={k: toml_values for k in ("slots", "qos", "retain", "slot")},
)
tls_tables = st.dictionaries(st.sampled_from(["ca_file", "cert_file", "key_file", "insecure", "verify"]), toml_scalars)
mqtt_tables = st.dictionaries(
    st.sampled_from([*settings_module._KEYS, "prot"]) | st.text(max_size=8),
    toml_values | st.lists(command_tables, max_size=2) | tls_tables,
    max_size=4,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_subnormal=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
field_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)


@PROPERTY
@given(table=mqtt_tables)
def test_any_table_is_accepted_or_refused_in_one_line(tmp_path: Path, table: dict[str, Any]) -> None:
    try:
        parse_settings(table, "config.toml", SITE, tmp_path)
    except vcd.ConfigError as exc:
        message = str(exc)
        assert message.startswith("config.toml: plugins.mqtt.")
        assert "\n" not in message and "\r" not in message


@PROPERTY
@given(source=st.text(max_size=20))
def test_any_text_parses_as_a_template_or_says_why(source: str) -> None:
    try:
        Template.parse(source)
    except ValueError as exc:
        assert str(exc)


@PROPERTY
@given(literal=st.text(max_size=20))
def test_doubled_braces_are_literal(literal: str) -> None:
    escaped = literal.replace("{", "{{").replace("}", "}}")
    assert Template.parse(escaped).render({}) == literal


@PROPERTY
@given(
    values=st.dictionaries(field_names, json_values, min_size=1, max_size=3),
    filters=st.lists(st.sampled_from(sorted(FILTERS)), max_size=2),
)
def test_rendering_never_raises_on_any_slot_value(values: dict[str, Any], filters: list[str]) -> None:
    template = Template.parse("/".join("{" + "|".join([name, *filters]) + "}" for name in values))
    assert isinstance(template.render(values), str)


@PROPERTY
@given(value=st.text())
def test_slugs_are_plain_and_stable(value: str) -> None:
    slug = slugify(value)
    assert re.fullmatch(r"([a-z0-9]+(_[a-z0-9]+)*)?", slug)
    assert slugify(slug) == slug


@PROPERTY
@given(slots=st.dictionaries(field_names, json_values, max_size=3), text=st.text(max_size=30))
@hypothesis.example(slots={"name": "a"}, text="İ a")
def test_hermes_payloads_are_json_and_ranges_point_at_the_slot(slots: dict[str, Any], text: str) -> None:
    payload = hermes.hermes_intent(SITE, "I", slots, text, 0.5, "s")
    json.dumps(payload, allow_nan=True)
    for slot in payload["slots"]:
        if "range" in slot:
            span = text[slot["range"]["start"] : slot["range"]["end"]]
            assert re.fullmatch(re.escape(slot["rawValue"]), span, re.IGNORECASE)
