"""Sentence templates (Home Assistant / hassil YAML) → a word graph the decoder searches, and what its paths mean.

hassil parses every template and list (:mod:`vcd.ha_sentences` reads the files); this module
inlines them into one word graph and, for a word sequence, finds the paths through it and
applies hassil's rules to them: ``requires_context`` / ``excludes_context`` (list values
filtered by their ``context``, then the context of the whole match checked), fixed ``slots``,
context ``slot: true``, range ``multiplier``, ``response`` keys, and the priority of the
user's files over the bundled ones.  Templates that need a wildcard list (``{message}``) cannot
be said to a closed grammar: they are left out, with one warning naming each file and line.
"""

from __future__ import annotations

import itertools
import logging
import random
import re
from collections.abc import Iterable, Mapping, Sequence as Seq
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from hassil import Intents
from hassil.expression import (Alternative, Expression, Group, ListReference, Permutation, RuleReference,
                               Sentence, Sequence, TextChunk)
from hassil.intents import IntentData, RangeSlotList, SlotList, TextSlotList, WildcardSlotList
from hassil.parse_expression import parse_sentence
from hassil.util import check_excluded_context, check_required_context, remove_skip_words

from vcd.errors import GrammarError
from vcd.ha_sentences import (BUNDLED_SENTENCES, PRIORITY_BUNDLED, SentenceSet, load_sentences,
                              sentence_files)
from vcd.transcripts import words_of

_LOGGER = logging.getLogger(__name__)

__all__ = ["BUNDLED_SENTENCES", "Parse", "WordGraph", "compile_word_graph", "load_configured_grammar",
           "load_grammar", "load_intents",
           "number_words", "sample_sentence", "sentence_files", "text_words"]

# Distinct paths kept per graph node while parsing one word sequence (they differ in intent or slots).
MAX_PATHS_PER_NODE = 64


@lru_cache(maxsize=1)
def _number_engine():
    from unicode_rbnf import RbnfEngine

    return RbnfEngine.for_language("en")


@lru_cache(maxsize=65536)
def number_words(value: int | float) -> str:
    """Spoken English for a number: 21 → "twenty one" (hyphens become spaces)."""
    text = _number_engine().format_number(value).text
    return re.sub(r"[-,]", " ", text).replace("  ", " ").strip()


_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)?")
_NOT_WORD_RE = re.compile(r"[^\w'.,]+|(?<!\d)[.,]|[.,](?!\d)")


def _spoken_number(match: re.Match) -> str:
    text = match.group(0).replace(",", ".")
    value = float(text) if "." in text else int(text)
    return f" {number_words(value)} "


def text_words(text: str) -> list[str]:
    """The graph's words for a text: case folded, punctuation dropped, "-" a space, digits spoken.

    Templates and typed sentences go through the same function, so ``vcd parse "set it to 50%"``
    meets the words ``fifty`` the template ``{brightness}[%| percent]`` compiled to.
    """
    return list(_text_words(text))


@lru_cache(maxsize=65536)
def _text_words(text: str) -> tuple[str, ...]:
    text = _NOT_WORD_RE.sub(" ", text.casefold().replace("_", " "))
    text = _NUMBER_RE.sub(_spoken_number, text)
    words = []
    for word in text.split():
        word = word.strip("'.,")
        if word and re.search(r"\w", word):
            words.append(word)
    return tuple(words)


def spoken_words(transcript: str) -> list[str]:
    """The words of a transcript as the grammar spells them: what a right recognition's sentence reads.

    A corpus transcript ("shortly after hi-de-hi", "set it to 5") keeps hyphens and digits
    (:func:`vcd.transcripts.words_of`); the graph's words split the one and speak the other
    (:func:`text_words`).  Scoring a recognition against the transcript's own words would count
    every such sentence wrong.
    """
    return text_words(" ".join(words_of(transcript)))


def words_of_chunk(text: str) -> list[str]:
    return list(_text_words(text))


def load_intents(path: str | Path | Seq[str | Path] | None = None) -> Intents:
    """Load and check hassil intents from a YAML file or folder (None: vcd's bundled sentences)."""
    if path is None:
        return load_sentences().intents
    paths = [path] if isinstance(path, str | Path) else list(path)
    return load_sentences(paths, bundled=False).intents


