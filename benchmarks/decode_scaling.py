"""Decode time versus grammar size, exact search against the pruned one (one thread); prints figures.

    .venv/bin/python benchmarks/decode_scaling.py                      # bundled, HA 5×3, HA 50×10, HA 50×10+floors
    .venv/bin/python benchmarks/decode_scaling.py --clips 10 --sizes bundled,50x10
    .venv/bin/python benchmarks/decode_scaling.py --sentences my/sentences/en --beam 16

For each grammar: compile time (templates → word graph → minimal automaton → phone graph) and its size, then
``--clips`` sentences drawn at random from that grammar, spoken by espeak-ng (several voices), decoded with
the shipped model; the network runs once per clip and both searches run on the same posteriors.  Printed:
search time p50 / p95 / max for the exact search (``recognizer.beam = 0``) and the pruned one, how often
the two agree on the sentence (or tie: other words of the same sound and score), and how often each
gets the spoken sentence (text) and its meaning (intent and slots).

Sizes: ``bundled`` is vcd's own sentences as shipped; ``NxM`` is ``--sentences`` (default: Home
Assistant's English sentence files, /work/shared/ha-intents/sentences/en) with N device names in M
areas; ``+floors`` adds three floors.  Sentences that need a wildcard list (free text: timer names,
shopping items …) cannot be a closed grammar and are left out, as are lists nobody defined.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread, as the daemon's recogniser
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import io  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
from hassil.expression import Group, ListReference, RuleReference  # noqa: E402
from hassil.intents import TextSlotList, WildcardSlotList  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import to_mono_16k  # noqa: E402
from vcd.decoder import beam_search, build_phone_graph, viterbi, without_collection  # noqa: E402
from vcd.grammar import compile_word_graph, load_intents, sample_sentence  # noqa: E402
from vcd.phonetics import Lexicon  # noqa: E402
from vcd.recognizer import DEFAULT_BEAM, Recognizer  # noqa: E402

HA_SENTENCES = Path("/work/shared/ha-intents/sentences/en")
AREAS = ["kitchen", "living room", "bedroom", "bathroom", "office", "garage", "hallway", "dining room",
         "basement", "porch", "attic", "laundry room"]
KINDS = ["light", "lamp", "ceiling fan", "heater", "speaker", "tv", "radio", "blinds", "switch", "plug"]
FLOORS = ["ground floor", "first floor", "upstairs"]
VOICES = ["en-us", "en", "en-us+m3", "en-us+f2"]


def speak(text: str, voice: str) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        sys.exit("decode_scaling: espeak-ng is not installed (scripts/install.sh installs it)")
    wav = subprocess.run([exe, "-v", voice, "-s", "150", "--stdout", text], check=True, capture_output=True).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    return to_mono_16k(samples, rate)


def _uses_open_list(expr, data, intents) -> bool:
    if isinstance(expr, ListReference):
        if expr.is_inline_range:
            return False
        found = data.slot_lists.get(expr.list_name) or intents.slot_lists.get(expr.list_name)
        return found is None or isinstance(found, WildcardSlotList)
    if isinstance(expr, RuleReference):
        rule = data.expansion_rules.get(expr.rule_name) or intents.expansion_rules.get(expr.rule_name)
        return rule is None or _uses_open_list(rule.expression, data, intents)
    if isinstance(expr, Group):
        return any(_uses_open_list(item, data, intents) for item in expr.items)
    return False


def home_intents(sentences: Path | None, devices: int, areas: int, floors: bool):
    """The intents of ``sentences`` (None: bundled) with ``devices`` names in ``areas`` areas (0: as the files say)."""
    intents = load_intents(sentences)
    if devices:
        area_names = AREAS[:areas]
        names = [f"{area_names[k % areas]} {KINDS[(k // areas) % len(KINDS)]}" for k in range(devices)]
        names = [n if names.index(n) == k else f"{n} {k}" for k, n in enumerate(names)]
        intents.slot_lists["name"] = TextSlotList.from_strings(names, name="name")
        intents.slot_lists["area"] = TextSlotList.from_strings(area_names, name="area")
    if floors:
        intents.slot_lists["floor"] = TextSlotList.from_strings(FLOORS, name="floor")
    left_out = 0
    for name, intent in list(intents.intents.items()):
        for data in intent.data:
            closed = [s for s in data.sentences if not _uses_open_list(s.expression, data, intents)]
            left_out += len(data.sentences) - len(closed)
            data.sentences[:] = closed
        intent.data[:] = [data for data in intent.data if data.sentences]
        if not intent.data:
            del intents.intents[name]
    return intents, left_out


def same_words(heard: list[str], said: list[str]) -> bool:
    return [w.replace("'", "") for w in heard] == [w.replace("'", "") for w in said]


def parse_size(spec: str) -> tuple[int, int, bool]:
    if spec == "bundled":
        return 0, 0, False
    floors = spec.endswith("+floors")
    devices, areas = spec.removesuffix("+floors").split("x")
    return int(devices), int(areas), floors


def stats(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):7.1f} {p95:7.1f} {ordered[-1]:7.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=Path, default=HA_SENTENCES, help="sentence files for the NxM sizes")
    ap.add_argument("--sizes", default="bundled,5x3,50x10,50x10+floors", help="comma list (see above)")
    ap.add_argument("--clips", type=int, default=20, help="spoken sentences per grammar (default 20)")
    ap.add_argument("--beam", type=float, default=DEFAULT_BEAM, help=f"pruned search's beam (default {DEFAULT_BEAM:g})")
    ap.add_argument("--no-exact", action="store_true", help="time only the pruned search")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    recognizer = Recognizer.load(threads=1)  # the shipped model (its bundled grammar is not used below)
    rows = []
    for spec in args.sizes.split(","):
        devices, areas, floors = parse_size(spec)
        t0 = time.perf_counter()
        intents, left_out = home_intents(None if spec == "bundled" else args.sentences, devices, areas, floors)
        t1 = time.perf_counter()
        with without_collection():  # as Recognizer.load builds it
            word_graph = compile_word_graph(intents)
            t2 = time.perf_counter()
            graph = build_phone_graph(word_graph, Lexicon())
            t3 = time.perf_counter()
        lexicon = Lexicon()
        unminimised = sum(len(p) for arcs in word_graph.arcs for _, w, _ in arcs if w for p in lexicon(w))
        rng = random.Random(args.seed)
        exact_ms, pruned_ms, audio_s, net_ms, exact_cpu, pruned_cpu = [], [], [], [], [], []
        agree = ties = whole = exact_text = pruned_text = exact_meaning = pruned_meaning = 0
        for k in range(args.clips):
            intent, text = sample_sentence(intents, rng)
            audio = speak(text, VOICES[k % len(VOICES)])
            audio_s.append(len(audio) / 16000)
            s0 = time.perf_counter()
            lp = recognizer.posteriors(audio)
            net_ms.append((time.perf_counter() - s0) * 1000)
            truth = word_graph.parse(text.split())
            s1, c1 = time.perf_counter(), time.process_time()
            pruned = beam_search(graph, lp, args.beam)
            pruned_ms.append((time.perf_counter() - s1) * 1000)
            pruned_cpu.append((time.process_time() - c1) * 1000)
            pruned_text += same_words(pruned.words, text.split())
            whole += not pruned.continues
            pruned_meaning += word_graph.parse(pruned.words) == truth
            if not args.no_exact:
                s2, c2 = time.perf_counter(), time.process_time()
                exact = viterbi(graph, lp)
                exact_ms.append((time.perf_counter() - s2) * 1000)
                exact_cpu.append((time.process_time() - c2) * 1000)
                agree += exact.words == pruned.words
                ties += exact.words != pruned.words and abs(exact.score - pruned.score) < 1e-3
                exact_text += same_words(exact.words, text.split())
                exact_meaning += word_graph.parse(exact.words) == truth
        rows.append((spec, left_out, len(word_graph.arcs), graph.size, graph.src.size, t1 - t0, t2 - t1, t3 - t2,
                     exact_ms, pruned_ms, agree, exact_text, pruned_text, exact_meaning, pruned_meaning,
                     audio_s, net_ms, ties, exact_cpu, pruned_cpu, unminimised, whole))
        print(f"decode_scaling: {spec} done", file=sys.stderr)

    n = args.clips
    print(f"\nvcd decode scaling — {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, one thread, "
          f"beam {args.beam:g}, {n} espeak-ng clips per grammar (seed {args.seed})\n")
    print(f"{'grammar':<16} {'word nodes':>10} {'unminimised':>11} {'phone states':>12} {'edges':>8} {'load s':>7} "
          f"{'compile s':>9} {'phones s':>8} {'left out':>8}")
    for r in rows:
        print(f"{r[0]:<16} {r[2]:>10} {r[20]:>11} {r[3]:>12} {r[4]:>8} {r[5]:7.2f} {r[6]:9.2f} {r[7]:8.2f} {r[1]:>8}")
    print("word nodes: the templates' word graph; unminimised: the phone states it would expand to (what vcd "
          "searched before);\nphone states, edges: after minimising; load: reading the files; compile: templates → "
          "word graph; phones: minimising + phone graph;\nleft out: sentences with free-text (wildcard) or undefined "
          "lists")
    print(f"\n{'search ms':<16} {'exact p50':>9} {'p95':>7} {'max':>7}   {'pruned p50':>10} {'p95':>7} {'max':>7}"
          f"   {'agree+ties':>10} {'text ex/pr':>11} {'meaning ex/pr':>13}")
    for r in rows:
        exact = stats(r[8]) if r[8] else f"{'-':>7} {'-':>7} {'-':>7}"
        print(f"{r[0]:<16} {'':>2}{exact}   {'':>3}{stats(r[9])}   {r[10]:>3}+{r[17]}/{n:<3} {r[11]:>5}/{r[12]:<5} "
              f"{r[13]:>7}/{r[14]:<5}")
    print(f"\n{'search CPU ms':<16} {'exact p50':>9} {'p95':>7} {'max':>7}   {'pruned p50':>10} {'p95':>7} {'max':>7}"
          "   (process time: what an idle machine's wall clock would show, near enough)")
    for r in rows:
        exact = stats(r[18]) if r[18] else f"{'-':>7} {'-':>7} {'-':>7}"
        print(f"{r[0]:<16} {'':>2}{exact}   {'':>3}{stats(r[19])}")
    print("\nclips whose sentence nothing in the grammar continues (they may end after vad.early_silence_ms): "
          + ", ".join(f"{r[0]} {r[21]}/{n}" for r in rows))
    audio = [a for r in rows for a in r[15]]
    net = [a for r in rows for a in r[16]]
    print("\nagree: the same words; ties: other words that score the same (\"what's\" / \"whats\": one sound);"
          " text: the words spoken (apostrophes aside); meaning: intent and slots; ex/pr: exact / pruned")
    print(f"clips {min(audio):.1f}-{max(audio):.1f} s (median {statistics.median(audio):.1f} s); the network "
          f"(features + model, not in the figures above) took median {statistics.median(net):.0f} ms per clip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
