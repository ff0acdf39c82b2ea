"""The ``vcd`` command line: the daemon, the Wyoming service, config check, plugins, devices, transcribe, eval.

More commands come from installed packages through the ``vcd.commands`` entry points:
``vcd train`` is registered by :mod:`vcd.training.cli` this way, so that the runtime never
imports the training code.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from vcd import __version__
from vcd.config import DENOISED_VIEWS, ENGINES, load_config, with_overrides
from vcd.errors import AudioError, ExitCode, UsageError, VcdError, one_line

_LOGGER = logging.getLogger(__name__)

# Entry points in this group name a function ``register_commands(subparsers)`` that adds commands.
COMMANDS_GROUP = "vcd.commands"


def setup_logging(level: str = "info") -> None:
    """Log to stderr; under systemd (``$JOURNAL_STREAM``) without our own timestamps."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
    root.setLevel(level.upper())


def _listening_config(args: argparse.Namespace, role: str = ""):
    """`vcd run` / `vcd satellite`: the configuration with the command line's audio overrides; logging set up."""
    config = load_config(args.config)
    setup_logging(config.daemon.log_level)
    if args.input not in (None, "-") and not os.path.isfile(args.input):
        raise AudioError(f"{args.input}: no such file")
    config = with_overrides(config, site=args.site, input_path=args.input, realtime=args.realtime, device=args.device)
    _LOGGER.info("vcd %s%s: configuration %s", __version__, role, config.label)
    return config


def _cmd_run(args: argparse.Namespace) -> int:
    from vcd.stopper import Stopper

    stopper = Stopper().install()  # first: a SIGTERM while starting up also stops vcd in order (exit 0)
    config = _listening_config(args)
    from vcd.daemon import run_daemon

    code = run_daemon(config, stopper)
    # The orderly shutdown is complete (plugins have run vcd_shutdown).  Skip the
    # interpreter's teardown of the model, numpy and PortAudio: on a busy 2-core box it
    # took several seconds, longer than the whole shutdown is allowed to take.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cmd_satellite(args: argparse.Namespace) -> int:
    config = _listening_config(args, " satellite")
    from vcd.satellite import run_satellite

    code = run_satellite(config)
    logging.shutdown()
    return code


def _cmd_wyoming(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(config.daemon.log_level)
    _LOGGER.info("vcd %s: configuration %s", __version__, config.label)
    from vcd.wyoming_server import serve

    code = serve(config, args.uri, args.max_audio_s, args.intents)
    # As `vcd run`: skip the interpreter's slow teardown of torch once the server has stopped in order.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cmd_check_config(args: argparse.Namespace) -> int:
    """Everything ``vcd run`` checks before the microphone opens, without connecting or listening.

    The file and its keys, the plugins (importing them, each validating its own table: the MQTT
    plugin loads its TLS files and checks the broker's host name), and the recogniser: the
    model loads and the sentences compile to the grammar ``vcd run`` decodes with.
    """
    from vcd.daemon import load_recognizer
    from vcd.plugins import load_plugins

    config = load_config(args.config)
    host = load_plugins(config)
    host.check_config(config)
    load_recognizer(config)
    plugins = ", ".join(host.names) or "none"
    print(f"{config.label}: OK (plugins: {plugins})")
    return ExitCode.OK


def _cmd_plugins(args: argparse.Namespace) -> int:
    from vcd.plugins import load_plugins

    host = load_plugins(load_config(args.config))
    if not host.loaded:
        print("no plugins loaded")
        return ExitCode.OK
    width = max(len(p.name) for p in host.loaded)
    for plugin in host.loaded:
        print(f"{plugin.name:<{width}}  {plugin.source}")
        print(f"{'':<{width}}  hooks: {', '.join(plugin.hooks) or 'none'}")
    return ExitCode.OK


def _cmd_devices(args: argparse.Namespace) -> int:
    from vcd.sources import input_devices

    devices = input_devices()
    if not devices:
        print("no audio input devices")
        return ExitCode.OK
    for dev in devices:
        mark = "*" if dev["default"] else " "
        print(f"{mark} {dev['index']:>3}  {dev['name']}  ({dev['channels']} ch, {dev['rate_hz']} Hz)")
    return ExitCode.OK


def _sentences_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sentences", type=Path, action="append", default=[], metavar="PATH",
                   help="hassil / Home Assistant sentence YAML file or folder, added to the bundled sentences "
                        "(their intents win ties); may be given more than once")
    p.add_argument("--replace-sentences", action="store_true",
                   help="use only the --sentences files, not the bundled sentences")


