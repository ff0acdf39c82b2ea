"""Property-based fuzzing (hypothesis) of what a user hands vcd: configuration files and WAV headers.

Random and mutated config files go through ``vcd check-config`` and random or mutated WAV
headers through ``vcd transcribe``, both by the command line's ``main()`` in this process:
never a traceback, an exit status from the documented set, and an error is one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import resource
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from vcd_plugins.mqtt import settings as mqtt_settings

from vcd.cli import main
from vcd.config import _SCHEMA, section_fields
from vcd.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]

FUZZ = hypothesis.settings(
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],  # tmp_path is reused on purpose
)


class _Records(logging.Handler):
    """Every log record of one call, to check that none carries a traceback or spans lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _recorded() -> Iterator[_Records]:
    handler, root = _Records(), logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def run_main(*argv: str) -> tuple[int, str, str, list[logging.LogRecord]]:
    """``vcd ARGV`` in this process: (exit status, stdout, stderr, log records)."""
    import torch

    threads = torch.get_num_threads()  # recognizer.threads sets torch's thread count for the process
    out, err = io.StringIO(), io.StringIO()
    try:
        with _recorded() as log, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue(), log.records


def assert_no_traceback(err: str, records: list[logging.LogRecord]) -> None:
    assert "Traceback" not in err, err
    for record in records:
        assert record.exc_info is None, (record.getMessage(), record.exc_info)
        assert "\n" not in record.getMessage(), record.getMessage()


def assert_one_error_line(err: str, prefix: str = "") -> None:
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.startswith(f"Error: {prefix}"), err


# --- configuration files ---------------------------------------------------------------------------

# Files the keys below may name: a text file, binary bytes, a broken sentences file, a valid one, a broken model.
FILES = {
    "notes.txt": b"hello\n",
    "binary.bin": bytes(range(256)) * 4,
    "broken.yaml": b"language: en\nintents:\n  X:\n    data:\n      - sentences:\n          - 'turn on [the'\n",
    "home.yaml": b"language: en\nintents:\n  HassTurnOn:\n    data:\n      - sentences:\n          - 'turn on the light'\n",
    "model.pt": bytes(range(200)) * 20,
}
PATHS = [
    "", "~", "~/", "~nosuchuser/x", "~nosuchuser", "m" * 5000, "a/" * 2000, "a\x00b", ".", "..", "/", "/dev/null",
    "/dev/zero", "no/such/file", *FILES,
]

plugin_keys = {
    "mqtt": [*mqtt_settings._KEYS, "prot", "tls"],
    "console": ["format", "events", "colour"],
    "example_command": ["commands", "timeout_s", "intent"],
    "mqqt": ["host"],
}
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # what TOML integers can hold
    st.floats(allow_subnormal=False),  # nan and inf are TOML too
    st.text(max_size=20),
    st.sampled_from(PATHS),
    st.sampled_from(["mic", "file", "stdin", "auto", "rnnoise", "none", "debug", "console", "mqtt", "localhost",
                     "mqtt..lan", "127.0.0.1", "::1", "vcd/#", "{name|slug}", "HassTurnOn"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@st.composite
def deep_values(draw: st.DrawFn) -> Any:
    """A list or table nested 0..200 deep (deeper than any key needs, not so deep that tomllib recurses too far)."""
    value: Any = draw(scalars)
    for _ in range(draw(st.integers(0, 200))):
        value = [value] if draw(st.booleans()) else {"k": value}
    return value


def table_for(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), values | deep_values(), max_size=4)


sections = {name: table_for(section_fields(name)) for name in _SCHEMA}
plugins_section = st.fixed_dictionaries(
    {},
    optional={
        "enabled": st.lists(st.sampled_from(["console", "mqtt", "example_command", "nope"]), max_size=3) | values,
        "disabled": st.lists(st.sampled_from(["console", "mqtt"]), max_size=2) | values,
        "dirs": st.lists(st.sampled_from(PATHS), max_size=2) | values,
        "queue_size": values,
        **{name: table_for(keys) for name, keys in plugin_keys.items()},
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={**{name: table | values for name, table in sections.items()}, "plugins": plugins_section, "vda": values},
)


def toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)  # a JSON string is a TOML basic string (DEL aside: then invalid TOML)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float("inf") else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_key(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(document: dict[str, Any]) -> bytes:
    """Top-level keys with inline tables: every document the strategies draw, in TOML."""
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in document.items()).encode()


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes replaced, inserted or deleted, and perhaps cut short."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "delete" and data:
            del data[at]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@st.composite
