"""Confidence calibration: choose the rejection point from held-out voices and held-out speakers."""

from __future__ import annotations

import importlib.util
import logging
import math
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from vcd.audio import read_audio
from vcd.decoder import viterbi
from vcd.grammar import spoken_words
from vcd.model import load_model, save_model
from vcd.recognizer import REJECTION_FEATURES as RUNTIME_REJECTION_FEATURES
from vcd.training.augment import babble, mix_at_snr
from vcd.training.corpora import speaker_split
from vcd.transcripts import Utterance, read_transcripts, words_of

_LOGGER = logging.getLogger(__name__)


def read_clips(clips: list[Utterance]) -> list[np.ndarray]:
    """The audio of ``clips``; an unreadable clip is just left out."""
    audios = []
    for clip in clips:
        try:
            audios.append(read_audio(clip.path))
        except Exception:  # noqa: BLE001 - an unreadable clip is just left out
            continue
    return audios


def gaps(recognizer, audios: list[np.ndarray], babble_db: float | None = None, fits: list | None = None) -> np.ndarray:
    """Per-speech-frame log-probability gap between the free phone loop and the best grammar path.

    With ``babble_db``, each clip is first mixed with the talk of three of the other clips at that SNR
    (background talk); ``fits``, when given, receives each clip's :attr:`Hypothesis.fit_per_frame`.
    """
    out = []
    rng = np.random.default_rng(0)
    for i, audio in enumerate(tqdm(audios, desc="calibrating", unit="clip", leave=False)):
        if babble_db is not None and len(audios) > 3:
            others = [audios[j] for j in rng.choice([j for j in range(len(audios)) if j != i], 3, replace=False)]
            audio = mix_at_snr(audio, babble(others, audio.size, 3, rng), babble_db)
        hyp = viterbi(recognizer.graph, recognizer.posteriors(audio))
        out.append(hyp.gap_per_frame if hyp.words else math.inf)
        if fits is not None:
            fits.append(hyp.fit_per_frame if hyp.words else -math.inf)
    return np.asarray(out, dtype=np.float64)


def calibration_sets(data_dir: Path | None, heldout_dir: Path, intents_graph) -> tuple[list[Utterance], list[Utterance]]:
    """Positives: every other clip of the held-out synthetic voices (the rest stay for the benchmark).

    Negatives: validation speakers' clips whose transcript the grammar cannot say (Common Voice,
    speechocean762, Speech Commands) — never the wake-word or FSDD clips the benchmark uses.
    """
    positives = read_transcripts(heldout_dir)[0::2] if (heldout_dir / "transcripts.jsonl").exists() else []
    negatives: list[Utterance] = []
    if data_dir:
        for corpus in ("commonvoice", "speechocean762", "speechcommands-v2"):
            if (data_dir / corpus / "transcripts.jsonl").exists():
                negatives += [u for u in read_transcripts(data_dir / corpus)
                              if speaker_split(corpus, u.speaker) == "validation"
                              and intents_graph.parse(spoken_words(u.text)) is None]
    return positives, negatives[:200]


# Share of held-out real out-of-grammar sentences the default threshold may let through.
FALSE_ACCEPT_BUDGET = 0.01


def choose_threshold(pos: np.ndarray, neg: np.ndarray, false_accepts: float = FALSE_ACCEPT_BUDGET) -> float:
    """The gap above which a sentence is rejected.

    As loose as the negatives allow (at most ``false_accepts`` of them accepted), so real voices,
    which fit the model less well than synthetic ones, are rejected as rarely as possible; but
    never so strict that more than 2 % of the synthetic positives are rejected.
    """
    pos = pos[np.isfinite(pos)]
    if not pos.size:
        return 1.0
    limit = float(np.percentile(pos, 98))
    finite_neg = neg[np.isfinite(neg)]
    if finite_neg.size:
        return max(limit, float(np.percentile(finite_neg, 100 * false_accepts)))
    return limit


