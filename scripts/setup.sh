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
# GFPGAN's own inference (GFPGANer, Apache-2.0), the oracle of tests/test_face_restorers.py, never imported by
# the package: without its pins (basicsr's opencv, tb-nightly, the Real-ESRGAN stack); basicsr's setup.py imports
# torch, so it builds in this environment.
.venv/bin/python -m pip install --quiet --no-deps gfpgan==1.3.8
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation basicsr==1.4.2
