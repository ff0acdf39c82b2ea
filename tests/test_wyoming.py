"""``vcd wyoming``: the real server process with the shipped model, talked to by the ``wyoming`` client as Home
Assistant's Wyoming integration talks to it (homeassistant/components/wyoming: data.py and stt.py).

The bundled model (vcd/models/default.pt) is used unless ``$VCD_TEST_MODEL`` names another model file.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from conftest import free_port, requires_espeak, speak, to_pcm16, vcd_command, wait_until, write_config
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.intent import Intent, NotRecognized, Recognize
from wyoming.ping import Ping, Pong

from vcd.wyoming_server import AudioBuffer, ProtocolError, pcm_to_float, read_event

HOST = "127.0.0.1"
MAX_AUDIO_S = 8.0
CHUNK_S = 0.02  # Home Assistant forwards the microphone stream in small blocks
COMMANDS = ["turn on the kitchen light", "turn off the bedroom light"]
OUT_OF_GRAMMAR = "what a lovely day it is outside"


@dataclass
class Server:
    """A running ``vcd wyoming`` subprocess whose output goes to a log file."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def start_server(workdir: Path, *args: str, port: int | None = None, name: str = "wyoming",
                 notify_socket: Path | None = None, recognizer: dict[str, Any] | None = None) -> Server:
    sections: dict[str, dict[str, Any]] = {"daemon": {"log_level": "info"}, "recognizer": dict(recognizer or {})}
    if os.environ.get("VCD_TEST_MODEL"):
        sections["recognizer"]["model"] = str(Path(os.environ["VCD_TEST_MODEL"]).resolve())
    config = write_config(workdir / "config.toml", sections)
    port = port or free_port()
    log_path = workdir / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = str(notify_socket)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*vcd_command(), "wyoming", "--config", str(config), "--uri", f"tcp://{HOST}:{port}", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
        )
    return Server(process, port, log_path)


def wait_listening(server: Server, timeout_s: float = 180) -> None:
    def listening() -> bool:
        if server.process.poll() is not None:
            pytest.fail(f"vcd wyoming exited ({server.process.returncode}):\n{server.log[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, server.port), timeout=0.5):
            return True
        return False

    if not wait_until(listening, timeout_s, interval_s=0.1):
        server.stop()
        pytest.fail(f"vcd wyoming did not listen within {timeout_s} s:\n{server.log[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``vcd wyoming --intents`` for the module (loading the model takes seconds)."""
    s = start_server(tmp_path_factory.mktemp("wyoming"), "--max-audio-s", str(MAX_AUDIO_S), "--intents")
    wait_listening(s)
    yield s
    s.stop()


# --- Home Assistant's side of the conversation ---------------------------------------------------------


async def describe(port: int) -> Info:
    """data.py load_wyoming_info: Describe → Info, on a connection of its own, within HA's 1 s timeout."""
    async with AsyncTcpClient(HOST, port) as client:
        await client.write_event(Describe().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), timeout=1.0)
            assert event is not None, "connection closed before info"
            if Info.is_type(event.type):
                return Info.from_event(event)


def in_room_noise(speech: np.ndarray, before_s: float, after_s: float, seed: int) -> np.ndarray:
    """``speech`` in a quiet room's noise, with ``before_s`` and ``after_s`` of the room around it."""
    from conftest import noise

    under = noise(speech.size / 16000 + 0.01, seed=seed + 1)[: speech.size]
    return np.concatenate([noise(before_s, seed=seed), speech + under, noise(after_s, seed=seed + 2)])


async def transcribe(port: int, pcm: bytes, rate: int = 16000, width: int = 2, channels: int = 1,
                     language: str | None = "en") -> Event:
    """stt.py async_process_audio_stream: Transcribe, AudioStart, AudioChunk × N, AudioStop, then read events until
    a transcript (here: or an error, which HA would skip over until the connection closes)."""
    step = int(CHUNK_S * rate) * width * channels
    async with AsyncTcpClient(HOST, port) as client:
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        for start in range(0, len(pcm), step):
            await client.write_event(
                AudioChunk(rate=rate, width=width, channels=channels, audio=pcm[start : start + step]).event()
            )
        await client.write_event(AudioStop().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), timeout=60)
            assert event is not None, "connection closed before a transcript"
            if Transcript.is_type(event.type) or Error.is_type(event.type):
                return event


