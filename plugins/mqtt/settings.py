"""The ``[plugins.mqtt]`` table: validated into frozen settings, with one-line errors naming the key."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import vcd

from .templates import Template, slugify, topic_problem

_LOGGER = logging.getLogger(__name__)


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
    discover_devices: bool = True  # read devices from Home Assistant discovery configs under discovery_prefix
    discovery_wait_s: float = 2.0  # start-up: how long to wait for the broker's retained discovery configs
    commands: tuple[CommandRule, ...] = ()

    @property
    def base_topic(self) -> str:
        return f"{self.topic_prefix}/{self.site}"


_KEYS = (
    "host", "port", "client_id", "keepalive_s", "connect_timeout_s", "qos", "retain", "tls", "username",
    "password", "password_env", "password_file", "topic_prefix", "availability_topic", "publish_intents",
    "publish_unrecognized", "queue_size", "reconnect_min_s", "reconnect_max_s", "shutdown_wait_s", "hermes",
    "homeassistant_discovery", "discovery_prefix", "node_id", "event_types", "commands", "discover_devices",
    "discovery_wait_s",
)
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "insecure")
_COMMAND_KEYS = ("intent", "slots", "topic", "payload", "qos", "retain")


def _one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (a key may be any TOML string)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class _Checker:
    """Reads typed values out of a raw table and raises one-line :class:`vcd.ConfigError` s."""

    def __init__(self, label: str, base: Path):
        self.label = label
        self.base = base

    def error(self, key: str, message: str) -> vcd.ConfigError:
        return vcd.ConfigError(_one_line(f"{self.label}: plugins.mqtt.{key}: {message}"))

    def unknown(self, table: dict[str, Any], known: tuple[str, ...] | list[str], prefix: str) -> None:
        for key in table:
            if key not in known:
                raise self.error(f"{prefix}{key}", f"unknown key{vcd.did_you_mean(key, known)}")

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
        try:
            resolved = Path(value).expanduser()
        except RuntimeError:  # "~user/…" for a user that does not exist
            raise self.error(path, f"{value}: cannot expand '~': no such user") from None
        if not resolved.is_absolute():
            resolved = self.base / resolved
        try:
            found = resolved.is_file()
        except OSError as exc:  # e.g. a name too long for the file system
            raise self.error(path, f"{_short(str(resolved))}: {exc.strerror or exc}") from None
        if not found:
            raise self.error(path, f"{resolved}: no such file")
        return resolved

    def host(self, table: dict[str, Any], key: str, default: str) -> str:
        value = self.str_(table, key, default, nonempty=True)
        problem = host_problem(value)
        if problem:
            raise self.error(key, f"{_short(repr(value))}: {problem}")
        return value

    def tls(self, raw: dict[str, Any]) -> TlsSettings:
        """``[plugins.mqtt.tls]`` with its files loaded the way the connection will load them (``ssl``)."""
        self.unknown(raw, _TLS_KEYS, "tls.")
        tls = TlsSettings(
            ca_file=self.file(raw, "ca_file", "tls.ca_file"),
            cert_file=self.file(raw, "cert_file", "tls.cert_file"),
            key_file=self.file(raw, "key_file", "tls.key_file"),
            insecure=self.bool_(raw, "insecure", False, "tls.insecure"),
        )
        if tls.key_file and not tls.cert_file:
            raise self.error("tls.key_file", "needs tls.cert_file as well")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        for key, path in (("tls.ca_file", tls.ca_file), ("tls.cert_file", tls.cert_file)):
            if path is not None:
                try:
                    context.load_verify_locations(cafile=str(path))
                except (ssl.SSLError, OSError, ValueError) as exc:
                    raise self.error(key, f"{path}: not a PEM certificate file{_ssl_reason(exc)}") from None
        if tls.cert_file is not None:
            try:  # never prompts: an encrypted key gets an empty passphrase and fails
                context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None, lambda: b"")
            except (ssl.SSLError, OSError, ValueError) as exc:
                if tls.key_file is None:
                    raise self.error("tls.cert_file", f"{tls.cert_file}: holds no private key; give tls.key_file"
                                     f"{_ssl_reason(exc)}") from None
                if getattr(exc, "reason", "") == "KEY_VALUES_MISMATCH":
                    raise self.error("tls.key_file", f"{tls.key_file}: not the key of tls.cert_file") from None
                raise self.error("tls.key_file", f"{tls.key_file}: not a PEM private key without a passphrase"
                                 f"{_ssl_reason(exc)}") from None
        return tls

    def topic(self, value: str, path: str) -> str:
        problem = topic_problem(value)
        if problem:
            raise self.error(path, problem)
        return value


def _short(text: str, most: int = 80) -> str:
    """``text`` cut to ``most`` characters for an error line."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _ssl_reason(exc: BaseException) -> str:
    """What OpenSSL said, shortly: ``NO_CERTIFICATE_OR_CRL_FOUND`` rather than the whole ``[X509: …] (_ssl.c:…)``."""
    if isinstance(exc, ssl.SSLError):
        return f" ({exc.reason})" if exc.reason else ""  # without one OpenSSL says only "PEM lib"
    return f" ({getattr(exc, 'strerror', None) or exc})"


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def host_problem(host: str) -> str:
    """Why ``host`` is not a broker address paho can resolve ("" when it is): an IP address or a host name.

    A host name is what the C resolver takes after IDNA encoding (as ``socket.getaddrinfo`` does):
    dot-separated labels of 1–63 letters, digits, '-' (not first or last) and '_', 253 characters
    at most, one trailing dot allowed.  ``mqtt..lan`` would otherwise kill paho's network thread.
    """
    if host != host.strip():
        return "spaces around the host name"
    if "://" in host:
        return "a URL; give the host name or IP address only"
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        return ""
    except ValueError:
        pass
    if re.fullmatch(r"[^:]+:\d+", host):
        return "give the port in plugins.mqtt.port, not in the host"
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "not a valid host name (an empty label, or one over 63 characters)"
    name = ascii_name.removesuffix(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return "not a valid host name or IP address (letters, digits, '-' and '_' between dots)"
    return ""


def parse_settings(table: dict[str, Any], label: str, site: str, base: Path | None = None) -> MqttSettings:
    """Validate the raw ``[plugins.mqtt]`` table of the file ``label``.

    Raises :class:`vcd.ConfigError` with one line naming the file and key path, e.g.
    ``config.toml: plugins.mqtt.qos: must be 0, 1 or 2 (got 3)``.
    """
    c = _Checker(label, base or Path.cwd())
    c.unknown(table, _KEYS, "")
    values: dict[str, Any] = {"site": site}
    values["host"] = c.host(table, "host", "localhost")
    values["client_id"] = c.str_(table, "client_id", "")
    values["keepalive_s"] = c.int_(table, "keepalive_s", 60, 5, 65535)
    values["connect_timeout_s"] = c.float_(table, "connect_timeout_s", 5.0, 0.1, 300)
    values["qos"] = c.qos(table, "qos", 1)
    values["retain"] = c.bool_(table, "retain", False)

    tls_raw = table.get("tls", False)
    if isinstance(tls_raw, bool):
        values["tls"] = TlsSettings() if tls_raw else None
    elif isinstance(tls_raw, dict):
        values["tls"] = c.tls(tls_raw)
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
    values["discover_devices"] = c.bool_(table, "discover_devices", True)
    values["discovery_wait_s"] = c.float_(table, "discovery_wait_s", 2.0, 0, 30)
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
        if path is None:
            return None
        try:
            data = path.read_bytes()
            mode = path.stat().st_mode
        except OSError as exc:
            raise c.error("password_file", f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            password = data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise c.error("password_file", f"{path}: not a text file (not UTF-8)") from None
        if "\n" in password or "\r" in password or "\x00" in password:
            raise c.error("password_file", f"{path}: must hold the password on one line")
        if mode & stat.S_IROTH:
            _LOGGER.warning(
                _one_line(f"{c.label}: plugins.mqtt.password_file: {path} is readable by every user; "
                          f"chmod o-r it (e.g. 640, group vcd)")
            )
        return password
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


def _sentence_paths(config: Any) -> list[Any]:
    """The recogniser's sentence files or folders: the user's, after the bundled ones unless they replace them."""
    paths = list(config.recognizer.sentences)
    if not paths or getattr(config.recognizer, "sentences_mode", "add") == "add":
        paths.insert(0, vcd.BUNDLED_SENTENCES)
    return paths


def sentence_language(config: Any) -> str:
    """The ``language`` of the recogniser's sentence files (Hermes ``lang``); "en" when they do not say."""
    try:
        files = vcd.sentence_files(_sentence_paths(config)[-1])
        doc = yaml.safe_load(files[0].read_text(encoding="utf-8")) or {}
    except (vcd.VcdError, OSError, yaml.YAMLError, IndexError):
        return "en"
    language = doc.get("language") if isinstance(doc, dict) else None
    return language if isinstance(language, str) and language else "en"


def sentence_intents(config: Any) -> list[str]:
    """The intent names of the sentence files the recogniser uses (for Home Assistant's event types)."""
    try:
        files = vcd.sentence_files(_sentence_paths(config))
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

