"""Devices found on the broker: Home Assistant MQTT discovery configs → grammar list values, intents → commands.

Zigbee2MQTT, Tasmota, ESPHome and others announce each entity with a
retained JSON config on ``<prefix>/<component>/[<node_id>/]<object_id>/config``
(https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery).  This module
reads those configs (abbreviated keys and the ``~`` base topic expanded as
Home Assistant does), keeps the devices vcd can drive, gives their spoken names
and areas to the grammar, and turns a recognised intent on a device into the
message Home Assistant itself would publish for the same service call.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

import vcd

from .templates import as_text, topic_problem

_LOGGER = logging.getLogger(__name__)

COMPONENTS = ("light", "switch", "fan", "cover", "lock", "climate")

# Home Assistant's abbreviations (homeassistant/components/mqtt/abbreviations.py), the keys vcd reads.
ABBREVIATIONS = {
    "bri_cmd_t": "brightness_command_topic",
    "bri_cmd_tpl": "brightness_command_template",
    "bri_scl": "brightness_scale",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "cmd_on_tpl": "command_on_template",
    "cmd_off_tpl": "command_off_template",
    "dev": "device",
    "name": "name",
    "obj_id": "object_id",
    "pl_cls": "payload_close",
    "pl_lock": "payload_lock",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "pl_open": "payload_open",
    "pl_unlk": "payload_unlock",
    "pos_clsd": "position_closed",
    "pos_open": "position_open",
    "pow_cmd_t": "power_command_topic",
    "ret": "retain",
    "set_pos_t": "set_position_topic",
    "set_pos_tpl": "set_position_template",
    "sup_clrm": "supported_color_modes",
    "temp_cmd_t": "temperature_command_topic",
    "temp_cmd_tpl": "temperature_command_template",
    "uniq_id": "unique_id",
}
DEVICE_ABBREVIATIONS = {"ids": "identifiers", "mf": "manufacturer", "mdl": "model", "sa": "suggested_area"}

# The lists each device's spoken name goes to (the bundled sentences say "open the {cover}").
NAME_LISTS = {"cover": ("name", "cover")}
_HEX_ADDRESS = re.compile(r"0x[0-9a-f]{6,}")  # Zigbee2MQTT's default friendly name: not something to say
_SIMPLE_TEMPLATE = re.compile(r"\{\{\s*(value|position)\s*\}\}")


class DiscoveryError(ValueError):
    """A discovery config vcd cannot use (the reason is logged with its topic)."""


def expand(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with abbreviated keys spelt out and the ``~`` base topic substituted, as Home Assistant does."""
    out = {ABBREVIATIONS.get(key, key): value for key, value in config.items()}
    device = out.get("device")
    if isinstance(device, dict):
        out["device"] = {DEVICE_ABBREVIATIONS.get(key, key): value for key, value in device.items()}
    base = out.pop("~", None)
    if isinstance(base, str):
        for key, value in out.items():
            if key.endswith("topic") and isinstance(value, str) and value:
                if value.startswith("~"):
                    value = base + value[1:]
                if value.endswith("~"):
                    value = value[:-1] + base
                out[key] = value
    return out


def spoken(text: str) -> str:
    """The words a name is said with: ``"Living-room Lamp (2)"`` → ``"living room lamp 2"``."""
    plain = unicodedata.normalize("NFKC", text).lower().replace("_", " ").replace("-", " ")
    plain = re.sub(r"[^\w' ]+", " ", plain)
    return " ".join(plain.split())


@dataclass(frozen=True)
class Device:
    """One discovered entity vcd can command."""

    topic: str  # its discovery topic (a device is replaced or removed by a config on the same topic)
    component: str  # "light", "switch", …
    name: str  # spoken words, e.g. "living room lamp"
    area: str  # spoken words of device.suggested_area, or ""
    config: dict[str, Any]  # the expanded config

    def describe(self) -> str:
        return f"{self.component} {self.name!r}" + (f" in {self.area!r}" if self.area else "")


def component_of(topic: str, prefix: str) -> str:
    """``light`` of ``homeassistant/light/0x1234/light/config`` (prefix ``homeassistant``)."""
    rest = topic[len(prefix) + 1:] if topic.startswith(prefix + "/") else ""
    return rest.split("/", 1)[0]


