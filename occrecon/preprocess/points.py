"""Point-cloud preprocessing as the upstream ONet/ConvONet weights expect it.

Upstream objects live in a canonical frame: the bounding box of the object is
centred at the origin and its longest side is 1, so the object fills
``[-0.5, 0.5]`` along its longest axis (ONet ``scripts/sample_mesh.py``; the
maintainers ask users to do the same with their own clouds). The network input
is then a random subset of the surface points plus Gaussian noise of std
``noise`` in those canonical units (0.005 for the released models).

ConvONet's room models put the floor (minimum y, y is up) at ``y = -0.5``
instead of centring y (``align="floor"``); its sliding-window scene models keep
metric coordinates (``normalize="none"``).
"""

from __future__ import annotations

import numpy as np
import torch

from occrecon.errors import InputError
from occrecon.frames import FrameTransform
from occrecon.io.readers import PointCloud

from ._base import PreparedInput

__all__ = ["normalize_points", "prepare_points", "ALIGNMENTS"]

#: ``centre``: bbox centre -> origin (ONet, ConvONet objects);
#: ``floor``: x/z centred, min y -> -0.5 (ConvONet rooms, y up).
ALIGNMENTS = ("centre", "floor")

# An extent this small relative to the coordinates' magnitude is float64
# round-off, not geometry: normalising it would amplify noise into the unit cube.
_MIN_RELATIVE_EXTENT = 1e-12


def _as_points(points: np.ndarray, source: str | None) -> np.ndarray:
    """Check ``points`` is (n, 3) numeric and return it as float64.

    Raises:
        InputError: wrong shape or dtype.
    """
    arr = np.asarray(points)
    if arr.dtype.kind not in "fiub" or arr.ndim != 2 or arr.shape[1] != 3:
        raise InputError(source, f"expected (N, 3) numeric points, got shape {arr.shape} dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def normalize_points(
    points: np.ndarray, *, align: str = "centre", source: str | None = None
) -> tuple[np.ndarray, FrameTransform]:
    """Map points into the canonical frame: bbox centred, longest side 1.

    ``canonical = (points - translation) / scale`` with ``scale`` the longest
    bounding-box side and ``translation`` the bbox centre, so the bbox becomes
    a box inside ``[-0.5, 0.5]^3`` touching both faces along its longest axis.
    With ``align="floor"`` the y translation instead puts the lowest point at
    ``y = -0.5`` (ConvONet rooms).

    Args:
        points: (n, 3) finite coordinates in the input frame.
        align: one of :data:`ALIGNMENTS`.
        source: name used in error messages.

    Returns:
        ((n, 3) float64 canonical points, transform with ``transform.to_input(canonical) == points``).

    Raises:
        InputError: empty, non-finite values, or no extent (all points identical).
    """
    pts = _as_points(points, source)
    if len(pts) == 0:
        raise InputError(source, "holds no points")
    if not np.isfinite(pts).all():
        bad = int((~np.isfinite(pts).all(axis=1)).sum())
        raise InputError(source, f"{bad} of {len(pts)} points are non-finite (NaN/inf); drop them first")
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scale = float((hi - lo).max())
    magnitude = float(np.abs(pts).max())
    if scale <= _MIN_RELATIVE_EXTENT * max(magnitude, 1.0):
        if scale == 0.0:
            raise InputError(source, f"all {len(pts)} points are identical; need an extent to normalise")
        raise InputError(source, f"extent {scale:g} is below float precision at coordinates of size {magnitude:g}")
    centre = (lo + hi) / 2.0
    if align == "floor":
        centre[1] = lo[1] + 0.5 * scale
    transform = FrameTransform(scale=scale, translation=centre)
    return transform.to_canonical(pts), transform


