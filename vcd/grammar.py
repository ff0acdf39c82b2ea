"""Sentence templates (Home Assistant / hassil YAML) → a word graph the decoder searches."""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

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
    except Exception as exc:  # hassil raises KeyError/ValueError/TypeError for malformed files
        raise GrammarError(f"{path or BUNDLED_SENTENCES}: invalid sentences ({type(exc).__name__}: {exc})") from None
    return intents


def _check_file(file: Path, text: str, data: dict) -> None:
    for intent_name, intent in (data.get("intents") or {}).items():
        for block in (intent or {}).get("data") or []:
            for template in block.get("sentences") or []:
                try:
                    parse_sentence(str(template))
                except Exception as exc:
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