def command_audio(text: str) -> np.ndarray:
    """``text`` spoken, with the quiet before and after that an Assist pipeline's stream has (16 kHz float32)."""
    return np.concatenate([np.zeros(8000, np.float32), speak(text), np.zeros(12000, np.float32)])


def same_sentence(heard: str, said: str) -> bool:
    """The grammar sentence decoded for ``said``: the same words, "the" being optional in the templates."""
    words = [[w for w in sentence.split() if w != "the"] for sentence in (heard, said)]
    return words[0] == words[1]


def encode(audio: np.ndarray, rate: int, width: int, channels: int) -> bytes:
    """16 kHz float32 ``audio`` as little-endian PCM at ``rate`` with ``width`` bytes and ``channels`` channels."""
    samples = np.clip(soxr.resample(audio, 16000, rate) if rate != 16000 else audio, -1.0, 1.0)
    if width == 1:
        ints = np.round(samples * 127 + 128).astype(np.uint8)
    elif width == 3:
        value = np.round(samples * (2**23 - 1)).astype("<i4")
        ints = value.view(np.uint8).reshape(-1, 4)[:, :3]
    else:
        ints = np.round(samples * (2 ** (8 * width - 1) - 1)).astype("<i2" if width == 2 else "<i4")
    if channels > 1:
        ints = np.repeat(ints.reshape(samples.size, -1), channels, axis=0).reshape(samples.size, channels, -1)
    return np.ascontiguousarray(ints).tobytes()


async def raw_exchange(port: int, data: bytes, timeout_s: float = 30) -> list[Event]:
    """Send ``data`` as it is, then read events with the wyoming client's reader until the server closes."""
    from wyoming.event import async_read_event

    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    await writer.drain()
    events = []
    while True:
        event = await asyncio.wait_for(async_read_event(reader), timeout=timeout_s)
        if event is None:
            break
        events.append(event)
    writer.close()
    return events


def header(event_type: str, **fields: Any) -> bytes:
    return (json.dumps({"type": event_type, **fields}) + "\n").encode()


# --- describe and transcribe -----------------------------------------------------------------------------


def test_describe_answers_info_with_the_asr_program_its_model_and_language(server: Server) -> None:
    info = asyncio.run(describe(server.port))
    assert [p.name for p in info.asr] == ["vcd"]
    program = info.asr[0]
    assert program.installed and not program.supports_transcript_streaming and program.requires_external_vad
    model = Path(os.environ["VCD_TEST_MODEL"]).stem if os.environ.get("VCD_TEST_MODEL") else "default"
    assert [(m.name, m.languages, m.installed) for m in program.models] == [(model, ["en"], True)]
    assert not (info.tts or info.handle or info.wake)
    assert [(p.name, p.installed, [m.languages for m in p.models]) for p in info.intent] == [("vcd", True, [["en"]])]
    engine = "onnxruntime" if importlib.util.find_spec("onnxruntime") else "numpy"
    # which engine runs the model, and the denoised view's denoiser, are said at start-up
    view = "" if os.environ.get("VCD_TEST_MODEL") else "webrtc)"  # the shipped model has a rule to look again with
    assert f"(the model runs in {engine}; denoised view: {view}" in server.log


@requires_espeak
@pytest.mark.parametrize("text", COMMANDS)
def test_a_command_in_the_grammar_comes_back_as_its_sentence(server: Server, text: str) -> None:
    event = asyncio.run(transcribe(server.port, to_pcm16(command_audio(text))))
    assert Transcript.is_type(event.type), event
    transcript = Transcript.from_event(event)
    assert same_sentence(transcript.text, text), transcript
    assert transcript.language == "en"