# Share of validation speakers' non-command talk under background talk the fit floor may let through.
BABBLE_FALSE_ACCEPT_BUDGET = 0.03
BABBLE_SNR_DB = 10.0


def choose_fit_floor(neg_gaps: np.ndarray, neg_fits: np.ndarray, threshold: float, pos_fits: np.ndarray,
                     budget: float = BABBLE_FALSE_ACCEPT_BUDGET) -> float | None:
    """The loosest floor on the sentence's fit (log-probability per speech frame) that accepts at most
    ``budget`` of the negatives (talk under babble) still below the gap ``threshold``; None when the gap
    alone keeps within the budget.  Never above the 2nd percentile of the positives' fits.
    """
    passing = np.sort(neg_fits[(neg_gaps <= threshold) & np.isfinite(neg_fits)])[::-1]  # best fit first
    allowed = int(np.floor(budget * neg_gaps.size))
    if passing.size <= allowed:
        return None
    floor = float(np.nextafter(passing[allowed], np.inf))  # fits at or above it: `allowed` negatives
    finite_pos = pos_fits[np.isfinite(pos_fits)]
    return min(floor, float(np.percentile(finite_pos, 2))) if finite_pos.size else floor


def real_word_clips(data_dir: Path | None) -> list[Utterance]:
    """Validation speakers saying single words (Speech Commands): reported, not used to choose."""
    folder = data_dir / "speechcommands-v2" if data_dir else None
    if folder is None or not (folder / "transcripts.jsonl").exists():
        return []
    return [u for u in read_transcripts(folder) if u.text and speaker_split(folder.name, u.speaker) == "validation"][:300]


def word_list_grammar(words: list[str], folder: Path, name: str = "words") -> Path:
    """``folder/NAME.yaml``: a sentence file whose only sentences are ``words`` (one list, slot ``word``).

    Calibration reports use it, and the benchmarks' closed command sets (a corpus's sentences).
    """
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"language": "en", "intents": {"Word": {"data": [{"sentences": ["{word}"]}]}},
                                    "lists": {"word": {"values": sorted(set(words))}}}), encoding="utf-8")
    return path


def calibrate(model_file: Path, data_dir: Path | None, heldout_dir: Path) -> float:
    """Write ``confidence_scale`` into ``model_file`` so that confidence 0.5 is the chosen rejection point,
    and ``fit_floor`` (:func:`choose_fit_floor`) so that background talk is rarely taken for a command."""
    from vcd.recognizer import Recognizer

    torch.set_num_threads(2)
    model, labels, extra = load_model(model_file)
    save_model(model, model_file, labels, extra, half=True)  # the released file has float16 weights: calibrate those
    recognizer = Recognizer.load(None, model_file)
    positives, negatives = calibration_sets(data_dir, heldout_dir, recognizer.word_graph)
    pos_fits: list[float] = []
    negative_audio = read_clips(negatives)  # decoded twice: as they are, and under babble
    pos, neg = gaps(recognizer, read_clips(positives), fits=pos_fits), gaps(recognizer, negative_audio)
    threshold = choose_threshold(pos, neg)
    babble_fits: list[float] = []
    babble_gaps = gaps(recognizer, negative_audio, babble_db=BABBLE_SNR_DB, fits=babble_fits)
    fit_floor = choose_fit_floor(babble_gaps, np.asarray(babble_fits), threshold, np.asarray(pos_fits))
    real = real_word_clips(data_dir)
    if real:
        with tempfile.TemporaryDirectory() as tmp:
            grammar = word_list_grammar([" ".join(words_of(u.text)) for u in real], Path(tmp))
            real_gaps = gaps(Recognizer.load(grammar, model_file), read_clips(real))
    else:
        real_gaps = np.zeros(0)
    scale = math.log(2.0) / max(threshold, 1e-3)
    extra.update(confidence_scale=scale, fit_floor=fit_floor, calibration={
        "threshold_gap": threshold, "positives": int(pos.size), "negatives": int(neg.size),
        "positives_rejected": float(np.mean(pos > threshold)) if pos.size else None,
        "negatives_rejected": float(np.mean(neg > threshold)) if neg.size else None,
        "real_word_clips": int(real_gaps.size),
        "real_words_rejected": float(np.mean(real_gaps > threshold)) if real_gaps.size else None,
        "babble_negatives_accepted_by_gap": float(np.mean(babble_gaps <= threshold)) if babble_gaps.size else None})
    save_model(model, model_file, labels, extra, half=True)
    _LOGGER.info("reject above a gap of %.3f per speech frame (%s)", threshold, extra["calibration"])
    return scale


