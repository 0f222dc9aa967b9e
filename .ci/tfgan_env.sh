#!/usr/bin/env bash
# Run tests/test_metrics_tfgan.py in a TensorFlow 2.15.1 virtual environment.
#
# tensorflow-gan 2.1.0 does not import on TensorFlow 2.16 or newer, so the comparison
# with it needs its own environment. The venv is created at ${TFGAN_VENV:-.venv-tfgan}
# (relative to the repository root) if it is missing and reused otherwise. pip is
# run every time, but it installs nothing when the pins are already satisfied.
# Exits non-zero if the install or a test fails.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
venv="${TFGAN_VENV:-.venv-tfgan}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "Creating the tensorflow-gan venv at $venv"
    python3 -m venv "$venv"
fi

# tensorflow-probability 0.23 requires TensorFlow >= 2.15 at import, and TensorFlow
# 2.15.1 requires numpy < 2. None of these packages depends on tensorflow-metadata.
# Its pin keeps it from pulling protobuf >= 4.25, which version 1.15 requires on
# Python 3.11 and newer.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "tensorflow==2.15.1" \
    "tensorflow-probability==0.23.0" \
    "tensorflow-metadata<1.15" \
    "tensorflow-gan==2.1.0" \
    "numpy<2" \
    scipy \
    pytest

# REQUIRE_TFGAN=1 makes the test file fail instead of skipping if tensorflow-gan does not import.
REQUIRE_TFGAN=1 PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m pytest -q tests/test_metrics_tfgan.py
