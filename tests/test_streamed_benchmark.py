"""benchmarks/streamed_commands.py: where a command not recognised through the VAD was lost (``--where``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "streamed_commands.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("streamed_commands", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_each_way_a_command_is_lost_is_told_apart(bench) -> None:
    S, why = bench.Segment, bench.why_lost
    a, b = 10_000, 30_000  # the command
    assert why(a, b, []) == "in no segment"
    assert why(a, b, [S(0, 5_000, False, "")]) == "in no segment"  # beside it, not over it
    assert why(a, b, [S(0, 128_000, True, None)]) == "only in gated segments"
    assert why(a, b, [S(0, 20_000, True, ""), S(19_000, 60_000, False, "")]) == "across a cut"
    assert why(a, b, [S(0, 20_000, False, ""), S(21_000, 60_000, False, "")]) == "split by a pause"
    assert why(a, b, [S(0, 128_000, True, "turn on the light")]) == "whole in a cut segment"
    assert why(a, b, [S(5_000, 40_000, False, "")]) == "whole in a closed segment"
    assert why(a, b, [S(15_000, 40_000, False, "")]) == "partly in one segment"
    assert set(bench.LOSSES) == {"in no segment", "only in gated segments", "across a cut", "split by a pause",
                                 "whole in a cut segment", "whole in a closed segment", "partly in one segment"}


def test_a_bad_vad_setting_is_a_usage_error(bench) -> None:
    with pytest.raises(bench.ConfigError):
        bench.vad_config(["silence_ms=abc"])
    assert bench.vad_config(["silence_ms=900"]).silence_ms == 900
