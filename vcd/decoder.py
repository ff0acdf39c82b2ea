"""Grammar-constrained CTC search: the word graph made a minimal automaton, expanded to phones, searched over the model's posteriors."""

from __future__ import annotations

import gc
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from vcd.audio import snr_shortfall_db
from vcd.errors import GrammarError
from vcd.grammar import WordGraph, text_words
from vcd.phonetics import LABEL_ID, Lexicon

_LOGGER = logging.getLogger(__name__)

_NEG = np.float32(-1e30)


@contextmanager
def without_collection() -> Iterator[None]:
    """Garbage collection paused: building graphs makes millions of small containers and no cycles, and the
    collector's passes over them cost a quarter to half of the building time."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@dataclass
class WordAutomaton:
    """The sentences of a grammar as a minimal deterministic automaton over words.

    ``arcs[node]`` lists ``(word, next node)`` with each word at most once; node 0 starts; a sentence may
    end at the nodes in ``finals``.  Meanings (tags) stay in the :class:`vcd.grammar.WordGraph` it came from.
    """

    arcs: list[list[tuple[str, int]]]
    finals: frozenset[int]


def _determinize(eps: list[list[int]], lab: list[list[tuple[int, int]]], starts: set[int],
                 finals: set[int]) -> tuple[list[list[tuple[int, int]]], set[int]]:
    """Subset construction of an automaton with epsilon arcs (``eps``) and labelled arcs (``lab``: label, dst)."""
    cache: dict[int, frozenset[int]] = {}

    def closure_of(u: int) -> frozenset[int]:
        """Epsilon closure of ``u``, from its successors' closures (the graph is acyclic; post-order, no recursion)."""
        found = cache.get(u)
        if found is not None:
            return found
        stack = [u]
        while stack:
            x = stack[-1]
            todo = [y for y in eps[x] if y not in cache]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            if x not in cache:
                cache[x] = frozenset((x,)).union(*(cache[y] for y in eps[x])) if eps[x] else frozenset((x,))
        return cache[u]

    has_eps = any(eps)

    def closure(nodes: set[int]) -> frozenset[int]:
        if not has_eps:
            return frozenset(nodes)
        out = set(nodes)
        for u in nodes:
            if eps[u]:
                out |= closure_of(u)
        return frozenset(out)

    first = closure(set(starts))
    index = {first: 0}
    todo = [first]
    arcs: list[list[tuple[int, int]]] = [[]]
    out_finals: set[int] = set()
    while todo:
        subset = todo.pop()
        k = index[subset]
        moves: dict[int, set[int]] = defaultdict(set)
        for u in subset:
            for label, v in lab[u]:
                moves[label].add(v)
        for label in sorted(moves):
            target = closure(moves[label])
            j = index.get(target)
            if j is None:
                j = index[target] = len(arcs)
                arcs.append([])
                todo.append(target)
            arcs[k].append((label, j))
        if not finals.isdisjoint(subset):
            out_finals.add(k)
    return arcs, out_finals


