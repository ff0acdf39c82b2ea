"""Plugin loading and dispatch: discovery, disabling, import errors, broken and hanging plugins, hook docs."""

from __future__ import annotations

import inspect
import re
import textwrap
import threading
import time
from pathlib import Path

import pytest

import vcd
from conftest import wait_until
from vcd import hookspecs
from vcd.config import load_config
from vcd.errors import ConfigError, ExitCode, PluginError
from vcd.plugins import PluginHost, load_plugins

REPO = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("vcd_"))

RECORDER = """
import threading, time
import vcd

CALLS = []

@vcd.hookimpl
def vcd_startup(config, config_path):
    CALLS.append(("startup", config.daemon.site, threading.current_thread().name))

@vcd.hookimpl
def vcd_intent(site, intent, slots):
    slots["mutated"] = True   # must not leak into the other plugins' copy
    CALLS.append(("intent", intent, dict(slots), threading.current_thread().name))

@vcd.hookimpl
def vcd_shutdown(reason):
    CALLS.append(("shutdown", reason))
"""


def make_plugins(tmp_path: Path, files: dict[str, str], extra: str = "") -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    for name, code in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(code))
    config = tmp_path / "config.toml"
    config.write_text(f'[plugins]\nenabled = []\ndirs = ["plugins"]\n{extra}')
    return config


def host_for(config_path: Path) -> PluginHost:
    return load_plugins(load_config(config_path))


def test_public_api_is_importable_from_vcd() -> None:
    assert vcd.hookimpl is hookspecs.hookimpl
    assert vcd.ConfigError is ConfigError
    assert vcd.Config is not None


