"""occrecon: meshes from a photo, a point cloud or a voxel grid with ONet and ConvONet.

Example:
    >>> import occrecon
    >>> model = occrecon.load_model("convonet-points-synthetic")  # doctest: +SKIP
    >>> mesh = occrecon.reconstruct_points(model, "scan.ply")  # doctest: +SKIP
    >>> mesh.export("scan.obj")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING, Any

from occrecon._version import __version__

# Imported on first use (PEP 562): torch and trimesh take 2-3 s to import, which
# `occrecon --help`, `occrecon models` or a bare `import occrecon` need not pay.
_EXPORTS = {
    "convert_checkpoint": "occrecon.convert",
    "OccupancyModel": "occrecon.loading",
    "load_model": "occrecon.loading",
    "save_model_folder": "occrecon.loading",
    "ExtractionOptions": "occrecon.pipeline",
    "Reconstruction": "occrecon.pipeline",
    "reconstruct": "occrecon.pipeline",
    "reconstruct_image": "occrecon.pipeline",
    "reconstruct_points": "occrecon.pipeline",
    "reconstruct_voxels": "occrecon.pipeline",
    "list_models": "occrecon.registry",
}

if TYPE_CHECKING:
    from occrecon.convert import convert_checkpoint
    from occrecon.loading import OccupancyModel, load_model, save_model_folder
    from occrecon.pipeline import (
        ExtractionOptions,
        Reconstruction,
        reconstruct,
        reconstruct_image,
        reconstruct_points,
        reconstruct_voxels,
    )
    from occrecon.registry import list_models


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # `occrecon.pipeline` without importing it first
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    submodules = {name for name, value in globals().items() if isinstance(value, ModuleType) and value.__name__.startswith(f"{__name__}.")}
    return sorted(set(__all__) | submodules)


__all__ = [
    "ExtractionOptions",
    "OccupancyModel",
    "Reconstruction",
    "__version__",
    "convert_checkpoint",
    "list_models",
    "load_model",
    "reconstruct",
    "reconstruct_image",
    "reconstruct_points",
    "reconstruct_voxels",
    "save_model_folder",
]
