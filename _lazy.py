"""Names a package exports on first use (PEP 562): importing the package stays cheap, and the module
that defines a name is imported when the name is first read."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, modules: dict[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package`` that resolves each name of ``modules`` (name -> relative
    module) by importing its module."""

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(modules[name], package), name)

    return __getattr__
