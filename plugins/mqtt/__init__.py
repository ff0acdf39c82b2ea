"""MQTT plugin: publishes recognised commands (JSON events, mapped commands, Hermes, Home Assistant) to a broker.

It also reads the broker: devices announced by Home Assistant MQTT discovery
join the grammar and receive their commands, and Hermes toggles pause recognition.

Configured by ``[plugins.mqtt]`` in config.toml (every key is described in
docs/mqtt.md).  Publishing never blocks the pipeline: hooks only put messages
into a bounded queue, and one sender thread (``vcd-mqtt``) delivers them in
order, one at a time, each confirmed by the broker (QoS ≥ 1) before the next.
While the broker is unreachable paho reconnects with exponential back-off and
the queue keeps the commands; when it is full the oldest is dropped and logged.

This module holds only the hook implementations.  The rooms behind them:
``settings`` (the validated table), ``templates`` (``{field|filter}`` topics and
payloads), ``payloads`` (what each hook call publishes, and where), ``hermes``
(Rhasspy Hermes payloads and toggles), ``discovery`` (devices announced by Home
Assistant MQTT discovery) and ``publisher`` (the connection and the queue).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import vcd

from .payloads import MqttPlugin
from .settings import MqttSettings, parse_settings, sentence_intents, sentence_language

_LOGGER = logging.getLogger(__name__)

NAME = "mqtt"

_plugin: MqttPlugin | None = None


def _settings(config: Any, config_path: Path | None) -> MqttSettings | None:
    """The validated ``[plugins.mqtt]`` table (paths relative to the config file); None when there is none.

    An empty ``[plugins.mqtt]`` table is a table: it publishes with every default (localhost:1883).
    """
    if NAME not in config.plugins.tables:
        return None
    table = config.plugin_table(NAME)
    base = Path(config_path).parent if config_path else Path.cwd()
    return parse_settings(table, config.label, config.daemon.site, base)


@vcd.hookimpl
def vcd_check_config(config: Any, config_path: Path | None) -> None:
    """``vcd check-config``: validate ``[plugins.mqtt]`` (files it names included) without connecting."""
    _settings(config, config_path)


@vcd.hookimpl
def vcd_startup(config: Any, config_path: Path | None, controls: vcd.PluginControls) -> None:
    """Validate ``[plugins.mqtt]``, connect, and wait up to ``discovery_wait_s`` for the devices on the broker.

    No table → the plugin stays idle.  Discovered devices go into the grammar's lists through
    ``controls``; Hermes toggles pause and resume recognition through it.
    """
    global _plugin
    if _plugin is not None:  # started twice without a shutdown (tests): let go of the old connection
        _plugin.stop()
        _plugin = None
    settings = _settings(config, config_path)
    if settings is None:
        _LOGGER.info("no [plugins.mqtt] table in %s; not publishing", config.label)
        return
    intents = sentence_intents(config) if settings.homeassistant_discovery and not settings.event_types else []
    _plugin = MqttPlugin(settings, intents, controls, sentence_language(config))
    _plugin.start()
    _LOGGER.info(
        "publishing to %s:%d under %s/ (qos %d, queue %d)",
        settings.host,
        settings.port,
        settings.base_topic,
        settings.qos,
        settings.queue_size,
    )
    if settings.discover_devices:
        found = _plugin.wait_for_devices(settings.discovery_wait_s)
        _LOGGER.info("discovery: %d devices under %s/ at start-up", found, settings.discovery_prefix)


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
def vcd_health() -> str | None:
    """Not working when paho's network thread or the sender thread has died (a broker outage is fine: it reconnects)."""
    return _plugin.publisher.health() if _plugin is not None else None


@vcd.hookimpl
def vcd_said(site: str, text: str, request_id: str) -> None:
    """A ``hermes/tts/say`` this plugin passed on is spoken: publish ``hermes/tts/sayFinished``."""
    if _plugin is not None:
        _plugin.said(site, text, request_id)


@vcd.hookimpl
def vcd_shutdown(reason: str) -> None:
    """Deliver what is queued, publish ``offline`` and wait for it (``shutdown_wait_s``), disconnect."""
    global _plugin
    if _plugin is None:
        return
    plugin, _plugin = _plugin, None
    delivered = plugin.stop()
    _LOGGER.info("disconnected (%s); offline %s", reason, "confirmed" if delivered else "not confirmed")