def test_shipped_plugins_load_by_name(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[plugins]\nenabled = ["console", "example_command"]\n')
    host = host_for(config)
    assert host.names == ["console", "example_command"]
    console = host.loaded[0]
    assert console.source == "shipped"
    # every hook but vcd_health (printing cannot fail in a way worth a restart) and speaking, which the
    # feedback plugin and the MQTT plugin (Hermes) implement
    assert set(console.hooks) == set(HOOKS) - {"vcd_health", "vcd_say", "vcd_said"}


def test_folder_plugins_load_and_can_be_disabled(tmp_path: Path) -> None:
    config = make_plugins(tmp_path, {"recorder": RECORDER, "other": RECORDER})
    host = host_for(config)
    assert sorted(host.names) == ["other", "recorder"]
    recorder = next(p for p in host.loaded if p.name == "recorder")
    assert recorder.source == str(tmp_path / "plugins" / "recorder.py")
    assert recorder.hooks == ["vcd_intent", "vcd_shutdown", "vcd_startup"]
    config.write_text(config.read_text().replace("enabled = []", 'enabled = []\ndisabled = ["other"]'))
    assert host_for(config).names == ["recorder"]


def test_a_plugin_that_fails_to_import_is_named(tmp_path: Path) -> None:
    config = make_plugins(tmp_path, {"broken": "import vcd\nimport no_such_module_here\n"})
    with pytest.raises(PluginError) as info:
        host_for(config)
    assert str(info.value) == (
        "plugin \"broken\" failed to import: ModuleNotFoundError: No module named 'no_such_module_here'"
    )
    assert info.value.exit_code == ExitCode.CONFIG
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_a_misspelt_hook_fails_at_load(tmp_path: Path) -> None:
    code = "import vcd\n@vcd.hookimpl\ndef vcd_intnet(intent):\n    pass\n"
    config = make_plugins(tmp_path, {"typo": code})
    with pytest.raises(PluginError) as info:
        host_for(config)
    assert str(info.value) == f'plugin "typo" ({config.parent}/plugins/typo.py): unknown hook vcd_intnet (did you mean vcd_intent?)'


def test_a_hook_with_a_wrong_argument_fails_at_load(tmp_path: Path) -> None:
    code = "import vcd\n@vcd.hookimpl\ndef vcd_intent(intent, colour):\n    pass\n"
    config = make_plugins(tmp_path, {"badarg": code})
    with pytest.raises(PluginError, match=r'^plugin "badarg" \(.*badarg.py\): hookimpl definition: vcd_intent\(intent, colour\); .*colour') as info:
        host_for(config)
    assert "\n" not in str(info.value)


def test_enabling_an_unknown_plugin_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[plugins]\nenabled = ["consle"]\n')
    with pytest.raises(ConfigError, match=r'plugins.enabled: no plugin named "consle" \(available: .*console'):
        host_for(config)


def test_startup_shutdown_and_dispatch_with_a_fresh_copy_per_plugin(tmp_path: Path) -> None:
    config_path = make_plugins(tmp_path, {"rec_a": RECORDER, "rec_b": RECORDER}, '[daemon]\n')
    config = load_config(config_path)
    host = load_plugins(config)
    host.startup(config)
    host.start_workers()
    slots = {"name": "kitchen light"}
    host.dispatch("vcd_intent", site="s", intent="HassTurnOn", slots=slots, text="t", confidence=0.9, timings={})
    host.dispatch("vcd_speech_started", site="s", timestamp=1.0)  # implemented by neither: nothing happens
    assert host.drain(5.0)
    host.shutdown("test over")
    assert slots == {"name": "kitchen light"}
    for plugin in host.loaded:
        calls = plugin.module.CALLS
        assert calls[0] == ("startup", "default", "MainThread")
        assert calls[1] == ("intent", "HassTurnOn", {"name": "kitchen light", "mutated": True}, f"vcd-plugin-{plugin.name}")
        assert calls[2] == ("shutdown", "test over")


def test_a_broken_plugin_does_not_silence_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = "import vcd\n@vcd.hookimpl\ndef vcd_intent(intent):\n    raise RuntimeError('boom')\n"
    config_path = make_plugins(tmp_path, {"a_broken": broken, "z_recorder": RECORDER})
    config = load_config(config_path)
    host = load_plugins(config)
    host.startup(config)
    host.start_workers()
    for _ in range(2):
        host.dispatch("vcd_intent", site="s", intent="HassTurnOff", slots={}, text="t", confidence=1.0, timings={})
    assert host.drain(5.0)
    recorder = next(p for p in host.loaded if p.name == "z_recorder").module
    assert [c[1] for c in recorder.CALLS if c[0] == "intent"] == ["HassTurnOff", "HassTurnOff"]
    failures = [r for r in caplog.records if "boom" in (r.exc_text or "") or r.exc_info]
    assert failures
    assert 'plugin "a_broken": vcd_intent failed while handling intent HassTurnOff' in caplog.text


def test_a_hanging_plugin_stalls_only_itself(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hang = """
    import threading
    import vcd
    RELEASE = threading.Event()
    STARTED = threading.Event()
    @vcd.hookimpl
    def vcd_intent(intent):
        STARTED.set()
        RELEASE.wait(30)
    @vcd.hookimpl
    def vcd_shutdown(reason):
        RELEASE.wait(30)
    """
    config_path = make_plugins(tmp_path, {"hang": hang, "recorder": RECORDER}, "queue_size = 3\n")
    config = load_config(config_path)
    host = load_plugins(config)
    host.startup(config)
    host.start_workers()
    hang_module = next(p for p in host.loaded if p.name == "hang").module
    recorder = next(p for p in host.loaded if p.name == "recorder").module
    for i in range(5):
        host.dispatch("vcd_intent", site="s", intent=f"I{i}", slots={}, text="t", confidence=1.0, timings={})
        if i == 0:
            assert hang_module.STARTED.wait(10)  # I0 is being handled: the queue of 3 fills with I1..I3
        # the recorder keeps up (its own queue of 3 is not what this test fills)
        assert wait_until(lambda n=i + 1: sum(c[0] == "intent" for c in recorder.CALLS) == n, 10)
    assert [c[1] for c in recorder.CALLS if c[0] == "intent"] == [f"I{i}" for i in range(5)]
    assert 'plugin "hang": queue full (still busy with intent I0' in caplog.text
    started = time.monotonic()
    assert not host.drain(0.3)
    host.shutdown("stop", timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    assert 'plugin "hang": still handling intent I0' in caplog.text
    assert 'plugin "hang": vcd_shutdown did not return within 0.5 s' in caplog.text
    hang_module.RELEASE.set()


def test_a_plugin_rejecting_its_table_aborts_startup_and_started_plugins_are_shut_down(tmp_path: Path) -> None:
    picky = """
    import vcd
    @vcd.hookimpl
    def vcd_startup(config, config_path):
        table = config.plugin_table("picky")
        if table.get("colour") != "blue":
            raise config.key_error("plugins.picky.colour", f"must be 'blue' (got {table.get('colour')!r})")
    """
    config_path = make_plugins(tmp_path, {"a_recorder": RECORDER, "picky": picky}, '[plugins.picky]\ncolour = "red"\n')
    config = load_config(config_path)
    host = load_plugins(config)
    with pytest.raises(ConfigError) as info:
        host.startup(config)
    assert str(info.value) == f"{config_path}: plugins.picky.colour: must be 'blue' (got 'red')"
    recorder = next(p for p in host.loaded if p.name == "a_recorder").module
    assert recorder.CALLS[-1] == ("shutdown", "start-up failed")


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented(name: str) -> None:
    """Each spec: a summary, a :param: per argument, the calling thread and how long it may block."""
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    assert doc.splitlines()[0].endswith("."), name
    for arg in inspect.signature(spec).parameters:
        assert re.search(rf":param {arg}:", doc), f"{name}: {arg} is not documented"
    assert "thread" in doc, f"{name}: does not say which thread calls it"
    assert "block" in doc, f"{name}: does not say how long it may block"
    assert name in (REPO / "docs" / "daemon.md").read_text(), f"{name} is missing from docs/daemon.md"


def test_every_hook_has_a_daemon_test() -> None:
    text = (REPO / "tests" / "test_daemon.py").read_text()
    for name in HOOKS:
        assert name in text, f"{name} has no test in tests/test_daemon.py"


def test_workers_are_named_after_their_plugin(tmp_path: Path) -> None:
    config_path = make_plugins(tmp_path, {"recorder": RECORDER})
    host = host_for(config_path)
    host.start_workers()
    assert "vcd-plugin-recorder" in {t.name for t in threading.enumerate()}
    host.drain(1.0)


# --- repeated failures, health, undelivered events -------------------------------------------------

RAISER = """
import vcd

@vcd.hookimpl
def vcd_intent(intent):
    raise RuntimeError(f"no {intent} today")

@vcd.hookimpl
def vcd_transcript(text):
    raise ValueError("bad transcript")
"""


def test_a_plugin_raising_every_time_logs_one_traceback_then_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = host_for(make_plugins(tmp_path, {"raiser": RAISER}))
    host.startup(load_config(tmp_path / "config.toml"))
    host.start_workers()
    caplog.set_level("ERROR", logger="vcd.plugins")
    for i in range(20):
        host.dispatch("vcd_transcript", site="s", text=f"t{i}", confidence=0.5, audio_s=1.0, decode_ms=1.0)
        host.dispatch("vcd_intent", site="s", intent=f"I{i}", slots={}, text="t", confidence=0.9, timings={})
    assert host.drain(5.0)
    lines = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert ('plugin "raiser": vcd_transcript failed while handling transcript \'t0\'', True) in lines
    assert ('plugin "raiser": vcd_intent failed while handling intent I0 (\'t\')', True) in lines
    counts = [message for message, _ in lines if "more times" in message]
    assert len(lines) == 4 and len(counts) == 2, lines  # 40 failures: 2 tracebacks and 2 counts
    assert any(re.fullmatch(r'plugin "raiser" raised in vcd_intent 19 more times in the last \d+ s '
                            r"\(last: RuntimeError: no I19 today\)", m) for m in counts), counts
    assert any(m.startswith('plugin "raiser" raised in vcd_transcript 19 more times') for m in counts), counts


def test_failure_counts_are_logged_when_the_window_is_over(caplog: pytest.LogCaptureFixture) -> None:
    from vcd.plugins import FailureLog

    caplog.set_level("ERROR", logger="vcd.plugins")
    log = FailureLog(window_s=0.3)
    for _ in range(3):
        try:
            raise OSError("disk full")
        except OSError as exc:
            log.failed("saver", "vcd_intent", "intent X", exc)
    log.flush()
    assert len(caplog.records) == 1  # the window is still open: only the first, in full
    time.sleep(0.35)
    log.flush()
    assert caplog.records[-1].getMessage() == (
        'plugin "saver" raised in vcd_intent 2 more times in the last 0 s (last: OSError: disk full)'
    )
    try:
        raise OSError("disk full")
    except OSError as exc:
        log.failed("saver", "vcd_intent", "intent Y", exc)  # a new window: in full again
    assert caplog.records[-1].exc_info is not None and len(caplog.records) == 3


HANGER = """
import threading
import vcd

release = threading.Event()
started = threading.Event()

@vcd.hookimpl
def vcd_intent(intent):
    started.set()
    release.wait(10)
"""


def test_events_not_delivered_at_shutdown_are_counted_without_the_stop_marker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = host_for(make_plugins(tmp_path, {"hanger": HANGER}))
    host.start_workers()
    for i in range(3):
        host.dispatch("vcd_intent", site="s", intent=f"I{i}", slots={}, text="t", confidence=0.9, timings={})
    assert host.loaded[0].module.started.wait(10)  # the first is being handled, two wait
    caplog.set_level("WARNING", logger="vcd.plugins")
    assert host.drain(0.2) is False
    assert caplog.records[-1].getMessage() == (
        'plugin "hanger": still handling intent I0 (\'t\') at shutdown; 2 events not delivered'
    )
    host.loaded[0].module.release.set()


SLOW_SPEAKER = """
import time
import vcd

controls = None

@vcd.hookimpl
def vcd_startup(controls):
    globals()["controls"] = controls

@vcd.hookimpl
def vcd_say(site, text, request_id):
    time.sleep(0.5)  # speaking
    controls.said(site, text, request_id)
"""

ASKER = """
import vcd

controls = None
HEARD = []

@vcd.hookimpl
def vcd_startup(controls):
    globals()["controls"] = controls

@vcd.hookimpl
def vcd_intent(site, intent):
    controls.say(f"did {intent}", request_id=intent)

@vcd.hookimpl
def vcd_said(site, text, request_id):
    HEARD.append((text, request_id))
"""


def test_the_drain_delivers_the_events_that_queued_events_dispatch(tmp_path: Path) -> None:
    """intent → the asker's say → the speaker's vcd_say → vcd_said back to the asker: all before the queues close,
    though the asker's own queue was empty when the drain began."""
    config_path = make_plugins(tmp_path, {"asker": ASKER, "speaker": SLOW_SPEAKER}, "[daemon]\n")
    config = load_config(config_path)
    host = load_plugins(config)
    host.startup(config)
    host.start_workers()
    host.dispatch("vcd_intent", site="s", intent="HassTurnOn", slots={}, text="t", confidence=0.9, timings={})
    assert host.drain(5.0)
    asker = next(p for p in host.loaded if p.name == "asker").module
    assert asker.HEARD == [("did HassTurnOn", "HassTurnOn")]


SICKLY = """
import vcd

state = {"problem": None}

@vcd.hookimpl
def vcd_health():
    if state["problem"] == "raise":
        raise RuntimeError("cannot tell")
    return state["problem"]
"""


def test_health_collects_each_plugins_problem_and_counts_a_raising_check_as_one(tmp_path: Path) -> None:
    config_path = make_plugins(tmp_path, {"sickly": SICKLY})
    host = host_for(config_path)
    state = host.loaded[0].module.state
    assert host.health() == []  # not started yet: not asked
    host.startup(load_config(config_path))
    assert host.health() == []
    state["problem"] = "the lamp is out"
    assert host.health() == ['plugin "sickly": the lamp is out']
    state["problem"] = "raise"
    assert host.health() == ['plugin "sickly": vcd_health failed: RuntimeError: cannot tell']
    host.shutdown("test")
    assert host.health() == []
