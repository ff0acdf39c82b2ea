"""``vcd wyoming``: vcd as a Wyoming speech-to-text service, the kind Home Assistant adds as a local STT engine.

The protocol and its event types come from the ``wyoming`` package; this module adds what
a closed-grammar recogniser needs around them:

* ``describe`` → ``info`` with one ASR program (``vcd``), one model (the acoustic model's
  file name) and the grammar's language;
* ``transcribe`` (optional), ``audio-start``, ``audio-chunk`` × N, ``audio-stop`` →
  ``transcript`` with the recognised sentence, or an empty text when the speech is not one
  of the sentences (rejected);
* with ``intents`` on (``vcd wyoming --intents``): ``recognize`` (Wyoming's intent request) and
  ``transcript`` (what Home Assistant's Wyoming conversation agent sends) → ``intent`` with the
  intent and its slots as entities, or ``not-recognized``; the text is matched by hassil against
  the same sentences the recogniser was compiled from;
* ``ping`` → ``pong``; other event types are ignored, as Wyoming servers are expected to.

Audio of any rate, sample width (8, 16, 24 or 32-bit) and channel count is accepted and
converted to 16 kHz mono with :func:`vcd.audio.to_mono_16k`.  One transcription may hold
at most ``max_audio_s`` seconds; past that, and on any malformed event or audio, the
client gets an ``error`` event, the server logs one line and closes that connection, and
goes on serving the others.  The recogniser is not thread-safe, so one thread
(``vcd-asr``) owns it and decodes the transcriptions of all clients in turn, while the
event loop keeps answering ``describe`` and reading audio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import os
import signal
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info, IntentModel, IntentProgram
from wyoming.intent import Entity, Intent, NotRecognized, Recognize
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncServer

from vcd import __version__
from vcd.audio import MAX_CHANNELS  # the same bound as audio files
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.errors import ExitCode, UsageError, VcdError

_LOGGER = logging.getLogger(__name__)

DEFAULT_URI = "tcp://0.0.0.0:10300"
DEFAULT_MAX_AUDIO_S = 30.0  # one transcription longer than this is refused (an Assist command takes a few seconds)

# Bounds on one event, so that a broken or hostile client cannot make the server buffer without limit.
MAX_HEADER_BYTES = 64 * 1024  # the JSON line (asyncio's default line limit)
MAX_DATA_BYTES = 64 * 1024  # the JSON data block after it
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # the binary payload (4 MiB: over 10 s of 48 kHz 32-bit stereo)
LINGER_S = 1.0  # after an error event, what the client still sends is read and dropped this long before closing
RATE_RANGE_HZ = (1000, 384000)
SAMPLE_WIDTHS = (1, 2, 3, 4)  # bytes: unsigned 8-bit, signed 16, 24 and 32-bit little-endian PCM

ATTRIBUTION = Attribution(name="vcd", url="")  # vcd has no public home page to point to
NOT_RECOGNIZED_TEXT = "Sorry, I couldn't understand that"


class ProtocolError(Exception):
    """A client sent something the server cannot use; ``code`` goes into the ``error`` event."""

    def __init__(self, message: str, code: str = "bad-event") -> None:
        super().__init__(message)
        self.code = code


# --- reading events ---------------------------------------------------------------------------------


def _length(header: dict, key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"event {header['type']!r}: {key} must be a non-negative integer (got {value!r})")
    if value > limit:
        raise ProtocolError(f"event {header['type']!r}: {key} {value} is over the limit of {limit} bytes",
                            code="too-large")
    return value


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next Wyoming event from ``reader``; None when the client closed the connection between events.

    The same wire format as :func:`wyoming.event.async_read_event` (a JSON header line, then
    ``data_length`` bytes of JSON data and ``payload_length`` bytes of payload), read strictly:
    that function returns None both at the end of the stream and for a malformed event, and
    reads a payload of any size.  Here a malformed or oversized event raises
    :class:`ProtocolError` saying what was wrong.
    """
    try:
        line = await reader.readline()
    except ValueError:  # asyncio.LimitOverrunError is turned into ValueError by readline()
        raise ProtocolError(f"event header longer than {MAX_HEADER_BYTES} bytes", code="too-large") from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ProtocolError("connection closed in the middle of an event header")
    try:
        header = json.loads(line)
    except ValueError:
        raise ProtocolError(f"event header is not JSON: {line[:60]!r}") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str) or not header["type"]:
        raise ProtocolError(f"event header has no 'type': {line[:60]!r}")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError(f"event {header['type']!r}: data must be a JSON object")
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    try:
        if data_length:
            try:
                more = json.loads(await reader.readexactly(data_length))
            except ValueError:
                raise ProtocolError(f"event {header['type']!r}: its data block is not JSON") from None
            if not isinstance(more, dict):
                raise ProtocolError(f"event {header['type']!r}: data must be a JSON object")
            data = {**data, **more}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        raise ProtocolError(f"connection closed in the middle of event {header['type']!r}") from None
    return Event(type=header["type"], data=data, payload=payload)