def nested_text(draw: st.DrawFn) -> bytes:
    """``KEY = [[[…]]]`` up to 5000 deep, under a real section or none: tomllib's recursion (RecursionError)."""
    section = draw(st.sampled_from(["", "daemon", "plugins", "plugins.mqtt"]))
    key = draw(st.sampled_from(["site", "enabled", "host", "x"]))
    depth = draw(st.integers(0, 5000))
    opener = draw(st.sampled_from(["[", "{a = "]))
    closer = "]" if opener == "[" else "}"
    header = f"[{section}]\n" if section else ""
    return f"{header}{key} = {opener * depth}1{closer * depth}\n".encode()


config_files = st.one_of(
    documents.map(toml_text),
    documents.map(toml_text),  # twice: what parses as TOML reaches the checks of every key
    mutated((REPO / "config.toml").read_bytes()),
    documents.map(toml_text).flatmap(mutated),
    nested_text(),
    st.binary(max_size=2000),
)


@pytest.fixture
def config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    for var in ("VCD_CONFIG", "VCD_FUZZ_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@hypothesis.settings(FUZZ, max_examples=100)
@given(data=config_files)
@hypothesis.example(data=b"\xff" + bytes(range(200)))
@hypothesis.example(data=b"site = " + b"[" * 3000 + b"]" * 3000)
@hypothesis.example(data=b'[plugins.mqqt]\nhost = "hub"\n')
@hypothesis.example(data=b"[plugins]\nenabled = {a = 1}\n")
@hypothesis.example(data=b'[plugins.mqtt]\ntls = { ca_file = "notes.txt" }\n')
@hypothesis.example(data=b'[plugins.mqtt]\nhost = "mqtt..lan"\n')
@hypothesis.example(data=b'[plugins.mqtt]\nusername = "u"\npassword_file = "binary.bin"\n')
@hypothesis.example(data=b'[recognizer]\nsentences = "broken.yaml"\nmodel = "model.pt"\n')
def test_any_config_file_is_accepted_or_refused_in_one_line(config_folder: Path, data: bytes) -> None:
    path = config_folder / "fuzz.toml"
    path.write_bytes(data)
    code, out, err, records = run_main("check-config", "--config", str(path))
    hypothesis.event("outcome", "OK" if code == 0 else ".".join(err[len(f"Error: {path}: "):].split(":")[0].split(".")[:2])[:20])
    assert_no_traceback(err, records)
    assert code in (ExitCode.OK, ExitCode.CONFIG), (code, err)
    if code == ExitCode.OK:
        assert err == "" and out.startswith(f"{path}: OK (plugins: ") and out.count("\n") == 1, (out, err)
    else:
        assert out == ""
        # the first problem, in the file or in a plugin named in it
        assert_one_error_line(err)
        assert err.startswith((f"Error: {path}: ", "Error: plugin \"")), err


# --- WAV headers -----------------------------------------------------------------------------------

# Offsets of the canonical 44-byte PCM header's fields (WAVE_FORMAT_EXTENSIBLE and float files have more).
HEADER_FIELDS = {"riff_size": (4, 4), "format": (20, 2), "channels": (22, 2), "rate_hz": (24, 4),
                 "byte_rate": (28, 4), "block_align": (32, 2), "bits": (34, 2), "data_size": (40, 4)}


@st.composite
def wav_files(draw: st.DrawFn) -> bytes:
    """A short valid WAV (PCM, float or 8-bit; 1–2 channels) with lying header fields, flipped bytes or a cut."""
    rate = draw(st.sampled_from([8000, 16000, 22050, 44100]))
    channels = draw(st.integers(1, 2))
    subtype = draw(st.sampled_from(["PCM_16", "PCM_U8", "FLOAT", "PCM_24"]))
    frames = int(rate * draw(st.floats(0.05, 0.4)))
    audio = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(-0.5, 0.5, (frames, channels))
    buffer = io.BytesIO()
    soundfile.write(buffer, audio.astype(np.float32), rate, subtype=subtype, format="WAV")
    data = bytearray(buffer.getvalue())
    for name in draw(st.lists(st.sampled_from(sorted(HEADER_FIELDS)), max_size=3, unique=True)):
        offset, size = HEADER_FIELDS[name]
        special = [0, 1, 2, 3, 7, 255, 256, 4000, 44101, 65535, 2**31 - 1, 2**32 - 1]
        value = draw(st.sampled_from([v for v in special if v < 2 ** (8 * size)]) | st.integers(0, 2 ** (8 * size) - 1))
        data[offset:offset + size] = value.to_bytes(size, "little")
    for _ in range(draw(st.integers(0, 4))):  # mostly the header (the fmt chunk, a fact chunk of a float file)
        at = draw(st.integers(0, min(len(data), 80) - 1))
        data[at] = draw(st.integers(0, 255))
    for _ in range(draw(st.integers(0, 2))):  # and the samples (NaN, infinities in a float file)
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@hypothesis.settings(FUZZ, max_examples=60)
@given(data=wav_files())
@hypothesis.example(data=b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 1, 2, 2, 16)
                    + b"data" + struct.pack("<I", 32000) + bytes(32000))  # 1 Hz: 16000 frames claim 4.4 hours
