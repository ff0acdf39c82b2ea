"""The broker connection: a paho client, a bounded ordered queue of publishes, and the thread that sends them."""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from .settings import MqttSettings

_LOGGER = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
AVAILABILITY_QOS = 1  # "online"/"offline" and the last will are always confirmed


@dataclass
class Message:
    """One publish waiting in the queue."""

    topic: str
    payload: str
    qos: int
    retain: bool
    what: str  # for log lines: "intent HassTurnOn", "command 0 (HassTurnOn)" …


def describe_connect_error(exc: BaseException | None, host: str, tls: bool) -> str:
    """Why a connection attempt failed, in words a user can act on (the exception paho's reconnect raised)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        if "hostname" in detail.lower() or "ip address mismatch" in detail.lower():
            return f"TLS: the broker's certificate is not for {host!r} ({detail}); connect by the name it was issued to"
        return f"TLS: the broker's certificate is not trusted ({detail}); check tls.ca_file"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason in ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE") or (
            "wrong version" in str(exc)
        ):
            return f"TLS handshake failed ({reason}): is this port a TLS listener?"
        return f"TLS handshake failed: {reason}"
    if tls and isinstance(exc, ConnectionResetError | BrokenPipeError):
        return f"the broker hung up during the TLS handshake ({exc.strerror or exc}): is this port a TLS listener?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name {host!r} ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port?)"
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if exc is None:
        return "unknown reason"
    return f"{type(exc).__name__}: {exc}"


class Publisher:
    """A paho client plus a bounded, ordered queue of publishes and the thread that sends them.

    Messages leave the queue only when the broker has confirmed them (QoS 1/2:
    PUBACK/PUBCOMP; QoS 0: written to the socket).  A message handed to paho
    while the connection drops is re-sent by paho on reconnect (QoS ≥ 1) or by
    this class (QoS 0), so nothing is lost or, at QoS ≥ 1, duplicated by us.
    """

    def __init__(
        self,
        settings: MqttSettings,
        discovery: list[tuple[str, str]] | None = None,
        subscriptions: list[str] | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
    ):
        self.settings = settings
        self.discovery = discovery or []  # (topic, payload) published retained on every connect
        self.subscriptions = subscriptions or []  # subscribed (QoS 1) on every connect
        self.on_message = on_message  # called on paho's network thread with (topic, payload)
        self.subscribed = threading.Event()  # set when the broker has acknowledged the subscriptions
        self._queue: collections.deque[Message] = collections.deque()
        self._cond = threading.Condition()
        self._connected = False
        self._generation = 0  # incremented on every successful connect
        self._acked: set[int] = set()
        self._stopping = False
        self._flush_deadline = 0.0
        self._problem_logged: str | None = None  # the connection problem last logged (each is logged once)
        self.dropped = 0
        self.delivered = 0
        self._thread = threading.Thread(target=self._run, name="vcd-mqtt", daemon=True)
        self._network_started = False  # loop_start() was called
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
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _problem(self, level: int, message: str) -> None:
        """Log a connection problem once per change; paho retries with back-off, repeats go to debug."""
        if message != self._problem_logged:
            self._problem_logged = message
            _LOGGER.log(level, "%s", message)
        else:
            _LOGGER.debug("again: %s", message)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        s = self.settings
        if reason.is_failure:
            hint = ""
            if reason.value in (4, 5, 134, 135):  # bad user name or password / not authorised (v3.1.1, v5)
                hint = " (check username and password or password_file)"
            self._problem(logging.ERROR, f"broker {s.host}:{s.port} refused the connection: {reason}{hint}")
            return
        if self._problem_logged is not None:
            _LOGGER.info("connected to %s:%d as %r (the problem before: %s)", s.host, s.port, self.client_id,
                         self._problem_logged)
        else:
            _LOGGER.info("connected to %s:%d as %r", s.host, s.port, self.client_id)
        self._problem_logged = None
        if self.subscriptions:  # first: whoever reads "online" (a dialogue manager's tts/say) reaches vcd at once
            client.subscribe([(topic, 1) for topic in self.subscriptions])
        client.publish(s.availability_topic, ONLINE, qos=AVAILABILITY_QOS, retain=True)
        for topic, payload in self.discovery:
            client.publish(topic, payload, qos=AVAILABILITY_QOS, retain=True)
        with self._cond:
            self._connected = True
            self._generation += 1
            self._cond.notify_all()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` around the attempt: the exception is the reason
        s = self.settings
        reason = describe_connect_error(sys.exc_info()[1], s.host, s.tls is not None)
        level = logging.ERROR if reason.startswith(("TLS", "cannot resolve")) else logging.WARNING
        self._problem(
            level,
            f"cannot reach broker {s.host}:{s.port}: {reason}; retrying every {s.reconnect_min_s:g}.."
            f"{s.reconnect_max_s:g} s, commands are queued (up to {s.queue_size})",
        )

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            stopping = self._stopping
            self._cond.notify_all()
        if stopping:
            return
        s = self.settings
        if was_connected:
            self._problem(
                logging.WARNING,
                f"lost the connection to {s.host}:{s.port} ({reason}); reconnecting, commands are queued "
                f"(up to {s.queue_size})",
            )
        elif self._problem_logged is None or not self._problem_logged.startswith(f"broker {s.host}:{s.port} refused"):
            # closed before CONNACK: what a TLS listener does with plain MQTT, or a broker that drops us
            hint = "; is this a TLS port? (set [plugins.mqtt.tls])" if s.tls is None else ""
            self._problem(
                logging.ERROR,
                f"broker {s.host}:{s.port} closed the connection before accepting it ({reason}){hint}; retrying",
            )

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        refused = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            _LOGGER.error("broker %s:%d refused subscriptions: %s", self.settings.host, self.settings.port,
                          ", ".join(refused))
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: Any) -> None:
        if self.on_message is None:
            return
        try:
            self.on_message(message.topic, message.payload)
        except Exception:
            _LOGGER.exception("failed to handle a message on %s", message.topic)

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
        self._network_started = True
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected

    def health(self) -> str | None:
        """None while the client works (connected, or paho reconnecting by itself); else what is broken."""
        # paho forgets its network thread (``_thread``, no public API) when it ends, and only we stop it
        if self._network_started and not self._stopping and getattr(self.client, "_thread", False) is None:
            return f"the MQTT network thread has died (broker {self.settings.host}:{self.settings.port}); no reconnects"
        if self._thread.ident is not None and not self._thread.is_alive() and not self._stopping:
            return "the MQTT sender thread has died; commands are not published"
        return None

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