# --- audio -------------------------------------------------------------------------------------------


def check_format(rate: Any, width: Any, channels: Any) -> tuple[int, int, int]:
    """``(rate, width, channels)`` as ints, or :class:`ProtocolError` naming the value out of range."""
    for name, value in (("rate", rate), ("width", width), ("channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtocolError(f"audio {name} must be an integer (got {value!r})", code="bad-audio")
    if not RATE_RANGE_HZ[0] <= rate <= RATE_RANGE_HZ[1]:
        raise ProtocolError(f"audio rate {rate} Hz is outside {RATE_RANGE_HZ[0]}–{RATE_RANGE_HZ[1]} Hz",
                            code="bad-audio")
    if width not in SAMPLE_WIDTHS:
        raise ProtocolError(f"audio width {width} bytes is not one of {SAMPLE_WIDTHS}", code="bad-audio")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ProtocolError(f"audio channels {channels} is outside 1–{MAX_CHANNELS}", code="bad-audio")
    return rate, width, channels


def pcm_to_float(payload: bytes, width: int, channels: int) -> np.ndarray:
    """Little-endian PCM ``payload`` (8-bit unsigned, 16/24/32-bit signed) as float32 mono in [-1, 1]."""
    frame = width * channels
    if len(payload) % frame:
        raise ProtocolError(f"audio chunk of {len(payload)} bytes is not a whole number of "
                            f"{width}-byte × {channels}-channel frames", code="bad-audio")
    raw = np.frombuffer(payload, dtype=np.uint8)
    if width == 1:
        samples = (raw.astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        triples = raw.reshape(-1, 3).astype(np.int32)
        value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        samples = (np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)).astype(np.float32)
    else:
        dtype = "<i2" if width == 2 else "<i4"
        samples = np.frombuffer(payload, dtype=dtype).astype(np.float32) / float(1 << (8 * width - 1))
    return samples.reshape(-1, channels).mean(axis=1, dtype=np.float32) if channels > 1 else samples


@dataclass
class AudioBuffer:
    """The audio of one transcription, kept as mono float32 at the client's rate(s), at most ``max_s`` seconds."""

    max_s: float
    pieces: list[tuple[int, np.ndarray]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, payload: bytes, rate: int, width: int, channels: int) -> None:
        samples = pcm_to_float(payload, width, channels)
        seconds = samples.size / rate
        if self.seconds + seconds > self.max_s:
            raise ProtocolError(f"audio longer than {self.max_s:g} s (the --max-audio-s limit); transcription refused",
                                code="audio-too-long")
        self.seconds += seconds
        if self.pieces and self.pieces[-1][0] == rate:
            self.pieces[-1] = (rate, np.concatenate([self.pieces[-1][1], samples]))
        else:
            self.pieces.append((rate, samples))

    @property
    def as_it_came(self) -> np.ndarray | None:
        """All the audio so far when it came as one run at 16 kHz (mono float32, unresampled); else None."""
        return self.pieces[0][1] if len(self.pieces) == 1 and self.pieces[0][0] == SAMPLE_RATE_HZ else None

    def samples_16k(self) -> np.ndarray:
        """All the audio at 16 kHz: each run of one rate resampled as a whole (no seams inside a run)."""
        from vcd.audio import to_mono_16k

        if not self.pieces:
            return np.zeros(0, np.float32)
        return np.concatenate([to_mono_16k(samples, rate) for rate, samples in self.pieces])


# --- the service -------------------------------------------------------------------------------------


class Service:
    """The recogniser, the thread that owns it, and what ``describe`` answers."""

    def __init__(self, recognizer: Any, model_path: Path | None, max_audio_s: float = DEFAULT_MAX_AUDIO_S,
                 intents: bool = False) -> None:
        self.recognizer = recognizer
        self.max_audio_s = float(max_audio_s)
        self.intents = intents
        self.language = str(getattr(recognizer.intents, "language", None) or "en")
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vcd-asr")
        # the connections' speech presence, off the event loop: describe and other clients are answered meanwhile
        self.presence_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vcd-presence")
        model_name = model_path.stem if model_path else "default"
        self.info = Info(asr=[AsrProgram(
            name="vcd",
            description="vcd: offline voice commands, recognised against a closed grammar of sentences",
            attribution=ATTRIBUTION,
            installed=True,
            version=__version__,
            models=[AsrModel(
                name=model_name,
                description=f"vcd acoustic model {model_name!r} with {len(recognizer.intents.intents)} intents",
                attribution=ATTRIBUTION,
                installed=True,
                version=__version__,
                languages=[self.language],
            )],
            supports_transcript_streaming=False,
            requires_external_vad=True,  # the client decides when the command ends (audio-stop)
            # with a denoiser of its own (the model's front end), vcd wants the audio as the microphone gave it
            prefers_noise_reduction_enabled=recognizer.front_end is None,
        )])
        if intents:
            self.info.intent = [IntentProgram(
                name="vcd",
                description="vcd: intents of its sentences (hassil templates), from text",
                attribution=ATTRIBUTION,
                installed=True,
                version=__version__,
                models=[IntentModel(
                    name="sentences",
                    description=f"{len(recognizer.intents.intents)} intents",
                    attribution=ATTRIBUTION,
                    installed=True,
                    version=__version__,
                    languages=[self.language],
                )],
            )]

    def presence(self) -> Any:
        """A speech presence of a connection's own (:mod:`vcd.presence`), when the recogniser's rule weighs it."""
        if getattr(self.recognizer, "presence", None) is None:
            return None
        from vcd.presence import SpeechPresence

        return SpeechPresence()

    def denoiser(self) -> Any:
        """A :class:`vcd.denoise.SegmentDenoiser` of a connection's own, when the recogniser looks again at a
        rejected sentence denoised (``recognizer.denoised_view``)."""
        view = getattr(self.recognizer, "view", None)
        if view is None:
            return None
        from vcd.denoise import SegmentDenoiser

        return SegmentDenoiser(view)

    async def measure(self, presence: Any, samples: np.ndarray) -> Any:
        """``presence(samples)`` on the presence thread (about 1 ms per 32 ms of new audio); a connection's
        :meth:`denoiser` runs there too."""
        return await asyncio.get_running_loop().run_in_executor(self.presence_executor, presence, samples)

    async def recognize(self, samples: np.ndarray, speech: float | None = None,
                        denoised: np.ndarray | None = None) -> Any:
        """Decode 16 kHz ``samples`` on the recogniser's thread; other clients are served meanwhile.

        ``speech``: the samples' speech presence, measured as they came (else the recogniser measures it);
        ``denoised``: the samples through the view's denoiser, as they came (else the denoised view makes it)."""
        known = ({} if speech is None else {"speech": speech}) | ({} if denoised is None else {"denoised": denoised})
        decode = functools.partial(self.recognizer.recognize, samples, **known)
        return await asyncio.get_running_loop().run_in_executor(self.executor, decode)

    async def understand(self, text: str) -> tuple[str, dict[str, Any]] | None:
        """(intent, slots) of ``text`` by hassil against the recogniser's sentences, or None; on the same thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._understand, text)

    def _understand(self, text: str) -> tuple[str, dict[str, Any]] | None:
        from hassil import recognize

        result = recognize(text, self.recognizer.intents)
        if result is None:
            return None
        return result.intent.name, {name: entity.value for name, entity in result.entities.items()}


def _parse(kind: Any, event: Event) -> Any:
    """``kind.from_event(event)``; a known event type with missing or mistyped fields is a :class:`ProtocolError`."""
    try:
        return kind.from_event(event)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"malformed {event.type!r} event ({type(exc).__name__}: {exc})") from None


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "unix socket")


class WyomingHandler(AsyncEventHandler):
    """One client connection: any number of ``describe`` and transcriptions, one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: Service) -> None:
        super().__init__(reader, writer)
        self.service = service
        self.peer = _peer_name(writer)
        self.audio: AudioBuffer | None = None
        # measures the speech presence while 16 kHz mono audio arrives, so that audio-stop leaves only the decode
        self.presence = service.presence()
        self.denoiser = service.denoiser()  # and denoises it for the denoised view

    async def run(self) -> None:
        """Read events until the client leaves; a malformed one is logged, answered with ``error``, and ends it."""
        self._is_running = True
        try:
            while self._is_running:
                event = await read_event(self.reader)
                if event is None or not await self.handle_event(event):
                    break
        except ProtocolError as exc:
            _LOGGER.warning("wyoming: client %s: %s; closing the connection", self.peer, exc)
            with suppress(OSError, RuntimeError):
                await self.write_event(Error(text=str(exc), code=exc.code).event())
                await self._linger()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            _LOGGER.info("wyoming: client %s: connection lost (%s)", self.peer, type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - one client's failure must not reach the server
            _LOGGER.exception("wyoming: client %s: %s: %s; closing the connection", self.peer, type(exc).__name__, exc)
            with suppress(OSError, RuntimeError):
                await self.write_event(Error(text=f"vcd failed: {type(exc).__name__}: {exc}", code="failed").event())
        finally:
            self.writer.close()
            with suppress(OSError, RuntimeError):
                await self.writer.wait_closed()

    async def _linger(self) -> None:
        """Read and drop what the client is still sending (at most :data:`LINGER_S`, :data:`MAX_PAYLOAD_BYTES`).

        Closing a socket with unread data sends a reset, which can destroy the error event on its way
        to a client that is still streaming audio; draining first lets it arrive.
        """
        dropped = 0

        async def drain() -> None:
            nonlocal dropped
            while dropped < MAX_PAYLOAD_BYTES and (chunk := await self.reader.read(65536)):
                dropped += len(chunk)

        with suppress(TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            await asyncio.wait_for(drain(), LINGER_S)

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self.service.info.event())
        elif Transcribe.is_type(event.type):
            language = _parse(Transcribe, event).language
            asked = language.replace("_", "-").split("-")[0] if isinstance(language, str) else None
            if asked and asked != self.service.language.split("-")[0]:
                _LOGGER.info("wyoming: client %s asks for language %r; the grammar is %r",
                             self.peer, language, self.service.language)
            self.audio = None
        elif AudioStart.is_type(event.type):
            start = _parse(AudioStart, event)
            check_format(start.rate, start.width, start.channels)
            self.audio = AudioBuffer(self.service.max_audio_s)
        elif AudioChunk.is_type(event.type):
            chunk = _parse(AudioChunk, event)
            rate, width, channels = check_format(chunk.rate, chunk.width, chunk.channels)
            if self.audio is None:  # no audio-start: the chunk's own format starts the stream
                self.audio = AudioBuffer(self.service.max_audio_s)
            self.audio.add(chunk.audio or b"", rate, width, channels)
            if self.presence is not None and self.audio.as_it_came is not None:
                await self.service.measure(self.presence, self.audio.as_it_came)
            if self.denoiser is not None and self.audio.as_it_came is not None:
                await self.service.measure(self.denoiser.feed, self.audio.as_it_came)
        elif AudioStop.is_type(event.type):
            await self._transcribe()
        elif self.service.intents and (Recognize.is_type(event.type) or Transcript.is_type(event.type)):
            kind = Recognize if Recognize.is_type(event.type) else Transcript
            await self._intent(_parse(kind, event).text)
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=_parse(Ping, event).text).event())
        else:
            _LOGGER.debug("wyoming: client %s: ignoring a %r event", self.peer, event.type)
        return True

    async def _transcribe(self) -> None:
        audio, self.audio = self.audio, None
        samples = audio.samples_16k() if audio is not None else np.zeros(0, np.float32)
        stopped = time.perf_counter()
        speech = None
        if self.presence is not None and audio is not None and audio.as_it_came is not None:
            speech = await self.service.measure(self.presence, samples)  # the audio as it came: measured already
        denoised = None
        if self.denoiser is not None and audio is not None and audio.as_it_came is not None:
            denoised = await self.service.measure(self.denoiser, samples)  # the same: only the flush is left
        result = await self.service.recognize(samples, speech, denoised)
        if result.recognized:
            _LOGGER.info("wyoming: client %s: %.2f s → %r (%s, confidence %.2f, %.0f ms)", self.peer,
                         samples.size / SAMPLE_RATE_HZ, result.text, result.intent, result.confidence,
                         (time.perf_counter() - stopped) * 1000.0)
        else:
            _LOGGER.info("wyoming: client %s: %.2f s → not a command (best %r, confidence %.2f, %.0f ms)",
                         self.peer, samples.size / SAMPLE_RATE_HZ, result.best_text, result.confidence,
                         (time.perf_counter() - stopped) * 1000.0)
        await self.write_event(Transcript(text=result.text, language=self.service.language).event())


    async def _intent(self, text: Any) -> None:
        if not isinstance(text, str):
            raise ProtocolError(f"the text to recognise must be a string (got {text!r})")
        meaning = await self.service.understand(text)
        if meaning is None:
            _LOGGER.info("wyoming: client %s: text %r → no intent", self.peer, text)
            await self.write_event(NotRecognized(text=NOT_RECOGNIZED_TEXT).event())
            return
        intent, slots = meaning
        _LOGGER.info("wyoming: client %s: text %r → %s %s", self.peer, text, intent, slots)
        entities = [Entity(name, value) for name, value in slots.items()]
        await self.write_event(Intent(name=intent, entities=entities).event())


