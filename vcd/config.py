"""Configuration: find the TOML file, validate it, and turn it into frozen objects per subsystem."""

from __future__ import annotations

import logging
import os
import reprlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from vcd.errors import ConfigError, did_you_mean, one_line

_LOGGER = logging.getLogger(__name__)

ENV_VAR = "VCD_CONFIG"
SEARCH_PATHS = (Path("config.toml"), Path("/etc/vcd/config.toml"))
LOG_LEVELS = ("debug", "info", "warning", "error")
AUDIO_SOURCES = ("mic", "file", "stdin", "none")
MAX_FILE_BYTES = 1 << 20  # a configuration file larger than this (1 MiB) is refused unread
MAX_DEPTH = 32  # arrays and tables nested deeper than this are refused (no key needs more than 3)
SENTENCES_MODES = ("add", "replace")
ENGINES = ("auto", "numpy")  # recognizer.engine (vcd.inference.load_acoustic_model)
# recognizer.denoised_view: the denoiser of the rejection rule's second look in a loud room, or none
# (vcd.denoise.make_view); true is the first, false "off"
DENOISED_VIEWS = ("webrtc", "rnnoise", "off")


# --- the objects the rest of vcd reads -----------------------------------------------------


@dataclass(frozen=True)
class DaemonConfig:
    """``[daemon]``: identity and logging of the running service."""

    site: str = "default"  # names this hub in hooks and MQTT topics
    log_level: str = "info"  # debug | info | warning | error


@dataclass(frozen=True)
class AudioConfig:
    """``[audio]``: where the audio comes from and how it is buffered."""

    source: str = "mic"  # mic | file | stdin | none (a hub that only hears satellites)
    file: Path | None = None  # the file played when source = "file"
    device: str | int = ""  # microphone: "" = system default, a name (substring) or an index
    input_rate_hz: int = 16000  # stdin: sample rate of the raw s16le PCM
    channels: int = 1  # stdin: interleaved channels of the raw PCM
    block_ms: int = 30  # length of one block read from the source, milliseconds
    queue_blocks: int = 100  # bounded queue between the source and the VAD, blocks
    realtime: bool = False  # file/stdin: pace reading at real time instead of as fast as possible


@dataclass(frozen=True)
class VadConfig:
    """``[vad]``: how webrtcvad frames are grouped into speech segments (commands)."""

    aggressiveness: int = 2  # webrtcvad mode, 0 (least) .. 3 (most aggressive filtering of non-speech)
    frame_ms: int = 30  # webrtcvad frame length: 10, 20 or 30 milliseconds
    preroll_ms: int = 300  # audio kept from before the trigger, milliseconds
    min_speech_ms: int = 300  # shorter segments (clicks, coughs) are dropped, milliseconds
    silence_ms: int = 700  # trailing non-speech that ends a command, milliseconds
    early_silence_ms: int = 150  # a complete command (see docs/daemon.md) ends after this much silence; 0 = off
    max_speech_ms: int = 8000  # a segment is cut at this length, milliseconds
    trigger_window_ms: int = 240  # window the start decision looks at, milliseconds
    trigger_ratio: float = 0.7  # start when this share of the window is speech (end: this share is not)


@dataclass(frozen=True)
class RecognizerConfig:
    """``[recognizer]``: model, sentences and acceptance threshold."""

    sentences: tuple[Path, ...] = ()  # the user's sentence files or folders (a string or a list in the TOML)
    sentences_mode: str = "add"  # "add": the bundled sentences, then these (their intents win ties); "replace"
    model: Path | None = None  # acoustic model file; None = bundled
    min_confidence: float = 0.5  # below this a decoded sentence is reported as unrecognised, 0..1
    threads: int = 1  # threads of one inference of the recogniser's model
    engine: str = "auto"  # the model's engine: "auto" (ONNX Runtime where installed, else numpy) or "numpy"
    front_end: str = "auto"  # denoiser before the features: "auto" (the model's), "rnnoise" or "none"
    beam: float = 40.0  # search beam, log-probability; 0 = the exact search over every phone state
    second_opinion: bool = True  # ask PocketSphinx where the model's rule weighs its answer (vcd.second_opinion)
    denoised_view: str = "webrtc"  # look again at a sentence rejected in a loud room, denoised: "webrtc", "rnnoise", "off"