# The features a learned rejection rule may use, in the order of vcd.recognizer.REJECTION_FEATURES, and
# those the fitted rule uses (coverage was measured and left out: see docs/training-log.md).
REJECTION_FEATURES = tuple(RUNTIME_REJECTION_FEATURES)
RULE_FEATURES = ("gap", "fit", "agreement", "free_confidence")
CLEAN_FALSE_ACCEPT_BUDGET = 0.01


# Which way each feature may move a sentence's acceptance in a monotone rule: a worse gap, a worse fit,
# less agreement, a less sure model, less speech, a worse weakest word or a smaller margin to another sentence never makes a sentence more acceptable.
REJECTION_SIGNS = {"gap": -1.0, "fit": 1.0, "agreement": 1.0, "free_confidence": 1.0, "coverage": 1.0, "speech": 1.0,
                   "weakest": -1.0, "second": 1.0, "margin": 1.0}


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50,
                 signs: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method (weights, bias); features standardised inside, ``l2`` on the weights.

    With ``signs`` (+1, -1 or 0 per feature: no constraint), a weight whose sign disagrees is set to zero
    and the rest refitted, the worst first, until every weight agrees (an active-set fit).
    """
    active = np.ones(x.shape[1], dtype=bool)
    while True:
        weights = np.zeros(x.shape[1])
        weights[active], bias = _fit_logistic(x[:, active], y, l2, steps)
        wrong = np.zeros(x.shape[1]) if signs is None else np.minimum(weights * np.asarray(signs) * x.std(axis=0), 0.0)
        if not wrong.any():
            return weights, bias
        active[int(np.argmin(wrong))] = False


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, steps: int) -> tuple[np.ndarray, float]:
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = np.diag([l2 * len(x)] * (z.shape[1] - 1) + [0.0])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -60, 60)))
        grad = z.T @ (p - y) + penalty @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + penalty + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    weights = w[:-1] / std
    return weights, float(w[-1] - weights @ mean)


def loosest_cut(scores: np.ndarray, budget: float) -> float:
    """A cut that lets at most ``budget`` of ``scores`` reach it (accepted: score ≥ cut), as low as that allows.

    Halfway between the last score let through and the first one not, so rounding cannot move either.
    """
    ranked = np.sort(scores)[::-1]
    allowed = int(np.floor(budget * ranked.size))
    if allowed >= ranked.size:
        return -np.inf
    return float(ranked[allowed] + 1e-3) if allowed == 0 else float((ranked[allowed] + ranked[allowed - 1]) / 2)


def fit_rejection_rule(x: np.ndarray, right: np.ndarray, talk_clean: np.ndarray, talk_babble: np.ndarray,
                       noise: np.ndarray | None = None, clean_budget: float = CLEAN_FALSE_ACCEPT_BUDGET,
                       babble_budget: float = BABBLE_FALSE_ACCEPT_BUDGET, monotone: bool = True,
                       features: tuple[str, ...] = RULE_FEATURES, noise_guard: bool = True) -> dict:
    """The ``rejection`` entry of a model file (:class:`vcd.recognizer.RejectionRule`).

    ``x`` (decodes × ``features``) are validation decodes: commands (``right``: the best sentence is the
    one said), non-command talk and noise segments (what the VAD cut from noise alone), whose rows are
    also given alone: talk clean and under babble, and ``noise``.

    - The rule: a logistic regression separates right sentences from the rest (talk, noise, and
      commands whose best sentence is wrong); its bias is then moved so that 0.5 is the loosest point
      that accepts at most ``clean_budget`` of the clean talk and ``babble_budget`` of the talk under
      babble (and, without a guard, no noise segment).
    - The noise guard (``noise_guard``, with ``noise``): a second logistic regression, right sentences
      against noise segments only, cut at the loosest point that accepts no noise segment.  Talk and
      noise fool the search differently (talk is sure speech of other words; noise makes the model
      unsure), and one cut for both gives away commands to the rarer of them.
    - ``monotone`` holds each weight to its sign in :data:`REJECTION_SIGNS`.
    """
    signs = np.array([REJECTION_SIGNS[f] for f in features]) if monotone else None
    weights, bias = fit_logistic(x, right.astype(np.float64), signs=signs)
    cuts = [loosest_cut(talk_clean @ weights + bias, clean_budget), loosest_cut(talk_babble @ weights + bias, babble_budget)]
    has_noise = noise is not None and noise.size > 0
    if has_noise and not noise_guard:
        cuts.append(loosest_cut(noise @ weights + bias, 0.0))
    rule = {"features": list(features), "weights": [float(w) for w in weights], "bias": bias - max(cuts)}
    if has_noise and noise_guard:
        commands = x[right]
        guard, guard_bias = fit_logistic(np.vstack([commands, noise]), np.r_[np.ones(len(commands)), np.zeros(len(noise))],
                                         signs=signs)
        rule["noise_guard"] = {"weights": [float(w) for w in guard],
                               "bias": guard_bias - loosest_cut(noise @ guard + guard_bias, 0.0)}
    return rule


# The noise each validation stream gives the learned rule's fit: an hour, so that "no noise segment
# accepted" can back the target of at most one false command an hour (about 600 segments).
REJECTION_NOISE_MINUTES = 60.0


def fit_learned_rejection(model_file: Path, data_dir: Path, stream_min: float = REJECTION_NOISE_MINUTES) -> dict:
    """Choose and fit ``model_file``'s rejection rule (:func:`choose_rejection_rule`) on the validation speakers'
    held-out decodes (:func:`vcd.training.heldout.decodes`: commands clean, at 12 / 6 / 0 dB and in a room; talk clean
    and under babble; ``stream_min`` of each noise stream) and write it into the file and its numpy export.
    What ``benchmarks/rejection_study.py --write`` does from a dump of the same decodes; with pocketsphinx
    installed, then also the second opinion's floor (:func:`choose_second_opinion`), as ``--second-opinion``
    does (PocketSphinx then decodes every sentence: about half as long again); last the strictness in loud rooms
    (:data:`SNR_STRICTNESS_PER_DB`), as ``--snr-strictness`` does."""
    from vcd.recognizer import REJECTION_FEATURES as FEATURES
    from vcd.training.heldout import Draw, decodes

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        draw = Draw(snrs=(12.0, 6.0, 0.0), stream_min=stream_min)
        load = {"model": model_file, "presence": True, "margin": True,
                "second_opinion": importlib.util.find_spec("pocketsphinx") is not None}
        for note, recognizer, audio in tqdm(decodes(data_dir, "validation", Path(tmp), load, draw),
                                            desc="rejection rule", unit="decode", leave=False):
            result, hyp = recognizer.decode(audio)
            if hyp is not None:
                rows.append({**note, "best": result.best_text,
                             "x": [float(getattr(hyp, FEATURES[f])) for f in REJECTION_FEATURES]})
    name, rule = choose_rejection_rule(rows)
    if any(np.isfinite(row["x"][REJECTION_FEATURES.index("second")]) for row in rows):
        floor, rule, _ = choose_second_opinion(rule, rows)
        name += f", second opinion from {floor}" if floor is not None else ", no second opinion within the budgets"
    rule = with_snr_strictness(rule, SNR_STRICTNESS_PER_DB)
    write_rejection_rule(model_file, rule)
    _LOGGER.info("rejection rule from %d validation decodes (%s): %s", len(rows), name, rule)
    return rule


def rejection_rule_from(decodes: list[dict], monotone: bool = True, features: tuple[str, ...] = RULE_FEATURES,
                        noise_guard: bool = True) -> dict:
    """:func:`fit_rejection_rule` on held-out decodes that found a sentence: dicts with ``set``, ``condition``,
    ``best`` (the sentence), ``want`` (commands: the words said) and ``x`` (:data:`REJECTION_FEATURES`);
    the rule uses ``features`` of them.  Commands under unfamiliar noise (``heldout.UNFAMILIAR``) are a
    measurement, never fitted on."""
    from vcd.training.heldout import UNFAMILIAR

    decodes = [d for d in decodes if d["condition"] != UNFAMILIAR]
    columns = [REJECTION_FEATURES.index(f) for f in features]
    x = np.array([d["x"] for d in decodes], dtype=np.float64).reshape(-1, len(REJECTION_FEATURES))[:, columns]

    def of(kind: str, condition: str | None = None) -> np.ndarray:
        return x[[d["set"] == kind and condition in (None, d["condition"]) for d in decodes]]

    right = np.array([d.get("want") == d["best"] for d in decodes], dtype=bool)
    return fit_rejection_rule(x, right, of("talk", "clean"), of("talk", "babble 10 dB"), of("noise"), monotone=monotone,
                              features=tuple(features), noise_guard=noise_guard)


# The candidate rules: these feature sets, each fitted freely or held to its signs (monotone), with one
# cut for talk and noise or a noise guard of its own.  Stop 38 added the same two with the speech presence
# of vcd.presence, stop 39 those with the weakest word's gap (vcd.decoder.Hypothesis.weakest), stop 42 those
# with the margin to the best sentence ending in another word (vcd.decoder.Hypothesis.margin); each written
# down before its decodes.
CANDIDATE_FEATURE_SETS = [("gap", "fit", "agreement", "free_confidence"),
                          ("gap", "fit", "agreement", "free_confidence", "coverage"),
                          ("gap", "fit", "agreement", "free_confidence", "speech"),
                          ("gap", "fit", "agreement", "free_confidence", "coverage", "speech"),
                          ("gap", "fit", "agreement", "free_confidence", "speech", "weakest"),
                          ("gap", "fit", "agreement", "free_confidence", "coverage", "speech", "weakest"),
                          ("gap", "fit", "agreement", "free_confidence", "speech", "margin"),
                          ("gap", "fit", "agreement", "free_confidence", "coverage", "speech", "margin")]
# The choice, fixed at stop 36 before six of its eight candidates were scored: eligible when, for each noise
# stream left out of its fit (an hour each), at most ELIGIBLE_LEFT_OUT of that stream's segments pass;
# among the eligible, the best mean of correct-and-accepted over CHOSEN_ON.  That filter kept out every guarded
# rule for run 22 and chose one too strict to use (mean 60 against 78); since stop 46 each candidate is made
# eligible by the margin its own left-out fits show it needs (left_out_margin), and the best mean of all wins.
ELIGIBLE_LEFT_OUT = 1
CHOSEN_ON = ("clean", "8 kHz", "12 dB", "6 dB", "0 dB", "room+12 dB")


def candidate_rules(features: tuple[str, ...] = REJECTION_FEATURES) -> list[tuple[str, tuple[str, ...], bool, bool]]:
    """(name, features, monotone, noise guard) of each candidate whose features are all among ``features``."""
    return [(f"{'+'.join(f)}{', monotone' if m else ''}{', noise guard' if g else ''}", f, m, g)
            for f in CANDIDATE_FEATURE_SETS for m in (False, True) for g in (False, True) if set(f) <= set(features)]


def rule_logits(rule: dict, decode: dict) -> tuple[float, ...]:
    """The logit of ``rule`` (a model file's ``rejection`` entry) for a decode (``x``: :data:`REJECTION_FEATURES`),
    then its noise guard's if it has one, as :class:`vcd.recognizer.RejectionRule` computes them: an unmeasured
    feature (NaN) gives NaN, but a second opinion nobody asked for counts as one that did not confirm (the
    recogniser asks only where it decides)."""
    x = np.asarray(decode["x"], dtype=np.float64)[[REJECTION_FEATURES.index(f) for f in rule["features"]]]
    if "second" in rule["features"]:
        x[rule["features"].index("second")] = np.nan_to_num(x[rule["features"].index("second")], nan=0.0)
    logits = [float(np.dot(rule["weights"], x) + rule["bias"])]
    if "noise_guard" in rule:
        logits.append(float(np.dot(rule["noise_guard"]["weights"], x) + rule["noise_guard"]["bias"]))
    return tuple(logits)


def rule_accepts(rule: dict, decode: dict) -> bool:
    """Whether ``rule`` accepts a decode (``best``, ``x``), as :class:`vcd.recognizer.RejectionRule` does: every
    logit of :func:`rule_logits` at least 0 (NaN rejects)."""
    return bool(decode["best"]) and min(rule_logits(rule, decode)) >= 0.0


def noise_kinds(decodes: list[dict]) -> list[str]:
    return sorted({d["condition"] for d in decodes if d["set"] == "noise"})


def left_out_fits(decodes: list[dict], learned: Callable[[list[dict]], dict]) -> list[tuple[dict, list[dict]]]:
    """For each noise stream (:func:`noise_kinds`): the rule ``learned`` fits without that stream's segments, and
    those segments (noise it never met).  ``decodes``: every decode, found a sentence or not."""
    fits = []
    for kind in noise_kinds(decodes):
        rule = learned([d for d in decodes if d["best"] and not (d["set"] == "noise" and d["condition"] == kind)])
        fits.append((rule, [d for d in decodes if d["set"] == "noise" and d["condition"] == kind]))
    return fits


def left_out_accepts(fits: list[tuple[dict, list[dict]]]) -> list[int]:
    """For each left-out noise stream (``fits``: :func:`left_out_fits`): how many of its segments the rule fitted
    without it accepts."""
    return [sum(rule_accepts(rule, d) for d in stream) for rule, stream in fits]


def left_out_margin(fits: list[tuple[dict, list[dict]]], allowed: int = ELIGIBLE_LEFT_OUT) -> float:
    """The least extra strictness (logit, off the noise guard's bias, or the rule's without a guard:
    :func:`stricter_for_noise`) that would have let at most ``allowed`` segments of every left-out stream pass
    (``fits``: :func:`left_out_fits`): how far a cut fitted on the noise a rule met falls short on noise it never met."""
    margin = 0.0
    for rule, stream in fits:
        passed = sorted((rule_logits(rule, d)[-1] for d in stream if rule_accepts(rule, d)), reverse=True)
        if len(passed) > allowed:
            margin = max(margin, passed[allowed] + 1e-3)
    return margin


def stricter_for_noise(rule: dict, margin: float) -> dict:
    """``rule`` with its noise guard's bias (the rule's own without a guard) lowered by ``margin``."""
    if "noise_guard" in rule:
        return {**rule, "noise_guard": {**rule["noise_guard"], "bias": rule["noise_guard"]["bias"] - margin}}
    return {**rule, "bias": rule["bias"] - margin}


def command_mean(rule: dict, decodes: list[dict]) -> float:
    """The mean over :data:`CHOSEN_ON` (those in ``decodes``) of the share of commands right and accepted."""
    commands = [d for d in decodes if d["set"] not in ("talk", "noise")]
    shares = [np.mean([rule_accepts(rule, d) and d.get("want") == d["best"] for d in commands if d["condition"] == c])
              for c in CHOSEN_ON if any(d["condition"] == c for d in commands)]
    return float(np.mean(shares))


def choose(rules: dict[str, dict], margins: dict[str, float], decodes: list[dict]) -> tuple[str, dict]:
    """The candidate the choice rule picks, and its rule: each candidate's rule fitted on every decode, made eligible
    by its left-out margin (:func:`left_out_margin`: 0 where each left-out stream already passes at most
    :data:`ELIGIBLE_LEFT_OUT` segments), and the best command mean of those."""
    eligible = {n: stricter_for_noise(rule, margins[n]) for n, rule in rules.items()}
    chosen = max(eligible, key=lambda n: command_mean(eligible[n], decodes))
    return chosen + (f", {margins[chosen]:.3g} stricter for noise it never met" if margins[chosen] else ""), eligible[chosen]


def choose_rejection_rule(decodes: list[dict]) -> tuple[str, dict]:
    """The candidate (:func:`candidate_rules`) the choice rule picks on validation ``decodes`` (every decode,
    found a sentence or not: ``set``, ``condition``, ``best``, ``want``, ``x``), and that rule fitted on all of
    them: what ``benchmarks/rejection_study.py --write`` writes, without the study's tables."""
    decoded = [d for d in decodes if d["best"]]
    measured = tuple(f for i, f in enumerate(REJECTION_FEATURES)
                     if decoded and all(np.isfinite(d["x"][i]) for d in decoded))
    rules, margins = {}, {}
    for name, features, monotone, guard in candidate_rules(measured):
        def learned(subset: list[dict], m: bool = monotone, f: tuple = features, g: bool = guard) -> dict:
            return rejection_rule_from(subset, m, f, g)

        margins[name] = left_out_margin(left_out_fits(decodes, learned))
        rules[name] = learned(decoded)
    return choose(rules, margins, decodes)


