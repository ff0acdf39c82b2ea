"""What each hook call publishes, and where: JSON events, mapped commands, Hermes and Home Assistant messages."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import vcd

from . import hermes
from .discovery import Devices, commands_for
from .publisher import OFFLINE, ONLINE, Message, Publisher
from .settings import CommandRule, MqttSettings
from .templates import MissingField, topic_problem

_LOGGER = logging.getLogger(__name__)

UNRECOGNIZED_EVENT = "unrecognized"  # Home Assistant event type for speech that is not a command


# --- vcd's own JSON events -----------------------------------------------------------------------


def intent_event(
    site: str, intent: str, slots: dict[str, Any], text: str, confidence: float, timings: dict[str, float]
) -> dict[str, Any]:
    """The payload of ``<topic_prefix>/<site>/intent/<intent>``; a fresh ``id`` each call."""
    return {
        "id": str(uuid.uuid4()),
        "intent": intent,
        "slots": slots,
        "text": text,
        "confidence": round(confidence, 4),
        "site": site,
        "speech_end": timings.get("speech_end"),
        "recognized_at": timings.get("recognized_at"),
        "audio_s": timings.get("audio_s"),
        "decode_ms": timings.get("decode_ms"),
    }


def unrecognized_event(site: str, text: str, confidence: float, audio_s: float) -> dict[str, Any]:
    """The payload of ``<topic_prefix>/<site>/unrecognized``."""
    return {"text": text, "confidence": round(confidence, 4), "site": site, "audio_s": audio_s}


# --- mapped commands ([[plugins.mqtt.commands]]) -------------------------------------------------


def command_messages(
    rules: tuple[CommandRule, ...], site: str, intent: str, slots: dict[str, Any], text: str, confidence: float
) -> Iterator[Message]:
    """The messages of the rules that match, in order; a rule whose templates cannot be filled is skipped and logged."""
    values = {"intent": intent, "site": site, "text": text, "confidence": round(confidence, 4), **slots}
    for rule in rules:
        if not rule.matches(intent, slots):
            continue
        try:
            topic = rule.topic.render(values)
            payload = rule.payload.render(values)
        except MissingField as exc:
            _LOGGER.warning(
                "commands[%d] (intent %s) skipped: the template %r names {%s}, which this command lacks (slots: %s)",
                rule.index,
                intent,
                _template_with(rule, exc.args[0]),
                exc.args[0],
                ", ".join(sorted(slots)) or "none",
            )
            continue
        problem = topic_problem(topic)
        if problem:
            _LOGGER.warning(
                "commands[%d] (intent %s) skipped: topic %s (template %r)",
                rule.index,
                intent,
                problem,
                rule.topic.source,
            )
            continue
        yield Message(topic, payload, rule.qos, rule.retain, f"commands[{rule.index}] ({intent})")


def _template_with(rule: CommandRule, name: str) -> str:
    for template in (rule.topic, rule.payload):
        if any(isinstance(p, tuple) and p[0] == name for p in template.parts):
            return template.source
    return rule.topic.source


# --- Home Assistant --------------------------------------------------------------------------------


def event_state_topic(settings: MqttSettings) -> str:
    """The state topic of vcd's Home Assistant ``event`` entity."""
    return f"{settings.base_topic}/event"


def discovery_topic(settings: MqttSettings) -> str:
    """Where Home Assistant's MQTT discovery looks for vcd's ``event`` entity."""
    return f"{settings.discovery_prefix}/event/{settings.node_id}/command/config"


def discovery_config(settings: MqttSettings, event_types: list[str]) -> dict[str, Any]:
    """The Home Assistant MQTT discovery payload of vcd's ``event`` entity."""
    s = settings
    return {
        "name": "Voice command",
        "unique_id": f"{s.node_id}_command",
        "state_topic": event_state_topic(s),
        "event_types": event_types,
        "availability_topic": s.availability_topic,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": s.qos,
        "icon": "mdi:microphone-message",
        "device": {
            "identifiers": [s.node_id],
            "name": f"vcd {s.site}",
            "manufacturer": "vcd",
            "model": "offline voice-command daemon",
            "sw_version": vcd.__version__,
        },
    }


