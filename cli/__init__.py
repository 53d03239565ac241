"""Command-line tools for render pipelines that run without ComfyUI."""