@dataclass(frozen=True)
class AdaptConfig:
    """``[adapt]``: opt-in keeping of confidently recognised commands' audio for ``vcd adapt``."""

    keep_clips: bool = False  # keep the audio of recognised commands (and nothing else) in `folder`
    folder: Path = Path("adapt")  # where kept clips go (relative to the config file's folder)
    min_confidence: float = 0.5  # keep only commands recognised at this confidence or above, 0..1
    max_clips: int = 500  # the most kept; the oldest are deleted first


@dataclass(frozen=True)
class WakeConfig:
    """``[wake]``: an optional wake word in front of the recogniser (off by default)."""

    enabled: bool = False  # only speech that follows the wake word goes to the recogniser
    model: str | Path = "alexa"  # a built-in microWakeWord name, or the path of a model's .json manifest
    phrase: str = ""  # a wake phrase typed as text, spotted by vcd's own phone model instead of `model`
    threshold: float = 0.0  # detection score 0..1; 0 = the default (see vcd.wake: the model's own cutoff, …)
    verify: bool | str = True  # a second opinion on a pretrained model's detections: true, false, "openwakeword", "phone"
    verify_threshold: float = 0.0  # the second opinion's score 0..1 that verifies; 0 = its default (see vcd.wake)
    window_ms: int = 5000  # speech that begins this long after the wake word is still the command, milliseconds


@dataclass(frozen=True)
class SatelliteConfig:
    """``[satellite]``: how ``vcd satellite`` reaches its hub through the MQTT broker (docs/satellites.md)."""

    host: str = "localhost"  # the broker's host name or IP address
    port: int = 1883  # the broker's TCP port
    keepalive_s: int = 30  # MQTT keep-alive, seconds; the broker publishes the last will after 1.5 × this
    topic_prefix: str = "vcd"  # the hubs' plugins.satellites.topic_prefix
    protocol: str = "vcd"  # "vcd": whole segments; "hermes": Rhasspy audioFrame WAV chunks (a Rhasspy hub)
    hold_s: float = 10.0  # segments wait this long for a hub to be online before being sent anyway, seconds
    queue_segments: int = 20  # segments waiting for the broker; when full the oldest is dropped (logged)
    retry_s: float = 10.0  # a segment no hub has receipted after this long is sent again (twice at most); 0: never
    username: str = ""  # broker login; "" → anonymous
    password_env: str = ""  # the environment variable holding the password
    password_file: Path | None = None  # or a file whose first line is the password
    tls: bool = False  # TLS to the broker (port 8883 is then usual)
    ca_file: Path | None = None  # CA certificate (PEM) to trust; None → the system's


@dataclass(frozen=True)
class PluginsConfig:
    """``[plugins]``: which plugins load, from where, and their own ``[plugins.NAME]`` tables."""

    enabled: tuple[str, ...] = ("console", "mqtt", "feedback")  # shipped plugins to load
    disabled: tuple[str, ...] = ()  # names never loaded, whatever their source
    dirs: tuple[Path, ...] = ()  # folders whose *.py files are loaded as plugins
    queue_size: int = 64  # events waiting per plugin before new ones are dropped
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Config:
    """The whole validated configuration; ``path`` is None for built-in defaults."""

    path: Path | None = None
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    wake: WakeConfig = field(default_factory=WakeConfig)
    satellite: SatelliteConfig = field(default_factory=SatelliteConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)

    @property
    def label(self) -> str:
        """The name error messages use for this configuration's file."""
        return str(self.path) if self.path is not None else "<defaults>"

    def plugin_table(self, name: str) -> dict[str, Any]:
        """A copy of the raw ``[plugins.NAME]`` table ({} when the file has none).

        Plugins validate it themselves in ``vcd_startup`` and report errors as
        ``f"{config.label}: plugins.{name}.KEY: …"`` (see :meth:`key_error`).
        """
        return dict(self.plugins.tables.get(name, {}))

    def key_error(self, key_path: str, message: str) -> ConfigError:
        """A :class:`ConfigError` for ``key_path`` in this file.

        ``config.key_error("plugins.mqtt.port", "must be 1..65535 (got 0)")`` reads
        ``config.toml: plugins.mqtt.port: must be 1..65535 (got 0)``.
        """
        return ConfigError(one_line(f"{self.label}: {key_path}: {message}"))


