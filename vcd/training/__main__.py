"""``python -m vcd.training DATA_DIR WORK_DIR`` — the same as ``vcd train``."""

from vcd.asr_cli import main_train

raise SystemExit(main_train())