def _reverse(arcs: list[list[tuple[int, int]]]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    lab: list[list[tuple[int, int]]] = [[] for _ in arcs]
    for u, out in enumerate(arcs):
        for label, v in out:
            lab[v].append((label, u))
    return [[] for _ in arcs], lab


def minimize(graph: WordGraph) -> WordAutomaton:
    """The minimal deterministic automaton accepting the word sequences of ``graph`` (Brzozowski's method).

    Templates expand to many parallel copies of the same words ("turn on the" in every sentence block,
    each list once per use); determinising the reversed graph and then its reverse merges them, so the
    phone graph and the search shrink by an order of magnitude on Home Assistant's sentences.
    """
    with without_collection():
        return _minimize(graph)


def _minimize(graph: WordGraph) -> WordAutomaton:
    words: list[str] = []
    word_id: dict[str, int] = {}
    eps_rev: list[list[int]] = [[] for _ in graph.arcs]
    lab_rev: list[list[tuple[int, int]]] = [[] for _ in graph.arcs]
    for u, arcs in enumerate(graph.arcs):
        for v, w, _tag in arcs:
            if w is None:
                eps_rev[v].append(u)
            else:
                wid = word_id.setdefault(w, len(words))
                if wid == len(words):
                    words.append(w)
                lab_rev[v].append((wid, u))
    back, back_finals = _determinize(eps_rev, lab_rev, {graph.final}, {graph.start})
    eps, lab = _reverse(back)
    arcs, finals = _determinize(eps, lab, back_finals, {0})
    return WordAutomaton([[(words[label], v) for label, v in out] for out in arcs], frozenset(finals))


def tags_of(graph: WordGraph, words: list[str]) -> list:
    """The :class:`vcd.grammar.Tag` of each word of a sentence ``graph`` accepts (first reading), else []."""
    active = graph.closure({graph.start: ()})
    for word in words:
        step: dict[int, tuple[int, ...]] = {}
        for u, tags in active.items():
            for v, w, tag in graph.arcs[u]:
                if w == word and v not in step:
                    step[v] = tags + (tag,)
        if not step:
            return []
        active = graph.closure(step)
    return [graph.tags[t] for t in active.get(graph.final, ())]


@dataclass
class PhoneGraph:
    """Phone states of the grammar, CTC-ready.

    State ``s`` emits phone ``phone[s]``; ``word[s]`` is the word a state
    starts (-1 inside a word); edges ``src[e] → dst[e]`` are sorted by dst.
    ``more[s]``: ``s`` ends a word after which the grammar goes on (a longer sentence continues it).
    """

    phone: np.ndarray  # (S,) label ids
    word: np.ndarray  # (S,) index into words, or -1
    words: list[str]
    entry: np.ndarray  # (S,) bool: may start the utterance
    final: np.ndarray  # (S,) bool: may end the utterance
    more: np.ndarray  # (S,) bool: ends a word that more words may follow
    src: np.ndarray  # (E,)
    dst: np.ndarray  # (E,) sorted
    same: np.ndarray  # (E,) bool: src and dst emit the same phone (CTC needs a blank between)
    seg_start: np.ndarray  # start offset into the edges of each state with incoming edges
    seg_state: np.ndarray  # the states those segments belong to
    source: WordGraph | None = None  # where the meanings (tags) of a decoded sentence are looked up
    _out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.phone.size)

    @property
    def out_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edges by source state: ``(ptr, dst, same)`` with state ``s``'s edges at ``ptr[s]:ptr[s + 1]``."""
        if self._out is None:
            order = np.argsort(self.src, kind="stable")
            ptr = np.zeros(self.size + 1, dtype=np.int64)
            np.cumsum(np.bincount(self.src, minlength=self.size), out=ptr[1:])
            self._out = (ptr, self.dst[order], self.same[order])
        return self._out

    def tags_of(self, words: list[str]) -> list:
        return tags_of(self.source, words) if self.source is not None else []


def build_phone_graph(graph: WordGraph, lexicon: Lexicon) -> PhoneGraph:
    """Minimise the word graph (:func:`minimize`), then expand each word arc into phone chains (one per pronunciation)."""
    with without_collection():
        return _build_phone_graph(graph, lexicon)


def _goes_on(automaton: WordAutomaton, skip: set[str]) -> list[bool]:
    """Per node: can the sentence go on with a word that is not a skip word ("… in the kitchen", not "… please")?

    Home Assistant's skip words ("please", "for me") may follow any sentence; a command that only
    they could continue is whole.  A path through skip words to other words ("… for five minutes")
    still goes on.
    """
    goes_on = [any(w not in skip for w, _ in arcs) for arcs in automaton.arcs]
    into: list[list[int]] = [[] for _ in automaton.arcs]  # skip-word arcs, reversed
    for u, arcs in enumerate(automaton.arcs):
        for w, v in arcs:
            if w in skip:
                into[v].append(u)
    todo = [v for v, on in enumerate(goes_on) if on]
    while todo:
        v = todo.pop()
        for u in into[v]:
            if not goes_on[u]:
                goes_on[u] = True
                todo.append(u)
    return goes_on


