"""``vcd train``: the training command, which the ``vcd`` command line finds through an entry point.

``pyproject.toml`` registers :func:`register_commands` in the ``vcd.commands`` entry-point
group; ``python -m vcd.training`` runs the same command without it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import sys
from pathlib import Path

from vcd.cli import run_command, setup_logging
from vcd.errors import ExitCode, UsageError, VcdError
from vcd.recognizer import DEFAULT_MODEL

_LOGGER = logging.getLogger(__name__)

# The sentences of the FSDD check after training: the ten digits, one at a time.


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``adapt`` to the ``vcd`` command line."""
    p = subparsers.add_parser("train", help="train the acoustic model from scratch (resumable)")
    p.add_argument("--data", type=Path, help="folder of real speech corpora (like ../shared/data); optional")
    p.add_argument("--work", type=Path, default=Path("work/train"), help="working folder: caches and checkpoints")
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps in all (default 6000)")
    p.add_argument("--synth", type=int, default=6000, help="synthetic training clips to generate (default 6000)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--workers", type=int, default=2, help="processes for synthesis and features (default 2)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model trains: a CUDA GPU where torch sees one (auto, the default), or the CPU; "
                        "clips are prepared and augmented on the CPU either way")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    p.add_argument("--init", type=Path, metavar="MODEL",
                   help="start from this model's weights instead of random ones (fine-tune / warm restart)")
    p.add_argument("--digit-word-cuts", action="store_true",
                   help="also train on the real clips' digits cut out as isolated words (forced alignment with "
                        "--init, else the shipped model)")
    p.add_argument("--hidden", type=int, metavar="N",
                   help="GRU units per direction (default: --init's, else 160); more than --init's widens it, "
                        "keeping what it computes")
    p.add_argument("--average", type=int, default=4, metavar="N",
                   help="at the end, average the last N checkpoints' weights and keep that if it validates "
                        "better (default 4; 1 turns it off)")
    p.add_argument("--blend-init", action="store_true",
                   help="at the end, average the trained weights with --init's (same shape) before calibrating")
    p.add_argument("--accented-synth", type=int, default=0, metavar="N",
                   help="also synthesise N foreign-accented clips with the espeak-ng voices (default 0)")
    p.add_argument("--edge-cuts", default="0.2,80,480", metavar="PROB,MAX_MS[,MIN_SPEECH_MS]",
                   help="cut up to MAX_MS of speech off each end of a clip with probability PROB, in clips with at "
                        "least MIN_SPEECH_MS of speech, never over a third of it (default 0.2,80,480; pass the same "
                        "on resume)")
    p.add_argument("--copies", type=int, default=3, metavar="N",
                   help="versions of each real clip to prepare: one clean, N-1 augmented (default 3)")
    p.add_argument("--denoise", type=float, default=0.0, metavar="SHARE",
                   help="pass this share of the prepared copies through the RNNoise front end (matched training); "
                        "from 0.5 up the model asks for that front end by default (default 0)")
    p.add_argument("--distil", type=float, default=0.0, metavar="WEIGHT",
                   help="noise distillation from the --init model: the loss adds WEIGHT x KL from its posteriors "
                        "on the clips without the noise the student hears (needs --init and --data; default 0: off)")
    p.add_argument("--corpus-weights", default="", metavar="NAME=W,...",
                   help="visit each clip of corpus NAME W times an epoch (a fraction: sometimes once more), e.g. "
                        "speechocean762=2,vctk-sample=4; names are the prepared shards (the corpora, synth); "
                        "default 1 each")
    p.add_argument("--guard", type=float, default=0.0, metavar="WEIGHT",
                   help="keep the corpora not weighted above 1 near the --init model: the loss adds WEIGHT x KL "
                        "from its posteriors on their clips (needs --init; not with --distil; default 0: off)")
    p.add_argument("--output", type=Path, default=DEFAULT_MODEL, help="where to write the trained model")
    p.add_argument("--no-rejection-fit", action="store_true",
                   help="skip the rejection rule's fit on the validation speakers' decodes (with --data it decodes "
                        "them all, about as long as a short training run); fit it later from a benchmark's dump "
                        "with benchmarks/rejection_study.py DUMP --write MODEL")
    p.add_argument("--extra-voices", default="", metavar="SET,...",
                   help="opt-in TTS voice sets for the synthetic speech, licences permitting: mbrola, festvox, pico, "
                        "piper (install: scripts/install-training-voices.sh SET...; use a new --work folder)")
    p.set_defaults(func=_with_torch(cmd_train))

    p = subparsers.add_parser("adapt", help="adapt the model to your household from the clips vcd run kept")
    p.add_argument("--config", type=Path, help="config.toml whose [adapt] folder holds the clips (default: as vcd run)")
    p.add_argument("--clips", type=Path, help="folder of kept clips (clips.jsonl); default: [adapt] folder")
    p.add_argument("--model", type=Path, help="the model to adapt (default: recognizer.model, else the shipped one)")
    p.add_argument("--output", type=Path, help="where to write the adapted model (default: CLIPS/adapted.pt)")
    p.add_argument("--method", choices=("finetune", "hidden", "scale"), default="finetune",
                   help="finetune (default): every weight, pulled toward the original; hidden/scale: an input "
                        "transform folded into the first GRU layer")
    p.add_argument("--steps", type=int, default=30, help="optimiser steps (default 30)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.set_defaults(func=_with_torch(cmd_adapt))

    p = subparsers.add_parser("export-model",
                              help="write the numpy (.npz) and ONNX (.onnx) exports beside a model file (.pt): what vcd runs")
    p.add_argument("model", type=Path, metavar="MODEL", help="the model file (.pt) written by vcd train or adapt")
    p.set_defaults(func=_with_torch(cmd_export_model))


def _with_torch(command):
    """``command``, or a one-line :class:`UsageError` where torch (the train extra) is not installed."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UsageError(f"vcd {args.command} needs the training packages: pip install 'vcd[train]'") from None
        return command(args)

    return run


def cmd_export_model(args: argparse.Namespace) -> int:
    """``vcd export-model MODEL.pt``: vcd train and adapt write the export themselves; this one is for older files."""
    from vcd.model import export_numpy, export_onnx

    print(f"{export_numpy(args.model)}: written", flush=True)
    onnx = export_onnx(args.model)
    if onnx is not None:
        print(f"{onnx}: written", flush=True)
    return ExitCode.OK


def _extra_voice_sets(text: str) -> tuple[str, ...]:
    """The opt-in voice sets named by ``--extra-voices`` (comma-separated)."""
    from vcd.training.synth import EXTRA_VOICE_SETS

    sets = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in sets if s not in EXTRA_VOICE_SETS]
    if unknown:
        raise UsageError(f"--extra-voices: unknown voice set {', '.join(map(repr, unknown))} "
                          f"(choose from {', '.join(EXTRA_VOICE_SETS)})")
    return sets


def _corpus_weights(text: str) -> dict[str, float]:
    """``--corpus-weights``: ``NAME=W,...`` with W a number of 0 or more."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            weight = float(value) if sep and name.strip() else -1.0
        except ValueError:
            weight = -1.0
        if not weight >= 0:
            raise UsageError(f"--corpus-weights: {item!r} is not NAME=W with W a number of 0 or more")
        weights[name.strip()] = weight
    return weights


def cmd_train(args: argparse.Namespace) -> int:
    from vcd.training.augment import EdgeCuts
    from vcd.training.calibrate import calibrate, fit_learned_rejection
    from vcd.training.prepare import PRONUNCIATIONS, prepare
    from vcd.training.synth import EXTRA_VOICE_LICENCES
    from vcd.training.train import resolve_device, train

    setup_logging("info")  # its progress lines: clips and hours trained on, the starting model, resumes
    # ...but not the hundreds of corpus words spelled by espeak-ng, one line each
    logging.getLogger("vcd.phonetics").setLevel(logging.WARNING)
    extra_voices = _extra_voice_sets(args.extra_voices)
    if args.blend_init:
        from vcd.training.train import trained_shape

        if args.init is None:
            raise UsageError("--blend-init needs --init MODEL: the weights to blend with")
        start, end = trained_shape(args.init, args.hidden, args.work)
        if start != end:
            raise UsageError(f"--blend-init: {args.init} has {start['hidden']} GRU units and the model trained in "
                             f"{args.work} would have {end['hidden']}; blend only models of one shape")
    try:
        edge_cuts = EdgeCuts.parse(args.edge_cuts)
    except ValueError as exc:
        raise UsageError(f"--edge-cuts {exc}") from None
    if args.data is not None and not args.data.is_dir():
        raise VcdError(f"{args.data}: no such data folder")
    for name in extra_voices:
        print(f"extra voices {name}: {EXTRA_VOICE_LICENCES[name]}", flush=True)
    # the starting weights (else the shipped model) cut the real clips' digits out as isolated words
    aligner = (args.init if args.init is not None else DEFAULT_MODEL) if args.digit_word_cuts else None
    if args.copies < 1:
        raise UsageError(f"--copies must be 1 or more (got {args.copies})")
    if not 0.0 <= args.denoise <= 1.0:
        raise UsageError(f"--denoise must be a share from 0 to 1 (got {args.denoise})")
    if args.distil < 0:
        raise UsageError(f"--distil must be 0 or more (got {args.distil})")
    if args.distil and (args.init is None or args.data is None):
        raise UsageError("--distil needs --init MODEL (the teacher) and --data (the noise recordings)")
    corpus_weights = _corpus_weights(args.corpus_weights)
    if not args.guard >= 0:
        raise UsageError(f"--guard must be 0 or more (got {args.guard})")
    if args.guard and (args.init is None or args.distil):
        raise UsageError("--guard needs --init MODEL (the model to stay near) and cannot go with --distil")
    device = resolve_device(args.device)  # before the data preparation, which may take an hour
    noise = valid_noise = None
    if args.distil:  # before the data preparation, which may take an hour
        from vcd.training.distil import noises_from

        noise, valid_noise = noises_from(args.data, args.seed)
    shards = prepare(args.data, args.work, args.synth, args.seed, args.workers, extra_voices, aligner,
                     args.accented_synth, args.denoise, args.copies)
    best = train(shards, args.work / "features" / "valid.pt", args.work, args.steps, args.seed, args.threads,
                 lr=args.lr, init=args.init, average=args.average, hidden=args.hidden, edge_cuts=edge_cuts,
                 distil=noise, distil_weight=args.distil, valid_noise=valid_noise, corpus_weights=corpus_weights,
                 guard=args.guard, device=device)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, args.output)
    if args.blend_init:
        from vcd.training.train import blend_with

        blend_with(args.output, args.init)
        print(f"weights averaged with {args.init}'s", flush=True)
    from vcd.model import load_model, save_model

    model, labels, extra = load_model(args.output)
    carried = args.work / PRONUNCIATIONS  # the labels' pronunciations: decoding must look for them too
    save_model(model, args.output, labels, {**extra, "front_end": "rnnoise" if args.denoise >= 0.5 else "none",
                                            "denoise_share": args.denoise,
                                            "pronunciations": json.loads(carried.read_text(encoding="utf-8"))})
    calibrate(args.output, args.data, args.work / "synth-heldout")
    if args.data is not None and not args.no_rejection_fit:
        fit_learned_rejection(args.output, args.data)
    print(f"model written to {args.output}")
    print("measure it on the validation speakers (never the test ones) to choose what ships: "
          "benchmarks/real_rooms.py --split validation --model " + str(args.output))
    return ExitCode.OK


