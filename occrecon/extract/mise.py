"""Multiresolution iso-surface extraction (ONet's "MISE"), vectorised.

The network is the expensive part of turning an occupancy field into a mesh, so
the field is evaluated on a coarse lattice first and only the cells that the
surface crosses are subdivided, level after level. Unlike upstream's Cython
octree this works on dense per-level numpy masks: every level is a handful of
array operations, and the network sees large batches.

Conventions (upstream.md §3.2):
    * the fine lattice has ``R = resolution0 * 2**upsampling_steps`` cells and
      ``R + 1`` points per axis, spanning the box ``[lo, hi]`` on each axis;
    * a cell is subdivided when at least one corner is ``>= threshold`` and one is
      ``<= threshold`` (the comparison is on logits);
    * points that were never evaluated lie inside cells whose corners share one
      side of the threshold. Upstream copies neighbouring values into them; here
      they get the trilinear interpolation of the coarser lattice, which keeps
      the side of the threshold and makes no faces where nothing was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

QueryFn = Callable[[np.ndarray], np.ndarray]
"""``query_fn(points (n, 3) float32) -> (n,) logits``: the field to extract."""


@dataclass
class GridValues:
    """Field values on the fine lattice plus how they were obtained.

    Attributes:
        values: (R+1, R+1, R+1) float32 (float64 from :func:`~occrecon.extract.mise_upstream.extract_grid_upstream`,
            as upstream keeps them), indexed ``[x, y, z]``.
        lower: (3,) float64, world position of lattice point (0, 0, 0).
        upper: (3,) float64, world position of lattice point (R, R, R).
        n_evaluations: number of points the field was evaluated at.
        n_levels: number of evaluation rounds.
    """

    values: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n_evaluations: int
    n_levels: int

    @property
    def resolution(self) -> int:
        return self.values.shape[0] - 1


def probability_to_logit(probability: float) -> float:
    """Convert an occupancy probability threshold to the logit it corresponds to.

    Example:
        >>> round(probability_to_logit(0.2), 3)
        -1.386
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"threshold must be a probability strictly between 0 and 1, got {probability}")
    return float(np.log(probability) - np.log1p(-probability))