# Lists Home Assistant makes from its registry; a grammar that does not define them has no such words yet.
GENERATED_LISTS = ("name", "area", "floor")


def slot_list_of(ref: ListReference, lists: Mapping[str, SlotList]) -> SlotList:
    """The slot list a ``{name}`` reference names, or GrammarError (an undefined name/area/floor list is empty)."""
    slot_list = lists.get(ref.list_name)
    if slot_list is None and ref.is_inline_range:
        start, stop, step = ref.get_inline_range()
        return RangeSlotList(name=ref.list_name, start=start, stop=stop, step=step)
    if slot_list is None and ref.list_name in GENERATED_LISTS:
        return TextSlotList(name=ref.list_name, values=[])
    if slot_list is None:
        raise GrammarError(f"sentences: list {{{ref.list_name}}} is used but not defined under 'lists'")
    return slot_list


def range_values(slot_list: RangeSlotList) -> list[int | float]:
    return list(slot_list.get_numbers())


def _rule(name: str, rules: Mapping[str, Sentence]) -> Sentence:
    rule = rules.get(name)
    if rule is None:
        raise GrammarError(f"sentences: rule <{name}> is used but not defined under 'expansion_rules'")
    return rule


def _scope(data: IntentData, intents: Intents, extra_lists: Mapping[str, SlotList] | None):
    """The lists and rules a block sees: hassil's order (the block's own win)."""
    lists = {**intents.slot_lists, **(extra_lists or {}), **data.slot_lists}
    rules = {**intents.expansion_rules, **data.expansion_rules}
    return lists, rules


def sample_sentence(intents: Intents, rng: random.Random) -> tuple[str, str]:
    """A random sentence of a random intent: (intent name, spoken text)."""
    name = rng.choice(sorted(intents.intents))
    data = rng.choice(intents.intents[name].data)
    sentence = rng.choice(data.sentences)
    lists, rules = _scope(data, intents, None)
    words: list[str] = []
    _sample(sentence.expression, lists, rules, rng, words)
    return name, " ".join(words)


def _sample(expr: Expression, lists, rules, rng: random.Random, out: list[str]) -> None:
    if isinstance(expr, TextChunk):
        out.extend(words_of_chunk(expr.text))
    elif isinstance(expr, Alternative):
        _sample(rng.choice(expr.items), lists, rules, rng, out)
    elif isinstance(expr, Permutation):
        for item in rng.sample(expr.items, len(expr.items)):
            _sample(item, lists, rules, rng, out)
    elif isinstance(expr, Group):
        for item in expr.items:
            _sample(item, lists, rules, rng, out)
    elif isinstance(expr, ListReference):
        slot_list = slot_list_of(expr, lists)
        if isinstance(slot_list, RangeSlotList):
            out.extend(number_words(rng.choice(range_values(slot_list))).split())
        elif isinstance(slot_list, TextSlotList):
            value = rng.choice(slot_list.values)
            _sample(value.text_in, lists, rules, rng, out)
    elif isinstance(expr, RuleReference):
        _sample(_rule(expr.rule_name, rules).expression, lists, rules, rng, out)


# --- the compiled graph -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tag:
    """What a spoken word means: its intent, the fixed slots of its block, the list values it is in.

    ``block`` indexes :attr:`WordGraph.blocks`; -1 marks a skip word ("please"), which means nothing.
    """

    intent: str
    fixed_slots: tuple[tuple[str, Any], ...]
    captures: tuple[tuple[str, Any, int], ...]  # (slot name, out value, list-use instance)
    block: int = -1


@dataclass(frozen=True)
class Block:
    """One ``data:`` block of an intent as compiled: hassil's IntentData and where it came from."""

    intent: str
    data: IntentData
    priority: int
    file: Path | None


@dataclass(frozen=True)
class Value:
    """One use of a list value on a path: the slot's value (None: the words said) and its context."""

    value: Any
    context: Mapping[str, Any] | None


