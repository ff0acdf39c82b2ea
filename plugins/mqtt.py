"""MQTT plugin: publishes recognised commands (JSON events, mapped commands, Hermes, Home Assistant) to a broker.

Configured by ``[plugins.mqtt]`` in config.toml (every key is described in
docs/mqtt.md).  Publishing never blocks the pipeline: hooks only put messages
into a bounded queue, and one sender thread (``vcd-mqtt``) delivers them in
order, one at a time, each confirmed by the broker (QoS ≥ 1) before the next.
While the broker is unreachable paho reconnects with exponential back-off and
the queue keeps the commands; when it is full the oldest is dropped and logged.
"""

from __future__ import annotations

import collections
import difflib
import json
import logging
import os
import re
import ssl
import string
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

import vcd

_LOGGER = logging.getLogger(__name__)

NAME = "mqtt"
ONLINE = "online"
OFFLINE = "offline"
AVAILABILITY_QOS = 1  # "online"/"offline" and the last will are always confirmed
UNRECOGNIZED_EVENT = "unrecognized"  # Home Assistant event type for speech that is not a command


# --- templates ---------------------------------------------------------------------------------


def slugify(value: str) -> str:
    """``"Kitchen Light"`` → ``"kitchen_light"``: ASCII lower case, runs of other characters → ``_``."""
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


FILTERS = {
    "slug": lambda v: slugify(_text(v)),
    "lower": lambda v: _text(v).lower(),
    "upper": lambda v: _text(v).upper(),
    "json": lambda v: json.dumps(v, ensure_ascii=False),
}


class MissingField(KeyError):
    """A template names a field that the recognised command does not have."""


