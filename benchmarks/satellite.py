"""Satellites over the broker: added latency satellite → hub → PUBLISH, bandwidth per satellite, hub throughput.

Runs a private mosquitto, one hub (``vcd run`` with ``audio.source = "none"`` and the
satellites plugin) and real ``vcd satellite`` processes fed espeak-ng commands at real time::

    python benchmarks/satellite.py --satellites 2 --commands 4 --burst 40

Figures printed:
- latency: the intent's arrival at a subscriber minus ``speech_end`` (the satellite's VAD closing
  the segment, same clock); minus the hub's ``decode_ms`` that is what the satellite hop adds;
- bandwidth: MQTT payload bytes per second of one satellite while idle (silence) and while speaking,
  for the vcd protocol (segments) and Rhasspy's (audioFrame stream);
- throughput: commands per second one hub decodes and publishes when ``--burst`` segments arrive at once.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ["turn on the kitchen light", "turn off the bedroom light", "set the living room to twenty one degrees"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def speak(text: str) -> np.ndarray:
    import io

    import soundfile

    from vcd.audio import to_mono_16k

    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text], check=True,
                         capture_output=True).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    return to_mono_16k(samples, rate)


def write_wav(path: Path, parts: list[np.ndarray]) -> Path:
    import soundfile

    soundfile.write(str(path), np.concatenate(parts), 16000, subtype="PCM_16")
    return path


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype=np.float32)


def vcd(*args: str, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "vcd"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "vcd"]
    with open(log, "wb") as out:
        return subprocess.Popen([*command, *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


class Listener:
    """Records every message: (arrival time, topic, payload)."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: queue.Queue[tuple[float, str, bytes]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.put((time.time(), m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def take(self) -> list[tuple[float, str, bytes]]:
        out = []
        while not self.messages.empty():
            out.append(self.messages.get())
        return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--satellites", type=int, default=2)
    parser.add_argument("--commands", type=int, default=4, help="commands each satellite says (latency run)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds of silence for the idle bandwidth")
    parser.add_argument("--burst", type=int, default=40, help="segments published at once (throughput run)")
    args = parser.parse_args()
    mosquitto = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    assert mosquitto, "mosquitto is not installed"
    work = Path(tempfile.mkdtemp(prefix="vcd-satbench-"))
    port = free_port()
    (work / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([mosquitto, "-c", str(work / "m.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    procs: list[subprocess.Popen[bytes]] = [broker]
    try:
        time.sleep(0.5)
        (work / "hub.toml").write_text(
            f'[daemon]\nsite = "hub"\n[audio]\nsource = "none"\n[plugins]\nenabled = ["satellites", "mqtt"]\n'
            f'[plugins.satellites]\nport = {port}\n[plugins.mqtt]\nport = {port}\n')
        hub = vcd("run", "--config", str(work / "hub.toml"), log=work / "hub.log")
        procs.append(hub)
        deadline = time.monotonic() + 120
        while "listening on no local audio" not in (work / "hub.log").read_text():
            assert time.monotonic() < deadline and hub.poll() is None, (work / "hub.log").read_text()
            time.sleep(0.2)
        said = [speak(text) for text in COMMANDS]

        # --- latency and bandwidth while speaking (vcd protocol) ---
        listener = Listener(port, ["vcd/+/intent/#", "vcd/satellite/+/segment", "hermes/audioServer/+/audioFrame"])
        sats = []
        speaking_s = 0.0
        for n in range(args.satellites):
            parts = [silence(0.5)]
            for i in range(args.commands):
                parts += [said[(n + i) % len(said)], silence(2.0)]
            wav = write_wav(work / f"room{n}.wav", parts)
            speaking_s = sum(len(p) for p in parts) / 16000
            (work / f"room{n}.toml").write_text(f'[daemon]\nsite = "room{n}"\n[satellite]\nport = {port}\n'
                                                f'[plugins]\nenabled = []\n')
            sats.append(vcd("satellite", "--config", str(work / f"room{n}.toml"), "--input", str(wav), "--realtime",
                            log=work / f"room{n}.log"))
        procs += sats
        for sat in sats:
            sat.wait(300)
        time.sleep(2.0)
        messages = listener.take()
        intents = [(at, json.loads(payload)) for at, topic, payload in messages if "/intent/" in topic]
        latency = [(at - p["speech_end"]) * 1000 for at, p in intents]
        added = [(at - p["speech_end"]) * 1000 - p["decode_ms"] for at, p in intents]
        decode = [p["decode_ms"] for _, p in intents]
        segment_bytes = sum(len(payload) for _, topic, payload in messages if topic.endswith("/segment"))
        print(f"latency: {len(intents)} of {args.satellites * args.commands} commands published; speech end → "
              f"intent at a subscriber p50 {percentile(latency, 50):.0f} ms, p95 {percentile(latency, 95):.0f} ms; "
              f"hub decoding p50 {percentile(decode, 50):.0f} ms; added by the satellite hop (the rest) "
              f"p50 {percentile(added, 50):.0f} ms, p95 {percentile(added, 95):.0f} ms")
        print(f"bandwidth speaking (vcd segments): {segment_bytes / args.satellites / speaking_s / 1000:.1f} kB/s "
              f"per satellite over {speaking_s:.1f} s ({args.commands} commands, 2 s apart)")

        # --- idle bandwidth: silence, both protocols ---
        idle = write_wav(work / "idle.wav", [silence(args.idle_s)])
        for protocol in ("vcd", "hermes"):
            (work / f"idle-{protocol}.toml").write_text(
                f'[daemon]\nsite = "idle{protocol}"\n[satellite]\nport = {port}\nprotocol = "{protocol}"\n'
                f'[plugins]\nenabled = []\n')
            listener.take()
            sat = vcd("satellite", "--config", str(work / f"idle-{protocol}.toml"), "--input", str(idle),
                      "--realtime", log=work / f"idle-{protocol}.log")
            procs.append(sat)
            sat.wait(args.idle_s + 60)
            time.sleep(0.5)
            sent = sum(len(payload) + len(topic) for _, topic, payload in listener.take()
                       if not topic.endswith("/intent/") and "intent" not in topic)
            print(f"bandwidth idle ({protocol}): {sent / args.idle_s:.0f} B/s "
                  f"(segment or audioFrame payload + topic bytes over {args.idle_s:.0f} s of silence; "
                  f"MQTT keep-alive pings and status messages not counted)")

        # --- throughput: a burst of segments at one hub ---
        from vcd.presence import SpeechPresence
        from vcd.satellite_protocol import encode_wav, segment_properties

        listener.take()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", port)
        client.loop_start()
        clips = [np.concatenate([silence(0.3), s, silence(0.3)]) for s in said]
        wavs = [encode_wav(clip) for clip in clips]
        # with the speech presence each one's satellite measured while it was spoken, as `vcd satellite` sends it
        speech = [SpeechPresence()(clip) for clip in clips]
        started = time.time()
        for i in range(args.burst):
            client.publish(f"vcd/satellite/burst{i % 6}/segment", wavs[i % len(wavs)], qos=1,
                           properties=segment_properties(i, time.time(), speech[i % len(wavs)])).wait_for_publish(10)
        deadline = time.monotonic() + 300
        got = 0
        last = started
        while got < args.burst and time.monotonic() < deadline:
            try:
                at, topic, _ = listener.messages.get(timeout=1.0)
            except queue.Empty:
                continue
            if "/intent/" in topic:
                got += 1
                last = at
        print(f"throughput: one hub published {got} of {args.burst} commands in {last - started:.1f} s: "
              f"{got / max(last - started, 1e-9):.1f} commands/s")
        client.loop_stop()
        print(f"(logs in {work})")
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
