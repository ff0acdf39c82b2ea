"""Sentence files as Home Assistant writes them → one hassil ``Intents``, remembering each template's file and line.

Both of Home Assistant's layouts load: ``<domain>_<Intent>.yaml`` files with an ``intents:``
mapping, and ``<Intent>/<slot_combination>.yaml`` files whose top level is ``data:`` (the intent
is the folder's name; ``name_domains`` and ``inferred_domain`` are turned into
``requires_context`` and ``slots`` as Home Assistant's own converter does).  Files of one
source merge as hassil merges them (:func:`hassil.util.merge_dict`: lists extend).

Several sources stack: the bundled sentences (priority 0) and then the user's files
(priority 1).  The user's intents add sentence blocks and win ties, as custom sentences do in
Home Assistant; a list or expansion rule the user defines replaces the bundled one of that
name (so a user's ``{name}`` list is the user's devices, not the examples').
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hassil import Intents
from hassil.parse_expression import parse_sentence
from hassil.util import merge_dict

from vcd.errors import GrammarError

_LOGGER = logging.getLogger(__name__)

BUNDLED_SENTENCES = Path(__file__).parent / "sentences" / "en"
PRIORITY_BUNDLED = 0
PRIORITY_USER = 1


@dataclass(frozen=True)
class BlockSource:
    """Where one data block of an intent came from."""

    file: Path
    lines: tuple[int, ...]  # line of each entry of the block's ``sentences``, in order
    priority: int  # PRIORITY_USER blocks win over PRIORITY_BUNDLED ones that match the same words

    def where(self, index: int) -> str:
        line = self.lines[index] if index < len(self.lines) else 0
        return f"{self.file}:{line}" if line else str(self.file)


@dataclass
class SentenceSet:
    """Every source merged into hassil's ``Intents``; ``sources[(intent, k)]`` says where its k-th block came from."""

    intents: Intents
    sources: dict[tuple[str, int], BlockSource] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    # intent → response key → template: the files' ``responses: intents:`` (Home Assistant's layout);
    # a later source's template replaces an earlier one of the same intent and key
    responses: dict[str, dict[str, str]] = field(default_factory=dict)


def sentence_files(path: str | Path | Iterable[str | Path]) -> list[Path]:
    """The YAML files of ``path`` (a file, or a folder searched recursively), or of each path of a list."""
    if not isinstance(path, str | Path):
        return [file for p in path for file in sentence_files(p)]
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise GrammarError(f"{path}: no .yaml sentence files in this folder")
        return files
    if not path.exists():
        raise GrammarError(f"{path}: no such sentences file or folder")
    return [path]


def load_sentences(paths: Sequence[str | Path] = (), *, bundled: bool = True) -> SentenceSet:
    """Load the bundled sentences (unless ``bundled`` is false) and then ``paths`` on top of them.

    With ``bundled`` false the first source is simply ``paths`` (priority 0): the files replace
    the bundled ones.  Every template is parsed here, so a syntax error is reported with its file
    and line instead of surfacing during recognition.
    """
    groups: list[tuple[list[Path], int]] = []
    if bundled:
        groups.append((sentence_files(BUNDLED_SENTENCES), PRIORITY_BUNDLED))
        if paths:
            groups.append((sentence_files(paths), PRIORITY_USER))
    else:
        if not paths:
            raise GrammarError("sentences: no sentence files given")
        groups.append((sentence_files(paths), PRIORITY_BUNDLED))
    merged: dict[str, Any] = {}
    sources: dict[tuple[str, int], BlockSource] = {}
    files: list[Path] = []
    responses: dict[str, dict[str, str]] = {}
    for group_files, priority in groups:
        group: dict[str, Any] = {}
        group_sources: list[tuple[str, BlockSource]] = []
        read = [(file, *_read_file(file, priority)) for file in group_files]
        flat = {name for _f, doc, _b, folder in read if not folder for name in doc.get("intents") or {}}
        for file, doc, blocks, folder in sorted(read, key=lambda r: r[3]):  # flat files first, as hassil reads them
            if folder and set(doc["intents"]) & flat:
                # Home Assistant's converter: while flat files define the intent, they stay authoritative.
                _LOGGER.info("%s: not used: %s files define %s too (as in Home Assistant)", file,
                             "<domain>_<Intent>.yaml", ", ".join(doc["intents"]))
                continue
            merge_dict(group, doc)
            for intent_name, templates in _responses(file, doc).items():
                responses.setdefault(intent_name, {}).update(templates)
            group_sources.extend(blocks)
            files.append(file)
        _stack(merged, group, sources, group_sources)
    if not merged.get("intents"):
        names = ", ".join(str(p) for p in (paths or [BUNDLED_SENTENCES]))
        raise GrammarError(f"{names}: no intents defined")
    merged["language"] = merged.get("language") or "en"
    try:
        intents = Intents.from_dict(merged)
    except Exception as exc:  # noqa: BLE001 - hassil raises KeyError/ValueError/TypeError for malformed files
        names = ", ".join(str(p) for p in (paths or [BUNDLED_SENTENCES]))
        raise GrammarError(f"{names}: invalid sentences ({type(exc).__name__}: {exc})") from None
    return SentenceSet(intents, sources, files, responses)


