"""The wake word: the shipped microWakeWord "alexa" model on spoken audio, the command window, config errors.

"alexa" is spoken by espeak-ng at test time (the model detects it: score ≈ 0.99); the
daemon runs in-process with the real recogniser.  tests/test_daemon.py runs it end to
end as a subprocess.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import pytest

import vcd
from conftest import requires_espeak, silence, speak, utterances
from vcd import hookspecs
from vcd.config import Config, DaemonConfig, VadConfig, WakeConfig, load_config, parse_config, section_fields
from vcd.daemon import Daemon
from vcd.errors import ConfigError, ExitCode
from vcd.plugins import LoadedPlugin, PluginHost
from vcd.sources import MemorySource
from vcd.wake import (
    OWW_VERIFIED_MODEL_THRESHOLD,
    OWW_VERIFY_THRESHOLD,
    PHRASE_THRESHOLD,
    VERIFIED_MODEL_THRESHOLD,
    VERIFY_THRESHOLD,
    OpenWakeWordVerifier,
    PhraseSpotter,
    VerifiedWakeWord,
    WakeGate,
    WakeWordModel,
    builtin_openwakeword_models,
    builtin_wake_words,
    crossings,
    load_wake_model,
    oww_verification,
    verification_score,
)

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "vcd" / "models" / "default.pt"
needs_model = pytest.mark.skipif(not MODEL.exists(), reason=f"no model at {MODEL}")
needs_oww = pytest.mark.skipif(not builtin_openwakeword_models(),
                               reason="pyopen-wakeword is not installed (pip install pyopen-wakeword)")

COMMAND = "turn on the kitchen light"
OTHER_COMMAND = "turn off the tv"


@pytest.fixture(scope="module")
def alexa() -> WakeWordModel:
    return WakeWordModel("alexa")


# --- the model ----------------------------------------------------------------------------------


def test_the_wheel_ships_four_wake_words() -> None:
    assert set(builtin_wake_words()) >= {"alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"}


def test_the_wake_stage_imports_without_torch() -> None:
    """A small board (a satellite) can run the VAD and the wake word without the recogniser's torch."""
    code = ("import sys; sys.modules['torch'] = None; import vcd.wake; vcd.wake.WakeWordModel('alexa'); "
            "from vcd.config import Config, WakeConfig; "  # and the verifier: vcd's phone model in numpy
            "assert type(vcd.wake.load_wake_model(Config(wake=WakeConfig(enabled=True)))).__name__ == 'VerifiedWakeWord'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@requires_espeak
def test_the_model_hears_alexa_and_not_a_command(alexa: WakeWordModel) -> None:
    assert alexa.name == "alexa" and alexa.threshold == alexa.model_threshold == 0.9
    heard = alexa.detect(utterances("alexa"))
    assert heard is not None and heard.name == "alexa"
    assert heard.score > 0.9
    # it fires at the end of the word: after the 0.5 s lead and before the trailing silence ends
    assert 0.5 + 0.3 < heard.end_s < 0.5 + len(speak("alexa")) / 16000 + 0.5
    for text in (COMMAND, OTHER_COMMAND, "what is the temperature"):
        assert alexa.detect(utterances(text)) is None, text
    assert alexa.detect(silence(3)) is None


@requires_espeak
def test_scores_start_from_a_fresh_state_each_clip(alexa: WakeWordModel) -> None:
    audio = utterances("alexa")
    first, second = alexa.scores(audio), alexa.scores(audio)
    assert len(first) == pytest.approx(len(audio) / 160, abs=3)  # one score per 10 ms
    np.testing.assert_array_equal(first, second)


@requires_espeak
def test_a_higher_threshold_is_harder_to_pass() -> None:
    strict = WakeWordModel("alexa", threshold=0.999)
    assert strict.threshold == 0.999
    assert strict.detect(utterances("alexa")) is None


# --- a typed phrase (vcd's own phone model) ---------------------------------------------------------


@pytest.fixture(scope="module")
def hey_computer() -> PhraseSpotter:
    if not MODEL.exists():
        pytest.skip(f"no model at {MODEL}")
    return PhraseSpotter("Hey computer")


@requires_espeak
def test_a_typed_phrase_is_spotted_and_other_speech_is_not(hey_computer: PhraseSpotter) -> None:
    assert hey_computer.name == "hey computer" and hey_computer.threshold == PHRASE_THRESHOLD
    assert hey_computer.phones == ["HH", "EY", "K", "AH", "M", "P", "Y", "UW", "T", "ER"]
    heard = hey_computer.detect(utterances("hey computer"))
    assert heard is not None and heard.name == "hey computer" and heard.score > PHRASE_THRESHOLD
    assert 0.5 + 0.4 < heard.end_s < 0.5 + len(speak("hey computer")) / 16000 + 0.2
    for text in (COMMAND, OTHER_COMMAND, "computer", "alexa", "the quick brown fox jumps over the lazy dog"):
        assert hey_computer.detect(utterances(text)) is None, text
    assert hey_computer.detect(silence(2)) is None


@pytest.mark.parametrize(
    ("phrase", "message"),
    [
        ("hi", "wake.phrase: 'hi' is too short to spot (2 phones; use at least 4)"),
        ("hey !!!", "wake.phrase: '!!!' is not a word"),
    ],
)
def test_a_phrase_that_cannot_be_spotted_is_one_line(tmp_path: Path, phrase: str, message: str) -> None:
    text = f'[wake]\nenabled = true\nphrase = "{phrase}"\n'
    assert error_of(tmp_path, text) == f"{tmp_path / 'config.toml'}: {message}"


# --- the second stage: openWakeWord verifies microWakeWord (wake.verify, the default) --------------


@pytest.fixture(scope="module")
def oww_verified() -> VerifiedWakeWord:
    if not builtin_openwakeword_models():
        pytest.skip("pyopen-wakeword is not installed (pip install pyopen-wakeword)")
    model = load_wake_model(Config(wake=WakeConfig(enabled=True)))  # verify = true: openWakeWord for alexa
    assert isinstance(model, VerifiedWakeWord)
    return model


def test_openwakeword_verifies_by_default_with_the_chosen_thresholds(oww_verified: VerifiedWakeWord) -> None:
    assert oww_verified.spotter is None and oww_verified.oww is not None and oww_verified.oww.name == "alexa"
    assert oww_verified.model.threshold == OWW_VERIFIED_MODEL_THRESHOLD < oww_verified.model.model_threshold
    assert oww_verified.oww.threshold == OWW_VERIFY_THRESHOLD
    mine = load_wake_model(Config(wake=WakeConfig(enabled=True, verify="openwakeword", threshold=0.7,
                                                  verify_threshold=0.95)))
    assert isinstance(mine, VerifiedWakeWord) and mine.threshold == 0.7 and mine.oww is not None
    assert mine.oww.threshold == 0.95
    jarvis = load_wake_model(Config(wake=WakeConfig(enabled=True, model="hey_jarvis")))  # its own cutoff
    assert isinstance(jarvis, VerifiedWakeWord) and jarvis.oww is not None and jarvis.oww.name == "hey_jarvis"
    assert jarvis.threshold == jarvis.model.model_threshold == 0.97


@requires_espeak
def test_openwakeword_hears_alexa_and_not_a_command(oww_verified: VerifiedWakeWord) -> None:
    audio = utterances("alexa")
    heard = oww_verified.detect(audio)
    assert heard is not None and heard.name == "alexa" and heard.score > OWW_VERIFIED_MODEL_THRESHOLD
    assert oww_verified.oww is not None
    scores = oww_verified.oww.scores(audio)
    ends = OpenWakeWordVerifier.ends(scores, audio.size)
    assert oww_verification(scores, ends, heard.end_s) > OWW_VERIFY_THRESHOLD  # openWakeWord agrees there
    assert ends[0] < 0.1 and len(audio) / 16000 <= ends[-1] <= len(audio) / 16000 + 0.5  # its windows span the clip
    assert oww_verification(scores, ends, heard.end_s + 3.0) < 0.01  # and not 3 s later
    for text in (COMMAND, OTHER_COMMAND, "what is the temperature"):
        assert oww_verified.detect(utterances(text)) is None, text
    assert oww_verified.detect(silence(3)) is None


@requires_espeak
def test_openwakeword_can_overrule_microwakeword(oww_verified: VerifiedWakeWord) -> None:
    """A segment microWakeWord passes at its low threshold is refused when openWakeWord must be surer than it is."""
    audio = utterances("alexa")
    assert oww_verified.oww is not None
    best = float(oww_verified.oww.scores(audio).max())
    strict = VerifiedWakeWord(oww_verified.model, None, OpenWakeWordVerifier("alexa", best))
    assert oww_verified.model.detect(audio) is not None and strict.detect(audio) is None


def test_verify_openwakeword_without_the_package_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[wake]\nenabled = true\nverify = "openwakeword"\n')
    code = ("import sys; sys.modules['pyopen_wakeword'] = None; from vcd.config import load_config; "
            "load_config('config.toml')")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1].startswith(
        'vcd.errors.ConfigError: config.toml: wake.verify: "openwakeword" needs the pyopen-wakeword package '
        "(pip install pyopen-wakeword;")


