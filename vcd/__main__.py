"""``python -m vcd``: the same as the ``vcd`` command."""

import sys

from vcd.cli import main

sys.exit(main())
