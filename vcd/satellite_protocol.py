"""The satellite protocol on the MQTT broker: topics, the WAV payloads, and the MQTT 5 client both ends use.

vcd's own topics (``PREFIX`` is ``vcd`` unless configured, ``SITE`` the satellite's ``daemon.site``):

- ``PREFIX/satellite/SITE/segment`` — satellite → hubs, QoS 1: one speech segment the
  satellite's VAD closed, as a whole WAV file (16 kHz, mono, 16-bit).  MQTT 5 user properties
  ``id`` (``BOOT-N``: BOOT random per satellite process, N a counter) and ``speech_end``
  (``time.time()`` at the satellite when the segment closed).  Hubs share them through
  ``$share/GROUP/PREFIX/satellite/+/segment``.
- ``PREFIX/satellite/SITE/decoded`` — hub → satellite and every hub, QoS 1: the ``id`` of a segment
  a hub has decoded, published before its hooks run.  A satellite sends a segment again when no
  receipt came in ``satellite.retry_s``; hubs skip a segment another hub has receipted.
- ``PREFIX/satellite/SITE/status`` — retained ``online`` / ``offline`` (the satellite's last will).
- ``PREFIX/satellite/SITE/feedback`` — hub → satellite, QoS 1: JSON ``{"kind": …, "text": …}``
  (the ``vcd_feedback`` hook's arguments), played by the satellite's feedback plugins.
- ``PREFIX/hub/CLIENT_ID/status`` — retained ``online`` / ``offline`` of each hub process (its last
  will); a satellite holds its segments while no hub is online (``satellite.hold_s``).

Rhasspy's topics (rhasspy-hermes' ``rhasspyhermes.audioserver``):

- ``hermes/audioServer/SITE/audioFrame`` — a satellite's stream, each a short WAV file.
- ``hermes/audioServer/SITE/playBytes/REQUEST_ID`` — a WAV file to play at SITE (``AudioPlayBytes``).
- ``hermes/audioServer/SITE/playFinished`` — JSON ``{"id": REQUEST_ID, "siteId": SITE, "sessionId": …}``
  once it has been played (``AudioPlayFinished``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vcd.audio import to_mono_16k
from vcd.audio_format import SAMPLE_RATE_HZ

_LOGGER = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
MAX_WAV_CHANNELS = 8
HERMES_FRAME = "hermes/audioServer/{site}/audioFrame"
HERMES_FRAMES = "hermes/audioServer/+/audioFrame"
HERMES_PLAY = "hermes/audioServer/{site}/playBytes/{request_id}"
HERMES_PLAY_FINISHED = "hermes/audioServer/{site}/playFinished"
HERMES_PLAYS_FINISHED = "hermes/audioServer/+/playFinished"
MAX_PLAY_BYTES = 16 * 1024 * 1024  # a playBytes payload larger than this is not played (~6 min of 22 kHz mono)
MAX_PLAY_S = 120.0  # nor one longer than this: an answer or a chime, not a song


LOG_EVERY_S = 10.0  # the same complaint about a peer: at most one line per this many seconds


class Complaints:
    """Warnings at most one line per key every ``every_s``: a broken satellite or hub must not flood the log."""

    def __init__(self, logger: logging.Logger, every_s: float = LOG_EVERY_S) -> None:
        self.logger = logger
        self.every_s = every_s
        self._next: dict[Any, float] = {}

    def warn(self, key: Any, message: str) -> None:
        now = time.monotonic()
        if now >= self._next.get(key, 0.0):
            self._next[key] = now + self.every_s
            self.logger.warning("%s", message)


class BadAudio(ValueError):
    """A payload that is not a usable WAV file (the message says why, in a few words)."""


@dataclass(frozen=True)
class Topics:
    """vcd's satellite topics under ``prefix`` (see the module docstring)."""

    prefix: str = "vcd"

    def segment(self, site: str) -> str:
        return f"{self.prefix}/satellite/{site}/segment"

    def status(self, site: str) -> str:
        return f"{self.prefix}/satellite/{site}/status"

    def feedback(self, site: str) -> str:
        return f"{self.prefix}/satellite/{site}/feedback"

    def decoded(self, site: str) -> str:
        return f"{self.prefix}/satellite/{site}/decoded"

    @property
    def all_decoded(self) -> str:
        return f"{self.prefix}/satellite/+/decoded"

    def hub_status(self, client_id: str) -> str:
        return f"{self.prefix}/hub/{client_id}/status"

    @property
    def segments(self) -> str:
        """The filter of every satellite's segments."""
        return f"{self.prefix}/satellite/+/segment"

    @property
    def statuses(self) -> str:
        """The filter of every satellite's status."""
        return f"{self.prefix}/satellite/+/status"

    @property
    def hubs(self) -> str:
        return f"{self.prefix}/hub/+/status"

    def site_of(self, topic: str) -> str:
        """SITE of ``PREFIX/satellite/SITE/…`` or ``hermes/audioServer/SITE/…``."""
        parts = topic.split("/")
        return parts[-2] if len(parts) >= 2 else ""