def _subsample(n: int, n_points: int | None, rng: np.random.Generator) -> tuple[np.ndarray | None, str | None]:
    """Pick the row indices fed to the network.

    Without replacement when the cloud is big enough; otherwise with
    replacement, as upstream always draws (so small clouds still give a full
    ``n_points`` tensor; max-pooling encoders are unaffected by repeats).

    Returns:
        (indices or None for "keep all", a note or None).
    """
    if n_points is None:
        return None, None
    if n_points < 1:
        raise ValueError(f"n_points must be positive or None, got {n_points}")
    if n >= n_points:
        note = f"subsampled {n} points to {n_points}" if n > n_points else None
        return rng.choice(n, size=n_points, replace=False), note
    return rng.choice(n, size=n_points, replace=True), f"only {n} points; drew {n_points} with replacement"


def prepare_points(
    points: np.ndarray | PointCloud,
    *,
    n_points: int | None,
    noise: float = 0.0,
    seed: int | None = 0,
    normalize: str = "centre",
    source: str | None = None,
) -> PreparedInput:
    """Turn a point cloud into a network input in the model's canonical frame.

    Steps: drop non-finite rows; normalise with the bbox of ALL points (so the
    transform does not depend on the random subset); subsample to
    ``n_points``; add Gaussian noise of std ``noise`` in canonical units.

    Args:
        points: (n, 3) array (more columns: the first 3 are used) or a
            :class:`~occrecon.io.readers.PointCloud`.
        n_points: points fed to the network (upstream: 300 ONet, 3000 ConvONet
            objects, 10000 rooms); None keeps all.
        noise: Gaussian std in canonical units (upstream: 0.005, also at test time).
        seed: seed of the subsampling and noise RNG; None for a fresh one.
        normalize: ``"centre"`` or ``"floor"`` (see :func:`normalize_points`), or
            ``"none"`` to keep input coordinates (metric scene models).
        source: name used in messages (taken from a PointCloud when not given).

    Returns:
        :class:`PreparedInput` with tensor (N, 3) float32 canonical points,
        preview the same points as float64, and notes.

    Raises:
        InputError: wrong shape, nothing finite, a single point, or no extent.
    """
    notes: list[str] = []
    if isinstance(points, PointCloud):
        source = source or points.source
        if points.dropped_nonfinite:
            notes.append(f"dropped {points.dropped_nonfinite} non-finite rows")
        points = points.points
    arr = np.asarray(points)
    if arr.ndim == 2 and arr.shape[1] > 3 and arr.dtype.kind in "fiu":
        notes.append(f"used the first 3 of {arr.shape[1]} columns as x y z")
        arr = arr[:, :3]
    pts = _as_points(arr, source)
    finite = np.isfinite(pts).all(axis=1)
    if not finite.all():
        if not finite.any():
            raise InputError(source, f"all {len(pts)} points are non-finite (NaN/inf)")
        notes.append(f"dropped {int((~finite).sum())} non-finite rows")
        pts = pts[finite]
    if len(pts) == 1:
        raise InputError(source, "holds a single point; need at least 2 distinct points")

    if normalize == "none":
        if len(pts) == 0:
            raise InputError(source, "holds no points")
        canonical, transform = pts.copy(), FrameTransform.identity()
        notes.append("kept input coordinates (no normalisation)")
    else:
        canonical, transform = normalize_points(pts, align=normalize, source=source)
        notes.append(f"normalised: bbox centre {np.round(transform.translation, 6).tolist()}, longest side {transform.scale:.6g} -> 1")

    rng = np.random.default_rng(seed)
    idx, note = _subsample(len(canonical), n_points, rng)
    if idx is not None:
        canonical = canonical[idx]
    if note:
        notes.append(note)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if noise > 0:
        canonical = canonical + rng.normal(0.0, noise, size=canonical.shape)
        notes.append(f"added Gaussian noise, std {noise:g} (canonical units)")
    tensor = torch.from_numpy(np.ascontiguousarray(canonical, dtype=np.float32))
    return PreparedInput(tensor=tensor, transform=transform, preview=canonical, notes=notes)
