"""The files a run reads and writes, by suffix: named apart from the readers and writers, which import
torch, so that the console scripts' ``--help`` does not."""

from __future__ import annotations

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
# Formats images are written in, and the suffix each is written with.
FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
# The format an input of each suffix is written back in (others: PNG).
SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
