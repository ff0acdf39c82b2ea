"""Feedback plugin: a short sound for wake / recognised / not understood, and spoken answers (espeak-ng or Piper).

Configured by ``[plugins.feedback]`` (docs/daemon.md).  It plays on the output device
(sounddevice) of the machine it runs on — the hub, or a satellite, which calls the same hooks on
its own plugin host — for its own site only, unless ``sites`` says otherwise.  Without an output
device it says so in one line and stays quiet; a missing TTS program or voice, or a sound file that
does not load, turns that part off with one line, and the daemon runs on.

Hooks: ``vcd_feedback`` (the daemon after each decoded segment, the wake-word stage), ``vcd_say``
(any plugin's ``controls.say(text, site)``; answered with ``controls.said`` → ``vcd_said``).
The rooms: ``settings`` (the table), ``playback`` (sound files, the device), ``speech`` (TTS).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import vcd

from .playback import DeviceOutput, NoOutput, Output, Sound, SoundError, load_sound, prepare
from .settings import KINDS, FeedbackSettings, parse_settings
from .speech import Espeak, Piper, Speaker, SpeechError

_LOGGER = logging.getLogger(__name__)

NAME = "feedback"
PAUSE_REASON = "feedback playing"  # recognition pauses while vcd's own sounds and answers play
ECHO_GUARD_S = 0.5  # ... and this long after vad.silence_ms more, so the segment holding them is not decoded


def make_speaker(settings: FeedbackSettings) -> Speaker:
    """Piper when ``piper_model`` is set, else espeak-ng with ``voice``."""
    return Piper(settings.piper_model) if settings.piper_model is not None else Espeak(settings.voice)


def check(config: Any, config_path: Path | None) -> tuple[FeedbackSettings, dict[str, Sound], Speaker | None]:
    """The validated table, the sounds that load and the speaker that works; one warning line per part turned off.

    A bad value is a :class:`vcd.ConfigError`; a sound or a voice that does not work only turns itself off.
    """
    settings = parse_settings(config, config_path, NAME)
    sounds: dict[str, Sound] = {}
    if settings.sounds:
        for kind in KINDS:
            try:
                sounds[kind] = load_sound(settings.sound_file(kind))
            except SoundError as exc:
                _LOGGER.warning("%s: plugins.%s.%s_sound: %s; no %s sound", config.label, NAME, kind, exc,
                                kind.replace("_", " "))
    speaker: Speaker | None = None
    if settings.tts:
        candidate = make_speaker(settings)
        key = "piper_model" if isinstance(candidate, Piper) else "voice"
        problem = candidate.problem()
        if problem is None and isinstance(candidate, Piper):
            try:
                candidate.load()
            except SpeechError as exc:
                problem = str(exc)
        if problem is None:
            speaker = candidate
        else:
            _LOGGER.warning("%s: plugins.%s.%s: %s; answers are not spoken", config.label, NAME, key, problem)
    return settings, sounds, speaker


class Feedback:
    """The plugin's state and hooks; ``output`` given (an in-memory sink in tests) replaces the sound card."""

    def __init__(self, output: Output | None = None) -> None:
        self._given_output = output
        self.output: Output | None = None
        self.settings = FeedbackSettings()
        self.sounds: dict[str, Sound] = {}
        self.speaker: Speaker | None = None
        self.site = ""
        self.controls: vcd.PluginControls | None = None
        self._lock = threading.Lock()  # one sound or answer at a time
        self._plays = 0  # playbacks started; the echo guard's timer resumes only after the last one
        self.guard_s: float | None = ECHO_GUARD_S  # None: no pause (the audio does not come from a microphone)

    @vcd.hookimpl
    def vcd_check_config(self, config: Any, config_path: Path | None) -> None:
        check(config, config_path)

    @vcd.hookimpl
    def vcd_startup(self, config: Any, config_path: Path | None, controls: vcd.PluginControls) -> None:
        self.site, self.controls = config.daemon.site, controls
        # only a microphone hears the speaker; a file or stdin played through the daemon must not lose commands
        self.guard_s = config.vad.silence_ms / 1000 + ECHO_GUARD_S if config.audio.source == "mic" else None
        self.settings, self.sounds, self.speaker = check(config, config_path)
        self.output = self._given_output
        if self.output is None and (self.sounds or self.speaker is not None):
            try:
                device = DeviceOutput(self.settings.device)
            except NoOutput as exc:
                _LOGGER.info("feedback off: no audio output (%s)", exc)
                return
            self.output = device
            _LOGGER.info("feedback on %s (%d Hz): sounds %s, answers %s", device.name, device.rate_hz,
                         "on" if self.sounds else "off", self.speaker.name if self.speaker else "off")

    @vcd.hookimpl
    def vcd_feedback(self, site: str, kind: str, text: str | None) -> None:
        if self.output is None or not self.settings.plays_for(site, self.site):
            return
        if kind not in KINDS:
            _LOGGER.warning("feedback: unknown kind %r (from site %s); expected one of %s", kind, site,
                            ", ".join(KINDS))
            return
        sound = self.sounds.get(kind)
        with self._lock:
            if sound is not None:
                self._play(sound.samples, sound.rate_hz)
            if text and self.speaker is not None:
                self._speak(site, text)

    @vcd.hookimpl
    def vcd_say(self, site: str, text: str, request_id: str) -> None:
        try:
            if self.output is not None and self.speaker is not None and self.settings.plays_for(site, self.site):
                with self._lock:
                    self._speak(site, text)
            else:
                _LOGGER.debug("feedback: %r for site %s not spoken here", text, site)
        finally:
            if self.controls is not None:
                self.controls.said(site, text, request_id)

    @vcd.hookimpl
    def vcd_shutdown(self, reason: str) -> None:
        self.output = None

    def _play(self, samples: Any, rate_hz: int) -> None:
        """Scaled by ``volume``, with a short silent tail, to the output (which resamples for its device).

        The microphone hears it too ("Turned on the kitchen light" would be decoded as a command): when the
        audio comes from a microphone, recognition pauses while it plays and until the VAD has closed the
        segment that holds it.
        """
        assert self.output is not None
        audio = prepare(samples, rate_hz, rate_hz, self.settings.volume)
        if self.guard_s is None or self.controls is None:
            self.output.play(audio, rate_hz)
            return
        self._plays += 1
        self.controls.pause(PAUSE_REASON)
        try:
            self.output.play(audio, rate_hz)
        finally:
            self._resume_later(self._plays, self.guard_s)

    def _resume_later(self, play: int, guard_s: float) -> None:
        def resume() -> None:
            if self._plays == play and self.controls is not None:
                self.controls.resume(PAUSE_REASON)

        timer = threading.Timer(guard_s, resume)
        timer.name, timer.daemon = f"vcd-{NAME}-guard", True
        timer.start()

    def _speak(self, site: str, text: str) -> None:
        assert self.speaker is not None
        try:
            samples, rate_hz = self.speaker.synthesize(text)
        except SpeechError as exc:
            _LOGGER.error("feedback: %r not spoken: %s", text, exc)
            return
        self._play(samples, rate_hz)


_plugin = Feedback()


@vcd.hookimpl
def vcd_check_config(config: Any, config_path: Path | None) -> None:
    """``vcd check-config``: validate ``[plugins.feedback]``; a sound or voice that does not work is one warning."""
    _plugin.vcd_check_config(config, config_path)


@vcd.hookimpl
def vcd_startup(config: Any, config_path: Path | None, controls: vcd.PluginControls) -> None:
    """Validate the table, load the sounds and the voice, find the output device (none: off, one info line)."""
    _plugin.vcd_startup(config, config_path, controls)


@vcd.hookimpl
def vcd_feedback(site: str, kind: str, text: str | None) -> None:
    """Play the sound of ``kind``, then speak ``text`` (when there is one and ``tts`` is on)."""
    _plugin.vcd_feedback(site, kind, text)


@vcd.hookimpl
def vcd_say(site: str, text: str, request_id: str) -> None:
    """Speak ``text`` (any plugin's ``controls.say``), then report ``vcd_said``."""
    _plugin.vcd_say(site, text, request_id)


@vcd.hookimpl
def vcd_shutdown(reason: str) -> None:
    _plugin.vcd_shutdown(reason)
