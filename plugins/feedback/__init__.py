"""Feedback plugin: a short sound for wake / recognised / not understood, and spoken answers (espeak-ng or Piper).

Configured by ``[plugins.feedback]`` (docs/daemon.md).  It plays on the output device
(sounddevice) of the machine it runs on — the hub, or a satellite, which calls the same hooks on
its own plugin host — for its own site only, unless ``sites`` says otherwise.  For a site that another
plugin offers a speaker for (``controls.offer_speaker``: the ``satellites`` plugin, at a Rhasspy
satellite, through ``playBytes``) it renders the sound and the answer and plays them there.  It offers
its own output the same way (``vcd satellite`` plays a hub's ``playBytes`` through it).  Without an
output device it says so in one line; a missing TTS program or voice, or a sound file that does not
load, turns that part off with one line, and the daemon runs on.

Hooks: ``vcd_feedback`` (the daemon after each decoded segment, the wake-word stage), ``vcd_say``
(any plugin's ``controls.say(text, site)``; answered with ``controls.said`` → ``vcd_said``).  Both return
at once: what they play waits at its destination (``destinations``): this machine's output, or one remote
site each, every one in order and on its own thread, so a satellite slow to answer ``playFinished``
delays only its own room.
The rooms: ``settings`` (the table), ``playback`` (sound files, the device), ``speech`` (TTS),
``destinations`` (the queues and threads).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import vcd

from .destinations import Destinations, Job
from .playback import DeviceOutput, NoOutput, Output, Sound, SoundError, load_sound, prepare
from .settings import KINDS, FeedbackSettings, parse_settings
from .speech import Espeak, Piper, Speaker, SpeechError

_LOGGER = logging.getLogger(__name__)

NAME = "feedback"
PAUSE_REASON = "feedback playing"  # recognition pauses while vcd's own sounds and answers play
ECHO_GUARD_S = 0.5  # ... and this long after vad.silence_ms more, so the segment holding them is not decoded
LOCAL = "local"  # the destination of this machine's output (a remote one is named "site-SITE")
FINISH_S = 1.0  # at shutdown, what is queued may still play this long (vcd_shutdown's share of ~1.2 s)
FILE_PLAY_WAIT_S = 60.0  # input from a file or stdin: a hook waits this long at most for its local sound to play


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
        self.destinations = Destinations()  # one queue and thread per output; each plays in order
        self._plays = 0  # playbacks started (thread vcd-feedback-local); the guard resumes only after the last one
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
        self.destinations = Destinations()
        controls.offer_speaker(self._reaches, self._play_offered)  # vcd satellite: a hub's playBytes play here
        if self.output is None and (self.sounds or self.speaker is not None):
            try:
                device = DeviceOutput(self.settings.device)
            except NoOutput as exc:
                _LOGGER.info("feedback: no audio output here (%s); sounds and answers play only at satellites "
                             "with a speaker of their own", exc)
                return
            self.output = device
            _LOGGER.info("feedback on %s (%d Hz): sounds %s, answers %s", device.name, device.rate_hz,
                         "on" if self.sounds else "off", self.speaker.name if self.speaker else "off")

    @vcd.hookimpl
    def vcd_feedback(self, site: str, kind: str, text: str | None) -> None:
        """Queue the sound of ``kind``, then ``text`` spoken, as one job at ``site``'s destination; returns at once."""
        where = self._destination_for(site)
        if where is None:
            return
        if kind not in KINDS:
            _LOGGER.warning("feedback: unknown kind %r (from site %s); expected one of %s", kind, site,
                            ", ".join(KINDS))
            return
        name, play = where
        sound = self.sounds.get(kind)
        answer = text if text and self.speaker is not None else None
        if sound is None and answer is None:
            return

        def run() -> None:
            if sound is not None:
                play(sound.samples, sound.rate_hz)
            if answer is not None:
                self._speak(answer, play)

        what = " + ".join(([f"{kind} sound"] if sound is not None else []) + ([f"answer {answer!r}"] if answer else []))
        self._put(name, Job(f"{what} for site {site}", run))

    @vcd.hookimpl
    def vcd_say(self, site: str, text: str, request_id: str) -> None:
        """Queue ``text`` spoken at ``site``'s destination; ``controls.said`` follows once it has played (or was
        dropped, or is not spoken here: then at once).  Returns at once."""
        where = self._destination_for(site, saying=True) if self.speaker is not None else None

        def said() -> None:
            if self.controls is not None:
                self.controls.said(site, text, request_id)

        if where is None:
            _LOGGER.debug("feedback: %r for site %s not spoken here", text, site)
            said()
            return
        name, play = where

        def run() -> None:
            try:
                self._speak(text, play)
            finally:
                said()

        self._put(name, Job(f"answer {text!r} for site {site}", run, skip=said))

    @vcd.hookimpl
    def vcd_shutdown(self, reason: str) -> None:
        """What is queued plays for up to FINISH_S, the rest is dropped (one line); never waits on a satellite."""
        self.destinations.close(FINISH_S)
        self.output = None

    def _put(self, name: str, job: Job) -> None:
        """Queue ``job`` at ``name``; with input from a file or stdin (no microphone: ``guard_s`` None), wait for a
        job on this machine's output to finish, as one played after another before: the daemon's end-of-input
        drain then lets the last answers play out instead of ``vcd_shutdown``'s second."""
        if name != LOCAL or self.guard_s is not None:
            self.destinations.put(name, job)
        elif not self.destinations.put_and_wait(name, job, FILE_PLAY_WAIT_S):
            _LOGGER.warning("feedback: %s still playing after %.0f s; going on", job.what, FILE_PLAY_WAIT_S)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every destination has played what it was given; False when ``timeout_s`` passed first."""
        return self.destinations.wait_idle(timeout_s)

    def _destination_for(self, site: str, saying: bool = False) -> tuple[str, Callable[[Any, int], Any]] | None:
        """(destination, player) of ``site``'s feedback: this machine's output for its own site, else a speaker
        another plugin offers for it (the ``satellites`` plugin's, at a Rhasspy satellite), else this machine's
        output when ``sites`` names the site; None: not played here.  ``saying``: an answer to ``vcd_say``, which
        also plays at a speaker's ``says_at`` sites (a vcd satellite, which renders its own feedback)."""
        local = self._reaches(site)
        if local and site == self.site:
            return LOCAL, self._play
        if self.controls is not None and self.controls.plays_at(site, saying):
            return f"site-{site}", lambda samples, rate_hz: self._play_at(site, samples, rate_hz, saying)
        return (LOCAL, self._play) if local else None

    def _reaches(self, site: str) -> bool:
        """The speaker this plugin offers (``controls.offer_speaker``): this machine's output, for its sites."""
        return self.output is not None and self.settings.plays_for(site, self.site)

    def _play_offered(self, site: str, samples: Any, rate_hz: int) -> bool:
        """Another part of vcd (``vcd satellite``, for a hub's ``playBytes``) plays audio on this machine's output:
        queued there after what this plugin plays, blocking until it has played; False when it was not."""
        if self.output is None:
            return False
        played: list[bool] = []
        self.destinations.put_and_wait(LOCAL, Job(f"{len(samples) / rate_hz:.2f} s of audio for site {site}",
                                                  lambda: played.append(self._play(samples, rate_hz))))
        return played == [True]

    def _play_at(self, site: str, samples: Any, rate_hz: int, saying: bool = False) -> None:
        """Through the speaker another plugin offers for ``site``: at full scale (the satellite's own volume rules
        there), blocking until it has been played; that plugin guards its microphone against the echo."""
        assert self.controls is not None
        if not self.controls.play_at(site, samples, rate_hz, saying):
            _LOGGER.debug("feedback: %.2f s of audio for site %s not confirmed played", len(samples) / rate_hz, site)

    def _play(self, samples: Any, rate_hz: int) -> bool:
        """Scaled by ``volume``, with a short silent tail, to the output (which resamples for its device); only
        on the thread of the destination LOCAL.  False when there is no output (any more: vcd stops).

        The microphone hears it too ("Turned on the kitchen light" would be decoded as a command): when the
        audio comes from a microphone, recognition pauses while it plays and until the VAD has closed the
        segment that holds it.
        """
        output = self.output
        if output is None:
            return False
        audio = prepare(samples, rate_hz, rate_hz, self.settings.volume)
        if self.guard_s is None or self.controls is None:
            output.play(audio, rate_hz)
            return True
        self._plays += 1
        self.controls.pause(PAUSE_REASON)
        try:
            output.play(audio, rate_hz)
        finally:
            self._resume_later(self._plays, self.guard_s)
        return True

    def _resume_later(self, play: int, guard_s: float) -> None:
        def resume() -> None:
            if self._plays == play and self.controls is not None:
                self.controls.resume(PAUSE_REASON)

        timer = threading.Timer(guard_s, resume)
        timer.name, timer.daemon = f"vcd-{NAME}-guard", True
        timer.start()

    def _speak(self, text: str, play: Callable[[Any, int], Any]) -> None:
        assert self.speaker is not None
        try:
            samples, rate_hz = self.speaker.synthesize(text)
        except SpeechError as exc:
            _LOGGER.error("feedback: %r not spoken: %s", text, exc)
            return
        play(samples, rate_hz)


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
    """Play the sound of ``kind``, then speak ``text`` (when there is one and ``tts`` is on); queued, returns at once."""
    _plugin.vcd_feedback(site, kind, text)


@vcd.hookimpl
def vcd_say(site: str, text: str, request_id: str) -> None:
    """Speak ``text`` (any plugin's ``controls.say``), then report ``vcd_said``; queued, returns at once."""
    _plugin.vcd_say(site, text, request_id)


@vcd.hookimpl
def vcd_shutdown(reason: str) -> None:
    _plugin.vcd_shutdown(reason)
