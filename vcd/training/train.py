"""The training loop: CTC over CMU phones, checkpointed and resumable, with speaker-held-out validation."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import astuple
from pathlib import Path

import torch
from tqdm import tqdm

from vcd.errors import ModelError, UsageError
from vcd.model import AcousticModel, load_model, save_model
from vcd.phonetics import LABELS
from vcd.training.augment import EdgeCuts, cut_speech_edges, spec_augment, vtlp_warp
from vcd.training.distil import MelNoise, distillation_loss
from vcd.training.widen import widen
from vcd.transcripts import word_errors

_LOGGER = logging.getLogger(__name__)
# Snapshots kept in work/snapshots (at least --average of them): enough to try longer averages afterwards.
SNAPSHOTS_KEPT = 8
# SNR of the noisy validation copy that noise distillation judges checkpoints by.
VALID_SNR_DB = 6.0


def load_shards(files: list[Path]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    feats, labels = [], []
    for file in files:
        blob = torch.load(str(file), weights_only=True)
        feats += blob["feats"]
        labels += blob["labels"]
    return feats, labels


def epoch_visits(corpora: list[str], weights: dict[str, float], rng: random.Random) -> list[int]:
    """The clips one epoch visits: clip ``i`` of corpus ``c`` ``weights[c]`` times (1 for a corpus not named).

    A fractional weight visits each clip its whole part, and once more with the fractional part's
    probability: ``{"vctk-sample": 2.5}`` sees every VCTK clip two or three times an epoch.
    """
    visits = []
    for i, corpus in enumerate(corpora):
        weight = weights.get(corpus, 1.0)
        visits += [i] * (int(weight) + (rng.random() < weight - int(weight)))
    return visits


def make_batches(lengths: list[int], max_frames: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches of at most ``max_frames`` padded frames, in random order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i] + rng.random() * 30)
    batches, batch, longest = [], [], 0
    for i in order:
        longest_if = max(longest, lengths[i])
        if batch and longest_if * (len(batch) + 1) > max_frames:
            batches.append(batch)
            batch, longest_if = [], lengths[i]
        batch.append(i)
        longest = longest_if
    if batch:
        batches.append(batch)
    rng.shuffle(batches)
    return batches


def collate(feats: list[torch.Tensor], labels: list[torch.Tensor], idx: list[int], rng: random.Random | None,
            edge_cuts: EdgeCuts = EdgeCuts()):
    xs = [feats[i].float() for i in idx]
    if rng is not None:
        xs = [spec_augment(vtlp_warp(cut_speech_edges(x, rng, edge_cuts), rng), rng) for x in xs]
    return _padded(xs, [labels[i] for i in idx])


def collate_distil(feats: list[torch.Tensor], labels: list[torch.Tensor], idx: list[int], rng: random.Random,
                   edge_cuts: EdgeCuts, noise: MelNoise | None):
    """:func:`collate` for a teacher: also the teacher's input, the same clips before noise (``noise``:
    noise distillation; None: the student hears them as the teacher does) and SpecAugment."""
    xs = [vtlp_warp(cut_speech_edges(feats[i].float(), rng, edge_cuts), rng) for i in idx]
    teacher_x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True)
    xs = [spec_augment(x, rng) for x in (noise.student_input(xs, rng) if noise is not None else xs)]
    return (*_padded(xs, [labels[i] for i in idx]), teacher_x)


def _padded(xs: list[torch.Tensor], ys: list[torch.Tensor]):
    lengths = torch.tensor([x.shape[0] for x in xs])
    x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True)
    y_len = torch.tensor([y.numel() for y in ys])
    y = torch.cat(ys) if ys else torch.zeros(0, dtype=torch.long)
    return x, lengths, y, y_len


def greedy_phone_error_rate(model: AcousticModel, feats, labels, max_frames: int = 12000) -> float:
    """Phone error rate of greedy CTC decoding on held-out speakers (edit distance / reference length)."""
    model.eval()
    errors = total = 0
    rng = random.Random(0)
    with torch.inference_mode():
        for idx in make_batches([f.shape[0] for f in feats], max_frames, rng):
            x, lengths, _, _ = collate(feats, labels, idx, None)
            out = model(x.to(next(model.parameters()).device)).argmax(-1).cpu()
            out_len = AcousticModel.output_frames(lengths)
            for row, n, i in zip(out, out_len, idx):
                seq = row[:n].tolist()
                hyp = [p for j, p in enumerate(seq) if p != 0 and (j == 0 or seq[j - 1] != p)]
                ref = labels[i].tolist()
                errors += word_errors(ref, hyp)
                total += max(1, len(ref))
    model.train()
    return errors / max(1, total)


def resolve_device(name: str) -> str:
    """``vcd train --device``: ``"auto"`` is ``"cuda"`` where torch sees a GPU, else ``"cpu"``; ``"cuda"``
    without one is a :class:`vcd.errors.UsageError`."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA GPU here (torch " + torch.__version__ + ")")
    return name


