"""The fixed data splits: whole speakers and noise recordings, decided before any run that reports figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcd.training.augment import room_rirs
from vcd.training.corpora import SPLITS, is_held_out_speaker, noise_files, noise_split, speaker_split


def test_the_split_rule_is_pinned() -> None:
    # Changing the rule would move test speakers into training: these values must never change.
    assert speaker_split("speechocean762", "0006") == "validation"
    assert speaker_split("speechocean762", "0567") == "test"
    assert speaker_split("speechocean762", "1026") == "train"
    assert speaker_split("alphanumeric", "a1") == "validation"
    assert speaker_split("fsdd-dev", "george") == "test"  # evaluation-only corpora are all test
    assert speaker_split("wakewords", "anyone") == "test"


@given(st.sampled_from(["speechocean762", "commonvoice", "an4-train", "speechcommands-v2", "vctk-sample",
                        "alphanumeric", "fsdd-dev"]), st.text(min_size=1, max_size=20))
def test_every_speaker_has_exactly_one_split(corpus: str, speaker: str) -> None:
    split = speaker_split(corpus, speaker)
    assert split in SPLITS
    assert speaker_split(corpus, speaker) == split  # stable
    assert is_held_out_speaker(corpus, speaker) == (split != "train")


def test_noise_splits(tmp_path: Path) -> None:
    rows = [{"file": f"train/kitchen20/plates/{i}.opus", "split": "train"} for i in range(40)]
    rows += [{"file": "test/household/vacuum/1.opus", "split": "test"}]
    (tmp_path / "noise").mkdir()
    (tmp_path / "noise" / "noises.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    train, valid, test = (noise_files(tmp_path, s) for s in ("train", "validation", "test"))
    assert [p.name for p in test] == ["1.opus"]
    assert valid and train and not set(train) & set(valid)
    assert len(train) + len(valid) == 40
    assert noise_split("test/kitchen20/blender/x.opus") == "test"
    assert noise_files(tmp_path / "nowhere", "train") == []


def test_simulated_rooms() -> None:
    pytest.importorskip("pyroomacoustics")
    rirs = room_rirs(3, np.random.default_rng(0))
    assert len(rirs) == 3
    for rir in rirs:
        assert rir.dtype == np.float32 and np.argmax(np.abs(rir)) == 0  # the direct path first: no delay
        assert abs(float(np.sum(rir.astype(np.float64) ** 2)) - 1.0) < 1e-3