@dataclass(frozen=True)
class Parse:
    """What a word sequence means: intent, slots (hassil's entities), response key, the words."""

    intent: str
    slots: dict[str, Any]
    response: str | None
    priority: int
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass
class WordGraph:
    """Word-level automaton: ``arcs[node]`` = list of (next node, word or None for epsilon, tag index)."""

    arcs: list[list[tuple[int, str | None, int]]] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    start: int = 0
    final: int = 1
    blocks: list[Block] = field(default_factory=list)
    values: dict[int, Value] = field(default_factory=dict)  # list-use instance → its value
    skip_words: tuple[str, ...] = ()
    intents: Intents | None = None  # what was compiled
    left_out: list[str] = field(default_factory=list)  # "file:line: Intent: template (why)"
    _instances: int = 0
    _index: Any = None
    forms: dict = field(default_factory=dict, repr=False)  # _forms cache while compiling

    def node(self) -> int:
        self.arcs.append([])
        return len(self.arcs) - 1

    def arc(self, src: int, dst: int, word: str | None = None, tag: int = -1) -> None:
        self.arcs[src].append((dst, word, tag))
        self._index = None

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

    def _indexed(self):
        if self._index is None:
            eps: list[list[int]] = [[] for _ in self.arcs]
            by_word: list[dict[str, list[tuple[int, int]]]] = [{} for _ in self.arcs]
            for u, arcs in enumerate(self.arcs):
                for v, w, tag in arcs:
                    if w is None:
                        eps[u].append(v)
                    else:
                        by_word[u].setdefault(w, []).append((v, tag))
            self._index = (eps, by_word)
        return self._index

    def paths(self, words: Seq[str]) -> list[tuple[int, ...]]:
        """The distinct tag sequences of the paths that spell ``words`` (at most MAX_PATHS_PER_NODE per node)."""
        eps, by_word = self._indexed()

        def close(active: dict[int, set]) -> dict[int, set]:
            stack = list(active)
            while stack:
                u = stack.pop()
                for v in eps[u]:
                    have = active.setdefault(v, set())
                    grew = False
                    for p in list(active[u]):
                        if p not in have and len(have) < MAX_PATHS_PER_NODE:
                            have.add(p)
                            grew = True
                    if grew:
                        stack.append(v)
            return active

        active = close({self.start: {()}})
        for word in words:
            step: dict[int, set] = {}
            for u, tags in active.items():
                for v, tag in by_word[u].get(word, ()):
                    have = step.setdefault(v, set())
                    for p in tags:
                        if len(have) >= MAX_PATHS_PER_NODE:
                            break
                        have.add(p + (tag,))
            if not step:
                return []
            active = close(step)
        return sorted(active.get(self.final, ()))

    def understand(self, words: Seq[str], context: Mapping[str, Any] | None = None) -> Parse | None:
        """The best meaning of ``words``: paths whose context checks pass; the user's files first, then the first."""
        best: Parse | None = None
        for path in self.paths(words):
            parse = self.meaning([self.tags[t] for t in path], words, context)
            if parse is not None and (best is None or parse.priority > best.priority):
                best = parse
        return best

    def understand_text(self, text: str, context: Mapping[str, Any] | None = None) -> Parse | None:
        """:meth:`understand` a typed sentence; skip words anywhere are dropped if the sentence needs it (as hassil)."""
        parse = self.understand(text_words(text), context)
        if parse is None and self.skip_words:
            stripped = remove_skip_words(" ".join(text_words(text)), self.skip_words, False)
            parse = self.understand(text_words(stripped), context)
        return parse

    def parse(self, words: Seq[str], context: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]] | None:
        """Intent and slots of a word sequence the grammar accepts (typed words, normalised by :func:`text_words`)."""
        parse = self.understand(text_words(" ".join(words)), context)
        return None if parse is None else (parse.intent, parse.slots)

    def meaning(self, tags: Seq[Tag], words: Seq[str], context: Mapping[str, Any] | None = None) -> Parse | None:
        """Intent and slots of one path (its tags, one per word), or None where hassil's context checks fail."""
        pairs = [(tag, word) for tag, word in zip(tags, words) if tag.block >= 0]
        if not pairs:
            return None
        block = self.blocks[pairs[0][0].block]
        data = block.data
        order: list[tuple[str, int]] = []
        spoken: dict[int, list[str]] = {}
        for tag, word in pairs:
            for name, _value, instance in tag.captures:
                if instance not in spoken:
                    order.append((name, instance))
                    spoken[instance] = []
                spoken[instance].append(word)
        merged = dict(context or {})
        slots: dict[str, Any] = {}
        for name, instance in order:
            value = self.values[instance]
            slots[name] = " ".join(spoken[instance]) if value.value is None else value.value
            if value.context:
                merged.update(value.context)
        if data.excludes_context and not check_excluded_context(data.excludes_context, merged):
            return None
        from_context = _required_context_slots(data.requires_context, merged)
        if from_context is None:
            return None
        entity_names = set(slots)
        for name, value in (data.slots or {}).items():
            if name not in entity_names:
                slots[name] = _plain(value)
        for name, value in from_context.items():
            if name not in entity_names:
                slots[name] = value
        return Parse(block.intent, slots, data.response if data.response is not None else "default",
                     block.priority, tuple(words))


