"""ComfyUI node pack: thin adapters over the library."""

from . import host
from .codeformer import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

_missing = host.missing_host_api()
if _missing:
    host.LOG.error(
        "codeformer-nodes: this ComfyUI lacks %s; update ComfyUI to 0.3.60 or newer. The CodeFormer nodes are "
        "not loaded.",
        ", ".join(_missing),
    )
    NODE_CLASS_MAPPINGS = {}
    NODE_DISPLAY_NAME_MAPPINGS = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