# --- serving -----------------------------------------------------------------------------------------


def make_server(uri: str) -> AsyncServer:
    """The server for ``uri`` (``tcp://HOST:PORT`` or ``unix:///PATH``); :class:`UsageError` for anything else."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("tcp", "unix"):
        raise UsageError(f"--uri {uri}: must be tcp://HOST:PORT or unix:///PATH")
    try:
        return AsyncServer.from_uri(uri)
    except ValueError as exc:
        raise UsageError(f"--uri {uri}: {exc}") from None


def serve(config: Any, uri: str = DEFAULT_URI, max_audio_s: float = DEFAULT_MAX_AUDIO_S, intents: bool = False) -> int:
    """``vcd wyoming``: load the recogniser as ``vcd run`` does, then serve ``uri`` until SIGTERM/SIGINT (exit 0).

    ``intents``: also answer ``recognize`` / ``transcript`` with the intent of the text.
    """
    from vcd.daemon import load_recognizer
    from vcd.notify import Notifier
    from vcd.recognizer import runs_with

    if not max_audio_s > 0:
        raise UsageError(f"--max-audio-s must be above 0 (got {max_audio_s})")
    server = make_server(uri)
    notifier = Notifier()
    notifier.notify("STATUS=Loading the recogniser")
    started = time.monotonic()
    recognizer = load_recognizer(config)
    _LOGGER.info("recogniser loaded in %.1f s (%s)", time.monotonic() - started, runs_with(recognizer))
    service = Service(recognizer, config.recognizer.model, max_audio_s, intents)
    try:
        asyncio.run(_serve(server, service, uri, notifier))
    finally:
        service.executor.shutdown(wait=True, cancel_futures=True)
        service.presence_executor.shutdown(wait=True, cancel_futures=True)
    return ExitCode.OK


async def _serve(server: AsyncServer, service: Service, uri: str, notifier: Any) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def request_stop(signum: int) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            sys.stderr.write("vcd: second interrupt, exiting now\n")
            sys.stderr.flush()
            os._exit(130)
        _LOGGER.info("received %s", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)
    try:
        await server.start(lambda reader, writer: WyomingHandler(reader, writer, service))
    except OSError as exc:
        raise VcdError(f"wyoming: cannot listen on {uri}: {exc.strerror or exc}") from None
    _LOGGER.info("wyoming: listening on %s (asr%s program 'vcd', language %s, at most %g s of audio per command)",
                 uri, " and intent" if service.intents else "", service.language, service.max_audio_s)
    notifier.notify("READY=1", f"STATUS=Listening on {uri}")
    await stop.wait()
    notifier.notify("STOPPING=1")
    _LOGGER.info("wyoming: stopping")
    await server.stop()  # closes every client connection and the listening socket