def _required_context_slots(required: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any] | None:
    """hassil's final ``requires_context`` check: None if it fails, else the slots copied from the context."""
    slots: dict[str, Any] = {}
    for key, wanted in (required or {}).items():
        copy_to = None
        if isinstance(wanted, Mapping):
            flag = wanted.get("slot")
            copy_to = flag if isinstance(flag, str) else (key if flag else None)
            wanted = wanted.get("value")
        actual = context.get(key)
        if isinstance(actual, Mapping):
            actual = actual.get("value")
        ok = (wanted is not None and actual == wanted) or (wanted is None and actual is not None) or (
            isinstance(wanted, Iterable) and not isinstance(wanted, str) and actual in wanted)
        if not ok:
            return None
        if copy_to:
            slots[copy_to] = actual
    return slots


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set):
        return tuple(_frozen(v) for v in value)
    return value


@dataclass
class _Context:
    intent: str
    fixed_slots: tuple[tuple[str, Any], ...]
    block: int
    data: IntentData
    lists: Mapping[str, SlotList]
    rules: Mapping[str, Sentence]
    must_provide: Mapping[str, frozenset[str]]  # list name → context keys each of its values must carry
    captures: tuple[tuple[str, Any, int], ...] = ()


def compile_word_graph(intents: Intents | SentenceSet, slot_lists: Mapping[str, SlotList] | None = None,
                       context_keys: Iterable[str] = ()) -> WordGraph:
    """Every sentence of every intent as one word graph (lists and rules inlined where used).

    ``slot_lists`` add or replace lists (e.g. the ``{name}`` and ``{area}`` of a home);
    ``context_keys`` name the context keys the caller may pass when parsing (a satellite's
    ``area``): a template whose ``requires_context`` needs another key that no list value on
    it can provide can never match, and is not compiled.  Alternatives and optionals become
    branches, not copies of the whole sentence, so the graph grows with the sum of list sizes,
    not their product.
    """
    sentence_set = intents if isinstance(intents, SentenceSet) else SentenceSet(intents)
    intents = sentence_set.intents
    context_keys = frozenset(context_keys)
    graph = WordGraph(skip_words=tuple(intents.skip_words), intents=intents)
    graph.node()
    graph.node()
    begin_all, end_all = graph.node(), graph.node()
    graph.arc(graph.start, begin_all)
    graph.arc(end_all, graph.final)
    skip_tag = Tag("", (), (), -1)
    graph.tags.append(skip_tag)
    tag_index: dict[Tag, int] = {skip_tag: 0}
    for phrase in sorted({tuple(text_words(w)) for w in intents.skip_words} - {()}):
        _chain(graph, graph.start, begin_all, phrase, 0)  # "please turn on …"
        _chain(graph, end_all, graph.final, phrase, 0)  # "… for me"
    for name, intent in intents.intents.items():
        for k, data in enumerate(intent.data):
            source = sentence_set.sources.get((name, k))
            priority = source.priority if source else PRIORITY_BUNDLED
            graph.blocks.append(Block(name, data, priority, source.file if source else None))
            block = len(graph.blocks) - 1
            fixed = tuple(sorted((key, _frozen(_plain(v))) for key, v in (data.slots or {}).items()))
            lists, rules = _scope(data, intents, slot_lists)
            for j, text in enumerate(data.sentence_texts):
                sentence = parse_sentence(text, keep_text=True)
                where = source.where(j) if source else "sentences"
                try:
                    must, why = _template_needs(sentence, data, lists, rules, context_keys)
                    if why:
                        if why.startswith("wildcard"):
                            graph.left_out.append(f"{where}: {name}: {text!r} ({why})")
                        else:
                            _LOGGER.debug("%s: %s: %r is not compiled: %s", where, name, text, why)
                        continue
                    ctx = _Context(name, fixed, block, data, lists, rules, must)
                    begin = graph.node()
                    end = _compile(sentence.expression, begin, graph, ctx, tag_index, 0)
                except GrammarError as exc:
                    message = str(exc).removeprefix("sentences: ")
                    raise GrammarError(f"{where}: intent {name}: {message}") from None
                graph.arc(begin_all, begin)
                graph.arc(end, end_all)
    _prune(graph)
    graph.forms = {}
    if graph.left_out:
        _LOGGER.warning("sentences: %d templates need a wildcard list, which a closed grammar cannot hear, and are "
                        "left out: %s", len(graph.left_out), "; ".join(graph.left_out))
    return graph