# The second opinion (vcd.second_opinion) as a bonus on a chosen rule: a sentence PocketSphinx confirms gets
# -logit(F) more on the rule's and the guard's logit, so it is accepted from confidence F up (asked only
# there).  The candidate floors, written down at stop 40 before its decodes; a study's decodes ask it from
# the lowest floor up to the acceptance (real_rooms.py --dump).
SECOND_OPINION_FLOORS = (0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)


def with_second_opinion(rule: dict, floor: float) -> dict:
    """``rule`` where a confirmed sentence is accepted from confidence ``floor`` up (instead of any second opinion
    it had)."""
    return _with_feature(rule, "second", float(np.log((1.0 - floor) / floor)))  # weight -logit(floor)


def without_second_opinion(rule: dict) -> dict:
    """``rule`` without its second-opinion bonus (itself if it has none)."""
    return _without_feature(rule, "second")


# The strictness vcd train's fit adds (logit per dB under the knee): what stop 44 chose for the shipped model on
# validation (the smallest that kept wrong sentences accepted in loud noise under the previous model's ceilings).
SNR_STRICTNESS_PER_DB = 0.02


def with_snr_strictness(rule: dict, per_db: float) -> dict:
    """``rule`` made stricter by ``per_db`` (logit) for each dB the segment's estimated SNR falls short of
    :data:`vcd.audio.SNR_KNEE_DB` (the ``snr_shortfall`` feature, in the rule and its noise guard alike;
    replacing any it had).  Stricter only: it can take nothing away in a quiet room, nor accept more anywhere."""
    return _with_feature(rule, "snr_shortfall", -abs(float(per_db)))