def homeassistant_event(
    event_type: str, text: str, confidence: float, slots: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The payload on the ``event`` entity's state topic: the slots, then ``event_type``, ``text`` and ``confidence``."""
    return {**(slots or {}), "event_type": event_type, "text": text, "confidence": round(confidence, 4)}


# --- the plugin ----------------------------------------------------------------------------------


class MqttPlugin:
    """Turns hook calls into MQTT messages for one configured broker, and obeys what it reads there."""

    def __init__(
        self,
        settings: MqttSettings,
        intent_names: list[str] | None = None,
        controls: vcd.PluginControls | None = None,
        language: str = "en",
    ):
        self.settings = settings
        self.controls = controls
        self.language = language
        self.event_types = list(settings.event_types or intent_names or [])
        if UNRECOGNIZED_EVENT not in self.event_types:
            self.event_types.append(UNRECOGNIZED_EVENT)
        self.devices = Devices(settings.discovery_prefix) if settings.discover_devices else None
        subscriptions = list(self.devices.subscriptions) if self.devices is not None else []
        if settings.hermes:
            subscriptions += [*hermes.TOGGLE_TOPICS, hermes.TTS_SAY_TOPIC]
        self._says: dict[str, hermes.TtsSay] = {}  # vcd_say request id → the Hermes request waiting for sayFinished
        self._last_device_change = 0.0  # time.monotonic() of the last discovery message that changed a device
        self._toggled_off: dict[str, set[str]] = {"asr": set(), "hotword": set()}  # Hermes toggle reasons
        self._toggle_lock = threading.Lock()
        self._paused: set[str] = set()  # the pause reasons this plugin holds (Hermes toggles)
        self.publisher = Publisher(settings, self._discovery_messages(), subscriptions, self._on_message)
        self._session: tuple[str, str, str] | None = None  # (site, text, sessionId) of the last transcript

    # what vcd reads from the broker (on paho's network thread)

    def _on_message(self, topic: str, payload: bytes) -> None:
        if self.devices is not None and self.devices.is_config(topic):
            if self.devices.update(topic, payload):
                self._last_device_change = time.monotonic()
                self._update_lists()
        elif topic in hermes.TOGGLE_TOPICS:
            self._toggle(topic, payload)
        elif topic == hermes.TTS_SAY_TOPIC:
            self._tts_say(payload)

    def _tts_say(self, payload: bytes) -> None:
        """``hermes/tts/say`` for this site, or for a site another plugin plays answers at (a Rhasspy or vcd
        satellite of this hub's ``satellites`` plugin): ask the plugin that speaks (``controls.say``); sayFinished follows."""
        try:
            say = hermes.parse_tts_say(payload)
        except ValueError as exc:
            _LOGGER.warning("Hermes: %s ignored: %s", hermes.TTS_SAY_TOPIC, exc)
            return
        if self.controls is None or (say.site != self.settings.site
                                     and not self.controls.plays_at(say.site, saying=True)):
            return
        request_id = f"hermes-{uuid.uuid4()}"
        self._says[request_id] = say
        self.controls.say(say.text, say.site, request_id)

    def said(self, site: str, text: str, request_id: str) -> None:
        """``vcd_said``: a Hermes request is done → ``hermes/tts/sayFinished`` with its id and session."""
        say = self._says.pop(request_id, None)
        if say is not None:
            self._put(hermes.TTS_SAY_FINISHED_TOPIC, hermes.hermes_say_finished(say.site, say.id, say.session_id),
                      "Hermes sayFinished")

    def _update_lists(self) -> None:
        if self.controls is None or self.devices is None:
            return
        for list_name, values in self.devices.list_values().items():
            self.controls.set_list(list_name, values)

    def wait_for_devices(self, wait_s: float) -> int:
        """Start-up: wait (up to ``wait_s``) for the broker's retained discovery configs; returns the device count.

        Done when the subscriptions are acknowledged and no config has changed a device for 0.3 s.
        """
        if self.devices is None or wait_s <= 0:
            return 0
        deadline = time.monotonic() + wait_s
        if not self.publisher.subscribed.wait(wait_s):
            _LOGGER.warning("discovery: no subscription to %s/… within %g s; devices will be added when they come",
                            self.settings.discovery_prefix, wait_s)
            return len(self.devices)
        quiet_s = 0.3
        while time.monotonic() < deadline:
            since = time.monotonic() - max(self._last_device_change, deadline - wait_s)
            if since >= quiet_s:
                break
            time.sleep(min(quiet_s - since, max(0.0, deadline - time.monotonic())) + 0.01)
        return len(self.devices)

    def _toggle(self, topic: str, payload: bytes) -> None:
        try:
            toggle = hermes.parse_toggle(topic, payload)
        except ValueError as exc:
            _LOGGER.warning("Hermes: %s ignored: %s", topic, exc)
            return
        if toggle.site != self.settings.site:
            return
        with self._toggle_lock:
            reasons = self._toggled_off[toggle.component]
            if not toggle.on:
                reasons.add(toggle.reason)
            elif toggle.reason == "":  # Rhasspy: the unknown reason overrides all the others
                reasons.clear()
            else:
                reasons.discard(toggle.reason)
            held = {f"hermes/{c}/toggleOff{f' ({r})' if r else ''}" for c, rs in self._toggled_off.items() for r in rs}
            if self.controls is not None:
                for reason in held - self._paused:
                    self.controls.pause(reason)
                for reason in self._paused - held:
                    self.controls.resume(reason)
            self._paused = held

    @property
    def toggled_off(self) -> bool:
        """Whether a Hermes toggleOff for this site holds (recognition is paused)."""
        return bool(self._paused)

    # Home Assistant

    @property
    def event_state_topic(self) -> str:
        return event_state_topic(self.settings)

    @property
    def discovery_topic(self) -> str:
        return discovery_topic(self.settings)

    def discovery_config(self) -> dict[str, Any]:
        """The Home Assistant MQTT discovery payload of vcd's ``event`` entity."""
        return discovery_config(self.settings, self.event_types)

    def _discovery_messages(self) -> list[tuple[str, str]]:
        if not self.settings.homeassistant_discovery:
            return []
        return [(self.discovery_topic, json.dumps(self.discovery_config()))]

    # hooks

    def start(self) -> None:
        self.publisher.start()

    def transcript(self, site: str, text: str, confidence: float, audio_s: float) -> None:
        session_id = str(uuid.uuid4())
        self._session = (site, text, session_id)
        if self.settings.hermes:
            self._put(
                hermes.SESSION_STARTED_TOPIC,
                hermes.hermes_session_started(site, session_id, self.language),
                "Hermes sessionStarted",
            )
            self._put(
                hermes.TEXT_CAPTURED_TOPIC,
                hermes.hermes_text_captured(site, text, confidence, audio_s, session_id, self.language),
                "Hermes textCaptured",
            )

    def _session_id(self, site: str, text: str) -> str:
        if self._session and self._session[:2] == (site, text):
            return self._session[2]
        return str(uuid.uuid4())

    def intent(
        self, site: str, intent: str, slots: dict[str, Any], text: str, confidence: float, timings: dict[str, float]
    ) -> None:
        s = self.settings
        timings = timings or {}
        if s.publish_intents:
            self._put(
                f"{s.topic_prefix}/{site}/intent/{intent}",
                intent_event(site, intent, slots, text, confidence, timings),
                f"intent {intent}",
            )
        for message in command_messages(s.commands, site, intent, slots, text, confidence):
            self.publisher.put(message)
        if self.devices is not None:
            for message in self.device_messages(intent, slots):
                self.publisher.put(message)
        if s.hermes:
            session_id = self._session_id(site, text)
            self._put(
                hermes.intent_topic(intent),
                hermes.hermes_intent(site, intent, slots, text, confidence, session_id, str(uuid.uuid4()),
                                     self.language),
                f"Hermes intent {intent}",
            )
            self._put(hermes.SESSION_ENDED_TOPIC, hermes.hermes_session_ended(site, session_id, True),
                      "Hermes sessionEnded")
        if s.homeassistant_discovery:
            self._put(
                self.event_state_topic,
                homeassistant_event(intent, text, confidence, slots),
                f"Home Assistant event {intent}",
            )

    def unrecognized(self, site: str, text: str, confidence: float, audio_s: float) -> None:
        s = self.settings
        if s.publish_unrecognized:
            self._put(
                f"{s.topic_prefix}/{site}/unrecognized",
                unrecognized_event(site, text, confidence, audio_s),
                "unrecognized speech",
            )
        if s.hermes:
            session_id = self._session_id(site, text)
            self._put(
                hermes.NOT_RECOGNIZED_TOPIC,
                hermes.hermes_not_recognized(site, text, session_id, str(uuid.uuid4())),
                "Hermes intentNotRecognized",
            )
            self._put(hermes.SESSION_ENDED_TOPIC, hermes.hermes_session_ended(site, session_id, False),
                      "Hermes sessionEnded")
        if s.homeassistant_discovery:
            self._put(
                self.event_state_topic,
                homeassistant_event(UNRECOGNIZED_EVENT, text, confidence),
                "Home Assistant event unrecognized",
            )

    def device_messages(self, intent: str, slots: dict[str, Any]) -> list[Message]:
        """The commands for the discovered devices ``intent`` and ``slots`` name (none: logged at debug level)."""
        assert self.devices is not None
        messages = []
        for device in self.devices.targets(intent, slots):
            commands = commands_for(device, intent, slots)
            if isinstance(commands, str):
                _LOGGER.warning("discovery: %s on %s: nothing sent: %s", intent, device.describe(), commands)
                continue
            for command in commands:
                what = f"{intent} for the discovered {device.describe()}"
                messages.append(Message(command.topic, command.payload, command.qos, command.retain, what))
        if not messages:
            _LOGGER.debug("discovery: no discovered device for %s %s", intent, slots)
        return messages

    def stop(self) -> bool:
        return self.publisher.stop(self.settings.shutdown_wait_s)

    def _put(self, topic: str, payload: dict[str, Any], what: str) -> None:
        self.publisher.put(
            Message(
                topic,
                json.dumps(payload, ensure_ascii=False, default=str),
                self.settings.qos,
                self.settings.retain,
                what,
            )
        )
