"""The recogniser: audio in, sentence, intent and slots out (model + grammar + decoder)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vcd.audio import SNR_KNEE_DB, estimate_snr_db
from vcd.audio_format import SAMPLE_RATE_HZ

_LOGGER = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).parent / "models" / "default.pt"
# Converts the per-speech-frame log-probability gap to the free phone loop into 0..1.
CONFIDENCE_SCALE = 1.0


@dataclass(frozen=True)
class Recognition:
    """What the recogniser made of one speech segment.

    ``intent`` is None and ``text`` empty when the audio is not one of the
    sentences (rejected).  ``slots`` maps slot names to the list's out value;
    numbers come out as int/float.
    """

    text: str
    intent: str | None
    slots: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.0  # 0..1
    audio_s: float = 0.0  # length of the audio decoded, seconds
    decode_ms: float = 0.0  # features + network + search, milliseconds
    best_text: str = ""  # best grammar sentence even when rejected (diagnostics)
    answer: str | None = None  # what to say back: the sentences' response, rendered (vcd.responses)

    @property
    def recognized(self) -> bool:
        return self.intent is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_MIN_CONFIDENCE = 0.5
# Beam of the pruned search, log-probability (0: the exact search over every phone state): the smallest of
# 20, 30, 40, 60 that matched the exact search on the validation speakers (docs/benchmarks.md, "Search").
DEFAULT_BEAM = 40.0


# complete(): a segment whose best sentence cut short (after any phone) fits this many nats better than its best whole
# sentence is not over.  Chosen on validation voices and synthetic cuts from 3, 5 and 8 (docs/training-log.md, "Stop 44").
CUT_SHORT_NATS = 3.0

# What a :class:`RejectionRule` may weigh: properties of :class:`vcd.decoder.Hypothesis`.
REJECTION_FEATURES = {"gap": "gap_per_frame", "fit": "fit_per_frame", "agreement": "agreement",
                      "free_confidence": "free_confidence", "coverage": "coverage", "speech": "speech",
                      "weakest": "weakest", "second": "second", "margin": "margin", "snr_shortfall": "snr_shortfall"}


@dataclass(frozen=True)
class RejectionRule:
    """A model's learned rejection: confidence = logistic(weights · features + bias), and at most the
    noise guard's logistic(guard weights · features + guard bias) where the model has one.

    Fitted on the validation speakers' decodes (``benchmarks/rejection_study.py --write``): right
    commands against non-command talk (clean and under babble), noise and wrong best sentences, with
    the bias set so that confidence 0.5 is the loosest point that accepts at most 1 % of that talk
    clean and 3 % under babble; the guard, right commands against noise segments alone, accepts none
    of the validation noise.  The features (:data:`REJECTION_FEATURES`): the gap to the free phone loop
    and the sentence's own fit per speech frame, the share of speech frames where the sentence's
    phone is the frame's best label, how sure the model is of its best labels at all, the share
    of the sentence's phones the model heard, how much of the segment a separate voice-activity
    model hears as speech (:mod:`vcd.presence`; not from the acoustic model, so unfamiliar noise
    does not sway it the same way), the gap of the sentence's worst-fitting word (talk fitted
    onto a sentence leaves a word unheard; noise blurs them all), and whether a second, independent
    recogniser hears the same sentence (:mod:`vcd.second_opinion`: 1 or 0), and how much better the
    sentence fits than the best one ending in another word (:attr:`vcd.decoder.Hypothesis.margin`: a word
    heard as another in loud noise wins by little), and how many dB the segment's estimated signal-to-noise
    ratio falls short of :data:`vcd.audio.SNR_KNEE_DB` (:func:`vcd.audio.estimate_snr_db`; weighed against
    acceptance only, it makes a rule stricter in a loud room alone, where sentences are more often heard wrong).
    With ``recognizer.denoised_view`` (WebRTC's noise suppressor by default), a sentence the rule rejects in a
    loud room is looked at again, denoised (:meth:`Recognizer._denoised_view`).
    """

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    guard_weights: tuple[float, ...] | None = None
    guard_bias: float = 0.0

    @classmethod
    def from_extra(cls, extra: dict) -> "RejectionRule | None":
        rule = extra.get("rejection")
        if not rule:
            return None
        features = tuple(str(f) for f in rule["features"])
        unknown = sorted(set(features) - set(REJECTION_FEATURES))
        guard = rule.get("noise_guard")
        if unknown or len(rule["weights"]) != len(features) or (guard and len(guard["weights"]) != len(features)):
            from vcd.errors import ModelError

            raise ModelError(f"the model's rejection rule is not one this vcd reads (features {list(features)})")
        return cls(features, tuple(float(w) for w in rule["weights"]), float(rule["bias"]),
                   tuple(float(w) for w in guard["weights"]) if guard else None, float(guard["bias"]) if guard else 0.0)

    @property
    def needs_presence(self) -> bool:
        return "speech" in self.features

    @property
    def weighs_margin(self) -> bool:
        return "margin" in self.features

    @property
    def weighs_second(self) -> bool:
        return "second" in self.features

    def confidence(self, hyp) -> float:
        x = np.array([float(getattr(hyp, REJECTION_FEATURES[f])) for f in self.features])
        z = self.bias + float(np.dot(self.weights, x))
        if self.guard_weights is not None:
            z = min(z, self.guard_bias + float(np.dot(self.guard_weights, x)))
        if not np.isfinite(z):  # a feature it weighs was not measured: never accept on that
            return 0.0
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))


@dataclass(frozen=True)
class Grammar:
    """A compiled grammar: hassil intents, their word graph and its phone graph (what the search uses)."""

    intents: Any
    word_graph: Any
    phone_graph: Any


def segment_features(samples: np.ndarray, front_end=None) -> np.ndarray:
    """(frames, n_mels) float32 log-mel of a 16 kHz segment as the recogniser computes it.

    The front end (a denoiser), when given, runs first; then the quiet margins the model expects
    (:func:`vcd.audio.with_quiet_margins`).  ``vcd adapt`` trains on exactly these features.
    """
    from vcd.audio import with_quiet_margins
    from vcd.features import log_mel

    samples = np.asarray(samples, dtype=np.float32)
    if front_end is not None:
        samples = front_end(samples)
    return log_mel(with_quiet_margins(samples))


def model_pronunciations(extra: dict) -> dict[str, list[str]]:
    """A model file's ``pronunciations``: the phones its training labels gave words where the recogniser's
    dictionary says otherwise (``vcd train`` writes them); ModelError when they are not word → phones."""
    from vcd.phonetics import PHONES

    carried = extra.get("pronunciations") or {}
    if not isinstance(carried, dict) or not all(
            isinstance(word, str) and isinstance(phones, list) and phones and all(p in PHONES for p in phones)
            for word, phones in carried.items()):
        from vcd.errors import ModelError

        raise ModelError("the model's pronunciations are not words with CMU phones: the file is damaged")
    return carried


def _view(rule: RejectionRule | None, front_end, name: str):
    """The denoiser ``name`` (:data:`vcd.config.DENOISED_VIEWS`) for ``recognizer.denoised_view``, or None where
    there is nothing to look at again: ``"off"``, a model without a learned rejection rule, or a ``front_end``
    (made by :func:`vcd.denoise.make_front_end`) that already denoises every segment."""
    from vcd.denoise import make_view

    if name == "off" or front_end is not None:
        return None
    if rule is None:
        _LOGGER.info("recognizer.denoised_view: the model has no learned rejection rule to look again with; off")
        return None
    return make_view(name)


def runs_with(recognizer) -> str:
    """What runs a loaded recogniser, as the daemon and ``vcd wyoming`` log it at start-up: the model's engine and
    the denoised view's denoiser (``recognizer.engine``, ``recognizer.denoised_view``)."""
    view = getattr(getattr(recognizer, "view", None), "name", "off")
    return f"the model runs in {getattr(recognizer.model, 'engine', 'numpy')}; denoised view: {view}"


def _presence():
    from vcd.presence import SpeechPresence

    return SpeechPresence()


def _second_opinion(lexicon):
    from vcd.second_opinion import second_opinion_or_none

    return second_opinion_or_none(lexicon)


class Recognizer:
    """Acoustic model + compiled grammar.  Not thread-safe: one thread owns it.

    ``confidence`` is ``exp(-scale · d)`` where ``d`` is how much worse per
    speech frame (in log-probability) the best grammar sentence is than
    the best free phone sequence; a sentence whose confidence is below
    ``min_confidence`` is rejected as out of grammar.  Background talk makes
    the free loop as unsure as the sentence, shrinking ``d``; so a model may
    also carry a ``fit_floor``: a sentence whose own log-probability per
    speech frame is below it is rejected too (its confidence is capped just
    under ``min_confidence``).  A model that carries a learned
    :class:`RejectionRule` (``rejection``) uses that instead of both.

    ``second_opinion`` (:class:`vcd.second_opinion.SecondOpinion`, for a rule that weighs it) is asked
    only about a sentence whose acceptance its answer decides; ``ask_always`` asks about every
    sentence (studies record the answer).
    """

    def __init__(self, model, intents, word_graph, phone_graph, min_confidence: float,
                 confidence_scale: float, front_end=None, fit_floor: float | None = None, lexicon=None,
                 context: dict[str, Any] | None = None, sentence_set=None, slot_lists=None,
                 beam: float = DEFAULT_BEAM, rejection: RejectionRule | None = None, presence=None,
                 second_opinion=None, ask_always: bool = False, margin: bool = False, view=None) -> None:
        self.model = model
        self.view = view  # the denoiser of the rule's denoised view (vcd.denoise.make_view), or None: never looked at
        self.margin_asked = margin  # a study wants the margin even where the rule does not weigh it
        self.rejection = rejection
        self.second_opinion = second_opinion  # vcd.second_opinion.SecondOpinion, or None: never asked
        self.ask_always = ask_always
        if presence is None and rejection is not None and rejection.needs_presence:
            presence = _presence()  # the rule cannot do without it
        self.presence = presence  # vcd.presence.SpeechPresence, when the rule weighs it (or a study asks)
        self.context = dict(context or {})  # hassil intent context (a satellite's area …) for requires_context
        self.front_end = front_end
        self.sentence_set = sentence_set  # the sentence files, before plugins' list values (vcd.controls)
        self.slot_lists = slot_lists
        self.lexicon = lexicon
        self.intents = intents
        self.word_graph = word_graph
        self.graph = phone_graph
        self._prefixes = None  # (graph, that graph with every phone state final), for _cut_short
        self.min_confidence = min_confidence
        self.confidence_scale = confidence_scale
        self.fit_floor = fit_floor
        self.beam = beam

    @property
    def margin(self) -> bool:
        """Whether the search measures each sentence's margin to another (:attr:`vcd.decoder.Hypothesis.margin`):
        where the rule weighs it (the rule in place now) or a study asks."""
        return self.margin_asked or (self.rejection is not None and self.rejection.weighs_margin)

    @classmethod
    def load(cls, sentences=None, model=None, min_confidence: float | None = None, threads: int = 1,
             lexicon=None, front_end: str = "auto", extra_lists=None, *, bundled: bool | None = None,
             slot_lists=None, context: dict[str, Any] | None = None, sentence_set=None,
             beam: float = DEFAULT_BEAM, presence: bool | None = None,
             second_opinion: bool | None = None, margin: bool = False, denoised_view: bool | str = "off",
             engine: str = "auto") -> "Recognizer":
        """Load the model (None: the shipped one) and compile the sentences.

        ``sentences`` is a file or folder, or a list of them (or ``sentence_set``, files already
        read by :func:`vcd.ha_sentences.load_sentences`).  ``bundled`` says whether vcd's
        bundled sentences come first (the given files then add to them and win ties); None keeps
        the older rule: bundled only when no ``sentences`` are given.  ``slot_lists`` add or
        replace hassil lists (a home's ``{name}``, ``{area}``); ``context`` is the hassil intent
        context every command is understood in.  ``extra_lists`` (list name →
        :class:`vcd.ListValue` s, from plugins) are added to the sentences' lists; values that
        break the grammar (no pronunciation) are left out with an error logged.  ``front_end``
        names the denoiser run on the audio before the features (:mod:`vcd.denoise`): ``"auto"``
        takes the one the model was trained with (its ``front_end``, else none).  The model runs
        in ONNX Runtime where it is installed, else in numpy (:func:`vcd.inference.load_acoustic_model`, from
        the exports beside a ``.pt``; ``engine`` "numpy" chooses numpy); ``threads`` limits the threads of
        one inference.  ``beam`` prunes the search
        (:func:`vcd.decoder.search`; 0 = exact).  ``presence`` True measures each segment's speech presence
        (:mod:`vcd.presence`) even when the model's rejection rule does not weigh it; a rule that does
        always gets it.  ``second_opinion`` (:mod:`vcd.second_opinion`): None asks it where the model's rule
        weighs it and its answer decides; True asks about every sentence (a study records the answers);
        False never (the rule then takes every sentence as one it did not confirm).  ``margin`` True measures
        each sentence's margin to another (:attr:`vcd.decoder.Hypothesis.margin`) even when the rule does not
        weigh it.  ``denoised_view`` names the denoiser through which a sentence the rule rejects in a loud
        room is looked at again (:meth:`_denoised_view`; ``recognizer.denoised_view``, whose default is
        ``"webrtc"``; here the default is ``"off"``, as the rule was fitted; True is ``"webrtc"``): its
        package is needed (:class:`vcd.errors.ConfigError` without it) and a model with a learned rule, and a
        front end that already denoises leaves nothing to look at again.
        """
        from vcd.config import denoised_view_name
        from vcd.denoise import make_front_end
        from vcd.errors import GrammarError
        from vcd.ha_sentences import load_sentences
        from vcd.inference import load_acoustic_model, set_threads
        from vcd.phonetics import Lexicon

        set_threads(threads)
        if sentence_set is None:
            paths = [] if sentences is None else [sentences] if isinstance(sentences, str | Path) else list(sentences)
            sentence_set = load_sentences(paths, bundled=(not paths) if bundled is None else bundled)
        net, _labels, extra = load_acoustic_model(model or DEFAULT_MODEL, threads, engine)
        rule = RejectionRule.from_extra(extra)
        lexicon = (lexicon or Lexicon()).with_trained(model_pronunciations(extra))
        asks = second_opinion is True or (second_opinion is None and rule is not None and rule.weighs_second)
        denoiser = make_front_end(front_end, extra)
        recognizer = cls(net, sentence_set.intents, None, None,
                         DEFAULT_MIN_CONFIDENCE if min_confidence is None else float(min_confidence),
                         float(extra.get("confidence_scale", CONFIDENCE_SCALE)), denoiser,
                         None if extra.get("fit_floor") is None else float(extra["fit_floor"]), lexicon,
                         context, sentence_set, slot_lists, float(beam), rule,
                         _presence() if presence else None,  # a rule that weighs it gets one in __init__ anyway
                         _second_opinion(lexicon) if asks else None, ask_always=second_opinion is True,
                         margin=margin, view=_view(rule, denoiser, denoised_view_name(denoised_view)))
        grammar = None
        if extra_lists:
            try:
                grammar = recognizer.compile_grammar(extra_lists)
            except GrammarError as exc:
                _LOGGER.error("grammar: plugins' list values left out: %s", exc)
        recognizer.use_grammar(grammar or recognizer.compile_grammar({}))
        graph = recognizer.graph
        _LOGGER.info("grammar: %d intents, %d phone states, %d edges", len(recognizer.intents.intents), graph.size,
                     graph.src.size)
        return recognizer

    def compile_grammar(self, extra_lists) -> Grammar:
        """The sentences with ``extra_lists`` (list name → :class:`vcd.ListValue` s) added, compiled.

        Any thread (touches neither the model nor the grammar in use).  A value with a word that has
        no pronunciation is left out with a warning; GrammarError when the rest cannot be compiled.
        """
        from vcd.controls import with_list_values
        from vcd.decoder import build_phone_graph, without_collection
        from vcd.grammar import compile_word_graph, words_of_chunk
        from vcd.phonetics import Lexicon

        started = time.perf_counter()
        lexicon = self.lexicon = self.lexicon or Lexicon()
        lexicon.prefetch([w for values in extra_lists.values() for v in values for w in words_of_chunk(v.text)])
        sayable = {}
        for name, values in extra_lists.items():
            sayable[name] = [v for v in values if all(lexicon(w) for w in words_of_chunk(v.text))]
            for value in values:
                if value not in sayable[name]:
                    _LOGGER.warning("grammar: %r left out of {%s}: a word has no pronunciation", value.text, name)
        extra_lists = sayable
        sentence_set = replace(self.sentence_set, intents=with_list_values(self.sentence_set.intents, extra_lists))
        with without_collection():  # many small objects: the collector would run often and find nothing
            word_graph = compile_word_graph(sentence_set, self.slot_lists, set(self.context))
            word_graph.paths(())  # index the graph now, not on the first command
            graph = build_phone_graph(word_graph, lexicon)  # minimised there: one copy of shared words
        if extra_lists:
            sizes = ", ".join(f"{{{name}}} +{len(values)}" for name, values in extra_lists.items())
            _LOGGER.info("grammar: compiled with the plugins' list values (%s) in %.0f ms, %d phone states", sizes,
                         (time.perf_counter() - started) * 1000.0, graph.size)
        return Grammar(word_graph.intents, word_graph, graph)

    def use_grammar(self, grammar: Grammar) -> None:
        """Decode the following segments with ``grammar`` (the thread that owns the recogniser)."""
        self.intents, self.word_graph, self.graph = grammar.intents, grammar.word_graph, grammar.phone_graph

    def posteriors(self, samples: np.ndarray, denoise: bool = True) -> np.ndarray:
        """CTC log-posteriors (frames, labels) of 16 kHz mono float32 audio.

        The audio is denoised by the front end, if there is one, then gets the quiet margins the model expects
        (:func:`vcd.audio.with_quiet_margins`), so a tightly trimmed file
        decodes as well as one with silence around the speech.
        """
        return self.model.infer(segment_features(samples, self.front_end if denoise else None))

    def recognize(self, samples: np.ndarray, denoise: bool = True, speech: float | None = None,
                  denoised: np.ndarray | None = None) -> Recognition:
        """Decode one speech segment (16 kHz mono float32) against the grammar.

        ``denoise`` False skips the front end: the daemon denoises the stream ahead of the VAD.
        ``speech``: the segment's speech presence when the caller measured it already (the daemon does,
        as the segment grows); else the recogniser measures it if its rule weighs it.
        ``denoised``: the segment through the view's denoiser when the caller denoised it as it grew (the daemon
        does with ``recognizer.denoised_view``: :class:`vcd.denoise.SegmentDenoiser`); else the view makes it.
        """
        return self.decode(samples, denoise, speech, denoised=denoised)[0]

    def complete(self, samples: np.ndarray, denoise: bool = True, speech: float | None = None) -> Recognition | None:
        """The recognition of a segment that may not be over yet, if it is a whole command; else None.

        Whole: recognised (confident, the sentence fits the sound, by the model's rule and by the gap
        and fit floor: :meth:`_fits_closely`) and no longer sentence of the grammar starts with its
        words, so more audio could only make it another command or none.  The daemon asks this after
        a short pause (``vad.early_silence_ms``) to end the command without waiting for the full
        ``vad.silence_ms``.
        """
        result, hyp, log_probs = self._decode(samples, denoise, speech, ask=False)  # no second opinion, no view yet
        if not result.recognized or hyp is None or hyp.continues or not self._fits_closely(hyp):
            _LOGGER.debug("%r is not a whole command yet (%s)", result.best_text,
                          "the grammar goes on" if hyp is not None and hyp.continues else "not recognised")
            return None
        if self._cut_short(hyp, log_probs):
            _LOGGER.debug("%r is not a whole command yet (a sentence cut short fits better)", result.best_text)
            return None
        return result

    def _cut_short(self, hyp, log_probs: np.ndarray) -> bool:
        """Whether the segment sounds like a sentence of the grammar cut short rather than a whole one.

        The grammar is searched again with every phone state allowed to end the segment (any sentence cut
        after any phone); when that fits more than :data:`CUT_SHORT_NATS` better than the best whole
        sentence, the speaker has not finished: "turn off the fi…" (a pause inside "fish tank") fits "turn
        off the f" far better than "turn off the heater", which the rules alone would accept.
        """
        from vcd.decoder import search

        if self._prefixes is None or self._prefixes[0] is not self.graph:
            self._prefixes = (self.graph, replace(self.graph, final=np.ones_like(self.graph.final), _out=None))
        cut = search(self._prefixes[1], log_probs, self.beam)
        return cut.score - hyp.score > CUT_SHORT_NATS

    def _fits_closely(self, hyp) -> bool:
        """Also accepted by the gap and the fit floor alone.

        A segment cut in a pause inside a word ("turn off the fi…") can pass a learned
        :class:`RejectionRule` as some other sentence, which would end the command early and wrong.
        Ending early therefore also needs the older, stricter rule, with which early endpointing was
        measured never to cut a command short (docs/benchmarks.md, "Daemon").
        """
        return self.rejection is None or self._gap_confidence(hyp) >= self.min_confidence

    def _gap_confidence(self, hyp) -> float:
        """The confidence of the gap and fit floor: ``exp(-scale · gap)``, capped just under ``min_confidence``
        when the sentence's fit per speech frame is below the model's ``fit_floor``."""
        confidence = float(np.exp(-self.confidence_scale * max(hyp.gap_per_frame, 0.0)))
        if self.fit_floor is not None and hyp.fit_per_frame < self.fit_floor:
            confidence = min(confidence, self.min_confidence * 0.999)  # the sentence does not fit the sound
        return confidence

    def decode(self, samples: np.ndarray, denoise: bool = True, speech: float | None = None, ask: bool = True,
               denoised: np.ndarray | None = None):
        """:meth:`recognize`, with the search's :class:`vcd.decoder.Hypothesis` (None under 0.1 s).

        ``ask`` False never asks the second opinion nor looks again (a sentence their answer would decide
        stays rejected).
        """
        return self._decode(samples, denoise, speech, ask, denoised)[:2]

    def _decode(self, samples: np.ndarray, denoise: bool, speech: float | None, ask: bool,
                denoised: np.ndarray | None = None):
        """:meth:`decode`, and the model's log-posteriors it searched (None under 0.1 s)."""
        from vcd.decoder import search

        started = time.perf_counter()
        samples = np.asarray(samples, dtype=np.float32)
        audio_s = samples.size / SAMPLE_RATE_HZ
        if samples.size < SAMPLE_RATE_HZ // 10:  # under 0.1 s: nothing to decode
            return Recognition("", None, {}, 0.0, audio_s, (time.perf_counter() - started) * 1000.0), None, None
        if denoise and self.front_end is not None:
            samples = self.front_end(samples)  # the model and the speech presence hear the same audio
        log_probs = self.posteriors(samples, denoise=False)
        hyp = search(self.graph, log_probs, self.beam, margin=self.margin)
        if hyp.words:
            hyp = replace(hyp, snr=estimate_snr_db(samples))
        if hyp.words and (speech is not None or self.presence is not None):
            hyp = replace(hyp, speech=self.presence(samples) if speech is None else float(speech))
        if hyp.words and self.second_opinion is not None and self.ask_always:
            hyp = replace(hyp, second=float(self.second_opinion.agrees(self.word_graph, samples, hyp.words)))
        if not hyp.words:
            confidence = 0.0
        elif self.rejection is not None:
            confidence, hyp = self._rule_confidence(samples, hyp, ask)
            if ask and confidence < self.min_confidence:
                confidence = self._denoised_view(samples, hyp, confidence, denoised)
        else:
            confidence = self._gap_confidence(hyp)
        text = " ".join(hyp.words)
        # The words the search found, understood as `vcd parse` understands typed words (context, priority).
        parse = self.word_graph.understand(hyp.words, self.context) if hyp.words else None
        intent, slots = (parse.intent, parse.slots) if parse is not None else (None, {})
        decode_ms = (time.perf_counter() - started) * 1000.0
        if confidence < self.min_confidence or intent is None:
            return Recognition("", None, {}, confidence, audio_s, decode_ms, best_text=text), hyp, log_probs
        return Recognition(text, intent, slots, confidence, audio_s, decode_ms, best_text=text,
                           answer=self.answer(parse)), hyp, log_probs

    def _rule_confidence(self, samples: np.ndarray, hyp, ask: bool):
        """The rule's confidence, and ``hyp`` with the second opinion's answer where it was asked.

        A rule that weighs the second opinion is scored both ways first; only where the two sides of
        ``min_confidence`` differ is PocketSphinx asked (a few hundred ms for a 3 s command).  Not
        asked, the sentence counts as one the second opinion did not confirm.
        """
        rule = self.rejection
        if not rule.weighs_second or np.isfinite(hyp.second):
            return rule.confidence(hyp), hyp
        without = rule.confidence(replace(hyp, second=0.0))
        if not ask or self.second_opinion is None:
            return without, hyp
        confirmed = rule.confidence(replace(hyp, second=1.0))
        if (without >= self.min_confidence) == (confirmed >= self.min_confidence):
            return without, hyp
        agrees = self.second_opinion.agrees(self.word_graph, samples, hyp.words)
        _LOGGER.debug("second opinion on %r: %s", " ".join(hyp.words), "the same" if agrees else "another sentence")
        return (confirmed if agrees else without), replace(hyp, second=float(agrees))

    def _denoised_view(self, samples: np.ndarray, hyp, confidence: float, denoised: np.ndarray | None) -> float:
        """The confidence after a second look at a sentence the rule rejects (``confidence``), in a segment
        whose estimated SNR is under :data:`vcd.audio.SNR_KNEE_DB`: the model decodes the segment denoised by
        the view's denoiser (``recognizer.denoised_view``), and where it finds the same sentence and the rule
        accepts that decode (its own features, the raw segment's SNR, no second opinion), its confidence stands.  Talk stays talk through a denoiser and
        noise mostly goes, while a command in a loud room can come out clearer (docs/benchmarks.md, "The
        denoised view").  Costs a decode of the whole segment, in loud rooms only, and the denoiser where the
        caller did not denoise the segment as it grew (``denoised``)."""
        from vcd.decoder import search

        if self.view is None or not hyp.snr < SNR_KNEE_DB:
            return confidence
        if denoised is None or denoised.size != samples.size:
            denoised = self.view(samples)
        seen = search(self.graph, self.posteriors(denoised, denoise=False), self.beam, margin=self.margin)
        if seen.words != hyp.words:
            return confidence
        seen = replace(seen, snr=hyp.snr, speech=hyp.speech, second=0.0)
        looked = self.rejection.confidence(seen)
        _LOGGER.debug("denoised view of %r: %.3f (as heard: %.3f)", " ".join(hyp.words), looked, confidence)
        return looked if looked >= self.min_confidence else confidence

    def answer(self, parse) -> str | None:
        """The spoken answer for a :class:`vcd.grammar.Parse`: its response rendered (:func:`vcd.responses.answer`)."""
        from vcd.responses import answer

        responses = getattr(self.sentence_set, "responses", None)
        if parse is None or not responses:
            return None
        return answer(responses, parse.intent, parse.response, parse.slots)
