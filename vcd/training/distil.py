"""Noise distillation: a student learns, from noisy input, what a teacher hears in the same clip without it.

``vcd train --distil``: the teacher is the starting model (``--init``), frozen; the student starts
from the same weights.  Each batch's clips go to the teacher as they are and to the student with
noise mixed in at 0–20 dB SNR; the student's loss is CTC plus the KL divergence from the teacher's
phone posteriors, frame by frame.  The soft targets teach the student to be as sure in noise as
the teacher is without it, which CTC on noisy copies alone (run 15) did not.

The noise is mixed into the cached features, not the audio: a feature is the utterance's log-mel
power less its per-band mean (:func:`vcd.features.log_mel`), so ``exp(feature) * level`` is the
mel power again up to each band's level, taken here as the mean over real training clips; mel
powers of speech and of independent noise add.  The result is mean-normalised again, as
recognition does.  The noise is the real recordings the augmenter uses (``noise/train`` less its
validation fifth, Speech Commands' background clips) and other clips of the batch (babble).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.errors import VcdError
from vcd.features import LOG_FLOOR, mel_power
from vcd.training.corpora import noise_files, speaker_split
from vcd.training.prepare import read_clips
from vcd.transcripts import read_transcripts

# The SNR range of the student's noise (dB, on the loudest fifth of the speech frames).
SNR_DB = (0.0, 20.0)
# Share of clips the student hears with noise mixed in; the rest it hears as the teacher does.
NOISY_SHARE = 0.7
# Of the noisy ones, the share whose noise is other clips of the batch (background talk).
BABBLE_SHARE = 0.3
# Real clips the per-band speech level is taken from.
LEVEL_CLIPS = 200


def speech_level(paths: list[Path], rng: random.Random) -> np.ndarray:
    """Per-band mean log-mel power of clips prepared as training prepares a clean copy (silence around them)."""
    means = []
    for audio in read_clips(rng.sample(paths, min(LEVEL_CLIPS, len(paths)))):
        pad = lambda: np.zeros(int(rng.uniform(0.05, 0.5) * SAMPLE_RATE_HZ), np.float32)  # noqa: E731
        x = np.concatenate([pad(), audio, pad()])
        x = x + np.random.default_rng(rng.randrange(1 << 30)).standard_normal(x.size).astype(np.float32) * 1e-4
        means.append(np.log(mel_power(x) + LOG_FLOOR).mean(axis=0))
    if not means:
        raise ValueError("no transcribed training clips to take the speech level from")
    return np.mean(means, axis=0)


class MelNoise:
    """Mixes noise into (frames, mels) features in the mel power domain (see the module's docstring)."""

    def __init__(self, noises: list[np.ndarray], level: np.ndarray) -> None:
        self.noises = [torch.from_numpy(mel_power(x).astype(np.float32)) for x in noises if x.size > SAMPLE_RATE_HZ // 2]
        if not self.noises:
            raise ValueError("no noise recordings to mix in (noise/noises.jsonl, Speech Commands' background clips)")
        self.level = torch.from_numpy(np.exp(level).astype(np.float32))

    def power(self, feats: torch.Tensor) -> torch.Tensor:
        """The mel power a feature stands for, at the mean speech level."""
        return feats.float().exp() * self.level

    def _crop(self, power: torch.Tensor, frames: int, rng: random.Random) -> torch.Tensor:
        if power.shape[0] < frames:
            power = power.repeat(frames // power.shape[0] + 1, 1)
        start = rng.randrange(power.shape[0] - frames + 1)
        return power[start:start + frames]

    def mix(self, feats: torch.Tensor, rng: random.Random, snr_db: float,
            talk: torch.Tensor | None = None) -> torch.Tensor:
        """``feats`` with a noise recording (or, given ``talk``, that other clip's speech) at ``snr_db``."""
        speech = self.power(feats)
        noise = self._crop(self.power(talk) if talk is not None else rng.choice(self.noises), speech.shape[0], rng)
        frame_power = speech.sum(1)
        loud = frame_power.topk(max(1, frame_power.numel() // 5)).values.mean()
        gain = loud / (noise.sum(1).mean() * 10.0 ** (snr_db / 10.0) + 1e-12)
        mixed = (speech + gain * noise + LOG_FLOOR).log()
        return mixed - mixed.mean(0, keepdim=True)

    def student_input(self, xs: list[torch.Tensor], rng: random.Random) -> list[torch.Tensor]:
        """The batch ``xs`` as the student hears it: ``NOISY_SHARE`` of the clips with noise or babble."""
        out = []
        for i, x in enumerate(xs):
            if rng.random() >= NOISY_SHARE:
                out.append(x)
                continue
            talk = None
            if len(xs) > 1 and rng.random() < BABBLE_SHARE:
                talk = xs[rng.choice([j for j in range(len(xs)) if j != i])]
            out.append(self.mix(x, rng, rng.uniform(*SNR_DB), talk))
        return out

    def fixed_draw(self, feats: list[torch.Tensor], snr_db: float, seed: int) -> list[torch.Tensor]:
        """Every clip of ``feats`` with a noise recording at ``snr_db``, the same draw each call (a noisy validation set)."""
        rng = random.Random(seed)
        return [self.mix(f.float(), rng, snr_db).half() for f in feats]


# Corpora whose training speakers' clips give the speech level.
LEVEL_CORPORA = ("commonvoice", "speechocean762", "an4-train", "vctk-sample")


def noises_from(data_dir: Path, seed: int) -> tuple[MelNoise, MelNoise | None]:
    """The training noise (Speech Commands' background clips and ``noise/train`` less its validation
    fifth) and the validation fifth (None if the data has none), at the training speakers' level."""
    data_dir = Path(data_dir)
    commands = data_dir / "speechcommands-v2"
    background = [u.path for u in read_transcripts(commands) if not u.text] if commands.is_dir() else []
    level_clips = [u.path for name in LEVEL_CORPORA if (data_dir / name / "transcripts.jsonl").exists()
                   for u in read_transcripts(data_dir / name) if u.text and speaker_split(name, u.speaker) == "train"]
    try:
        level = speech_level(level_clips, random.Random(seed))
        train = MelNoise(read_clips(background + noise_files(data_dir, "train")), level)
    except ValueError as exc:
        raise VcdError(f"{data_dir}: --distil: {exc}") from None
    validation = read_clips(noise_files(data_dir, "validation"))
    return train, MelNoise(validation, level) if validation else None


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, frames: torch.Tensor,
                      clips: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the real (unpadded) frames of KL(teacher ‖ student); both are (batch, frames, labels)
    log-probabilities.  ``clips`` (booleans, one per clip) leaves the other clips out: a guard on some
    corpora only (``vcd train --guard``)."""
    kl = (teacher.exp() * (teacher - student)).sum(-1)
    mask = torch.arange(kl.shape[1], device=kl.device)[None, :] < frames.to(kl.device)[:, None]
    if clips is not None:
        mask = mask & clips.to(kl.device)[:, None]
    return (kl * mask).sum() / mask.sum().clamp(min=1)
