"""The segment's estimated SNR (vcd.audio.estimate_snr_db) and a rejection rule made stricter in loud noise by it."""

from __future__ import annotations

from dataclasses import replace

import hypothesis
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import noise, utterances
from vcd.audio import SNR_KNEE_DB, SNR_RANGE_DB, estimate_snr_db
from vcd.recognizer import REJECTION_FEATURES, Recognizer, RejectionRule
from vcd.training.calibrate import REJECTION_FEATURES as FEATURE_ORDER
from vcd.training.calibrate import rule_accepts, with_snr_strictness


def at_snr(speech: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``speech`` with white noise whose RMS is ``snr_db`` under that of speech's loud tenth."""
    n = speech.size // 512
    power = np.sort(np.mean(np.square(speech[: n * 512].reshape(n, 512).astype(np.float64)), axis=1))
    loud = float(np.mean(power[-max(1, n // 10):]))
    level = float(np.sqrt(loud / 10 ** (snr_db / 10)))
    return (speech + noise(speech.size / 16000, level=level, seed=seed)[: speech.size]).astype(np.float32)


def test_the_estimate_follows_the_noise_level_and_tops_out_in_silence() -> None:
    speech = utterances("turn on the kitchen light")
    assert estimate_snr_db(speech) == SNR_RANGE_DB[1]  # digital silence around the words: no noise at all
    estimates = [estimate_snr_db(at_snr(speech, snr)) for snr in (30, 20, 10, 0)]
    assert estimates == sorted(estimates, reverse=True) and len(set(estimates)) == 4
    for snr, estimate in zip((30, 20, 10, 0), estimates):
        assert abs(estimate - snr) < 3.0  # steady noise: the quiet chunks are the noise itself
    assert np.isnan(estimate_snr_db(speech[:512 * 4]))  # too short to tell speech from floor


@hypothesis.settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.integers(0, 6000), elements=st.floats(-1.0, 1.0, width=32, allow_subnormal=False)))
def test_any_audio_gets_an_estimate_in_range_or_nan(samples: np.ndarray) -> None:
    estimate = estimate_snr_db(samples)
    assert np.isnan(estimate) == (samples.size < 5 * 512)
    assert np.isnan(estimate) or SNR_RANGE_DB[0] <= estimate <= SNR_RANGE_DB[1]


def test_the_shortfall_is_zero_above_the_knee_and_unmeasured_without_an_estimate() -> None:
    hyp = Recognizer.load().decode(utterances("turn on the tv"))[1]
    assert hyp.snr == SNR_RANGE_DB[1] and hyp.snr_shortfall == 0.0
    assert replace(hyp, snr=SNR_KNEE_DB - 7.5).snr_shortfall == 7.5
    assert np.isnan(replace(hyp, snr=float("nan")).snr_shortfall)


def _decode(best: str, **x: float) -> dict:
    return {"set": "commands", "condition": "clean", "best": best,
            "x": [x.get(f, np.nan) for f in FEATURE_ORDER]}


@hypothesis.settings(max_examples=200, deadline=None)
@given(gap=st.floats(0, 5, allow_subnormal=False), shortfall=st.floats(0, 30, allow_subnormal=False),
       per_db=st.floats(0, 1, allow_subnormal=False), bias=st.floats(-5, 5, allow_subnormal=False))
def test_strictness_in_loud_noise_never_accepts_more(gap: float, shortfall: float, per_db: float, bias: float) -> None:
    rule = {"features": ["gap"], "weights": [-1.0], "bias": bias, "noise_guard": {"weights": [-2.0], "bias": bias + 1}}
    strict = with_snr_strictness(rule, per_db)
    decode = _decode("turn on the tv", gap=gap, snr_shortfall=shortfall)
    assert not rule_accepts(strict, decode) or rule_accepts(rule, decode)
    if shortfall == 0.0:  # a quiet room: nothing changes
        assert rule_accepts(strict, decode) == rule_accepts(rule, decode)
    assert with_snr_strictness(strict, 0.5)["weights"] == [-1.0, -0.5]  # replaced, not added
    assert with_snr_strictness(strict, 0.5)["noise_guard"]["weights"] == [-2.0, -0.5]


def test_the_recogniser_rejects_in_loud_noise_what_it_accepts_in_a_quiet_room() -> None:
    """A rule that weighs nothing but the shortfall, through the real model and search."""
    recognizer = Recognizer.load()
    recognizer.rejection = RejectionRule(("gap", "snr_shortfall"), (0.0, -1.0), 5.0)
    speech = utterances("turn on the kitchen light")
    quiet, loud = recognizer.recognize(at_snr(speech, 30)), recognizer.recognize(at_snr(speech, 10))
    assert quiet.text == "turn on the kitchen light" and quiet.confidence > 0.99
    assert loud.best_text == "turn on the kitchen light"  # heard right, and still rejected: 10 dB under the knee
    assert loud.text == "" and loud.confidence < 0.5
    assert "snr_shortfall" in REJECTION_FEATURES
    with pytest.raises(Exception, match="rejection rule"):  # a vcd that does not know a feature refuses the model
        RejectionRule.from_extra({"rejection": {"features": ["snr_excess"], "weights": [1.0], "bias": 0.0}})
