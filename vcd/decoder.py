"""Grammar-constrained CTC search: the word graph expanded to phones, Viterbi over the model's posteriors."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vcd.errors import GrammarError
from vcd.grammar import WordGraph
from vcd.phonetics import LABEL_ID, Lexicon

_LOGGER = logging.getLogger(__name__)

_NEG = np.float32(-1e30)


@dataclass
class PhoneGraph:
    """Phone states of the grammar, CTC-ready.

    State ``s`` emits phone ``phone[s]``; ``word[s]`` is the word a state
    starts (-1 inside a word); edges ``src[e] → dst[e]`` are sorted by dst.
    """

    phone: np.ndarray  # (S,) label ids
    word: np.ndarray  # (S,) index into words, or -1
    tag: np.ndarray  # (S,) index into tags of the word a state starts (-1 inside a word)
    tags: list  # vcd.grammar.Tag of each word use
    words: list[str]
    entry: np.ndarray  # (S,) bool: may start the utterance
    final: np.ndarray  # (S,) bool: may end the utterance
    src: np.ndarray  # (E,)
    dst: np.ndarray  # (E,) sorted
    same: np.ndarray  # (E,) bool: src and dst emit the same phone (CTC needs a blank between)
    seg_start: np.ndarray  # start offset into the edges of each state with incoming edges
    seg_state: np.ndarray  # the states those segments belong to

    @property
    def size(self) -> int:
        return int(self.phone.size)


def build_phone_graph(graph: WordGraph, lexicon: Lexicon) -> PhoneGraph:
    """Expand each word arc into phone chains (one per pronunciation) and remove epsilons."""
    lexicon.prefetch([w for arcs in graph.arcs for _, w, _ in arcs if w])
    n_nodes = len(graph.arcs)
    closure_cache: dict[int, list[int]] = {}

    def closure(node: int) -> list[int]:
        if node not in closure_cache:
            closure_cache[node] = sorted(graph.closure({node: ()}))
        return closure_cache[node]

    phone, word_of, tag_of = [], [], []
    words: list[str] = []
    word_index: dict[str, int] = {}
    first_states: list[list[int]] = [[] for _ in range(n_nodes)]  # word-start states of arcs leaving node
    ends: list[tuple[int, int]] = []  # (last state of a chain, node it leads to)
    src, dst = [], []
    missing: set[str] = set()
    for u in range(n_nodes):
        for v, w, tag in graph.arcs[u]:
            if w is None:
                continue
            prons = lexicon(w)
            if not prons:
                missing.add(w)
                continue
            wid = word_index.setdefault(w, len(words))
            if wid == len(words):
                words.append(w)
            for pron in prons:
                prev = -1
                for k, p in enumerate(pron):
                    s = len(phone)
                    phone.append(LABEL_ID[p])
                    word_of.append(wid if k == 0 else -1)
                    tag_of.append(tag if k == 0 else -1)
                    if prev >= 0:
                        src.append(prev)
                        dst.append(s)
                    else:
                        first_states[u].append(s)
                    prev = s
                ends.append((prev, v))
    if missing:
        raise GrammarError(f"sentences: no pronunciation for: {', '.join(sorted(missing))}")
    if not phone:
        raise GrammarError("sentences: the grammar has no words")
    n = len(phone)
    reach_first: dict[int, list[int]] = {}

    def starts_after(node: int) -> list[int]:
        if node not in reach_first:
            reach_first[node] = [s for c in closure(node) for s in first_states[c]]
        return reach_first[node]

    final = np.zeros(n, dtype=bool)
    for last, v in ends:
        nxt = starts_after(v)
        src.extend([last] * len(nxt))
        dst.extend(nxt)
        if graph.final in closure(v):
            final[last] = True
    entry = np.zeros(n, dtype=bool)
    entry[starts_after(graph.start)] = True
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
    return PhoneGraph(phone_arr, np.asarray(word_of, dtype=np.int64), np.asarray(tag_of, dtype=np.int64),
                      graph.tags, words, entry, final, src_arr,
                      dst_arr, phone_arr[src_arr] == phone_arr[dst_arr], seg_start, seg_state)


@dataclass(frozen=True)
class Hypothesis:
    words: list[str]
    tags: list  # vcd.grammar.Tag of each word
    score: float  # log-probability of the best grammar path (without the phone bonus that helped choose it)
    free_score: float  # log-probability of the best unconstrained phone path
    speech_frames: int  # frames where the model's best label is not blank

    @property
    def gap_per_frame(self) -> float:
        """How much worse the grammar path scores than the free phone loop, per speech frame."""
        return (self.free_score - self.score) / max(self.speech_frames, 1)

    @property
    def fit_per_frame(self) -> float:
        """The grammar path's own log-probability per speech frame: how well the sentence fits the sound."""
        return self.score / max(self.speech_frames, 1)


