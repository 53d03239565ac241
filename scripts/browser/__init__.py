# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""The pieces of scripts/browser_check.py: a ComfyUI server, page scripts, workflow checks, panel checks."""
