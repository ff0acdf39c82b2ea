"""Satellites plugin: the hub's side of the satellite protocol — speech from satellites over MQTT to the recogniser.

Configured by ``[plugins.satellites]`` (docs/satellites.md).  One MQTT 5 connection
(paho's network thread, ``vcd-satellites-vad`` and, at start-up, ``vcd-satellites-connect``),
opened once the recogniser takes segments:

- vcd satellites' whole segments (``PREFIX/satellite/SITE/segment``) go to the recogniser as
  they are, through a shared subscription ``$share/GROUP/…`` so that several hub processes
  split them: each segment reaches one hub.  The broker may hand this hub one unacknowledged
  segment at a time (receive maximum 1).  Once decoded, before its hooks run, its id is
  receipted on ``PREFIX/satellite/SITE/decoded`` and the segment acknowledged; a satellite
  sends again what no hub receipted, and a segment another hub receipted is skipped here.
- Rhasspy satellites' streams (``hermes/audioServer/SITE/audioFrame``, with ``hermes_audio``)
  are cut into segments here, one VAD per site, the same segmenter as the microphone's.  A site
  whose frames stop for ``site_timeout_s`` is forgotten (its VAD and a segment in progress
  discarded, no speaker offered for it) until its next frame; one log line each way.
- ``vcd_feedback`` for a satellite's site is published to ``PREFIX/satellite/SITE/feedback``.
- Rhasspy satellites get their sounds and answers as ``hermes/audioServer/SITE/playBytes/ID``: this
  plugin offers a speaker for them (``controls.offer_speaker``) that the ``feedback`` plugin plays
  through.  While one plays, and ``PLAY_GUARD_S`` after its ``playFinished`` (or a timeout), the
  site's frames are dropped, so the answer its microphone hears is not decoded as a command.
- vcd satellites announce themselves on ``PREFIX/satellite/SITE/status`` (retained): while one is
  ``online`` the same speaker plays spoken answers (``controls.say``, e.g. ``hermes/tts/say``) there
  as ``playBytes`` (``says_at``), not feedback, which such a satellite renders itself.

Bad input — a payload that is not a 16-bit WAV, one over ``max_segment_kb``, a site not in
``sites`` — is logged in one line and dropped; nothing else stops.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vcd
from vcd import satellite_protocol as protocol
from vcd.presence import speech_presence_or_none

_LOGGER = logging.getLogger(__name__)

NAME = "satellites"
FRAME_QUEUE = 1000  # Rhasspy audio frames waiting for the hub's VAD thread (~30 s of one site)
_KEYS = ("host", "port", "keepalive_s", "client_id", "topic_prefix", "shared_group", "sites", "max_segment_kb",
         "hermes_audio", "hermes_play", "site_timeout_s", "username", "password_env", "password_file", "tls",
         "ca_file")
RECEIPTS_KEPT = 1000  # per site: receipts remembered, so a segment sent again is not decoded twice
PLAY_FINISHED_MARGIN_S = 3.0  # playBytes: wait this long past the sound's length for its playFinished
PLAY_GUARD_S = 0.5  # ... and drop the site's frames this long after it (the echo, frames still on their way)
SWEEP_S = 0.5  # the VAD thread looks for Rhasspy sites gone quiet at least this often
_IDLE: tuple[str, bytes | None] = ("", None)  # the VAD thread's turn when no frame came in SWEEP_S


@dataclass(frozen=True)
class HubSettings:
    """The validated ``[plugins.satellites]`` table."""

    host: str = "localhost"
    port: int = 1883
    keepalive_s: int = 30
    client_id: str = ""  # "" → vcd-hub-<site>-<pid>: unique per process
    topic_prefix: str = "vcd"
    shared_group: str = "vcd-hubs"  # "" → a plain subscription: every hub hears every segment
    sites: tuple[str, ...] = ()  # () → any site
    max_segment_kb: int = 1024
    hermes_audio: bool = False
    hermes_play: bool = True  # with hermes_audio: feedback to Rhasspy satellites as playBytes
    site_timeout_s: int = 30  # a Rhasspy site without audio frames this long is forgotten until its next one
    login: protocol.BrokerLogin = protocol.BrokerLogin()


def parse_settings(config: Any) -> HubSettings | None:
    """``[plugins.satellites]`` validated; None when there is no table (the plugin stays idle)."""
    if NAME not in config.plugins.tables:
        return None
    table = config.plugin_table(NAME)

    def error(key: str, message: str) -> vcd.ConfigError:
        return config.key_error(f"plugins.{NAME}.{key}", message)

    for key in table:
        if key not in _KEYS:
            raise error(key, f"unknown key{vcd.did_you_mean(key, _KEYS)}")

    def string(key: str, default: str, topic: bool = False) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise error(key, f"must be a string (got {value!r})")
        if topic and (any(c in value for c in "+#") or value != value.strip()):
            raise error(key, f"must not contain '+', '#' or surrounding spaces (got {value!r})")
        return value

    def integer(key: str, default: int, lo: int, hi: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise error(key, f"must be a whole number {lo}..{hi} (got {value!r})")
        return value

    host = string("host", "localhost", topic=True)
    if not host:
        raise error("host", "must not be empty")
    prefix = string("topic_prefix", "vcd", topic=True).strip("/")
    if not prefix:
        raise error("topic_prefix", "must not be empty")
    group = string("shared_group", "vcd-hubs", topic=True)
    if "/" in group:
        raise error("shared_group", f"must not contain '/' (got {group!r})")
    sites = table.get("sites", [])
    if not isinstance(sites, list) or not all(isinstance(s, str) and s and not set(s) & set("/+#") for s in sites):
        raise error("sites", f"must be a list of site names without '/', '+' or '#' (got {sites!r})")
    hermes = table.get("hermes_audio", False)
    if not isinstance(hermes, bool):
        raise error("hermes_audio", f"must be true or false (got {hermes!r})")
    play = table.get("hermes_play", True)
    if not isinstance(play, bool):
        raise error("hermes_play", f"must be true or false (got {play!r})")
    tls = table.get("tls", False)
    if not isinstance(tls, bool):
        raise error("tls", f"must be true or false (got {tls!r})")
    base = config.path.absolute().parent if config.path is not None else Path.cwd()

    def file(key: str) -> Path | None:
        value = string(key, "")
        if not value:
            return None
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise error(key, f"{path}: no such file")
        return path

    username, password_env, password_file = string("username", ""), string("password_env", ""), file("password_file")
    if password_env and password_file:
        raise error("password_file", "give password_env or password_file, not both")
    if (password_env or password_file) and not username:
        raise error("username", "must be set when a password is given")
    try:
        password = protocol.read_password(password_env, password_file)
    except ValueError as exc:
        raise error("password_env" if password_env else "password_file", str(exc)) from None
    login = protocol.BrokerLogin(username, password, tls, file("ca_file"))
    return HubSettings(
        host=host, port=integer("port", 1883, 1, 65535), keepalive_s=integer("keepalive_s", 30, 5, 65535),
        client_id=string("client_id", "", topic=True), topic_prefix=prefix, shared_group=group, sites=tuple(sites),
        max_segment_kb=integer("max_segment_kb", 1024, 1, 256 * 1024), hermes_audio=hermes, hermes_play=play,
        site_timeout_s=integer("site_timeout_s", 30, 1, 86400), login=login,
    )


class Hub:
    """The MQTT 5 connection that brings satellites' speech to this hub's recogniser."""

    def __init__(self, settings: HubSettings, site: str, vad: Any, controls: vcd.PluginControls) -> None:
        self.settings = settings
        self.topics = protocol.Topics(settings.topic_prefix)
        self.vad = vad
        self.controls = controls
        self.client_id = settings.client_id or f"vcd-hub-{site}-{os.getpid()}"
        self.status_topic = self.topics.hub_status(self.client_id)
        self.counts = {"segments": 0, "dropped": 0, "frames": 0, "played": 0, "muted": 0}
        self._frames: queue.Queue[tuple[str, bytes | None] | None] = queue.Queue(maxsize=FRAME_QUEUE)  # None: reset
        self._streams: dict[str, protocol.StreamSegmenter] = {}
        self._sites_heard: set[str] = set()  # vcd satellites that sent segments: feedback goes to them
        self._heard_at: dict[str, float] = {}  # Rhasspy satellite → time.monotonic() of its last audio frame
        self._online: set[str] = set()  # vcd satellites whose status is "online": spoken answers go to them
        self._plays: dict[str, threading.Event] = {}  # playBytes request id → set by its playFinished
        self._playing: dict[str, int] = {}  # site → playBytes in flight there (its frames are dropped meanwhile)
        self._guard_until: dict[str, float] = {}  # site → time.monotonic() until which its frames are still dropped
        self._decoded: dict[str, collections.OrderedDict[str, None]] = {}  # site → recent receipted ids (any hub)
        self._complaints = protocol.Complaints(_LOGGER)  # per (site, kind of problem)
        self.subscribed = threading.Event()
        self._lock = threading.Lock()  # _decoded, _heard_at, _online, plays: paho's thread, the VAD's, the askers'
        self._client = protocol.mqtt5_client(self.client_id, self.status_topic, settings.keepalive_s,
                                             receive_maximum=1, manual_ack=True, login=settings.login)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self.subscribed.set()
        self._client.on_message = self._on_message
        self._vad_thread = threading.Thread(target=self._run_vad, name="vcd-satellites-vad", daemon=True)
        self._connector = threading.Thread(target=self._connect_when_ready, name="vcd-satellites-connect",
                                           daemon=True)
        self._stopped = threading.Event()

    @property
    def segment_filter(self) -> str:
        group = self.settings.shared_group
        return f"$share/{group}/{self.topics.segments}" if group else self.topics.segments

    def start(self) -> None:
        """Connect once the recogniser takes segments (``vcd_startup`` runs before the model loads)."""
        self._vad_thread.start()
        self._connector.start()

    def _connect_when_ready(self) -> None:
        """Thread ``vcd-satellites-connect``: the hub announces itself online only when it can decode."""
        while not self.controls.wait_for_recognizer(1.0):
            if self._stopped.is_set():
                return
        if not self._stopped.is_set():
            protocol.connect_async(self._client, self.settings.host, self.settings.port)

    def stop(self, wait_s: float = 1.0) -> bool:
        """Publish ``offline`` (waiting up to ``wait_s``), disconnect, end the VAD thread."""
        self._stopped.set()
        with self._lock:
            for finished in self._plays.values():
                finished.set()  # no feedback thread waits on a playFinished past the end
        with contextlib.suppress(queue.Full):
            self._frames.put_nowait(None)
        delivered = False
        try:
            info = self._client.publish(self.status_topic, protocol.OFFLINE, qos=1, retain=True)
            info.wait_for_publish(wait_s)
            delivered = info.is_published()
        except (RuntimeError, ValueError):
            pass
        self._client.disconnect()
        self._client.loop_stop()
        self._vad_thread.join(timeout=1.0)
        return delivered

    # --- paho's network thread ---

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            _LOGGER.warning("broker %s:%d refused the connection: %s", self.settings.host, self.settings.port, reason)
            return
        topics = [(self.segment_filter, 1), (self.topics.all_decoded, 1), (self.topics.statuses, 0),
                  (protocol.HERMES_PLAYS_FINISHED, 0)]  # playBytes go to vcd satellites too (spoken answers)
        if self.settings.hermes_audio:
            topics.append((protocol.HERMES_FRAMES, 0))
        client.subscribe(topics)
        # online after the subscriptions: the broker handles a client's packets in order, so a satellite that
        # sends a segment as soon as it reads "online" finds this hub subscribed
        client.publish(self.status_topic, protocol.ONLINE, qos=1, retain=True)
        _LOGGER.info("connected to %s:%d; hearing satellites on %s%s", self.settings.host, self.settings.port,
                     self.segment_filter, " and Rhasspy audio frames" if self.settings.hermes_audio else "")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            if message.topic.startswith("hermes/"):
                self._ack(message)
                if message.topic.endswith("/playFinished"):
                    self._play_finished(message.topic, bytes(message.payload))
                else:
                    self._frame(message.topic, bytes(message.payload))
            elif message.topic.endswith("/decoded"):
                self._ack(message)
                self._receipt(self.topics.site_of(message.topic), bytes(message.payload).decode("utf-8", "replace"))
            elif message.topic.endswith("/status"):
                self._ack(message)
                self._status(self.topics.site_of(message.topic), bytes(message.payload))
            else:
                self._segment(message)
        except Exception:  # never let one message end paho's thread
            _LOGGER.exception("a message on %s could not be handled", message.topic)
            self._ack(message)

    def _ack(self, message: Any) -> None:
        if message.qos:
            self._client.ack(message.mid, message.qos)

    def _complain(self, site: str, what: str, message: str) -> None:
        """Count a dropped message; one log line per site and kind of problem every ``protocol.LOG_EVERY_S``."""
        self.counts["dropped"] += 1
        self._complaints.warn((site, what), message)

    def _known(self, site: str, topic: str) -> bool:
        if self.settings.sites and site not in self.settings.sites:
            self._complain(site, "site", f"{topic}: unknown site {site!r} (plugins.{NAME}.sites); dropped")
            return False
        return True

    def _segment(self, message: Any) -> None:
        """A vcd satellite's segment → the recogniser; acknowledged when decoded (or dropped)."""
        topic, payload = message.topic, bytes(message.payload)
        site = self.topics.site_of(topic)
        limit = self.settings.max_segment_kb * 1024
        if not self._known(site, topic):
            self._ack(message)
            return
        if len(payload) > limit:
            self._complain(site, "size", f"{topic}: {len(payload)} bytes, over max_segment_kb "
                                         f"({self.settings.max_segment_kb}); dropped")
            self._ack(message)
            return
        try:
            samples = protocol.decode_segment(payload)
        except protocol.BadAudio as exc:
            self._complain(site, "audio", f"{topic}: {exc}; dropped")
            self._ack(message)
            return
        props = protocol.user_properties(message.properties)
        speech_end = protocol.speech_end_of(props)
        segment_id = props.get("id", "")
        self._sites_heard.add(site)
        with self._lock:
            seen = segment_id in self._decoded.get(site, {})
        if segment_id and seen:
            _LOGGER.info("segment %s from %s: a hub decoded it already; skipped", segment_id, site)
            self._client.publish(self.topics.decoded(site), segment_id, qos=1)  # the satellite may have missed it
            self._ack(message)
            return
        _LOGGER.debug("segment %s from %s: %.2f s", segment_id or "?", site, len(samples) / 16000)

        def decoded() -> None:  # the recogniser's thread, before the hooks: receipt first, then PUBACK
            if segment_id:
                self._receipt(site, segment_id)
                self._client.publish(self.topics.decoded(site), segment_id, qos=1)
            self._ack(message)

        if self.controls.recognize(samples, site, speech_end, done=decoded, speech=protocol.speech_of(props)):
            self.counts["segments"] += 1
        else:
            self._complain(site, "busy", f"{topic}: the recogniser is not taking segments (stopping or "
                                         f"full); segment {props.get('id', '?')} dropped")
            self._ack(message)

    def _receipt(self, site: str, segment_id: str) -> None:
        """Remember that a hub decoded ``segment_id`` of ``site`` (the last RECEIPTS_KEPT per site)."""
        with self._lock:
            recent = self._decoded.setdefault(site, collections.OrderedDict())
            recent[segment_id] = None
            while len(recent) > RECEIPTS_KEPT:
                recent.popitem(last=False)

    def _frame(self, topic: str, payload: bytes) -> None:
        site = self.topics.site_of(topic)
        if not self._known(site, topic):
            return
        if len(payload) > self.settings.max_segment_kb * 1024:
            self._complain(site, "size", f"{topic}: {len(payload)} bytes, over max_segment_kb; dropped")
            return
        with self._lock:
            new = site not in self._heard_at
            self._heard_at[site] = time.monotonic()  # heard, even while muted: it is there
        if new:
            _LOGGER.info("Rhasspy satellite %r streams audio to this hub%s", site,
                         "; its feedback goes to it as playBytes" if self.settings.hermes_play else "")
        if self._muted(site):
            self.counts["muted"] += 1  # its microphone hears the answer playing there
            return
        try:
            self._frames.put_nowait((site, payload))
        except queue.Full:
            self._complain(site, "queue", f"{topic}: the hub's VAD is not keeping up; audio frames dropped")

    # --- thread vcd-satellites-vad: Rhasspy streams ---

    def _run_vad(self) -> None:
        next_sweep = time.monotonic() + SWEEP_S
        while True:
            try:
                item = self._frames.get(timeout=SWEEP_S)
            except queue.Empty:
                item = _IDLE
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_S
                self._forget_quiet_sites()
            if item is None:
                return
            if item is _IDLE:
                continue
            site, payload = item
            if payload is None:  # a playBytes begins: what the site's VAD holds is dropped
                self._streams.pop(site, None)
                continue
            try:
                self._vad_frame(site, payload)
            except Exception:
                _LOGGER.exception("audio frame from site %r could not be segmented", site)

    def _forget_quiet_sites(self) -> None:
        """Rhasspy sites without a frame for ``site_timeout_s`` (unplugged, gone): drop their VAD, offer no speaker.

        A segment in progress is discarded, not decoded: cut off mid-command, its words could make another
        command ("set the living room to twenty" of "… twenty one degrees").
        """
        timeout_s = self.settings.site_timeout_s
        now = time.monotonic()
        with self._lock:
            quiet = [site for site, heard in self._heard_at.items() if now - heard >= timeout_s]
            for site in quiet:
                del self._heard_at[site]
        for site in quiet:
            stream = self._streams.pop(site, None)
            cut = stream is not None and stream.in_speech
            _LOGGER.info("Rhasspy satellite %r: no audio frame for %d s (site_timeout_s); forgotten until it sends "
                         "again%s", site, timeout_s, "; its segment in progress discarded" if cut else "")

    def _vad_frame(self, site: str, payload: bytes) -> None:
        topic = protocol.HERMES_FRAME.format(site=site)
        try:
            samples, rate_hz = protocol.decode_wav(payload)
        except protocol.BadAudio as exc:
            self._complain(site, "audio", f"{topic}: {exc}; dropped")
            return
        stream = self._streams.get(site)
        if stream is None or stream.rate_hz != rate_hz:
            presence = speech_presence_or_none(f"audio frames of {site}")  # measured as each segment grows
            stream = self._streams[site] = protocol.StreamSegmenter(self.vad, rate_hz, presence)
        self.counts["frames"] += 1
        for samples_16k, speech_end, speech in stream.process(samples):
            if samples_16k is not None:
                if self.controls.recognize(samples_16k, site, speech_end, speech=speech):
                    self.counts["segments"] += 1
                else:
                    self._complain(site, "busy", f"{topic}: the recogniser is not taking segments; one dropped")

    # --- feedback ---

    def feedback(self, site: str, kind: str, text: str | None) -> None:
        """Send ``vcd_feedback`` to the vcd satellite at ``site`` (sites that never sent a segment are not ours)."""
        if site not in self._sites_heard:
            return
        payload = json.dumps({"kind": kind, "text": text})
        self._client.publish(self.topics.feedback(site), payload, qos=1)

    # --- playBytes: the speaker this plugin offers for Rhasspy satellites ---

    def reaches(self, site: str) -> bool:
        """Whether :meth:`play` can play at ``site``: a Rhasspy satellite that sent a frame in the last
        ``site_timeout_s``, and the broker is up."""
        if not (self.settings.hermes_audio and self.settings.hermes_play):
            return False
        with self._lock:
            heard = self._heard_at.get(site)
        return (heard is not None and time.monotonic() - heard < self.settings.site_timeout_s
                and self._client.is_connected())

    def says_at(self, site: str) -> bool:
        """Whether :meth:`play` can play spoken answers at ``site``: a vcd satellite whose status is ``online``
        (it plays ``playBytes`` and answers ``playFinished``; its feedback it renders itself), the broker up.

        A site streaming audio frames (a ``protocol = "hermes"`` satellite) is :meth:`reaches`' (``hermes_play``).
        """
        with self._lock:
            online = site in self._online and site not in self._heard_at
        return online and self._client.is_connected()

    def _status(self, site: str, payload: bytes) -> None:
        """``PREFIX/satellite/SITE/status``: a vcd satellite online (retained) or offline (its exit, its last will)."""
        if self.settings.sites and site not in self.settings.sites:
            return  # not ours: its segments are refused, and that is logged there
        online = payload == protocol.ONLINE.encode()
        with self._lock:
            changed = (site in self._online) != online
            if online:
                self._online.add(site)
            else:
                self._online.discard(site)
        if changed:
            _LOGGER.info("vcd satellite %r is %s%s", site, "online" if online else "offline",
                         "; spoken answers for it play there as playBytes" if online else "")

    def play(self, site: str, samples: Any, rate_hz: int) -> bool:
        """``hermes/audioServer/SITE/playBytes/ID`` with ``samples`` as a 16-bit WAV; blocks until its
        ``playFinished`` (True), or for the sound's length + PLAY_FINISHED_MARGIN_S (False, one line).

        The site's audio frames are dropped from now until PLAY_GUARD_S after that, and its VAD starts afresh.
        After :meth:`stop`, nothing is sent (False at once).
        """
        if self._stopped.is_set():
            return False
        request_id = str(uuid.uuid4())
        finished = threading.Event()
        wait_s = len(samples) / rate_hz + PLAY_FINISHED_MARGIN_S
        with self._lock:
            self._plays[request_id] = finished
            self._playing[site] = self._playing.get(site, 0) + 1
        try:
            with contextlib.suppress(queue.Full):
                self._frames.put_nowait((site, None))
            topic = protocol.HERMES_PLAY.format(site=site, request_id=request_id)
            info = self._client.publish(topic, protocol.encode_wav(samples, rate_hz), qos=0)
            if info.rc != 0:
                self._complaints.warn((site, "play"), f"{topic}: not sent (paho error {info.rc}); the broker is away")
                return False
            self.counts["played"] += 1
            if not finished.wait(wait_s):
                self._complaints.warn((site, "play"), f"{topic}: no playFinished from {site!r} in {wait_s:.1f} s; going on")
                return False
            return not self._stopped.is_set()
        finally:
            with self._lock:
                self._plays.pop(request_id, None)
                self._playing[site] -= 1
                self._guard_until[site] = time.monotonic() + PLAY_GUARD_S

    def _muted(self, site: str) -> bool:
        with self._lock:
            return self._playing.get(site, 0) > 0 or time.monotonic() < self._guard_until.get(site, 0.0)

    def _play_finished(self, topic: str, payload: bytes) -> None:
        """``hermes/audioServer/SITE/playFinished``: the play it names is over (others' requests are not ours)."""
        site = self.topics.site_of(topic)
        try:
            request_id = protocol.parse_play_finished(payload)
        except ValueError as exc:
            self._complain(site, "playFinished", f"{topic}: {exc}; ignored")
            return
        with self._lock:
            finished = self._plays.get(request_id)
        if finished is not None:
            finished.set()


