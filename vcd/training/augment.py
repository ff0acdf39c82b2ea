"""Training augmentation: waveform (speed, gain, noise, reverberation, band limiting, clipping) and
feature-level (vocal-tract-length warping, speech edge cuts, SpecAugment)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from vcd.audio_format import SAMPLE_RATE_HZ


def coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown noise of ``n`` samples, unit RMS."""
    white = rng.standard_normal(n).astype(np.float32)
    kind = rng.integers(3)
    if kind:
        spectrum = np.fft.rfft(white)
        freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
        spectrum /= freqs ** (0.5 * kind)
        white = np.fft.irfft(spectrum, n).astype(np.float32)
    return white / (np.sqrt(np.mean(white**2)) + 1e-9)


def synthetic_rir(rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: direct path plus exponentially decaying noise (RT60 0.15–0.9 s)."""
    rt60 = rng.uniform(0.15, 0.9)
    n = int(rt60 * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * rng.uniform(0.1, 0.6)
    tail[: int(0.002 * SAMPLE_RATE_HZ)] = 0.0
    tail[0] = 1.0
    return (tail / np.sqrt(np.sum(tail**2))).astype(np.float32)


def room_rirs(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` impulse responses of simulated shoebox rooms (image method, ``pyroomacoustics``).

    Rooms of 2.5–8 m by 2.5–7 m by 2.3–3.5 m with RT60 0.2–0.9 s, talker and microphone at random
    places at least 0.5 m from the walls.  Empty when pyroomacoustics is not installed (the
    exponential-tail responses of :func:`synthetic_rir` are used alone then).
    """
    try:
        import pyroomacoustics as pra
    except ImportError:
        return []
    rirs = []
    while len(rirs) < count:
        dims = np.array([rng.uniform(2.5, 8.0), rng.uniform(2.5, 7.0), rng.uniform(2.3, 3.5)])
        rt60 = rng.uniform(0.2, 0.9)
        try:
            absorption, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # a room too large for that RT60
            continue
        room = pra.ShoeBox(dims, fs=SAMPLE_RATE_HZ, materials=pra.Material(absorption),
                           max_order=min(max_order, 12))
        room.add_source(rng.uniform(0.5, dims - 0.5))
        room.add_microphone(rng.uniform(0.5, dims - 0.5))
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float64)
        rir = rir[int(np.argmax(np.abs(rir))):]  # start at the direct path: no added delay
        rir = rir[: int(rt60 * SAMPLE_RATE_HZ)]
        rirs.append((rir / (np.sqrt(np.sum(rir**2)) + 1e-12)).astype(np.float32))
    return rirs


SNR_FRAME = 2048  # samples: SNRs of benchmarks and calibration compare the loudest frames of this length


