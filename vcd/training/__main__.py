"""``python -m vcd.training [OPTION...]``: the same as ``vcd train``."""

from vcd.training.cli import main_train

raise SystemExit(main_train())
