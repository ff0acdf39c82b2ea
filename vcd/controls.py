"""What plugins may change while the daemon runs: values of the grammar's lists, and pausing the recogniser.

A plugin receives its own :class:`PluginControls` as the ``controls`` argument
of ``vcd_startup`` and may keep it and call it from any thread:

- ``controls.set_list("name", [vcd.ListValue("kitchen light", context={"domain": "light"})])``
  replaces this plugin's values in the list ``{name}``.  Values set during
  ``vcd_startup`` are compiled into the grammar before the first segment is
  decoded; later ones are compiled on the thread ``vcd-grammar`` and take
  effect between two segments (the segment being decoded finishes with the
  grammar it started with).
- ``controls.pause("reason")`` / ``controls.resume("reason")``: while any
  plugin holds a pause reason the daemon skips decoding (segments are logged
  and dropped; ``vcd_speech_started``/``vcd_speech_ended`` still arrive).
- ``controls.say("It is five o'clock", site=None, request_id="")`` asks the plugin that speaks
  (the shipped ``feedback`` plugin: espeak-ng or Piper) to say a text at a site (None: this
  daemon's ``daemon.site``); it answers with the ``vcd_said`` hook when done.  Returns at once;
  call it once the daemon runs (after ``vcd_startup``).
- ``controls.offer_speaker(reaches, play, says_at=None)``: this plugin can play audio at some sites
  (the ``feedback`` plugin on its sound card, the ``satellites`` plugin at Rhasspy satellites, and
  spoken answers only at vcd satellites: ``says_at``); ``controls.plays_at(site, saying=False)`` /
  ``controls.play_at(site, samples, rate_hz, saying=False)`` let another plugin (the ``feedback``
  plugin rendering for a satellite) or ``vcd satellite`` play there through it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hassil import Intents

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListValue:
    """One value a plugin adds to a grammar list.

    :param text: the words said, e.g. ``"kitchen light"`` (plain words: no template syntax).
    :param value: the slot's value when recognised; None → ``text``.
    :param context: hassil context the value carries (what ``requires_context`` /
        ``excludes_context`` in the sentences test), e.g. ``{"domain": "light", "area": "kitchen"}``.
    """

    text: str
    value: str | int | float | None = None
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def value_out(self) -> str | int | float:
        return self.text if self.value is None else self.value


class Controls:
    """The daemon's side: every plugin's list values and pause reasons (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lists: dict[str, dict[str, tuple[ListValue, ...]]] = {}  # plugin → list name → values
        self._pauses: dict[str, set[str]] = {}  # plugin → reasons
        self._version = 0
        self.changed = threading.Event()  # set when list values change; the grammar thread clears it
        self._dispatch: Callable[..., None] | None = None  # the plugin host's, for say/said
        self._speaks: Callable[[], bool] = lambda: False
        self.site = ""
        self.segment_sink: Callable[..., bool] | None = None  # set by attach_segment_sink
        self.recognizer_ready = threading.Event()  # set once the recogniser takes segments from plugins
        # (plugin, reaches, play, says_at): says_at(site) → play speaks controls.say's answers there, not feedback
        self._speakers: list[tuple[str, Callable[[str], bool], Callable[..., bool], Callable[[str], bool] | None]] = []

    def connect(self, dispatch: Callable[..., None], speaks: Callable[[], bool], site: str) -> None:
        """The plugin host's ``dispatch(hook, **kwargs)``, whether any plugin implements ``vcd_say``, the site."""
        self._dispatch, self._speaks, self.site = dispatch, speaks, site

    def say(self, plugin: str, text: str, site: str | None, request_id: str) -> None:
        site = site or self.site
        if self._dispatch is None:
            _LOGGER.warning('plugin "%s" asked to say %r before the plugins were started; not said', plugin, text)
            return
        if self._speaks():
            _LOGGER.debug('plugin "%s" asks to say %r at %s', plugin, text, site)
            self._dispatch("vcd_say", site=site, text=text, request_id=request_id)
        else:
            _LOGGER.info('plugin "%s" asked to say %r at %s, but no plugin speaks (enable "feedback")',
                         plugin, text, site)
            self._dispatch("vcd_said", site=site, text=text, request_id=request_id)

    def said(self, site: str, text: str, request_id: str) -> None:
        if self._dispatch is not None:
            self._dispatch("vcd_said", site=site, text=text, request_id=request_id)

    def offer_speaker(self, plugin: str, reaches: Callable[[str], bool], play: Callable[..., bool],
                      says_at: Callable[[str], bool] | None = None) -> None:
        with self._lock:
            self._speakers = [s for s in self._speakers if s[0] != plugin] + [(plugin, reaches, play, says_at)]

    def speaker_at(self, site: str, asking: str | None = None,
                   saying: bool = False) -> tuple[str, Callable[..., bool]] | None:
        """(plugin, play) of the first speaker, not ``asking``'s own, that reaches ``site``; None when none does.

        ``saying``: for a spoken answer (``controls.say``), so a speaker's ``says_at`` sites count too.
        """
        with self._lock:
            speakers = list(self._speakers)
        for plugin, reaches, play, says_at in speakers:
            if plugin == asking:
                continue
            try:
                if reaches(site) or (saying and says_at is not None and says_at(site)):
                    return plugin, play
            except Exception:  # noqa: BLE001 - a broken plugin must not stop the one asking
                _LOGGER.exception('plugin "%s": its speaker could not say whether it reaches site %r', plugin, site)
        return None

    def play_at(self, site: str, samples: Any, rate_hz: int, asking: str | None = None, saying: bool = False) -> bool:
        """Play mono float32 ``samples`` at ``site`` through the speaker that reaches it; False when none does."""
        found = self.speaker_at(site, asking, saying)
        if found is None:
            return False
        plugin, play = found
        try:
            return bool(play(site, samples, rate_hz))
        except Exception:  # noqa: BLE001 - one line naming the plugin; the asker goes on
            _LOGGER.exception('plugin "%s" failed to play %.2f s of audio at site %r', plugin,
                              len(samples) / rate_hz, site)
            return False

    def attach_segment_sink(self, sink: Callable[..., bool]) -> None:
        """The daemon's side of :meth:`PluginControls.recognize` (called once its pipeline exists)."""
        self.segment_sink = sink
        self.recognizer_ready.set()

    def for_plugin(self, plugin: str) -> PluginControls:
        return PluginControls(self, plugin)

    @property
    def version(self) -> int:
        """Incremented by every change of list values."""
        return self._version

    def set_list(self, plugin: str, list_name: str, values: Iterable[ListValue]) -> None:
        values = tuple(values)
        with self._lock:
            mine = self._lists.setdefault(plugin, {})
            if mine.get(list_name, ()) == values:
                return
            mine[list_name] = values
            self._version += 1
        _LOGGER.debug('plugin "%s": list {%s} now has %d values of its own', plugin, list_name, len(values))
        self.changed.set()

    def lists(self) -> tuple[int, dict[str, list[ListValue]]]:
        """(version, list name → the values all plugins add, in plugin order, duplicates of text and value removed)."""
        with self._lock:
            merged: dict[str, list[ListValue]] = {}
            seen: set[tuple[str, str, Any]] = set()
            for by_list in self._lists.values():
                for list_name, values in by_list.items():
                    out = merged.setdefault(list_name, [])
                    for value in values:
                        key = (list_name, value.text, value.value_out)
                        if key not in seen:
                            seen.add(key)
                            out.append(value)
            return self._version, merged

    def pause(self, plugin: str, reason: str) -> None:
        with self._lock:
            reasons = self._pauses.setdefault(plugin, set())
            if reason in reasons:
                return
            reasons.add(reason)
        _LOGGER.info('plugin "%s" paused recognition (%s)', plugin, reason)

    def resume(self, plugin: str, reason: str | None = None) -> None:
        with self._lock:
            reasons = self._pauses.get(plugin, set())
            if not reasons or (reason is not None and reason not in reasons):
                return
            if reason is None:
                reasons.clear()
            else:
                reasons.discard(reason)
        _LOGGER.info('plugin "%s" resumed recognition (%s)', plugin, reason or "all reasons")

    def paused_by(self) -> str:
        """Who holds a pause and why (``'mqtt: hermes/asr/toggleOff'``), or "" when recognition runs."""
        with self._lock:
            return "; ".join(
                f"{plugin}: {', '.join(sorted(reasons))}" for plugin, reasons in self._pauses.items() if reasons
            )


@dataclass(frozen=True)
class PluginControls:
    """One plugin's handle on :class:`Controls` (the ``controls`` argument of ``vcd_startup``); any thread."""

    _controls: Controls
    plugin: str

    def set_list(self, list_name: str, values: Iterable[ListValue]) -> None:
        """Replace this plugin's values in the grammar list ``list_name`` (an empty iterable removes them).

        A list the sentences do not define is created (and used by no template
        until one refers to it); a range or wildcard list of that name is left alone.
        Returns at once; the grammar is recompiled in the background.
        """
        self._controls.set_list(self.plugin, list_name, values)

    def pause(self, reason: str) -> None:
        """Stop decoding speech until :meth:`resume` is called with the same reason (reasons stack)."""
        self._controls.pause(self.plugin, reason)

    def resume(self, reason: str | None = None) -> None:
        """Drop one pause reason of this plugin (None: all of them)."""
        self._controls.resume(self.plugin, reason)

    def say(self, text: str, site: str | None = None, request_id: str = "") -> None:
        """Have ``text`` spoken at ``site`` (None: this daemon's site); ``vcd_said`` follows when it is done.

        Returns at once.  When no plugin speaks, ``vcd_said`` follows straight away.
        """
        self._controls.say(self.plugin, text, site, request_id)

    def said(self, site: str, text: str, request_id: str = "") -> None:
        """For the plugin that speaks: a ``vcd_say`` request is done (spoken or not); sends ``vcd_said``."""
        self._controls.said(site, text, request_id)

    def offer_speaker(self, reaches: Callable[[str], bool], play: Callable[[str, Any, int], bool],
                      says_at: Callable[[str], bool] | None = None) -> None:
        """This plugin can play audio at some sites: others may play there through it (replaces an earlier offer).

        :param reaches: ``reaches(site)`` → whether ``play`` can play at ``site`` now (any thread; must not block).
        :param play: ``play(site, samples, rate_hz)`` plays mono float32 ``samples`` (−1..1) at ``rate_hz`` at
            ``site`` and blocks until they have been played (or given up on, within a few seconds of their
            length); True when they were played.  Called on the asker's thread.
        :param says_at: ``says_at(site)`` → whether ``play`` can play spoken answers (``controls.say``) at ``site``
            although ``reaches`` is False there: a site that renders its own feedback sounds (a vcd satellite)
            but can play an answer rendered here.  Same rules as ``reaches``.
        """
        self._controls.offer_speaker(self.plugin, reaches, play, says_at)

    def plays_at(self, site: str, saying: bool = False) -> bool:
        """Whether another plugin offers a speaker that reaches ``site`` (e.g. a Rhasspy satellite's).

        ``saying``: asking for a spoken answer (``controls.say``), which a speaker's ``says_at`` sites take too.
        """
        return self._controls.speaker_at(site, self.plugin, saying) is not None

    def play_at(self, site: str, samples: Any, rate_hz: int, saying: bool = False) -> bool:
        """Play mono float32 ``samples`` at ``site`` through another plugin's speaker; blocks until played.

        False when no other plugin reaches ``site`` (with ``saying``: nor says at it, as in :meth:`plays_at`), or
        its speaker could not play them.
        """
        return self._controls.play_at(site, samples, rate_hz, self.plugin, saying)

    def recognize(
        self, samples: Any, site: str, speech_end: float, done: Callable[[], None] | None = None,
        timeout_s: float = 5.0,
        speech: float | None = None,
    ) -> bool:
        """Hand a speech segment heard elsewhere (a satellite) to the recogniser, as if the VAD had closed it.

        :param samples: 16 kHz mono float32 audio of one command.
        :param site: the site its hooks carry instead of ``daemon.site``.
        :param speech_end: ``time.time()`` when the segment closed (the ``speech_end`` of ``vcd_intent``'s timings).
        :param done: called once on the recogniser's thread when the segment is decoded, just before its
            hooks are dispatched (or when it was skipped or failed), e.g. to acknowledge the message it came in.
        :param speech: the segment's speech presence (:mod:`vcd.presence`) when whoever heard it measured it;
            None: the recogniser measures it if its rejection rule weighs it.
        Waits up to ``timeout_s`` for room in the recogniser's queue; False when there was none, or no
        daemon is running (``done`` is then not called).
        """
        sink = self._controls.segment_sink
        return sink is not None and sink(samples, site, speech_end, done, timeout_s, speech)

    def wait_for_recognizer(self, timeout_s: float | None = None) -> bool:
        """Wait until :meth:`recognize` takes segments (the daemon has loaded the model and built its pipeline).

        ``vcd_startup`` runs before the model loads: a plugin bringing audio from elsewhere waits
        here, on a thread of its own, before it subscribes to it.  False after ``timeout_s``.
        """
        return self._controls.recognizer_ready.wait(timeout_s)


def with_list_values(intents: Intents, extra: Mapping[str, list[ListValue]]) -> Intents:
    """A copy of ``intents`` whose text lists also hold ``extra`` (values the list has already are skipped)."""
    from hassil.expression import TextChunk
    from hassil.intents import TextSlotList, TextSlotValue

    if not extra:
        return intents
    slot_lists = dict(intents.slot_lists)
    for list_name, values in extra.items():
        current = slot_lists.get(list_name)
        if current is not None and not isinstance(current, TextSlotList):
            _LOGGER.warning("list {%s} is not a list of words; %d values from plugins ignored", list_name, len(values))
            continue
        old = list(current.values) if current is not None else []
        have = {(v.text_in.text if isinstance(v.text_in, TextChunk) else None, v.value_out) for v in old}
        new = [
            TextSlotValue(TextChunk(v.text), v.value_out, dict(v.context) or None)
            for v in values
            if v.text.strip() and (v.text, v.value_out) not in have
        ]
        if current is None:
            slot_lists[list_name] = TextSlotList(name=list_name, values=new)
        else:
            slot_lists[list_name] = replace(current, values=old + new)
    return replace(intents, slot_lists=slot_lists)