def parse_config(topic: str, payload: bytes, prefix: str) -> Device | None:
    """The device a retained discovery config announces; None for an empty payload (the device is gone).

    Raises :class:`DiscoveryError` for a config vcd cannot use.
    """
    component = component_of(topic, prefix)
    if component not in COMPONENTS:
        raise DiscoveryError(f"component {component!r} is not one vcd drives ({', '.join(COMPONENTS)})")
    if not payload:
        return None
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DiscoveryError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise DiscoveryError("not a JSON object")
    config = expand(raw)
    device = config.get("device") if isinstance(config.get("device"), dict) else {}
    name = config.get("name")
    if not isinstance(name, str) or not name.strip():  # "name": null → the entity is named after its device
        name = device.get("name")
    if not isinstance(name, str) or not spoken(name):
        raise DiscoveryError("neither the entity nor its device has a name")
    words = spoken(name)
    if _HEX_ADDRESS.fullmatch(words.replace(" ", "")):
        raise DiscoveryError(f"its name {name!r} is an address, not something to say; give it a friendly name")
    command_topic = _command_topic(component, config)
    if not command_topic:
        raise DiscoveryError(f"no command topic for a {component}")
    for key, value in config.items():
        if key.endswith("command_topic") and isinstance(value, str) and topic_problem(value):
            raise DiscoveryError(f"{key} {topic_problem(value)}")
    area = device.get("suggested_area")
    return Device(topic, component, words, spoken(area) if isinstance(area, str) else "", config)


def _command_topic(component: str, config: dict[str, Any]) -> str:
    if component == "climate":
        return str(config.get("temperature_command_topic") or config.get("power_command_topic") or "")
    return str(config.get("command_topic") or "")


@dataclass(frozen=True)
class Command:
    """One message for a device."""

    topic: str
    payload: str
    qos: int
    retain: bool


def _template(config: dict[str, Any], key: str, value: Any) -> str | None:
    """Render a simple Home Assistant command template (``{{ value }}``, or ``{{ position }}`` for covers).

    None for anything more (filters, expressions, ``{% %}``): vcd does not run Jinja.
    """
    template = config.get(key)
    if not template:
        return as_text(value)
    rest = _SIMPLE_TEMPLATE.sub("", str(template))
    if "{{" in rest or "{%" in rest:
        return None
    return _SIMPLE_TEMPLATE.sub(lambda m: as_text(value), str(template))


def _scaled(percent: Any, scale: Any) -> int:
    return max(0, min(int(scale), round(float(percent) * float(scale) / 100.0)))


def commands_for(device: Device, intent: str, slots: dict[str, Any]) -> list[Command] | str:
    """The messages Home Assistant would publish for ``intent`` on ``device``, or why there are none."""
    c = device.config
    qos = c.get("qos", 0) if c.get("qos", 0) in (0, 1, 2) else 0
    retain = bool(c.get("retain", False))
    json_schema = c.get("schema") == "json"

    def plain(topic_key: str, payload: str, template_key: str = "command_template") -> list[Command] | str:
        topic = c.get(topic_key)
        if not topic:
            return f"it announces no {topic_key}"
        rendered = _template(c, template_key, payload)
        if rendered is None:
            return f"its {template_key} is more than {{{{ value }}}} (vcd does not run Jinja templates)"
        return [Command(str(topic), rendered, qos, retain)]

    kind = device.component
    if kind in ("light", "switch", "fan") and intent in ("HassTurnOn", "HassTurnOff"):
        on = intent == "HassTurnOn"
        if json_schema:
            return [Command(str(c["command_topic"]), json.dumps({"state": "ON" if on else "OFF"}), qos, retain)]
        if kind == "light" and (c.get("command_on_template") or c.get("command_off_template")):
            return "it uses the template schema, which vcd does not render"
        return plain("command_topic", str(c.get("payload_on" if on else "payload_off", "ON" if on else "OFF")))
    if kind == "light" and intent == "HassLightSet" and "brightness" in slots:
        scale = c.get("brightness_scale", 255)
        if json_schema:
            modes = c.get("supported_color_modes") or []
            if not c.get("brightness") and not [m for m in modes if m != "onoff"]:
                return "it does not announce brightness"
            level = _scaled(slots["brightness"], scale)
            return [Command(str(c["command_topic"]), json.dumps({"state": "ON", "brightness": level}), qos, retain)]
        return plain("brightness_command_topic", str(_scaled(slots["brightness"], scale)),
                     "brightness_command_template")
    if kind == "cover" and intent in ("HassTurnOn", "HassTurnOff"):
        opening = intent == "HassTurnOn"
        return plain("command_topic", str(c.get("payload_open" if opening else "payload_close",
                                                "OPEN" if opening else "CLOSE")))
    if kind == "cover" and intent == "HassSetPosition" and "position" in slots:
        closed, opened = float(c.get("position_closed", 0)), float(c.get("position_open", 100))
        position = round(closed + float(slots["position"]) * (opened - closed) / 100.0)
        return plain("set_position_topic", str(position), "set_position_template")
    if kind == "lock" and intent in ("HassTurnOn", "HassTurnOff"):
        locking = intent == "HassTurnOn"
        return plain("command_topic", str(c.get("payload_lock" if locking else "payload_unlock",
                                                "LOCK" if locking else "UNLOCK")))
    if kind == "climate" and intent == "HassClimateSetTemperature" and "temperature" in slots:
        return plain("temperature_command_topic", as_text(slots["temperature"]), "temperature_command_template")
    if kind == "climate" and intent in ("HassTurnOn", "HassTurnOff"):
        on = intent == "HassTurnOn"
        return plain("power_command_topic", str(c.get("payload_on" if on else "payload_off", "ON" if on else "OFF")))
    return f"vcd does not map {intent} onto a {kind}"