@needs_oww
def test_verify_openwakeword_with_a_model_it_has_not_is_one_line(tmp_path: Path) -> None:
    import pymicro_wakeword

    shipped = Path(pymicro_wakeword.__file__).parent / "models"
    manifest = json.loads((shipped / "okay_nabu.json").read_text())
    broken_model(tmp_path, (shipped / "okay_nabu.tflite").read_bytes(), {**manifest, "model": "hey_vcd.tflite"})
    message = error_of(tmp_path, '[wake]\nenabled = true\nmodel = "hey_vcd.json"\nverify = "openwakeword"\n')
    assert message == (f'{tmp_path / "config.toml"}: wake.verify: "openwakeword" has no model for \'hey_vcd\' '
                       f'(pyopen-wakeword ships {", ".join(builtin_openwakeword_models())}); use verify = "phone"')


# --- or vcd's phone model verifies microWakeWord (wake.verify = "phone") --------------------------


@pytest.fixture(scope="module")
def verified() -> VerifiedWakeWord:
    if not MODEL.exists():
        pytest.skip(f"no model at {MODEL}")
    config = Config(wake=WakeConfig(enabled=True, verify="phone"))
    model = load_wake_model(config)
    assert isinstance(model, VerifiedWakeWord)
    return model


def test_verify_uses_the_models_own_phrase_and_the_chosen_defaults(verified: VerifiedWakeWord) -> None:
    assert verified.name == "alexa" and verified.spotter is not None and verified.spotter.name == "alexa"
    assert verified.model.threshold == VERIFIED_MODEL_THRESHOLD < verified.model.model_threshold
    assert verified.spotter.threshold == VERIFY_THRESHOLD and verified.oww is None
    mine = load_wake_model(Config(wake=WakeConfig(enabled=True, verify="phone", threshold=0.95, verify_threshold=0.6)))
    assert isinstance(mine, VerifiedWakeWord) and mine.threshold == 0.95
    assert mine.spotter is not None and mine.spotter.threshold == 0.6


