"""Decode-time probes of the FSDD digit errors: which change to the input would fix them?

    .venv/bin/python benchmarks/fsdd_probes.py --data ../shared/data [--model M] [--speakers george]

Each probe transforms every clip of a speaker (or the model's posteriors) one fixed way and decodes it
against the digit grammar with no rejection, as ``benchmarks/recognizer.py`` does; the table gives the
best-sentence accuracy and the commonest confusions. A probe that lifts a speaker a long way points
at what training lacks: a warp of the frequency axis at vocal-tract length, a tempo change at speaking
rate, an equaliser at the microphone, a flatter posterior at over-confident phones. None of these is
used by the recogniser; they are for reading the errors.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcd.audio import read_audio  # noqa: E402
from vcd.audio_format import SAMPLE_RATE_HZ  # noqa: E402
from vcd.decoder import viterbi  # noqa: E402
from vcd.features import log_mel  # noqa: E402
from vcd.recognizer import DEFAULT_MODEL, Recognizer  # noqa: E402
from vcd.training.augment import warp_mel_bands  # noqa: E402
from vcd.training.corpora import data_folder  # noqa: E402
from vcd.transcripts import read_transcripts  # noqa: E402


def _warp(alpha: float):
    return lambda feats: warp_mel_bands(feats, alpha)


def _tempo(factor: float):
    def stretch(feats: torch.Tensor) -> torch.Tensor:
        frames = max(4, int(round(feats.shape[0] * factor)))
        return torch.nn.functional.interpolate(feats.T.unsqueeze(0), size=frames, mode="linear",
                                               align_corners=True)[0].T.contiguous()
    return stretch


def _temperature(t: float):
    def flatten(lp: np.ndarray) -> np.ndarray:
        lp = lp / t
        return (lp - np.logaddexp.reduce(lp, axis=1, keepdims=True)).astype(np.float32)
    return flatten


# name → (audio transform, feature transform, posterior transform); None leaves that stage alone
PROBES = {
    "none": (None, None, None),
    **{f"warp {a}": (None, _warp(a), None) for a in (0.9, 0.95, 1.05, 1.1, 1.15)},
    **{f"tempo {f}": (None, _tempo(f), None) for f in (0.9, 1.15, 1.3)},
    "high-pass 300 Hz": (lambda x: AF.highpass_biquad(AF.highpass_biquad(x, SAMPLE_RATE_HZ, 300.0),
                                                      SAMPLE_RATE_HZ, 300.0), None, None),
    "EQ 3 kHz +10 dB": (lambda x: AF.equalizer_biquad(x, SAMPLE_RATE_HZ, 3000.0, 10.0, 0.7), None, None),
    "EQ 3 kHz -10 dB": (lambda x: AF.equalizer_biquad(x, SAMPLE_RATE_HZ, 3000.0, -10.0, 0.7), None, None),
    "low-pass 2.5 kHz": (lambda x: AF.lowpass_biquad(AF.lowpass_biquad(x, SAMPLE_RATE_HZ, 2500.0),
                                                     SAMPLE_RATE_HZ, 2500.0), None, None),
    **{f"temperature {t}": (None, None, _temperature(t)) for t in (0.7, 1.5, 2.0)},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=data_folder, required=True, help="the shared speech data folder")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--speakers", default="george", help="comma list of FSDD speakers (default george)")
    ap.add_argument("--probes", default="", help="comma list of probe names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rec = Recognizer.load(REPO / "benchmarks" / "grammars" / "digits.yaml", args.model, 0.0)
    chosen = [p.strip() for p in args.probes.split(",") if p.strip()] or list(PROBES)
    pad = np.zeros(int(0.3 * SAMPLE_RATE_HZ), dtype=np.float32)  # as benchmarks/recognizer.py
    clips = read_transcripts(args.data / "fsdd-dev")
    print(f"{'speaker':<8}  {'probe':<18}  {'accuracy':>8}  commonest confusions (said → heard ×n)")
    for speaker in args.speakers.split(","):
        subset = [c for c in clips if c.speaker == speaker]
        audio = {c.path: torch.from_numpy(read_audio(c.path)) for c in subset}
        for name in chosen:
            on_audio, on_feats, on_posteriors = PROBES[name]
            right, confusions = 0, collections.Counter()
            for clip in subset:
                x = audio[clip.path] if on_audio is None else on_audio(audio[clip.path])
                feats = torch.from_numpy(log_mel(np.concatenate([pad, x.numpy().astype(np.float32), pad])))
                if on_feats is not None:
                    feats = on_feats(feats)
                lp = rec.model.infer(feats.unsqueeze(0))
                heard = " ".join(viterbi(rec.graph, lp if on_posteriors is None else on_posteriors(lp)).words)
                right += heard == clip.text
                if heard != clip.text:
                    confusions[f"{clip.text} → {heard}"] += 1
            common = ", ".join(f"{k} ×{n}" for k, n in confusions.most_common(4))
            print(f"{speaker:<8}  {name:<18}  {100 * right / len(subset):7.1f} %  {common}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