# --- validation ----------------------------------------------------------------------------


class _Invalid(Exception):
    """A value is wrong; the message is the part after ``key:``."""


_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlist = _SHOW.maxdict = 6
_SHOW.maxlevel = 3


def show(value: Any) -> str:
    """``value`` as error messages quote it: its repr, shortened (long strings, big or deep lists)."""
    return _SHOW.repr(value)


def _int(lo: int | None = None, hi: int | None = None, choices: tuple[int, ...] = ()) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be an integer (got {show(value)})")
        if choices and value not in choices:
            listed = ", ".join(str(c) for c in choices[:-1]) + f" or {choices[-1]}"
            raise _Invalid(f"must be {listed} (got {value})")
        if lo is not None and value < lo or hi is not None and value > hi:
            if hi is None:
                raise _Invalid(f"must be at least {lo} (got {value})")
            raise _Invalid(f"must be {lo}..{hi} (got {value})")
        return value

    return check


def _float(lo: float, hi: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"must be a number (got {show(value)})")
        if not lo <= value <= hi:
            raise _Invalid(f"must be {lo:g}..{hi:g} (got {value})")
        return float(value)

    return check


def _str(choices: tuple[str, ...] = (), nonempty: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"must be a string (got {show(value)})")
        if choices and value not in choices:
            raise _Invalid(f"must be one of {', '.join(repr(c) for c in choices)} (got {show(value)})")
        if nonempty and not value.strip():
            raise _Invalid("must not be empty")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false (got {show(value)})")
    return value


def denoised_view_name(value: bool | str) -> str:
    """``recognizer.denoised_view`` as one of :data:`DENOISED_VIEWS`: true is the first, false ``"off"``."""
    return (DENOISED_VIEWS[0] if value else "off") if isinstance(value, bool) else value


def _view(value: Any) -> str:
    if isinstance(value, bool) or value in DENOISED_VIEWS:
        return denoised_view_name(value)
    raise _Invalid(f"must be true, false, {', '.join(repr(v) for v in DENOISED_VIEWS)} (got {show(value)})")


WAKE_VERIFIERS = ("openwakeword", "phone")  # wake.verify's named second opinions (vcd.wake.load_wake_model)


def _verify(value: Any) -> bool | str:
    if isinstance(value, bool) or value in WAKE_VERIFIERS:
        return value
    raise _Invalid(f"must be true, false, {' or '.join(repr(v) for v in WAKE_VERIFIERS)} (got {show(value)})")