def loud_power(x: np.ndarray) -> float:
    """Mean power of the loudest 2048-sample frame (the reference for speech and for noise)."""
    n = max(1, x.size // SNR_FRAME)
    frames = x[: n * SNR_FRAME].reshape(n, -1) if x.size >= SNR_FRAME else x.reshape(1, -1)
    return float(np.max(np.mean(frames.astype(np.float64) ** 2, axis=1))) + 1e-12


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` plus ``noise`` (same length) scaled so their loudest frames are ``snr_db`` apart."""
    gain = np.sqrt(loud_power(speech) / (loud_power(noise) * 10 ** (snr_db / 10)))
    return np.clip(speech + gain * noise, -1, 1).astype(np.float32)


def babble(talk: list[np.ndarray], n: int, talkers: int, rng: np.random.Generator) -> np.ndarray:
    """``talkers`` voices from ``talk`` (real speech clips) spoken at once, ``n`` samples, unit RMS.

    Each voice is its clip repeated, started at a random point and scaled to unit RMS, so that a
    room where several people talk, or a TV, covers the whole command as it would in life.
    """
    mix = np.zeros(n, np.float32)
    for _ in range(talkers):
        src = talk[rng.integers(len(talk))]
        src = np.tile(src, int(np.ceil(n / src.size)) + 1)
        start = rng.integers(src.size - n + 1)
        voice = src[start : start + n]
        mix += voice / (np.sqrt(np.mean(voice**2)) + 1e-9)
    return mix / (np.sqrt(np.mean(mix**2)) + 1e-9)


class Augmenter:
    """Random chain of distortions.

    ``noises`` are real background recordings to mix in; ``talk`` are real speech clips of training
    speakers, mixed 1–4 at a time as background talk (babble) under the clip's own speech.
    """

    # Shares of the noisy copies: real background noise, background talk, coloured noise.
    NOISE_SHARES = (0.4, 0.3, 0.3)

    def __init__(self, noises: list[np.ndarray], seed: int, talk: list[np.ndarray] | None = None,
                 rooms: int = 0) -> None:
        self.noises = [n for n in noises if n.size > SAMPLE_RATE_HZ // 4]
        self.talk = [t for t in talk or [] if t.size > SAMPLE_RATE_HZ // 2]
        self.rng = np.random.default_rng(seed)
        self.pyrng = random.Random(seed)
        self.rooms = room_rirs(rooms, self.rng)  # simulated rooms: half the reverberated copies use one

    def __call__(self, audio: np.ndarray, narrowband: bool = False) -> np.ndarray:
        """One distorted copy; ``narrowband`` always band-limits it to 8 kHz sampling (telephone band)."""
        rng = self.rng
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        if rng.random() < 0.7:  # speed perturbation (tempo and pitch together, like Kaldi's)
            # rates on a 200 Hz grid keep the resampler's polyphase filter small
            rate = int(round(SAMPLE_RATE_HZ * rng.uniform(0.88, 1.12) / 200.0)) * 200
            x = AF.resample(x, rate, SAMPLE_RATE_HZ)
        y = x.numpy()
        if rng.random() < 0.4:
            rir = self.rooms[rng.integers(len(self.rooms))] if self.rooms and rng.random() < 0.5 else synthetic_rir(rng)
            y = _fft_conv(y, rir)
        if rng.random() < 0.8:
            y = self._add_noise(y, snr_db=rng.uniform(0.0, 30.0))
        if narrowband or rng.random() < 0.4:  # telephone band / cheap microphones
            low = 8000 if narrowband else int(rng.choice([8000, 8000, 11025]))
            y = AF.resample(AF.resample(torch.from_numpy(y), SAMPLE_RATE_HZ, low), low, SAMPLE_RATE_HZ).numpy()
        peak = float(np.max(np.abs(y))) + 1e-9
        gain = 10 ** (rng.uniform(-25, 3) / 20) / peak * 0.5
        y = y * gain
        if rng.random() < 0.1:
            limit = rng.uniform(0.2, 0.5)
            y = np.clip(y * rng.uniform(1.5, 4.0), -limit, limit)
        return np.clip(y, -1.0, 1.0).astype(np.float32)

    def _add_noise(self, y: np.ndarray, snr_db: float) -> np.ndarray:
        rng = self.rng
        background, talk, _ = self.NOISE_SHARES
        kind = rng.random()
        if self.talk and background <= kind < background + talk:
            # talk is speech: under 5 dB it would be the louder voice, and the label only the clip's
            noise = babble(self.talk, y.size, int(rng.integers(1, 5)), rng)
            snr_db = max(snr_db, 5.0)
        elif self.noises and (kind < background or not self.talk and kind < background + talk):
            src = self.noises[rng.integers(len(self.noises))]
            reps = int(np.ceil(y.size / src.size)) + 1
            src = np.tile(src, reps)
            start = rng.integers(src.size - y.size + 1)
            noise = src[start : start + y.size]
            noise = noise / (np.sqrt(np.mean(noise**2)) + 1e-9)
        else:
            noise = coloured_noise(y.size, rng)
        speech_rms = np.sqrt(np.mean(y**2)) + 1e-9
        return y + noise * speech_rms / (10 ** (snr_db / 20))


def _fft_conv(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = y.size + h.size - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(y, size) * np.fft.rfft(h, size), size)[: y.size].astype(np.float32)


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)  # torchaudio's default (HTK) mel scale


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def vtlp_warp(feats: torch.Tensor, rng: random.Random, prob: float = 0.5, max_warp: float = 0.1) -> torch.Tensor:
    """Vocal-tract-length perturbation on one (frames, mels) log-mel tensor.

    With probability ``prob`` a warp factor alpha is drawn from 1 ± ``max_warp`` and the bands are
    warped by it (:func:`warp_mel_bands`); speed perturbation moves the formants too, but changes the
    tempo with them.
    """
    if rng.random() >= prob:
        return feats
    return warp_mel_bands(feats, rng.uniform(1.0 - max_warp, 1.0 + max_warp))


def warp_mel_bands(feats: torch.Tensor, alpha: float, f_min: float = 20.0, f_max: float = 7600.0,
                   boundary_hz: float = 4800.0) -> torch.Tensor:
    """One (frames, mels) log-mel tensor with its frequency axis warped by the factor ``alpha``.

    Each band k is replaced by the spectrum at the warped frequency of its centre, read off the
    neighbouring bands by linear interpolation. The warp is Jaitly & Hinton's (2013) piecewise-linear
    one: f → alpha·f up to ``boundary_hz``·min(alpha, 1)/alpha, then a straight line to ``f_max``, which
    stays put, so the band edges do not fall off the scale. alpha > 1 reads each band from a higher
    frequency and so moves the formants down (a longer vocal tract), alpha < 1 moves them up.
    """
    mels = feats.shape[1]
    edges = torch.linspace(float(_hz_to_mel(torch.tensor(f_min))), float(_hz_to_mel(torch.tensor(f_max))), mels + 2)
    centres_mel = edges[1:-1]
    centres_hz = _mel_to_hz(centres_mel)
    knee = boundary_hz * min(alpha, 1.0) / alpha
    warped = torch.where(centres_hz <= knee, alpha * centres_hz,
                         alpha * knee + (f_max - alpha * knee) * (centres_hz - knee) / (f_max - knee))
    position = (_hz_to_mel(warped) - centres_mel[0]) / (centres_mel[1] - centres_mel[0])
    position = position.clamp(0.0, mels - 1.0)
    low = position.floor().long().clamp(max=mels - 2)
    frac = (position - low.float()).to(feats.dtype)
    return feats[:, low] * (1.0 - frac) + feats[:, low + 1] * frac


@dataclass(frozen=True)
class EdgeCuts:
    """How :func:`cut_speech_edges` cuts: at each end with probability ``prob``, 2..``max_cut`` frames
    (10 ms each), never more than a third of the speech, in clips with at least ``min_speech`` frames
    of it.  The default cuts 20-80 ms in 20 % of clips with 0.48 s of speech or more;
    ``vcd train --edge-cuts 0.25,150,200`` also cuts isolated words, as deep as a lost consonant."""

    prob: float = 0.2
    max_cut: int = 8
    min_speech: int = 48

    @classmethod
    def parse(cls, text: str) -> "EdgeCuts":
        """``PROB,MAX_MS[,MIN_SPEECH_MS]`` as ``vcd train --edge-cuts`` takes it; ValueError if malformed."""
        try:
            parts = [float(v) for v in text.split(",")]
        except ValueError:
            parts = []
        if not 2 <= len(parts) <= 3 or not 0.0 <= parts[0] <= 1.0 or parts[1] < 20 or min(parts) < 0:
            raise ValueError(f"{text!r}: want PROB,MAX_MS[,MIN_SPEECH_MS] with 0 <= PROB <= 1 and MAX_MS >= 20")
        max_cut = int(round(parts[1] / 10))
        min_speech = int(round(parts[2] / 10)) if len(parts) == 3 else 6 * max_cut
        return cls(parts[0], max_cut, max(min_speech, 6))  # over 6 frames: a third of it is 2 or more


def cut_speech_edges(feats: torch.Tensor, rng: random.Random, cuts: EdgeCuts = EdgeCuts()) -> torch.Tensor:
    """Cut some of the start and/or the end of the speech out of one (frames, mels) tensor (see :class:`EdgeCuts`).

    The silence around the speech stays, so the speech starts or stops abruptly, as in clips trimmed
    tightly at the recording (FSDD) or speech whose onset the VAD missed; the labels stay the same.
    Speech is the frames whose mean log-mel energy is a quarter of the way from the clip's quiet (10th
    percentile) to its loud (95th percentile) frames or more; a clip without a clear difference is left alone.
    """
    cut_start, cut_end = rng.random() < cuts.prob, rng.random() < cuts.prob
    if not (cut_start or cut_end) or feats.shape[0] <= cuts.min_speech:
        return feats
    energy = feats.float().mean(dim=1)
    quiet, loud = torch.quantile(energy, 0.1).item(), torch.quantile(energy, 0.95).item()
    if loud - quiet < 2.0:  # under about 9 dB: no clear speech to find
        return feats
    speech = torch.nonzero(energy > quiet + 0.25 * (loud - quiet)).flatten()
    first, last = int(speech[0]), int(speech[-1]) + 1
    if last - first <= cuts.min_speech:
        return feats
    deepest = min(cuts.max_cut, (last - first) // 3)
    keep = torch.ones(feats.shape[0], dtype=torch.bool)
    if cut_start:
        keep[first : first + rng.randint(2, deepest)] = False
    if cut_end:
        keep[last - rng.randint(2, deepest) : last] = False
    return feats[keep]


def spec_augment(feats: torch.Tensor, rng: random.Random, freq_masks: int = 2, max_freq: int = 10,
                 time_masks: int = 2, max_time_frac: float = 0.08) -> torch.Tensor:
    """SpecAugment on one (frames, mels) tensor: masks are filled with zero (the utterance mean)."""
    feats = feats.clone()
    frames, mels = feats.shape
    for _ in range(freq_masks):
        w = rng.randint(0, max_freq)
        f0 = rng.randint(0, mels - w)
        feats[:, f0 : f0 + w] = 0.0
    for _ in range(time_masks):
        w = rng.randint(0, max(1, int(frames * max_time_frac)))
        t0 = rng.randint(0, max(0, frames - w))
        feats[t0 : t0 + w, :] = 0.0
    return feats