def _prune(graph: WordGraph) -> None:
    """Drop the arcs no sentence uses: after a list with no values (none yet, or none the context allows)."""
    forward = {graph.start}
    stack = [graph.start]
    while stack:
        for v, _w, _t in graph.arcs[stack.pop()]:
            if v not in forward:
                forward.add(v)
                stack.append(v)
    incoming: list[list[int]] = [[] for _ in graph.arcs]
    for u in forward:
        for v, _w, _t in graph.arcs[u]:
            incoming[v].append(u)
    backward = {graph.final}
    stack = [graph.final]
    while stack:
        for u in incoming[stack.pop()]:
            if u not in backward:
                backward.add(u)
                stack.append(u)
    for u, arcs in enumerate(graph.arcs):
        if arcs and (u not in forward or u not in backward):
            graph.arcs[u] = []
        elif arcs:
            graph.arcs[u] = [arc for arc in arcs if arc[0] in backward]
    graph._index = None


def _chain(graph: WordGraph, src: int, dst: int, words: Seq[str], tag: int) -> None:
    node = src
    for word in words[:-1]:
        nxt = graph.node()
        graph.arc(node, nxt, word, tag)
        node = nxt
    graph.arc(node, dst, words[-1], tag)


def _list_refs(expr: Expression, rules: Mapping[str, Sentence], depth: int = 0) -> Iterable[ListReference]:
    if depth > 60:
        raise GrammarError("sentences: expansion rules refer to each other in a cycle")
    if isinstance(expr, ListReference):
        yield expr
    elif isinstance(expr, Group):
        for item in expr.items:
            yield from _list_refs(item, rules, depth + 1)
    elif isinstance(expr, RuleReference):
        yield from _list_refs(_rule(expr.rule_name, rules).expression, rules, depth + 1)


def _value_allowed(data: IntentData, value_context: Mapping[str, Any] | None) -> bool:
    """hassil's filter of a list's values by the block's required / excluded context (keys a value lacks pass)."""
    if data.requires_context and not check_required_context(data.requires_context, value_context,
                                                             allow_missing_keys=True):
        return False
    return not (data.excludes_context and not check_excluded_context(data.excludes_context, value_context))