_hub: Hub | None = None


@vcd.hookimpl
def vcd_check_config(config: Any, config_path: Path | None) -> None:
    parse_settings(config)


@vcd.hookimpl
def vcd_startup(config: Any, config_path: Path | None, controls: vcd.PluginControls) -> None:
    """Validate ``[plugins.satellites]``, connect and subscribe (waiting up to 2 s for the broker)."""
    global _hub
    if _hub is not None:
        _hub.stop(0)
        _hub = None
    settings = parse_settings(config)
    if settings is None:
        _LOGGER.info("no [plugins.%s] table in %s; not hearing satellites", NAME, config.label)
        return
    _hub = Hub(settings, config.daemon.site, config.vad, controls)
    # the feedback plugin plays at Rhasspy satellites through it, and spoken answers at vcd satellites
    controls.offer_speaker(_hub.reaches, _hub.play, says_at=_hub.says_at)
    _hub.start()  # connects once the recogniser is loaded; the broker may be down: paho keeps trying


@vcd.hookimpl
def vcd_feedback(site: str, kind: str, text: str | None) -> None:
    if _hub is not None:
        _hub.feedback(site, kind, text)


@vcd.hookimpl
def vcd_shutdown(reason: str) -> None:
    global _hub
    if _hub is None:
        return
    hub, _hub = _hub, None
    delivered = hub.stop()
    _LOGGER.info("satellites: %d segments taken, %d messages dropped, %d sounds sent to satellites as playBytes; "
                 "offline %s (%s)", hub.counts["segments"], hub.counts["dropped"], hub.counts["played"],
                 "confirmed" if delivered else "not confirmed", reason)