def _build_phone_graph(graph: WordGraph, lexicon: Lexicon) -> PhoneGraph:
    automaton = minimize(graph)
    lexicon.prefetch(sorted({w for arcs in automaton.arcs for w, _ in arcs}))
    phone: list[int] = []
    word_of: list[int] = []
    words: list[str] = []
    word_index: dict[str, int] = {}
    first_states: list[list[int]] = [[] for _ in automaton.arcs]  # word-start states of arcs leaving node
    ends: list[tuple[int, int]] = []  # (last state of a chain, node it leads to)
    src: list[int] = []
    dst: list[int] = []
    missing: set[str] = set()
    for u, arcs in enumerate(automaton.arcs):
        for w, v in arcs:
            prons = lexicon(w)
            if not prons:
                missing.add(w)
                continue
            wid = word_index.setdefault(w, len(words))
            if wid == len(words):
                words.append(w)
            for pron in prons:
                s = len(phone)
                phone.extend(LABEL_ID[p] for p in pron)
                word_of.append(wid)
                word_of.extend([-1] * (len(pron) - 1))
                src.extend(range(s, s + len(pron) - 1))
                dst.extend(range(s + 1, s + len(pron)))
                first_states[u].append(s)
                ends.append((s + len(pron) - 1, v))
    if missing:
        raise GrammarError(f"sentences: no pronunciation for: {', '.join(sorted(missing))}")
    if not phone:
        raise GrammarError("sentences: the grammar has no words")
    n = len(phone)
    final = np.zeros(n, dtype=bool)
    more = np.zeros(n, dtype=bool)
    goes_on = _goes_on(automaton, {w for phrase in graph.skip_words for w in text_words(phrase)})
    for last, v in ends:
        nxt = first_states[v]
        src.extend([last] * len(nxt))
        dst.extend(nxt)
        final[last] = v in automaton.finals
        more[last] = goes_on[v]
    entry = np.zeros(n, dtype=bool)
    entry[first_states[0]] = True
    phone_arr = np.asarray(phone, dtype=np.int64)
    src_arr = np.asarray(src, dtype=np.int64)
    dst_arr = np.asarray(dst, dtype=np.int64)
    order = np.argsort(dst_arr, kind="stable")
    src_arr, dst_arr = src_arr[order], dst_arr[order]
    if dst_arr.size:
        boundaries = np.flatnonzero(np.diff(dst_arr)) + 1
        seg_start = np.concatenate([[0], boundaries]).astype(np.int64)
        seg_state = dst_arr[seg_start]
    else:
        seg_start = seg_state = np.zeros(0, dtype=np.int64)
    phones = PhoneGraph(phone_arr, np.asarray(word_of, dtype=np.int64), words, entry, final, more, src_arr,
                        dst_arr, phone_arr[src_arr] == phone_arr[dst_arr], seg_start, seg_state, graph)
    _ = phones.out_edges  # built now, not on the first command
    return phones


@dataclass(frozen=True)
class Hypothesis:
    words: list[str]
    tags: list  # vcd.grammar.Tag of each word
    score: float  # log-probability of the best grammar path (without the phone bonus that helped choose it)
    free_score: float  # log-probability of the best unconstrained phone path
    speech_frames: int  # frames where the model's best label is not blank
    continues: bool = False  # the grammar has longer sentences that start with these words
    agreement: float = 0.0  # share of the speech frames where the path's label is the frame's best label
    free_confidence: float = 0.0  # mean probability of the best label over the speech frames
    coverage: float = 0.0  # share of the path's phones that are some frame's best label where the path says them
    speech: float = float("nan")  # speech presence of the segment (vcd.presence), set by the recogniser when it weighs it
    weakest: float = 0.0  # the largest per-word gap to the frames' best labels, per speech frame of the word
    second: float = float("nan")  # 1 or 0: a second recogniser heard the same sentence (vcd.second_opinion); NaN: not asked
    margin: float = float("nan")  # how much better it scores than the best sentence ending in another word, per speech
    # frame (search(margin=True); NaN: not measured)
    snr: float = float("nan")  # the segment's estimated SNR, dB (vcd.audio.estimate_snr_db), set by the recogniser

    @property
    def gap_per_frame(self) -> float:
        """How much worse the grammar path scores than the free phone loop, per speech frame."""
        return (self.free_score - self.score) / max(self.speech_frames, 1)

    @property
    def fit_per_frame(self) -> float:
        """The grammar path's own log-probability per speech frame: how well the sentence fits the sound."""
        return self.score / max(self.speech_frames, 1)

    @property
    def snr_shortfall(self) -> float:
        """How many dB the segment's estimated SNR falls short of :data:`vcd.audio.SNR_KNEE_DB` (0 in a quiet room)."""
        return snr_shortfall_db(self.snr)


# Log-probability credited for each phone a grammar path enters.  CTC paths through short words need
# fewer confident phone frames, so with none, unclear speech drifts to the shortest sentence
# ("three" heard as "eight"); the value was chosen on held-out real speakers (see the model card).
PHONE_BONUS = 1.5

