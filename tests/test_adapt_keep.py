"""Keeping confident commands' audio (``[adapt]``) and ``vcd adapt`` on what was kept, through the real CLI."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import requires_espeak, speak, vcd_command, write_config
from test_pipeline import COMMAND, NOT_A_COMMAND, FakeRecognizer, Pipeline, commands
from vcd.config import AdaptConfig, load_config
from vcd.errors import ConfigError, ExitCode
from vcd.keeper import INDEX, ClipKeeper, read_kept
from vcd.model import load_model


def test_only_recognised_confident_commands_are_kept_and_the_oldest_go_first(tmp_path: Path) -> None:
    keeper = ClipKeeper(tmp_path / "kept", min_confidence=0.7, max_clips=3)
    audio = np.zeros(8000, np.float32)
    assert keeper.keep(audio, "turn on the tv", None, 0.99) is None  # rejected: nothing kept
    assert keeper.keep(audio, "turn on the tv", "HassTurnOn", 0.69) is None  # not confident enough
    kept = [keeper.keep(audio, f"command {i}", "HassTurnOn", 0.9) for i in range(5)]
    rows = read_kept(tmp_path / "kept")
    assert [r["text"] for r in rows] == ["command 2", "command 3", "command 4"]
    assert sorted(p.name for p in (tmp_path / "kept").glob("*.flac")) == sorted(r["file"] for r in rows)
    assert not kept[0].exists() and kept[4].exists()
    assert rows[0]["intent"] == "HassTurnOn" and rows[0]["confidence"] == 0.9


def test_a_folder_that_cannot_be_written_loses_the_clip_not_the_daemon(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    keeper = ClipKeeper(blocker / "kept", min_confidence=0.5, max_clips=10)
    assert keeper.keep(np.zeros(800, np.float32), "turn on the tv", "HassTurnOn", 0.9) is None


def test_a_cut_index_line_is_skipped(tmp_path: Path) -> None:
    (tmp_path / INDEX).write_text('{"file": "a.flac", "text": "x"}\n{"file": "b.fl', encoding="utf-8")
    assert [r["file"] for r in read_kept(tmp_path)] == ["a.flac"]


def test_the_daemon_keeps_clips_only_when_asked(tmp_path: Path) -> None:
    pipeline = Pipeline(commands(2), FakeRecognizer(COMMAND, NOT_A_COMMAND))
    assert pipeline.run() == ExitCode.OK and pipeline.daemon.keeper is None  # off by default
    pipeline = Pipeline(commands(2), FakeRecognizer(COMMAND, NOT_A_COMMAND))
    config = replace(pipeline.config, adapt=AdaptConfig(keep_clips=True, folder=tmp_path / "kept"))
    pipeline.daemon = type(pipeline.daemon)(config, pipeline.recognizer, pipeline.plugins, pipeline.source)
    assert pipeline.run() == ExitCode.OK
    [row] = read_kept(tmp_path / "kept")  # the command, not the rejected segment
    assert row["text"] == COMMAND.text and row["intent"] == COMMAND.intent


def test_adapt_config(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "c.toml", {"adapt": {"keep_clips": True, "folder": "kept"}}))
    assert config.adapt.keep_clips and config.adapt.folder == tmp_path / "kept"
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path / "bad.toml", {"adapt": {"max_clips": 0}}))
    assert "adapt.max_clips" in str(err.value) and "\n" not in str(err.value)


def test_vcd_adapt_without_kept_clips_is_a_one_line_error(tmp_path: Path) -> None:
    run = subprocess.run([*vcd_command(), "adapt", "--clips", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == ExitCode.NO_INPUT
    assert run.stderr.strip().count("\n") == 0 and run.stderr.startswith("Error: ")


@requires_espeak
def test_vcd_adapt_writes_an_adapted_model_from_kept_clips(tmp_path: Path) -> None:
    keeper = ClipKeeper(tmp_path / "kept", min_confidence=0.5, max_clips=50)
    for text in ("turn on the kitchen light", "turn off the kitchen light", "turn on the tv", "turn off the tv"):
        pad = np.zeros(4800, np.float32)
        keeper.keep(np.concatenate([pad, speak(text), pad]), text, "HassTurnOn", 0.9)
    out = tmp_path / "adapted.pt"
    run = subprocess.run([*vcd_command(), "adapt", "--clips", str(tmp_path / "kept"), "--steps", "2", "--output",
                          str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["output"] == str(out) and report["clips_used"] == 4
    model, labels, extra = load_model(out)
    original, original_labels, original_extra = load_model(report["model"])
    assert labels == original_labels and model.hparams == original.hparams
    assert extra["adapted"]["method"] == "finetune"
    assert extra["confidence_scale"] == original_extra["confidence_scale"]
