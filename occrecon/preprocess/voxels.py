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

Which cells a voxeliser fills is a second convention, the fill rule (:data:`FILL_RULES`):
binvox, and so ShapeNet's grids and every voxels model here, fill a cell when ANY part
of it is inside the object; a grid made by testing cell centres (``mesh.contains(centres)``)
fills one when its CENTRE is inside, which is the same object eroded by half a cell,
with its parts thinner than a cell broken. Read as the binvox rule, such a grid comes
back eroded; :func:`centre_to_any` turns it into the grid the models expect, and
:func:`detect_fill_rule` looks for the evidence a grid can hold of its rule.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from occrecon.errors import InputError
from occrecon.frames import FrameTransform
from occrecon.io.readers import VoxelGrid

from ._base import PreparedInput

__all__ = ["prepare_voxels", "resample_occupancy", "centre_to_any", "cell_samples", "detect_fill_rule", "CONVENTIONS", "FILL_RULES"]

CONVENTIONS = ("cell_centre", "linspace")
FILL_RULES = ("any", "centre", "auto")
"""How a grid's cells were filled: ``any`` part inside (binvox's rule, the models'), the ``centre``
inside, or ``auto``: a binvox file's rule is binvox's; an array's is looked for in the grid."""

#: Diagonal-only contacts per surface cell above which a grid counts as centre-filled (see
#: :func:`detect_fill_rule`). Chosen on generated shapes 0-95 (generator seed 0) voxelised both ways
#: at 32³: 4% of binvox-rule grids and 29% of centre-rule grids reach it.
DIAGONAL_CONTACTS_PER_SURFACE_CELL = 0.003
#: Sources up to this many times the model's grid are converted; a finer centre-rule grid is
#: max-pooled into cells that its centres sample densely, which is close to the binvox rule.
FILL_RULE_MAX_FACTOR = 2
#: A centre-rule grid's cells that the encoding is fitted to (see :func:`cell_samples`): at most
#: this many next to the surface, and this many others.
SURFACE_SAMPLES = 16384
OTHER_SAMPLES = 4096


def centre_to_any(occ: np.ndarray) -> np.ndarray:
    """The binvox-rule grid that a centre-rule grid stands for, as float32 occupancies in [0, 1].

    Every cell whose centre is inside is touched by the object, so it stays 1. An empty cell is
    touched when the surface reaches into it from a filled neighbour, which its face neighbours say:

    * two or more filled: the surface wraps round the cell (a concave edge or corner): 1;
    * one: the surface crosses the segment between the two centres somewhere, and the cells'
      shared face halves it: 0.5, the network's input half-way between empty and filled;
    * none (filled neighbours across an edge or a corner only): 0.

    On generated shapes 0-95 (generator seed 0) voxelised both ways at 32³, the binvox rule
    filled 98.3%, 54.5% and 10.2% of such cells.
    """
    grid = np.asarray(occ, dtype=bool)
    faces = ndimage.convolve(grid.astype(np.uint8), ndimage.generate_binary_structure(3, 1).astype(np.uint8), mode="constant")
    faces -= grid  # the convolution counted the cell itself
    touched = np.where(faces >= 2, 1.0, np.where(faces == 1, 0.5, 0.0))
    return np.where(grid, 1.0, touched).astype(np.float32)


def cell_samples(grid: VoxelGrid, occ: np.ndarray, transform: FrameTransform) -> tuple[np.ndarray, np.ndarray]:
    """A centre-rule grid's cells as what they are, exact samples of the object's occupancy at their centres.

    The cells within one of the surface (where the field has to be right) come first, then a
    few others; larger sets are cut to seeded subsets of :data:`SURFACE_SAMPLES` and
    :data:`OTHER_SAMPLES`.

    Returns:
        ((n, 3) float32 centres in the canonical frame of ``transform``, (n,) bool filled).
    """
    block = ndimage.generate_binary_structure(3, 3)
    near = ndimage.binary_dilation(occ, block) & ~ndimage.binary_erosion(occ, block, border_value=0)
    rng = np.random.default_rng(0)
    chosen = []
    for cells, count in ((np.flatnonzero(near), SURFACE_SAMPLES), (np.flatnonzero(~near), OTHER_SAMPLES)):
        chosen.append(cells if len(cells) <= count else np.sort(rng.choice(cells, count, replace=False)))
    index = np.concatenate(chosen)
    ijk = np.stack(np.unravel_index(index, occ.shape), axis=-1)
    centres = np.asarray(grid.translate, dtype=np.float64) + (ijk + 0.5) * (grid.scale / max(occ.shape))
    return transform.to_canonical(centres).astype(np.float32), occ.reshape(-1)[index]


def _diagonal_contacts(grid: np.ndarray) -> int:
    """Pairs of filled cells that meet only along an edge: in a 2x2 block of an axis plane, one diagonal filled and the other empty."""
    count = 0
    for a, b in ((0, 1), (0, 2), (1, 2)):
        def block(i: int, j: int) -> np.ndarray:
            index = [slice(None)] * 3
            index[a] = slice(i, grid.shape[a] - 1 + i)
            index[b] = slice(j, grid.shape[b] - 1 + j)
            return grid[tuple(index)]

        p00, p11, p01, p10 = block(0, 0), block(1, 1), block(0, 1), block(1, 0)
        count += int(np.count_nonzero(p00 & p11 & ~p01 & ~p10) + np.count_nonzero(p01 & p10 & ~p00 & ~p11))
    return count


