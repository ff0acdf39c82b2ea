"""``vcd eval``: sentence accuracy, WER, intent/slot accuracy, false accepts, confusions and a plot."""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from vcd.audio import read_audio
from vcd.audio_format import SAMPLE_RATE_HZ
from vcd.errors import AudioError, UsageError, VcdError
from vcd.grammar import spoken_words
from vcd.transcripts import read_transcripts, word_errors

_LOGGER = logging.getLogger(__name__)


def _progress(clips: list, enabled: bool):
    """``clips`` behind tqdm's progress bar where tqdm is installed (the train extra), else as they are."""
    try:
        from tqdm import tqdm
    except ImportError:
        return clips
    return tqdm(clips, desc="evaluating", unit="clip", disable=not enabled)


def require_plotting() -> None:
    """Raise :class:`UsageError` when matplotlib (the train extra), which ``--plot`` needs, is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("eval --plot needs matplotlib: pip install 'vcd[train]'") from None


def evaluate(recognizer, data_dir: Path, limit: int = 0, pad_s: float = 0.0, clips=None,
             progress: bool = True) -> dict[str, Any]:
    """Run the recogniser over every clip of ``data_dir/transcripts.jsonl``.

    A clip is *in grammar* when the sentences can say its transcript
    (the word graph accepts it); the others (and clips with empty text) count as
    out of grammar, where any recognised intent is a false accept.
    """
    if clips is None:
        if not (Path(data_dir) / "transcripts.jsonl").exists():
            raise VcdError(f"{data_dir}: no transcripts.jsonl in this folder")
        clips = read_transcripts(data_dir)
    if limit:
        clips = clips[:limit]
    rows = []
    started = time.perf_counter()
    audio_total = decode_total = 0.0
    pad = np.zeros(int(pad_s * SAMPLE_RATE_HZ), dtype=np.float32)
    for clip in _progress(clips, progress):
        try:
            audio = np.concatenate([pad, read_audio(clip.path), pad])
        except AudioError as exc:
            _LOGGER.warning("%s", exc)
            continue
        ref_words = spoken_words(clip.text)
        ref_text = " ".join(ref_words)
        expected = recognizer.word_graph.parse(ref_words) if ref_words else None
        r = recognizer.recognize(audio)
        audio_total += r.audio_s
        decode_total += r.decode_ms / 1000
        rows.append({
            "file": str(clip.path), "speaker": clip.speaker, "ref": ref_text, "hyp": r.text, "best": r.best_text,
            "in_grammar": expected is not None, "confidence": r.confidence, "intent": r.intent,
            "slots": r.slots, "decode_ms": r.decode_ms, "audio_s": r.audio_s,
            "expected_intent": expected[0] if expected else None,
            "expected_slots": expected[1] if expected else {},
            "errors": word_errors(ref_words, r.text.split()), "ref_len": len(ref_words),
        })
    return summarise(rows, time.perf_counter() - started, audio_total, decode_total)


def summarise(rows: list[dict], wall_s: float, audio_s: float, decode_s: float) -> dict[str, Any]:
    ing = [r for r in rows if r["in_grammar"]]
    oog = [r for r in rows if not r["in_grammar"]]
    per_speaker: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in ing:
        per_speaker[r["speaker"]][0] += r["hyp"] == r["ref"]
        per_speaker[r["speaker"]][1] += 1
    confusions = Counter((r["ref"], r["hyp"] or "<rejected>") for r in ing if r["hyp"] != r["ref"])
    report = {
        "clips": len(rows),
        "in_grammar": len(ing),
        "out_of_grammar": len(oog),
        "sentence_accuracy": _ratio(sum(r["hyp"] == r["ref"] for r in ing), len(ing)),
        "wer": _ratio(sum(r["errors"] for r in ing), sum(r["ref_len"] for r in ing)),
        "intent_accuracy": _ratio(sum(r["intent"] == r["expected_intent"] for r in ing), len(ing)),
        "slot_accuracy": _ratio(sum(r["intent"] == r["expected_intent"] and r["slots"] == r["expected_slots"]
                                    for r in ing), len(ing)),
        "rejected_in_grammar": _ratio(sum(r["intent"] is None for r in ing), len(ing)),
        "false_accepts": _ratio(sum(r["intent"] is not None for r in oog), len(oog)),
        "per_speaker_accuracy": {s: _ratio(c, n) for s, (c, n) in sorted(per_speaker.items())},
        "confusions": [[ref, hyp, n] for (ref, hyp), n in confusions.most_common(20)],
        "real_time_factor": decode_s / audio_s if audio_s else None,
        "mean_decode_ms": 1000 * decode_s / len(rows) if rows else None,
        "wall_s": wall_s,
        "rows": rows,
    }
    return report


def _ratio(num: float, den: int) -> float | None:
    return num / den if den else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def print_report(report: dict[str, Any]) -> None:
    lines = [
        ("clips (in grammar / out of grammar)", f"{report['clips']} ({report['in_grammar']} / {report['out_of_grammar']})"),
        ("sentence accuracy", _pct(report["sentence_accuracy"])),
        ("word error rate", _pct(report["wer"])),
        ("intent accuracy", _pct(report["intent_accuracy"])),
        ("intent + slots accuracy", _pct(report["slot_accuracy"])),
        ("in-grammar clips rejected", _pct(report["rejected_in_grammar"])),
        ("false accepts (out of grammar)", _pct(report["false_accepts"])),
        ("real-time factor", "-" if report["real_time_factor"] is None else f"{report['real_time_factor']:.4f}"),
        ("mean decode per clip", "-" if report["mean_decode_ms"] is None else f"{report['mean_decode_ms']:.1f} ms"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    if report["per_speaker_accuracy"] and len(report["per_speaker_accuracy"]) <= 30:
        print("\nper speaker:")
        for speaker, acc in report["per_speaker_accuracy"].items():
            print(f"  {speaker:<{width - 2}}  {_pct(acc)}")
    if report["confusions"]:
        print("\nmost frequent confusions (reference → recognised: count):")
        for ref, hyp, n in report["confusions"][:10]:
            print(f"  {ref} → {hyp}: {n}")


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Confusion matrix of the most frequent references and the confidence histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = report["rows"]
    ing = [r for r in rows if r["in_grammar"]]
    refs = [ref for ref, _ in Counter(r["ref"] for r in ing).most_common(15)]
    labels = refs + ["<other>", "<rejected>"]
    matrix = np.zeros((len(refs), len(labels)), dtype=int)
    for r in ing:
        if r["ref"] in refs:
            hyp = r["hyp"] if r["hyp"] in refs else ("<rejected>" if not r["hyp"] else "<other>")
            matrix[refs.index(r["ref"]), labels.index(hyp)] += 1
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6))
    ax1.imshow(matrix, cmap="Blues")
    ax1.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax1.set_yticks(range(len(refs)), refs, fontsize=7)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax1.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6)
    ax1.set_title(f"confusions (sentence accuracy {_pct(report['sentence_accuracy'])})")
    bins = np.linspace(0, 1, 41)
    ax2.hist([r["confidence"] for r in ing], bins=bins, alpha=0.6, label="in grammar")
    ax2.hist([r["confidence"] for r in rows if not r["in_grammar"]], bins=bins, alpha=0.6, label="out of grammar")
    ax2.set_xlabel("confidence")
    ax2.set_ylabel("clips")
    ax2.legend()
    ax2.set_title(f"false accepts {_pct(report['false_accepts'])}, rejected {_pct(report['rejected_in_grammar'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