def _stack(merged: dict, group: dict, sources: dict, group_sources: list[tuple[str, BlockSource]]) -> None:
    """Put one source on top of what is merged so far: blocks add, lists and rules replace by name."""
    counts = {name: len(body.get("data", [])) for name, body in merged.get("intents", {}).items()}
    for name, body in group.get("intents", {}).items():
        merged.setdefault("intents", {}).setdefault(name, {"data": []})["data"].extend(body.get("data", []))
    for key in ("lists", "expansion_rules"):
        merged.setdefault(key, {}).update(group.get(key, {}))
    words = merged.setdefault("skip_words", [])
    words.extend(w for w in group.get("skip_words", []) if w not in words)
    if group.get("language") and not merged.get("language"):
        merged["language"] = group["language"]
    for name, source in group_sources:
        index = counts.get(name, 0)
        sources[(name, index)] = source
        counts[name] = index + 1


def _read_file(file: Path, priority: int) -> tuple[dict, list[tuple[str, BlockSource]], bool]:
    """One file as a hassil dict (the ``Intent/*.yaml`` layout converted), the source of each block, its layout.

    The last item is True for the ``Intent/*.yaml`` layout.
    """
    try:
        text = file.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise GrammarError(f"{file}: cannot read ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise GrammarError(f"{file}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise GrammarError(f"{file}: expected a mapping with 'language' and 'intents'")
    raw_responses = data.get("responses")
    data = {k: v for k, v in data.items() if k != "responses"}  # hassil's Intents does not take them
    if raw_responses is not None:
        data[_RESPONSES] = raw_responses  # read by load_sentences (_responses), removed before hassil sees it
    folder = "intents" not in data and isinstance(data.get("data"), list)
    if folder:
        data = _from_intent_folder(file, data)
        intents_node = None
        node_blocks = {file.parent.name: _child(node, "data")}
    else:
        intents_node = _child(node, "intents")
        node_blocks = {name: _child(_child(intents_node, name), "data") for name in (data.get("intents") or {})}
    if not isinstance(data.get("intents", {}), dict):
        raise GrammarError(f"{file}: expected a mapping with 'language' and 'intents'")
    blocks: list[tuple[str, BlockSource]] = []
    for intent_name, intent in (data.get("intents") or {}).items():
        if not isinstance(intent, dict) or not isinstance(intent.get("data", []), list):
            raise GrammarError(f"{file}:{_key_line(intents_node, intent_name)}: intent {intent_name}: "
                               "expected 'data:' with a list of blocks")
        block_nodes = node_blocks.get(intent_name)
        for k, block in enumerate(intent.get("data") or []):
            block_node = block_nodes.value[k] if block_nodes is not None and k < len(block_nodes.value) else None
            if not isinstance(block, dict) or not isinstance(block.get("sentences"), list):
                raise GrammarError(f"{file}:{_line(block_node)}: intent {intent_name}: a block needs 'sentences:'")
            sentence_nodes = _child(block_node, "sentences")
            lines = tuple(_line(n) for n in sentence_nodes.value) if sentence_nodes is not None else ()
            for j, template in enumerate(block["sentences"]):
                try:
                    parse_sentence(str(template))
                except Exception as exc:  # noqa: BLE001 - hassil's parser raises many types
                    line = lines[j] if j < len(lines) else 0
                    raise GrammarError(f"{file}:{line}: intent {intent_name}: bad template {template!r} ({exc})") from None
            blocks.append((intent_name, BlockSource(file, lines, priority)))
    lists_node = _child(node, "lists")
    for list_name, body in (data.get("lists") or {}).items():
        line = _key_line(lists_node, list_name)
        if not isinstance(body, dict) or not any(k in body for k in ("values", "range", "wildcard")):
            raise GrammarError(f"{file}:{line}: list {list_name!r} needs 'values' or 'range'")
        if "values" in body and not body["values"]:
            raise GrammarError(f"{file}:{line}: list {list_name!r} is empty")
    return data, blocks, folder


_RESPONSES = " vcd responses"  # not a key YAML files use


def _responses(file: Path, doc: dict) -> dict[str, dict[str, str]]:
    """Take a file's ``responses: {intents: {Intent: {key: template}}}`` out of its document (checked).

    The answers Home Assistant speaks; vcd speaks them through a plugin (``vcd_feedback``).  Other
    parts of ``responses`` (``errors:``) are Home Assistant's own and ignored.
    """
    raw = doc.pop(_RESPONSES, None)
    if raw is None:
        return {}
    intents = raw.get("intents", {}) if isinstance(raw, dict) else None
    if not isinstance(intents, dict) or not all(
        isinstance(t, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in t.items())
        for t in intents.values()
    ):
        raise GrammarError(f"{file}: responses: expected 'intents:' mapping each intent to "
                           "response keys and their texts (as Home Assistant's responses files)")
    return {str(name): dict(templates) for name, templates in intents.items()}


def _from_intent_folder(file: Path, data: dict) -> dict:
    """``<Intent>/<combination>.yaml`` → the ``intents:`` form, as Home Assistant's intents converter does it.

    ``name_domains`` restricts ``{name}`` to entities of those domains (``requires_context: domain``);
    else ``inferred_domain`` becomes the ``domain`` slot.
    """
    blocks = []
    for block in data["data"]:
        if not isinstance(block, dict):
            blocks.append(block)
            continue
        block = copy.deepcopy(block)
        name_domains = block.pop("name_domains", None)
        inferred = block.pop("inferred_domain", None)
        if name_domains:
            block.setdefault("requires_context", {})["domain"] = list(name_domains)
        elif inferred:
            block.setdefault("slots", {}).setdefault("domain", inferred)
        blocks.append(block)
    out = {k: v for k, v in data.items() if k != "data"}
    out["intents"] = {file.parent.name: {"data": blocks}}
    return out


def _child(node: Any, key: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _key_line(node: Any, key: str) -> int:
    if isinstance(node, yaml.MappingNode):
        for k, _v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k.start_mark.line + 1
    return 0


def _line(node: Any) -> int:
    return node.start_mark.line + 1 if node is not None else 0
