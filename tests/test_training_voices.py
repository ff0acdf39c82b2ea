"""Training voices: the free default set stays as it was; each opt-in set (``--extra-voices``) really speaks."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vcd.training.synth import (
    EXTRA_VOICE_LICENCES,
    EXTRA_VOICE_SETS,
    HELD_OUT_EXTRA_VOICES,
    available_voices,
    speak,
)

# What available_voices(held_out, random.Random(1234)) returned before the opt-in sets existed: the
# training cache depends on it, so the default must not change ("label rate_wpm pitch").
DEFAULT_TRAIN_VOICES = [
    "espeak-ng:en-gb-x-gbcwmd+adam 132 25", "espeak-ng:en+Alex 183 62", "espeak-ng:en-us+Alicia 167 69",
    "espeak-ng:en+Andrea 131 74", "espeak-ng:en-us-nyc+Andy 140 26", "espeak-ng:en-us+antonio 175 26",
    "espeak-ng:en-us-nyc+aunty 166 64", "espeak-ng:en-gb-x-gbcwmd+belinda 164 54",
    "espeak-ng:en-gb-scotland+benjamin 130 36", "espeak-ng:en+boris 179 25",
    "espeak-ng:en-gb-x-gbcwmd+caleb 181 40", "espeak-ng:en+david 167 59", "espeak-ng:en-gb-x-gbcwmd+Denis 129 63",
    "espeak-ng:en+Diogo 157 62", "espeak-ng:en-us+ed 142 60", "espeak-ng:en+edward 166 44",
    "espeak-ng:en-gb-x-gbcwmd+edward2 179 47", "espeak-ng:en-029+Gene 140 66", "espeak-ng:en-gb-x-rp+Gene2 154 58",
    "espeak-ng:en-us+gustave 185 57", "espeak-ng:en+announcer 125 46", "espeak-ng:en-gb-scotland+Henrique 170 55",
    "espeak-ng:en-gb-x-gbclan+Hugo 135 28", "espeak-ng:en+iven 162 56", "espeak-ng:en-gb-scotland+iven2 129 60",
    "espeak-ng:en-gb-x-rp+iven3 134 26", "espeak-ng:en-us-nyc+iven4 174 32",
    "espeak-ng:en-gb-scotland+Jacky 167 44", "espeak-ng:en-gb-x-gbcwmd+john 127 51",
    "espeak-ng:en-029+kaukovalta 167 27", "espeak-ng:en-gb-scotland+Lee 142 34", "espeak-ng:en-029+linda 179 34",
    "espeak-ng:en-gb-x-gbcwmd+marcelo 127 61", "espeak-ng:en-gb-x-gbclan+Marco 173 47",
    "espeak-ng:en-gb-x-gbcwmd+Mario 146 62", "espeak-ng:en-gb-x-gbcwmd+max 155 27",
    "espeak-ng:en-gb-x-gbcwmd+Michael 180 63", "espeak-ng:en-gb-scotland+michel 153 71",
    "espeak-ng:en-gb-x-gbcwmd+miguel 143 42", "espeak-ng:en+Mr 174 36", "espeak-ng:en-gb-x-gbclan+Nguyen 152 74",
    "espeak-ng:en+pablo 185 58", "espeak-ng:en+paul 178 56", "espeak-ng:en-gb-x-gbclan+pedro 177 67",
    "espeak-ng:en-029+quincy 166 37", "espeak-ng:en-us-nyc+RicishayMax 131 69",
    "espeak-ng:en-gb-scotland+rob 162 42", "espeak-ng:en-gb-scotland+robert 179 71",
    "espeak-ng:en-us-nyc+steph 175 75", "espeak-ng:en-gb-x-gbcwmd+steph2 171 29", "espeak-ng:en+steph3 150 38",
    "espeak-ng:en-us+Storm 182 43", "espeak-ng:en-us+zac 139 57", "espeak-ng:en+anika 175 69",
    "espeak-ng:en-us-nyc+AnxiousAndy 144 54", "espeak-ng:en+f2 162 41", "espeak-ng:en+f3 169 52",
    "espeak-ng:en-gb-x-rp+f5 131 50", "espeak-ng:en-gb-x-rp+grandpa 170 54", "espeak-ng:en-gb-x-rp+klatt 177 48",
    "espeak-ng:en-gb-x-rp+klatt2 157 69", "espeak-ng:en-gb-x-gbclan+klatt3 136 62",
    "espeak-ng:en-gb-x-rp+klatt4 144 28", "espeak-ng:en-us-nyc+m2 159 34", "espeak-ng:en-gb-x-gbcwmd+m3 183 74",
    "espeak-ng:en-gb-x-gbcwmd+m4 146 33", "espeak-ng:en-gb-scotland+m6 128 64",
    "espeak-ng:en-gb-scotland+m7 184 34", "espeak-ng:en+norbert 170 45", "espeak-ng:en-gb-scotland+sandro 125 67",
    "espeak-ng:en-us+shelby 165 30", "espeak-ng:en-gb-scotland+m8 183 38", "espeak-ng:en-us+f1 152 50",
    "espeak-ng:en-us-nyc+m1 138 68", "espeak-ng:en-gb-x-gbclan+grandma 184 42", "flite:kal16 160 50",
    "flite:awb 160 50", "flite:slt 160 50", "festival:voice_kal_diphone 160 50",
    "festival:voice_cmu_us_slt_arctic_hts 160 50",
]
DEFAULT_HELD_OUT_VOICES = [
    "espeak-ng:en-us+Annie 174 53", "espeak-ng:en-us+Mike 132 25", "espeak-ng:en-us+f4 130 62",
    "espeak-ng:en-us+m5 127 67", "espeak-ng:en-us+travis 169 30", "espeak-ng:en-us+victor 131 74",
    "flite:rms 160 50",
]
# rng.random() right after (espeak-ng installed): the sentences drawn next stay the same too.
NEXT_DRAW = {False: 0.5374877201903263, True: 0.3546356054902805}
ENGINE_PROGRAMS = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}


@pytest.mark.parametrize("held_out", [False, True])
def test_default_voices_are_unchanged(held_out: bool) -> None:
    rng = random.Random(1234)
    voices = [f"{v.label} {v.rate_wpm} {v.pitch}" for v in available_voices(held_out, rng)]
    expected = DEFAULT_HELD_OUT_VOICES if held_out else DEFAULT_TRAIN_VOICES
    assert voices == [v for v in expected if shutil.which(ENGINE_PROGRAMS[v.split(":")[0]])]
    if shutil.which("espeak-ng"):
        assert rng.random() == NEXT_DRAW[held_out]


def test_extra_sets_draw_nothing_from_the_rng() -> None:
    plain, extra = random.Random(7), random.Random(7)
    default = available_voices(False, plain)
    assert available_voices(False, extra, tuple(EXTRA_VOICE_SETS))[: len(default)] == default
    assert plain.random() == extra.random()


def test_every_extra_set_has_a_licence_note_and_holds_a_voice_out() -> None:
    assert set(EXTRA_VOICE_LICENCES) == set(EXTRA_VOICE_SETS)
    for engine, names in EXTRA_VOICE_SETS.values():
        held_out = [n for n in names if n in HELD_OUT_EXTRA_VOICES]
        assert len(held_out) == (1 if len(names) > 1 else 0), (engine, names)


@pytest.mark.parametrize("voice_set", list(EXTRA_VOICE_SETS))
def test_extra_voice_set_speaks(voice_set: str) -> None:
    voices = [v for held_out in (False, True) for v in available_voices(held_out, random.Random(0), [voice_set])
              if v.engine == EXTRA_VOICE_SETS[voice_set][0] and v.name in EXTRA_VOICE_SETS[voice_set][1]]
    if not voices:
        pytest.skip(f"voice set {voice_set} is not installed (scripts/install-training-voices.sh {voice_set})")
    for voice in voices:
        audio = speak(voice, "turn on the kitchen light")
        assert audio is not None, voice.label
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 0.7 < audio.size / 16000 < 4.0, (voice.label, audio.size)  # about 1.5 s at 16 kHz
        assert np.sqrt(np.mean(audio**2)) > 0.01, voice.label


def test_unknown_extra_voice_set_is_a_one_line_usage_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "vcd", "train", "--extra-voices", "pico,nope"], check=False,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "Error: --extra-voices: unknown voice set 'nope' (choose from mbrola, festvox, pico, piper)"]
    assert result.stdout == "" and not any(tmp_path.iterdir())
