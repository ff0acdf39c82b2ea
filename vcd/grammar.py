"""Sentence templates (Home Assistant / hassil YAML) → a word graph the decoder searches."""

from __future__ import annotations

import itertools
import logging
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from hassil import Intents
from hassil.expression import (Alternative, Expression, Group, ListReference, Permutation, RuleReference,
                               Sentence, Sequence, TextChunk)
from hassil.intents import IntentData, RangeSlotList, SlotList, TextSlotList
from hassil.parse_expression import parse_sentence

from vcd.errors import GrammarError

_LOGGER = logging.getLogger(__name__)

BUNDLED_SENTENCES = Path(__file__).parent / "sentences" / "en"
_WORD_RE = re.compile(r"[^\s]+")


@lru_cache(maxsize=1)
def _number_engine():
    from unicode_rbnf import RbnfEngine

    return RbnfEngine.for_language("en")


def number_words(value: int | float) -> str:
    """Spoken English for a number: 21 → "twenty one" (hyphens become spaces)."""
    text = _number_engine().format_number(value).text
    return re.sub(r"[-,]", " ", text).replace("  ", " ").strip()


def sentence_files(path: str | Path) -> list[Path]:
    """The YAML files of ``path`` (a file, or a folder searched recursively)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        if not files:
            raise GrammarError(f"{path}: no .yaml sentence files in this folder")
        return files
    if not path.exists():
        raise GrammarError(f"{path}: no such sentences file or folder")
    return [path]


def _line_of(text: str, needle: str) -> int:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else 0


def load_intents(path: str | Path | None = None) -> Intents:
    """Load and check hassil intents from a YAML file or folder (None: vcd's bundled sentences).

    Every template is parsed here, so a syntax error is reported with its
    file and line instead of surfacing during recognition.
    """
    merged: dict = {}
    for file in sentence_files(path or BUNDLED_SENTENCES):
        try:
            text = file.read_text(encoding="utf-8")
            data = yaml.safe_load(text) or {}
        except (OSError, UnicodeDecodeError) as exc:
            raise GrammarError(f"{file}: cannot read ({exc})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise GrammarError(f"{file}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict) or not isinstance(data.get("intents", {}), dict):
            raise GrammarError(f"{file}: expected a mapping with 'language' and 'intents'")
        _check_file(file, text, data)
        _merge(merged, data)
    if not merged.get("intents"):
        raise GrammarError(f"{path or BUNDLED_SENTENCES}: no intents defined")
    merged.setdefault("language", "en")
    try:
        intents = Intents.from_dict(merged)
    except Exception as exc:  # noqa: BLE001 - hassil raises KeyError/ValueError/TypeError for malformed files
        raise GrammarError(f"{path or BUNDLED_SENTENCES}: invalid sentences ({type(exc).__name__}: {exc})") from None
    return intents


def _check_file(file: Path, text: str, data: dict) -> None:
    for intent_name, intent in (data.get("intents") or {}).items():
        for block in (intent or {}).get("data") or []:
            for template in block.get("sentences") or []:
                try:
                    parse_sentence(str(template))
                except Exception as exc:  # noqa: BLE001 - hassil's parser raises many types
                    line = _line_of(text, str(template))
                    raise GrammarError(f"{file}:{line}: intent {intent_name}: bad template {template!r} ({exc})") from None
    for list_name, body in (data.get("lists") or {}).items():
        if not isinstance(body, dict) or not any(k in body for k in ("values", "range", "wildcard")):
            raise GrammarError(f"{file}:{_line_of(text, list_name + ':')}: list {list_name!r} needs 'values' or 'range'")
        if "values" in body and not body["values"]:
            raise GrammarError(f"{file}:{_line_of(text, list_name + ':')}: list {list_name!r} is empty")


def _merge(into: dict, data: dict) -> None:
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list) and key != "sentences":
            into[key] = into[key] + value
        else:
            into[key] = value


def slot_list_of(ref: ListReference, data: IntentData, intents: Intents) -> SlotList:
    """The slot list a ``{name}`` reference names (intent-local first), or GrammarError."""
    if ref.is_inline_range:
        start, stop, step = ref.get_inline_range()
        return RangeSlotList(name=ref.list_name, start=start, stop=stop, step=step)
    slot_list = data.slot_lists.get(ref.list_name) or intents.slot_lists.get(ref.list_name)
    if slot_list is None:
        raise GrammarError(f"sentences: list {{{ref.list_name}}} is used but not defined under 'lists'")
    return slot_list


def range_values(slot_list: RangeSlotList) -> list[int | float]:
    return list(slot_list.get_numbers())


def rule_of(ref: RuleReference, data: IntentData, intents: Intents) -> Sentence:
    rule = data.expansion_rules.get(ref.rule_name) or intents.expansion_rules.get(ref.rule_name)
    if rule is None:
        raise GrammarError(f"sentences: rule <{ref.rule_name}> is used but not defined under 'expansion_rules'")
    return rule


def words_of_chunk(text: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(text.replace("-", " ")) if re.search(r"\w", w)]


def sample_sentence(intents: Intents, rng: random.Random) -> tuple[str, str]:
    """A random sentence of a random intent: (intent name, spoken text)."""
    name = rng.choice(sorted(intents.intents))
    data = rng.choice(intents.intents[name].data)
    sentence = rng.choice(data.sentences)
    words: list[str] = []
    _sample(sentence.expression, data, intents, rng, words)
    return name, " ".join(words)


def _sample(expr: Expression, data: IntentData, intents: Intents, rng: random.Random, out: list[str]) -> None:
    if isinstance(expr, TextChunk):
        out.extend(words_of_chunk(expr.text))
    elif isinstance(expr, Alternative):
        _sample(rng.choice(expr.items), data, intents, rng, out)
    elif isinstance(expr, Permutation):
        for item in rng.sample(expr.items, len(expr.items)):
            _sample(item, data, intents, rng, out)
    elif isinstance(expr, Group):
        for item in expr.items:
            _sample(item, data, intents, rng, out)
    elif isinstance(expr, ListReference):
        slot_list = slot_list_of(expr, data, intents)
        if isinstance(slot_list, RangeSlotList):
            out.extend(number_words(rng.choice(range_values(slot_list))).split())
        elif isinstance(slot_list, TextSlotList):
            value = rng.choice(slot_list.values)
            _sample(value.text_in, data, intents, rng, out)
    elif isinstance(expr, RuleReference):
        _sample(rule_of(expr, data, intents).expression, data, intents, rng, out)


@dataclass(frozen=True)
class Tag:
    """What a spoken word means: its intent, the fixed slots of its sentence block, the lists it is in."""

    intent: str
    fixed_slots: tuple[tuple[str, Any], ...]
    captures: tuple[tuple[str, Any, int], ...]  # (slot name, out value, list-use instance)


@dataclass
class WordGraph:
    """Word-level automaton: ``arcs[node]`` = list of (next node, word or None for epsilon, tag index)."""

    arcs: list[list[tuple[int, str | None, int]]] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    start: int = 0
    final: int = 1
    _instances: int = 0

    def node(self) -> int:
        self.arcs.append([])
        return len(self.arcs) - 1

    def arc(self, src: int, dst: int, word: str | None = None, tag: int = -1) -> None:
        self.arcs[src].append((dst, word, tag))

    @property
    def word_count(self) -> int:
        return sum(1 for arcs in self.arcs for _, w, _ in arcs if w)

    def closure(self, nodes: dict[int, tuple[int, ...]]) -> dict[int, tuple[int, ...]]:
        """Epsilon closure of ``nodes`` (node → tags of the first path that reached it)."""
        out = dict(nodes)
        stack = list(nodes)
        while stack:
            u = stack.pop()
            for v, w, _ in self.arcs[u]:
                if w is None and v not in out:
                    out[v] = out[u]
                    stack.append(v)
        return out

    def parse(self, words: list[str]) -> tuple[str, dict[str, Any]] | None:
        """Intent and slots of a word sequence the grammar accepts, else None."""
        active = self.closure({self.start: ()})
        for word in words:
            step: dict[int, tuple[int, ...]] = {}
            for u, tags in active.items():
                for v, w, tag in self.arcs[u]:
                    if w == word and v not in step:
                        step[v] = tags + (tag,)
            if not step:
                return None
            active = self.closure(step)
        if self.final not in active:
            return None
        return meaning([self.tags[t] for t in active[self.final]])


def meaning(tags: list[Tag]) -> tuple[str, dict[str, Any]] | None:
    """Intent and slots from the tags of a sentence's words (list out-values; numbers as numbers)."""
    if not tags:
        return None
    slots: dict[str, Any] = dict(tags[0].fixed_slots)
    for tag in tags:
        for name, value, _instance in tag.captures:
            slots[name] = value
    return tags[0].intent, slots


@dataclass
class _Context:
    intent: str
    fixed_slots: tuple[tuple[str, Any], ...]
    captures: tuple[tuple[str, Any, int], ...] = ()


def compile_word_graph(intents: Intents) -> WordGraph:
    """Every sentence of every intent as one word graph (lists and rules inlined where used).

    Alternatives and optionals become branches, not copies of the whole
    sentence, so the graph grows with the sum of list sizes, not their product.
    """
    graph = WordGraph()
    graph.node()
    graph.node()
    tag_index: dict[Tag, int] = {}
    for name, intent in sorted(intents.intents.items()):
        for data in intent.data:
            fixed = tuple(sorted((k, _plain(v)) for k, v in (data.slots or {}).items()))
            for sentence in data.sentences:
                begin = graph.node()
                graph.arc(graph.start, begin)
                end = _compile(sentence.expression, begin, graph, data, intents, _Context(name, fixed), tag_index, 0)
                graph.arc(end, graph.final)
    return graph


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _compile(expr: Expression, state: int, graph: WordGraph, data: IntentData, intents: Intents, ctx: _Context,
             tag_index: dict[Tag, int], depth: int) -> int:
    if depth > 60:
        raise GrammarError("sentences: expansion rules refer to each other in a cycle")
    if isinstance(expr, TextChunk):
        words = words_of_chunk(expr.text)
        if words:
            tag = Tag(ctx.intent, ctx.fixed_slots, ctx.captures)
            tag_id = tag_index.setdefault(tag, len(graph.tags))
            if tag_id == len(graph.tags):
                graph.tags.append(tag)
            for word in words:
                nxt = graph.node()
                graph.arc(state, nxt, word, tag_id)
                state = nxt
        return state
    if isinstance(expr, (Alternative, Permutation)):
        if isinstance(expr, Alternative):
            items = expr.items
        else:
            items = [Sequence(items=list(p)) for p in itertools.permutations(expr.items)]
        end = graph.node()
        for item in items:
            graph.arc(_compile(item, state, graph, data, intents, ctx, tag_index, depth + 1), end)
        if getattr(expr, "is_optional", False):
            graph.arc(state, end)
        return end
    if isinstance(expr, Group):
        for item in expr.items:
            state = _compile(item, state, graph, data, intents, ctx, tag_index, depth + 1)
        return state
    if isinstance(expr, ListReference):
        slot_list = slot_list_of(expr, data, intents)
        end = graph.node()
        if isinstance(slot_list, RangeSlotList):
            values = [(TextChunk(number_words(v)), _plain(v)) for v in range_values(slot_list)]
        elif isinstance(slot_list, TextSlotList):
            if not slot_list.values:
                raise GrammarError(f"sentences: list {{{expr.list_name}}} is empty")
            values = [(v.text_in, _plain(v.value_out)) for v in slot_list.values]
        else:
            raise GrammarError(f"sentences: wildcard list {{{expr.list_name}}} cannot be spoken to a closed grammar")
        prefixes: dict[tuple[str, ...], int] = {(): state}  # values that start alike share their first words
        for text_in, value_out in values:
            graph._instances += 1
            inner = _Context(ctx.intent, ctx.fixed_slots, ctx.captures + ((expr.slot_name, value_out, graph._instances),))
            words = words_of_chunk(text_in.text) if isinstance(text_in, TextChunk) else None
            if not words:
                graph.arc(_compile(text_in, state, graph, data, intents, inner, tag_index, depth + 1), end)
                continue
            node = state
            for k in range(len(words) - 1):  # shared prefix words carry no capture of their own
                key = tuple(words[: k + 1])
                if key not in prefixes:
                    prefixes[key] = _compile(TextChunk(words[k]), node, graph, data, intents, ctx, tag_index, depth + 1)
                node = prefixes[key]
            last = _compile(TextChunk(words[-1]), node, graph, data, intents, inner, tag_index, depth + 1)
            graph.arc(last, end)
        return end
    if isinstance(expr, RuleReference):
        return _compile(rule_of(expr, data, intents).expression, state, graph, data, intents, ctx, tag_index, depth + 1)
    return state