def _on_cpu(value):
    """A (nested) state dict with every tensor copied to the CPU: a checkpoint resumes on any device."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def mean_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of state dicts of one shape, computed in float64, in the first one's dtypes."""
    return {key: torch.stack([state[key].double() for state in states]).mean(0).to(value.dtype)
            for key, value in states[0].items()}


def average_weights(files: list[Path]) -> dict[str, torch.Tensor]:
    """The mean of the weights in ``files`` (saved models or training checkpoints of one shape)."""
    states = []
    for file in files:
        blob = torch.load(str(file), map_location="cpu", weights_only=False)
        states.append(blob["model"] if "model" in blob else blob["state_dict"])
    return mean_state(states)


def blend_with(model_file: Path, other: Path) -> None:
    """Rewrite ``model_file`` with the mean of its weights and ``other``'s (a model of the same shape).

    ``vcd train --blend-init``: a warm restart averaged with its starting weights keeps part of what
    the restart gained (such as robustness to background talk) and part of what it lost (such as
    clean FSDD digits).
    """
    model, labels, extra = load_model(model_file)
    start, _, _ = load_model(other)
    if start.hparams != model.hparams:
        raise ModelError(f"{other}: cannot blend a model of shape {start.hparams} with {model_file}'s {model.hparams}")
    model.load_state_dict(mean_state([model.state_dict(), start.state_dict()]))  # both already loaded
    save_model(model, model_file, labels, {**extra, "blended_with": str(other)})


def trained_shape(init: Path, hidden: int | None, work: Path) -> tuple[dict, dict]:
    """``init``'s hyper-parameters and those of the model a run in ``work`` will end with: a checkpoint
    there decides (a resumed run keeps its width), else ``hidden`` widens ``init``.  ``--blend-init``
    compares the two before training, so a mismatch is found at start-up, not after an hour."""
    start, _, _ = load_model(init)
    shape = dict(start.hparams)
    ckpt_file = work / "checkpoint.pt"
    if ckpt_file.exists():
        shape = dict(torch.load(str(ckpt_file), map_location="cpu", weights_only=False).get("hparams", shape))
    elif hidden is not None:
        shape["hidden"] = hidden
    return dict(start.hparams), shape


def keep_average_if_better(model: AcousticModel, snapshots: list[Path], v_feats, v_labels, best_per: float,
                           best_file: Path, extra: dict, v_noisy=()) -> float:
    """Average ``snapshots`` (weights of ``model``'s shape); if that validates below ``best_per``, write it
    to ``best_file``.  Returns the averaged weights' validation PER (with ``v_noisy``, the mean of the
    clean and noisy PERs, as :func:`train` judges them); ``model`` itself is not touched."""
    averaged = AcousticModel(**model.hparams).to(next(model.parameters()).device)
    averaged.load_state_dict(average_weights(snapshots))
    per = greedy_phone_error_rate(averaged, v_feats, v_labels)
    if v_noisy:
        per = (per + greedy_phone_error_rate(averaged, v_noisy, v_labels)) / 2
    tqdm.write(f"average of {len(snapshots)} snapshots: validation phone error rate {per:.3f} (best {best_per:.3f})")
    if per < best_per:
        save_model(averaged, best_file, list(LABELS), {**extra, "valid_per": per,
                                                       "averaged": [p.stem for p in snapshots]})
    return per


