"""Home Assistant's own intent tests through vcd's grammar: % of test sentences giving HA's intent and slots.

    .venv/bin/python benchmarks/ha_conformance.py --ha ../shared/ha-intents [--failures 40] [--spoken 60]

``--ha`` is a copy of Home Assistant's intents (``sentences/en`` and ``tests/en`` with
``_fixtures.yaml``; credit "Home Assistant intents, CC BY 4.0").  As HA's test harness does, the
``{name}``, ``{area}`` and ``{floor}`` lists are built from the fixtures (an entity's name with its
domain and attributes as context; template names sampled); test files in an ``Intent/`` folder
add their own entities and areas.  Each test sentence goes through :meth:`WordGraph.understand_text`,
the code path of ``vcd parse``, with the test's context; a sentence passes when the intent is HA's
and the slots agree as HA's harness compares them (an expected list accepts any of its values).
With ``--spoken N``, N of the sentences that pass as text (in the fixtures' home) are said by
the synthetic voices training never uses and decoded by the recogniser, as ``vcd transcribe``
does.  Sentences that hassil itself matches through a wildcard list (``{message}``, timer names …) are
counted apart: a closed grammar cannot hear them.  hassil's own score on the same sentences and
lists is printed beside vcd's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from importlib.metadata import version
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from hassil import TextSlotList, is_template, parse_sentence, recognize, sample_expression

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vcd.grammar import compile_word_graph  # noqa: E402
from vcd.ha_sentences import load_sentences  # noqa: E402


def names_of(name: str) -> list[str]:
    """A fixture name, or every sentence of a template name ("[the] TV"), as HA's harness samples it."""
    if is_template(name):
        return [n.strip() for n in sample_expression(parse_sentence(name).expression)]
    return [name.strip()]


def fixture_lists(fixtures: dict[str, Any]) -> dict[str, TextSlotList]:
    """``{name}`` (with context), ``{area}`` and ``{floor}`` from HA test fixtures."""
    areas = [n for a in fixtures.get("areas") or [] for n in names_of(a["name"])]
    floors = [n for f in fixtures.get("floors") or [] for n in names_of(f["name"])]
    entities = []
    for entity in fixtures.get("entities") or []:
        domain = entity.get("domain") or str(entity.get("id", "")).split(".", 1)[0]
        context = {"domain": domain, **(entity.get("attributes") or {})}
        entities.extend((n, n, context) for n in names_of(entity["name"]))
    return {"area": TextSlotList.from_strings(areas), "floor": TextSlotList.from_strings(floors),
            "name": TextSlotList.from_tuples(entities)}


def slots_agree(expected: dict[str, Any], got: dict[str, Any]) -> str:
    """"" when ``got`` matches ``expected`` as HA's harness compares them, else why not."""
    for name, value in got.items():
        want = expected.get(name)
        if want is None:
            return f"extra slot {name}={value!r}"
        if isinstance(want, list):
            if (set(want) - set(value)) if isinstance(value, list) else value not in want:
                return f"slot {name}={value!r}, expected one of {want!r}"
        elif isinstance(value, list):
            if want not in value:
                return f"slot {name}={value!r}, expected {want!r}"
        elif value != want and str(value) != str(want):
            return f"slot {name}={value!r}, expected {want!r}"
    for name in expected:
        if name not in got:
            return f"missing slot {name}={expected[name]!r}"
    return ""