# Runs of frames where the blank is at least this likely are searched as one frame (see collapse_blank_runs).
BLANK_RUN_LOG_PROB = float(np.log(0.99))

# The pruned search keeps at most this many phone states per frame (the best ones), whatever the beam.
MAX_ACTIVE = 4000


def collapse_blank_runs(log_probs: np.ndarray, threshold: float = BLANK_RUN_LOG_PROB) -> np.ndarray:
    """Merge every run of blank-dominated frames into one frame whose scores are the run's sums.

    A path that holds one label through the run (blank, or a phone being held) scores exactly as
    before; only paths that change label inside a near-certain blank run are lost.  About half the
    frames of a command are such runs (silence, gaps between words), so the search does half the work.
    """
    return np.add.reduceat(log_probs, _run_starts(log_probs, threshold), axis=0) if len(log_probs) else log_probs


def _run_starts(log_probs: np.ndarray, threshold: float = BLANK_RUN_LOG_PROB) -> np.ndarray:
    """The first frame of each frame :func:`collapse_blank_runs` makes."""
    blankish = log_probs[:, 0] >= threshold
    starts = np.ones(len(log_probs), dtype=bool)
    starts[1:] = ~(blankish[1:] & blankish[:-1])
    return np.flatnonzero(starts)


@dataclass(frozen=True)
class _Frames:
    """What both searches need of the log-probabilities besides the frames they search."""

    searched: np.ndarray  # the frames searched (blank runs collapsed, or all)
    best_label: np.ndarray  # per searched frame: the best label of a speech frame, else 0
    free: float  # the free loop's log-probability (every frame)
    speech: int  # frames where the best label is not blank
    free_confidence: float  # mean probability of the best label over those frames

    def hypothesis(self, graph: PhoneGraph, words_rev: list[int], score: float, end: int,
                   labels: np.ndarray, phone_at: np.ndarray, phones: int, word_at: np.ndarray) -> Hypothesis:
        """The :class:`Hypothesis` of a path that says ``labels`` (per searched frame; 0: blank), the
        ``phone_at`` each frame (which of its ``phones`` phones, counted from the end; -1: blank) and
        the ``word_at`` (which word, counted from the end; -1: before the first)."""
        words = [graph.words[w] for w in reversed(words_rev)]
        speech = self.best_label != 0
        agreement = float(np.mean(labels[speech] == self.best_label[speech])) if speech.any() else 1.0
        heard = np.unique(phone_at[(labels == self.best_label) & (labels != 0)])
        return Hypothesis(words, graph.tags_of(words), score, self.free, self.speech, bool(graph.more[end]),
                          agreement, self.free_confidence, heard.size / max(phones, 1),
                          weakest=self.weakest_word(labels, word_at, len(words_rev)))

    def weakest_word(self, labels: np.ndarray, word_at: np.ndarray, words: int) -> float:
        """The largest per-word gap: for each word, the sum over its frames (from its first phone to the next
        word's; blanks after it included) of the frame's best log-probability minus the path's, per frame
        of it whose best label is not blank (at least 1).  Talk fitted onto a sentence leaves some word
        unheard; a command in noise is blurred everywhere."""
        inside = word_at >= 0
        if not words or not inside.any():
            return 0.0
        frames = np.flatnonzero(inside)
        lost = self.searched[frames].max(axis=1) - self.searched[frames, labels[frames]]
        per_word = np.bincount(word_at[frames], weights=lost, minlength=words)
        speech = np.bincount(word_at[frames], weights=self.best_label[frames] != 0, minlength=words)
        return float((per_word / np.maximum(speech, 1.0)).max())

    def nothing(self, score: float) -> Hypothesis:
        return Hypothesis([], [], score, self.free, self.speech, free_confidence=self.free_confidence)


def _prepare(log_probs: np.ndarray, collapse: bool) -> _Frames:
    lp = np.ascontiguousarray(log_probs, dtype=np.float32)
    best, best_label = lp.max(axis=1), lp.argmax(axis=1)
    speech = best_label != 0
    free_confidence = float(np.exp(best[speech]).mean()) if speech.any() else 1.0
    if not collapse or not len(lp):
        return _Frames(lp, best_label, float(best.sum()), int(speech.sum()), free_confidence)
    # A speech frame is never blank-dominated, so it is a searched frame of its own.
    starts = _run_starts(lp)
    return _Frames(np.add.reduceat(lp, starts, axis=0), best_label[starts], float(best.sum()), int(speech.sum()),
                   free_confidence)


