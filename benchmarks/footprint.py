"""Benchmark vcd's footprint: peak memory and start-up of `vcd run`, memory of `vcd transcribe` on a long file.

Prints figures; asserts nothing.

    .venv/bin/python benchmarks/footprint.py                    # a 1-hour file for transcribe
    .venv/bin/python benchmarks/footprint.py --hours 0.1        # a shorter one
    .venv/bin/python benchmarks/footprint.py --install-size     # also pip-install the runtime into a
                                                                # fresh venv and measure it (needs PyPI)

Figures:
- import of ``vcd.daemon``: wall time in a fresh interpreter (median of three), and whether
  torch came with it.
- ``vcd run``: process start → ``READY=1`` on a ``NOTIFY_SOCKET`` this script creates (wall
  time, and the CPU time the process had used by then, which a busy machine does not inflate), and the
  peak RSS (``ru_maxrss`` from ``wait4``) of the whole run, with the demo recording
  (demo/commands.wav) as input and the console plugin only.
- ``vcd transcribe``: peak RSS and wall time on a generated file of ``--hours`` hours (the demo
  recording and 38 s of quiet noise, repeated; FLAC at 22.05 kHz, so it is decoded and
  resampled as it is read), and the number of JSON lines it printed; then the peak RSS of
  ``vcd run --input`` on the same file.
- run-only install (``--install-size``): ``pip install`` of this checkout without extras into a
  new virtual environment, its size on disk.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "commands.wav"
PYTHON = sys.executable
VCD = [PYTHON, "-m", "vcd"]
LONG_RATE_HZ = 22050
QUIET_S = 38.0  # noise after each copy of the demo recording


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_measured(argv: list[str], env: dict[str, str] | None = None, stdout=subprocess.DEVNULL,
                 notify: socket.socket | None = None) -> dict[str, float]:
    """Run ``argv``; returns its peak RSS (bytes), wall and CPU seconds, and seconds (wall, CPU) to READY=1."""
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.DEVNULL)
    figures: dict[str, float] = {}
    if notify is not None:
        notify.settimeout(0.05)
        while "ready_s" not in figures and process.poll() is None:
            try:
                message = notify.recv(4096).decode()
            except TimeoutError:
                continue
            if "READY=1" in message.split("\n"):
                figures["ready_s"] = time.monotonic() - started
                figures["ready_cpu_s"] = cpu_seconds(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    figures["wall_s"] = time.monotonic() - started
    figures["cpu_s"] = usage.ru_utime + usage.ru_stime
    figures["rss"] = usage.ru_maxrss * 1024
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"footprint: {' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}")
    return figures


def import_time() -> tuple[float, float, bool]:
    """Wall and CPU seconds of ``import vcd.daemon`` (medians of three fresh interpreters), and whether torch came."""
    code = ("import sys, time; t, c = time.perf_counter(), time.process_time(); import vcd.daemon; "
            "print(time.perf_counter() - t, time.process_time() - c, 'torch' in sys.modules)")
    runs = []
    for _ in range(3):
        out = subprocess.run([PYTHON, "-c", code], check=True, capture_output=True, text=True).stdout.split()
        runs.append((float(out[0]), float(out[1]), out[2] == "True"))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[0][2]


def run_daemon(workdir: Path, audio: Path = DEMO, recognizer: str = "") -> dict[str, float]:
    """``vcd run --input audio`` with the console plugin only; ``recognizer``: lines for its ``[recognizer]``."""
    config = workdir / "config.toml"
    config.write_text(f'[daemon]\nlog_level = "warning"\n\n[recognizer]\n{recognizer}\n[plugins]\nenabled = ["console"]\n')
    path = str(workdir / f"notify-{audio.stem}.sock")
    Path(path).unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(path)
        env = {**os.environ, "NOTIFY_SOCKET": path}
        figures = run_measured(VCD + ["run", "--config", str(config), "--input", str(audio)], env=env, notify=notify)
    if "ready_s" not in figures:
        sys.exit("footprint: vcd run never sent READY=1")
    return figures


def write_long_file(path: Path, hours: float) -> float:
    """The demo recording and quiet noise, repeated to ``hours``; written block by block. Returns seconds."""
    import soxr

    demo, rate = soundfile.read(str(DEMO), dtype="float32")
    unit = soxr.resample(demo, rate, LONG_RATE_HZ)
    rng = np.random.default_rng(0)
    noise = (0.003 * rng.standard_normal(int(QUIET_S * LONG_RATE_HZ))).astype(np.float32)
    unit = np.concatenate([unit, noise])
    total = int(hours * 3600 * LONG_RATE_HZ)
    with soundfile.SoundFile(str(path), "w", LONG_RATE_HZ, 1, subtype="PCM_16", format="FLAC") as out:
        written = 0
        while written < total:
            piece = unit[: total - written]
            out.write(piece)
            written += piece.size
    return total / LONG_RATE_HZ


def write_noisy_stream(path: Path, data: Path, minutes: float) -> float:
    """The validation split's noise recordings (kitchens), looped to ``minutes`` at RMS 0.03, with the demo
    recording laid in every minute about 12 dB above them (RMS of its speech against the noise's). Returns
    seconds."""
    import soxr

    from vcd.audio import read_audio
    from vcd.training.corpora import noise_files

    files = noise_files(data, "validation")
    if not files:
        sys.exit(f"footprint: no validation noise recordings under {data}/noise")
    noise = np.concatenate([read_audio(f) for f in files])
    noise *= 0.03 / max(float(np.sqrt(np.mean(noise**2))), 1e-9)
    demo, rate = soundfile.read(str(DEMO), dtype="float32")
    demo = soxr.resample(demo, rate, 16000)
    speech = demo[np.abs(demo) > 0.02]
    demo *= 0.03 * 10 ** (12 / 20) / max(float(np.sqrt(np.mean(speech**2))), 1e-9)
    total = int(minutes * 60 * 16000)
    stream = np.resize(noise, total)
    for start in range(5 * 16000, total - demo.size, 60 * 16000):
        stream[start : start + demo.size] += demo
    soundfile.write(str(path), np.clip(stream, -1, 1), 16000, subtype="PCM_16")
    return total / 16000


def transcribe(long_file: Path) -> tuple[dict[str, float], int]:
    out_path = long_file.with_suffix(".jsonl")
    with out_path.open("w") as out:
        figures = run_measured(VCD + ["transcribe", str(long_file)], stdout=out)
    lines = sum(1 for _ in out_path.open())
    return figures, lines


def install_size(workdir: Path) -> int:
    venv = workdir / "run-venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    source = workdir / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info"))
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source)], check=True,
                   stderr=subprocess.DEVNULL)
    subprocess.run([str(venv / "bin" / "python"), "-c", "import vcd.daemon, vcd.recognizer"], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", "pip"]
    subprocess.run(pip, check=False)  # the installer is not part of what vcd needs
    return sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=1.0, help="length of the file for transcribe (default 1)")
    parser.add_argument("--install-size", action="store_true", help="measure a run-only install (needs PyPI)")
    parser.add_argument("--data", type=Path, help="also: vcd run's CPU over the validation noise recordings under "
                        "DATA/noise with the denoised view off and on")
    parser.add_argument("--noise-minutes", type=float, default=10.0, help="length of that noisy stream (default 10)")
    args = parser.parse_args()
    mib = 1 / 2**20
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times grow with it)")
    seconds, cpu, torch_loaded = import_time()
    print(f"{'import vcd.daemon':<44} {seconds:8.2f} s   ({cpu:.2f} s of CPU; torch imported: "
          f"{'yes' if torch_loaded else 'no'})")
    with tempfile.TemporaryDirectory(prefix="vcd-footprint-") as tmp:
        workdir = Path(tmp)
        run = run_daemon(workdir)
        print(f"{'vcd run: process start -> READY=1':<44} {run['ready_s']:8.2f} s   "
              f"({run['ready_cpu_s']:.2f} s of CPU)")
        print(f"{'vcd run: peak RSS (demo recording)':<44} {run['rss'] * mib:8.0f} MiB   "
              f"(whole run {run['wall_s']:.1f} s)")
        long_file = workdir / "long.flac"
        audio_s = write_long_file(long_file, args.hours)
        long, lines = transcribe(long_file)
        label = f"vcd transcribe: peak RSS ({audio_s / 3600:.2f} h file)"
        print(f"{label:<44} {long['rss'] * mib:8.0f} MiB   ({long['wall_s']:.0f} s wall, {long['cpu_s']:.0f} s CPU, "
              f"{lines} JSON lines)")
        run = run_daemon(workdir, long_file)
        label = f"vcd run --input: peak RSS ({audio_s / 3600:.2f} h file)"
        print(f"{label:<44} {run['rss'] * mib:8.0f} MiB   ({run['wall_s']:.0f} s wall, {run['cpu_s']:.0f} s CPU)")
        if args.data is not None:
            noisy = workdir / "noisy.wav"
            # written by a child of its own: a child's peak RSS (wait4) starts from this process's, so this one
            # must never hold the stream (or import what the stream is made with)
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                audio_s = pool.apply(write_noisy_stream, (noisy, args.data, args.noise_minutes))
            for view in ("false", "true"):
                run = run_daemon(workdir, noisy, f"denoised_view = {view}\n")
                label = f"vcd run --input: kitchen noise, view {'on' if view == 'true' else 'off'}"
                print(f"{label:<44} {run['cpu_s'] / audio_s * 100:8.1f} % of a core   ({run['cpu_s']:.0f} s CPU for "
                      f"{audio_s / 60:.0f} min of audio, peak RSS {run['rss'] * mib:.0f} MiB)")
        # a child's ru_maxrss starts from its parent's peak at the fork (Linux folds the pre-exec memory into it),
        # so every peak above is at least this process's own: it must stay well under them to mean anything
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        label = "(this script's own peak RSS: a floor)"
        print(f"{label:<44} {own * mib:8.0f} MiB")
        if args.install_size:
            size = install_size(workdir)
            print(f"{'run-only install (venv, no extras)':<44} {size * mib:8.0f} MiB")


if __name__ == "__main__":
    main()