# Log-probability credited for each phone a grammar path enters.  CTC paths through short words need
# fewer confident phone frames, so with none, unclear speech drifts to the shortest sentence
# ("three" heard as "eight"); the value was chosen on held-out real speakers (see the model card).
PHONE_BONUS = 1.5

# Runs of frames where the blank is at least this likely are searched as one frame (see collapse_blank_runs).
BLANK_RUN_LOG_PROB = float(np.log(0.99))


def collapse_blank_runs(log_probs: np.ndarray, threshold: float = BLANK_RUN_LOG_PROB) -> np.ndarray:
    """Merge every run of blank-dominated frames into one frame whose scores are the run's sums.

    A path that holds one label through the run (blank, or a phone being held) scores exactly as
    before; only paths that change label inside a near-certain blank run are lost.  About half the
    frames of a command are such runs (silence, gaps between words), so the search does half the work.
    """
    blankish = log_probs[:, 0] >= threshold
    starts = np.ones(len(log_probs), dtype=bool)
    starts[1:] = ~(blankish[1:] & blankish[:-1])
    return np.add.reduceat(log_probs, np.flatnonzero(starts), axis=0) if len(log_probs) else log_probs


def viterbi(graph: PhoneGraph, log_probs: np.ndarray, collapse: bool = True,
            phone_bonus: float | None = None) -> Hypothesis:
    """Best path of ``graph`` through CTC ``log_probs`` (frames, labels) and the free-loop score.

    The free-loop score and the speech-frame count come from every frame; the grammar search runs on
    :func:`collapse_blank_runs` of them unless ``collapse`` is false.  Each phone the path enters earns
    ``phone_bonus`` (default :data:`PHONE_BONUS`) while paths compete; the returned score leaves it out,
    so confidence still compares plain log-probabilities.
    """
    bonus = np.float32(PHONE_BONUS if phone_bonus is None else phone_bonus)
    lp = np.ascontiguousarray(log_probs, dtype=np.float32)
    free = float(lp.max(axis=1).sum())
    speech = int((lp.argmax(axis=1) != 0).sum())
    if collapse:
        lp = collapse_blank_runs(lp)
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
        return Hypothesis([], [], score, free, speech)
    words_rev: list[int] = []
    tags_rev: list[int] = []
    s = best
    entered = 0
    in_blank = B[best] >= P[best]
    for t in range(frames - 1, -1, -1):
        if in_blank:  # B[t][s] = max(P[t-1][s], B[t-1][s]) + blank
            in_blank = bool(B_hist[t - 1][s] >= P_hist[t - 1][s])
            continue
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
                tags_rev.append(int(graph.tag[s]))
        if kind == "start":
            break
        if kind == "edge":
            s, in_blank = pred, pred_blank
    return Hypothesis([graph.words[w] for w in reversed(words_rev)], [graph.tags[t] for t in reversed(tags_rev)],
                      score - float(bonus) * entered, free, speech)
