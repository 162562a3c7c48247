"""occrecon: meshes from a photo, a point cloud or a voxel grid with ONet and ConvONet.

Example:
    >>> import occrecon
    >>> model = occrecon.load_model("convonet-points-synthetic")  # doctest: +SKIP
    >>> mesh = occrecon.reconstruct_points(model, "scan.ply")  # doctest: +SKIP
    >>> mesh.export("scan.obj")  # doctest: +SKIP
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from occrecon._lazy import lazy_getattr
from occrecon._version import __version__

# Resolved on first use, see occrecon._lazy.
_EXPORTS = {
    "convert_checkpoint": "occrecon.convert",
    "OccupancyModel": "occrecon.loading",
    "load_model": "occrecon.loading",
    "save_model_folder": "occrecon.loading",
    "ExtractionOptions": "occrecon.options",
    "ModelConfig": "occrecon.config",
    "ReconstructOptions": "occrecon.options",
    "Reconstruction": "occrecon.pipeline",
    "reconstruct": "occrecon.pipeline",
    "reconstruct_image": "occrecon.pipeline",
    "reconstruct_points": "occrecon.pipeline",
    "reconstruct_voxels": "occrecon.pipeline",
    "list_models": "occrecon.registry",
    "sample": "occrecon.sampling",
    "fit_shape": "occrecon.shape_fit",
    "tune_cpu_allocator": "occrecon.allocator",
    "set_threads": "occrecon.threads",
}

if TYPE_CHECKING:
    from occrecon.convert import convert_checkpoint
    from occrecon.allocator import tune_cpu_allocator
    from occrecon.loading import OccupancyModel, load_model, save_model_folder
    from occrecon.config import ModelConfig
    from occrecon.options import ExtractionOptions, ReconstructOptions
    from occrecon.pipeline import (
        Reconstruction,
        reconstruct,
        reconstruct_image,
        reconstruct_points,
        reconstruct_voxels,
    )
    from occrecon.registry import list_models
    from occrecon.shape_fit import fit_shape
    from occrecon.threads import set_threads


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)


def __dir__() -> list[str]:
    submodules = {name for name, value in globals().items() if isinstance(value, ModuleType) and value.__name__.startswith(f"{__name__}.")}
    return sorted(set(__all__) | submodules)


__all__ = [
    "ExtractionOptions",
    "ModelConfig",
    "OccupancyModel",
    "ReconstructOptions",
    "Reconstruction",
    "__version__",
    "convert_checkpoint",
    "fit_shape",
    "list_models",
    "load_model",
    "reconstruct",
    "reconstruct_image",
    "reconstruct_points",
    "reconstruct_voxels",
    "save_model_folder",
    "set_threads",
    "tune_cpu_allocator",
]
