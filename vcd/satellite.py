"""``vcd satellite``: microphone (or file, stdin) → VAD → each speech segment to the hubs over MQTT; feedback back.

The protocol (topics, payloads) is :mod:`vcd.satellite_protocol`'s, described in
docs/satellites.md.  Threads: the source's, the main thread (resampling, VAD, and the
place a wake-word stage goes: :meth:`Satellite._to_send`), ``vcd-satellite-send`` (one
segment at a time, each confirmed by the broker), ``vcd-satellite-play`` (a hub's Rhasspy
``playBytes`` → the speaker the feedback plugin offers, then ``playFinished``) and paho's network
thread (hub status, feedback → this satellite's plugins' ``vcd_feedback``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcd import satellite_protocol as protocol
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.config import Config
from vcd.controls import Controls
from vcd.daemon import Stopper
from vcd.notify import Notifier
from vcd.errors import ConfigError, ExitCode, VcdError, one_line
from vcd.plugins import PluginHost, load_plugins
from vcd.sources import END, BlockQueue, Source, StreamResampler, open_source
from vcd.presence import speech_presence_or_none
from vcd.vad import Segmenter, SpeechEnd, SpeechStart

_LOGGER = logging.getLogger(__name__)

DRAIN_END_S = 30.0  # end of a finite input: how long queued segments may take to reach the broker
PUBLISH_WAIT_S = 0.5  # the sender checks for a stop this often while the broker has not confirmed
FEEDBACK_KINDS = ("wake", "recognized", "not_understood")
MAX_TRIES = 3  # a segment is published at most this many times (retry_s apart) before it is given up
PLAY_QUEUE = 8  # playBytes waiting to be played; more are answered playFinished unplayed


@dataclass
class _Outgoing:
    segment_id: str
    wav: bytes
    speech_end: float
    queued_at: float  # time.monotonic()
    speech: float | None = None  # the segment's speech presence, measured as it was spoken
    tries: int = 0
    sent_at: float = 0.0  # time.monotonic() of the broker's last PUBACK


class Satellite:
    """One satellite: the audio in, segments out to the broker, feedback to the local plugins."""

    def __init__(self, config: Config, plugins: PluginHost, source: Source, stopper: Stopper | None = None,
                 controls: Controls | None = None) -> None:
        self.config = config
        self.settings = config.satellite
        self.site = config.daemon.site
        self.plugins = plugins
        self.source = source
        self.stopper = stopper or Stopper()
        self.controls = controls or Controls()  # the plugins' (their pauses: the feedback plugin's echo guard)
        self.topics = protocol.Topics(self.settings.topic_prefix)
        self.counts = {"segments": 0, "sent": 0, "dropped": 0, "frames": 0}
        self._blocks = BlockQueue(config.audio.queue_blocks)
        self._resampler = StreamResampler(source.rate_hz)
        # the speech presence of each segment, measured as it grows (the hubs' rejection rule may weigh it;
        # measured here it costs the hub nothing when the segment arrives)
        presence = speech_presence_or_none("satellite") if self.settings.protocol != "hermes" else None
        self._segmenter = Segmenter(config.vad, presence=presence)
        self._outbox: collections.deque[_Outgoing] = collections.deque()
        self._cond = threading.Condition()
        self._sending = False
        self._connected = threading.Event()
        self._hubs: set[str] = set()  # hub client ids whose status is "online"
        self._next_id = 0
        self._boot = secrets.token_hex(4)  # segment ids BOOT-N: unique across restarts of this satellite
        self._awaiting: dict[str, _Outgoing] = {}  # delivered to the broker, no hub receipt yet
        self._receipts: collections.deque[str] = collections.deque(maxlen=100)  # the latest receipts heard
        self._stop_sending = threading.Event()
        self._client = protocol.mqtt5_client(f"vcd-satellite-{self.site}", self.topics.status(self.site),
                                             self.settings.keepalive_s, login=broker_login(config))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._sender = threading.Thread(target=self._send_loop, name="vcd-satellite-send", daemon=True)
        self._play_queue: queue.Queue[tuple[str, np.ndarray, int] | None] = queue.Queue(maxsize=PLAY_QUEUE)
        self._player = threading.Thread(target=self._play_loop, name="vcd-satellite-play", daemon=True)
        self._complaints = protocol.Complaints(_LOGGER)  # about a hub's playBytes, one line per kind of problem
        self._play_topic = protocol.HERMES_PLAY.format(site=self.site, request_id="+")

    # --- paho's network thread ---

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            _LOGGER.warning("broker %s:%d refused the connection: %s", self.settings.host, self.settings.port, reason)
            return
        # subscribed first: the broker handles a client's packets in order, so whoever sees "online" (a hub
        # about to send an answer's playBytes) can reach this satellite at once
        client.subscribe([(self.topics.feedback(self.site), 1), (self.topics.hubs, 1),
                          (self.topics.decoded(self.site), 1), (self._play_topic, 0)])
        client.publish(self.topics.status(self.site), protocol.ONLINE, qos=1, retain=True)
        _LOGGER.info("connected to %s:%d as satellite %r", self.settings.host, self.settings.port, self.site)
        self._connected.set()
        with self._cond:
            self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()
        with self._cond:
            self._hubs.clear()  # learnt again from the retained statuses after reconnecting
        if not self._stop_sending.is_set():
            _LOGGER.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            if message.topic == self.topics.feedback(self.site):
                self._feedback(bytes(message.payload))
            elif message.topic == self.topics.decoded(self.site):
                segment_id = bytes(message.payload).decode("utf-8", "replace")
                with self._cond:
                    self._receipts.append(segment_id)  # may come before the sender has filed the segment
                    if self._awaiting.pop(segment_id, None) is not None:
                        self._cond.notify_all()
            elif (play := protocol.play_topic_parts(message.topic)) is not None:
                self._play_bytes(message.topic, play[1], bytes(message.payload))
            elif message.topic.startswith(f"{self.settings.topic_prefix}/hub/"):
                hub = self.topics.site_of(message.topic)
                with self._cond:
                    if bytes(message.payload) == protocol.ONLINE.encode():
                        self._hubs.add(hub)
                    else:
                        self._hubs.discard(hub)
                    self._cond.notify_all()
        except Exception:
            _LOGGER.exception("a message on %s could not be handled", message.topic)

    def _feedback(self, payload: bytes) -> None:
        """A hub's feedback → ``vcd_feedback`` of this satellite's plugins (one line and nothing else when malformed)."""
        try:
            data = json.loads(payload)
            kind, text = data["kind"], data.get("text")
            if kind not in FEEDBACK_KINDS or not (text is None or isinstance(text, str)):
                raise ValueError(f"kind {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            _LOGGER.warning("feedback: not {\"kind\": …, \"text\": …} (%s); ignored", exc)
            return
        self.plugins.dispatch("vcd_feedback", site=self.site, kind=kind, text=text)

    def _play_bytes(self, topic: str, request_id: str, payload: bytes) -> None:
        """A hub's (Rhasspy's, or vcd's for a hermes satellite) ``playBytes`` → the player thread, checked first."""
        try:
            samples, rate_hz = protocol.decode_play(payload)
        except protocol.BadAudio as exc:
            self._complaints.warn(str(exc), f"{topic}: not played: {exc}")  # one line per problem, not per message
            self._finished(request_id)
            return
        try:
            self._play_queue.put_nowait((request_id, samples, rate_hz))
        except queue.Full:
            self._complaints.warn("full", f"{topic}: not played: {PLAY_QUEUE} sounds wait already")
            self._finished(request_id)

    def _finished(self, request_id: str) -> None:
        self._client.publish(protocol.HERMES_PLAY_FINISHED.format(site=self.site),
                             protocol.play_finished(request_id, self.site), qos=0)

    # --- the player thread ---

    def _play_loop(self) -> None:
        while (item := self._play_queue.get()) is not None:
            request_id, samples, rate_hz = item
            try:
                if not self.controls.play_at(self.site, samples, rate_hz):
                    self._complaints.warn("speaker", f"playBytes {request_id}: no plugin plays sound here (the feedback "
                                          "plugin, with an output device); answered playFinished unplayed")
            finally:
                self._finished(request_id)

    # --- the sender thread ---

    def _hub_ready(self, item: _Outgoing) -> bool:
        """Send when a hub is online, or after ``hold_s`` (a hub that announces nothing)."""
        return bool(self._hubs) or time.monotonic() - item.queued_at >= self.settings.hold_s

    def _retry_unreceipted(self) -> None:
        """Segments no hub receipted in ``retry_s`` go to the front of the queue again (with ``_cond`` held)."""
        retry_s = self.settings.retry_s
        if not retry_s:
            self._awaiting.clear()
            return
        now = time.monotonic()
        for key, item in list(self._awaiting.items()):
            if now - item.sent_at < retry_s:
                continue
            del self._awaiting[key]
            if item.tries >= MAX_TRIES:
                self.counts["dropped"] += 1
                _LOGGER.warning("segment %s: no hub decoded it after %d tries; given up", key, item.tries)
            else:
                _LOGGER.info("segment %s: no hub decoded it in %.0f s; sending it again", key, retry_s)
                self._outbox.appendleft(item)

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    self._retry_unreceipted()
                    if self._outbox and self._connected.is_set() and self._hub_ready(self._outbox[0]):
                        break
                    if self._stop_sending.is_set():
                        return
                    self._cond.wait(0.2)
                item = self._outbox[0]
                self._sending = True
            delivered = False
            try:
                delivered = self._publish(item)
            finally:
                with self._cond:
                    if delivered and self._outbox and self._outbox[0] is item:
                        self._outbox.popleft()
                        item.tries += 1
                        item.sent_at = time.monotonic()
                        if self.settings.retry_s and item.segment_id not in self._receipts:
                            self._awaiting[item.segment_id] = item
                    self._sending = False
                    self._cond.notify_all()

    def _publish(self, item: _Outgoing) -> bool:
        """Publish one segment at QoS 1 and wait for PUBACK (paho re-sends it after a reconnect)."""
        properties = protocol.segment_properties(item.segment_id, item.speech_end, item.speech)
        info = self._client.publish(self.topics.segment(self.site), item.wav, qos=1, properties=properties)
        while not info.is_published():
            if self._stop_sending.is_set():
                return False
            try:
                info.wait_for_publish(PUBLISH_WAIT_S)
            except (RuntimeError, ValueError):  # paho did not take it (the connection dropped): again later
                self._stop_sending.wait(PUBLISH_WAIT_S)  # a copy paho re-sends anyway is skipped by the hubs
                return False
        self.counts["sent"] += 1
        _LOGGER.debug("segment %s delivered (%d bytes)", item.segment_id, len(item.wav))
        return True

    # --- the main thread ---

    def _to_send(self, event: SpeechEnd) -> bool:
        """Whether a closed segment goes to the hubs: the seam for a wake-word stage (``[wake]``).

        Today every segment the VAD keeps is sent; a wake stage decides here (or gates
        the blocks before the VAD) which speech follows a wake word.
        """
        return event.kept

    def _queue(self, samples: np.ndarray, speech_end: float, speech: float | None) -> None:
        item = _Outgoing(f"{self._boot}-{self._next_id}", protocol.encode_wav(samples), speech_end, time.monotonic(),
                         speech=speech)
        self._next_id += 1
        self.counts["segments"] += 1
        with self._cond:
            if len(self._outbox) >= self.settings.queue_segments:
                index = 1 if self._sending and len(self._outbox) > 1 else 0  # not the one being published
                dropped = self._outbox[index]
                del self._outbox[index]
                self.counts["dropped"] += 1
                _LOGGER.warning("%d segments wait for the broker; segment %s dropped", len(self._outbox) + 1,
                                dropped.segment_id)
            self._outbox.append(item)
            self._cond.notify_all()

    def _step(self, samples: np.ndarray, last: bool = False) -> None:
        """16 kHz audio → the VAD (vcd protocol) or straight to the broker as audio frames (hermes)."""
        if self.settings.protocol == "hermes":
            if samples.size:
                self.counts["frames"] += 1
                self._client.publish(protocol.HERMES_FRAME.format(site=self.site), protocol.encode_wav(samples))
            return
        events = self._segmenter.process(samples) + (self._segmenter.flush() if last else [])
        for event in events:
            if isinstance(event, SpeechStart):
                self.plugins.dispatch("vcd_speech_started", site=self.site, timestamp=event.timestamp)
                continue
            self.plugins.dispatch("vcd_speech_ended", site=self.site, timestamp=event.timestamp,
                                  audio_s=round(event.audio_s, 3))
            paused = self.controls.paused_by()
            if paused and event.kept:  # the microphone heard this satellite's own feedback playing
                _LOGGER.info("segment not sent: %.2f s of speech while paused (%s)", event.audio_s, paused)
                continue
            if self._to_send(event):
                _LOGGER.info("segment %d: %.2f s of speech to the hubs", self._next_id, event.audio_s)
                self._queue(event.samples, event.timestamp, event.speech)

    def run(self, notifier: Notifier | None = None) -> int:
        """Until a signal or the end of a finite input (then until the queued segments are delivered)."""
        notifier = notifier or Notifier()
        protocol.connect_async(self._client, self.settings.host, self.settings.port)
        self._sender.start()
        self._player.start()
        self.source.start(self._blocks)
        _LOGGER.info("listening on %s; satellite %r sends %s to %s:%d", self.source.description, self.site,
                     "segments" if self.settings.protocol == "vcd" else "Rhasspy audio frames",
                     self.settings.host, self.settings.port)
        notifier.notify("READY=1", f"STATUS=Satellite {self.site}: listening on {self.source.description}")
        ended = False
        while not self.stopper.event.is_set():
            try:
                block = self._blocks.get(timeout=0.2)
            except queue.Empty:
                if self.source.live and not self.source.is_alive():
                    break
                continue
            if block is END:
                self._step(self._resampler.flush(), last=True)
                ended = self.source.error is None
                break
            self._step(self._resampler.process(block))
        notifier.notify("STOPPING=1")
        return self._shutdown(ended)

    def _shutdown(self, ended: bool) -> int:
        reason = "end of input" if ended else (self.stopper.reason or "stopped")
        _LOGGER.info("stopping (%s)", reason)
        self.source.stop()
        deadline = time.monotonic() + (DRAIN_END_S if ended else 0.5)
        with self._cond:  # end of input: until every segment is decoded by a hub (or at least delivered)
            while (self._outbox or self._sending or self._awaiting) and time.monotonic() < deadline:
                self._cond.wait(0.1)
            left = len(self._outbox) + self._sending
            unreceipted = len(self._awaiting)
        self._stop_sending.set()
        self._sender.join(timeout=1.0)
        with contextlib.suppress(queue.Full):
            self._play_queue.put_nowait(None)
        self._player.join(timeout=1.0)
        info = self._client.publish(self.topics.status(self.site), protocol.OFFLINE, qos=1, retain=True)
        try:
            info.wait_for_publish(1.0)
        except RuntimeError:
            pass
        self._client.disconnect()
        self._client.loop_stop()
        self.plugins.drain(1.0)
        self.plugins.shutdown(reason)
        c = self.counts
        _LOGGER.info("stopped: %d segments, %d delivered, %d dropped, %d audio frames", c["segments"], c["sent"],
                     c["dropped"] + left, c["frames"])
        if self.source.error is not None:
            raise VcdError(f"stopped after a failure: {self.source.error}")
        if ended and unreceipted:
            _LOGGER.warning("%d segments reached the broker but no hub reported them decoded", unreceipted)
        if ended and left:
            raise VcdError(f"{left} segments were not delivered to the broker at "
                           f"{self.settings.host}:{self.settings.port} within {DRAIN_END_S:.0f} s")
        return ExitCode.OK


def broker_login(config: Config) -> protocol.BrokerLogin:
    """``[satellite]``'s login to the broker, the password read now; ConfigError naming the key when it cannot be."""
    s = config.satellite
    try:
        password = protocol.read_password(s.password_env, s.password_file)
    except ValueError as exc:
        key = "password_env" if s.password_env else "password_file"
        raise ConfigError(one_line(f"{config.label}: satellite.{key}: {exc}")) from None
    return protocol.BrokerLogin(s.username, password, s.tls, s.ca_file)


def run_satellite(config: Config) -> int:
    """``vcd satellite``: load the feedback plugins, open the audio, run until stopped."""
    broker_login(config)  # a password that cannot be read stops here, before anything starts
    with Stopper() as stopper:
        plugins = load_plugins(config)
        controls = Controls()
        plugins.startup(config, controls)
        try:
            source = open_source(config.audio)
        except BaseException as exc:
            plugins.shutdown(f"error: {exc}")
            raise
        if source.rate_hz != SAMPLE_RATE_HZ:
            _LOGGER.info("audio at %d Hz is resampled to %d Hz", source.rate_hz, SAMPLE_RATE_HZ)
        plugins.start_workers()
        return Satellite(config, plugins, source, stopper, controls).run()