def test_cases(tests_dir: Path):
    """(file, intent, context, expected slots, sentence, file-local fixtures) for every test sentence."""
    for file in sorted(tests_dir.rglob("*.yaml")):
        if file.name == "_fixtures.yaml":
            continue
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        local = {k: doc[k] for k in ("areas", "floors", "entities") if doc.get(k)}
        folder_intent = file.parent.name if file.parent != tests_dir else None
        for test in doc.get("tests") or []:
            intent = test.get("intent") or {}
            name = intent.get("name") or folder_intent
            slots = intent.get("slots", test.get("slots")) or {}
            context = intent.get("context", test.get("context")) or {}
            for sentence in test.get("sentences") or []:
                yield file, name, context, slots, sentence, local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ha", type=Path, required=True, help="copy of HA intents with sentences/en and tests/en")
    parser.add_argument("--failures", type=int, default=60, help="list at most this many failures (default 60)")
    parser.add_argument("--spoken", type=int, default=0, metavar="N",
                        help="also say N of the counted sentences (the fixtures' home, drawn with a fixed seed) with "
                             "the synthetic voices training never uses, through the recogniser (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the wildcard templates left out are counted below instead
    sentences_dir, tests_dir = args.ha / "sentences" / "en", args.ha / "tests" / "en"
    for path in (sentences_dir, tests_dir / "_fixtures.yaml"):
        if not path.exists():
            print(f"Error: {path}: not found (--ha must hold sentences/en and tests/en/_fixtures.yaml)",
                  file=sys.stderr)
            return 66
    fixtures = yaml.safe_load((tests_dir / "_fixtures.yaml").read_text(encoding="utf-8"))
    started = time.perf_counter()
    sentence_set = load_sentences([sentences_dir], bundled=False)
    cases = list(test_cases(tests_dir))
    context_keys = {key for case in cases for key in case[2]}
    graphs: dict[str, Any] = {}
    lists: dict[str, Any] = {}

    def graph_for(local: dict) -> Any:
        key = repr(local)
        if key not in graphs:
            merged = {k: list(fixtures.get(k) or []) + list(local.get(k) or []) for k in ("areas", "floors", "entities")}
            lists[key] = fixture_lists(merged)
            graphs[key] = compile_word_graph(sentence_set, lists[key], context_keys)
        return graphs[key]

    graph_for({})
    load_s = time.perf_counter() - started
    passed = wildcard = hassil_passed = 0
    counted: list[tuple] = []  # sentences of the fixtures' home that pass as text
    failures: list[str] = []
    per_file: Counter = Counter()
    per_file_total: Counter = Counter()
    for file, intent, context, slots, sentence, local in cases:
        graph = graph_for(local)
        reference = recognize(sentence, sentence_set.intents, slot_lists=lists[repr(local)], intent_context=context)
        if reference is not None and any(e.is_wildcard for e in reference.entities_list):
            wildcard += 1
            continue
        if reference is not None and reference.intent.name == intent and not slots_agree(
                slots, {e.name: e.value for e in reference.entities_list}):
            hassil_passed += 1
        rel = file.relative_to(tests_dir)
        per_file_total[rel] += 1
        parse = graph.understand_text(sentence, context)
        if parse is None:
            why = "no parse"
        elif parse.intent != intent:
            why = f"intent {parse.intent} {parse.slots}, expected {intent}"
        else:
            why = slots_agree(slots, parse.slots)
        if not why and not local:
            counted.append((intent, context, slots, sentence))
        if why:
            if reference is None:
                why += " (hassil finds no match either)"
            per_file[rel] += 1
            failures.append(f"{rel}: {sentence!r}: {why}")
        else:
            passed += 1
    total = sum(per_file_total.values())
    print(f"Home Assistant intent tests ({tests_dir}): {len(cases)} sentences; {wildcard} need a wildcard list "
          "(not counted)")
    first = graphs[repr({})]
    print(f"grammar: {len(graphs)} compiled in {load_s:.1f} s (the first: {len(first.arcs)} nodes; "
          f"{len(first.left_out)} templates needing a wildcard list left out)")
    print(f"intent and slots as Home Assistant expects: {passed} / {total} = {100.0 * passed / max(total, 1):.1f} %")
    print(f"hassil {version('hassil')} itself on the same sentences: {hassil_passed} / {total} = "
          f"{100.0 * hassil_passed / max(total, 1):.1f} %")
    if failures:
        print(f"failures ({len(failures)}; per file: "
              + ", ".join(f"{f} {n}/{per_file_total[f]}" for f, n in per_file.most_common()) + "):")
        for line in failures[: args.failures]:
            print(f"  {line}")
    if args.spoken:
        spoken_conformance(sentence_set, lists[repr({})], context_keys, counted, args.spoken, args.failures)
    return 0


def spoken_conformance(sentence_set, lists, context_keys, counted, n: int, max_failures: int) -> None:
    """Say ``n`` of ``counted`` (intent, context, slots, sentence) with held-out voices; decode as `vcd transcribe`."""
    import random

    from vcd.recognizer import Recognizer
    from vcd.training.synth import available_voices, speak

    rng = random.Random(0)
    voices = available_voices(held_out=True, rng=rng)
    if not voices:
        print("spoken: no held-out synthetic voice installed (espeak-ng, flite)")
        return
    cases = rng.sample(counted, min(n, len(counted)))
    recognizer = Recognizer.load([], bundled=False, slot_lists=lists, context=dict.fromkeys(context_keys, ""),
                                 sentence_set=sentence_set)
    right = rejected = 0
    failures = []
    for k, (intent, context, slots, sentence) in enumerate(cases):
        voice = voices[k % len(voices)]
        audio = speak(voice, sentence)
        if audio is None:
            continue
        recognizer.context = dict(context)
        got = recognizer.recognize(audio)
        if got.intent == intent and not slots_agree(slots, got.slots):
            right += 1
            continue
        rejected += got.intent is None
        failures.append(f"{voice.label}: {sentence!r} → {got.best_text!r} {got.intent} {got.slots} "
                        f"(confidence {got.confidence:.2f})")
    said = len(cases)
    print(f"spoken by {len(voices)} held-out voices ({', '.join(v.label for v in voices)}): intent and slots as "
          f"Home Assistant expects: {right} / {said} = {100.0 * right / max(said, 1):.1f} %; rejected {rejected}")
    for line in failures[:max_failures]:
        print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