def train(shards: list[Path], valid_file: Path, work: Path, steps: int, seed: int, threads: int,
          max_frames: int = 9000, lr: float = 2e-3, checkpoint_every_s: float = 300.0,
          init: Path | None = None, average: int = 4, hidden: int | None = None,
          edge_cuts: EdgeCuts = EdgeCuts(), distil: MelNoise | None = None, distil_weight: float = 1.0,
          valid_noise: MelNoise | None = None, corpus_weights: dict[str, float] | None = None,
          guard: float = 0.0, device: str = "cpu") -> Path:
    """Train (or resume) until ``steps``; returns the path of the best model by validation PER.

    ``init`` starts from the weights of a saved model (fine-tuning, or a warm restart of the learning-rate
    schedule) instead of random ones; a checkpoint in ``work`` still takes precedence, so a run resumes.
    ``hidden`` sets the GRU width (default: ``init``'s, else the model's default); a width above ``init``'s
    widens those weights with :func:`vcd.training.widen.widen`, which keeps what they compute.
    ``edge_cuts`` sets how deep and how often the speech's ends are cut (a resumed run should pass the same).
    ``distil`` (needs ``init``): noise distillation (:mod:`vcd.training.distil`), the loss CTC plus
    ``distil_weight`` × KL from the frozen ``init`` model; ``valid_noise`` (validation noise
    recordings) then adds a noisy copy of the validation clips (6 dB), and checkpoints are judged by
    the mean of the clean and noisy phone error rates.
    Every checkpoint also leaves the weights in ``work/snapshots`` (the last ``max(average,
    SNAPSHOTS_KEPT)`` are kept, older ones deleted); at the end the mean of the last
    ``average`` snapshots (the low-learning-rate tail) replaces the best model if it validates better.
    ``corpus_weights`` (shard name → visits per epoch, see :func:`epoch_visits`) weights corpora up
    or down.  ``guard`` (needs ``init``, not with ``distil``): the loss adds ``guard`` × KL from the
    frozen ``init`` model on the same input, on the clips of corpora not weighted above 1, so the
    rest keeps what the starting model hears while the weighted-up corpora learn from CTC alone.
    ``device`` (a torch device: ``"cpu"``, ``"cuda"``) runs the model and its loss there; the clips are
    augmented and batched on the CPU either way, and every saved file holds CPU weights, so a run can be
    resumed on either (:func:`resolve_device` turns ``"auto"`` into one).
    """
    device = torch.device(device)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # tiny GRU activations otherwise slow the CPU many times over
    torch.manual_seed(seed)
    feats, labels, corpora = [], [], []  # corpora: each clip's shard name, what corpus_weights name
    for shard in shards:
        shard_feats, shard_labels = load_shards([shard])
        feats += shard_feats
        labels += shard_labels
        corpora += [shard.stem] * len(shard_feats)
    corpus_weights = corpus_weights or {}
    unknown = sorted(set(corpus_weights) - set(corpora))
    if unknown:
        raise ModelError(f"corpus weights name corpora with no prepared clips: {', '.join(unknown)} "
                         f"(prepared: {', '.join(sorted(set(corpora)))})")
    guarded = torch.tensor([corpus_weights.get(c, 1.0) <= 1.0 for c in corpora])
    v_feats, v_labels = load_shards([valid_file]) if valid_file.exists() else ([], [])
    _LOGGER.info("training on %d clips (%.1f h of features), validating on %d held-out-speaker clips",
                 len(feats), sum(f.shape[0] for f in feats) / 360000, len(v_feats))
    if init is not None:
        start, start_labels, start_extra = load_model(init)
        if start_labels != list(LABELS):
            raise ModelError(f"{init}: its labels differ from the model being trained")
        if hidden is not None and hidden != start.hparams["hidden"]:
            _LOGGER.info("widening %s from %d to %d GRU units", init, start.hparams["hidden"], hidden)
            try:
                start = widen(start, hidden, seed)
            except ModelError as exc:
                raise ModelError(f"{init}: {exc}") from None
        model = start
        _LOGGER.info("starting from the weights of %s (step %s)", init, start_extra.get("step", "?"))
    else:
        model = AcousticModel(n_labels=len(LABELS), **({"hidden": hidden} if hidden else {}))
    teacher = None
    if distil is not None and guard:
        raise ModelError("a guard and noise distillation both weigh the teacher: choose one")
    if distil is not None or guard:
        if init is None:
            raise ModelError("noise distillation and a guard need a starting model (--init) to be the teacher")
        teacher, _, _ = load_model(init)
        teacher.requires_grad_(False)
        teacher.to(device)
    v_noisy = valid_noise.fixed_draw(v_feats, VALID_SNR_DB, seed) if valid_noise is not None and v_feats else []
    ckpt_file, best_file, snap_dir = work / "checkpoint.pt", work / "best.pt", work / "snapshots"
    resume = torch.load(str(ckpt_file), map_location="cpu", weights_only=False) if ckpt_file.exists() else None
    if resume is not None and resume.get("hparams", model.hparams) != model.hparams:
        model = AcousticModel(**resume["hparams"])  # the run being resumed decides the shape (--hidden)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    warmup = max(1, min(200 if init is not None else 500, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.03, 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    # stored with every saved model
    run_info = {"seed": seed, "init": str(init) if init else None, "edge_cuts": list(astuple(edge_cuts)),
                **({"distil_weight": distil_weight} if distil is not None else {}),
                **({"corpus_weights": corpus_weights} if corpus_weights else {}), **({"guard": guard} if guard else {})}
    snap_dir.mkdir(exist_ok=True)
    keep_snapshots = max(average, SNAPSHOTS_KEPT)
    step, epoch, best_per, done_in_epoch = 0, 0, float("inf"), 0
    rng = random.Random(seed)
    if resume is not None:
        try:
            model.load_state_dict(resume["model"])
        except RuntimeError:  # a checkpoint from before checkpoints recorded their shape
            raise ModelError(f"{ckpt_file}: its weights differ in shape from the model being trained; "
                             "resume with the --hidden it was started with") from None
        opt.load_state_dict(resume["opt"])  # moves its state to the parameters' device
        sched.load_state_dict(resume["sched"])
        step, epoch, best_per = resume["step"], resume["epoch"], resume["best_per"]
        done_in_epoch = resume.get("done_in_epoch", 0)
        rng.setstate(resume["rng"])
        torch.set_rng_state(resume["torch_rng"])
        _LOGGER.info("resumed from %s at step %d (best validation PER %.3f)", ckpt_file, step, best_per)

    def checkpoint() -> None:
        nonlocal best_per
        per = greedy_phone_error_rate(model, v_feats, v_labels) if v_feats else float("nan")
        if v_noisy:
            noisy = greedy_phone_error_rate(model, v_noisy, v_labels)
            tqdm.write(f"step {step}: validation phone error rate clean {per:.3f}, {VALID_SNR_DB:g} dB {noisy:.3f}")
            per = (per + noisy) / 2
        extra = {"step": step, "valid_per": per, **run_info}
        if not v_feats or per < best_per:
            best_per = per if v_feats else best_per
            save_model(model, best_file, list(LABELS), extra)
        save_model(model, snap_dir / f"step-{step:06d}.pt", list(LABELS), extra, export=False)  # weights only
        for old in sorted(snap_dir.glob("step-*.pt"))[:-keep_snapshots]:
            old.unlink()
        tmp = ckpt_file.with_suffix(".tmp")
        torch.save({"model": _on_cpu(model.state_dict()), "hparams": model.hparams, "opt": _on_cpu(opt.state_dict()), "sched": sched.state_dict(), "step": step,
                    "epoch": epoch, "done_in_epoch": done_in_epoch, "best_per": best_per, "rng": rng.getstate(), "torch_rng": torch.get_rng_state()},
                   str(tmp))
        tmp.rename(ckpt_file)
        with open(work / "train-log.tsv", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')}\t{step}\t{epoch}\t{per:.4f}\t{opt.param_groups[0]['lr']:.2e}\n")
        tqdm.write(f"step {step}: validation phone error rate {per:.3f} (best {best_per:.3f})")

    model.train()
    bar = tqdm(total=steps, initial=step, desc="training", unit="step", smoothing=0.05)
    last_ckpt = time.monotonic()
    running = None
    while step < steps:
        epoch_rng = random.Random(seed * 1000 + epoch)
        visits = epoch_visits(corpora, corpus_weights, epoch_rng) if corpus_weights else list(range(len(feats)))
        batches = [[visits[j] for j in batch]
                   for batch in make_batches([feats[i].shape[0] for i in visits], max_frames, epoch_rng)]
        for idx in batches[done_in_epoch:]:  # a resumed epoch goes on where it stopped
            if step >= steps:
                break
            if teacher is None:
                x, lengths, y, y_len = collate(feats, labels, idx, rng, edge_cuts)
            else:
                x, lengths, y, y_len, teacher_x = collate_distil(feats, labels, idx, rng, edge_cuts, distil)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            log_probs = model(x)
            loss = ctc(log_probs.transpose(0, 1), y, AcousticModel.output_frames(lengths), y_len)
            if teacher is not None:
                with torch.no_grad():
                    targets = teacher(teacher_x.to(device, non_blocking=True))
                frames = AcousticModel.output_frames(lengths)
                if distil is not None:
                    loss = loss + distil_weight * distillation_loss(log_probs, targets, frames)
                else:
                    loss = loss + guard * distillation_loss(log_probs, targets, frames, guarded[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            done_in_epoch += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", epoch=epoch)
            if time.monotonic() - last_ckpt > checkpoint_every_s:
                checkpoint()
                last_ckpt = time.monotonic()
        else:
            epoch += 1
            done_in_epoch = 0
    checkpoint()
    bar.close()
    snapshots = sorted(snap_dir.glob("step-*.pt"))[-average:]
    if v_feats and average > 1 and len(snapshots) > 1:
        keep_average_if_better(model, snapshots, v_feats, v_labels, best_per, best_file, {"step": step, **run_info},
                               v_noisy)
    return best_file
