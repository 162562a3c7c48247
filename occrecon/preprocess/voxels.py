"""Voxel-grid preprocessing for ONet/ConvONet voxel encoders.

The released voxel models take a 32^3 occupancy grid covering the canonical
unit cube ``[-0.5, 0.5]^3`` (Choy's ShapeNetVox32 ``model.binvox`` read with
``fix_coords=True``). Two conventions place the cells in that cube:

* ``"cell_centre"`` (ONet): cell i of R spans ``[-0.5 + i/R, -0.5 + (i+1)/R]``,
  centre ``-0.5 + (i + 0.5)/R``. The cube is exactly the grid's outer boundary.
* ``"linspace"`` (ConvONet's voxel encoder): cell centres at
  ``-0.5 + i/(R - 1)``, so the centres span the cube. The same grid is then
  read slightly larger: canonical = cell_centre * R/(R-1).

Grids of another size are resampled to R (see :func:`resample_occupancy`).
Non-cubic grids are first padded with empty cells, centred, to a cube.
"""

from __future__ import annotations

import numpy as np
import torch

from occrecon.errors import InputError
from occrecon.frames import FrameTransform
from occrecon.io.readers import VoxelGrid

from ._base import PreparedInput

__all__ = ["prepare_voxels", "resample_occupancy", "CONVENTIONS"]

CONVENTIONS = ("cell_centre", "linspace")


