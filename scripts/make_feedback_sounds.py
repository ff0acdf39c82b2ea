"""Write the feedback plugin's sounds (plugins/feedback/sounds/*.wav): short tones made here, no samples.

    .venv/bin/python scripts/make_feedback_sounds.py

Each sound is a few sine partials with a 5 ms attack and an exponential decay, 22 050 Hz
16-bit mono, peak -6 dBFS: ``wake`` one rising note, ``recognized`` two notes up a fourth,
``not_understood`` two notes down a minor third, lower.  Being generated from these
formulas, the files are vcd's own (the project's licence); rerunning writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

RATE_HZ = 22050
PEAK = 10 ** (-6 / 20)
OUT = Path(__file__).resolve().parent.parent / "plugins" / "feedback" / "sounds"


def note(freq_hz: float, seconds: float, glide: float = 1.0, decay_s: float = 0.08) -> np.ndarray:
    """A bell-like note: partials 1, 2, 3 (1, 0.3, 0.1), pitch gliding by ``glide`` over the note."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    freq = freq_hz * glide ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(freq) / RATE_HZ
    wave = np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase)
    envelope = np.minimum(t / 0.005, 1.0) * np.exp(-t / decay_s)
    return wave * envelope


def sequence(*notes: np.ndarray, gap_s: float = 0.0) -> np.ndarray:
    gap = np.zeros(round(gap_s * RATE_HZ))
    parts = [p for n in notes for p in (n, gap)][:-1]
    audio = np.concatenate(parts + [np.zeros(round(0.02 * RATE_HZ))])
    return audio / np.abs(audio).max() * PEAK


SOUNDS = {
    "wake": sequence(note(880.0, 0.18, glide=1.12, decay_s=0.07)),
    "recognized": sequence(note(784.0, 0.11, decay_s=0.05), note(1046.5, 0.2, decay_s=0.08), gap_s=0.01),
    "not_understood": sequence(note(440.0, 0.13, decay_s=0.06), note(370.0, 0.24, decay_s=0.09), gap_s=0.02),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, audio in SOUNDS.items():
        path = OUT / f"{name}.wav"
        soundfile.write(str(path), audio.astype(np.float32), RATE_HZ, subtype="PCM_16")
        print(f"{path}: {len(audio) / RATE_HZ:.2f} s, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