@requires_espeak
def test_a_command_after_seconds_of_room_noise_is_recognised(server: Server) -> None:
    """Home Assistant streams from the wake word on: the room before the command, and after it until its VAD stops."""
    text = "turn on the kitchen light"
    event = asyncio.run(transcribe(server.port, to_pcm16(in_room_noise(speak(text), 2.0, 1.0, seed=1))))
    assert same_sentence(Transcript.from_event(event).text, text), event


@requires_espeak
def test_with_the_denoised_view_each_connection_denoises_its_audio_as_it_comes(tmp_path: Path) -> None:
    """recognizer.denoised_view: each connection denoises its audio as the chunks come (on the presence
    thread), and the transcript is still the command; a sentence outside the grammar still gives nothing."""
    s = start_server(tmp_path, recognizer={"denoised_view": True})
    try:
        wait_listening(s)
        text = "turn on the kitchen light"
        event = asyncio.run(transcribe(s.port, to_pcm16(in_room_noise(speak(text), 1.0, 0.5, seed=4))))
        assert same_sentence(Transcript.from_event(event).text, text), event
        event = asyncio.run(transcribe(s.port, to_pcm16(speak("the weather is lovely today"))))
        assert Transcript.from_event(event).text == "", event
    finally:
        s.stop()
    assert "Traceback" not in s.log


@requires_espeak
def test_speech_outside_the_grammar_gives_an_empty_transcript(server: Server) -> None:
    event = asyncio.run(transcribe(server.port, to_pcm16(command_audio(OUT_OF_GRAMMAR))))
    assert Transcript.is_type(event.type), event
    assert Transcript.from_event(event).text == ""
    assert "not a command" in server.log


def test_no_audio_gives_an_empty_transcript(server: Server) -> None:
    event = asyncio.run(transcribe(server.port, b""))
    assert Transcript.is_type(event.type) and Transcript.from_event(event).text == ""


@requires_espeak
@pytest.mark.parametrize(("rate", "width", "channels"), [(48000, 4, 2), (22050, 3, 1), (44100, 1, 2), (8000, 2, 1)])
def test_any_rate_width_and_channel_count_is_converted(server: Server, rate: int, width: int, channels: int) -> None:
    text = "turn on the kitchen light"
    event = asyncio.run(transcribe(server.port, encode(command_audio(text), rate, width, channels), rate, width,
                                   channels))
    assert Transcript.is_type(event.type), event
    assert same_sentence(Transcript.from_event(event).text, text), (rate, width, channels, event)


@requires_espeak
def test_several_clients_at_once_each_get_their_own_transcript(server: Server) -> None:
    said = [*COMMANDS, OUT_OF_GRAMMAR, COMMANDS[0]]

    async def all_at_once() -> tuple[list[Event], Info]:
        clips = [to_pcm16(command_audio(text)) for text in said]
        results = await asyncio.gather(*(transcribe(server.port, pcm) for pcm in clips), describe(server.port))
        return list(results[:-1]), results[-1]

    events, info = asyncio.run(all_at_once())
    texts = [Transcript.from_event(e).text for e in events]
    assert [same_sentence(t, s) for t, s in zip(texts, said, strict=True)] == [True, True, False, True], texts
    assert texts[2] == ""
    assert info.asr[0].name == "vcd"


def test_one_connection_serves_describe_ping_and_two_transcriptions(server: Server) -> None:
    async def session() -> list[Event]:
        out = []
        async with AsyncTcpClient(HOST, server.port) as client:
            for event in (Describe().event(), Ping(text="hi").event()):
                await client.write_event(event)
                out.append(await asyncio.wait_for(client.read_event(), 10))
            for _ in range(2):
                await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
                await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=bytes(3200)).event())
                await client.write_event(AudioStop().event())
                out.append(await asyncio.wait_for(client.read_event(), 30))
        return out

    events = asyncio.run(session())
    assert [e.type for e in events] == ["info", "pong", "transcript", "transcript"]
    assert Pong.from_event(events[1]).text == "hi"
    assert [Transcript.from_event(e).text for e in events[2:]] == ["", ""]