def search(graph: PhoneGraph, log_probs: np.ndarray, beam: float = 0.0, collapse: bool = True,
           phone_bonus: float | None = None, margin: bool = False) -> Hypothesis:
    """The best sentence: :func:`viterbi` (exact) when ``beam`` is 0, else :func:`beam_search` with that beam.
    ``margin``: also measure :attr:`Hypothesis.margin` (a few more backtraces; NaN without)."""
    if beam > 0:
        return beam_search(graph, log_probs, beam, collapse=collapse, phone_bonus=phone_bonus, margin=margin)
    return viterbi(graph, log_probs, collapse=collapse, phone_bonus=phone_bonus, margin=margin)


def viterbi(graph: PhoneGraph, log_probs: np.ndarray, collapse: bool = True,
            phone_bonus: float | None = None, margin: bool = False) -> Hypothesis:
    """Best path of ``graph`` through CTC ``log_probs`` (frames, labels) and the free-loop score: every state, every frame.

    The free-loop score and the speech-frame count come from every frame; the grammar search runs on
    :func:`collapse_blank_runs` of them unless ``collapse`` is false.  Each phone the path enters earns
    ``phone_bonus`` (default :data:`PHONE_BONUS`) while paths compete; the returned score leaves it out,
    so confidence still compares plain log-probabilities.
    """
    bonus = np.float32(PHONE_BONUS if phone_bonus is None else phone_bonus)
    prepared = _prepare(log_probs, collapse)
    lp = prepared.searched
    frames = lp.shape[0]
    n = graph.size
    P_hist = np.empty((frames, n), dtype=np.float32)
    B_hist = np.empty((frames, n), dtype=np.float32)
    P = np.full(n, _NEG, dtype=np.float32)
    B = np.full(n, _NEG, dtype=np.float32)
    b0 = np.float32(0.0)
    b0_hist = np.empty(frames, dtype=np.float32)
    same, src, seg_start, seg_state, entry = graph.same, graph.src, graph.seg_start, graph.seg_state, graph.entry
    entry_idx = np.flatnonzero(entry)
    emit = lp[:, graph.phone]  # (frames, S) emission scores, gathered once
    blank = lp[:, 0]
    incoming = np.empty(n, dtype=np.float32)
    for t in range(frames):
        incoming.fill(_NEG)
        if src.size:
            cand = np.maximum(B[src], np.where(same, _NEG, P[src]))
            incoming[seg_state] = np.maximum.reduceat(cand, seg_start)
        incoming[entry_idx] = np.maximum(incoming[entry_idx], b0)
        incoming += bonus
        newP = np.maximum(P, incoming)
        newP += emit[t]
        B = np.maximum(P, B)
        B += blank[t]
        P = newP
        b0 = b0 + blank[t]
        P_hist[t], B_hist[t], b0_hist[t] = P, B, b0
    end_scores = np.where(graph.final, np.maximum(P, B), _NEG)
    best = int(end_scores.argmax())
    score = float(end_scores[best])
    if score <= _NEG / 2:
        return prepared.nothing(score)

    def backtrace(s: int) -> tuple:
        words_rev: list[int] = []
        entered = 0
        labels = np.zeros(frames, dtype=np.int64)
        phone_at = np.full(frames, -1, dtype=np.int64)
        word_at = np.full(frames, -1, dtype=np.int64)
        in_blank = B[s] >= P[s]
        for t in range(frames - 1, -1, -1):
            word_at[t] = len(words_rev)
            if in_blank:  # B[t][s] = max(P[t-1][s], B[t-1][s]) + blank
                in_blank = bool(B_hist[t - 1][s] >= P_hist[t - 1][s])
                continue
            labels[t], phone_at[t] = graph.phone[s], entered
            # P[t][s] = max(P[t-1][s] (same phone held), best incoming edge, start) + phone
            kind, pred, pred_blank = "start", -1, False
            if t > 0:
                best_val = np.float32(b0_hist[t - 1]) if entry[s] else _NEG
                lo, hi = np.searchsorted(graph.dst, [s, s + 1])
                if hi > lo:
                    srcs = src[lo:hi]
                    via_b = B_hist[t - 1][srcs]
                    via_p = np.where(same[lo:hi], _NEG, P_hist[t - 1][srcs])
                    vals = np.maximum(via_b, via_p)
                    k = int(vals.argmax())
                    if vals[k] > best_val:
                        kind, pred, pred_blank, best_val = "edge", int(srcs[k]), bool(via_b[k] >= via_p[k]), vals[k]
                if P_hist[t - 1][s] >= best_val + bonus:
                    kind = "self"
            if kind != "self":  # the path entered this state here
                entered += 1
                if graph.word[s] >= 0:
                    words_rev.append(int(graph.word[s]))
            if kind == "start":
                break
            if kind == "edge":
                s, in_blank = pred, pred_blank
        return words_rev, labels, phone_at, word_at, entered

    return _traced(prepared, graph, backtrace, end_scores, best, best, score, bonus, margin)


