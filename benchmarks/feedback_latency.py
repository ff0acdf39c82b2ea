"""Benchmark the feedback plugin: how soon the sound and the spoken answer reach the output after vcd_feedback.

The real shipped plugin on a real plugin host (pluggy, its worker thread), espeak-ng really
run; the output is an in-memory sink that notes the time each sound or answer is handed to it
(a sound card would then take the sound's own length to play it).  Prints figures; asserts nothing.

    .venv/bin/python benchmarks/feedback_latency.py            # 5 rounds of the bundled answers
    .venv/bin/python benchmarks/feedback_latency.py --rounds 20
    .venv/bin/python benchmarks/feedback_latency.py --busy-site-s 3   # another room's speaker busy meanwhile

Figures, per answer of the bundled sentences (vcd/sentences/en/home.yaml):
- sound: vcd_feedback dispatched → the "recognized" sound handed to the output, ms (median)
- answer: vcd_feedback dispatched → the spoken answer handed to the output, ms (median): espeak-ng's
  synthesis, run after the sound was handed over; on a device add the sound's length (0.34 s)
- the answer's length, s, and espeak-ng's real-time factor (synthesis time / answer length)

With ``--busy-site-s S`` a second plugin offers a speaker for the site "porch" that answers only after
S seconds (a Rhasspy satellite slow to send ``playFinished``); each round sends the porch its feedback
first, so the figures show whether this machine's feedback waits behind another room's speaker.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np
import pluggy

import vcd
from vcd import hookspecs
from vcd.config import Config, DaemonConfig, PluginsConfig
from vcd.plugins import LoadedPlugin, PluginHost
from vcd_plugins import feedback

ANSWERS = [
    "Turned on the kitchen light",
    "Turned off the lights in the living room",
    "The bedroom blinds is at 40 percent",
    "Temperature set to 21 degrees",
]


class BusySpeaker:
    """A speaker for the site "porch" that takes ``busy_s`` to answer, or until ``release`` is set."""

    def __init__(self, busy_s: float) -> None:
        self.busy_s = busy_s
        self.release = threading.Event()
        self.started = threading.Event()

    @vcd.hookimpl
    def vcd_startup(self, controls: vcd.PluginControls) -> None:
        controls.offer_speaker(lambda site: site == "porch", self.play)

    def play(self, site: str, samples: np.ndarray, rate_hz: int) -> bool:
        self.started.set()
        return self.release.wait(self.busy_s)


class TimedSink:
    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []  # (time handed over, seconds of audio)
        self.event = threading.Event()

    def play(self, samples: np.ndarray, rate_hz: int) -> None:
        self.times.append((time.perf_counter(), len(samples) / rate_hz))
        if len(self.times) == 2:
            self.event.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--busy-site-s", type=float, default=0.0,
                        help="another site's speaker takes this long to answer each play (0: no other site)")
    args = parser.parse_args()
    sink = TimedSink()
    plugin = feedback.Feedback(output=sink)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name="feedback")
    loaded = [LoadedPlugin("feedback", "shipped", plugin, ["vcd_feedback", "vcd_startup"])]
    busy = BusySpeaker(args.busy_site_s) if args.busy_site_s > 0 else None
    if busy is not None:
        pm.register(busy, name="porch")
        loaded.append(LoadedPlugin("porch", "benchmark", busy, ["vcd_startup"]))
    host = PluginHost(pm, loaded)
    config = Config(daemon=DaemonConfig(site="bench"), plugins=PluginsConfig(tables={"feedback": {"sites": ["*"]}}))
    host.startup(config)
    host.start_workers()
    print(f"feedback plugin: espeak-ng voice {plugin.settings.voice!r}, {args.rounds} rounds per answer"
          + (f"; the porch's speaker busy {args.busy_site_s:g} s per play meanwhile" if busy else ""))
    print(f"{'answer':44} {'sound ms':>9} {'answer ms':>10} {'length s':>9} {'RTF':>6}")
    for text in ANSWERS:
        sound_ms, answer_ms, lengths = [], [], []
        for _ in range(args.rounds + 1):  # the first round warms espeak-ng's data files up
            sink.times.clear()
            sink.event.clear()
            if busy is not None:
                busy.release.clear()
                busy.started.clear()
                host.dispatch("vcd_feedback", site="porch", kind="recognized", text=text)
                busy.started.wait(30)
            started = time.perf_counter()
            host.dispatch("vcd_feedback", site="bench", kind="recognized", text=text)
            sink.event.wait(30 + 2 * args.busy_site_s)
            if busy is not None:
                busy.release.set()
                plugin.wait_idle(30)
            (t_sound, _), (t_answer, length) = sink.times
            sound_ms.append((t_sound - started) * 1000)
            answer_ms.append((t_answer - started) * 1000)
            lengths.append(length)
        sound, answer = statistics.median(sound_ms[1:]), statistics.median(answer_ms[1:])
        length = statistics.median(lengths[1:])
        print(f"{text:44} {sound:9.1f} {answer:10.1f} {length:9.2f} {(answer - sound) / 1000 / length:6.3f}")
    host.drain(5)


if __name__ == "__main__":
    main()
