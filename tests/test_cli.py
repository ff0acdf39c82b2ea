"""The ``vcd`` command line, run as a user runs it: subcommands, one-line errors and exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def vcd(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("VCD_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "vcd", *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.splitlines()[-1] == f"Error: {message}"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = vcd("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "check-config", "plugins", "devices"):
        assert command in result.stdout


def test_usage_error_exits_2(tmp_path: Path) -> None:
    assert vcd("fly", cwd=tmp_path).returncode == 2
    assert vcd("run", "--realtime", "--fast", cwd=tmp_path).returncode == 2


def test_check_config_accepts_the_documented_config(tmp_path: Path) -> None:
    result = vcd("check-config", "--config", str(REPO / "config.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{REPO / 'config.toml'}: OK (plugins: console, mqtt, feedback)\n"


def test_check_config_without_a_file_uses_defaults(tmp_path: Path) -> None:
    result = vcd("check-config", cwd=tmp_path)
    if Path("/etc/vcd/config.toml").exists():
        pytest.skip("/etc/vcd/config.toml exists on this machine")
    assert result.stdout == "<defaults>: OK (plugins: console, mqtt, feedback)\n"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[plugins.mqtt]\nhost = "127.0.0.1"\nqos = 3\n', "plugins.mqtt.qos: must be 0, 1 or 2 (got 3)"),
        ('[plugins.console]\nformat = "xml"\n', "plugins.console.format: must be 'text' or 'json' (got 'xml')"),
    ],
)
def test_check_config_validates_the_plugin_tables_without_connecting(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "config.toml").write_text('[plugins]\nenabled = ["console", "mqtt"]\n' + table)
    assert_one_line_error(vcd("check-config", "--config", "config.toml", cwd=tmp_path), 78, f"config.toml: {message}")


@pytest.mark.parametrize("command", ["run", "check-config", "plugins"])
def test_unknown_key_is_one_line_and_exit_78(tmp_path: Path, command: str) -> None:
    (tmp_path / "config.toml").write_text("[vad]\nfrmae_ms = 20\n")
    result = vcd(command, "--config", "config.toml", cwd=tmp_path)
    assert_one_line_error(result, 78, "config.toml: vad.frmae_ms: unknown key (did you mean 'frame_ms'?)")


def test_out_of_range_value_is_one_line_and_exit_78(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[vad]\nframe_ms = 25\n")
    result = vcd("run", "--config", "config.toml", cwd=tmp_path)
    assert_one_line_error(result, 78, "config.toml: vad.frame_ms: must be 10, 20 or 30 (got 25)")


def test_invalid_toml_is_one_line_with_the_line_number(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[daemon]\nsite = "hall"\nlog_level = info\n')
    result = vcd("run", "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 78
    assert result.stderr.startswith("Error: config.toml: invalid TOML: ")
    assert "line 3" in result.stderr and len(result.stderr.splitlines()) == 1


def test_config_from_the_environment_and_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "env.toml").write_text("[vad]\nframe_ms = 11\n")
    result = vcd("check-config", cwd=tmp_path, env={"VCD_CONFIG": "env.toml"})
    assert_one_line_error(result, 78, "env.toml: vad.frame_ms: must be 10, 20 or 30 (got 11)")
    (tmp_path / "config.toml").write_text("[vad]\nframe_ms = 12\n")
    result = vcd("check-config", cwd=tmp_path)
    assert_one_line_error(result, 78, "config.toml: vad.frame_ms: must be 10, 20 or 30 (got 12)")
    result = vcd("check-config", cwd=tmp_path, env={"VCD_CONFIG": "missing.toml"})
    assert_one_line_error(result, 78, "missing.toml: no such configuration file (from $VCD_CONFIG)")


def test_missing_input_file_exits_66(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("")
    result = vcd("run", "--config", "config.toml", "--input", "nothing.wav", cwd=tmp_path)
    assert_one_line_error(result, 66, "nothing.wav: no such file")


def test_unreadable_input_file_exits_66(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[plugins]\nenabled = ["console"]\n')
    (tmp_path / "notes.wav").write_text("not audio at all\n")
    result = vcd("run", "--config", "config.toml", "--input", "notes.wav", cwd=tmp_path)
    assert result.returncode == 66
    assert result.stderr.splitlines()[-1].startswith("Error: notes.wav: not a readable audio file")
    assert "Traceback" not in result.stderr


def test_bad_site_option_exits_78(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("")
    result = vcd("run", "--config", "config.toml", "--site", "hall/1", cwd=tmp_path)
    assert_one_line_error(result, 78, "--site: must not contain '/', '+', '#' or surrounding spaces (got 'hall/1')")


def test_a_missing_microphone_is_waited_for_and_sigterm_still_exits_0(tmp_path: Path) -> None:
    """No such microphone (yet): vcd says so once, keeps looking (a USB microphone may come later), stops on SIGTERM."""
    (tmp_path / "config.toml").write_text('[plugins]\nenabled = ["console"]\n')
    environ = {k: v for k, v in os.environ.items() if k not in ("VCD_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "vcd", "run", "--config", "config.toml", "--device", "no such microphone"],
            cwd=tmp_path, env=environ, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 120
        while "trying again in" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        time.sleep(3.5)  # retried after 1 s and 2 s
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    finally:
        process.kill()
        process.wait()
    missing = [line for line in log.read_text().splitlines() if "trying again in" in line and "vcd.sources" in line]
    assert len(missing) == 1, log.read_text()  # once, not once per try
    assert missing[0].endswith((
        "microphone: no input device matches 'no such microphone' (see `vcd devices`); trying again in 1 s",
        "microphone: no audio input devices found; trying again in 1 s",
    ))
    assert "Traceback" not in log.read_text()


def test_plugins_lists_name_source_and_hooks(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "hello.py").write_text("import vcd\n@vcd.hookimpl\ndef vcd_intent(intent):\n    pass\n")
    (tmp_path / "config.toml").write_text('[plugins]\nenabled = ["console"]\ndirs = ["mine"]\n')
    result = vcd("plugins", "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["console", "shipped"]
    assert lines[1].split(None, 1) == [
        "hooks:",
        "vcd_check_config, vcd_feedback, vcd_intent, vcd_shutdown, vcd_speech_ended, vcd_speech_started, vcd_startup, "
        "vcd_transcript, vcd_unrecognized, vcd_wake",
    ]
    assert lines[2].split() == ["hello", str(tmp_path / "mine" / "hello.py")]
    assert lines[3].split() == ["hooks:", "vcd_intent"]


def test_a_plugin_failing_to_import_is_one_line_and_exit_78(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "oops.py").write_text("import vcd\nraise RuntimeError('not today')\n")
    (tmp_path / "config.toml").write_text('[plugins]\nenabled = []\ndirs = ["mine"]\n')
    result = vcd("run", "--config", "config.toml", cwd=tmp_path)
    assert_one_line_error(result, 78, 'plugin "oops" failed to import: RuntimeError: not today')


def test_devices_runs_without_hardware(tmp_path: Path) -> None:
    result = vcd("devices", cwd=tmp_path)
    assert result.returncode in (0, 66), result.stderr
    assert "Traceback" not in result.stderr