def _device(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(f"must be a device name or index (got {show(value)})")
    if isinstance(value, int) and value < 0:
        raise _Invalid(f"must be a device index ≥ 0 (got {value})")
    return value


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid(f"must be a list of plugin names (got {show(value)})")
    return tuple(value)


def _site(value: Any) -> str:
    site = _str(nonempty=True)(value)
    if any(c in site for c in "/+#") or site != site.strip():
        raise _Invalid(f"must not contain '/', '+', '#' or surrounding spaces (got {show(site)})")
    return site


def _sentence_paths(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid(f"must be a file or folder path, or a list of them (got {value!r})")
    return tuple(value)


def _paths(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid(f"must be a list of folder paths (got {show(value)})")
    return tuple(value)


_SCHEMA: dict[str, tuple[type, dict[str, Callable[[Any], Any]]]] = {
    "daemon": (DaemonConfig, {"site": _site, "log_level": _str(LOG_LEVELS)}),
    "audio": (
        AudioConfig,
        {
            "source": _str(AUDIO_SOURCES),
            "file": _str(),
            "device": _device,
            "input_rate_hz": _int(8000, 192000),
            "channels": _int(1, 32),
            "block_ms": _int(10, 500),
            "queue_blocks": _int(2, 100000),
            "realtime": _bool,
        },
    ),
    "vad": (
        VadConfig,
        {
            "aggressiveness": _int(0, 3),
            "frame_ms": _int(choices=(10, 20, 30)),
            "preroll_ms": _int(0, 5000),
            "min_speech_ms": _int(0, 60000),
            "silence_ms": _int(30, 10000),
            "early_silence_ms": _int(0, 10000),
            "max_speech_ms": _int(500, 60000),
            "trigger_window_ms": _int(30, 5000),
            "trigger_ratio": _float(0.0, 1.0),
        },
    ),
    "recognizer": (
        RecognizerConfig,
        {
            "sentences": _sentence_paths,
            "sentences_mode": _str(choices=SENTENCES_MODES),
            "model": _str(),
            "min_confidence": _float(0.0, 1.0),
            "threads": _int(1, 64),
            "engine": _str(choices=ENGINES),
            "front_end": _str(choices=("auto", "rnnoise", "none")),
            "beam": _float(0.0, 1000.0),
            "second_opinion": _bool,
            "denoised_view": _view,
        },
    ),
    "adapt": (
        AdaptConfig,
        {
            "keep_clips": _bool,
            "folder": _str(nonempty=True),
            "min_confidence": _float(0.0, 1.0),
            "max_clips": _int(1, 100000),
        },
    ),
    "wake": (
        WakeConfig,
        {
            "enabled": _bool,
            "model": _str(nonempty=True),
            "phrase": _str(),
            "threshold": _float(0.0, 1.0),
            "verify": _verify,
            "verify_threshold": _float(0.0, 1.0),
            "window_ms": _int(500, 60000),
        },
    ),
    "satellite": (
        SatelliteConfig,
        {
            "host": _str(nonempty=True),
            "port": _int(1, 65535),
            "keepalive_s": _int(5, 65535),
            "topic_prefix": _site,
            "protocol": _str(choices=("vcd", "hermes")),
            "hold_s": _float(0.0, 3600.0),
            "queue_segments": _int(1, 100000),
            "retry_s": _float(0.0, 3600.0),
            "username": _str(),
            "password_env": _str(),
            "password_file": _str(),
            "tls": _bool,
            "ca_file": _str(),
        },
    ),
    "plugins": (
        PluginsConfig,
        {"enabled": _names, "disabled": _names, "dirs": _paths, "queue_size": _int(1, 100000)},
    ),
}


def _resolve(base: Path, value: str) -> Path:
    """``value`` with ``~`` expanded, relative to ``base``; :class:`_Invalid` for ``~nosuchuser``."""
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~user/…" for a user that does not exist
        raise _Invalid(f"{show(value)}: cannot expand '~': no such user") from None
    return path if path.is_absolute() else base / path


def _exists(path: Path, kind: str = "file or folder", folder: bool = False) -> Path:
    """``path`` when it exists (a folder if ``folder``); :class:`_Invalid` naming it otherwise.

    A name too long for the system or holding a NUL byte is an error of its own, not a crash;
    so is a device or pipe (``/dev/zero`` would be read for ever).
    """
    try:
        found = path.is_dir() if folder else path.exists()
        special = found and not folder and not (path.is_file() or path.is_dir())
    except OSError as exc:
        raise _Invalid(f"{show(str(path))}: {exc.strerror or exc}") from None
    except ValueError as exc:  # an embedded NUL byte
        raise _Invalid(f"{show(str(path))}: {exc}") from None
    if not found:
        raise _Invalid(f"{path}: no such {kind}")
    if special:
        raise _Invalid(f"{path}: not a regular {kind} (a device or a pipe)")
    return path


def _too_deep(value: Any, limit: int) -> str | None:
    """Where arrays/tables in ``value`` nest deeper than ``limit``: the table keys to there (``".host"``), else None.

    Iterative, so any depth is safe; error messages then quote only values nested less deeply.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return where
            if isinstance(item, dict):
                stack.extend((child, depth + 1, f"{where}.{key}") for key, child in item.items())
            else:
                stack.extend((child, depth + 1, where) for child in item)
    return None


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> Config:
    """Validate the TOML document ``data`` read from ``path`` into a :class:`Config`.

    Raises :class:`ConfigError` naming the file and key path of the first problem.
    """
    label = str(path) if path is not None else "<defaults>"
    base = path.absolute().parent if path is not None else Path.cwd()
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name not in _SCHEMA:
            raise ConfigError(one_line(f"{label}: {name}: unknown section{did_you_mean(name, _SCHEMA)}"))
        if not isinstance(table, dict):
            raise ConfigError(f"{label}: {name}: must be a table ([{name}])")
        cls, checks = _SCHEMA[name]
        values: dict[str, Any] = {}
        tables: dict[str, Any] = {}
        for key, value in table.items():
            deep = _too_deep(value, MAX_DEPTH)
            if deep is not None:
                raise ConfigError(one_line(f"{label}: {name}.{key}{deep}: nested more than {MAX_DEPTH} levels deep"))
            if name == "plugins" and key not in checks and isinstance(value, dict):
                tables[key] = MappingProxyType(dict(value))  # [plugins.NAME]: checked by plugin NAME
                continue
            if key not in checks:
                raise ConfigError(one_line(f"{label}: {name}.{key}: unknown key{did_you_mean(key, checks)}"))
            try:
                values[key] = checks[key](value)
            except _Invalid as exc:
                raise ConfigError(one_line(f"{label}: {name}.{key}: {exc}")) from None
        if name == "plugins":
            values["tables"] = MappingProxyType(tables)
        sections[name] = _finish(name, values, base, label)
    config = Config(path=path, **{n: s for n, s in sections.items()})
    _cross_check(config, label)
    return config


def _finish(section: str, values: dict[str, Any], base: Path, label: str) -> Any:
    """Turn checked raw values into the section object: resolve paths, check files exist."""
    key = ""
    try:
        if section == "audio" and "file" in values:
            key = "file"
            values["file"] = _resolve(base, values["file"]) if values["file"] else None
        if section == "recognizer":
            if "sentences" in values:
                key = "sentences"
                values["sentences"] = tuple(_exists(_resolve(base, p)) for p in values["sentences"])
            if values.get("sentences_mode") == "replace" and not values.get("sentences"):
                key = "sentences_mode"
                raise _Invalid('"replace" needs recognizer.sentences')
            if "model" in values:
                key = "model"
                values["model"] = _exists(_resolve(base, values["model"])) if values["model"] else None
        if section == "adapt" and "folder" in values:
            key = "folder"
            values["folder"] = _resolve(base, values["folder"])
        if section == "wake" and str(values.get("model", "")).endswith(".json"):
            key = "model"
            values["model"] = _resolve(base, values["model"])
        if section == "satellite":
            for key in ("password_file", "ca_file"):
                if key in values:
                    values[key] = _exists(_resolve(base, values[key]), "file") if values[key] else None
        if section == "plugins" and "dirs" in values:
            key = "dirs"
            values["dirs"] = tuple(_exists(_resolve(base, d), "folder", folder=True) for d in values["dirs"])
    except _Invalid as exc:
        raise ConfigError(one_line(f"{label}: {section}.{key}: {exc}")) from None
    cls = _SCHEMA[section][0]
    return cls(**values)


def _cross_check(config: Config, label: str) -> None:
    vad = config.vad
    if vad.max_speech_ms <= vad.min_speech_ms:
        raise ConfigError(
            f"{label}: vad.max_speech_ms: must be greater than vad.min_speech_ms "
            f"({vad.max_speech_ms} ≤ {vad.min_speech_ms})"
        )
    if vad.early_silence_ms and vad.early_silence_ms >= vad.silence_ms:
        raise ConfigError(
            f"{label}: vad.early_silence_ms: must be less than vad.silence_ms or 0 "
            f"({vad.early_silence_ms} ≥ {vad.silence_ms})"
        )
    satellite = config.satellite
    if satellite.password_env and satellite.password_file:
        raise ConfigError(f"{label}: satellite.password_file: give password_env or password_file, not both")
    if (satellite.password_env or satellite.password_file) and not satellite.username:
        raise ConfigError(f"{label}: satellite.username: must be set when a password is given")
    if config.audio.source == "file" and config.audio.file is None:
        raise ConfigError(f'{label}: audio.file: must name a file when audio.source = "file"')
    if config.wake.enabled:  # load the model now, so that `vcd check-config` finds one that does not load
        from vcd.wake import load_wake_model

        load_wake_model(config)


def find_config_path(explicit: str | Path | None = None) -> Path | None:
    """The configuration file: ``explicit``, else ``$VCD_CONFIG``, else ./config.toml, else /etc/vcd/config.toml.

    Returns None when none exists (built-in defaults apply).  An explicit or
    ``$VCD_CONFIG`` path that does not exist is an error, not a fallback.
    """
    for given, origin in ((explicit, "--config"), (os.environ.get(ENV_VAR) or None, f"${ENV_VAR}")):
        if given:
            path = Path(given)
            try:
                found = path.is_file()
            except (OSError, ValueError) as exc:  # a name too long, a NUL byte
                detail = getattr(exc, "strerror", None) or exc
                raise ConfigError(one_line(f"{show(str(path))}: cannot read: {detail} (from {origin})")) from None
            if not found:
                raise ConfigError(one_line(f"{path}: no such configuration file (from {origin})"))
            return path
    for path in SEARCH_PATHS:
        if path.is_file():
            return path
    return None


MAX_PARSE_DEPTH = 2 * MAX_DEPTH  # brackets and braces open at once beyond which a file is not parsed at all


def _nesting(text: str) -> int:
    """The most ``[``/``{`` open at once in TOML ``text``, strings and comments aside (a cheap upper bound)."""
    depth = deepest = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                i += 2 if text[i] == "\\" and quote[0] == '"' else 1
            i += len(quote)
            continue
        if c == "#":
            i = text.find("\n", i)
            if i < 0:
                break
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return deepest


def load_config(explicit: str | Path | None = None) -> Config:
    """Find (see :func:`find_config_path`), read and validate the configuration."""
    path = find_config_path(explicit)
    if path is None:
        _LOGGER.debug("no configuration file found; using built-in defaults")
        return Config()
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(one_line(f"{path}: cannot read: {exc.strerror or exc}")) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(one_line(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB: not a configuration file"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(one_line(f"{path}: invalid TOML: not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line})")) from None
    if _nesting(text) > MAX_PARSE_DEPTH:  # tomllib recurses per level: refuse before it runs out of stack
        raise ConfigError(one_line(f"{path}: invalid TOML: arrays or tables nested too deeply"))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(one_line(f"{path}: invalid TOML: {exc}")) from None
    except RecursionError:
        raise ConfigError(one_line(f"{path}: invalid TOML: arrays or tables nested too deeply")) from None
    return parse_config(data, path)


def section_fields(section: str) -> list[str]:
    """The keys a section accepts (documentation and tests)."""
    return [f.name for f in fields(_SCHEMA[section][0]) if f.name != "tables"]


def with_overrides(
    config: Config,
    *,
    site: str | None = None,
    input_path: str | None = None,
    realtime: bool | None = None,
    device: str | None = None,
) -> Config:
    """``config`` with the ``vcd run`` command-line options applied (and validated).

    ``input_path`` is a file (relative to the current folder) or ``"-"`` for
    stdin; ``device`` selects the microphone (a digit string is an index).
    """
    daemon, audio = config.daemon, config.audio
    try:
        if site is not None:
            daemon = replace(daemon, site=_site(site))
    except _Invalid as exc:
        raise ConfigError(f"--site: {exc}") from None
    if input_path == "-":
        audio = replace(audio, source="stdin")
    elif input_path is not None:
        audio = replace(audio, source="file", file=Path(input_path))
    if device is not None:
        audio = replace(audio, source="mic", device=int(device) if device.isdigit() else device)
    if realtime is not None:
        audio = replace(audio, realtime=realtime)
    return replace(config, daemon=daemon, audio=audio)