def _with_feature(rule: dict, feature: str, weight: float) -> dict:
    """``rule`` with ``feature`` weighed ``weight`` last, in the rule and its noise guard alike (replacing it)."""
    rule = _without_feature(rule, feature)
    out = {**rule, "features": [*rule["features"], feature], "weights": [*rule["weights"], weight]}
    if "noise_guard" in rule:
        out["noise_guard"] = {**rule["noise_guard"], "weights": [*rule["noise_guard"]["weights"], weight]}
    return out


def _without_feature(rule: dict, feature: str) -> dict:
    """``rule`` without ``feature``, in the rule and its noise guard (itself if it has none)."""
    if feature not in rule["features"]:
        return rule
    keep = [i for i, f in enumerate(rule["features"]) if f != feature]
    out = {**rule, "features": [rule["features"][i] for i in keep], "weights": [rule["weights"][i] for i in keep]}
    if "noise_guard" in rule:
        out["noise_guard"] = {**rule["noise_guard"], "weights": [rule["noise_guard"]["weights"][i] for i in keep]}
    return out


# The most of the validation talk (clean and under babble together) a floor may send to PocketSphinx: each ask
# costs a few hundred ms of CPU, and a floor low enough puts nearly all the talk a household says near the hub in
# the band (stop 44: F = 0.001 asked about 98 % of it).  Stop 44 chose the shipped floor under this budget.
SECOND_OPINION_TALK_ASKS = 0.25


