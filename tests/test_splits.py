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


def test_the_narrowband_condition_keeps_the_telephone_band_only() -> None:
    """FSDD's digits are 8 kHz recordings: the held-out decodes have clean speech through that band too."""
    from vcd.training.heldout import narrowband

    t = np.arange(16000) / 16000
    x = (np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    y = narrowband(x)
    assert y.dtype == np.float32 and y.size == x.size
    spectrum = np.abs(np.fft.rfft(y[2000:-2000]))
    freqs = np.fft.rfftfreq(y.size - 4000, 1 / 16000)
    assert spectrum[np.argmin(np.abs(freqs - 1000))] > 1000 * spectrum[np.argmin(np.abs(freqs - 6000))]


def test_noise_streams_are_sound_the_vad_can_cut(tmp_path: Path) -> None:
    """Each held-out noise stream is audio of the length asked for, in range, the same for the same seed;
    the streams built from recordings are left out where a data folder has none."""
    from vcd.training.heldout import NOISE_STREAMS, Noises, noise_segments, noise_stream

    noises = Noises(tmp_path, "validation", np.random.default_rng(0))
    noises.recordings = [np.random.default_rng(1).standard_normal(16000 * 6).astype(np.float32) * 0.1]
    noises.names = ["hiss.wav"]
    for kind in NOISE_STREAMS:
        x = noise_stream(kind, noises, 16000 * 70, np.random.default_rng(5))
        assert x.dtype == np.float32 and x.size == 16000 * 70 and np.isfinite(x).all() and 0 < np.abs(x).max() <= 1.0
        noises.rng = np.random.default_rng(0)
        again = noise_stream(kind, noises, 16000 * 70, np.random.default_rng(5))
        assert np.array_equal(x, again)
    with pytest.raises(ValueError, match="unknown noise stream"):
        noise_stream("rain", noises, 100, np.random.default_rng(0))
    noises.recordings = []
    kinds = {note["condition"] for note, _, _ in noise_segments(None, noises, 0.5, np.random.default_rng(0))}
    assert kinds <= {"white noise", "coloured noise"}


def test_a_benchmark_given_no_data_folder_says_so_in_one_line(tmp_path: Path) -> None:
    """Not an empty table from nothing: argparse's usage and one line naming the folder, exit 2."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    missing = tmp_path / "shared" / "data"
    run = subprocess.run([sys.executable, str(repo / "benchmarks" / "real_rooms.py"), "--data", str(missing),
                          "--split", "validation"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines()[-1] == f"real_rooms.py: error: argument --data: {missing}: no such data folder"


def test_commands_under_unfamiliar_noise_leave_the_other_draws_as_they_were(tmp_path: Path) -> None:
    """``Draw.unfamiliar`` adds one condition, drawn with its own generator: every other decode's audio
    is what it was without it, so figures and fitted rules stay comparable."""
    from conftest import write_wav

    from vcd.training.corpora import speaker_split
    from vcd.training.heldout import UNFAMILIAR, UNFAMILIAR_STREAMS, Draw, decodes

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "commonvoice"
    folder.mkdir(parents=True)
    speakers = [s for s in (f"s{i}" for i in range(200)) if speaker_split("commonvoice", s) == "validation"][:3]
    rows = []
    for k, speaker in enumerate(speakers):
        write_wav(folder / f"{k}.wav", (rng.standard_normal(12000) * 0.1).astype(np.float32))
        rows.append(json.dumps({"file": f"{k}.wav", "text": f"turn on light {k}", "speaker": speaker}))
    (folder / "transcripts.jsonl").write_text("\n".join(rows) + "\n")

    def draws(unfamiliar: bool) -> list[tuple[dict, np.ndarray]]:
        return [(note, audio) for note, _, audio in decodes(tmp_path / "data", "validation", tmp_path, {},
                                                            Draw(snrs=(12.0,), stream_min=0, unfamiliar=unfamiliar))]

    plain, more = draws(False), draws(True)
    assert [n for n, _ in more if n["condition"] != UNFAMILIAR] == [n for n, _ in plain]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip([d for d in more if d[0]["condition"] != UNFAMILIAR], plain))
    unfamiliar = [(n, a) for n, a in more if n["condition"] == UNFAMILIAR]
    assert len(unfamiliar) == len(speakers) and all(a.dtype == np.float32 and np.isfinite(a).all() for _, a in unfamiliar)
    # each noisy decode names its noise (no recordings here: babble), the clean ones none
    assert {n.get("noise") for n, _ in more if n["condition"] in ("clean", "8 kHz")} == {None}
    assert {n["noise"] for n, _ in more if n["condition"] in ("12 dB", "room+12 dB")} == {"babble"}
    assert {n["noise"] for n, _ in unfamiliar} <= set(UNFAMILIAR_STREAMS)