@requires_espeak
@needs_model
def test_verify_keeps_another_models_own_cutoff(tmp_path: Path) -> None:
    """Only alexa's threshold with the verifier was chosen (benchmarks/wake.py); the verifier only takes away."""
    model = load_wake_model(Config(wake=WakeConfig(enabled=True, model="hey_jarvis", verify="phone")))
    assert isinstance(model, VerifiedWakeWord) and model.spotter is not None and model.spotter.name == "hey jarvis"
    assert model.threshold == model.model.model_threshold == 0.97
    # a model of your own, which openWakeWord has not: verify = true takes the phone model
    import pymicro_wakeword

    shipped = Path(pymicro_wakeword.__file__).parent / "models"
    manifest = json.loads((shipped / "okay_nabu.json").read_text())
    path = broken_model(tmp_path, (shipped / "okay_nabu.tflite").read_bytes(), {**manifest, "model": "hey_vcd.tflite"})
    mine = load_wake_model(Config(wake=WakeConfig(enabled=True, model=path)))
    assert isinstance(mine, VerifiedWakeWord) and mine.spotter is not None and mine.oww is None


@requires_espeak
def test_a_verified_wake_word_is_heard_and_a_command_is_not(verified: VerifiedWakeWord) -> None:
    audio = utterances("alexa")
    heard = verified.detect(audio)
    assert heard is not None and heard.name == "alexa" and heard.score > VERIFIED_MODEL_THRESHOLD
    # the phone model placed the end of "alexa" no earlier than microWakeWord's crossing, inside the word's audio
    first = crossings(verified.model.scores(audio), verified.model.threshold)[0]
    assert (first + 1) * 0.01 <= heard.end_s < 0.5 + len(speak("alexa")) / 16000 + 0.3
    assert verified.spotter is not None
    assert verification_score(verified.spotter.scores(audio), (first + 1) * 0.01) > VERIFY_THRESHOLD
    for text in (COMMAND, OTHER_COMMAND, "what is the temperature"):
        assert verified.detect(utterances(text)) is None, text
    assert verified.detect(silence(3)) is None


