"""The real ``vcd run`` with the trained model, fed synthesised speech, publishing to a real mosquitto.

The bundled model (vcd/models/default.pt) is used unless ``$VCD_TEST_MODEL`` names another model file.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Broker,
    Subscriber,
    noise,
    requires_espeak,
    requires_mosquitto,
    silence,
    speak,
    to_pcm16,
    utterances,
    wait_until,
    write_config,
)

pytestmark = [requires_mosquitto, requires_espeak]

SITE = "e2e"
STATUS = f"vcd/{SITE}/status"
INTENT = f"vcd/{SITE}/intent/"

COMMANDS = [
    ("turn on the kitchen light", "HassTurnOn", {"name": "kitchen light"}),
    ("turn off the bedroom light", "HassTurnOff", {"name": "bedroom light"}),
    (
        "set the living room to twenty one degrees",
        "HassClimateSetTemperature",
        {"area": "living room", "temperature": 21},
    ),
]
OUT_OF_GRAMMAR = ["what a lovely day it is outside", "please order a large pizza with olives"]


def config_for(tmp_path: Path, broker: Broker, plugin_dirs: list[Path] | None = None, **mqtt: Any) -> Path:
    plugins: dict[str, Any] = {"enabled": ["mqtt"]}
    if plugin_dirs:
        plugins["dirs"] = [str(d) for d in plugin_dirs]
    sections: dict[str, dict[str, Any]] = {"daemon": {"site": SITE, "log_level": "info"}}
    if os.environ.get("VCD_TEST_MODEL"):  # another model than the bundled one, e.g. a checkpoint in training
        sections["recognizer"] = {"model": str(Path(os.environ["VCD_TEST_MODEL"]).resolve())}
    return write_config(
        tmp_path / "config.toml",
        {
            **sections,
            "plugins": plugins,
            "plugins.mqtt": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
                **mqtt,
            },
        },
    )


def same_sentence(heard: str, said: str) -> bool:
    """The grammar sentence decoded for ``said``: the same words, "the" being optional in the templates."""
    words = [[w for w in sentence.split() if w != "the"] for sentence in (heard, said)]
    return words[0] == words[1]


def expect_command(sub: Subscriber, intent: str, slots: dict[str, Any], text: str, timeout_s: float = 60) -> None:
    message = sub.wait_for(INTENT + intent, timeout_s=timeout_s)
    payload = message.json()
    assert (payload["intent"], payload["slots"], payload["site"]) == (intent, slots, SITE)
    assert same_sentence(payload["text"], text), payload["text"]
    assert 0.0 < payload["confidence"] <= 1.0
    assert payload["speech_end"] <= payload["recognized_at"] <= message.at + 0.5
    assert payload["audio_s"] > 0.5 and payload["decode_ms"] > 0


def test_spoken_commands_are_published(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, speech_wav: Any, run_vcd: Any
) -> None:
    rules = [
        {"intent": "HassTurnOn", "topic": "home/{name|slug}/set", "payload": "ON"},
        {"intent": "HassTurnOff", "topic": "home/{name|slug}/set", "payload": "OFF"},
    ]
    config = config_for(tmp_path, broker, commands=rules)
    wav = speech_wav(COMMANDS[0][0], 1.5, COMMANDS[1][0], 1.5, COMMANDS[2][0])

    daemon = run_vcd(config, "--input", str(wav))
    assert daemon.wait(120) == 0, daemon.log

    got = [(m.topic, m.text) for m in subscriber.drain(1.0)]
    topics = [t for t, _ in got]
    assert topics == [
        STATUS,
        INTENT + "HassTurnOn",
        "home/kitchen_light/set",
        INTENT + "HassTurnOff",
        "home/bedroom_light/set",
        INTENT + "HassClimateSetTemperature",
        STATUS,
    ], daemon.log
    assert (got[0][1], got[2][1], got[4][1], got[-1][1]) == ("online", "ON", "OFF", "offline")
    for message, (text, intent, slots) in zip([subscriber.seen[i] for i in (1, 3, 5)], COMMANDS, strict=True):
        payload = message.json()
        assert (payload["intent"], payload["slots"], payload["site"]) == (intent, slots, SITE)
        assert same_sentence(payload["text"], text), payload["text"]
        assert 0.0 < payload["confidence"] <= 1.0


def test_out_of_grammar_speech_and_noise_publish_nothing(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, run_vcd: Any
) -> None:
    import numpy as np
    from conftest import write_wav

    audio = np.concatenate([silence(2.0), noise(3.0), utterances(OUT_OF_GRAMMAR[0], 1.5, OUT_OF_GRAMMAR[1])])
    wav = write_wav(tmp_path / "oov_speech_and_noise.wav", audio)
    daemon = run_vcd(config_for(tmp_path, broker), "--input", str(wav))
    assert daemon.wait(120) == 0, daemon.log
    assert [(m.topic, m.text) for m in subscriber.drain(1.0)] == [(STATUS, "online"), (STATUS, "offline")], daemon.log
    assert "not a command" in daemon.log  # the speech was heard and rejected, not missed


def test_sigterm_exits_0_after_publishing_offline(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, run_vcd: Any
) -> None:
    daemon = run_vcd(config_for(tmp_path, broker), "--input", "-", stdin=True)
    daemon.feed(to_pcm16(silence(1.0)))
    subscriber.wait_for(STATUS, payload="online", timeout_s=60)
    assert wait_until(lambda: "listening on" in daemon.log, 60), daemon.log
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    offline = subscriber.wait_for(STATUS, timeout_s=5)
    assert offline.text == "offline"


def test_broker_restart_mid_run_loses_no_command(tmp_path: Path, run_vcd: Any) -> None:
    broker = Broker(tmp_path, persistent=True)  # keeps the durable subscriber's session and queue across the restart
    broker.start()
    sub = Subscriber(broker, durable=True)
    try:
        daemon = run_vcd(config_for(tmp_path, broker), "--input", "-", stdin=True)
        sub.wait_for(STATUS, payload="online", timeout_s=60)
        daemon.feed(to_pcm16(utterances(COMMANDS[0][0])))
        expect_command(sub, "HassTurnOn", COMMANDS[0][2], COMMANDS[0][0])

        broker.stop()
        daemon.feed(to_pcm16(utterances(COMMANDS[1][0], 1.5, COMMANDS[2][0])))
        assert wait_until(lambda: daemon.log.count("asr: intent") >= 3, 60), daemon.log  # recognised while down
        time.sleep(0.5)
        broker.start()

        expect_command(sub, "HassTurnOff", COMMANDS[1][2], COMMANDS[1][0], timeout_s=30)
        expect_command(sub, "HassClimateSetTemperature", COMMANDS[2][2], COMMANDS[2][0], timeout_s=30)
        daemon.close_input()
        assert daemon.wait(60) == 0, daemon.log
        sub.wait_for(STATUS, payload="offline", timeout_s=5)
        assert "dropped the oldest" not in daemon.log
    finally:
        sub.close()
        broker.stop()


def test_broker_down_at_start_does_not_stop_the_daemon(tmp_path: Path, run_vcd: Any) -> None:
    broker = Broker(tmp_path, persistent=True)
    broker.start()
    Subscriber(broker, durable=True).close()  # register the durable session, then take the broker away
    broker.stop()
    daemon = run_vcd(config_for(tmp_path, broker), "--input", "-", stdin=True)
    try:
        daemon.feed(to_pcm16(utterances(COMMANDS[0][0])))
        assert wait_until(lambda: "asr: intent" in daemon.log, 60), daemon.log
        assert "cannot reach broker" in daemon.log
        broker.start()
        sub = Subscriber(broker, durable=True)
        expect_command(sub, "HassTurnOn", COMMANDS[0][2], COMMANDS[0][0], timeout_s=30)
        daemon.close_input()
        assert daemon.wait(60) == 0, daemon.log
        sub.close()
    finally:
        broker.stop()


RAISING_PLUGIN = textwrap.dedent(
    '''
    """A broken plugin: every hook raises."""
    import vcd

    @vcd.hookimpl
    def vcd_transcript(text):
        raise RuntimeError("transcript hook exploded")

    @vcd.hookimpl
    def vcd_intent(intent, slots):
        raise RuntimeError(f"cannot handle {intent}")
    '''
)


def test_a_raising_plugin_does_not_block_mqtt(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, speech_wav: Any, run_vcd: Any
) -> None:
    plugin_dir = tmp_path / "my_plugins"
    plugin_dir.mkdir()
    (plugin_dir / "broken.py").write_text(RAISING_PLUGIN)
    config = config_for(tmp_path, broker, plugin_dirs=[plugin_dir])
    wav = speech_wav(COMMANDS[0][0], 1.5, COMMANDS[1][0])
    daemon = run_vcd(config, "--input", str(wav))
    assert daemon.wait(120) == 0, daemon.log
    expect_command(subscriber, "HassTurnOn", COMMANDS[0][2], COMMANDS[0][0])
    expect_command(subscriber, "HassTurnOff", COMMANDS[1][2], COMMANDS[1][0])
    assert "cannot handle HassTurnOn" in daemon.log and "broken" in daemon.log


def test_bad_mqtt_config_exits_78_before_listening(
    tmp_path: Path, broker: Broker, speech_wav: Any, run_vcd: Any
) -> None:
    config = config_for(tmp_path, broker, qos=3)
    daemon = run_vcd(config, "--input", str(speech_wav(COMMANDS[0][0])))
    assert daemon.wait(60) == 78, daemon.log
    errors = [line for line in daemon.log.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {config}: plugins.mqtt.qos: must be 0, 1 or 2 (got 3)"]
    assert "listening on" not in daemon.log


@pytest.mark.parametrize("text", [c[0] for c in COMMANDS])
def test_synthesised_commands_are_long_enough(text: str) -> None:
    """Guards the fixtures: espeak-ng produced real speech for every command used above."""
    audio = speak(text)
    assert 0.8 < len(audio) / 16000 < 5.0
    assert float(abs(audio).max()) > 0.1
