"""The recogniser: audio in, sentence, intent and slots out (model + grammar + decoder)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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

    @property
    def recognized(self) -> bool:
        return self.intent is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_MIN_CONFIDENCE = 0.5
# Beam of the pruned search, log-probability (0: the exact search over every phone state); see docs/benchmarks.md.
DEFAULT_BEAM = 20.0


def segment_features(samples: np.ndarray, front_end=None):
    """(frames, n_mels) log-mel tensor of a 16 kHz segment as the recogniser computes it.

    The front end (a denoiser), when given, runs first; then the quiet margins the model expects
    (:func:`vcd.audio.with_quiet_margins`).  ``vcd adapt`` trains on exactly these features.
    """
    import torch

    from vcd.audio import with_quiet_margins
    from vcd.features import log_mel

    samples = np.asarray(samples, dtype=np.float32)
    if front_end is not None:
        samples = front_end(samples)
    return torch.from_numpy(log_mel(with_quiet_margins(samples)))


class Recognizer:
    """Acoustic model + compiled grammar.  Not thread-safe: one thread owns it.

    ``confidence`` is ``exp(-scale · d)`` where ``d`` is how much worse per
    speech frame (in log-probability) the best grammar sentence is than
    the best free phone sequence; a sentence whose confidence is below
    ``min_confidence`` is rejected as out of grammar.  Background talk makes
    the free loop as unsure as the sentence, shrinking ``d``; so a model may
    also carry a ``fit_floor``: a sentence whose own log-probability per
    speech frame is below it is rejected too (its confidence is capped just
    under ``min_confidence``).
    """

    def __init__(self, model, intents, word_graph, phone_graph, min_confidence: float,
                 confidence_scale: float, front_end=None, fit_floor: float | None = None,
                 beam: float = DEFAULT_BEAM) -> None:
        self.model = model
        self.front_end = front_end
        self.intents = intents
        self.word_graph = word_graph
        self.graph = phone_graph
        self.min_confidence = min_confidence
        self.confidence_scale = confidence_scale
        self.fit_floor = fit_floor
        self.beam = beam

    @classmethod
    def load(cls, sentences=None, model=None, min_confidence: float | None = None, threads: int = 1,
             lexicon=None, front_end: str = "auto", beam: float = DEFAULT_BEAM) -> "Recognizer":
        """Load the model (None: the shipped one) and compile the sentences (None: the bundled ones).

        ``front_end`` names the denoiser run on the audio before the features (:mod:`vcd.denoise`):
        ``"auto"`` takes the one the model was trained with (its ``front_end``, else none).
        ``beam`` prunes the search (:func:`vcd.decoder.search`; 0 = exact).
        """
        import torch

        from vcd.decoder import build_phone_graph, without_collection
        from vcd.denoise import make_front_end
        from vcd.grammar import compile_word_graph, load_intents
        from vcd.model import load_model
        from vcd.phonetics import Lexicon

        torch.set_num_threads(max(1, int(threads)))
        torch.set_flush_denormal(True)
        intents = load_intents(sentences)
        net, _labels, extra = load_model(model or DEFAULT_MODEL)
        started = time.perf_counter()
        with without_collection():
            word_graph = compile_word_graph(intents)
            graph = build_phone_graph(word_graph, lexicon or Lexicon())
        _LOGGER.info("grammar: %d intents, %d phone states, %d edges (built in %.2f s)", len(intents.intents),
                     graph.size, graph.src.size, time.perf_counter() - started)
        return cls(net, intents, word_graph, graph,
                   DEFAULT_MIN_CONFIDENCE if min_confidence is None else float(min_confidence),
                   float(extra.get("confidence_scale", CONFIDENCE_SCALE)), make_front_end(front_end, extra),
                   None if extra.get("fit_floor") is None else float(extra["fit_floor"]), float(beam))

    def posteriors(self, samples: np.ndarray, denoise: bool = True) -> np.ndarray:
        """CTC log-posteriors (frames, labels) of 16 kHz mono float32 audio.

        The audio is denoised by the front end, if there is one, then gets the quiet margins the model expects
        (:func:`vcd.audio.with_quiet_margins`), so a tightly trimmed file
        decodes as well as one with silence around the speech.
        """
        feats = segment_features(samples, self.front_end if denoise else None).unsqueeze(0)
        return self.model.infer(feats)

    def recognize(self, samples: np.ndarray, denoise: bool = True) -> Recognition:
        """Decode one speech segment (16 kHz mono float32) against the grammar.

        ``denoise`` False skips the front end: the daemon denoises the stream ahead of the VAD.
        """
        return self.decode(samples, denoise)[0]

    def complete(self, samples: np.ndarray, denoise: bool = True) -> Recognition | None:
        """The recognition of a segment that may not be over yet, if it is a whole command; else None.

        Whole: recognised (confident, the sentence fits the sound) and no longer sentence of the grammar
        starts with its words, so more audio could only make it another command or none.  The daemon asks
        this after a short pause (``vad.early_silence_ms``) to end the command without waiting for the
        full ``vad.silence_ms``.
        """
        result, hyp = self.decode(samples, denoise)
        if not result.recognized or hyp is None or hyp.continues:
            _LOGGER.debug("%r is not a whole command yet (%s)", result.best_text,
                          "the grammar goes on" if hyp is not None and hyp.continues else "not recognised")
            return None
        return result

    def decode(self, samples: np.ndarray, denoise: bool = True):
        """:meth:`recognize`, with the search's :class:`vcd.decoder.Hypothesis` (None under 0.1 s)."""
        from vcd.decoder import search
        from vcd.grammar import meaning

        started = time.perf_counter()
        samples = np.asarray(samples, dtype=np.float32)
        audio_s = samples.size / SAMPLE_RATE_HZ
        if samples.size < SAMPLE_RATE_HZ // 10:  # under 0.1 s: nothing to decode
            return Recognition("", None, {}, 0.0, audio_s, (time.perf_counter() - started) * 1000.0), None
        hyp = search(self.graph, self.posteriors(samples, denoise), self.beam)
        confidence = float(np.exp(-self.confidence_scale * max(hyp.gap_per_frame, 0.0))) if hyp.words else 0.0
        text = " ".join(hyp.words)
        intent, slots = meaning(hyp.tags) or (None, {})
        decode_ms = (time.perf_counter() - started) * 1000.0
        if self.fit_floor is not None and hyp.words and hyp.fit_per_frame < self.fit_floor:
            confidence = min(confidence, self.min_confidence * 0.999)  # the sentence does not fit the sound
        if confidence < self.min_confidence or intent is None:
            return Recognition("", None, {}, confidence, audio_s, decode_ms, best_text=text), hyp
        return Recognition(text, intent, slots, confidence, audio_s, decode_ms, best_text=text), hyp