# --- the intent side (--intents) ----------------------------------------------------------------------------


async def understand(port: int, text: str, as_home_assistant: bool = True) -> Event:
    """Home Assistant's Wyoming conversation agent (conversation.py) sends a ``transcript`` with the text and a
    context, and reads until ``intent`` / ``not-recognized``; other clients send Wyoming's ``recognize``."""
    async with AsyncTcpClient(HOST, port) as client:
        if as_home_assistant:
            await client.write_event(Transcript(text, context={"conversation_id": "01J0"}, language="en").event())
        else:
            await client.write_event(Recognize(text=text).event())
        while True:
            event = await asyncio.wait_for(client.read_event(), timeout=30)
            assert event is not None, "connection closed before an answer"
            if Intent.is_type(event.type) or NotRecognized.is_type(event.type) or Error.is_type(event.type):
                return event


@pytest.mark.parametrize("as_home_assistant", [True, False])
@pytest.mark.parametrize(
    ("text", "intent", "slots"),
    [
        ("turn on the kitchen light", "HassTurnOn", {"name": "kitchen light"}),
        ("Set the living room to twenty one degrees.", "HassClimateSetTemperature",
         {"area": "living room", "temperature": 21}),
        ("open the garage door", "HassTurnOn", {"cover": "garage door", "domain": "cover"}),
    ],
)
def test_text_gets_its_intent_and_slots(server: Server, text: str, intent: str, slots: dict[str, Any],
                                        as_home_assistant: bool) -> None:
    event = asyncio.run(understand(server.port, text, as_home_assistant))
    assert Intent.is_type(event.type), event
    result = Intent.from_event(event)
    assert (result.name, {e.name: e.value for e in result.entities}) == (intent, slots)


def test_text_outside_the_sentences_is_not_recognized(server: Server) -> None:
    event = asyncio.run(understand(server.port, "order a large pizza with olives"))
    assert NotRecognized.is_type(event.type), event
    assert NotRecognized.from_event(event).text


@requires_espeak
def test_speech_to_text_then_text_to_intent_as_an_assist_pipeline_does(server: Server) -> None:
    """vcd as both the speech-to-text engine and the conversation agent of one Assist pipeline."""
    transcript = asyncio.run(transcribe(server.port, to_pcm16(command_audio("turn off the bedroom light"))))
    text = Transcript.from_event(transcript).text
    assert same_sentence(text, "turn off the bedroom light")
    event = asyncio.run(understand(server.port, text))
    result = Intent.from_event(event)
    assert (result.name, {e.name: e.value for e in result.entities}) == ("HassTurnOff", {"name": "bedroom light"})


# --- bad input: one log line, an error event, the connection closed, the server goes on -------------------


