"""Upstream's MISE, reproduced point for point (``--mise upstream``, ``mise_rule="upstream"``).

occrecon's own MISE (:mod:`occrecon.extract.mise`) subdivides a cell only when its eight
corners straddle the threshold, runs exactly ``1 + upsampling_steps`` rounds, and
interpolates the lattice points it never evaluated. Upstream's libmise
(``im2mesh/utils/libmise/mise.pyx``, upstream.md §3.2) keeps an octree and differs in
three ways that change the mesh:

1. a leaf cell is subdivided when any *known* lattice point on its closed box lies at or
   above the threshold and one lies at or below it: its corners, and also the finer
   points that a subdivided neighbour put on their shared faces and edges;
2. so a cell left whole in one round can be subdivided in a later one, and the rounds
   go on until no lattice point is left to evaluate (often more than ``1 + steps``);
3. a lattice point never evaluated takes the value before it along x, then y, then z.

This module reproduces that rule with dense masks of the fine lattice (no octree). The
points of each round are also queried in upstream's order (the order in which its octree
creates them) and cut into the same batches, because the network is not bit-for-bit
independent of its batch: ONet's decoder gives a point last-bit-different logits in a
batch of another size. With the same network arithmetic (see
:func:`occrecon.nets.upstream_arithmetic`) the lattice values, and so the mesh, are then
upstream's exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from occrecon.extract.mise import GridValues, QueryFn, box_bounds, cells_near, evaluate_in_batches

# The 8 children and the 27 lattice points of a subdivided cell, in upstream's (i, j, k) loop order.
_CHILDREN = np.array([(i, j, k) for i in range(2) for j in range(2) for k in range(2)], dtype=np.int64)
_POINTS_27 = np.array([(i, j, k) for i in range(3) for j in range(3) for k in range(3)], dtype=np.int64)


def upstream_logit(probability: float) -> float:
    """The threshold in logits as upstream computes it (``log(p) - log(1 - p)``, not ``log1p``), so a
    value on the threshold's last bit falls on the same side."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"threshold must be a probability strictly between 0 and 1, got {probability}")
    return float(np.log(probability) - np.log(1.0 - probability))


def upstream_query_points(indices: np.ndarray, resolution: int, lower: np.ndarray, upper: np.ndarray, float32_arithmetic: bool) -> np.ndarray:
    """(n, 3) float32 positions of fine-lattice ``indices``, rounded as upstream's generator rounds them.

    ONet's generator scales the indices in float32 (``FloatTensor(points) / R``, then
    ``box_size * (p - 0.5)``); ConvONet's in float64 and rounds to float32 once. The two
    differ in the last bit of about a third of the points, which is enough to change a
    logit's last bit, so the family's own arithmetic is kept. ``lower`` and ``upper``
    are the box (upstream: ``±box_size / 2``); its centre is added last, which is exact
    for upstream's box centred at 0.
    """
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    centre, size = (lower + upper) / 2, upper - lower
    if float32_arithmetic:
        unit = indices.astype(np.float32) / np.float32(resolution)
        return size.astype(np.float32) * (unit - np.float32(0.5)) + centre.astype(np.float32)
    return (size * (indices / resolution - 0.5) + centre).astype(np.float32)


