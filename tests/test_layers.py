"""The layering of the package: which modules may import what."""

from __future__ import annotations

import subprocess
import sys


def test_the_vad_and_the_audio_sources_import_without_torch() -> None:
    # torch set to None in sys.modules makes any `import torch` fail
    code = "import sys; sys.modules['torch'] = None; import vcd.audio_format, vcd.vad, vcd.sources"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