def second_opinion_asks(rule: dict, decodes: list[dict], kind: str = "talk") -> float:
    """The share of ``kind``'s decodes that ``rule`` (with a second opinion) sends to PocketSphinx: those with a
    sentence whose acceptance its answer decides, as :meth:`vcd.recognizer.Recognizer.decode` asks."""
    i = REJECTION_FEATURES.index("second")
    group = [d for d in decodes if d["set"] == kind]
    if "second" not in rule["features"] or not group:
        return 0.0

    def accepts(d: dict, answer: float) -> bool:
        x = list(d["x"])
        x[i] = answer
        return rule_accepts(rule, {**d, "x": x})

    return float(np.mean([accepts(d, 1.0) != accepts(d, 0.0) for d in group]))


def second_opinion_within_budgets(rule: dict, decodes: list[dict], streams: Collection[str] | None = None) -> bool:
    """Whether ``rule`` accepts at most 1 % of the clean talk, 3 % of the talk under babble and no segment of
    the noise ``streams`` (default: all) among ``decodes``."""
    def accepted(kind: str, condition: str | None = None) -> list[bool]:
        return [rule_accepts(rule, d) for d in decodes if d["set"] == kind and condition in (None, d["condition"])
                and (kind != "noise" or streams is None or d["condition"] in streams)]

    clean, babble = accepted("talk", "clean"), accepted("talk", f"babble {BABBLE_SNR_DB:g} dB")
    return (np.mean(clean or [0]) <= CLEAN_FALSE_ACCEPT_BUDGET + 1e-9
            and np.mean(babble or [0]) <= BABBLE_FALSE_ACCEPT_BUDGET + 1e-9 and not any(accepted("noise")))