class MiseOctree:
    """Upstream's MISE octree with libmise's interface: ``query()``, ``update(points, values)``, ``to_dense()``.

    Kept as dense masks of the fine lattice plus the list of leaf cells that may still split,
    instead of upstream's voxel vector and point hash; what it queries, in which order, and
    what ``to_dense`` returns are upstream's (``tests/test_mise_upstream.py`` checks them
    against a literal port). Loop as upstream's generator does::

        octree = MiseOctree(32, 2, threshold)
        points = octree.query()
        while len(points):
            octree.update(points, field(points))
            points = octree.query()
        values = octree.to_dense()

    Args:
        resolution0: coarse cells per axis.
        depth: subdivision levels (``upsampling_steps``, at least 1); the fine lattice has
            ``resolution0 * 2**depth`` cells per axis.
        threshold: iso-level in logits (:func:`upstream_logit`).
    """

    def __init__(self, resolution0: int, depth: int, threshold: float) -> None:
        if resolution0 < 1 or depth < 1:
            raise ValueError("resolution0 and depth must be >= 1")
        self.resolution0, self.depth, self.threshold = resolution0, depth, float(threshold)
        size0 = 1 << depth
        self.resolution = resolution0 * size0
        # Leaf cells below the finest level: fine-lattice corner, level (0: coarse) and index in
        # upstream's voxel list (its creation order, which orders the subdivisions).
        self.leaf_loc = np.indices((resolution0,) * 3).reshape(3, -1).T * size0
        self.leaf_level = np.zeros(len(self.leaf_loc), dtype=np.int64)
        self.leaf_order = np.arange(len(self.leaf_loc), dtype=np.int64)
        self.created = len(self.leaf_loc)
        self.values = np.full((self.resolution + 1,) * 3, np.nan)  # NaN: no lattice point there (yet)
        self.exists = np.zeros(self.values.shape, dtype=bool)
        self._pending = np.indices((resolution0 + 1,) * 3).reshape(3, -1).T * size0
        self.exists[tuple(self._pending.T)] = True
        self._forced: np.ndarray | None = None

    def query(self) -> np.ndarray:
        """(n, 3) int64 fine-lattice indices still to evaluate, in upstream's order."""
        return self._pending

    def force_coarse(self, cells: np.ndarray) -> None:
        """Also split these coarse cells ((resolution0,)*3 bool) at the first subdivision (occrecon's anchors)."""
        self._forced = cells[tuple((self.leaf_loc >> self.depth).T)]

    def update(self, points: np.ndarray, values: np.ndarray) -> None:
        """Set the values of the queried ``points``, then split the cells the surface may cross."""
        self.values[tuple(np.asarray(points).T)] = np.asarray(values, dtype=np.float64)
        self._pending = self._subdivide(self._to_split())
        self._forced = None

    def to_dense(self) -> np.ndarray:
        """(R+1)³ float64 values; points never created take the value before them along x, then y, then z."""
        return fill_forward(self.values)

    def _to_split(self) -> np.ndarray:
        """Indices into the leaf list of the leaves upstream splits now, in its voxel-list order."""
        above = _touched(self.values >= self.threshold, self.depth)  # NaN (no point) compares false
        below = _touched(self.values <= self.threshold, self.depth)
        split = np.zeros(len(self.leaf_loc), dtype=bool)
        for level in np.unique(self.leaf_level):
            rows = np.flatnonzero(self.leaf_level == level)
            cell = tuple((self.leaf_loc[rows] >> (self.depth - level)).T)
            split[rows] = above[level][cell] & below[level][cell]
        if self._forced is not None:
            split |= self._forced
        rows = np.flatnonzero(split)
        return rows[np.argsort(self.leaf_order[rows], kind="stable")]

    def _subdivide(self, rows: np.ndarray) -> np.ndarray:
        """Split the leaves ``rows`` (in order) and return the lattice points that creates, in upstream's order."""
        loc, level = self.leaf_loc[rows], self.leaf_level[rows]
        half = (1 << (self.depth - level - 1))[:, None, None]
        children = (loc[:, None] + _CHILDREN[None] * half).reshape(-1, 3)
        child_level = np.repeat(level + 1, 8)
        child_order = self.created + np.arange(len(children), dtype=np.int64)
        self.created += len(children)
        keep = np.ones(len(self.leaf_loc), dtype=bool)
        keep[rows] = False
        splittable = child_level < self.depth  # finest-level cells never split: no need to keep them
        self.leaf_loc = np.concatenate([self.leaf_loc[keep], children[splittable]])
        self.leaf_level = np.concatenate([self.leaf_level[keep], child_level[splittable]])
        self.leaf_order = np.concatenate([self.leaf_order[keep], child_order[splittable]])

        candidates = (loc[:, None] + _POINTS_27[None] * half).reshape(-1, 3)
        flat = np.ravel_multi_index(tuple(candidates.T), self.exists.shape)
        fresh = ~self.exists.reshape(-1)[flat]
        candidates, flat = candidates[fresh], flat[fresh]
        # A point shared by two cells split in this round is created by the first of them.
        _, first = np.unique(flat, return_index=True)
        points = candidates[np.sort(first)]
        self.exists[tuple(points.T)] = True
        return points


def _touched(known_side: np.ndarray, depth: int) -> list[np.ndarray]:
    """Per level, which cells hold a fine cell next to a point of ``known_side`` ((R+1)³ bool).

    Upstream marks, for every known point, the leaf cell holding each of the 8 fine cells
    around it; a leaf is marked when any fine cell inside it is next to such a point, i.e.
    when such a point lies on the leaf's closed box.
    """
    r = known_side.shape[0] - 1
    near = np.zeros((r,) * 3, dtype=bool)
    for dx, dy, dz in _CHILDREN:
        near |= known_side[dx : dx + r, dy : dy + r, dz : dz + r]
    levels = [near]
    for _ in range(depth):
        finer = levels[0]
        coarser = finer[0::2, 0::2, 0::2].copy()
        for dx, dy, dz in _CHILDREN[1:]:  # strided ORs: several times faster than any() over a 6-D reshape
            coarser |= finer[dx::2, dy::2, dz::2]
        levels.insert(0, coarser)
    return levels


