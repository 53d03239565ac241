#!/usr/bin/env bash
# Create .venv with torch and this package (editable, with its test extra).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -e ".[test]"
# The official CodeFormer code (S-Lab licence), an oracle for the tests only, never imported by the
# package: without its pins (tb-nightly, gdown, opencv-python) and with only what its facelib,
# basicsr and inference script import (lpips, lmdb, pyyaml: the test extra).
.venv/bin/python -m pip install --quiet --no-deps codeformer-pip==0.0.4 lpips==0.1.4