def detect_fill_rule(occ: np.ndarray) -> tuple[str, str]:
    """``("centre", evidence)`` where the grid shows the centre rule, else ``("any", why not)``.

    The binvox rule fills every cell a part passes through, so a connected object gives cells
    joined through their faces. The centre rule keeps only the cells of a thin part (a leg, a
    wire, a wing) whose centres it covers: cells that meet along an edge and nothing else, and
    pieces that touch the rest at a corner. A grid of thick parts holds no such evidence (the
    centre rule of an object is the binvox rule of the object eroded by half a cell), and is
    taken for the binvox rule. On held-out generated shapes (2240-2303, generator seed 0) at
    32³ this found 23% of the centre-rule grids and took 3% of the binvox-rule grids for centre-rule.
    """
    grid = np.asarray(occ, dtype=bool)
    surface = int(np.count_nonzero(grid & ~ndimage.binary_erosion(grid, ndimage.generate_binary_structure(3, 1))))
    contacts = _diagonal_contacts(grid)
    if contacts > DIAGONAL_CONTACTS_PER_SURFACE_CELL * max(surface, 1):
        return "centre", f"{contacts} pairs of cells meet only along an edge, as the centre rule leaves thin parts"
    _, by_faces = ndimage.label(grid, ndimage.generate_binary_structure(3, 1))
    _, by_corners = ndimage.label(grid, ndimage.generate_binary_structure(3, 3))
    if by_faces > by_corners:
        return "centre", f"{by_faces - by_corners} pieces touch the rest only at an edge or a corner, as the centre rule leaves thin parts"
    return "any", "the grid shows no thin part broken the centre rule's way"


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
        # The max of bools is their "any"; occupancies in [0, 1] (a converted centre-rule grid) pool the same way.
        j = np.arange(size)
        starts = np.clip((j * length) // size - offset, 0, n)
        stops = np.clip(-((-(j + 1) * length) // size) - offset, 0, n)
        empty = np.zeros(moved.shape[1:], dtype=moved.dtype)
        out = np.stack([moved[a:b].max(axis=0) if b > a else empty for a, b in zip(starts, stops)], axis=0)
        return np.moveaxis(out, 0, axis)
    # Coarse cell containing the centre of fine cell j; padding cells are empty.
    src = np.minimum(((np.arange(size) + 0.5) * length / size).astype(np.int64), length - 1) - offset
    inside = (src >= 0) & (src < n)
    out = np.take(moved, np.clip(src, 0, n - 1), axis=0)
    out[~inside] = 0
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


def _fill_rule(grid: VoxelGrid, occ: np.ndarray, fill_rule: str, resolution: int) -> tuple[str, list[str]]:
    """The rule to read ``occ`` by (``any`` or ``centre``) for ``fill_rule`` (one of :data:`FILL_RULES`), and notes on the choice."""
    if fill_rule not in FILL_RULES:
        raise ValueError(f"fill_rule must be one of {FILL_RULES}, got {fill_rule!r}")
    side = max(occ.shape)
    if fill_rule == "any" or (fill_rule == "auto" and grid.convention == "binvox"):
        return "any", []  # a binvox file's cells were filled by binvox's rule, the models' own
    if side > FILL_RULE_MAX_FACTOR * resolution:
        told = [f"--fill-rule centre: a {side}³ grid is pooled into {resolution}³ cells its centres sample finely, which the model reads as it is"]
        return "any", told if fill_rule == "centre" else []
    if fill_rule == "centre":
        return "centre", ["read as filled by the centre rule (--fill-rule centre): surface cells added where the object must touch them"]
    rule, why = detect_fill_rule(occ)
    if rule == "centre":
        return "centre", [f"read as filled by the centre rule: {why}; --fill-rule any if its cells were filled wherever the object touches them"]
    return "any", [f"read as filled by the binvox rule (a cell filled when any part of it is inside): {why}; --fill-rule centre if cells were filled when their centre is inside"]


def prepare_voxels(
    grid: VoxelGrid | np.ndarray,
    *,
    resolution: int = 32,
    convention: str = "cell_centre",
    source: str | None = None,
    fill_rule: str = "any",
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
        fill_rule: how the grid's cells were filled (:data:`FILL_RULES`): ``any`` (binvox's
            rule, what the models take), ``centre`` (turned into binvox's by :func:`centre_to_any`
            first), or ``auto`` (a binvox file: ``any``; an array: :func:`detect_fill_rule`).

    Returns:
        :class:`PreparedInput` with tensor (R, R, R) float32 0/1 (and 0.5 where a
        centre-rule grid's surface was uncertain), preview the (R, R, R) bool grid of
        cells at 0.5 or more, and a transform from canonical to the source frame.

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

    rule, notes = _fill_rule(grid, occ, fill_rule, resolution)
    values = centre_to_any(occ) if rule == "centre" else occ
    # The grid is padded, centred, to a cube of its longest side, and that cube resampled; the padding
    # is never made (a 1x1x100000 grid from a small file would be a 100000³ cube).
    side = max(occ.shape)
    before = np.array([(side - s) // 2 for s in occ.shape])
    if len(set(occ.shape)) > 1:
        notes.append(f"padded {'x'.join(map(str, occ.shape))} grid to a {side}³ cube (centred)")
    out = values
    for axis in range(3):
        out = _resample_axis(out, axis, resolution, length=side, offset=int(before[axis]))
    if side != resolution:
        how = "any-occupied max-pool" if side > resolution else "nearest neighbour"
        notes.append(f"resampled {side}³ → {resolution}³ ({how})")
    seen = out >= 0.5  # the cells the network takes as filled (a converted grid holds halves)
    if seen.all():
        notes.append("every voxel is occupied; the grid may not contain a single object")

    transform = _frame(grid, before, resolution, convention)
    tensor = torch.from_numpy(out.astype(np.float32))
    samples = cell_samples(grid, occ, transform) if rule == "centre" else None
    return PreparedInput(tensor=tensor, transform=transform, preview=seen, notes=notes, samples=samples)
