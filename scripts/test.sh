#!/usr/bin/env bash
# Install (scripts/install.sh) and run the whole test suite; arguments go to pytest.
#
#   scripts/test.sh                      # everything
#   scripts/test.sh tests/test_mqtt.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest -q "$@"
