"""Turn an image, point cloud or voxel grid into exactly what a model expects.

Each path returns a :class:`PreparedInput`: the network tensor (no batch
dimension), the :class:`~occrecon.frames.FrameTransform` that maps the model's
canonical frame back to the input's frame, a preview of what the network saw,
and user-facing notes. :func:`prepare_input` dispatches on the input kind using
the model config's ``input`` block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image

from occrecon.config import InputSpec
from occrecon.errors import InputError
from occrecon.io.readers import PointCloud, VoxelGrid, read_image, read_points, read_voxels

from ._base import PreparedInput
from .image import DEFAULT_MARGIN, prepare_image
from .points import normalize_points, prepare_points
from .voxels import prepare_voxels, resample_occupancy

__all__ = [
    "PreparedInput",
    "prepare_input",
    "prepare_image",
    "prepare_points",
    "prepare_voxels",
    "normalize_points",
    "resample_occupancy",
    "DEFAULT_MARGIN",
    "KINDS",
]

KINDS = ("image", "points", "voxels")

Source = str | Path | np.ndarray | Image.Image | PointCloud | VoxelGrid


def _is_path(source: Source) -> bool:
    return isinstance(source, (str, Path))


def _image(source: Source, spec: InputSpec, mask: Any, seed: int | None) -> PreparedInput:
    name = str(source) if _is_path(source) else None
    image = read_image(source) if _is_path(source) else source
    return prepare_image(
        image,
        size=spec.image_size,
        mask=mask,
        margin=spec.margin,
        background=spec.background,
        render_size=spec.render_size,
        source=name,
    )


def _points(source: Source, spec: InputSpec, mask: Any, seed: int | None) -> PreparedInput:
    cloud = read_points(source) if _is_path(source) else source
    return prepare_points(
        cloud,
        n_points=spec.n_points,
        noise=spec.noise,
        seed=seed,
        normalize=spec.normalize,
        source=str(source) if _is_path(source) else None,
    )


def _voxels(source: Source, spec: InputSpec, mask: Any, seed: int | None, fill_rule: str = "any") -> PreparedInput:
    grid = read_voxels(source) if _is_path(source) else source
    return prepare_voxels(grid, resolution=spec.resolution, convention=spec.convention, source=str(source) if _is_path(source) else None, fill_rule=fill_rule)


_PREPARERS: dict[str, Callable[[Source, InputSpec, Any, int | None], PreparedInput]] = {
    "image": _image,
    "points": _points,
    "voxels": _voxels,
}


def prepare_input(
    kind: str,
    source: Source,
    input_spec: InputSpec | Mapping[str, Any],
    *,
    mask: np.ndarray | str | Path | None = None,
    seed: int | None = 0,
    fill_rule: str = "any",
) -> PreparedInput:
    """Read (if given a path) and preprocess one input for a model.

    Args:
        kind: ``"image"``, ``"points"`` or ``"voxels"``.
        source: a file path, or an in-memory image / (n, 3) array / 3-D grid /
            :class:`PointCloud` / :class:`VoxelGrid`.
        input_spec: the model's :class:`~occrecon.config.InputSpec` (``model.input_spec``),
            or a config's input block as a dict, e.g.
            ``{"kind": "points", "n_points": 3000, "noise": 0.005}``.
        mask: optional object mask (array or file) for images.
        seed: RNG seed for point subsampling and noise (None: fresh randomness).
        fill_rule: voxel grids: how their cells were filled, ``any``, ``centre`` or ``auto``
            (see :func:`~occrecon.preprocess.voxels.prepare_voxels`).

    Returns:
        The :class:`PreparedInput`.

    Raises:
        InputError: the input is unusable, or the model takes another kind of input.
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in _PREPARERS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(input_spec, InputSpec):
        input_spec = InputSpec.from_dict({"kind": kind, **input_spec})
    wanted = input_spec.kind
    if wanted != kind:
        name = str(source) if _is_path(source) else None
        raise InputError(name, f"this model takes {wanted} input, not {kind}")
    if mask is not None and kind != "image":
        raise ValueError("mask only applies to image inputs")
    if kind == "voxels":
        return _voxels(source, input_spec, mask, seed, fill_rule)
    return _PREPARERS[kind](source, input_spec, mask, seed)