def cmd_adapt(args: argparse.Namespace) -> int:
    """``vcd adapt``: adapt to the kept clips; keeps the original when the held-out check says it got worse."""
    import json

    import torch

    from vcd.audio import read_audio
    from vcd.config import load_config
    from vcd.errors import AudioError
    from vcd.keeper import read_kept
    from vcd.training.adapt import adapt

    config = load_config(args.config)
    folder = args.clips or config.adapt.folder
    if not (folder / "clips.jsonl").exists():
        raise AudioError(f"{folder}: no kept clips (clips.jsonl); set [adapt] keep_clips = true and use vcd run first")
    if args.steps < 1:
        raise UsageError(f"--steps must be 1 or more (got {args.steps})")
    torch.set_num_threads(max(1, args.threads))
    clips = []
    for row in read_kept(folder):
        try:
            clips.append((read_audio(folder / row["file"]), str(row["text"])))
        except AudioError as exc:
            print(f"Error: {exc}", file=sys.stderr)
    model = args.model or config.recognizer.model or DEFAULT_MODEL
    output = args.output or folder / "adapted.pt"
    result = adapt(model, clips, output, method=args.method, steps=args.steps, front_end=config.recognizer.front_end)
    report = result.report
    print(json.dumps({"model": str(model), "output": str(output), **report.to_dict()}))
    if report.accepted:
        print(f"adapted model written to {output}; use it with recognizer.model = \"{output}\"", file=sys.stderr)
    else:
        print(f"the adaptation did worse on held-out clips: {output} holds the original weights", file=sys.stderr)
    return ExitCode.OK


def main_train(argv: list[str] | None = None) -> int:
    """``vcd train`` with the arguments ``argv`` (default: the process's); returns the exit status."""
    parser = argparse.ArgumentParser(prog="vcd")  # cmd_train sets up its own logging
    register_commands(parser.add_subparsers(dest="command", required=True))
    return run_command(parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])]))