def encode_wav(samples: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> bytes:
    """float32 mono samples in [-1, 1] → a 16-bit WAV file."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(pcm)
    return out.getvalue()


def decode_wav(payload: bytes) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV file → (float32 mono samples, its rate in Hz); :class:`BadAudio` when it is not one."""
    try:
        with wave.open(io.BytesIO(payload), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError, ValueError) as exc:
        raise BadAudio(f"not a WAV file ({exc})") from None
    if width != 2:
        raise BadAudio(f"{8 * width}-bit samples; only 16-bit PCM is read")
    if not 1 <= channels <= MAX_WAV_CHANNELS or not 8000 <= rate <= 192000:
        raise BadAudio(f"{channels} channels at {rate} Hz; 1..{MAX_WAV_CHANNELS} channels at 8000..192000 Hz read")
    usable = len(frames) // (2 * channels) * 2 * channels
    pcm = np.frombuffer(frames[:usable], dtype="<i2").reshape(-1, channels).astype(np.float32) / 32768.0
    return (pcm[:, 0] if channels == 1 else pcm.mean(axis=1)), rate


def decode_segment(payload: bytes) -> np.ndarray:
    """A segment's WAV → 16 kHz mono float32 samples; :class:`BadAudio` when unusable or empty."""
    samples, rate = decode_wav(payload)
    if not samples.size:
        raise BadAudio("the WAV file holds no samples")
    return samples if rate == SAMPLE_RATE_HZ else to_mono_16k(samples, rate)


def decode_play(payload: bytes) -> tuple[np.ndarray, int]:
    """A ``playBytes`` payload → (float32 mono samples, rate); :class:`BadAudio` when it is not one to play."""
    if len(payload) > MAX_PLAY_BYTES:
        raise BadAudio(f"{len(payload)} bytes, over {MAX_PLAY_BYTES} bytes")
    samples, rate = decode_wav(payload)
    if not samples.size:
        raise BadAudio("the WAV file holds no samples")
    if samples.size / rate > MAX_PLAY_S:
        raise BadAudio(f"{samples.size / rate:.0f} s long; at most {MAX_PLAY_S:g} s is played")
    return samples, rate


def play_topic_parts(topic: str) -> tuple[str, str] | None:
    """(SITE, REQUEST_ID) of ``hermes/audioServer/SITE/playBytes/REQUEST_ID``; None for another topic."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[:2] != ["hermes", "audioServer"] or parts[3] != "playBytes" or not parts[4]:
        return None
    return parts[2], parts[4]


def play_finished(request_id: str, site: str, session_id: str | None = None) -> bytes:
    """The ``playFinished`` payload (``rhasspyhermes.audioserver.AudioPlayFinished``, plus Snips' ``siteId``)."""
    return json.dumps({"id": request_id, "siteId": site, "sessionId": session_id}).encode("utf-8")


def parse_play_finished(payload: bytes) -> str:
    """The request ``id`` a ``playFinished`` payload reports; ValueError saying why it is malformed."""
    try:
        data = json.loads(payload or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ValueError('not a JSON object with a string "id"')
    return data["id"]


class StreamSegmenter:
    """One site's audio stream, blocks at any rate → 16 kHz speech segments, cut by the microphone's VAD.

    With a ``presence`` (:class:`vcd.presence.SpeechPresence`, its own), each segment's speech presence
    is measured as the segment grows.  Not thread-safe: one thread feeds it.
    """

    def __init__(self, vad: Any, rate_hz: int, presence: Any = None) -> None:
        from vcd.audio import StreamResampler
        from vcd.vad import Segmenter, SpeechEnd

        self.rate_hz = rate_hz
        self._resampler = StreamResampler(rate_hz)
        self._segmenter = Segmenter(vad, presence=presence)
        self._end = SpeechEnd

    @property
    def in_speech(self) -> bool:
        """True while a segment is open (speech began and has not ended yet)."""
        return self._segmenter.in_speech

    def process(self, samples: np.ndarray) -> list[tuple[np.ndarray | None, float, float | None]]:
        """The segments this block closed: (samples, ``time.time()`` at the close, speech presence or None);
        samples None when too short."""
        events = self._segmenter.process(self._resampler.process(samples))
        return [(e.samples if e.kept else None, e.timestamp, e.speech) for e in events if isinstance(e, self._end)]


def user_properties(properties: Any) -> dict[str, str]:
    """The MQTT 5 user properties of a received message, as a dict ({} when it has none)."""
    pairs = getattr(properties, "UserProperty", None) or []
    return {str(k): str(v) for k, v in pairs}


@dataclass(frozen=True)
class BrokerLogin:
    """How a satellite or a hub logs in to the broker: user name and password, TLS."""

    username: str = ""
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None  # None with tls: the system's CA store


def read_password(password_env: str, password_file: Path | None) -> str | None:
    """The password from ``$password_env`` or the first line of ``password_file``; ValueError saying why not."""
    if password_env:
        if password_env not in os.environ:
            raise ValueError(f"environment variable {password_env} is not set")
        return os.environ[password_env]
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").splitlines()[0] if password_file.stat().st_size else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{password_file}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return None


def mqtt5_client(client_id: str, will_topic: str, keepalive_s: int = 30, receive_maximum: int = 0,
                 manual_ack: bool = False, login: BrokerLogin | None = None) -> Any:
    """A paho MQTT 5 client with a retained ``offline`` last will on ``will_topic``; not connected yet.

    ``receive_maximum``: the most QoS 1 messages the broker may send before this client
    acknowledges them (0: the broker's default).  Connect with :func:`connect_async`.
    """
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    client.will_set(will_topic, OFFLINE, qos=1, retain=True)
    if login is not None and login.username:
        client.username_pw_set(login.username, login.password)
    if login is not None and login.tls:
        client.tls_set(ca_certs=str(login.ca_file) if login.ca_file else None)
    client.reconnect_delay_set(0.2, 5)
    client._vcd_keepalive = keepalive_s  # noqa: SLF001 - read by connect_async below
    client._vcd_receive_maximum = receive_maximum  # noqa: SLF001
    return client


def connect_async(client: Any, host: str, port: int) -> None:
    """Start connecting (clean start, session ending with the connection) and paho's network thread."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0  # a dead process's share goes back to the others at once
    if client._vcd_receive_maximum:  # noqa: SLF001
        properties.ReceiveMaximum = client._vcd_receive_maximum  # noqa: SLF001
    client.connect_async(host, port, keepalive=client._vcd_keepalive, clean_start=True,  # noqa: SLF001
                         properties=properties)
    client.loop_start()


def segment_properties(segment_id: int | str, speech_end: float, speech: float | None = None) -> Any:
    """The PUBLISH properties of a segment: user properties ``id``, ``speech_end`` and, when the satellite
    measured it, ``speech`` (the segment's speech presence, :mod:`vcd.presence`)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("id", str(segment_id)), ("speech_end", f"{speech_end:.3f}")]
    if speech is not None:
        properties.UserProperty.append(("speech", f"{speech:.6f}"))
    return properties


def speech_of(properties: dict[str, str]) -> float | None:
    """The ``speech`` user property (0..1), or None when it is missing or not such a number (the hub measures it)."""
    try:
        value = float(properties.get("speech", ""))
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def speech_end_of(properties: dict[str, str]) -> float:
    """The ``speech_end`` user property, or now when it is missing or not a number."""
    try:
        value = float(properties.get("speech_end", ""))
    except ValueError:
        return time.time()
    return value if np.isfinite(value) else time.time()