def _resample_axis(grid: np.ndarray, axis: int, size: int, length: int | None = None, offset: int = 0) -> np.ndarray:
    """Resample one axis of a bool grid to ``size`` cells.

    Downsampling marks a coarse cell occupied when ANY fine cell overlapping
    it is occupied (max-pooling; exactly a k-wide max-pool when the size
    divides by k). Choy's 32^3 grids were voxelised so that a cell touching the
    surface is filled; "any" keeps thin parts (chair legs) that a
    nearest/majority rule would delete. Upsampling uses nearest neighbour
    (exact replication for integer factors).

    ``length`` and ``offset``: the axis is resampled as if padded with empty cells to ``length``
    cells, its own cells at ``[offset, offset + n)``, without making the padded array (a
    1x1x100000 grid would otherwise become a 100000³ cube).
    """
    n = grid.shape[axis]
    length = n if length is None else length
    if length == size and n == length:
        return grid
    moved = np.moveaxis(grid, axis, 0)
    if size < length:
        # Fine cells overlapping coarse cell j: [floor(j length/size), ceil((j+1) length/size)), less the padding.
        j = np.arange(size)
        starts = np.clip((j * length) // size - offset, 0, n)
        stops = np.clip(-((-(j + 1) * length) // size) - offset, 0, n)
        empty = np.zeros(moved.shape[1:], dtype=bool)
        out = np.stack([moved[a:b].any(axis=0) if b > a else empty for a, b in zip(starts, stops)], axis=0)
        return np.moveaxis(out, 0, axis)
    # Coarse cell containing the centre of fine cell j; padding cells are empty.
    src = np.minimum(((np.arange(size) + 0.5) * length / size).astype(np.int64), length - 1) - offset
    inside = (src >= 0) & (src < n)
    out = np.take(moved, np.clip(src, 0, n - 1), axis=0)
    out[~inside] = False
    return np.moveaxis(out, 0, axis)


def resample_occupancy(grid: np.ndarray, resolution: int) -> np.ndarray:
    """Resample a cubic bool grid to ``resolution``^3, separably along x, y, z.

    Applying the "any" rule per axis gives the same result as over the whole
    3-D block of overlapping cells, because a max over a box is a max of maxes.

    Args:
        grid: (D, D, D) bool.
        resolution: target R.

    Returns:
        (R, R, R) bool.
    """
    out = grid
    for axis in range(3):
        out = _resample_axis(out, axis, resolution)
    return out


def _pad_to_cube(occ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pad a (D, H, W) grid with empty cells, centred, to an (M, M, M) cube.

    Returns:
        (cubic grid, (3,) number of cells added before each axis).
    """
    m = max(occ.shape)
    before = np.array([(m - s) // 2 for s in occ.shape])
    if (np.array(occ.shape) == m).all():
        return occ, before
    pads = [(int(b), int(m - s - b)) for b, s in zip(before, occ.shape)]
    return np.pad(occ, pads, constant_values=False), before


def _frame(grid: VoxelGrid, before: np.ndarray, resolution: int, convention: str) -> FrameTransform:
    """The canonical -> source transform of a (padded, resampled) grid.

    The padded cube spans the source box ``[lower, lower + scale]`` on every
    axis, with ``lower = translate - before * cell`` and ``cell = scale / M``.
    With cell centres at canonical ``-0.5 + (i + 0.5)/R`` this box is the
    canonical cube, so ``source = lower + (canonical + 0.5) * scale``. The
    linspace convention shrinks the canonical positions of the same cells by
    (R - 1)/R about the centre.
    """
    side = max(grid.occupancy.shape)
    cell = grid.scale / side
    lower = np.asarray(grid.translate, dtype=np.float64) - before * cell
    centre = lower + 0.5 * grid.scale
    scale = grid.scale if convention == "cell_centre" else grid.scale * (resolution - 1) / resolution
    return FrameTransform(scale=float(scale), translation=centre)


def prepare_voxels(
    grid: VoxelGrid | np.ndarray,
    *,
    resolution: int = 32,
    convention: str = "cell_centre",
    source: str | None = None,
) -> PreparedInput:
    """Turn an occupancy grid into a network input of ``resolution``^3.

    Args:
        grid: a :class:`~occrecon.io.readers.VoxelGrid` (binvox keeps its world
            frame), or a 3-D array indexed [x, y, z] (bool, or numbers
            thresholded at >= 0.5) that lives in the voxel index frame.
        resolution: the model's grid size R (32 for the released models).
        convention: ``"cell_centre"`` (ONet) or ``"linspace"`` (ConvONet); see
            the module docstring. It only changes the returned transform.
        source: name used in messages (taken from a VoxelGrid when not given).

    Returns:
        :class:`PreparedInput` with tensor (R, R, R) float32 0/1, preview the
        (R, R, R) bool grid, and a transform from canonical to the source frame.

    Raises:
        InputError: not 3-D, or no occupied voxel.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    if not isinstance(grid, VoxelGrid):
        arr = np.asarray(grid)
        if arr.ndim != 3 or arr.dtype.kind not in "biuf":
            raise InputError(source, f"expected a 3-D voxel grid, got shape {arr.shape} dtype {arr.dtype}")
        with np.errstate(invalid="ignore"):
            occ = arr.astype(bool) if arr.dtype.kind == "b" else arr >= 0.5
        grid = VoxelGrid(occ, np.zeros(3), float(max(occ.shape)), source or "", "index")
    source = source or grid.source or None
    occ = np.asarray(grid.occupancy, dtype=bool)
    if occ.ndim != 3:
        raise InputError(source, f"expected a 3-D voxel grid, got shape {occ.shape}")
    if not occ.any():
        raise InputError(source, f"voxel grid {'x'.join(map(str, occ.shape))} has no occupied voxel")

    notes: list[str] = []
    # The grid is padded, centred, to a cube of its longest side, and that cube resampled; the padding
    # is never made (a 1x1x100000 grid from a small file would be a 100000³ cube).
    side = max(occ.shape)
    before = np.array([(side - s) // 2 for s in occ.shape])
    if len(set(occ.shape)) > 1:
        notes.append(f"padded {'x'.join(map(str, occ.shape))} grid to a {side}³ cube (centred)")
    out = occ
    for axis in range(3):
        out = _resample_axis(out, axis, resolution, length=side, offset=int(before[axis]))
    if side != resolution:
        how = "any-occupied max-pool" if side > resolution else "nearest neighbour"
        notes.append(f"resampled {side}³ → {resolution}³ ({how})")
    if out.all():
        notes.append("every voxel is occupied; the grid may not contain a single object")

    transform = _frame(grid, before, resolution, convention)
    tensor = torch.from_numpy(out.astype(np.float32))
    return PreparedInput(tensor=tensor, transform=transform, preview=out, notes=notes)