class Devices:
    """The discovered devices by discovery topic (thread-safe: paho's thread writes, the plugin's thread reads)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._lock = threading.Lock()
        self._devices: dict[str, Device] = {}

    @property
    def subscriptions(self) -> list[str]:
        """``<prefix>/<component>/[<node_id>/]<object_id>/config`` of each component vcd drives."""
        return [f"{self.prefix}/{c}/{levels}config" for c in COMPONENTS for levels in ("+/", "+/+/")]

    def is_config(self, topic: str) -> bool:
        return component_of(topic, self.prefix) in COMPONENTS and topic.endswith("/config")

    def __len__(self) -> int:
        with self._lock:
            return len(self._devices)

    def all(self) -> list[Device]:
        with self._lock:
            return list(self._devices.values())

    def update(self, topic: str, payload: bytes) -> bool:
        """Take one discovery message; True when the set of devices changed."""
        try:
            device = parse_config(topic, payload, self.prefix)
        except DiscoveryError as exc:
            with self._lock:
                gone = self._devices.pop(topic, None)
            _LOGGER.warning("discovery: %s ignored: %s", topic, exc)
            return gone is not None
        with self._lock:
            old = self._devices.pop(topic, None) if device is None else self._devices.get(topic)
            if device is not None:
                self._devices[topic] = device
        if device is None:
            if old is not None:
                _LOGGER.info("discovery: %s removed (%s)", old.describe(), topic)
            return old is not None
        if old != device:
            _LOGGER.info("discovery: %s %s (%s)", "updated" if old else "found", device.describe(), topic)
        return old != device

    def list_values(self) -> dict[str, list[vcd.ListValue]]:
        """List name → values: every device's name (with its domain and area as context) and every area."""
        lists: dict[str, list[vcd.ListValue]] = {"name": [], "area": [], "cover": []}
        for device in sorted(self.all(), key=lambda d: (d.name, d.component)):
            context = {"domain": device.component, **({"area": device.area} if device.area else {})}
            for list_name in NAME_LISTS.get(device.component, ("name",)):
                lists[list_name].append(vcd.ListValue(device.name, context=context))
            if device.area and device.area not in [v.text for v in lists["area"]]:
                lists["area"].append(vcd.ListValue(device.area))
        return lists

    def targets(self, intent: str, slots: dict[str, Any]) -> list[Device]:
        """The devices a command means: by name (``name``/``cover`` slot), else by area, else the only climate."""
        devices = self.all()
        domain = slots.get("domain")
        if domain is not None:
            devices = [d for d in devices if d.component == domain]
        named = slots.get("name", slots.get("cover"))
        if isinstance(named, str):
            return [d for d in devices if d.name == spoken(named)]
        area = slots.get("area")
        if intent == "HassClimateSetTemperature":
            climates = [d for d in devices if d.component == "climate"]
            if isinstance(area, str):
                return [d for d in climates if d.area == spoken(area)]
            return climates if len(climates) == 1 else []
        if isinstance(area, str) and domain is not None:  # "turn on the lights in the kitchen"
            return [d for d in devices if d.area == spoken(area)]
        return []
