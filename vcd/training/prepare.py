"""Training data preparation: synthesise speech, augment every clip and cache its features and labels."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import random
from pathlib import Path

import numpy as np
import soundfile
import torch
from tqdm import tqdm

from vcd.audio import read_audio
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.features import log_mel
from vcd.grammar import load_intents, number_words, sample_sentence
from vcd.phonetics import LABEL_ID, Lexicon
from vcd.training.accents import Accent, accented_phonemes
from vcd.training.augment import Augmenter
from vcd.training.corpora import (CORPUS_DICTIONARIES, TRAIN_CORPORA, corpus_lexicon, is_held_out_speaker,
                                  label_pronunciations, noise_files, phones_of, speaker_split)
from vcd.training.synth import Voice, available_voices, speak
from vcd.training.wordcuts import cut_words
from vcd.transcripts import Utterance, read_transcripts, words_of

_LOGGER = logging.getLogger(__name__)

# In the work folder: the pronunciations the labels use that the recogniser's dictionary lacks (word → phones)
PRONUNCIATIONS = "pronunciations.json"
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MAX_SECONDS = 9.0
# Real clips with a spoken digit get this many extra copies, each band-limited to 8 kHz sampling: the
# real training data hold few digits, and telephone-band digit strings are what FSDD-like input is.
NARROWBAND_DIGIT_COPIES = 3
# Synthetic clips with a digit get this many (each synthetic clip already has two augmented copies).
SYNTH_NARROWBAND_DIGIT_COPIES = 1
# Isolated digit words cut from real training clips (clean + 1 augmented + 2 narrow-band copies).
WORD_CUT_NARROWBAND_COPIES = 2
DIGIT_SET = frozenset(DIGITS) | {"oh"}
# Per corpus: copies of each clip (the first clean) and extra narrow-band copies of clips with a digit.
_COPIES = {"synth": 2, "synth-accented": 2, "digit-words": 2}
_NARROWBAND_COPIES = {"synth": SYNTH_NARROWBAND_DIGIT_COPIES, "synth-accented": SYNTH_NARROWBAND_DIGIT_COPIES,
                      "digit-words": WORD_CUT_NARROWBAND_COPIES}
# Made here from training clips or voices: their "speakers" are never validation speakers.
_NEVER_VALIDATION = frozenset({"synth", "synth-accented", "digit-words"})


def synth_texts(n: int, vocabulary: list[str], rng: random.Random) -> list[str]:
    """Phonetically varied sentences: commands, digit strings, numbers, random words."""
    intents = load_intents()
    texts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            texts.append(sample_sentence(intents, rng)[1])
        elif r < 0.50:
            texts.append(" ".join(rng.choice(DIGITS) for _ in range(rng.randint(2, 6))))
        elif r < 0.62:
            texts.append(rng.choice(DIGITS))
        elif r < 0.72:
            texts.append(number_words(rng.choice([rng.randint(0, 100), rng.randint(100, 999)])))
        else:
            texts.append(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 6))))
    return texts


def _synth_one(job: tuple[int, Voice, str, str, str]) -> tuple[int, str, str, str] | None:
    index, voice, text, spoken, out_dir = job
    audio = speak(voice, spoken)
    if audio is None:
        return None
    name = f"{index:06d}.flac"
    soundfile.write(str(Path(out_dir) / name), audio, SAMPLE_RATE_HZ)
    return index, name, text, voice.label


def _write_clips(out_dir: Path, jobs: list[tuple[int, Voice, str, str, str]], workers: int) -> None:
    """Speak every job (index, voice, transcript, what the engine is given, folder); write the index last."""
    rows = []
    with mp.Pool(workers) as pool:
        for result in tqdm(pool.imap_unordered(_synth_one, jobs, chunksize=8), total=len(jobs),
                           desc=f"synthesising {out_dir.name}"):
            if result:
                rows.append(result)
    rows.sort()
    index_file = out_dir / "transcripts.jsonl"
    with open(index_file.with_suffix(".tmp"), "w", encoding="utf-8") as f:
        for _, name, text, voice in rows:
            f.write(json.dumps({"file": name, "text": text, "speaker": voice}) + "\n")
    index_file.with_suffix(".tmp").rename(index_file)


def synthesise(out_dir: Path, n: int, held_out: bool, vocabulary: list[str], seed: int, workers: int,
               extra_voices: tuple[str, ...] = ()) -> None:
    """Write ``n`` synthetic clips and their ``transcripts.jsonl`` to ``out_dir`` (skipped if present).

    ``extra_voices`` names opt-in voice sets (see :data:`vcd.training.synth.EXTRA_VOICE_SETS`).
    """
    index_file = out_dir / "transcripts.jsonl"
    if index_file.exists():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    voices = available_voices(held_out, rng, extra_voices)
    if not voices:
        _LOGGER.warning("no TTS engine installed: no synthetic speech")
    texts = (sample_sentence(load_intents(), rng)[1] for _ in range(n)) if held_out else iter(synth_texts(n, vocabulary, rng))
    jobs = [(i, voices[i % len(voices)], text, text, str(out_dir)) for i, text in enumerate(texts)] if voices else []
    _write_clips(out_dir, jobs, workers)


# Accented speakers per espeak-ng training voice; each speaks a share of the accented clips.
ACCENTS_PER_VOICE = 3


def synthesise_accented(out_dir: Path, n: int, vocabulary: list[str], lexicon: Lexicon, seed: int,
                        workers: int) -> None:
    """Write ``n`` foreign-accented clips (:mod:`vcd.training.accents`) to ``out_dir`` (skipped if present).

    The espeak-ng training voices speak phoneme strings with each speaker's accent rules applied; the
    transcript is the canonical sentence.  Speaker labels are ``espeak-ng:<voice>+accent<k>``.
    """
    if (out_dir / "transcripts.jsonl").exists() or n <= 0:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    voices = [v for v in available_voices(False, rng) if v.engine == "espeak-ng"]
    if not voices:
        _LOGGER.warning("espeak-ng is not installed: no accented synthetic speech")
        return
    speakers = [(Voice(v.engine, v.name, rng.randint(110, 170), v.pitch, f"accent{k}"), Accent.draw(rng))
                for v in voices for k in range(ACCENTS_PER_VOICE)]
    jobs = []
    for i, text in enumerate(synth_texts(n, vocabulary, rng)):
        voice, accent = speakers[i % len(speakers)]
        spoken = accented_phonemes(text, lexicon, accent, rng)
        if spoken:
            jobs.append((i, voice, text, spoken, str(out_dir)))
    _write_clips(out_dir, jobs, workers)


_WORKER: dict = {}
# Real training clips mixed in as background talk (babble); a few hundred give hundreds of voices.
TALK_CLIPS = 300
TALK_CORPORA = ("commonvoice", "speechocean762", "an4-train")


def talk_files(corpora: dict[str, list[Utterance]], seed: int) -> list[str]:
    """A fixed random draw of training speakers' clips (never validation speakers) to babble with."""
    pool = sorted(str(u.path) for name in TALK_CORPORA for u in corpora.get(name, [])
                  if u.text and not is_held_out_speaker(name, u.speaker))
    return random.Random(seed).sample(pool, min(TALK_CLIPS, len(pool)))