def box_bounds(padding: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The query box of unit-cube models: ``[-0.5, 0.5]³`` grown by ``padding`` (total).

    Returns:
        lower, upper: (3,) float64 each; ``±0.55`` for the default padding 0.1.
    """
    half = 0.5 * (1.0 + padding)
    return np.full(3, -half), np.full(3, half)


def lattice_points(indices: np.ndarray, resolution: int, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """World coordinates of integer lattice points.

    Args:
        indices: (n, 3) int, lattice indices in ``[0, resolution]``.
        resolution: number of cells per axis.
        lower, upper: (3,) box corners matched by index 0 and ``resolution``.

    Returns:
        (n, 3) float32 positions.
    """
    step = (np.asarray(upper, np.float64) - np.asarray(lower, np.float64)) / resolution
    return (np.asarray(lower, np.float64) + indices.astype(np.float64) * step).astype(np.float32)


def evaluate_in_batches(query_fn: QueryFn, points: np.ndarray, batch_size: int) -> np.ndarray:
    """Evaluate ``query_fn`` on (n, 3) points in chunks of ``batch_size``; returns (n,) float32.

    Raises:
        NonFiniteFieldError: the field returned NaN or inf (checked chunk by chunk, so a broken
            network fails at its first batch instead of after the whole extraction).
    """
    out = np.empty(len(points), dtype=np.float32)
    for start in range(0, len(points), batch_size):
        chunk = points[start : start + batch_size]
        with np.errstate(over="ignore", invalid="ignore"):  # a logit beyond float32 becomes inf: reported below
            values = np.asarray(query_fn(chunk), dtype=np.float32).reshape(-1)
        check_finite_field(values, len(chunk))
        out[start : start + len(chunk)] = values
    return out


def check_finite_field(values: np.ndarray, n_points: int | None = None) -> None:
    """Raise :class:`~occrecon.errors.NonFiniteFieldError` when ``values`` (field values) hold NaN or inf.

    The message says how many values are not finite and what that means: a mesh of such a
    field would be made of NaN vertices, or of a surface that is not the network's.
    """
    finite = np.isfinite(values)
    if finite.all():
        return
    from occrecon.errors import NonFiniteFieldError

    bad = int(finite.size - np.count_nonzero(finite))
    n_nan = int(np.count_nonzero(np.isnan(values)))
    kinds = ", ".join(k for k, n in (("NaN", n_nan), ("inf", bad - n_nan)) if n)
    total = finite.size if n_points is None else n_points
    raise NonFiniteFieldError(
        f"the network's output was not finite ({kinds}) at {bad} of {total} query points: its input or its "
        "weights are not finite (e.g. an infinite --input-noise, or weights that are NaN or overflow); no mesh made"
    )


def _straddling_cells(values: np.ndarray, known: np.ndarray, threshold: float) -> np.ndarray:
    """Cells whose 8 corners are all known and lie on both sides of ``threshold``.

    Args:
        values, known: (n+1, n+1, n+1) lattice values and which of them were evaluated.

    Returns:
        (n, n, n) bool.
    """
    corners = [
        (slice(dx, values.shape[0] - 1 + dx), slice(dy, values.shape[1] - 1 + dy), slice(dz, values.shape[2] - 1 + dz))
        for dx in (0, 1)
        for dy in (0, 1)
        for dz in (0, 1)
    ]
    all_known = np.logical_and.reduce([known[c] for c in corners])
    any_above = np.logical_or.reduce([values[c] >= threshold for c in corners])
    any_below = np.logical_or.reduce([values[c] <= threshold for c in corners])
    return all_known & any_above & any_below


def cells_near(points: np.ndarray, lower: np.ndarray, cell: float | np.ndarray, n: int, reach: int = 1) -> np.ndarray:
    """(n, n, n) bool: the cells of an n³ grid (corner ``lower``, cell edge ``cell``) that hold one of (m, 3) ``points``, grown by ``reach`` cells (26-neighbourhood)."""
    from scipy.ndimage import binary_dilation

    cells = np.floor((np.asarray(points, np.float64).reshape(-1, 3) - lower) / cell).astype(np.int64)
    cells = cells[np.all((cells >= 0) & (cells < n), axis=1)]
    hit = np.zeros((n, n, n), dtype=bool)
    hit[cells[:, 0], cells[:, 1], cells[:, 2]] = True
    # binary_dilation repeats until nothing changes when iterations is 0.
    return binary_dilation(hit, structure=np.ones((3, 3, 3), dtype=bool), iterations=reach) if reach > 0 else hit


def _upsample_lattice(values: np.ndarray) -> np.ndarray:
    """Trilinearly refine an (n+1)³ lattice to (2n+1)³; existing points keep their values."""
    n = values.shape[0] - 1
    fine = np.empty((2 * n + 1,) * 3, dtype=values.dtype)
    fine[::2, ::2, ::2] = values
    # Midpoints along x, then y, then z: each pass only averages already-set neighbours.
    fine[1::2, ::2, ::2] = 0.5 * (fine[0:-1:2, ::2, ::2] + fine[2::2, ::2, ::2])
    fine[:, 1::2, ::2] = 0.5 * (fine[:, 0:-1:2, ::2] + fine[:, 2::2, ::2])
    fine[:, :, 1::2] = 0.5 * (fine[:, :, 0:-1:2] + fine[:, :, 2::2])
    return fine


def _children_lattice_mask(active: np.ndarray) -> np.ndarray:
    """Lattice points (2n+1)³ of the next level that lie on the active (n)³ cells (3×3×3 each)."""
    n = active.shape[0]
    mask = np.zeros((2 * n + 1,) * 3, dtype=bool)
    for dx in range(3):
        for dy in range(3):
            for dz in range(3):
                mask[dx : dx + 2 * n : 2, dy : dy + 2 * n : 2, dz : dz + 2 * n : 2] |= active
    return mask


@dataclass(frozen=True)
class RefinementGuide:
    """What MISE may know beyond its own evaluations (see :func:`extract_grid`).

    Attributes:
        preset: (R+1)³ fine-lattice values already known (NaN elsewhere). They are used as
            if evaluated and never queried again; the sliding window passes the faces a
            neighbouring crop has evaluated, so both crops mesh their shared face from the
            same values.
        refine_filter: ``f(active (n, n, n) bool, level) -> bool mask`` that may veto
            subdividing cells (e.g. far from any input point).
        anchors: (m, 3) points the surface is known to pass near (an input point cloud).
            Every coarse cell holding one, and its 26 neighbours, is subdivided whatever its
            corners say: a part thinner than a coarse cell can lie between the coarse
            lattice points, where no corner sees it, and would vanish otherwise. Once
            subdivided, such a part shows on the finer lattice and the straddling test
            follows it, so the later levels need no anchors (anchoring them as well took
            1.5-1.6x the evaluations for at most 0.002 IoU on five held-out generated shapes).
    """

    preset: np.ndarray | None = None
    refine_filter: Callable[[np.ndarray, int], np.ndarray] | None = None
    anchors: np.ndarray | None = None

    def known_at(self, stride: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(values, known mask) of the preset on the lattice of every ``stride``-th fine point."""
        if self.preset is None:
            return None
        sub = self.preset[::stride, ::stride, ::stride]
        return sub, np.isfinite(sub)


def extract_grid(
    query_fn: QueryFn,
    *,
    resolution0: int = 32,
    upsampling_steps: int = 2,
    threshold: float = 0.0,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    batch_size: int = 100_000,
    on_level: Callable[[int, int], None] | None = None,
    guide: RefinementGuide | None = None,
) -> GridValues:
    """Evaluate a field hierarchically and return it on the fine lattice.

    Args:
        query_fn: ``(n, 3) float32 -> (n,)`` logits, inside positive.
        resolution0: cells per axis of the coarse lattice.
        upsampling_steps: subdivision levels; the fine lattice has
            ``resolution0 * 2**upsampling_steps`` cells per axis. 0 means a
            dense evaluation on the coarse lattice.
        threshold: iso-level in logit space (see ``probability_to_logit``).
        lower, upper: (3,) box corners; default the ±0.55 box of unit-cube models.
        batch_size: points per ``query_fn`` call.
        on_level: called as ``on_level(level, n_points)`` before each round.
        guide: values known already, vetoes and anchors (:class:`RefinementGuide`).

    Returns:
        ``GridValues`` with (R+1)³ values.

    Example:
        >>> sphere = lambda p: 0.3 - np.linalg.norm(p, axis=1)
        >>> grid = extract_grid(sphere, resolution0=8, upsampling_steps=2)
        >>> grid.values.shape, grid.n_evaluations < 33**3
        ((33, 33, 33), True)
    """
    if resolution0 < 1 or upsampling_steps < 0:
        raise ValueError("resolution0 must be >= 1 and upsampling_steps >= 0")
    if lower is None or upper is None:
        default_lower, default_upper = box_bounds()
        lower = default_lower if lower is None else lower
        upper = default_upper if upper is None else upper
    lower = np.asarray(lower, np.float64)
    upper = np.asarray(upper, np.float64)
    guide = guide or RefinementGuide()
    fine = resolution0 * 2**upsampling_steps
    if guide.preset is not None and guide.preset.shape != (fine + 1,) * 3:
        raise ValueError(f"preset must have shape {(fine + 1,) * 3}, got {guide.preset.shape}")

    def evaluate(values: np.ndarray, todo: np.ndarray, level: int, n: int) -> int:
        idx = np.argwhere(todo)
        if on_level:
            on_level(level, len(idx))
        if len(idx):
            values[todo] = evaluate_in_batches(query_fn, lattice_points(idx, n, lower, upper), batch_size)
        return len(idx)

    n, stride = resolution0, 2**upsampling_steps
    values = np.zeros((n + 1,) * 3, dtype=np.float32)
    known = _with_known(values, np.zeros_like(values, dtype=bool), guide.known_at(stride))
    n_evals = evaluate(values, ~known, 0, n)
    known[:] = True
    for level in range(1, upsampling_steps + 1):
        active = _straddling_cells(values, known, threshold)
        if level == 1 and guide.anchors is not None and len(guide.anchors):
            active |= cells_near(guide.anchors, lower, (upper - lower) / n, n)
        if guide.refine_filter is not None:
            active &= guide.refine_filter(active, level - 1)
        values = _upsample_lattice(values)
        refined_known = np.zeros_like(values, dtype=bool)
        refined_known[::2, ::2, ::2] = known
        n, stride = n * 2, stride // 2
        known = _with_known(values, refined_known, guide.known_at(stride))
        todo = _children_lattice_mask(active) & ~known
        n_evals += evaluate(values, todo, level, n)
        known |= todo
    return GridValues(values=values, lower=lower, upper=upper, n_evaluations=n_evals, n_levels=upsampling_steps + 1)


def _with_known(values: np.ndarray, known: np.ndarray, given: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``known`` grown by the preset's values, which are written into ``values``."""
    if given is not None:
        values[given[1]] = given[0][given[1]]
        known |= given[1]
    return known


def dense_grid(
    query_fn: QueryFn,
    resolution: int,
    *,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    batch_size: int = 100_000,
) -> GridValues:
    """Evaluate the field at every point of a (resolution+1)³ lattice (the reference MISE must match)."""
    return extract_grid(
        query_fn, resolution0=resolution, upsampling_steps=0, lower=lower, upper=upper, batch_size=batch_size
    )