@hypothesis.example(data=b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 65535, 16000,
                    32000, 2, 16) + b"data" + struct.pack("<I", 2**32 - 1))  # absurd channels, data size beyond the file
def test_any_wav_header_is_decoded_or_refused_in_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.wav"
    path.write_bytes(data)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, err, records = run_main("transcribe", str(path))
    assert_no_traceback(err, records)
    assert code in (ExitCode.OK, ExitCode.NO_INPUT), (code, err)
    if code == ExitCode.OK:
        assert err == "" and json.loads(out)["file"] == str(path)
    else:
        assert out == ""
        assert_one_error_line(err, f"{path}: ")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 300, f"transcribing {len(data)} bytes raised the peak memory by {grown_mib:.0f} MiB"


def test_a_lying_header_costs_no_more_memory_than_a_true_one(tmp_path: Path) -> None:
    """The real ``vcd transcribe`` process: peak memory with a 1 Hz or a 44101 Hz header vs the honest file.

    Before the header check a 1 Hz header made torchaudio produce 16000 samples per sample
    (0.5 s of audio: 8000 → 128 million), and 44101 Hz asked for a 2.8 GB sinc kernel.
    """
    honest = tmp_path / "honest.wav"
    soundfile.write(str(honest), np.zeros(8000, np.float32), 16000, subtype="PCM_16")
    header = honest.read_bytes()
    peaks = {}
    for name, rate in (("honest", None), ("1hz", 1), ("44101hz", 44101)):
        path = tmp_path / f"{name}.wav"
        path.write_bytes(header if rate is None else header[:24] + struct.pack("<I", rate) + header[28:])
        process = subprocess.Popen([sys.executable, "-m", "vcd", "transcribe", str(path)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, cwd=tmp_path)
        _, status, usage = os.wait4(process.pid, 0)
        stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
        process.stdout.close()
        process.stderr.close()
        process.returncode = os.waitstatus_to_exitcode(status)
        assert "Traceback" not in stderr, stderr
        peaks[name] = usage.ru_maxrss / 1024  # MiB
        if name == "1hz":
            assert (process.returncode, stdout) == (ExitCode.NO_INPUT, ""), stderr
            assert stderr == f"Error: {path}: its header gives a sample rate of 1 Hz; vcd reads 8000–384000 Hz\n"
        else:
            assert process.returncode == 0 and json.loads(stdout)["file"] == str(path), stderr
    assert peaks["1hz"] < peaks["honest"] + 100 and peaks["44101hz"] < peaks["honest"] + 100, peaks