def read_clips(paths: list[str] | list[Path]) -> list[np.ndarray]:
    """The audio of each file in ``paths`` that can be read (16 kHz mono float32); broken ones are left out."""
    clips = []
    for path in paths:
        try:
            clips.append(read_audio(path))
        except Exception:  # noqa: BLE001 - a broken clip just is not used
            pass
    return clips


# Simulated rooms (pyroomacoustics) each feature worker draws its reverberation from.
ROOMS_PER_WORKER = 60


def _init_worker(noise_files: list[str], seed: int, talk: list[str] = (), denoise: float = 0.0) -> None:
    torch.set_num_threads(1)
    _WORKER["augment"] = Augmenter(read_clips(noise_files), seed + mp.current_process()._identity[0],
                                   talk=read_clips(list(talk)), rooms=ROOMS_PER_WORKER)
    _WORKER["rng"] = np.random.default_rng(seed + 7 * mp.current_process()._identity[0])
    _WORKER["denoise"] = denoise
    if denoise > 0:
        from vcd.denoise import RNNoise

        _WORKER["front_end"] = RNNoise()


def _features_one(job: tuple[str, list[int], int, bool, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    path, labels, copies, clean, narrow = job
    try:
        audio = read_audio(path)
    except Exception as exc:  # noqa: BLE001 - a broken clip is skipped, the rest go on
        _LOGGER.warning("skipping %s: %s", path, exc)
        return []
    if audio.size > MAX_SECONDS * SAMPLE_RATE_HZ:
        return []
    rng = _WORKER["rng"]
    out = []
    label_arr = np.asarray(labels, dtype=np.int16)
    for copy in range(copies + narrow):
        pad = lambda: np.zeros(int(rng.uniform(0.05, 0.5) * SAMPLE_RATE_HZ), np.float32)  # noqa: E731
        x = np.concatenate([pad(), audio, pad()])
        if not (clean and copy == 0):
            x = _WORKER["augment"](x, narrowband=copy >= copies)
        else:
            x = x + rng.standard_normal(x.size).astype(np.float32) * 1e-4
        if _WORKER["denoise"] and rng.random() < _WORKER["denoise"]:  # matched to the denoising front end
            x = _WORKER["front_end"](x)
        out.append((log_mel(x).astype(np.float16), label_arr))
    return out


def build_features(name: str, utterances: list[tuple[str, list[int], int]], copies: int, clean: bool,
                   noise_files: list[str], out_file: Path, seed: int, workers: int,
                   talk: list[str] = (), denoise: float = 0.0) -> None:
    """Features of ``copies`` versions (first clean when ``clean``) of every clip → ``out_file``.

    Each utterance is (audio path, label ids, extra narrow-band copies); ``talk`` are speech clips
    the augmenter mixes in as background talk; each copy passes the RNNoise front end with
    probability ``denoise``.
    """
    if out_file.exists() or not utterances:
        return
    jobs = [(path, labels, copies, clean, narrow) for path, labels, narrow in utterances]
    feats, labels = [], []
    with mp.Pool(workers, initializer=_init_worker, initargs=(noise_files, seed, list(talk), denoise)) as pool:
        for items in tqdm(pool.imap(_features_one, jobs, chunksize=16), total=len(jobs), desc=f"features {name}"):
            for feat, label in items:
                feats.append(torch.from_numpy(feat))
                labels.append(torch.from_numpy(label.astype(np.int64)))
    tmp = out_file.with_suffix(".tmp")
    torch.save({"feats": feats, "labels": labels}, str(tmp))
    tmp.rename(out_file)


def prepare(data_dir: Path | None, work: Path, synth_count: int, seed: int, workers: int,
            extra_voices: tuple[str, ...] = (), aligner: Path | None = None, accented: int = 0,
            denoise: float = 0.0, copies: int = 3) -> list[Path]:
    """Run every preparation stage that has not finished yet; return the training shard files.

    ``extra_voices``: opt-in TTS voice sets that speak the synthetic clips besides the free voices.
    ``aligner``: an acoustic model that cuts the real clips' digits out as isolated words
    (:mod:`vcd.training.wordcuts`); None skips that stage.
    ``accented``: foreign-accented synthetic clips to add (:func:`synthesise_accented`); 0 skips them.
    ``copies``: versions of each real clip (the first clean, the others augmented).
    ``denoise``: the share of prepared copies that pass the RNNoise front end (:mod:`vcd.denoise`).

    Validation features hold the validation speakers only (:func:`speaker_split`); test speakers are
    never read.  Background noise: Speech Commands' background clips and the training split of
    ``data_dir/noise`` (:func:`noise_files`).
    """
    work.mkdir(parents=True, exist_ok=True)
    feats_dir = work / "features"
    feats_dir.mkdir(exist_ok=True)
    # each corpus labelled with its own phone dictionary where it brings one, the rest with cmudict
    folder = data_dir or work
    lexicons = {name: corpus_lexicon(folder, name) for name in CORPUS_DICTIONARIES}
    lexicon = Lexicon()
    corpora: dict[str, list[Utterance]] = {}
    if data_dir:
        for name in TRAIN_CORPORA:
            if (data_dir / name / "transcripts.jsonl").exists():
                corpora[name] = read_transcripts(data_dir / name)
    lexicon.prefetch([w for utts in corpora.values() for u in utts for w in words_of(u.text)])
    vocabulary = sorted({w for utts in corpora.values() for u in utts for w in words_of(u.text)
                         if lexicon(w) and w.isalpha()})
    vocabulary = vocabulary or list(DIGITS)
    # the labels' pronunciations the recogniser's dictionary lacks (only a corpus dictionary's can differ from
    # it): the trained model carries them
    carried: dict[str, list[str]] = {}
    for name in [name for name in corpora if name in lexicons]:
        found = label_pronunciations(lexicons[name], [w for u in corpora[name] for w in words_of(u.text)])
        carried.update((word, phones) for word, phones in found.items() if word not in carried)
    (work / PRONUNCIATIONS).write_text(json.dumps(carried, indent=0))
    synthesise(work / "synth-train", synth_count, False, vocabulary, seed, workers, extra_voices)
    synthesise(work / "synth-heldout", max(100, synth_count // 20), True, vocabulary, seed + 1, workers, extra_voices)
    corpora["synth"] = read_transcripts(work / "synth-train")
    synthesise_accented(work / "synth-accented", accented, vocabulary, lexicon, seed + 2, workers)
    if accented > 0 and (work / "synth-accented" / "transcripts.jsonl").exists():
        corpora["synth-accented"] = read_transcripts(work / "synth-accented")
    if aligner is not None and corpora:
        cut_words({k: v for k, v in corpora.items() if not k.startswith("synth")}, lexicons, aligner, work / "digit-words",
                   frozenset(DIGITS))
    if (work / "digit-words" / "transcripts.jsonl").exists():
        corpora["digit-words"] = read_transcripts(work / "digit-words")

    noises = [str(u.path) for u in corpora.get("speechcommands-v2", []) if not u.text]
    noises += [str(p) for p in noise_files(data_dir, "train")] if data_dir else []
    talk = talk_files(corpora, seed)
    shards = []
    valid: list[tuple[str, list[int], int]] = []
    for name, utts in corpora.items():
        train: list[tuple[str, list[int], int]] = []
        for u in utts:
            phones = phones_of(u.text, lexicons.get(name, lexicon)) if u.text else []
            if phones is None or (not phones and name != "speechcommands-v2"):
                continue
            ids = [LABEL_ID[p] for p in phones]
            split = "train" if name in _NEVER_VALIDATION else speaker_split(name, u.speaker)
            if split == "validation":
                valid.append((str(u.path), ids, 0))
            elif split == "test":
                continue
            else:
                has_digit = not DIGIT_SET.isdisjoint(words_of(u.text))
                narrow = _NARROWBAND_COPIES.get(name, NARROWBAND_DIGIT_COPIES)
                train.append((str(u.path), ids, narrow if has_digit else 0))
        out = feats_dir / f"{name}.pt"
        build_features(name, train, _COPIES.get(name, copies), clean=True, noise_files=noises, out_file=out, seed=seed, workers=workers,
                       talk=talk, denoise=denoise)
        shards.append(out)
    build_features("valid", valid, 1, clean=True, noise_files=noises, out_file=feats_dir / "valid.pt", seed=seed,
                   workers=workers, denoise=denoise)
    return shards