BAD_INPUT = {
    "not JSON": (b"this is not an event\n", "event header is not JSON", "bad-event"),
    "no type": (b'{"data": {}}\n', "event header has no 'type'", "bad-event"),
    "bad audio-start": (header("audio-start", data={"rate": "fast", "width": 2, "channels": 1}),
                        "audio rate must be an integer", "bad-audio"),
    "audio-start without rate": (header("audio-start", data={"width": 2, "channels": 1}),
                                 "malformed 'audio-start' event", "bad-event"),
    "odd width": (header("audio-start", data={"rate": 16000, "width": 5, "channels": 1}),
                  "audio width 5 bytes is not one of", "bad-audio"),
    "partial frame": (header("audio-chunk", data={"rate": 16000, "width": 2, "channels": 2}, payload_length=6)
                      + b"abcdef", "is not a whole number of", "bad-audio"),
    "huge payload": (header("audio-chunk", data={"rate": 16000, "width": 2, "channels": 1},
                            payload_length=1 << 40), "payload_length 1099511627776 is over the limit", "too-large"),
    "negative data_length": (header("describe", data_length=-3), "data_length must be a non-negative integer",
                             "bad-event"),
    "data not JSON": (header("transcribe", data_length=4) + b"nope", "its data block is not JSON", "bad-event"),
    "closed mid-payload": (header("audio-chunk", data={"rate": 16000, "width": 2, "channels": 1},
                                  payload_length=100) + bytes(10), "connection closed in the middle of event",
                           "bad-event"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_malformed_input_is_one_log_line_an_error_and_a_closed_connection(server: Server, case: str) -> None:
    data, message, code = BAD_INPUT[case]

    async def exchange() -> list[Event]:
        if case != "closed mid-payload":
            return await raw_exchange(server.port, data)
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(data)
        writer.write_eof()  # the client stops sending in the middle of the payload
        from wyoming.event import async_read_event

        events = []
        while (event := await asyncio.wait_for(async_read_event(reader), 30)) is not None:
            events.append(event)
        writer.close()
        return events

    events = asyncio.run(exchange())
    assert [e.type for e in events] == ["error"], events
    error = Error.from_event(events[0])
    assert message in error.text and error.code == code, error
    assert wait_until(lambda: message in server.log, 10)
    lines = [line for line in server.log.splitlines() if message in line]
    assert len(lines) == 1 and "closing the connection" in lines[0], lines
    # the server goes on serving
    assert asyncio.run(describe(server.port)).asr[0].name == "vcd"


def test_audio_over_the_limit_is_refused(server: Server) -> None:
    pcm = bytes(int((MAX_AUDIO_S + 1) * 16000) * 2)
    event = asyncio.run(transcribe(server.port, pcm))
    assert Error.is_type(event.type), event
    error = Error.from_event(event)
    assert error.code == "audio-too-long" and f"audio longer than {MAX_AUDIO_S:g} s" in error.text
    assert asyncio.run(describe(server.port)).asr[0].name == "vcd"


def test_an_unknown_event_type_is_ignored(server: Server) -> None:
    async def session() -> Event | None:
        async with AsyncTcpClient(HOST, server.port) as client:
            await client.write_event(Event(type="select-program", data={"name": "vcd"}))
            await client.write_event(Event(type="something-new", data={"x": 1}, payload=b"\x00\x01"))
            await client.write_event(Describe().event())
            return await asyncio.wait_for(client.read_event(), 10)

    event = asyncio.run(session())
    assert event is not None and Info.is_type(event.type)


# --- the reader and the audio conversion, without a server ----------------------------------------------


def test_pcm_decoding_of_each_sample_width() -> None:
    values = np.array([0.0, 0.5, -0.5, 0.999], np.float32)
    for width in (1, 2, 3, 4):
        decoded = pcm_to_float(encode(values, 16000, width, 1), width, 1)
        assert np.allclose(decoded, values, atol=2.0 / 2 ** (8 * width - 1)), (width, decoded)
    stereo = pcm_to_float(np.array([[1000, 3000], [-2000, 0]], "<i2").tobytes(), 2, 2)
    assert np.allclose(stereo, [2000 / 32768, -1000 / 32768])


def test_the_buffer_resamples_each_run_of_one_rate_and_counts_seconds() -> None:
    buffer = AudioBuffer(max_s=2.0)
    buffer.add(bytes(16000), 8000, 2, 1)  # 1 s at 8 kHz
    buffer.add(bytes(48000 * 2 * 2 // 2), 48000, 2, 2)  # 0.5 s at 48 kHz stereo
    assert buffer.seconds == pytest.approx(1.5)
    assert buffer.samples_16k().size == pytest.approx(24000, abs=2)
    with pytest.raises(ProtocolError, match="audio longer than 2 s"):
        buffer.add(bytes(16000), 8000, 2, 1)


def test_the_reader_returns_none_only_at_a_clean_end() -> None:
    async def read(data: bytes) -> Event | None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_event(reader)

    assert asyncio.run(read(b"")) is None
    event = asyncio.run(read(header("audio-chunk", data={"rate": 1}, data_length=11, payload_length=2)
                             + b'{"width":2}' + b"\x01\x02"))
    assert event == Event(type="audio-chunk", data={"rate": 1, "width": 2}, payload=b"\x01\x02")
    with pytest.raises(ProtocolError, match="in the middle of an event header"):
        asyncio.run(read(b'{"type": "describe"}'))


# --- the process -------------------------------------------------------------------------------------------


def test_a_bad_uri_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run([*vcd_command(), "wyoming", "--uri", "http://localhost:10300"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "Error: --uri http://localhost:10300: must be tcp://HOST:PORT " \
                                                     "or unix:///PATH"


def test_a_port_in_use_is_one_error_line(server: Server, tmp_path: Path) -> None:
    second = start_server(tmp_path, port=server.port, name="second")
    try:
        assert second.process.wait(180) == 1
    finally:
        second.stop()
    assert f"Error: wyoming: cannot listen on tcp://{HOST}:{server.port}: " in second.log


@requires_espeak
def test_sigterm_stops_the_server_with_exit_0_even_during_a_transcription(tmp_path: Path) -> None:
    """Also systemd's view of it (``Type=notify``): READY=1 once listening, STOPPING=1 on the way out; and without
    ``--intents`` no intent program is described and ``recognize`` is ignored."""
    notify_path = tmp_path / "notify.sock"
    messages: list[str] = []
    done = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        sock.settimeout(0.2)

        def receive() -> None:  # as systemd does: read every message as it comes
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    messages.append(sock.recv(4096).decode())

        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        s = start_server(tmp_path, notify_socket=notify_path)
        try:
            wait_listening(s)

            async def without_intents() -> list[Event | None]:
                async with AsyncTcpClient(HOST, s.port) as client:
                    await client.write_event(Recognize(text="turn on the kitchen light").event())
                    await client.write_event(Describe().event())
                    return [await asyncio.wait_for(client.read_event(), 10)]

            answers = asyncio.run(without_intents())
            assert answers[0] is not None and Info.is_type(answers[0].type), answers  # recognize was ignored
            assert Info.from_event(answers[0]).intent == []

            async def half_a_transcription() -> None:
                async with AsyncTcpClient(HOST, s.port) as client:
                    await client.write_event(Transcribe(language="en").event())
                    await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
                    await client.write_event(AudioChunk(rate=16000, width=2, channels=1,
                                                        audio=to_pcm16(speak("turn on"))).event())
                    s.process.send_signal(signal.SIGTERM)
                    # the server closes this connection on its way out
                    assert await asyncio.wait_for(client.read_event(), 30) is None

            asyncio.run(half_a_transcription())
            assert s.process.wait(30) == 0, s.log[-3000:]
        finally:
            s.stop()
            time.sleep(0.3)
            done.set()
            reader.join()
    assert "received SIGTERM" in s.log and "wyoming: stopping" in s.log
    assert "Traceback" not in s.log
    lines = [line for message in messages for line in message.splitlines()]
    assert lines.index("READY=1") < lines.index("STOPPING=1"), lines
    assert f"STATUS=Listening on tcp://{HOST}:{s.port}" in lines


def test_a_config_error_is_one_line_and_exit_78(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[recognizer]\nmin_confidnce = 0.4\n")
    result = subprocess.run([*vcd_command(), "wyoming", "--config", "config.toml"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: config.toml: recognizer.min_confidnce: unknown key"), last


def test_a_limit_of_zero_seconds_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run([*vcd_command(), "wyoming", "--max-audio-s", "0"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "Error: --max-audio-s must be above 0 (got 0.0)"
