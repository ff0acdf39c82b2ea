"""`vcd check-config` and `vcd run` find every configuration failure before listening: one line, file and key, exit 78.

Each case is a reproduction from issue 32 (a sceptical probe's malformed configurations), run
through the command line's ``main()`` in this process, and the worst of them through the real
``vcd`` process as well.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from conftest import noise

from vcd.cli import main
from vcd.errors import ExitCode

CONFIG = int(ExitCode.CONFIG)

WILDCARD_SENTENCES = """\
language: en
intents:
  Say:
    data:
      - sentences:
          - "say {message}"
lists:
  message:
    wildcard: true
"""

BROKEN_TEMPLATE = """\
language: en
intents:
  HassTurnOn:
    data:
      - sentences:
          - "turn on [the light"
"""


def check_config(config: Path) -> tuple[int, str, str]:
    """``vcd check-config --config CONFIG`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check-config", "--config", str(config)])
    return code, out.getvalue(), err.getvalue()


def refused(config: Path) -> str:
    """The one ``Error:`` line of a configuration check-config refuses with exit 78."""
    code, out, err = check_config(config)
    assert code == CONFIG, (code, out, err)
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("Error: ") and err.endswith("\n")
    return err[len("Error: "):-1]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's folder as the current one (the config files below use relative paths), no $VCD_CONFIG."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VCD_CONFIG", raising=False)
    return tmp_path


def test_a_file_that_is_not_utf8_is_refused(folder: Path) -> None:
    path = folder / "b.toml"
    path.write_bytes(b"[daemon]\nsite = \"x\"\n" + bytes(range(128, 256)))
    assert refused(path) == f"{path}: invalid TOML: not UTF-8 text (byte 0x80 at line 3)"


@pytest.mark.parametrize("key", ["site", "daemon.site", "plugins.mqtt.host"])
def test_deeply_nested_arrays_are_refused(folder: Path, key: str) -> None:
    table, _, name = key.rpartition(".")
    path = folder / "deep.toml"
    for depth in (40, 3000):  # what tomllib parses, and what makes it recurse too deep
        path.write_text((f"[{table}]\n" if table else "") + f"{name} = " + "[" * depth + "]" * depth + "\n")
        message = refused(path)
        if depth == 3000:
            assert message == f"{path}: invalid TOML: arrays or tables nested too deeply"
        elif table:
            assert message == f"{path}: {key}: nested more than 32 levels deep"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[recognizer]\nsentences = "~nosuchuser/home.yaml"\n',
         "recognizer.sentences: '~nosuchuser/home.yaml': cannot expand '~': no such user"),
        ('[plugins]\ndirs = ["~nosuchuser/plugins"]\n',
         "plugins.dirs: '~nosuchuser/plugins': cannot expand '~': no such user"),
        ('[plugins.mqtt]\nusername = "u"\npassword_file = "~nosuchuser/pw"\n',
         "plugins.mqtt.password_file: ~nosuchuser/pw: cannot expand '~': no such user"),
        ('[plugins]\nenabled = {a = 1}\n', "plugins.enabled: must be a list of plugin names (got {'a': 1})"),
        ('[plugins]\ndisabled = {a = 1}\n', "plugins.disabled: must be a list of plugin names (got {'a': 1})"),
        ('[plugins.mqqt]\nhost = "hub"\n', "plugins.mqqt: unknown plugin table (did you mean 'mqtt'?)"),
        ('[plugins.zigbee]\n', "plugins.zigbee: unknown plugin table (plugins: console, example_command, feedback, mqtt, "
                               "satellites)"),
        ('[plugins.mqtt]\nhost = "mqtt..lan"\n',
         "plugins.mqtt.host: 'mqtt..lan': not a valid host name (an empty label, or one over 63 characters)"),
        ('[plugins.mqtt]\nhost = "mqtt.lan:1883"\n',
         "plugins.mqtt.host: 'mqtt.lan:1883': give the port in plugins.mqtt.port, not in the host"),
        ('[plugins.mqtt]\nhost = "mqtt://hub"\n',
         "plugins.mqtt.host: 'mqtt://hub': a URL; give the host name or IP address only"),
        ('[plugins.mqtt]\nhost = "my broker"\n',
         "plugins.mqtt.host: 'my broker': not a valid host name or IP address "
         "(letters, digits, '-' and '_' between dots)"),
        ('[vad]\n"frame\\nms" = 30\n', "vad.frame\\nms: unknown key (did you mean 'frame_ms'?)"),
    ],
)
def test_bad_paths_types_tables_and_hosts_name_the_key(folder: Path, text: str, message: str) -> None:
    (folder / "config.toml").write_text(text)
    path = folder / "config.toml"
    assert refused(path) == f"{path}: {message}"


@pytest.mark.parametrize("key", ["recognizer.model", "recognizer.sentences", "plugins.dirs", "plugins.mqtt.password_file"])
def test_a_path_too_long_for_the_system_is_named_shortly(folder: Path, key: str) -> None:
    table, _, name = key.rpartition(".")
    value = '["' + "m" * 5000 + '"]' if key == "plugins.dirs" else '"' + "m" * 5000 + '"'
    extra = 'username = "u"\n' if "mqtt" in key else ""
    (folder / "config.toml").write_text(f"[{table}]\n{extra}{name} = {value}\n")
    message = refused(folder / "config.toml")
    assert message.startswith(f"{folder / 'config.toml'}: {key}: ")
    assert message.endswith(": File name too long") and len(message) < 300, message


def test_host_names_and_addresses_that_resolve_are_accepted(folder: Path) -> None:
    for host in ("localhost", "mqtt.lan", "mqtt.lan.", "broker_1.home", "192.168.1.10", "::1", "[::1]", "bücher.lan"):
        (folder / "config.toml").write_text(f'[plugins.mqtt]\nhost = "{host}"\n')
        code, out, err = check_config(folder / "config.toml")
        assert code == 0, (host, err)


def test_a_plugin_calling_sys_exit_at_import_is_named(folder: Path) -> None:
    (folder / "mine").mkdir()
    (folder / "mine" / "quitter.py").write_text("import sys\nsys.exit(3)\n")
    (folder / "config.toml").write_text('[plugins]\nenabled = []\ndirs = ["mine"]\n')
    assert refused(folder / "config.toml") == 'plugin "quitter" failed to import: it called sys.exit(3)'


def test_a_plugin_raising_at_import_is_named_on_one_line(folder: Path) -> None:
    (folder / "mine").mkdir()
    (folder / "mine" / "oops.py").write_text("raise ValueError('first line\\nsecond line')\n")
    (folder / "config.toml").write_text('[plugins]\nenabled = []\ndirs = ["mine"]\n')
    assert refused(folder / "config.toml") == 'plugin "oops" failed to import: ValueError: first line\\nsecond line'


def test_a_table_of_a_plugin_that_is_not_loaded_is_a_warning(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    (folder / "config.toml").write_text('[plugins]\nenabled = ["console"]\n[plugins.mqtt]\nhost = "hub"\n')
    code, out, err = check_config(folder / "config.toml")
    assert code == 0 and out == f"{folder / 'config.toml'}: OK (plugins: console)\n", err
    assert (f'{folder / "config.toml"}: plugins.mqtt: the plugin "mqtt" is not loaded '
            "(it is not in plugins.enabled); table ignored") in caplog.messages


def test_sentences_that_do_not_compile_are_a_configuration_error(folder: Path) -> None:
    (folder / "broken.yaml").write_text(BROKEN_TEMPLATE)
    (folder / "config.toml").write_text('[recognizer]\nsentences = "broken.yaml"\n')
    message = refused(folder / "config.toml")
    assert message.startswith(f"{folder / 'config.toml'}: recognizer.sentences: {folder / 'broken.yaml'}:6: ")
    assert "bad template 'turn on [the light'" in message


def test_sentences_with_a_wildcard_pass_only_if_run_would_start(folder: Path) -> None:
    """check-config runs the grammar compile ``vcd run`` runs: both accept the file, or both refuse it with 78."""
    (folder / "say.yaml").write_text(WILDCARD_SENTENCES)
    (folder / "config.toml").write_text('[recognizer]\nsentences = "say.yaml"\n[plugins]\nenabled = []\n')
    code, out, err = check_config(folder / "config.toml")
    if code == 0:
        from vcd.config import load_config
        from vcd.daemon import load_recognizer

        load_recognizer(load_config(folder / "config.toml"))  # what `vcd run` does before it listens
    else:
        assert code == CONFIG and len(err.splitlines()) == 1, err
        assert err.startswith(f"Error: {folder / 'config.toml'}: recognizer.sentences: {folder / 'say.yaml'}")


def test_a_model_that_does_not_load_is_a_configuration_error(folder: Path) -> None:
    (folder / "model.pt").write_bytes(os.urandom(4000))  # and no numpy export beside it
    (folder / "config.toml").write_text('[recognizer]\nmodel = "model.pt"\n')
    message = refused(folder / "config.toml")
    assert message.startswith(f"{folder / 'config.toml'}: recognizer.model: {folder / 'model.pt'}: ")
    assert "vcd export-model" in message
    (folder / "model.npz").write_bytes(os.urandom(4000))  # an export that is not one
    message = refused(folder / "config.toml")
    assert message.startswith(f"{folder / 'config.toml'}: recognizer.model: ")


def test_a_binary_password_file_is_refused(folder: Path) -> None:
    (folder / "pw").write_bytes(b"\xff\xfe\x00secret")
    (folder / "pw").chmod(0o600)
    (folder / "config.toml").write_text('[plugins.mqtt]\nusername = "vcd"\npassword_file = "pw"\n')
    assert refused(folder / "config.toml") == (
        f"{folder / 'config.toml'}: plugins.mqtt.password_file: {folder / 'pw'}: not a text file (not UTF-8)"
    )


def test_a_world_readable_password_file_is_accepted_with_one_warning(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "pw").write_text("secret\n")
    (folder / "config.toml").write_text('[plugins.mqtt]\nusername = "vcd"\npassword_file = "pw"\n')
    caplog.set_level(logging.WARNING)
    (folder / "pw").chmod(0o600)
    assert check_config(folder / "config.toml")[0] == 0
    assert not [r for r in caplog.records if "password_file" in r.getMessage()]
    (folder / "pw").chmod(0o644)
    assert check_config(folder / "config.toml")[0] == 0
    warnings = [r.getMessage() for r in caplog.records if "password_file" in r.getMessage()]
    assert warnings == [
        f"{folder / 'config.toml'}: plugins.mqtt.password_file: {folder / 'pw'} is readable by every user; "
        "chmod o-r it (e.g. 640, group vcd)"
    ]


def test_an_empty_mqtt_table_is_a_table(folder: Path) -> None:
    """docs/mqtt.md: the plugin publishes when config.toml has a [plugins.mqtt] table, even an empty one."""
    from vcd.config import load_config
    from vcd_plugins import mqtt as mqtt_plugin

    (folder / "config.toml").write_text("[plugins.mqtt]\n")
    config = load_config(folder / "config.toml")
    settings = mqtt_plugin._settings(config, config.path)
    assert settings is not None and (settings.host, settings.port) == ("localhost", 1883)
    (folder / "config.toml").write_text("")
    assert mqtt_plugin._settings(load_config(folder / "config.toml"), folder / "config.toml") is None


# --- TLS files, loaded with ssl at check time ------------------------------------------------------


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """Two throw-away self-signed certificates with their keys, and one key protected by a passphrase (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("a", "b"):
        openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", "/CN=t")
    openssl("pkey", "-in", "a.key", "-aes256", "-passout", "pass:x", "-out", "locked.key")
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    return tmp_path


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ('{ ca_file = "notes.txt" }',
         "plugins.mqtt.tls.ca_file: {dir}/notes.txt: not a PEM certificate file (NO_CERTIFICATE_OR_CRL_FOUND)"),
        ('{ ca_file = "a.key" }',
         "plugins.mqtt.tls.ca_file: {dir}/a.key: not a PEM certificate file (NO_CERTIFICATE_OR_CRL_FOUND)"),
        ('{ cert_file = "notes.txt", key_file = "a.key" }',
         "plugins.mqtt.tls.cert_file: {dir}/notes.txt: not a PEM certificate file (NO_CERTIFICATE_OR_CRL_FOUND)"),
        ('{ cert_file = "a.pem", key_file = "b.key" }',
         "plugins.mqtt.tls.key_file: {dir}/b.key: not the key of tls.cert_file"),
        ('{ cert_file = "a.pem", key_file = "notes.txt" }',
         "plugins.mqtt.tls.key_file: {dir}/notes.txt: not a PEM private key without a passphrase"),
        ('{ cert_file = "a.pem", key_file = "locked.key" }',
         "plugins.mqtt.tls.key_file: {dir}/locked.key: not a PEM private key without a passphrase"),
        ('{ cert_file = "a.pem" }', "plugins.mqtt.tls.cert_file: {dir}/a.pem: holds no private key; give tls.key_file"),
    ],
)
def test_tls_files_that_ssl_cannot_load_are_refused(certificates: Path, tls: str, message: str) -> None:
    path = certificates / "config.toml"
    path.write_text(f"[plugins.mqtt]\ntls = {tls}\n")
    assert refused(path) == f"{path}: " + message.replace("{dir}", str(certificates))


def test_tls_files_that_load_are_accepted(certificates: Path) -> None:
    path = certificates / "config.toml"
    path.write_text('[plugins.mqtt]\ntls = { ca_file = "b.pem", cert_file = "a.pem", key_file = "a.key" }\n')
    assert check_config(path)[0] == 0


# --- WAV headers through `vcd transcribe` ---------------------------------------------------------


def transcribe(*files: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["transcribe", *map(str, files)])
    return code, out.getvalue(), err.getvalue()


def wav_with(path: Path, offset: int, value: int, size: int) -> Path:
    """A 0.5 s 16 kHz PCM WAV whose header field at ``offset`` (``size`` bytes) is ``value``."""
    soundfile.write(str(path), noise(0.5, 0.05), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[offset:offset + size] = value.to_bytes(size, "little")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("offset", "value", "size", "message"),
    [
        (24, 1, 4, "its header gives a sample rate of 1 Hz; vcd reads 8000–384000 Hz"),
        (24, 4_000_000, 4, "its header gives a sample rate of 4000000 Hz; vcd reads 8000–384000 Hz"),
        (22, 300, 2, "its header gives 300 channels; vcd reads 1–32"),
        (22, 65535, 2, "not a readable audio file (Too many channels specified.)"),
    ],
)
def test_a_lying_wav_header_is_refused_in_one_line(
    tmp_path: Path, offset: int, value: int, size: int, message: str
) -> None:
    path = wav_with(tmp_path / "lying.wav", offset, value, size)
    code, out, err = transcribe(path)
    assert (code, out, err) == (int(ExitCode.NO_INPUT), "", f"Error: {path}: {message}\n")


def test_an_odd_sample_rate_is_resampled_with_bounded_work(tmp_path: Path) -> None:
    """44101 Hz has no common divisor with 16 kHz: torchaudio's kernel would take 2.8 GB; soxr converts it."""
    path = wav_with(tmp_path / "odd.wav", 24, 44101, 4)
    code, out, err = transcribe(path)
    assert code == 0, err
    assert '"audio_s": 0.181' in out  # 8000 frames at 44101 Hz


# --- the real process ------------------------------------------------------------------------------


def vcd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("VCD_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    return subprocess.run([sys.executable, "-m", "vcd", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_the_real_command_refuses_random_bytes_a_misspelt_table_and_a_bad_ca_file(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "random.toml").write_bytes(b"\xff" + os.urandom(1999))  # never UTF-8
    (tmp_path / "mqqt.toml").write_text('[plugins.mqqt]\nhost = "hub"\n')
    (tmp_path / "ca.txt").write_text("hello\n")
    (tmp_path / "ca.toml").write_text('[plugins.mqtt]\nhost = "127.0.0.1"\ntls = { ca_file = "ca.txt" }\n')
    expected = {
        "random.toml": "random.toml: invalid TOML: not UTF-8 text (byte 0xff at line 1)",
        "mqqt.toml": "mqqt.toml: plugins.mqqt: unknown plugin table (did you mean 'mqtt'?)",
        "ca.toml": "ca.toml: plugins.mqtt.tls.ca_file: ca.txt: not a PEM certificate file (NO_CERTIFICATE_OR_CRL_FOUND)",
    }
    for name, message in expected.items():
        result = vcd(command, "--config", name, cwd=tmp_path)
        assert result.returncode == CONFIG, result.stderr
        lines = result.stderr.splitlines()
        if command == "run":  # `vcd run` logs its start (the journal) before it fails; the error is the last line
            lines = [line for line in lines if " INFO " not in line]
        assert lines == [f"Error: {message}"], result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_run_refuses_sentences_that_do_not_compile_before_it_listens(tmp_path: Path) -> None:
    """Once exit 66 (an input file), restarted by systemd every 5 s; now 78, which the unit does not restart."""
    (tmp_path / "broken.yaml").write_text(BROKEN_TEMPLATE)
    (tmp_path / "config.toml").write_text('[recognizer]\nsentences = "broken.yaml"\n[plugins]\nenabled = []\n')
    soundfile.write(str(tmp_path / "in.wav"), noise(0.5), 16000, subtype="PCM_16")
    result = vcd("run", "--config", "config.toml", "--input", "in.wav", cwd=tmp_path)
    assert result.returncode == CONFIG, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: config.toml: recognizer.sentences: {tmp_path / 'broken.yaml'}:6: intent HassTurnOn: bad template"
    )
    assert "listening on" not in result.stderr and "Traceback" not in result.stderr