def _traced(prepared: _Frames, graph: PhoneGraph, backtrace, end_scores: np.ndarray, at: int, end: int, score: float,
            bonus: np.float32, margin: bool, beam: float = 0.0) -> Hypothesis:
    """The :class:`Hypothesis` of the path ``backtrace(at)`` traces back (its words reversed, labels, phone and word
    of each frame, phones entered) from final state ``end`` with ``score`` (the phone bonus included), and its
    margin (:func:`_with_margin`) where asked."""
    words_rev, labels, phone_at, word_at, entered = backtrace(at)
    hyp = prepared.hypothesis(graph, words_rev, score - float(bonus) * entered, end, labels, phone_at, entered,
                              word_at)
    if not margin:
        return hyp
    return _with_margin(hyp, graph, end_scores, at, bonus, lambda i: backtrace(i)[::4], prepared.speech, beam)


def _with_margin(hyp: Hypothesis, graph: PhoneGraph, end_scores: np.ndarray, best: int, bonus: np.float32, words_of,
                 speech: int, beam: float = 0.0) -> Hypothesis:
    """``hyp`` with its :attr:`Hypothesis.margin`: the best path's score less that of the best path ending in another
    final phone state whose words differ (``words_of(state)``: its words reversed and phones entered), per speech
    frame, without the phone bonus; at most :data:`MAX_RIVALS` final states are traced back.  Exact for a grammar of
    one-word sentences; sentences that share their last word merge before the end, so there it is the margin to the
    best sentence with another last word.  With no such path: :data:`MARGIN_NONE`, or for the pruned search
    (``beam`` > 0), whose rivals fell out of the beam, the beam per speech frame (at most that)."""
    own = hyp.score
    order = np.argsort(-end_scores, kind="stable")
    mine = hyp.words[::-1]  # as words_of gives them: last word first
    for s in order[:MAX_RIVALS + 1]:
        if s == best or end_scores[s] <= _NEG / 2:
            continue
        rival_rev, rival_entered = words_of(int(s))
        if [graph.words[w] for w in rival_rev] != mine:
            rival = float(end_scores[s]) - float(bonus) * rival_entered
            margin = float(np.clip((own - rival) / max(speech, 1), -MARGIN_NONE, MARGIN_NONE))
            return replace(hyp, margin=margin)
    return replace(hyp, margin=min(MARGIN_NONE, beam / max(speech, 1)) if beam > 0 else MARGIN_NONE)


# How many final states _with_margin traces back looking for a path with other words, and the margin it
# reports (nats per speech frame) when none is found: a sentence with no rival in the search is as sure
# as the search can say; margins are clipped to ±MARGIN_NONE.
MAX_RIVALS = 8
MARGIN_NONE = 2.0


_HELD, _EDGE, _START = 0, 1, 2


