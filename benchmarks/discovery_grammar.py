"""Benchmark devices found on the broker: grammar compile time with N discovered devices, and a recompile.

Builds Zigbee2MQTT-shaped discovery configs for ``--devices`` devices spread over ``--areas``
areas, reads them as the MQTT plugin does (``vcd_plugins.mqtt.discovery.Devices``), and times
``Recognizer.compile_grammar`` with their list values on the bundled sentences (or
``--sentences``): first with a fresh lexicon (espeak-ng guesses for words not in cmudict),
then again (warm lexicon: what a run-time change costs), then after one device is removed.
Prints figures; asserts nothing.

    .venv/bin/python benchmarks/discovery_grammar.py                  # 50 devices in 10 areas
    .venv/bin/python benchmarks/discovery_grammar.py --devices 200 --areas 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

from vcd_plugins.mqtt.discovery import Devices

from vcd.phonetics import Lexicon
from vcd.recognizer import Recognizer

AREAS = ["kitchen", "living room", "bedroom", "bathroom", "office", "hallway", "garage", "garden", "nursery",
         "attic", "cellar", "porch", "study", "pantry", "laundry", "guest room", "loft", "landing", "den", "patio"]
THINGS = [("light", "ceiling light"), ("light", "lamp"), ("switch", "plug"), ("cover", "blinds"),
          ("climate", "radiator"), ("fan", "fan"), ("lock", "door lock"), ("light", "spotlights")]


def configs(devices: int, areas: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(devices):
        area = AREAS[i % areas]
        component, thing = THINGS[(i // areas) % len(THINGS)]
        again = i // (areas * len(THINGS))  # past every area × thing: "kitchen lamp 2"
        name = f"{area} {thing}" + (f" {again + 1}" if again else "")
        ieee = f"0x{i:016x}"
        payload = {
            "name": None,
            "command_topic": f"zigbee2mqtt/{name}/set",
            "temperature_command_topic": f"zigbee2mqtt/{name}/set/current_heating_setpoint",
            "schema": "json",
            "device": {"identifiers": [f"zigbee2mqtt_{ieee}"], "name": name.title(), "suggested_area": area.title()},
        }
        out.append((f"homeassistant/{component}/{ieee}/{component}/config", json.dumps(payload).encode()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--areas", type=int, default=10)
    parser.add_argument("--sentences", default=None, help="sentence file or folder (default: the bundled ones)")
    args = parser.parse_args()
    if not 1 <= args.areas <= len(AREAS):
        parser.error(f"--areas must be 1..{len(AREAS)}")

    started = time.perf_counter()
    recognizer = Recognizer.load(args.sentences)
    load_s = time.perf_counter() - started
    devices = Devices("homeassistant")
    for topic, payload in configs(args.devices, args.areas):
        devices.update(topic, payload)
    lists = devices.list_values()

    recognizer.lexicon = Lexicon()  # cold: cmudict look-ups and espeak-ng guesses for the new words
    started = time.perf_counter()
    grammar = recognizer.compile_grammar(lists)
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    recognizer.compile_grammar(lists)
    warm_s = time.perf_counter() - started
    devices.update(configs(args.devices, args.areas)[0][0], b"")
    started = time.perf_counter()
    recognizer.compile_grammar(devices.list_values())
    removed_s = time.perf_counter() - started

    base = recognizer.compile_grammar({})
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"sentences: {args.sentences or 'bundled'}; recogniser load (model + grammar): {load_s:.2f} s")
    print(f"discovered: {len(devices) + 1} devices in {args.areas} areas -> "
          f"{{name}} +{len(lists['name'])}, {{area}} +{len(lists['area'])}, {{cover}} +{len(lists['cover'])}")
    print(f"phone states: {base.phone_graph.size} without them, {grammar.phone_graph.size} with them")
    print(f"compile with the devices: {cold_s * 1000:.0f} ms cold lexicon, {warm_s * 1000:.0f} ms warm "
          f"(a change at run time), {removed_s * 1000:.0f} ms after one device left")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
