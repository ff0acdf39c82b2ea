"""Benchmark ``vcd wyoming``: round trip from ``audio-stop`` to ``transcript`` for a 3 s spoken command.

Starts the real ``vcd wyoming`` on a free port (or uses a running one, ``--uri``), and talks to
it with the ``wyoming`` client exactly as Home Assistant's Wyoming integration does:
``transcribe``, ``audio-start``, ``audio-chunk`` × N (16 kHz, 16-bit mono, 20 ms each),
``audio-stop``, then waits for the ``transcript``; the chunks go at the pace of speech (``--burst``:
all at once, as this script did before stop 38).  The command is spoken by espeak-ng
and padded with silence to ``--seconds`` (as an Assist pipeline's stream has quiet around
the words).  One warm-up round is not counted.  Prints figures; asserts nothing.

    .venv/bin/python benchmarks/wyoming_roundtrip.py                     # 20 rounds
    .venv/bin/python benchmarks/wyoming_roundtrip.py --rounds 50 --text "turn off the bedroom light"
    .venv/bin/python benchmarks/wyoming_roundtrip.py --uri tcp://hub.local:10300

Figures:
- round trip: from the moment the ``audio-stop`` event is written to the moment the
  ``transcript`` event is read (resampling, features, network, search, and the reply).  This
  is what a user waits for after Home Assistant's VAD has decided the command has ended.
- start-up (own server only): process start → the port accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

REPO = Path(__file__).resolve().parent.parent
RATE_HZ, WIDTH, CHANNELS, CHUNK_S = 16000, 2, 1, 0.02


def spoken(text: str, seconds: float) -> bytes:
    """``text`` by espeak-ng, centred in ``seconds`` of audio (longer if the speech is), as s16le 16 kHz mono."""
    from vcd.audio import to_mono_16k

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("espeak-ng is not installed (scripts/install.sh installs it)")
    wav = subprocess.run([espeak, "-v", "en-us", "-s", "150", "--stdout", text], check=True, capture_output=True)
    samples, rate = soundfile.read(io.BytesIO(wav.stdout), dtype="float32", always_2d=True)
    speech = to_mono_16k(samples, rate)
    pad = max(0, int(seconds * RATE_HZ) - speech.size)
    audio = np.concatenate([np.zeros(pad // 2, np.float32), speech, np.zeros(pad - pad // 2, np.float32)])
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def describe(host: str, port: int) -> Info:
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Describe().event())
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError("connection closed before info")
            if Info.is_type(event.type):
                return Info.from_event(event)


async def round_trip(host: str, port: int, pcm: bytes, burst: bool = False) -> tuple[float, str]:
    """(seconds from audio-stop written to transcript read, the transcript's text).

    The chunks go at the pace of speech, as a microphone gives them to Home Assistant; ``burst``: all at once."""
    step = int(CHUNK_S * RATE_HZ) * WIDTH * CHANNELS
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=RATE_HZ, width=WIDTH, channels=CHANNELS).event())
        began = time.perf_counter()
        for start in range(0, len(pcm), step):
            chunk = AudioChunk(rate=RATE_HZ, width=WIDTH, channels=CHANNELS, audio=pcm[start : start + step])
            await client.write_event(chunk.event())
            if not burst:  # the next chunk when the microphone would have it
                await asyncio.sleep(max(0.0, began + (start + step) / (RATE_HZ * WIDTH * CHANNELS) - time.perf_counter()))
        stopped = time.perf_counter()
        await client.write_event(AudioStop().event())
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError("connection closed before a transcript")
            if Transcript.is_type(event.type):
                return time.perf_counter() - stopped, Transcript.from_event(event).text
            if event.type == "error":
                raise RuntimeError(f"server error: {event.data}")


def start_server(workdir: Path, model: str | None) -> tuple[subprocess.Popen[bytes], int, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = workdir / "config.toml"
    config.write_text('[daemon]\nlog_level = "warning"\n' + (f'[recognizer]\nmodel = "{model}"\n' if model else ""))
    vcd = Path(sys.executable).parent / "vcd"
    command = [str(vcd)] if vcd.exists() else [sys.executable, "-m", "vcd"]
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    started = time.monotonic()
    process = subprocess.Popen([*command, "wyoming", "--config", str(config), "--uri", f"tcp://127.0.0.1:{port}"],
                               stdin=subprocess.DEVNULL, stdout=sys.stderr, env=env, cwd=workdir)
    while True:
        if process.poll() is not None:
            sys.exit(f"vcd wyoming exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return process, port, time.monotonic() - started
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", help="a running server, tcp://HOST:PORT (default: start vcd wyoming here)")
    parser.add_argument("--model", help="model file for the server started here (default: the shipped one)")
    parser.add_argument("--text", default="turn on the kitchen light", help="the command spoken")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the audio sent, seconds (default 3)")
    parser.add_argument("--rounds", type=int, default=20, help="timed round trips (default 20)")
    parser.add_argument("--burst", action="store_true",
                        help="send each round's chunks at once, not at the pace of speech (figures before stop 38)")
    args = parser.parse_args()

    pcm = spoken(args.text, args.seconds)
    process = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.uri:
            host, port = args.uri.removeprefix("tcp://").rsplit(":", 1)
            port, startup_s = int(port), None
        else:
            host = "127.0.0.1"
            process, port, startup_s = start_server(Path(tmp), args.model)
        try:
            info = asyncio.run(describe(host, port))
            asyncio.run(round_trip(host, port, pcm, args.burst))  # warm-up
            times, texts = [], set()
            for _ in range(args.rounds):
                seconds, text = asyncio.run(round_trip(host, port, pcm, args.burst))
                times.append(seconds * 1000.0)
                texts.add(text)
        finally:
            if process is not None:
                process.terminate()
                process.wait(30)

    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    program = info.asr[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"Python {platform.python_version()}")
    print(f"chunks sent {'all at once' if args.burst else 'at the pace of speech'}")
    print(f"server: {host}:{port}, asr program {program.name!r} {program.version}, "
          f"model {program.models[0].name!r}, languages {program.models[0].languages}")
    if startup_s is not None:
        print(f"start-up (process start → port accepts): {startup_s:.1f} s")
    print(f"audio: {len(pcm) / (RATE_HZ * WIDTH):.2f} s of 16 kHz 16-bit mono in {CHUNK_S * 1000:.0f} ms chunks, "
          f"said {args.text!r}; transcripts: {sorted(texts)}")
    print(f"round trip audio-stop → transcript over {len(times)} rounds: p50 {statistics.median(times):.0f} ms, "
          f"p95 {p95:.0f} ms, min {times[0]:.0f} ms, max {times[-1]:.0f} ms")


if __name__ == "__main__":
    main()
