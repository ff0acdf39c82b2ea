"""VAD segmentation on real synthesised speech, and the seamless stream resampler."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vcd.audio import SAMPLE_RATE_HZ, read_audio, to_mono_16k
from vcd.config import VadConfig
from vcd.sources import StreamResampler
from vcd.vad import Segmenter, SpeechEnd, SpeechStart

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def speech(tmp_path: Path, text: str) -> np.ndarray:
    path = tmp_path / (text.replace(" ", "_") + ".wav")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return read_audio(path)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE_HZ), dtype=np.float32)


def run(segmenter: Segmenter, audio: np.ndarray, block: int = 480) -> list[SpeechStart | SpeechEnd]:
    events = []
    for i in range(0, len(audio), block):
        events += segmenter.process(audio[i : i + block])
    return events + segmenter.flush()


def test_silence_and_quiet_noise_produce_nothing() -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(5 * SAMPLE_RATE_HZ) * 0.001).astype(np.float32)
    assert run(Segmenter(VadConfig()), silence(5)) == []
    assert run(Segmenter(VadConfig()), noise) == []


@needs_espeak
def test_one_command_is_one_segment(tmp_path: Path) -> None:
    words = speech(tmp_path, "turn on the kitchen light")
    events = run(Segmenter(VadConfig()), np.concatenate([silence(1), words, silence(1.5)]))
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    end = events[1]
    assert end.kept and not end.cut
    # the words, plus at most the pre-roll and window before and pre-roll after
    assert len(words) / SAMPLE_RATE_HZ - 0.3 < end.audio_s < len(words) / SAMPLE_RATE_HZ + 0.9
    assert events[0].timestamp <= end.timestamp


@needs_espeak
def test_two_commands_with_a_pause_are_two_segments(tmp_path: Path) -> None:
    a, b = speech(tmp_path, "turn on the kitchen light"), speech(tmp_path, "what is the temperature")
    audio = np.concatenate([silence(0.5), a, silence(1.5), b, silence(1.5)])
    events = run(Segmenter(VadConfig()), audio, block=731)  # blocks unrelated to the frame length
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(ends) == 2 and all(e.kept for e in ends)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd, SpeechStart, SpeechEnd]


@needs_espeak
def test_end_of_stream_closes_an_open_segment(tmp_path: Path) -> None:
    words = speech(tmp_path, "turn off the porch light")
    segmenter = Segmenter(VadConfig())
    events = segmenter.process(np.concatenate([silence(0.5), words]))
    assert [type(e) for e in events] == [SpeechStart]
    assert segmenter.in_speech
    events = segmenter.flush()
    assert len(events) == 1 and isinstance(events[0], SpeechEnd) and events[0].kept
    assert not segmenter.in_speech


@needs_espeak
def test_long_speech_is_cut_at_max_speech_ms(tmp_path: Path) -> None:
    words = speech(tmp_path, "turn on the kitchen light and then the living room lamp and the bedroom light too")
    config = VadConfig(max_speech_ms=1500, min_speech_ms=100)
    events = run(Segmenter(config), np.concatenate([silence(0.5), words, silence(1)]))
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends[0].cut
    assert ends[0].audio_s <= 1.5 + 0.01


def test_a_click_is_dropped_as_too_short() -> None:
    t = np.arange(int(0.15 * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    click = (0.5 * np.sin(2 * np.pi * 300 * t) * np.sin(2 * np.pi * 7 * t)).astype(np.float32)
    config = VadConfig(trigger_window_ms=90, min_speech_ms=400)
    events = run(Segmenter(config), np.concatenate([silence(0.5), click, silence(1)]))
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert all(not e.kept for e in ends)


@needs_espeak
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_every_frame_length_works(tmp_path: Path, frame_ms: int) -> None:
    words = speech(tmp_path, "open the garage door")
    config = replace(VadConfig(), frame_ms=frame_ms)
    events = run(Segmenter(config), np.concatenate([silence(0.5), words, silence(1.5)]))
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]


@pytest.mark.parametrize("rate_hz", [16000, 44100, 48000, 22050, 8000])
def test_stream_resampler_matches_converting_the_whole_signal(rate_hz: int) -> None:
    t = np.arange(int(1.3 * rate_hz)) / rate_hz
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1700 * t)).astype(np.float32)
    stereo = np.stack([tone, tone], axis=1)
    whole = to_mono_16k(stereo, rate_hz)
    resampler = StreamResampler(rate_hz)
    pieces = [resampler.process(stereo[i : i + 777]) for i in range(0, len(stereo), 777)]
    streamed = np.concatenate(pieces + [resampler.flush()])
    assert abs(len(streamed) - len(whole)) <= 1
    n = min(len(streamed), len(whole))
    # equal away from the very end (where the whole-signal conversion sees zero padding too)
    assert np.max(np.abs(streamed[: n - 64] - whole[: n - 64])) < 1e-3


@needs_espeak
def test_steady_noise_cut_at_max_speech_ms_is_gated_and_a_command_is_not(tmp_path: Path) -> None:
    from vcd.daemon import noise_gate

    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(20 * SAMPLE_RATE_HZ) * 0.1).astype(np.float32)  # loud enough for webrtcvad
    ends = [e for e in run(Segmenter(VadConfig()), hiss) if isinstance(e, SpeechEnd) and e.kept]
    cut = [e for e in ends if e.cut]
    assert len(cut) == 2 and all(e.voiced_share > 0.98 for e in cut)
    assert all(noise_gate(e) is not None for e in cut)
    assert noise_gate(cut[0]) == (
        "8.0 s of unbroken sound (100% voiced) cut at vad.max_speech_ms: steady noise, not a command"
    )
    words = speech(tmp_path, "turn on the kitchen light")
    (end,) = [e for e in run(Segmenter(VadConfig()), np.concatenate([silence(1), words, silence(1.5)]))
              if isinstance(e, SpeechEnd)]
    assert 0.3 < end.voiced_share < 1.0 and end.frames == round(end.audio_s * 1000 / 30)
    assert noise_gate(end) is None
