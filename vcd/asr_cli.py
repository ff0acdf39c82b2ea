"""The recogniser's commands: ``vcd transcribe``, ``vcd eval`` and ``vcd train``."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from vcd.errors import ExitCode, VcdError

_LOGGER = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).parent / "models" / "default.pt"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``transcribe``, ``eval`` and ``train`` to the ``vcd`` command line."""
    p = subparsers.add_parser("train", help="train the acoustic model from scratch (resumable)")
    p.add_argument("--data", type=Path, help="folder of real speech corpora (like ../shared/data); optional")
    p.add_argument("--work", type=Path, default=Path("work/train"), help="working folder: caches and checkpoints")
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps in all (default 6000)")
    p.add_argument("--synth", type=int, default=6000, help="synthetic training clips to generate (default 6000)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--workers", type=int, default=2, help="processes for synthesis and features (default 2)")
    p.add_argument("--output", type=Path, default=DEFAULT_MODEL, help="where to write the trained model")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from vcd.training.prepare import prepare
    from vcd.training.train import train

    if args.data is not None and not args.data.is_dir():
        raise VcdError(f"{args.data}: no such data folder")
    shards = prepare(args.data, args.work, args.synth, args.seed, args.workers)
    best = train(shards, args.work / "features" / "valid.pt", args.work, args.steps, args.seed, args.threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, args.output)
    print(f"model written to {args.output}")
    return ExitCode.OK


def main_train(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="vcd")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except VcdError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