def _template_needs(sentence: Sentence, data: IntentData, lists, rules,
                    context_keys: frozenset[str]) -> tuple[dict[str, frozenset[str]], str]:
    """(list name → context keys its values must carry, why the template cannot be compiled or "")."""
    refs = list(_list_refs(sentence.expression, rules))
    text_lists: dict[str, TextSlotList] = {}
    for ref in refs:
        slot_list = slot_list_of(ref, lists)
        if isinstance(slot_list, WildcardSlotList):
            return {}, f"wildcard list {{{ref.list_name}}}"
        if isinstance(slot_list, TextSlotList):
            text_lists[ref.list_name] = slot_list
    must: dict[str, set[str]] = {}
    for key in data.requires_context or {}:
        if key in context_keys:
            continue
        providers = [name for name, slot_list in text_lists.items()
                     if any(v.context and key in v.context and _value_allowed(data, v.context)
                            for v in slot_list.values)]
        if not providers:
            return {}, f"requires context {key!r}, which no list value gives"
        if len(providers) == 1:
            must.setdefault(providers[0], set()).add(key)
    return {name: frozenset(keys) for name, keys in must.items()}, ""


def _tag(graph: WordGraph, ctx: _Context, tag_index: dict[Tag, int]) -> int:
    tag = Tag(ctx.intent, ctx.fixed_slots, ctx.captures, ctx.block)
    tag_id = tag_index.setdefault(tag, len(graph.tags))
    if tag_id == len(graph.tags):
        graph.tags.append(tag)
    return tag_id


def _compile(expr: Expression, state: int, graph: WordGraph, ctx: _Context, tag_index: dict[Tag, int],
             depth: int) -> int:
    if depth > 60:
        raise GrammarError("sentences: expansion rules refer to each other in a cycle")
    if isinstance(expr, TextChunk):
        words = words_of_chunk(expr.text)
        if words:
            tag_id = _tag(graph, ctx, tag_index)
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
            graph.arc(_compile(item, state, graph, ctx, tag_index, depth + 1), end)
        if getattr(expr, "is_optional", False):
            graph.arc(state, end)
        return end
    if isinstance(expr, Group):
        for item in _glue(expr.items, ctx.rules, graph.forms):
            state = _compile(item, state, graph, ctx, tag_index, depth + 1)
        return state
    if isinstance(expr, ListReference):
        return _compile_list(expr, state, graph, ctx, tag_index, depth)
    if isinstance(expr, RuleReference):
        return _compile(_rule(expr.rule_name, ctx.rules).expression, state, graph, ctx, tag_index, depth + 1)
    return state


# Surface forms of a piece of template worth spelling out, at most this many ("light[s]" has 2).
MAX_GLUED_FORMS = 256


def _glue(items: Seq[Expression], rules: Mapping[str, Sentence], cache: dict) -> list[Expression]:
    """Items of a sequence with the runs that make one word together ("batter(y|ies)", "light[s]") spelt out.

    hassil matches characters, so a template may build a word from pieces; the graph's arcs are
    whole words, so such a run becomes an alternative of the words it spells.
    """
    out: list[Expression] = []
    run: list[Expression] = []
    for item in items:
        if run and _joins(run[-1], item, rules, cache):
            run.append(item)
            continue
        out.extend(_spelt(run, rules, cache))
        run = [item]
    out.extend(_spelt(run, rules, cache))
    return out


def _joins(left: Expression, right: Expression, rules, cache: dict) -> bool:
    a, b = _forms(left, rules, cache), _forms(right, rules, cache)
    if not a or not b:
        return False
    return any(x and (x[-1].isalnum() or x[-1] == "'") for x in a) and any(y and y[0].isalnum() for y in b)


def _spelt(run: list[Expression], rules, cache: dict) -> list[Expression]:
    if len(run) < 2:
        return run
    texts = [""]
    for item in run:
        forms = _forms(item, rules, cache) or [""]
        texts = [t + f for t in texts for f in forms][: MAX_GLUED_FORMS * 4]
    unique = list(dict.fromkeys(texts))
    return [Alternative(items=[TextChunk(t) for t in unique])]