@dataclass(frozen=True)
class Template:
    """A topic or payload template: literal text and ``{field}`` / ``{field|filter|…}`` references.

    Fields are the command's slots plus ``intent``, ``site``, ``text`` and
    ``confidence`` (a slot of the same name wins).  ``{{`` and ``}}`` are literal
    braces.  Filters: ``slug``, ``lower``, ``upper``, ``json``.  Nothing else is
    evaluated: no attribute access, indexing or format specs.
    """

    source: str
    parts: tuple[str | tuple[str, tuple[str, ...]], ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        """Parse ``source``; raises ValueError with a short reason when it is malformed."""
        parts: list[str | tuple[str, tuple[str, ...]]] = []
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise ValueError(
                f"malformed template {source!r}: {exc} (write '{{{{' or '}}}}' for a literal brace)"
            ) from None
        for literal, name, spec, conversion in parsed:
            if literal:
                parts.append(literal)
            if name is None:
                continue
            if spec or conversion:
                raise ValueError(
                    f"template {source!r}: ':' and '!' are not allowed in {{{name}}}; use {{field|filter}}"
                )
            field_name, *filters = [piece.strip() for piece in name.split("|")]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field_name):
                raise ValueError(f"template {source!r}: {{{name}}} must name a slot, e.g. {{name}} or {{name|slug}}")
            for fname in filters:
                if fname not in FILTERS:
                    raise ValueError(
                        f"template {source!r}: unknown filter {fname!r} (known: {', '.join(sorted(FILTERS))})"
                    )
            parts.append((field_name, tuple(filters)))
        return cls(source, tuple(parts))

    @property
    def literal_text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))

    def render(self, values: dict[str, Any]) -> str:
        """Substitute ``values``; raises :class:`MissingField` naming the first unknown field."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, filters = part
            if name not in values:
                raise MissingField(name)
            value = values[name]
            if not filters:
                out.append(_text(value))
                continue
            for fname in filters:
                value = FILTERS[fname](value)
            out.append(value)
        return "".join(out)


def topic_problem(topic: str) -> str | None:
    """Why ``topic`` cannot be published to, or None when it can."""
    if not topic:
        return "must not be empty"
    if "+" in topic or "#" in topic:
        return f"must not contain the wildcards '+' or '#' (got {topic!r})"
    if "\0" in topic:
        return "must not contain NUL characters"
    if len(topic.encode("utf-8")) > 65535:
        return "is longer than 65535 bytes"
    return None


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandRule:
    """One ``[[plugins.mqtt.commands]]`` entry: publish ``payload`` to ``topic`` for a matching intent."""

    index: int
    intent: str
    slots: dict[str, tuple[Any, ...]]  # slot → accepted values (any of)
    topic: Template
    payload: Template
    qos: int
    retain: bool

    def matches(self, intent: str, slots: dict[str, Any]) -> bool:
        if intent != self.intent:
            return False
        return all(name in slots and slots[name] in accepted for name, accepted in self.slots.items())


@dataclass(frozen=True)
class TlsSettings:
    ca_file: Path | None = None  # None: the system's CA store
    cert_file: Path | None = None  # client certificate (mutual TLS)
    key_file: Path | None = None  # its private key
    insecure: bool = False  # skip the host name check (self-signed test brokers only)


@dataclass(frozen=True)
class MqttSettings:
    """The validated ``[plugins.mqtt]`` table."""

    site: str
    host: str = "localhost"
    port: int = 1883
    client_id: str = ""  # "" → "vcd-<site>"
    keepalive_s: int = 60
    connect_timeout_s: float = 5.0
    qos: int = 1
    retain: bool = False
    tls: TlsSettings | None = None
    username: str = ""
    password: str | None = field(default=None, repr=False)
    topic_prefix: str = "vcd"
    availability_topic: str = ""  # "" → "<topic_prefix>/<site>/status"
    publish_intents: bool = True
    publish_unrecognized: bool = False
    queue_size: int = 100
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    shutdown_wait_s: float = 1.0
    hermes: bool = False
    homeassistant_discovery: bool = False
    discovery_prefix: str = "homeassistant"
    node_id: str = ""  # "" → slug of "vcd_<site>"
    event_types: tuple[str, ...] = ()  # () → the intents of the sentence files
    commands: tuple[CommandRule, ...] = ()

    @property
    def base_topic(self) -> str:
        return f"{self.topic_prefix}/{self.site}"


_KEYS = (
    "host port client_id keepalive_s connect_timeout_s qos retain tls username password password_env "
    "password_file topic_prefix availability_topic publish_intents publish_unrecognized queue_size "
    "reconnect_min_s reconnect_max_s shutdown_wait_s hermes homeassistant_discovery discovery_prefix "
    "node_id event_types commands"
).split()
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "insecure")
_COMMAND_KEYS = ("intent", "slots", "topic", "payload", "qos", "retain")


def _suggest(key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    """Reads typed values out of a raw table and raises one-line :class:`vcd.ConfigError` s."""

    def __init__(self, label: str, base: Path):
        self.label = label
        self.base = base

    def error(self, key: str, message: str) -> vcd.ConfigError:
        return vcd.ConfigError(f"{self.label}: plugins.mqtt.{key}: {message}")

    def unknown(self, table: dict[str, Any], known: tuple[str, ...] | list[str], prefix: str) -> None:
        for key in table:
            if key not in known:
                raise self.error(f"{prefix}{key}", f"unknown key{_suggest(key, known)}")

    def str_(
        self, table: dict[str, Any], key: str, default: str, path: str | None = None, nonempty: bool = False
    ) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.error(path or key, f"must be a string (got {value!r})")
        if nonempty and not value.strip():
            raise self.error(path or key, "must not be empty")
        return value

    def bool_(self, table: dict[str, Any], key: str, default: bool, path: str | None = None) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(path or key, f"must be true or false (got {value!r})")
        return value

    def int_(self, table: dict[str, Any], key: str, default: int, lo: int, hi: int, path: str | None = None) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path or key, f"must be an integer (got {value!r})")
        if not lo <= value <= hi:
            raise self.error(path or key, f"must be {lo}..{hi} (got {value})")
        return value

    def qos(self, table: dict[str, Any], key: str, default: int, path: str | None = None) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or value not in (0, 1, 2):
            raise self.error(path or key, f"must be 0, 1 or 2 (got {value!r})")
        return int(value)

    def float_(self, table: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number of seconds (got {value!r})")
        if not lo <= value <= hi:
            raise self.error(key, f"must be {lo:g}..{hi:g} (got {value})")
        return float(value)

    def file(self, table: dict[str, Any], key: str, path: str) -> Path | None:
        value = self.str_(table, key, "", path)
        if not value:
            return None
        resolved = Path(value).expanduser()
        if not resolved.is_absolute():
            resolved = self.base / resolved
        if not resolved.is_file():
            raise self.error(path, f"{resolved}: no such file")
        return resolved

    def topic(self, value: str, path: str) -> str:
        problem = topic_problem(value)
        if problem:
            raise self.error(path, problem)
        return value


def parse_settings(table: dict[str, Any], label: str, site: str, base: Path | None = None) -> MqttSettings:
    """Validate the raw ``[plugins.mqtt]`` table of the file ``label``.

    Raises :class:`vcd.ConfigError` with one line naming the file and key path, e.g.
    ``config.toml: plugins.mqtt.qos: must be 0, 1 or 2 (got 3)``.
    """
    c = _Checker(label, base or Path.cwd())
    c.unknown(table, _KEYS, "")
    values: dict[str, Any] = {"site": site}
    values["host"] = c.str_(table, "host", "localhost", nonempty=True)
    values["client_id"] = c.str_(table, "client_id", "")
    values["keepalive_s"] = c.int_(table, "keepalive_s", 60, 5, 65535)
    values["connect_timeout_s"] = c.float_(table, "connect_timeout_s", 5.0, 0.1, 300)
    values["qos"] = c.qos(table, "qos", 1)
    values["retain"] = c.bool_(table, "retain", False)

    tls_raw = table.get("tls", False)
    if isinstance(tls_raw, bool):
        values["tls"] = TlsSettings() if tls_raw else None
    elif isinstance(tls_raw, dict):
        c.unknown(tls_raw, _TLS_KEYS, "tls.")
        values["tls"] = TlsSettings(
            ca_file=c.file(tls_raw, "ca_file", "tls.ca_file"),
            cert_file=c.file(tls_raw, "cert_file", "tls.cert_file"),
            key_file=c.file(tls_raw, "key_file", "tls.key_file"),
            insecure=c.bool_(tls_raw, "insecure", False, "tls.insecure"),
        )
        if values["tls"].key_file and not values["tls"].cert_file:
            raise c.error("tls.key_file", "needs tls.cert_file as well")
    else:
        raise c.error("tls", f"must be true, false or a table [plugins.mqtt.tls] (got {tls_raw!r})")
    values["port"] = c.int_(table, "port", 8883 if values["tls"] else 1883, 1, 65535)

    values["username"] = c.str_(table, "username", "")
    values["password"] = _password(c, table)
    if values["password"] is not None and not values["username"]:
        raise c.error("username", "must be set when a password is given")

    prefix = c.str_(table, "topic_prefix", "vcd", nonempty=True).strip("/")
    values["topic_prefix"] = c.topic(prefix, "topic_prefix")
    availability = c.str_(table, "availability_topic", "") or f"{prefix}/{site}/status"
    values["availability_topic"] = c.topic(availability, "availability_topic")
    values["publish_intents"] = c.bool_(table, "publish_intents", True)
    values["publish_unrecognized"] = c.bool_(table, "publish_unrecognized", False)
    values["queue_size"] = c.int_(table, "queue_size", 100, 1, 1_000_000)
    values["reconnect_min_s"] = c.float_(table, "reconnect_min_s", 1.0, 0.01, 3600)
    values["reconnect_max_s"] = c.float_(table, "reconnect_max_s", 30.0, 0.01, 3600)
    if values["reconnect_max_s"] < values["reconnect_min_s"]:
        raise c.error(
            "reconnect_max_s",
            f"must be at least reconnect_min_s ({values['reconnect_max_s']:g} < {values['reconnect_min_s']:g})",
        )
    values["shutdown_wait_s"] = c.float_(table, "shutdown_wait_s", 1.0, 0, 30)
    values["hermes"] = c.bool_(table, "hermes", False)
    values["homeassistant_discovery"] = c.bool_(table, "homeassistant_discovery", False)
    discovery_prefix = c.str_(table, "discovery_prefix", "homeassistant", nonempty=True).strip("/")
    values["discovery_prefix"] = c.topic(discovery_prefix, "discovery_prefix")
    node_id = c.str_(table, "node_id", "") or slugify(f"vcd_{site}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", node_id):
        raise c.error("node_id", f"must use only letters, digits, '_' and '-' (got {node_id!r})")
    values["node_id"] = node_id
    event_types = table.get("event_types", [])
    if not isinstance(event_types, list) or not all(isinstance(e, str) and e for e in event_types):
        raise c.error("event_types", f"must be a list of intent names (got {event_types!r})")
    values["event_types"] = tuple(event_types)
    values["commands"] = _commands(c, table.get("commands", []), values["qos"], values["retain"])
    return MqttSettings(**values)


def _password(c: _Checker, table: dict[str, Any]) -> str | None:
    given = [k for k in ("password", "password_env", "password_file") if k in table]
    if len(given) > 1:
        raise c.error(given[1], f"give only one of password, password_env and password_file (got {', '.join(given)})")
    if "password" in table:
        _LOGGER.warning(
            "plugins.mqtt.password is written in the configuration file; prefer password_env or password_file"
        )
        return c.str_(table, "password", "")
    if "password_env" in table:
        var = c.str_(table, "password_env", "", nonempty=True)
        if var not in os.environ:
            raise c.error("password_env", f"environment variable {var} is not set")
        return os.environ[var]
    if "password_file" in table:
        path = c.file(table, "password_file", "password_file")
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n") if path else None
        except OSError as exc:
            raise c.error("password_file", f"{path}: cannot read: {exc.strerror or exc}") from None
    return None


def _commands(c: _Checker, raw: Any, qos: int, retain: bool) -> tuple[CommandRule, ...]:
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise c.error("commands", "must be an array of tables ([[plugins.mqtt.commands]])")
    rules = []
    for index, entry in enumerate(raw):
        where = f"commands[{index}]."
        c.unknown(entry, _COMMAND_KEYS, where)
        for key in ("intent", "topic", "payload"):
            if key not in entry:
                raise c.error(f"{where}{key}", "missing (every command needs intent, topic and payload)")
        intent = c.str_(entry, "intent", "", f"{where}intent", nonempty=True)
        slots_raw = entry.get("slots", {})
        if not isinstance(slots_raw, dict):
            raise c.error(f"{where}slots", f'must be a table, e.g. slots = {{ domain = "light" }} (got {slots_raw!r})')
        slots: dict[str, tuple[Any, ...]] = {}
        for name, accepted in slots_raw.items():
            options = accepted if isinstance(accepted, list) else [accepted]
            if not options or not all(isinstance(o, str | int | float) and not isinstance(o, bool) for o in options):
                raise c.error(
                    f"{where}slots.{name}", f"must be a string, a number or a list of them (got {accepted!r})"
                )
            slots[name] = tuple(options)
        templates = {}
        for key in ("topic", "payload"):
            source = c.str_(entry, key, "", f"{where}{key}", nonempty=key == "topic")
            try:
                templates[key] = Template.parse(source)
            except ValueError as exc:
                raise c.error(f"{where}{key}", str(exc)) from None
        literal_problem = topic_problem(templates["topic"].literal_text or "x")
        if literal_problem:
            raise c.error(f"{where}topic", literal_problem)
        rules.append(
            CommandRule(
                index=index,
                intent=intent,
                slots=slots,
                topic=templates["topic"],
                payload=templates["payload"],
                qos=c.qos(entry, "qos", qos, f"{where}qos"),
                retain=c.bool_(entry, "retain", retain, f"{where}retain"),
            )
        )
    return tuple(rules)


def sentence_intents(config: Any) -> list[str]:
    """The intent names of the sentence files the recogniser uses (for Home Assistant's event types)."""
    try:
        files = vcd.sentence_files(config.recognizer.sentences or vcd.BUNDLED_SENTENCES)
    except vcd.VcdError as exc:
        _LOGGER.warning("cannot list intent names for Home Assistant: %s", exc)
        return []
    names: list[str] = []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            _LOGGER.warning("cannot read intent names from %s: %s", path, exc)
            continue
        intents = doc.get("intents") if isinstance(doc, dict) else None
        for name in intents if isinstance(intents, dict) else ():
            if name not in names:
                names.append(name)
    return names


# --- the connection and the outgoing queue -----------------------------------------------------


@dataclass
class Message:
    """One publish waiting in the queue."""

    topic: str
    payload: str
    qos: int
    retain: bool
    what: str  # for log lines: "intent HassTurnOn", "command 0 (HassTurnOn)" …


class Publisher:
    """A paho client plus a bounded, ordered queue of publishes and the thread that sends them.

    Messages leave the queue only when the broker has confirmed them (QoS 1/2:
    PUBACK/PUBCOMP; QoS 0: written to the socket).  A message handed to paho
    while the connection drops is re-sent by paho on reconnect (QoS ≥ 1) or by
    this class (QoS 0), so nothing is lost or, at QoS ≥ 1, duplicated by us.
    """

    def __init__(self, settings: MqttSettings, discovery: list[tuple[str, str]] | None = None):
        self.settings = settings
        self.discovery = discovery or []  # (topic, payload) published retained on every connect
        self._queue: collections.deque[Message] = collections.deque()
        self._cond = threading.Condition()
        self._connected = False
        self._generation = 0  # incremented on every successful connect
        self._acked: set[int] = set()
        self._stopping = False
        self._flush_deadline = 0.0
        self._outage_logged = False
        self._refusal_logged = False
        self.dropped = 0
        self.delivered = 0
        self._thread = threading.Thread(target=self._run, name="vcd-mqtt", daemon=True)
        self.client_id = settings.client_id or f"vcd-{settings.site}"
        self.client = self._make_client()

    # paho set-up and callbacks (called on paho's network thread)

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.will_set(s.availability_topic, OFFLINE, qos=AVAILABILITY_QOS, retain=True)
        client.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)  # type: ignore[arg-type]
        client.connect_timeout = s.connect_timeout_s
        client.max_queued_messages_set(0)
        if s.username:
            client.username_pw_set(s.username, s.password)
        if s.tls is not None:
            client.tls_set(
                ca_certs=str(s.tls.ca_file) if s.tls.ca_file else None,
                certfile=str(s.tls.cert_file) if s.tls.cert_file else None,
                keyfile=str(s.tls.key_file) if s.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(s.tls.insecure)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        s = self.settings
        if reason.is_failure:
            if not self._refusal_logged:  # paho retries with back-off: say it once, not every attempt
                self._refusal_logged = True
                _LOGGER.error("broker %s:%d refused the connection: %s", s.host, s.port, reason)
            else:
                _LOGGER.debug("broker %s:%d refused the connection again: %s", s.host, s.port, reason)
            return
        _LOGGER.info("connected to %s:%d as %r", s.host, s.port, self.client_id)
        self._outage_logged = self._refusal_logged = False
        client.publish(s.availability_topic, ONLINE, qos=AVAILABILITY_QOS, retain=True)
        for topic, payload in self.discovery:
            client.publish(topic, payload, qos=AVAILABILITY_QOS, retain=True)
        with self._cond:
            self._connected = True
            self._generation += 1
            self._cond.notify_all()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        s = self.settings
        if not self._outage_logged:
            self._outage_logged = True
            _LOGGER.warning(
                "cannot reach broker %s:%d; retrying every %g..%g s, commands are queued (up to %d)",
                s.host,
                s.port,
                s.reconnect_min_s,
                s.reconnect_max_s,
                s.queue_size,
            )
        else:
            _LOGGER.debug("broker %s:%d still unreachable", s.host, s.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            stopping = self._stopping
            self._cond.notify_all()
        if was_connected and not stopping:
            self._outage_logged = True
            _LOGGER.warning(
                "lost the connection to %s:%d (%s); reconnecting, commands are queued (up to %d)",
                self.settings.host,
                self.settings.port,
                reason,
                self.settings.queue_size,
            )

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    # the public side

    def start(self) -> None:
        """Connect in the background (an unreachable broker is retried, never an error) and start sending."""
        s = self.settings
        self.client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        self.client.loop_start()
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def put(self, message: Message) -> None:
        """Queue ``message``; when the queue is full the oldest waiting message is dropped (and logged)."""
        with self._cond:
            if len(self._queue) >= self.settings.queue_size:
                old = self._queue.popleft()
                self.dropped += 1
                _LOGGER.warning(
                    "queue full (%d messages, broker %s); dropped the oldest: %s on %s",
                    self.settings.queue_size,
                    "connected" if self._connected else "unreachable",
                    old.what,
                    old.topic,
                )
            self._queue.append(message)
            self._cond.notify_all()

    def stop(self, wait_s: float) -> bool:
        """Send what is queued (for up to ``wait_s``), publish ``offline``, disconnect.

        Returns True when ``offline`` was confirmed by the broker.
        """
        deadline = time.monotonic() + wait_s
        with self._cond:
            self._stopping = True
            self._flush_deadline = deadline
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        left = self.pending()
        if left:
            _LOGGER.warning(
                "%d queued message(s) not delivered before shutdown (broker %s)",
                left,
                "connected" if self._connected else "unreachable",
            )
        delivered = False
        if self._connected:
            info = self.client.publish(self.settings.availability_topic, OFFLINE, qos=AVAILABILITY_QOS, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.2, deadline - time.monotonic()))
                delivered = info.is_published()
            except (RuntimeError, ValueError) as exc:
                _LOGGER.warning("could not publish %r to %s: %s", OFFLINE, self.settings.availability_topic, exc)
            if not delivered:
                _LOGGER.warning("%r on %s not confirmed in time", OFFLINE, self.settings.availability_topic)
        self.client.disconnect()
        # paho's network thread may sit in a connection attempt (up to connect_timeout_s) to a
        # broker that does not answer: do not let that hold up the daemon's exit.
        closer = threading.Thread(target=self.client.loop_stop, name="vcd-mqtt-close", daemon=True)
        closer.start()
        closer.join(1.0)
        return delivered

    # the sender thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._queue and self._connected):
                    if self._stopping and (not self._queue or time.monotonic() >= self._flush_deadline):
                        return
                    self._cond.wait(0.1 if self._stopping else None)
                message = self._queue[0]
            if self._send(message):
                with self._cond:
                    if self._queue and self._queue[0] is message:
                        self._queue.popleft()
                        self.delivered += 1

    def _send(self, message: Message) -> bool:
        """Publish ``message`` and wait for its confirmation; False when it must be sent again."""
        with self._cond:
            self._acked.clear()
            generation = self._generation
        info = self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            _LOGGER.error(
                "cannot publish %s to %s: %s; dropped", message.what, message.topic, mqtt.error_string(info.rc)
            )
            return True
        if info.rc == mqtt.MQTT_ERR_NO_CONN and message.qos == 0:
            return False  # paho does not keep QoS 0 messages: send it again after reconnect
        with self._cond:
            while info.mid not in self._acked:
                if message.qos == 0 and (self._generation != generation or not self._connected):
                    return False  # the connection broke before the socket took it
                if self._stopping and time.monotonic() >= self._flush_deadline:
                    return False
                self._cond.wait(0.5)
            self._acked.discard(info.mid)
        _LOGGER.debug("delivered %s to %s", message.what, message.topic)
        return True


# --- the plugin ----------------------------------------------------------------------------------


class MqttPlugin:
    """Turns hook calls into MQTT messages for one configured broker."""

    def __init__(self, settings: MqttSettings, intent_names: list[str] | None = None):
        self.settings = settings
        self.event_types = list(settings.event_types or intent_names or [])
        if UNRECOGNIZED_EVENT not in self.event_types:
            self.event_types.append(UNRECOGNIZED_EVENT)
        self.publisher = Publisher(settings, self._discovery_messages())
        self._session: tuple[str, str, str] | None = None  # (site, text, sessionId) of the last transcript

    # Home Assistant

    @property
    def event_state_topic(self) -> str:
        return f"{self.settings.base_topic}/event"

    @property
    def discovery_topic(self) -> str:
        s = self.settings
        return f"{s.discovery_prefix}/event/{s.node_id}/command/config"

    def discovery_config(self) -> dict[str, Any]:
        """The Home Assistant MQTT discovery payload of vcd's ``event`` entity."""
        s = self.settings
        return {
            "name": "Voice command",
            "unique_id": f"{s.node_id}_command",
            "state_topic": self.event_state_topic,
            "event_types": self.event_types,
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
                "hermes/asr/textCaptured",
                hermes_text_captured(site, text, confidence, audio_s, session_id),
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
            payload = {
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
            self._put(f"{s.topic_prefix}/{site}/intent/{intent}", payload, f"intent {intent}")
        self._commands(site, intent, slots, text, confidence)
        if s.hermes:
            self._put(
                f"hermes/intent/{intent}",
                hermes_intent(site, intent, slots, text, confidence, self._session_id(site, text)),
                f"Hermes intent {intent}",
            )
        if s.homeassistant_discovery:
            self._put(
                self.event_state_topic,
                {**slots, "event_type": intent, "text": text, "confidence": round(confidence, 4)},
                f"Home Assistant event {intent}",
            )

    def unrecognized(self, site: str, text: str, confidence: float, audio_s: float) -> None:
        s = self.settings
        if s.publish_unrecognized:
            payload = {"text": text, "confidence": round(confidence, 4), "site": site, "audio_s": audio_s}
            self._put(f"{s.topic_prefix}/{site}/unrecognized", payload, "unrecognized speech")
        if s.hermes:
            payload = {
                "input": text,
                "siteId": site,
                "sessionId": self._session_id(site, text),
                "id": None,
                "customData": None,
            }
            self._put("hermes/nlu/intentNotRecognized", payload, "Hermes intentNotRecognized")
        if s.homeassistant_discovery:
            self._put(
                self.event_state_topic,
                {"event_type": UNRECOGNIZED_EVENT, "text": text, "confidence": round(confidence, 4)},
                "Home Assistant event unrecognized",
            )

    def stop(self) -> bool:
        return self.publisher.stop(self.settings.shutdown_wait_s)

    # helpers

    def _commands(self, site: str, intent: str, slots: dict[str, Any], text: str, confidence: float) -> None:
        values = {"intent": intent, "site": site, "text": text, "confidence": round(confidence, 4), **slots}
        for rule in self.settings.commands:
            if not rule.matches(intent, slots):
                continue
            try:
                topic = rule.topic.render(values)
                payload = rule.payload.render(values)
            except MissingField as exc:
                _LOGGER.warning(
                    "commands[%d] (intent %s) skipped: the template %r names {%s}, which this command lacks "
                    "(slots: %s)",
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
            self.publisher.put(Message(topic, payload, rule.qos, rule.retain, f"commands[{rule.index}] ({intent})"))

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


def _template_with(rule: CommandRule, name: str) -> str:
    for template in (rule.topic, rule.payload):
        if any(isinstance(p, tuple) and p[0] == name for p in template.parts):
            return template.source
    return rule.topic.source


# --- Rhasspy Hermes payloads ---------------------------------------------------------------------


def _tokens(text: str) -> list[list[dict[str, Any]]]:
    tokens = []
    for match in re.finditer(r"\S+", text):
        tokens.append(
            {
                "value": match.group(),
                "confidence": 1.0,
                "rangeStart": match.start(),
                "rangeEnd": match.end(),
                "time": None,
            }
        )
    return [tokens]


def hermes_slot(name: str, value: Any, text: str, confidence: float) -> dict[str, Any]:
    """One Rhasspy slot: entity, slotName, rawValue, value{kind, value}, confidence and, when found, range."""
    raw = _text(value)
    kind = "Number" if isinstance(value, int | float) and not isinstance(value, bool) else "Unknown"
    slot: dict[str, Any] = {
        "entity": name,
        "slotName": name,
        "rawValue": raw,
        "value": {"kind": kind, "value": value},
        "confidence": round(confidence, 4),
    }
    start = text.lower().find(raw.lower()) if raw else -1
    if start >= 0:
        end = start + len(raw)
        slot["range"] = {"start": start, "end": end, "rawStart": start, "rawEnd": end}
    return slot


def hermes_intent(
    site: str, intent: str, slots: dict[str, Any], text: str, confidence: float, session_id: str
) -> dict[str, Any]:
    """The payload of ``hermes/intent/<intentName>`` in Rhasspy's shape."""
    return {
        "input": text,
        "intent": {"intentName": intent, "confidenceScore": round(confidence, 4)},
        "slots": [hermes_slot(name, value, text, confidence) for name, value in slots.items()],
        "siteId": site,
        "id": None,
        "sessionId": session_id,
        "customData": None,
        "asrTokens": _tokens(text),
        "asrConfidence": round(confidence, 4),
        "rawInput": text,
        "wakewordId": None,
        "lang": None,
    }


def hermes_text_captured(site: str, text: str, confidence: float, audio_s: float, session_id: str) -> dict[str, Any]:
    """The payload of ``hermes/asr/textCaptured``."""
    return {
        "text": text,
        "likelihood": round(confidence, 4),
        "seconds": round(audio_s, 3),
        "siteId": site,
        "sessionId": session_id,
        "wakewordId": None,
        "asrTokens": _tokens(text),
        "lang": None,
    }


# --- hook implementations --------------------------------------------------------------------------

_plugin: MqttPlugin | None = None


def _settings(config: Any, config_path: Path | None) -> MqttSettings | None:
    """The validated ``[plugins.mqtt]`` table (paths relative to the config file); None when there is none."""
    table = config.plugin_table(NAME)
    if not table:
        return None
    base = Path(config_path).parent if config_path else Path.cwd()
    return parse_settings(table, config.label, config.daemon.site, base)


@vcd.hookimpl
def vcd_check_config(config: Any, config_path: Path | None) -> None:
    """``vcd check-config``: validate ``[plugins.mqtt]`` (files it names included) without connecting."""
    _settings(config, config_path)


@vcd.hookimpl
def vcd_startup(config: Any, config_path: Path | None) -> None:
    """Validate ``[plugins.mqtt]`` and connect in the background; no table → the plugin stays idle."""
    global _plugin
    if _plugin is not None:  # started twice without a shutdown (tests): let go of the old connection
        _plugin.stop()
        _plugin = None
    settings = _settings(config, config_path)
    if settings is None:
        _LOGGER.info("no [plugins.mqtt] table in %s; not publishing", config.label)
        return
    intents = sentence_intents(config) if settings.homeassistant_discovery and not settings.event_types else []
    _plugin = MqttPlugin(settings, intents)
    _plugin.start()
    _LOGGER.info(
        "publishing to %s:%d under %s/ (qos %d, queue %d)",
        settings.host,
        settings.port,
        settings.base_topic,
        settings.qos,
        settings.queue_size,
    )


@vcd.hookimpl
def vcd_transcript(site: str, text: str, confidence: float, audio_s: float) -> None:
    if _plugin is not None:
        _plugin.transcript(site, text, confidence, audio_s)


@vcd.hookimpl
def vcd_intent(
    site: str, intent: str, slots: dict[str, Any], text: str, confidence: float, timings: dict[str, float]
) -> None:
    if _plugin is not None:
        _plugin.intent(site, intent, slots, text, confidence, timings)


@vcd.hookimpl
def vcd_unrecognized(site: str, text: str, confidence: float, audio_s: float) -> None:
    if _plugin is not None:
        _plugin.unrecognized(site, text, confidence, audio_s)


@vcd.hookimpl
def vcd_shutdown(reason: str) -> None:
    """Deliver what is queued, publish ``offline`` and wait for it (``shutdown_wait_s``), disconnect."""
    global _plugin
    if _plugin is None:
        return
    plugin, _plugin = _plugin, None
    delivered = plugin.stop()
    _LOGGER.info("disconnected (%s); offline %s", reason, "confirmed" if delivered else "not confirmed")
