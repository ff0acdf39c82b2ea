"""Benchmark the running daemon: speech end → MQTT publish latency, idle CPU, peak memory, start-up time.

Runs the real ``vcd run --input -`` against a private mosquitto, feeding raw PCM to
its stdin at real-time pace (a continuous stream like a microphone: silence, with
spoken commands from espeak-ng mixed in).  Prints figures; asserts nothing.

    .venv/bin/python benchmarks/daemon_latency.py                 # 20 commands, 60 s of silence
    .venv/bin/python benchmarks/daemon_latency.py --commands 40 --silence-s 120
    .venv/bin/python benchmarks/daemon_latency.py --early-silence-ms 0   # silence-only endpointing (before)

Figures:
- latency: from the moment the block holding the last voiced sample of a command is
  written to the daemon (what a microphone would deliver) to the moment a subscriber
  receives the command's PUBLISH on ``vcd/<site>/intent/<Intent>``.  Most of it is the
  VAD waiting for trailing silence (``vad.silence_ms``, by design), so it is split into
  that wait (up to the segment's ``speech_end`` time stamp in the payload) and the
  compute after it (recogniser ``decode_ms``, then plugin dispatch and MQTT).  With grammar-aware
  endpointing (``vad.early_silence_ms``) a whole command closes after that shorter silence; the
  decode that decided it is the command's decode.
- cut short: commands published as another sentence.  Some commands are two spoken pieces with
  espeak-ng's own pause between them (about 0.4 s, under ``vad.silence_ms``) where the first piece is a
  whole sentence of the grammar too ("what is the temperature" … "in the kitchen"): publishing the
  first piece alone would be a command cut short.
- idle CPU: user+system CPU time of the daemon (from /proc) while it listens to
  real-time-paced silence for ``--silence-s`` seconds, as a percentage of one core and
  scaled to CPU seconds per 10 minutes of listening.
- peak RSS: ``VmHWM`` of the daemon at the end of the run.
- start-up: process start → ``READY=1`` on a ``NOTIFY_SOCKET`` this script creates.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import soundfile

REPO = Path(__file__).resolve().parent.parent
RATE_HZ = 16000
BLOCK_S = 0.02
SITE = "bench"
# a phrase with " / " is spoken in pieces with espeak-ng's trailing silence (about 0.4 s) between them
PHRASES = [
    "what is the temperature / in the kitchen",
    "turn on the kitchen light",
    "turn off the kitchen light",
    "turn on the bedroom light",
    "turn off the living room lamp",
    "set the living room to twenty one degrees",
    "open the garage door",
    "turn on the tv",
    "set the office lamp to fifty percent",
    "how warm is it / in the bedroom",
]


def find_program(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if not found:
        sys.exit(f"daemon_latency: {name} is not installed (scripts/install.sh installs it)")
    return found


def speak(text: str) -> np.ndarray:
    from vcd.audio import to_mono_16k

    wav = subprocess.run(
        [find_program("espeak-ng"), "-v", "en-us", "-s", "150", "--stdout", text], check=True, capture_output=True
    ).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    return to_mono_16k(samples, rate)


def say_phrase(phrase: str) -> np.ndarray:
    return np.concatenate([speak(piece.strip()) for piece in phrase.split("/")])


def sentence(phrase: str) -> str:
    return " ".join(phrase.replace("/", " ").split())


def last_voiced_sample(audio: np.ndarray, threshold: float = 0.02) -> int:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return int(loud[-1]) if loud.size else len(audio) - 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the pieces around the daemon -------------------------------------------------------------------


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        [find_program("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.025)
    sys.exit("daemon_latency: mosquitto did not start")


class Subscriber:
    """Receives every intent event and remembers when it arrived."""

    def __init__(self, port: int):
        self.events: queue.Queue[tuple[float, str, dict]] = queue.Queue()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="vcd-benchmark")
        self.client.on_connect = lambda c, *a: c.subscribe(f"vcd/{SITE}/intent/#", qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.ready.wait(10):
            sys.exit("daemon_latency: the subscriber could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.events.put((time.time(), msg.topic, json.loads(msg.payload)))


@dataclass
class Utterance:
    text: str
    audio: np.ndarray
    last_voiced: int  # sample index
    spoken_end: float = 0.0  # time.time() when the block with the last voiced sample was written
    done: threading.Event | None = None


class Feeder(threading.Thread):
    """Writes a continuous real-time stream of 20 ms s16le blocks: queued utterances, silence in between."""

    def __init__(self, stdin: io.BufferedWriter):
        super().__init__(name="bench-feeder", daemon=True)
        self.stdin = stdin
        self.pending: queue.Queue[Utterance] = queue.Queue()
        self.stop = threading.Event()
        self.late_blocks = 0

    def say(self, utterance: Utterance) -> None:
        utterance.done = threading.Event()
        self.pending.put(utterance)

    def run(self) -> None:
        block = int(BLOCK_S * RATE_HZ)
        silence = np.zeros(block, dtype=np.float32)
        current: Utterance | None = None
        position = 0
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                if current is None:
                    try:
                        current, position = self.pending.get_nowait(), 0
                    except queue.Empty:
                        pass
                if current is None:
                    samples = silence
                else:
                    samples = current.audio[position : position + block]
                    if len(samples) < block:
                        samples = np.concatenate([samples, silence[: block - len(samples)]])
                self.stdin.write((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
                self.stdin.flush()
                if current is not None:
                    if position <= current.last_voiced < position + block:
                        current.spoken_end = time.time()
                    position += block
                    if position >= len(current.audio):
                        assert current.done is not None
                        current.done.set()
                        current = None
                next_at += BLOCK_S
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    self.late_blocks += 1
        except (BrokenPipeError, ValueError):
            pass


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- the run ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20, help="spoken commands to time (default 20)")
    parser.add_argument(
        "--silence-s", type=float, default=60.0, help="seconds of silence for the CPU figure (default 60)"
    )
    parser.add_argument("--gap-s", type=float, default=2.5, help="silence after each command, seconds (default 2.5)")
    parser.add_argument("--model", help="acoustic model file (default: the bundled one)")
    parser.add_argument(
        "--min-confidence",
        type=float,
        help="override recognizer.min_confidence (e.g. 0 to time an undertrained model that rejects)",
    )
    parser.add_argument("--early-silence-ms", type=int, help="override vad.early_silence_ms (0: silence only)")
    parser.add_argument("--beam", type=float, help="override recognizer.beam (0: the exact search)")
    parser.add_argument("--sentences", help="override recognizer.sentences")
    parser.add_argument("--vcd", default=str(Path(sys.executable).parent / "vcd"), help="the vcd command")
    args = parser.parse_args()

    from vcd.config import VadConfig

    silence_ms = VadConfig().silence_ms
    early_ms = VadConfig().early_silence_ms if args.early_silence_ms is None else args.early_silence_ms
    workdir = Path(tempfile.mkdtemp(prefix="vcd-bench-"))
    broker, port = start_broker(workdir)
    subscriber = Subscriber(port)
    config = workdir / "config.toml"
    config.write_text(
        f'[daemon]\nsite = "{SITE}"\nlog_level = "warning"\n\n[plugins]\nenabled = ["mqtt"]\n\n'
        f'[plugins.mqtt]\nhost = "127.0.0.1"\nport = {port}\nqos = 1\n'
        + "\n[recognizer]\n"
        + (f"model = {json.dumps(str(Path(args.model).resolve()))}\n" if args.model else "")
        + (f"min_confidence = {args.min_confidence}\n" if args.min_confidence is not None else "")
        + (f"beam = {args.beam}\n" if args.beam is not None else "")
        + (f"sentences = {json.dumps(str(Path(args.sentences).resolve()))}\n" if args.sentences else "")
        + f"\n[vad]\nearly_silence_ms = {early_ms}\n"
    )
    print(f"daemon_latency: synthesising {len(PHRASES)} phrases …", file=sys.stderr)
    voices = {text: say_phrase(text) for text in PHRASES}
    notify_path = workdir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(120)

    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    started = time.monotonic()
    daemon = subprocess.Popen(
        [args.vcd, "run", "--config", str(config), "--input", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "vcd.log", "wb"),
        env=env,
    )
    startup_s = float("nan")
    try:
        while True:
            message = notify.recv(4096).decode()
            if "READY=1" in message.split("\n"):
                startup_s = time.monotonic() - started
                break
    except TimeoutError:
        sys.exit(f"daemon_latency: no READY=1 within 120 s; log: {workdir / 'vcd.log'}")

    assert daemon.stdin is not None
    feeder = Feeder(daemon.stdin)  # type: ignore[arg-type]
    feeder.start()

    print(f"daemon_latency: {args.silence_s:g} s of real-time silence …", file=sys.stderr)
    time.sleep(2.0)  # settle
    cpu0, wall0 = cpu_seconds(daemon.pid), time.monotonic()
    time.sleep(args.silence_s)
    idle_cpu_pct = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - wall0) * 100

    print(f"daemon_latency: {args.commands} commands …", file=sys.stderr)
    rows = []
    missed = 0
    for n in range(args.commands):
        phrase = PHRASES[n % len(PHRASES)]
        text = sentence(phrase)
        audio = np.concatenate([voices[phrase], np.zeros(int(args.gap_s * RATE_HZ), dtype=np.float32)])
        utterance = Utterance(text, audio, last_voiced_sample(voices[phrase]))
        feeder.say(utterance)
        assert utterance.done is not None
        utterance.done.wait()
        try:
            arrived, topic, payload = subscriber.events.get(timeout=10)
        except queue.Empty:
            missed += 1
            continue
        while True:  # a command cut short publishes twice: count the pieces as one command heard wrong
            try:
                extra = subscriber.events.get(timeout=0.05)
            except queue.Empty:
                break
            print(f"  also heard {extra[2].get('text')!r} for {text!r}", file=sys.stderr)
            payload = {**payload, "text": f"{payload.get('text')} | {extra[2].get('text')}"}
        if payload.get("text") != text:
            print(f"  heard {payload.get('text')!r} for {text!r}", file=sys.stderr)
        rows.append(
            {
                "total_ms": (arrived - utterance.spoken_end) * 1000,
                "vad_close_ms": (payload["speech_end"] - utterance.spoken_end) * 1000,
                "compute_ms": (arrived - payload["speech_end"]) * 1000,
                "decode_ms": payload["decode_ms"],
                "publish_ms": (arrived - payload["recognized_at"]) * 1000,
                "correct": payload.get("text") == text,
            }
        )
    rss_mib = peak_rss_mib(daemon.pid)
    feeder.stop.set()
    feeder.join(2)
    daemon.stdin.close()
    exit_code = daemon.wait(60)
    broker.terminate()
    broker.wait(5)

    def row(label: str, values: list[float]) -> str:
        if not values:
            return f"{label:<46} {'-':>9} {'-':>9}"
        return f"{label:<46} {statistics.median(values):9.0f} {percentile(values, 95):9.0f}"

    total = [r["total_ms"] for r in rows]
    print()
    print(
        f"vcd daemon benchmark — {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at the end (other work on the machine skews the figures)"
    )
    print(
        f"{len(rows)} of {args.commands} commands published ({missed} missed, "
        f"{sum(not r['correct'] for r in rows)} with another sentence or cut short); vad.silence_ms = {silence_ms}, "
        f"vad.early_silence_ms = {early_ms}"
    )
    print()
    print(f"{'latency (ms)':<46} {'p50':>9} {'p95':>9}")
    print(row("end of speech → PUBLISH received (total)", total))
    print(row("  waiting: end of speech → VAD closes (silence)", [r["vad_close_ms"] for r in rows]))
    print(row("  compute: VAD closes → PUBLISH received", [r["compute_ms"] for r in rows]))
    print(row("    of which the recogniser (decode_ms)", [r["decode_ms"] for r in rows]))
    print(row("    of which recognised → PUBLISH (plugin+MQTT)", [r["publish_ms"] for r in rows]))
    print()
    print(
        f"{'idle CPU (real-time silence, ' + format(args.silence_s, 'g') + ' s measured)':<46} "
        f"{idle_cpu_pct:8.1f} % of one core = {idle_cpu_pct / 100 * 600:.1f} CPU s per 10 min (scaled)"
    )
    print(f"{'peak RSS (VmHWM)':<46} {rss_mib:8.0f} MiB")
    print(f"{'start-up: process start → READY=1':<46} {startup_s:8.2f} s")
    print(f"{'exit status after end of input':<46} {exit_code:8d}")
    if feeder.late_blocks:
        print(f"(the feeder was late for {feeder.late_blocks} blocks of 20 ms)")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
