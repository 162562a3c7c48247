"""Module attributes resolved on first use (PEP 562).

``occrecon`` and ``occrecon.nets`` name what they export without importing it: torch
and trimesh take 2-3 s to import, which `occrecon --help`, `occrecon models` or a bare
``import occrecon`` need not pay.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable


def lazy_getattr(package: str, namespace: dict[str, Any], exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: an exported name loads its module, another name its submodule.

    Args:
        package: the package's ``__name__``.
        namespace: its ``globals()``, where each resolved value is kept so it is resolved once.
        exports: exported name -> module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
        elif not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")  # e.g. `occrecon.pipeline` without importing it first
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    return __getattr__