def _forms(expr: Expression, rules: Mapping[str, Sentence], cache: dict, depth: int = 0) -> list[str] | None:
    """Every text ``expr`` spells (None if it holds a list, a permutation, or too many)."""
    key = id(expr)
    if key in cache:
        return cache[key][1]
    forms: list[str] | None
    if depth > 60:
        forms = None
    elif isinstance(expr, TextChunk):
        forms = [expr.text]
    elif isinstance(expr, Alternative):
        forms = []
        for item in expr.items:
            sub = _forms(item, rules, cache, depth + 1)
            if sub is None:
                forms = None
                break
            forms.extend(sub)
        if forms is not None and expr.is_optional:
            forms.append("")
    elif isinstance(expr, Permutation) or isinstance(expr, ListReference):
        forms = None
    elif isinstance(expr, Group):
        forms = [""]
        for item in expr.items:
            sub = _forms(item, rules, cache, depth + 1)
            if sub is None or len(forms) * len(sub) > MAX_GLUED_FORMS:
                forms = None
                break
            forms = [f + g for f in forms for g in sub]
    elif isinstance(expr, RuleReference) and expr.rule_name in rules:
        forms = _forms(rules[expr.rule_name].expression, rules, cache, depth + 1)
    else:
        forms = None
    if forms is not None and len(forms) > MAX_GLUED_FORMS:
        forms = None
    cache[key] = (expr, forms)  # the expression is kept so that its id stays its own
    return forms


def _compile_list(expr: ListReference, state: int, graph: WordGraph, ctx: _Context, tag_index: dict[Tag, int],
                  depth: int) -> int:
    slot_list = slot_list_of(expr, ctx.lists)
    end = graph.node()
    values: list[tuple[Expression, Any, Mapping[str, Any] | None]]
    if isinstance(slot_list, RangeSlotList):
        scale = slot_list.multiplier
        values = [(TextChunk(number_words(v)), _plain(v * scale if scale is not None else v), None)
                  for v in range_values(slot_list)]
    elif isinstance(slot_list, TextSlotList):
        must = ctx.must_provide.get(expr.list_name, frozenset())
        values = [(v.text_in, _plain(v.value_out), v.context) for v in slot_list.values
                  if _value_allowed(ctx.data, v.context) and all(k in (v.context or {}) for k in must)]
    else:
        raise GrammarError(f"sentences: wildcard list {{{expr.list_name}}} cannot be spoken to a closed grammar")
    prefixes: dict[tuple[str, ...], int] = {(): state}  # values that start alike share their first words
    for text_in, value_out, value_context in values:
        graph._instances += 1
        instance = graph._instances
        words = words_of_chunk(text_in.text) if isinstance(text_in, TextChunk) else None
        if value_out is None and words:
            value_out = text_in.text.strip()  # hassil gives the words said; a plain value says itself
        graph.values[instance] = Value(value_out, dict(value_context) if value_context else None)
        inner = _Context(ctx.intent, ctx.fixed_slots, ctx.block, ctx.data, ctx.lists, ctx.rules, ctx.must_provide,
                         ctx.captures + ((expr.slot_name, _frozen(value_out), instance),))
        if not words:
            graph.arc(_compile(text_in, state, graph, inner, tag_index, depth + 1), end)
            continue
        node = state
        for k in range(len(words) - 1):  # shared prefix words carry no capture of their own
            key = tuple(words[: k + 1])
            if key not in prefixes:
                prefixes[key] = _compile(TextChunk(words[k]), node, graph, ctx, tag_index, depth + 1)
            node = prefixes[key]
        last = _compile(TextChunk(words[-1]), node, graph, inner, tag_index, depth + 1)
        graph.arc(last, end)
    return end


def load_configured_grammar(recognizer_config: Any) -> WordGraph:
    """The word graph ``vcd run`` compiles for a ``[recognizer]`` section (GrammarError names file and line)."""
    return load_grammar(list(recognizer_config.sentences), bundled=recognizer_config.sentences_mode == "add")


def load_grammar(paths: Seq[str | Path] = (), *, bundled: bool = True, slot_lists: Mapping[str, SlotList] | None = None,
                 context_keys: Iterable[str] = ()) -> WordGraph:
    """Load sentence files (see :func:`vcd.ha_sentences.load_sentences`) and compile them to a word graph."""
    return compile_word_graph(load_sentences(paths, bundled=bundled), slot_lists, context_keys)
