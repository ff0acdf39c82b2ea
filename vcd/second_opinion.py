"""A second opinion: does an independent recogniser hear the same sentence in a segment?

CMU PocketSphinx (the ``pocketsphinx`` package: its US English acoustic model and dictionary ship
in the wheel) decodes the segment against the same word graph as vcd's search, with its own
acoustic model: Gaussian mixtures over MFCCs, trained on other recordings by other people.  Where
the two land on the same sentence, that sentence is very unlikely to be talk or noise fitted onto
the grammar: on stop 40's validation decodes they agreed on 1 of 725 talk decodes and none of 526
noise segments they were asked about.  A rejection rule
may weigh it (the ``second`` feature of :class:`vcd.recognizer.RejectionRule`); the recogniser
asks only for a segment whose acceptance depends on the answer (:meth:`Recognizer.decode`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vcd.errors import ModelError

_LOGGER = logging.getLogger(__name__)

# The largest word graph (arcs, epsilons included) it is asked about.  The bundled sentences have about
# 1 600, a household's command list a few thousand; Home Assistant's whole sentence folder ~75 000, where
# PocketSphinx took 5.5 s to build its grammar and 3.7 s a 3 s command and found nothing (docs/benchmarks.md).
MAX_TRANSITIONS = 10_000


class SecondOpinion:
    """PocketSphinx over a :class:`vcd.grammar.WordGraph`.  Not thread-safe: one thread owns each instance.

    ``pronounce(word)`` gives CMU phones for a word PocketSphinx's dictionary lacks (vcd's lexicon).
    The graph is turned into PocketSphinx's finite-state grammar once, and again only when another
    graph comes (a reload, plugins' new list values).
    """

    def __init__(self, pronounce: Callable[[str], list[list[str]]]) -> None:
        try:
            from pocketsphinx import Decoder, get_model_path
        except (ImportError, OSError) as exc:
            raise ModelError(f"the model's rejection rule weighs a second opinion, which needs the pocketsphinx "
                             f"package ({exc})") from None
        self._model = Path(get_model_path()) / "en-us"
        self._make = Decoder
        self._decoder = None  # loaded on the first ask (~6 MiB with a grammar's words): many days need none
        self._pronounce = pronounce
        self._graph = None  # the word graph whose grammar is active
        self._unusable = None  # the last graph it could not take (over MAX_TRANSITIONS, or refused): warned once

    def _load_decoder(self):
        """PocketSphinx with an empty dictionary: :meth:`_use` adds the grammars' words.  Its whole dictionary
        (134 000 words) would be ~22 MiB of memory that no command grammar uses."""
        return self._make(hmm=str(self._model / "en-us"), dict=os.devnull, lm=None, samprate=16000, loglevel="FATAL")

    def _use(self, graph) -> bool:
        """Make ``graph`` the active grammar; False when it is over :data:`MAX_TRANSITIONS`."""
        if graph is self._graph:
            return True
        if graph is self._unusable:
            return False
        size = sum(len(arcs) for arcs in graph.arcs)
        if size > MAX_TRANSITIONS:
            self._unusable = graph
            _LOGGER.warning("second opinion: off for these sentences (%d transitions; PocketSphinx is asked about "
                            "at most %d, where it decides in time)", size, MAX_TRANSITIONS)
            return False
        if self._decoder is None:
            self._decoder = self._load_decoder()
        words = sorted({w for arcs in graph.arcs for _, w, _ in arcs if w})
        missing = [word for word in words if self._decoder.lookup_word(word) is None]
        known = dictionary_entries(self._model / "cmudict-en-us.dict", missing) if missing else {}
        for word in missing:
            # PocketSphinx's own pronunciations (alternates as "word(2)" …), else the first of vcd's lexicon
            entries = known.get(word) or [(word, " ".join(p)) for p in self._pronounce(word)[:1]]
            for name, phones in entries:
                self._decoder.add_word(name, phones, update=True)
        transitions = [(src, dst, 1.0 / len(arcs), word) if word else (src, dst, 1.0 / len(arcs))
                       for src, arcs in enumerate(graph.arcs) for dst, word, _ in arcs]
        name, old = f"vcd-{id(graph)}", self._decoder.current_search() if self._graph is not None else None
        self._decoder.add_fsg(name, self._decoder.create_fsg(name, graph.start, graph.final, transitions))
        self._decoder.activate_search(name)
        if old is not None and old != name:
            self._decoder.remove_search(old)
        self._graph = graph
        _LOGGER.debug("second opinion: %d words, %d transitions", len(words), len(transitions))
        return True

    def sentence(self, graph, samples: np.ndarray) -> list[str]:
        """The words PocketSphinx hears in ``samples`` (16 kHz mono float) as a sentence of ``graph``; [] if none."""
        try:
            if not self._use(graph):
                return []
        except (RuntimeError, ValueError) as exc:  # a word it cannot say: no opinion on this graph
            self._unusable = graph
            _LOGGER.warning("second opinion: off for these sentences: PocketSphinx cannot use them (%s)", exc)
            return []
        pcm = (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return [w for w in (hyp.hypstr.split() if hyp is not None else []) if not w.startswith(("<", "["))]

    def agrees(self, graph, samples: np.ndarray, words: Sequence[str]) -> bool:
        """Whether PocketSphinx hears ``words`` (vcd's best sentence) in ``samples``."""
        return bool(words) and self.sentence(graph, samples) == list(words)


def dictionary_entries(path: Path, words: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """The entries of a PocketSphinx dictionary file for ``words``: each word's ``(name, phones)`` in the file's
    order, its alternates named ``word(2)``, ``word(3)`` … as there.  Words the file lacks are left out."""
    wanted, entries = set(words), {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            name, _, phones = line.strip().partition(" ")
            word = name.split("(", 1)[0]
            if word in wanted and phones:
                entries.setdefault(word, []).append((name, phones.strip()))
    return entries


def second_opinion_or_none(pronounce: Callable[[str], list[list[str]]]) -> SecondOpinion | None:
    """A :class:`SecondOpinion`, or None with a warning where pocketsphinx does not load (segments then go
    without one: a rule that weighs it accepts only what it accepts without)."""
    try:
        return SecondOpinion(pronounce)
    except ModelError as exc:
        _LOGGER.warning("segments go without a second opinion (%s)", exc)
        return None
