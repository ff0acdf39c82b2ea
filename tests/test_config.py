"""Configuration: defaults, validation messages, path resolution, search order, the documented config.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from vcd.config import (
    Config,
    ConfigError,
    find_config_path,
    load_config,
    parse_config,
    section_fields,
    with_overrides,
)
from vcd.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.exit_code == ExitCode.CONFIG
    return str(info.value)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.daemon.site == "default"
    assert config.vad.frame_ms == 30
    assert config.recognizer.min_confidence == 0.5
    assert config.recognizer.threads == 1
    assert config.recognizer.sentences == () and config.recognizer.model is None
    assert config.recognizer.sentences_mode == "add"
    assert config.plugins.enabled == ("console", "mqtt", "feedback")
    assert config.plugin_table("mqtt") == {}


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[vad]\nfrmae_ms = 20\n")
    assert error_of(path) == f"{path}: vad.frmae_ms: unknown key (did you mean 'frame_ms'?)"


def test_unknown_section_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[vda]\nframe_ms = 20\n")
    assert error_of(path) == f"{path}: vda: unknown section (did you mean 'vad'?)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[vad]\nframe_ms = 25", "vad.frame_ms: must be 10, 20 or 30 (got 25)"),
        ("[vad]\naggressiveness = 4", "vad.aggressiveness: must be 0..3 (got 4)"),
        ("[vad]\nsilence_ms = 'long'", "vad.silence_ms: must be an integer (got 'long')"),
        ("[vad]\nsilence_ms = true", "vad.silence_ms: must be an integer (got True)"),
        ("[recognizer]\nmin_confidence = 1.5", "recognizer.min_confidence: must be 0..1 (got 1.5)"),
        ("[recognizer]\nthreads = 0", "recognizer.threads: must be 1..64 (got 0)"),
        ("[audio]\nsource = 'usb'", "audio.source: must be one of 'mic', 'file', 'stdin', 'none' (got 'usb')"),
        ("[audio]\nsource = 'file'", 'audio.file: must name a file when audio.source = "file"'),
        ("[daemon]\nsite = 'a/b'", "daemon.site: must not contain '/', '+', '#' or surrounding spaces (got 'a/b')"),
        ("[daemon]\nlog_level = 'loud'", "daemon.log_level: must be one of 'debug', 'info', 'warning', 'error' (got 'loud')"),
        ("[plugins]\nenabled = 'console'", "plugins.enabled: must be a list of plugin names (got 'console')"),
        ("[vad]\nmin_speech_ms = 9000", "vad.max_speech_ms: must be greater than vad.min_speech_ms (8000 ≤ 9000)"),
        ("vad = 3", "vad: must be a table ([vad])"),
        ("[vad]\nearly_silence_ms = 700", "vad.early_silence_ms: must be less than vad.silence_ms or 0 (700 ≥ 700)"),
        ("[vad]\nearly_silence_ms = -1", "vad.early_silence_ms: must be 0..10000 (got -1)"),
        ("[recognizer]\nbeam = -2", "recognizer.beam: must be 0..1000 (got -2)"),
        ("[recognizer]\nsecond_opinion = 'yes'", "recognizer.second_opinion: must be true or false (got 'yes')"),
        ("[recognizer]\ndenoised_view = 1",
         "recognizer.denoised_view: must be true, false, 'webrtc', 'rnnoise', 'off' (got 1)"),
        ("[recognizer]\nengine = 'torch'", "recognizer.engine: must be one of 'auto', 'numpy' (got 'torch')"),
    ],
)
def test_bad_values_name_file_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text + "\n")
    assert error_of(path) == f"{path}: {message}"


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[vad]\nframe_ms = 30\nsilence_ms = \n")
    message = error_of(path)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 3" in message


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "my.yaml").write_text("language: en\n")
    (tmp_path / "etc" / "plugins").mkdir()
    path = write(
        tmp_path / "etc",
        '[recognizer]\nsentences = "my.yaml"\n[audio]\nfile = "in.wav"\n[plugins]\ndirs = ["plugins"]\n',
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    assert config.recognizer.sentences == (tmp_path / "etc" / "my.yaml",)
    assert config.audio.file == tmp_path / "etc" / "in.wav"
    assert config.plugins.dirs == (tmp_path / "etc" / "plugins",)


def test_missing_files_are_reported_before_start(tmp_path: Path) -> None:
    path = write(tmp_path, '[recognizer]\nmodel = "nope.pt"\n')
    assert error_of(path) == f"{path}: recognizer.model: {tmp_path / 'nope.pt'}: no such file or folder"
    path = write(tmp_path, '[plugins]\ndirs = ["nowhere"]\n')
    assert error_of(path) == f"{path}: plugins.dirs: {tmp_path / 'nowhere'}: no such folder"


def test_plugin_tables_are_passed_raw(tmp_path: Path) -> None:
    path = write(tmp_path, '[plugins.mqtt]\nhost = "hub"\nport = 1884\n[plugins.mqtt.topics]\nintent = "x"\n')
    config = load_config(path)
    assert config.plugin_table("mqtt") == {"host": "hub", "port": 1884, "topics": {"intent": "x"}}
    assert config.plugin_table("other") == {}
    error = config.key_error("plugins.mqtt.port", "must be 1..65535 (got 0)")
    assert str(error) == f"{path}: plugins.mqtt.port: must be 1..65535 (got 0)"
    assert error.exit_code == ExitCode.CONFIG


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.vad.frame_ms = 10  # type: ignore[misc]


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VCD_CONFIG", raising=False)
    monkeypatch.setattr("vcd.config.SEARCH_PATHS", (Path("config.toml"), tmp_path / "etc-vcd.toml"))
    assert find_config_path() is None
    write(tmp_path, "", "etc-vcd.toml")
    assert find_config_path() == tmp_path / "etc-vcd.toml"
    write(tmp_path, "")
    assert find_config_path() == Path("config.toml")
    env = write(tmp_path, "", "env.toml")
    monkeypatch.setenv("VCD_CONFIG", str(env))
    assert find_config_path() == env
    explicit = write(tmp_path, "", "explicit.toml")
    assert find_config_path(explicit) == explicit


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        find_config_path(tmp_path / "missing.toml")
    monkeypatch.setenv("VCD_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone.toml: no such configuration file \(from \$VCD_CONFIG\)"):
        find_config_path()


def test_command_line_overrides(tmp_path: Path) -> None:
    config = with_overrides(Config(), site="attic", input_path="-", realtime=True)
    assert config.daemon.site == "attic" and config.audio.source == "stdin" and config.audio.realtime
    config = with_overrides(Config(), input_path="a.wav")
    assert config.audio.source == "file" and config.audio.file == Path("a.wav")
    config = with_overrides(Config(), device="3")
    assert config.audio.source == "mic" and config.audio.device == 3
    with pytest.raises(ConfigError, match="^--site: must not contain"):
        with_overrides(Config(), site="a/#")


def test_documented_config_equals_the_built_in_defaults() -> None:
    """config.toml at the repository root documents every key with its default value."""
    path = REPO / "config.toml"
    config = parse_config(tomllib.loads(path.read_text()), path)
    defaults = Config()
    for section in ("daemon", "audio", "vad", "recognizer"):
        assert getattr(config, section) == getattr(defaults, section), section
    for key in ("enabled", "disabled", "dirs", "queue_size"):
        assert getattr(config.plugins, key) == getattr(defaults.plugins, key), key


def test_documented_config_describes_every_key() -> None:
    text = (REPO / "config.toml").read_text()
    for section in ("daemon", "audio", "vad", "recognizer", "plugins"):
        body = text.split(f"[{section}]\n", 1)[1].split("\n[", 1)[0]
        for key in section_fields(section):
            match = re.search(rf"((?:^#.*\n)+)^{key} = ", body, re.MULTILINE)
            assert match, f"{section}.{key} is not in config.toml with a comment above it"
            assert "Default" in match.group(1), f"{section}.{key}: the comment does not state the default"


def test_sentences_may_be_a_list_and_the_mode_is_checked(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("language: en\n")
    (tmp_path / "ha").mkdir()
    config = load_config(write(tmp_path, '[recognizer]\nsentences = ["mine.yaml", "ha"]\nsentences_mode = "replace"\n'))
    assert config.recognizer.sentences == (tmp_path / "mine.yaml", tmp_path / "ha")
    assert config.recognizer.sentences_mode == "replace"
    with pytest.raises(ConfigError, match=r"recognizer\.sentences_mode: must be one of 'add', 'replace'"):
        load_config(write(tmp_path, '[recognizer]\nsentences = "mine.yaml"\nsentences_mode = "merge"\n'))
    with pytest.raises(ConfigError, match=r'recognizer\.sentences_mode: "replace" needs recognizer\.sentences'):
        load_config(write(tmp_path, '[recognizer]\nsentences_mode = "replace"\n'))
    with pytest.raises(ConfigError, match=rf"recognizer\.sentences: {tmp_path / 'nope'}: no such file or folder"):
        load_config(write(tmp_path, '[recognizer]\nsentences = ["mine.yaml", "nope"]\n'))
    with pytest.raises(ConfigError, match=r"recognizer\.sentences: must be a file or folder path, or a list"):
        load_config(write(tmp_path, "[recognizer]\nsentences = [1]\n"))