def fill_forward(values: np.ndarray) -> np.ndarray:
    """Upstream's ``to_dense``: a NaN takes the value before it along x, then along y, then along z."""
    out = np.array(values, dtype=np.float64, copy=True)
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = out.shape[axis]
        position = np.arange(out.shape[axis]).reshape(shape)
        source = np.where(np.isnan(out), 0, position)
        np.maximum.accumulate(source, axis=axis, out=source)
        out = np.take_along_axis(out, source, axis=axis)
    return out


@dataclass(frozen=True)
class UpstreamMise:
    """How :func:`extract_grid_upstream` meshes: the lattice, the box, batching and the coordinate rounding.

    Attributes:
        resolution0: coarse cells per axis.
        upsampling_steps: octree depth (0: upstream's dense grid of ``resolution0`` points per axis).
        threshold: iso-level in logits (:func:`upstream_logit`).
        lower, upper: (3,) box corners; default upstream's ±0.55.
        batch_size: points per network call (upstream: 100,000).
        float32_arithmetic: scale lattice indices in float32 as ONet's generator does
            (False: in float64 as ConvONet's; see :func:`upstream_query_points`).
    """

    resolution0: int = 32
    upsampling_steps: int = 2
    threshold: float = 0.0
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    batch_size: int = 100_000
    float32_arithmetic: bool = False

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        lower, upper = box_bounds()
        return (np.asarray(lower if self.lower is None else self.lower, np.float64), np.asarray(upper if self.upper is None else self.upper, np.float64))


def extract_grid_upstream(
    query_fn: QueryFn,
    settings: UpstreamMise,
    *,
    anchors: np.ndarray | None = None,
    on_level: Callable[[int, int], None] | None = None,
) -> GridValues:
    """Evaluate a field with upstream's MISE rule and return its dense lattice (see the module's notes).

    Args:
        query_fn: ``(n, 3) float32 -> (n,)`` logits, inside positive.
        settings: lattice, box, threshold and batching (:class:`UpstreamMise`).
        anchors: (m, 3) points the surface passes near: the coarse cells around them are
            also split in the first subdivision (occrecon's ``--anchor-points``; upstream has none).
        on_level: called as ``on_level(round, n_points)`` before each round of evaluations.

    Returns:
        ``GridValues`` with float64 values; ``n_levels`` is the number of rounds.

    Example:
        >>> sphere = lambda p: 0.3 - np.linalg.norm(p, axis=1)
        >>> grid = extract_grid_upstream(sphere, UpstreamMise(resolution0=8, upsampling_steps=2))
        >>> grid.values.shape, grid.n_levels >= 3
        ((33, 33, 33), True)
    """
    if settings.resolution0 < 2 or settings.upsampling_steps < 0:
        raise ValueError("resolution0 must be >= 2 and upsampling_steps >= 0")
    lower, upper = settings.box()
    if settings.upsampling_steps == 0:
        return _dense_upstream(query_fn, settings, lower, upper)
    octree = MiseOctree(settings.resolution0, settings.upsampling_steps, settings.threshold)
    if anchors is not None and len(anchors):
        octree.force_coarse(cells_near(anchors, lower, (upper - lower) / settings.resolution0, settings.resolution0))
    n_evals, rounds = 0, 0
    points = octree.query()
    while len(points):
        if on_level:
            on_level(rounds, len(points))
        coords = upstream_query_points(points, octree.resolution, lower, upper, settings.float32_arithmetic)
        octree.update(points, evaluate_in_batches(query_fn, coords, settings.batch_size))
        n_evals, rounds = n_evals + len(points), rounds + 1
        points = octree.query()
    return GridValues(values=octree.to_dense(), lower=lower, upper=upper, n_evaluations=n_evals, n_levels=rounds)


def _dense_upstream(query_fn: QueryFn, settings: UpstreamMise, lower: np.ndarray, upper: np.ndarray) -> GridValues:
    """Upstream without subdivision: ``resolution0`` points per axis (not ``+ 1``), spaced by ``torch.linspace`` in float32."""
    import torch  # upstream spaces these points with torch.linspace; its rounding is what is reproduced

    n = settings.resolution0
    axes = [float(hi - lo) * torch.linspace(-0.5, 0.5, n) + float((lo + hi) / 2) for lo, hi in zip(lower, upper)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3).numpy()
    values = evaluate_in_batches(query_fn, grid, settings.batch_size).astype(np.float64)
    return GridValues(values=values.reshape(n, n, n), lower=lower, upper=upper, n_evaluations=len(grid), n_levels=1)