@requires_espeak
def test_the_verifier_can_overrule_microwakeword(verified: VerifiedWakeWord) -> None:
    """The same "alexa" that microWakeWord passes is refused when the phone model's phrase score must be higher."""
    audio = utterances("alexa")
    assert verified.spotter is not None
    best = float(verified.spotter.scores(audio).max())  # the phone model's best score for "alexa" anywhere in it
    strict = VerifiedWakeWord(verified.model, PhraseSpotter("alexa", threshold=best))
    assert verified.model.detect(audio) is not None  # microWakeWord fires ...
    assert strict.detect(audio) is None  # ... and the second stage says no


def test_verification_looks_near_where_microwakeword_fired() -> None:
    scores = np.zeros(200, dtype=np.float32)  # one phrase score per 20 ms: 4 s
    scores[49] = 0.9  # a path through the phrase ends at 1.0 s
    assert verification_score(scores, 1.2) == pytest.approx(0.9)  # fired 0.2 s after it: verified
    assert verification_score(scores, 0.8) == pytest.approx(0.9)  # fired just before it ended
    assert verification_score(scores, 3.0) == 0.0  # 2 s later: too far back
    np.testing.assert_array_equal(crossings(np.array([0.1, 0.8, 0.9, 0.2, 0.95, 0.99]), 0.5), [1, 4])


# --- the command window (the gate alone, with explicit times) ------------------------------------


def gate(window_ms: int = 5000) -> WakeGate:
    return WakeGate(WakeWordModel("alexa"), window_ms, VadConfig())


def segment(*parts: str | float) -> np.ndarray:
    """What the VAD would hand over: speech with its pre-roll and a little trailing silence."""
    return utterances(*parts, lead_s=0.5, tail_s=0.3)


