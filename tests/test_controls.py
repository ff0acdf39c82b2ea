"""vcd.controls: list values plugins add to the grammar, and pausing recognition (no audio, no broker)."""

from __future__ import annotations

from typing import Any

import numpy as np

import vcd
from vcd.controls import Controls, with_list_values
from vcd.grammar import compile_word_graph, load_intents


def test_list_values_of_each_plugin_replace_its_earlier_ones_and_merge() -> None:
    controls = Controls()
    a, b = controls.for_plugin("a"), controls.for_plugin("b")
    version = controls.version
    a.set_list("name", [vcd.ListValue("reading lamp"), vcd.ListValue("fish tank")])
    b.set_list("name", [vcd.ListValue("fish tank"), vcd.ListValue("porch heater", context={"domain": "climate"})])
    assert controls.changed.is_set() and controls.version > version
    _, lists = controls.lists()
    assert [v.text for v in lists["name"]] == ["reading lamp", "fish tank", "porch heater"]  # one "fish tank"
    a.set_list("name", [])
    _, lists = controls.lists()
    assert [v.text for v in lists["name"]] == ["fish tank", "porch heater"]
    same = controls.version
    b.set_list("name", [vcd.ListValue("fish tank"), vcd.ListValue("porch heater", context={"domain": "climate"})])
    assert controls.version == same  # nothing changed: no recompilation


def test_added_values_are_parsed_with_their_value_and_context() -> None:
    intents = load_intents()
    extra = {
        "name": [vcd.ListValue("reading lamp", context={"domain": "light"}), vcd.ListValue("kitchen light")],
        "area": [vcd.ListValue("conservatory")],
        "brightness": [vcd.ListValue("eleven")],  # a range list: left alone
    }
    grown = with_list_values(intents, extra)
    graph = compile_word_graph(grown)
    assert graph.parse("turn on the reading lamp".split()) == ("HassTurnOn", {"name": "reading lamp"})
    assert graph.parse("turn off the conservatory lights".split()) == (
        "HassTurnOff", {"domain": "light", "area": "conservatory"}
    )
    assert compile_word_graph(intents).parse("turn on the reading lamp".split()) is None  # the original is untouched
    names = [v.text_in.text for v in grown.slot_lists["name"].values]
    assert names.count("kitchen light") == 1  # already in the bundled list
    added = grown.slot_lists["name"].values[-1]
    assert (added.value_out, added.context) == ("reading lamp", {"domain": "light"})


def test_pause_reasons_stack_per_plugin() -> None:
    controls = Controls()
    mqtt, other = controls.for_plugin("mqtt"), controls.for_plugin("other")
    assert controls.paused_by() == ""
    mqtt.pause("hermes/asr/toggleOff")
    mqtt.pause("hermes/hotword/toggleOff (ttsSay)")
    other.pause("muted")
    mqtt.resume("hermes/asr/toggleOff")
    assert controls.paused_by() == "mqtt: hermes/hotword/toggleOff (ttsSay); other: muted"
    mqtt.resume()
    other.resume("muted")
    assert controls.paused_by() == ""


def test_speakers_other_plugins_offer_and_one_that_breaks(caplog: Any) -> None:
    """``offer_speaker``: a plugin plays at the sites its speaker reaches, through another plugin's, never its own;
    a speaker that raises is one logged error and counts as not played."""
    controls = Controls()
    feedback, satellites, mqtt = (controls.for_plugin(n) for n in ("feedback", "satellites", "mqtt"))
    played: list[tuple[str, str, int, int]] = []

    def speaker(name: str, sites: set[str]) -> tuple[Any, Any]:
        def play(site: str, samples: np.ndarray, rate_hz: int) -> bool:
            if site == "broken":
                raise RuntimeError("the sound card fell off")
            played.append((name, site, len(samples), rate_hz))
            return True

        return (lambda site: site in sites), play

    feedback.offer_speaker(*speaker("feedback", {"kitchen"}))
    satellites.offer_speaker(*speaker("satellites", {"porch", "broken"}))
    satellites.offer_speaker(*speaker("satellites", {"porch", "broken", "attic"}))  # replaces the first offer
    assert [feedback.plays_at(s) for s in ("kitchen", "porch", "attic", "garage")] == [False, True, True, False]
    assert [mqtt.plays_at(s) for s in ("kitchen", "porch", "garage")] == [True, True, False]
    assert feedback.play_at("porch", np.zeros(160, dtype=np.float32), 16000)
    assert not feedback.play_at("garage", np.zeros(160, dtype=np.float32), 16000)
    assert not feedback.play_at("broken", np.zeros(160, dtype=np.float32), 16000)
    assert controls.play_at("kitchen", np.zeros(80, dtype=np.float32), 8000)  # vcd satellite: no plugin asks
    assert played == [("satellites", "porch", 160, 16000), ("feedback", "kitchen", 80, 8000)]
    assert 'plugin "satellites" failed to play 0.01 s of audio at site \'broken\'' in caplog.text


def test_a_speaker_that_only_says_answers_at_some_sites() -> None:
    """``says_at``: sites where a speaker plays spoken answers (``saying=True``: ``controls.say``) but not feedback,
    as the satellites plugin does for vcd satellites, which render their own sounds."""
    controls = Controls()
    feedback, satellites = controls.for_plugin("feedback"), controls.for_plugin("satellites")
    played: list[tuple[str, int]] = []

    def play(site: str, samples: np.ndarray, rate_hz: int) -> bool:
        played.append((site, len(samples)))
        return True

    satellites.offer_speaker(lambda site: site == "porch", play, says_at=lambda site: site == "den")
    assert [feedback.plays_at(s) for s in ("porch", "den", "garage")] == [True, False, False]
    assert [feedback.plays_at(s, saying=True) for s in ("porch", "den", "garage")] == [True, True, False]
    assert not feedback.play_at("den", np.zeros(160, dtype=np.float32), 16000)
    assert feedback.play_at("den", np.zeros(320, dtype=np.float32), 16000, saying=True)
    assert played == [("den", 320)]
    satellites.offer_speaker(lambda site: site == "porch", play)  # a later offer without says_at replaces it
    assert not feedback.plays_at("den", saying=True)