def beam_search(graph: PhoneGraph, log_probs: np.ndarray, beam: float, collapse: bool = True,
                phone_bonus: float | None = None, max_active: int = MAX_ACTIVE, margin: bool = False) -> Hypothesis:
    """:func:`viterbi` over the states whose score is within ``beam`` (log-probability) of the frame's best.

    Token passing: each frame, only the surviving states (at most ``max_active``) send their scores along
    their outgoing edges, all at once in numpy; each frame keeps, per surviving state, where its phone
    token came from, so the memory is the states searched, not frames × states.
    """
    bonus = np.float32(PHONE_BONUS if phone_bonus is None else phone_bonus)
    prepared = _prepare(log_probs, collapse)
    lp = prepared.searched
    ptr, out_dst, out_same = graph.out_edges
    phone, n = graph.phone, graph.size
    entry_idx = np.flatnonzero(graph.entry)
    # where a phone token came from, packed in one integer: source state << 4 | b_from_b << 3 | kind << 1 | via blank
    entry_code = np.full(entry_idx.size, _START << 1 | 1, dtype=np.int64)
    best_in = np.full(n, _NEG, dtype=np.float32)  # scratch, indexed by state; _NEG again after each frame
    slot = np.zeros(n, dtype=np.int64)
    carry_b = np.full(n, _NEG, dtype=np.float32)
    b_from_b = np.zeros(n, dtype=np.int64)
    act = np.zeros(0, dtype=np.int64)
    P = B = np.zeros(0, dtype=np.float32)
    b0 = np.float32(0.0)
    start_open = True
    history: list[tuple[np.ndarray, np.ndarray]] = []  # per frame: the states kept and their packed codes
    for t in range(lp.shape[0]):
        row = lp[t]
        blank = row[0]
        starts = ptr[act]
        counts = ptr[act + 1] - starts
        rep = np.repeat(np.arange(act.size), counts)
        edges = np.arange(rep.size) + np.repeat(starts - (np.cumsum(counts) - counts), counts)
        src_b, src_p = B[rep], P[rep]
        via_blank = out_same[edges] | (src_b >= src_p)
        parts_ids = [act, out_dst[edges]]
        parts_val = [P, np.where(via_blank, src_b, src_p) + bonus]
        parts_code = [act << 4, (act[rep] << 4) | (_EDGE << 1) | via_blank]
        if start_open:
            parts_ids.append(entry_idx)
            parts_val.append(np.full(entry_idx.size, b0 + bonus, dtype=np.float32))
            parts_code.append(entry_code)
        ids = np.concatenate(parts_ids)
        vals = np.concatenate(parts_val)
        np.maximum.at(best_in, ids, vals)
        winners = np.flatnonzero(vals >= best_in[ids])
        slot[ids[winners]] = winners  # one winner per state (the last written)
        chosen = winners[slot[ids[winners]] == winners]
        new_ids = ids[chosen]
        best_in[ids] = _NEG
        carry_b[act] = np.maximum(P, B) + blank
        b_from_b[act] = (B >= P) << 3
        new_P = vals[chosen] + row[phone[new_ids]]
        new_B = carry_b[new_ids]
        carry_b[act] = _NEG
        b0 = np.float32(b0 + blank)
        score = np.maximum(new_P, new_B)
        top = max(float(score.max()) if score.size else float(_NEG), float(b0))
        keep = score >= top - beam
        if np.count_nonzero(keep) > max_active:
            keep &= score >= np.partition(score, score.size - max_active)[score.size - max_active]
        start_open = bool(b0 >= top - beam)
        kept = chosen[keep]
        act, P, B = ids[kept], new_P[keep], new_B[keep]
        history.append((act, np.concatenate(parts_code)[kept] | b_from_b[act]))
    end_scores = np.where(graph.final[act], np.maximum(P, B), _NEG) if act.size else np.zeros(0, np.float32)
    if not end_scores.size or end_scores.max() <= _NEG / 2:
        return prepared.nothing(float(_NEG))
    k = int(end_scores.argmax())
    score, best = float(end_scores[k]), int(act[k])

    def backtrace(k: int) -> tuple:
        s, in_blank, entered = int(act[k]), bool(B[k] >= P[k]), 0
        words_rev: list[int] = []
        labels = np.zeros(len(history), dtype=np.int64)
        phone_at = np.full(len(history), -1, dtype=np.int64)
        word_at = np.full(len(history), -1, dtype=np.int64)
        for t in range(len(history) - 1, -1, -1):
            ids, codes = history[t]
            code = int(codes[np.flatnonzero(ids == s)[0]])
            word_at[t] = len(words_rev)
            if in_blank:  # B[t][s] = max(P[t-1][s], B[t-1][s]) + blank
                in_blank = bool(code & 8)
                continue
            labels[t], phone_at[t] = phone[s], entered
            kind = (code >> 1) & 3
            if kind == _HELD:
                continue
            entered += 1
            if graph.word[s] >= 0:
                words_rev.append(int(graph.word[s]))
            if kind == _START:
                break
            s, in_blank = code >> 4, bool(code & 1)
        return words_rev, labels, phone_at, word_at, entered

    return _traced(prepared, graph, backtrace, end_scores, k, best, score, bonus, margin, beam)