@requires_espeak
def test_speech_before_the_wake_word_is_dropped_and_after_it_is_the_command() -> None:
    g = gate()
    t = 1000.0
    command = segment(OTHER_COMMAND)
    before = g.process(command, t)
    assert before.detection is None and before.command is None and not g.window_open
    wake = segment("alexa")
    heard = g.process(wake, t + 3)
    assert heard.detection is not None and heard.command is None and g.window_open
    after = segment(COMMAND)
    passed = g.process(after, t + 4 + len(after) / 16000)  # begins 1 s after the wake word's segment
    assert passed.detection is None and passed.command is after
    # one wake word, one command: the next segment is dropped again
    assert not g.window_open
    assert g.process(segment(COMMAND), t + 8).command is None


@requires_espeak
def test_the_window_closes_after_window_ms() -> None:
    g = gate(window_ms=2000)
    wake = segment("alexa")
    g.process(wake, 1000.0)
    late = segment(COMMAND)
    # the wake word ended ≤ 1000 s; this segment begins 2.5 s later
    assert g.process(late, 1002.5 + len(late) / 16000).command is None
    assert not g.window_open


@requires_espeak
def test_a_command_in_the_same_breath_is_cut_after_the_wake_word() -> None:
    g = gate()
    audio = segment("alexa, " + COMMAND)
    heard = g.process(audio, 1000.0)
    assert heard.detection is not None and heard.command is not None
    assert 1.0 < len(heard.command) / 16000 < len(audio) / 16000 - 0.6  # the wake word is not in it
    assert not g.window_open  # the command came with it: no window


# --- configuration -------------------------------------------------------------------------------


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.exit_code == ExitCode.CONFIG
    return str(info.value)


def test_wake_is_off_by_default(tmp_path: Path) -> None:
    assert Config().wake == WakeConfig(enabled=False, model="alexa", phrase="", threshold=0.0, verify=True,
                                       verify_threshold=0.0, window_ms=5000)
    path = tmp_path / "config.toml"
    path.write_text('[wake]\nmodel = "no such word"\n')  # checked only when enabled
    assert load_config(path).wake.enabled is False


def test_an_unknown_wake_word_is_one_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[wake]\nenabled = true\nmodel = "alexia"\n')
    known = ", ".join(builtin_wake_words())
    assert message == (
        f"{tmp_path / 'config.toml'}: wake.model: unknown wake word 'alexia' (did you mean 'alexa'?); "
        f"built in: {known} (or the path of a microWakeWord model's .json)"
    )


def test_a_missing_model_file_is_one_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[wake]\nenabled = true\nmodel = "mine/hey_vcd.json"\n')
    assert message == f"{tmp_path / 'config.toml'}: wake.model: {tmp_path / 'mine' / 'hey_vcd.json'}: no such file"


def broken_model(tmp_path: Path, tflite: bytes, manifest: dict | str | None = None) -> Path:
    (tmp_path / "hey_vcd.tflite").write_bytes(tflite)
    if manifest is None:
        manifest = {"type": "micro", "wake_word": "Hey vcd", "model": "hey_vcd.tflite",
                    "micro": {"probability_cutoff": 0.9, "sliding_window_size": 5}}
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (tmp_path / "hey_vcd.json").write_text(text)
    return tmp_path / "hey_vcd.json"


def test_a_model_that_is_not_a_model_is_one_line(tmp_path: Path) -> None:
    """The TensorFlow Lite library kills the process on such a file: vcd must refuse it first."""
    broken_model(tmp_path, b"this is not a flatbuffer at all")
    message = error_of(tmp_path, '[wake]\nenabled = true\nmodel = "hey_vcd.json"\n')
    assert message == f"{tmp_path / 'config.toml'}: wake.model: {tmp_path / 'hey_vcd.tflite'}: not a TensorFlow Lite model"