def choose_second_opinion(rule: dict, decodes: list[dict], asks: float = SECOND_OPINION_TALK_ASKS,
                          ) -> tuple[float | None, dict, list[int]]:
    """The lowest floor of :data:`SECOND_OPINION_FLOORS` whose rule (:func:`with_second_opinion`) keeps the
    budgets on ``decodes`` (validation; each decode's ``x`` carries the second opinion where it was asked) and
    asks PocketSphinx about at most ``asks`` of the talk (:func:`second_opinion_asks`), that rule (``rule``
    itself with none), and for each noise stream how many of its segments the floor chosen without it accepts."""
    affordable = [f for f in SECOND_OPINION_FLOORS if second_opinion_asks(with_second_opinion(rule, f), decodes) <= asks]

    def lowest(streams: Collection[str] | None) -> float | None:
        ok = [f for f in affordable if second_opinion_within_budgets(with_second_opinion(rule, f), decodes, streams)]
        return min(ok) if ok else None

    kinds = noise_kinds(decodes)
    left_out = []
    for kind in kinds:
        floor = lowest([k for k in kinds if k != kind])
        left_out.append(0 if floor is None else sum(rule_accepts(with_second_opinion(rule, floor), d) for d in decodes
                                                    if d["set"] == "noise" and d["condition"] == kind))
    floor = lowest(None)
    return floor, (rule if floor is None else with_second_opinion(rule, floor)), left_out


def write_rejection_rule(model_file: Path, rule: dict) -> None:
    """Store ``rule`` as the ``rejection`` of ``model_file`` (float16 weights unchanged) and of its numpy export."""
    model, labels, extra = load_model(model_file)
    save_model(model, model_file, labels, {**extra, "rejection": rule}, half=True)
