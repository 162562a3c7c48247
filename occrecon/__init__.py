"""occrecon: meshes from a photo, a point cloud or a voxel grid with ONet and ConvONet.

Example:
    >>> import occrecon
    >>> model = occrecon.load_model("convonet-points-synthetic")  # doctest: +SKIP
    >>> mesh = occrecon.reconstruct_points(model, "scan.ply")  # doctest: +SKIP
    >>> mesh.export("scan.obj")  # doctest: +SKIP
"""

from occrecon._version import __version__
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