def test_a_manifest_that_is_not_microwakeword_is_one_line(tmp_path: Path) -> None:
    broken_model(tmp_path, b"", {"model": "hey_vcd.tflite"})
    message = error_of(tmp_path, '[wake]\nenabled = true\nmodel = "hey_vcd.json"\n')
    assert message.startswith(f"{tmp_path / 'config.toml'}: wake.model: {tmp_path / 'hey_vcd.json'}: "
                              "not a microWakeWord manifest (needs model, micro.probability_cutoff")
    broken_model(tmp_path, b"", "{not json")
    message = error_of(tmp_path, '[wake]\nenabled = true\nmodel = "hey_vcd.json"\n')
    assert message.startswith(f"{tmp_path / 'config.toml'}: wake.model: {tmp_path / 'hey_vcd.json'}: "
                              "not a readable JSON manifest")


def test_a_model_given_by_its_manifest_path_loads(tmp_path: Path) -> None:
    """A user's own microWakeWord model: here a copy of the shipped one under another name."""
    import pymicro_wakeword

    shipped = Path(pymicro_wakeword.__file__).parent / "models"
    manifest = json.loads((shipped / "okay_nabu.json").read_text())
    broken_model(tmp_path / "", (shipped / "okay_nabu.tflite").read_bytes(), {**manifest, "model": "hey_vcd.tflite"})
    path = tmp_path / "config.toml"
    path.write_text('[wake]\nenabled = true\nmodel = "hey_vcd.json"\nthreshold = 0.8\nwindow_ms = 3000\n')
    config = load_config(path)
    assert config.wake.model == tmp_path / "hey_vcd.json"
    model = WakeWordModel(config.wake.model, config.wake.threshold)
    assert model.name == "hey_vcd" and model.threshold == 0.8 and model.model_threshold == 0.85


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[wake]\nenabled = 1\n", "wake.enabled: must be true or false (got 1)"),
        ("[wake]\nthreshold = 1.5\n", "wake.threshold: must be 0..1 (got 1.5)"),
        ("[wake]\nwindow_ms = 100\n", "wake.window_ms: must be 500..60000 (got 100)"),
        ("[wake]\nwindow = 100\n", "wake.window: unknown key (did you mean 'window_ms'?)"),
        ("[wake]\nmodel = \"\"\n", "wake.model: must not be empty"),
        ("[wake]\nverify = \"yes\"\n", "wake.verify: must be true, false, 'openwakeword' or 'phone' (got 'yes')"),
        ("[wake]\nverify_threshold = 2\n", "wake.verify_threshold: must be 0..1 (got 2)"),
    ],
)
def test_bad_wake_values(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(tmp_path, text) == f"{tmp_path / 'config.toml'}: {message}"


def vcd_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcd", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_bad_wake_model_stops_the_command_with_exit_78(tmp_path: Path, command: str) -> None:
    broken_model(tmp_path, b"\0\0\0\0NOPE and the rest")
    (tmp_path / "config.toml").write_text(
        '[plugins]\nenabled = ["console"]\n[wake]\nenabled = true\nmodel = "hey_vcd.json"\n'
    )
    result = vcd_cli(command, "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines() == [
        f"Error: config.toml: wake.model: {tmp_path / 'hey_vcd.tflite'}: not a TensorFlow Lite model"
    ]


def test_config_toml_documents_the_wake_section() -> None:
    path = REPO / "config.toml"
    text = path.read_text()
    assert parse_config(tomllib.loads(text), path).wake == WakeConfig()
    body = text.split("[wake]\n", 1)[1].split("\n[", 1)[0]
    for key in section_fields("wake"):
        match = re.search(rf"((?:^#.*\n)+)^{key} = ", body, re.MULTILINE)
        assert match, f"wake.{key} is not in config.toml with a comment above it"
        assert "Default" in match.group(1), f"wake.{key}: the comment does not state the default"


# --- the stage in the daemon, in-process, with the real recogniser --------------------------------


class WakeRecorder:
    """Records the hooks that show what the wake stage let through."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, hook: str, **kwargs: Any) -> None:
        self.calls.append((hook, threading.current_thread().name, kwargs))

    @vcd.hookimpl
    def vcd_wake(self, site: str, name: str, score: float, timestamp: float) -> None:
        self._record("vcd_wake", site=site, name=name, score=score, timestamp=timestamp)

    @vcd.hookimpl
    def vcd_transcript(self, site: str, text: str) -> None:
        self._record("vcd_transcript", site=site, text=text)

    @vcd.hookimpl
    def vcd_intent(self, site: str, intent: str, slots: dict[str, Any], text: str) -> None:
        self._record("vcd_intent", site=site, intent=intent, slots=slots, text=text)


@pytest.fixture(scope="module")
def recognizer() -> Any:
    if not MODEL.exists():
        pytest.skip(f"no model at {MODEL}")
    from vcd.recognizer import Recognizer

    return Recognizer.load(None, MODEL, 0.5, 1)


def run_daemon(audio: np.ndarray, recognizer: Any, wake: WakeConfig) -> tuple[WakeRecorder, Daemon]:
    recorder = WakeRecorder()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(recorder, name="recorder")
    pm.check_pending()
    plugins = PluginHost(pm, [LoadedPlugin("recorder", "test", recorder, ["vcd_wake", "vcd_transcript", "vcd_intent"])])
    config = replace(Config(daemon=DaemonConfig(site="hall")), wake=wake)
    plugins.startup(config)
    plugins.start_workers()
    daemon = Daemon(config, recognizer, plugins, MemorySource(config.audio, audio, "test audio"))
    assert daemon.run() == ExitCode.OK
    return recorder, daemon


@requires_espeak
@needs_model
def test_the_stage_passes_only_the_command_after_the_wake_word(recognizer: Any) -> None:
    audio = utterances(OTHER_COMMAND, 1.5, "alexa", 1.5, COMMAND, 1.5, OTHER_COMMAND)
    recorder, daemon = run_daemon(audio, recognizer, WakeConfig(enabled=True))
    assert [stage.name for stage in daemon.stages] == ["vad", "wake", "asr"]
    hooks = [(hook, kwargs.get("intent") or kwargs.get("name") or kwargs.get("text")) for hook, _, kwargs in
             recorder.calls]
    # "turn off the tv" before the wake word and after the command are never decoded
    assert hooks == [("vcd_wake", "alexa"), ("vcd_transcript", COMMAND), ("vcd_intent", "HassTurnOn")]
    wake = recorder.calls[0]
    assert wake[1] == "vcd-plugin-recorder" and wake[2]["site"] == "hall" and OWW_VERIFIED_MODEL_THRESHOLD < wake[2]["score"] <= 1.0
    assert daemon.counts["segments"] == 1


@requires_espeak
@needs_model
def test_a_command_after_a_pause_keeps_the_vad_stages_speech_presence() -> None:
    """The segment after the wake word is the command, whole: it reaches the recogniser with the speech presence
    the VAD stage measured as it grew (the value one look gives), not measured again.  (A command said in the
    wake word's breath is a part of its segment: the recogniser measures that one when it decodes it.)"""
    from vcd.presence import SpeechPresence
    from vcd.recognizer import Recognizer

    recognizer = Recognizer.load(None, MODEL, 0.5, 1, presence=True)  # as for a rule that weighs it
    assert recognizer.presence is not None
    seen: list[tuple[np.ndarray, float | None]] = []
    decode = recognizer._decode  # what decode() and complete() both search with

    def spy(samples, denoise, speech, ask, denoised=None):
        if threading.current_thread().name == "vcd-asr":
            seen.append((np.array(samples), speech))
        return decode(samples, denoise, speech, ask, denoised)

    recognizer._decode = spy  # type: ignore[method-assign]
    recorder, _ = run_daemon(utterances("alexa", 1.5, COMMAND, tail_s=2.0), recognizer, WakeConfig(enabled=True))
    assert [kwargs.get("text") for hook, _, kwargs in recorder.calls if hook == "vcd_transcript"] == [COMMAND]
    ((command, speech),) = seen
    assert speech is not None and speech == pytest.approx(SpeechPresence()(command), abs=1e-6)


@requires_espeak
@needs_model
def test_the_stage_with_a_typed_phrase(recognizer: Any) -> None:
    audio = utterances(OTHER_COMMAND, 1.5, "hey computer", 1.5, COMMAND)
    recorder, daemon = run_daemon(audio, recognizer, WakeConfig(enabled=True, phrase="hey computer"))
    hooks = [(hook, kwargs.get("intent") or kwargs.get("name") or kwargs.get("text")) for hook, _, kwargs in
             recorder.calls]
    assert hooks == [("vcd_wake", "hey computer"), ("vcd_transcript", COMMAND), ("vcd_intent", "HassTurnOn")]
    assert daemon._wake.model._net is recognizer.model  # the recogniser's model, not a second copy in memory


@requires_espeak
@needs_model
def test_the_stage_with_the_verifier(recognizer: Any) -> None:
    """wake.verify = "phone": the wake stage runs microWakeWord and vcd's phone model; "alexa, <command>" in one breath."""
    audio = utterances(OTHER_COMMAND, 1.5, "alexa, " + COMMAND, 1.5, OTHER_COMMAND)
    recorder, daemon = run_daemon(audio, recognizer, WakeConfig(enabled=True, verify="phone"))
    assert isinstance(daemon._wake.model, VerifiedWakeWord) and daemon._wake.model.spotter is not None
    assert daemon._wake.model.spotter._net is recognizer.model
    hooks = [(hook, kwargs.get("intent") or kwargs.get("name") or kwargs.get("text")) for hook, _, kwargs in
             recorder.calls]
    assert hooks == [("vcd_wake", "alexa"), ("vcd_transcript", COMMAND), ("vcd_intent", "HassTurnOn")]
    assert VERIFIED_MODEL_THRESHOLD < recorder.calls[0][2]["score"] <= 1.0


@requires_espeak
@needs_model
@needs_oww
@pytest.mark.parametrize("verify", [True, "openwakeword"])
def test_the_stage_with_openwakeword(recognizer: Any, verify: bool | str) -> None:
    """The default: the wake stage runs microWakeWord and openWakeWord; the command said on its own after "alexa"
    and "alexa, <command>" in one breath are decoded, the commands said without it are not."""
    audio = utterances(OTHER_COMMAND, 1.5, "alexa", 1.5, COMMAND, 1.5, OTHER_COMMAND, 1.5, "alexa, " + OTHER_COMMAND)
    recorder, daemon = run_daemon(audio, recognizer, WakeConfig(enabled=True, verify=verify))
    assert isinstance(daemon._wake.model, VerifiedWakeWord) and daemon._wake.model.oww is not None
    hooks = [(hook, kwargs.get("intent") or kwargs.get("name") or kwargs.get("text")) for hook, _, kwargs in
             recorder.calls]
    assert hooks == [("vcd_wake", "alexa"), ("vcd_transcript", COMMAND), ("vcd_intent", "HassTurnOn"),
                     ("vcd_wake", "alexa"), ("vcd_transcript", OTHER_COMMAND), ("vcd_intent", "HassTurnOff")]
    assert all(OWW_VERIFIED_MODEL_THRESHOLD < kwargs["score"] <= 1.0 for hook, _, kwargs in recorder.calls
               if hook == "vcd_wake")


@requires_espeak
@needs_model
def test_without_the_wake_stage_every_command_is_decoded(recognizer: Any) -> None:
    audio = utterances(OTHER_COMMAND, 1.5, COMMAND)
    recorder, daemon = run_daemon(audio, recognizer, WakeConfig(enabled=False))
    assert [stage.name for stage in daemon.stages] == ["vad", "asr"]
    assert [kwargs["intent"] for hook, _, kwargs in recorder.calls if hook == "vcd_intent"] == [
        "HassTurnOff",
        "HassTurnOn",
    ]
