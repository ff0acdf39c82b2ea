"""The layering of the package: which modules may import what."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import vcd
from vcd.cli import COMMANDS_GROUP, build_parser

PACKAGE = Path(vcd.__file__).resolve().parent
TRAINING = PACKAGE / "training"


def test_the_runtime_imports_without_the_training_packages() -> None:
    # a module set to None in sys.modules makes any import of it fail
    code = ("import sys\n"
            "for name in ('torch', 'torchaudio', 'tqdm', 'matplotlib'):\n"
            "    sys.modules[name] = None\n"
            "import vcd.audio_format, vcd.vad, vcd.sources, vcd.daemon, vcd.cli, vcd.recognizer, vcd.transcribe\n"
            "import vcd.evaluate, vcd.inference, vcd.features, vcd.audio, vcd.decoder, vcd.grammar, vcd.denoise\n"
            "import vcd_plugins.console, vcd_plugins.mqtt\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# The runtime modules that may import torch: the torch model, used by training (and tests) only.
TORCH_MODULES = {"vcd/model.py"}


def test_only_the_training_side_imports_torch() -> None:
    """Recognition runs on numpy (vcd.inference); torch and torchaudio are the train extra's."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE.parent))
        if TRAINING in path.parents or relative in TORCH_MODULES:
            continue
        for name in sorted(_imported_modules(path)):
            if name.split(".")[0] in ("torch", "torchaudio") or name == "vcd.model":
                offenders.append(f"{relative} imports {name}")
    assert offenders == []


def _imported_modules(path: Path) -> set[str]:
    """The modules that ``path`` imports, however deep in its functions, and by name through importlib."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in ("import_module", "find_spec", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def test_the_runtime_never_imports_the_training_code() -> None:
    """Training may import the runtime, never the reverse: ``vcd train`` comes in through an entry point."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if TRAINING in path.parents:
            continue
        for name in sorted(_imported_modules(path)):
            if name == "vcd.training" or name.startswith("vcd.training."):
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert offenders == []


def test_vcd_train_is_registered_through_the_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group=COMMANDS_GROUP)
    assert {(e.name, e.value) for e in entry_points} >= {("train", "vcd.training.cli:register_commands")}
    assert "train" in build_parser()._subparsers._group_actions[0].choices
