"""Load time and peak memory of Home Assistant's full English sentence folder for a home of N devices in M areas.

    .venv/bin/python benchmarks/ha_load.py --ha ../shared/ha-intents [--devices 50] [--areas 10] [--model]

Runs what ``vcd run`` does before it listens, stage by stage: read and check the files
(hassil), compile the word graph (the home's ``{name}`` list with each device's domain as
context, ``{area}``, ``{floor}``), reduce it to the minimal graph of its words, expand that to
the phone graph the decoder searches (with the lexicon, espeak-ng for words it lacks) and, with ``--model``, the acoustic model, the speech-presence VAD and the search
of a 3 s command (espeak-ng says "turn on the kitchen lamp") through that graph and through the
bundled sentences' graph.  Prints seconds per stage, graph sizes and the
process's peak resident memory (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DOMAINS = ["light", "light", "light", "switch", "fan", "cover", "lock", "climate", "media_player", "sensor"]
KINDS = {"light": ["lamp", "ceiling light", "spotlight"], "switch": ["plug"], "fan": ["fan"], "cover": ["blinds"],
         "lock": ["door lock"], "climate": ["thermostat"], "media_player": ["speaker"], "sensor": ["thermometer"]}
AREAS = ["kitchen", "living room", "bedroom", "bathroom", "office", "hallway", "garage", "garden", "attic",
         "dining room", "basement", "guest room", "laundry room", "nursery", "porch"]


def home_lists(n_devices: int, n_areas: int):
    """``{name}``, ``{area}``, ``{floor}`` of a home: n_devices named "<area> <kind> [<k>]" spread over n_areas."""
    from hassil import TextSlotList

    areas = [AREAS[i % len(AREAS)] + ("" if i < len(AREAS) else f" {i // len(AREAS) + 1}") for i in range(n_areas)]
    names, seen = [], set()
    for i in range(n_devices):
        domain = DOMAINS[i % len(DOMAINS)]
        kinds = KINDS[domain]
        name = f"{areas[i % n_areas]} {kinds[(i // len(DOMAINS)) % len(kinds)]}"
        k = 2
        while name in seen:
            name, k = f"{areas[i % n_areas]} {kinds[0]} {k}", k + 1
        seen.add(name)
        names.append((name, name, {"domain": domain}))
    return {"name": TextSlotList.from_tuples(names), "area": TextSlotList.from_strings(areas),
            "floor": TextSlotList.from_strings(["upstairs", "downstairs"])}


def spoken(text: str, seconds: float) -> np.ndarray:
    """``text`` said by espeak-ng, padded with silence to ``seconds`` (16 kHz float32)."""
    from vcd.audio import read_audio

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "say.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
        audio = read_audio(wav)
    pad = max(0, int(seconds * 16000) - audio.size)
    return np.concatenate([np.zeros(pad // 2, np.float32), audio, np.zeros(pad - pad // 2, np.float32)])


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ha", type=Path, required=True, help="copy of HA intents (its sentences/en is loaded)")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--areas", type=int, default=10)
    parser.add_argument("--model", action="store_true", help="also load the shipped model and decode 3 s once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    folder = args.ha / "sentences" / "en"
    if not folder.is_dir():
        print(f"Error: {folder}: no such folder", file=sys.stderr)
        return 66
    from vcd.decoder import build_phone_graph
    from vcd.grammar import compile_word_graph
    from vcd.ha_sentences import load_sentences
    from vcd.phonetics import Lexicon

    lists = home_lists(args.devices, args.areas)
    print(f"home: {args.devices} devices in {args.areas} areas; HA folder {folder} added to the bundled sentences")
    print(f"after imports (numpy, hassil, vcd's grammar and decoder): peak RSS {rss_mib():.0f} MiB")
    t0 = time.perf_counter()
    sentences = load_sentences([folder])  # added to the bundled sentences, as `recognizer.sentences` does
    t1 = time.perf_counter()
    graph = compile_word_graph(sentences, lists)
    t2 = time.perf_counter()
    phones = build_phone_graph(graph, Lexicon())  # minimised there
    t3 = time.perf_counter()
    print(f"read + check {len(sentences.files)} files ({len(sentences.intents.intents)} intents): {t1 - t0:.2f} s")
    print(f"word graph: {t2 - t1:.2f} s ({len(graph.arcs)} nodes, {graph.word_count} word arcs, "
          f"{len(graph.left_out)} wildcard templates left out)")
    print(f"minimal automaton → phone graph: {t3 - t2:.2f} s ({phones.size} states, {phones.src.size} edges, "
          f"{len(phones.words)} words)")
    print(f"total sentences → searchable graph: {t3 - t0:.2f} s; peak RSS {rss_mib():.0f} MiB")
    if args.model:
        from vcd.decoder import search
        from vcd.inference import load_numpy_model
        from vcd.recognizer import DEFAULT_BEAM, DEFAULT_MODEL, segment_features

        from vcd.presence import SpeechPresence

        t4 = time.perf_counter()
        net = load_numpy_model(DEFAULT_MODEL)[0]
        command = spoken("turn on the kitchen lamp", 3.0)
        log_probs = net.infer(segment_features(command))
        SpeechPresence()(command)  # `vcd run` loads the VAD model too: the shipped rule weighs the speech presence
        t5 = time.perf_counter()
        bundled = build_phone_graph(compile_word_graph(load_sentences()), Lexicon())

        def median_ms(graph) -> float:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                search(graph, log_probs, DEFAULT_BEAM)
                times.append((time.perf_counter() - started) * 1000.0)
            return float(np.median(times))

        print(f"model and speech presence + 3 s of features: {t5 - t4:.2f} s")
        print(f"search (beam {DEFAULT_BEAM:g}) of a 3 s command (median of 5): this graph {median_ms(phones):.0f} ms; the bundled sentences alone "
              f"({bundled.size} states) {median_ms(bundled):.0f} ms; peak RSS {rss_mib():.0f} MiB")
        if importlib.util.find_spec("pocketsphinx") is not None:  # where the model's rule weighs a second opinion
            from vcd.second_opinion import MAX_TRANSITIONS, SecondOpinion

            size = sum(len(arcs) for arcs in graph.arcs)
            if size > MAX_TRANSITIONS:
                print(f"second opinion (PocketSphinx): off for this graph ({size} transitions, over {MAX_TRANSITIONS})")
                return 0
            opinion = SecondOpinion(Lexicon())
            t6 = time.perf_counter()
            heard = opinion.sentence(graph, command)  # the first ask builds its grammar
            t7 = time.perf_counter()
            asked = []
            for _ in range(5):
                started = time.perf_counter()
                opinion.sentence(graph, command)
                asked.append((time.perf_counter() - started) * 1000.0)
            print(f"second opinion (PocketSphinx) on this graph: first ask {t7 - t6:.2f} s (builds its grammar), then "
                  f"{np.median(asked):.0f} ms a 3 s command (median of 5), heard {' '.join(heard) or '(nothing)'!r}; "
                  f"peak RSS {rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