def _recognizer_arguments(p: argparse.ArgumentParser) -> None:
    _sentences_arguments(p)
    p.add_argument("--model", type=Path, help="acoustic model file (default: the shipped model)")
    p.add_argument("--min-confidence", type=float, help="reject below this confidence (default 0.5)")
    p.add_argument("--threads", type=int, default=1, help="threads of one inference of the acoustic model (default 1)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="what runs the acoustic model (default auto: ONNX Runtime where installed; as recognizer.engine)")
    p.add_argument("--front-end", choices=("auto", "rnnoise", "none"), default="auto",
                   help="denoiser before the features (default auto: the one the model was trained with)")
    p.add_argument("--beam", type=float, default=40.0,
                   help="search beam in log-probability, 0 = the exact search (default 40, as recognizer.beam)")
    p.add_argument("--denoised-view", choices=DENOISED_VIEWS, default=DENOISED_VIEWS[0],
                   help="the denoiser of a second look at a sentence rejected in a loud room (default webrtc; off for "
                        "none; as recognizer.denoised_view)")


def _load_recognizer(args: argparse.Namespace):
    from vcd.recognizer import Recognizer

    if args.replace_sentences and not args.sentences:
        raise UsageError("--replace-sentences needs at least one --sentences PATH")
    if args.beam < 0:
        raise UsageError(f"--beam: must be 0 or more (got {args.beam:g})")
    return Recognizer.load(args.sentences, args.model, args.min_confidence, args.threads, front_end=args.front_end,
                           bundled=not args.replace_sentences, beam=args.beam, denoised_view=args.denoised_view,
                           engine=args.engine)


def _cmd_transcribe(args: argparse.Namespace) -> int:
    """Print JSON lines per file (one for a command, one per speech segment of a recording over 10 s).

    Unreadable files get a one-line error and the batch goes on.
    """
    from vcd.transcribe import transcribe_file

    recognizer = _load_recognizer(args)
    status = ExitCode.OK
    for file in args.files:
        try:
            for result in transcribe_file(recognizer, file):
                print(json.dumps(result), flush=True)
        except VcdError as exc:
            print(f"Error: {one_line(str(exc))}", file=sys.stderr, flush=True)
            status = exc.exit_code
    return status


def _context(pairs: list[str]) -> dict[str, str]:
    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--context: expected KEY=VALUE (got {pair!r})")
        context[key.strip()] = value.strip()
    return context


def _cmd_parse(args: argparse.Namespace) -> int:
    """One JSON line per sentence, as `transcribe` prints for audio; exit 1 if any was not understood."""
    import time

    from vcd.grammar import load_grammar

    if args.replace_sentences and not args.sentences:
        raise UsageError("--replace-sentences needs at least one --sentences PATH")
    context = _context(args.context)
    if args.text:
        lines = iter(args.text)
    elif sys.stdin.isatty():
        raise UsageError("give sentences as arguments or on stdin, one a line")
    else:
        lines = (line.rstrip("\n") for line in sys.stdin)
    graph = load_grammar(args.sentences, bundled=not args.replace_sentences, context_keys=set(context))
    status = ExitCode.OK
    for line in lines:
        if not line.strip():
            continue
        started = time.perf_counter()
        parse = graph.understand_text(line, context)
        parse_ms = (time.perf_counter() - started) * 1000.0
        if parse is None:
            status = ExitCode.FAILURE
        print(json.dumps({"input": line, "text": parse.text if parse else "", "intent": parse.intent if parse else None,
                          "slots": parse.slots if parse else {}, "confidence": 1.0 if parse else 0.0,
                          "audio_s": 0.0, "decode_ms": round(parse_ms, 1)}), flush=True)
    return status


def _cmd_eval(args: argparse.Namespace) -> int:
    from vcd.evaluate import evaluate, print_report, require_plotting, write_plot

    if args.plot:
        require_plotting()
    recognizer = _load_recognizer(args)
    report = evaluate(recognizer, args.data, limit=args.limit, pad_s=args.pad_s)
    print_report(report)
    if args.plot:
        write_plot(report, args.plot)
        print(f"plot written to {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return ExitCode.OK


def _register_installed_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the commands that installed packages register in :data:`COMMANDS_GROUP` (``vcd train``)."""
    for entry_point in sorted(importlib.metadata.entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            entry_point.load()(subparsers)
        except Exception as exc:  # noqa: BLE001 - a broken add-on must not take `vcd run` down with it
            _LOGGER.warning('commands "%s" (%s) failed to load: %s: %s', entry_point.name, entry_point.value,
                            type(exc).__name__, exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcd", description="Offline voice-command daemon.")
    parser.add_argument("--version", action="version", version=f"vcd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    config_help = "configuration file (default: $VCD_CONFIG, ./config.toml, /etc/vcd/config.toml, built-in defaults)"

    run = sub.add_parser("run", help="run the daemon: listen, recognise, call the plugins")
    run.add_argument("--config", metavar="PATH", help=config_help)
    run.add_argument(
        "--input",
        metavar="FILE",
        help='play an audio file instead of the microphone, or "-" for raw 16-bit PCM on stdin '
        "(audio.input_rate_hz); the daemon exits at its end",
    )
    pace = run.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime", dest="realtime", action="store_true", default=None, help="play --input at real-time speed"
    )
    pace.add_argument(
        "--fast", dest="realtime", action="store_false", help="play --input as fast as possible (default)"
    )
    run.add_argument("--device", metavar="NAME|INDEX", help="microphone to use (see `vcd devices`)")
    run.add_argument("--site", metavar="ID", help="site id of this hub (overrides daemon.site)")
    run.set_defaults(func=_cmd_run)

    satellite = sub.add_parser("satellite", help="send the speech heard here to vcd hubs over MQTT ([satellite])")
    satellite.add_argument("--config", metavar="PATH", help=config_help)
    satellite.add_argument("--input", metavar="FILE", help='an audio file instead of the microphone, or "-" for raw '
                           "16-bit PCM on stdin; exits once its segments are delivered")
    satellite_pace = satellite.add_mutually_exclusive_group()
    satellite_pace.add_argument("--realtime", dest="realtime", action="store_true", default=None,
                                help="play --input at real-time speed")
    satellite_pace.add_argument("--fast", dest="realtime", action="store_false",
                                help="play --input as fast as possible (default)")
    satellite.add_argument("--device", metavar="NAME|INDEX", help="microphone to use (see `vcd devices`)")
    satellite.add_argument("--site", metavar="ID", help="this satellite's site (overrides daemon.site)")
    satellite.set_defaults(func=_cmd_satellite)

    wyoming = sub.add_parser("wyoming", help="serve speech-to-text over the Wyoming protocol (Home Assistant)")
    wyoming.add_argument("--config", metavar="PATH", help=config_help + "; its [recognizer] section is used")
    wyoming.add_argument("--uri", default="tcp://0.0.0.0:10300", metavar="URI",
                         help="where to listen: tcp://HOST:PORT or unix:///PATH (default tcp://0.0.0.0:10300)")
    wyoming.add_argument("--max-audio-s", type=float, default=30.0, metavar="SECONDS",
                         help="refuse a transcription longer than this (default 30)")
    wyoming.add_argument("--intents", action="store_true",
                         help="also serve intent recognition from text (a conversation agent in Home Assistant)")
    wyoming.set_defaults(func=_cmd_wyoming)

    check = sub.add_parser("check-config", help="validate the configuration and load the plugins")
    check.add_argument("--config", metavar="PATH", help=config_help)
    check.set_defaults(func=_cmd_check_config)

    plugins = sub.add_parser("plugins", help="list the plugins that load, where from, and their hooks")
    plugins.add_argument("--config", metavar="PATH", help=config_help)
    plugins.set_defaults(func=_cmd_plugins)

    devices = sub.add_parser("devices", help="list the audio input devices")
    devices.set_defaults(func=_cmd_devices)

    transcribe = sub.add_parser("transcribe", help="recognise audio files against the sentences: one JSON line for "
                                "a file up to 10 s, one per speech segment of a longer one")
    _recognizer_arguments(transcribe)
    transcribe.add_argument("files", nargs="+", type=Path, metavar="FILE",
                            help="WAV/FLAC/OGG files, any rate, mono or stereo")
    transcribe.set_defaults(func=_cmd_transcribe)

    parse = sub.add_parser("parse", help="understand typed sentences through the compiled grammar; one JSON line each",
                           description="Understand sentences as `vcd transcribe` understands audio: the same grammar "
                                       "graph, the same JSON lines (\"input\" instead of \"file\"). Exit status: "
                                       "0 every sentence understood, 1 some not, 2 bad usage, 66 bad sentence files.")
    _sentences_arguments(parse)
    parse.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                       help="hassil intent context, e.g. area=Kitchen (a satellite's area); may be repeated")
    parse.add_argument("text", nargs="*", metavar="SENTENCE", help="sentences to understand (default: stdin lines)")
    parse.set_defaults(func=_cmd_parse)

    evaluate = sub.add_parser("eval", help="accuracy, WER and false accepts on a folder with transcripts.jsonl")
    _recognizer_arguments(evaluate)
    evaluate.add_argument("data", type=Path, metavar="DATA_DIR", help="folder with transcripts.jsonl and its audio")
    evaluate.add_argument("--limit", type=int, default=0, help="evaluate at most this many clips (0: all)")
    evaluate.add_argument("--pad-s", type=float, default=0.0,
                          help="silence added before and after each clip, seconds")
    evaluate.add_argument("--plot", type=Path, help="write a PNG (confusions and confidences) here")
    evaluate.add_argument("--json", type=Path, help="write the full report as JSON here")
    evaluate.set_defaults(func=_cmd_eval)

    _register_installed_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vcd`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    setup_logging("warning")  # `vcd run` switches to daemon.log_level
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command ``args.func``; a :class:`VcdError` becomes one ``Error: …`` line and its exit code."""
    try:
        return int(args.func(args))
    except VcdError as exc:
        print(f"Error: {one_line(str(exc))}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return ExitCode.FAILURE
