"""A point cloud's large planes, found by seeded RANSAC: the evidence for its up axis and for whether it is a room.

A room scan is mostly planes at its bounding box's faces (the floor and the walls, seen
from inside, every other point on one side of them); an object's large planes, where it
has any, are a seat or a table top with points on both sides, or one face of a box. The
planes are found once per cloud (:func:`find_planes`) and read by
:mod:`occrecon.orientation` (which way is up, is it one-sided) and
:mod:`occrecon.scene.units` (object or scene).

Open3D's ``segment_plane`` does the RANSAC; its generator is seeded, so a cloud gives
the same planes on every run. Everything is measured relative to the cloud's size, so
the units do not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_POINTS = 12_000
"""Points the planes are sought in (a seeded random subset): enough for planes of 2% of the cloud."""

MAX_PLANES = 8
"""A room's floor, four walls and ceiling, and a couple of large furniture tops."""

MIN_SHARE = 0.02
"""A plane holding fewer of the points than this is not a structure of the cloud."""

DISTANCE = 0.006
"""Inlier distance, as a share of the cloud's longest side (3.6 cm in a 6 m room, 6 mm on a 1 m chair)."""

ITERATIONS = 300

AXIS_TOLERANCE_DEG = 15.0
"""A plane within this angle of an axis plane counts as one (a scan a few degrees off level)."""

COVERAGE_CELLS = 8

TWIN_REACH = 0.1
"""How far in front of a plane (share of the longest side) a parallel layer counts as its other face."""


@dataclass(frozen=True)
class Plane:
    """One large plane of a cloud.

    Attributes:
        normal: (3,) unit normal pointing to the side that holds more of the cloud.
        offset: the plane is ``normal · p = offset``.
        share: the share of the cloud's points on it.
        front: the share of the cloud's points clearly in front of it (beyond twice the
            inlier distance, on its normal's side): what stands on a floor.
        behind: the share of the cloud's points clearly behind it (beyond twice the inlier
            distance, on the side its normal points away from): about 0 for a floor or a wall
            seen from inside, for the base of an object; large for a seat or a shelf.
        coverage: the share of the cloud's bounding-box face parallel to the plane (an 8×8
            grid over the other two axes) that its points reach: about 1 for a floor, less
            for a chair's back.
        twin: the share of its cells (on the 8×8 grid of ``coverage``) that the densest thin
            layer parallel to it just in front (up to :data:`TWIN_REACH` of the longest
            side) covers too: about 1 for a panel sampled on both faces (a table top and its
            underside), a few tenths for a floor scanned from above (a low bed on a part of it).
        inliers: indices of its points in :attr:`CloudPlanes.points`.
    """

    normal: np.ndarray
    offset: float
    share: float
    front: float
    behind: float
    coverage: float
    twin: float
    inliers: np.ndarray

    def direction(self, tolerance_deg: float = AXIS_TOLERANCE_DEG) -> tuple[int, float] | None:
        """(axis index, sign) of the coordinate direction its normal is within ``tolerance_deg`` of, or None."""
        axis = int(np.argmax(np.abs(self.normal)))
        if abs(self.normal[axis]) < np.cos(np.radians(tolerance_deg)):
            return None
        return axis, float(np.sign(self.normal[axis]))

    @property
    def bounding(self) -> bool:
        """Whether the cloud lies on one side of it (a floor, a wall, a base), not on both."""
        return self.behind < 0.03


@dataclass(frozen=True)
class CloudPlanes:
    """The planes of a cloud and the subset they were found in.

    Attributes:
        points: (n, 3) float64 subset of the cloud the planes were found in, centred and
            scaled so that its longest side is 1 (:func:`normalised`).
        planes: the planes, largest first.
        distance: the inlier distance used (:data:`DISTANCE`).
    """

    points: np.ndarray
    planes: tuple[Plane, ...]
    distance: float

    @property
    def rest(self) -> np.ndarray:
        """(n,) bool: the points on none of the planes (furniture in a room, most of an object)."""
        keep = np.ones(len(self.points), dtype=bool)
        for plane in self.planes:
            keep[plane.inliers] = False
        return keep

    @property
    def extent(self) -> np.ndarray:
        return np.ptp(self.points, axis=0) if len(self.points) else np.zeros(3)


def sample_points(points: np.ndarray, size: int = SAMPLE_POINTS, seed: int = 0) -> np.ndarray:
    """A seeded random subset of at most ``size`` finite rows, float64."""
    cloud = np.asarray(points, dtype=np.float64)[:, :3]
    cloud = cloud[np.isfinite(cloud).all(axis=1)]
    if len(cloud) > size:
        cloud = cloud[np.random.default_rng(seed).choice(len(cloud), size, replace=False)]
    return cloud


def normalised(cloud: np.ndarray) -> np.ndarray:
    """``cloud`` moved to its bounding box's centre and scaled so its longest side is 1 (everything here is relative to its size)."""
    if not len(cloud):
        return cloud
    lower, upper = cloud.min(axis=0), cloud.max(axis=0)
    # Halved before subtracting: a cloud spanning ±1e308 would overflow its own extent.
    centre, half = lower / 2 + upper / 2, float(np.max(upper / 2 - lower / 2))
    return (cloud - centre) / (2 * half) if 0 < half < np.inf else cloud - centre


def find_planes(points: np.ndarray, *, max_planes: int = MAX_PLANES, seed: int = 0) -> CloudPlanes:
    """The cloud's large planes, largest first: RANSAC, then again on the points left, until a plane is too small."""
    import open3d as o3d  # here: importing Open3D takes a second or two, and only clouds need it

    cloud = normalised(sample_points(points, seed=seed))
    distance = DISTANCE
    if len(cloud) < 100 or not np.ptp(cloud, axis=0).max() > 0:
        return CloudPlanes(cloud, (), distance)  # too few points, or all in one spot
    o3d.utility.random.seed(seed)
    left = np.arange(len(cloud))
    planes: list[Plane] = []
    for _ in range(max_planes):
        if len(left) < max(3, MIN_SHARE * len(cloud)):
            break
        model, found = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud[left])).segment_plane(distance, 3, ITERATIONS)
        inliers = left[np.asarray(found, dtype=np.int64)]
        if len(inliers) < MIN_SHARE * len(cloud):
            break
        planes.append(_plane(cloud, np.asarray(model, dtype=np.float64), inliers, distance))
        left = np.setdiff1d(left, inliers, assume_unique=True)
    return CloudPlanes(cloud, tuple(planes), distance)


def _plane(cloud: np.ndarray, model: np.ndarray, inliers: np.ndarray, distance: float) -> Plane:
    """A RANSAC model ``a x + b y + c z + d = 0`` as a :class:`Plane`, its normal towards most of the cloud.

    The model is refitted to its inliers by least squares: RANSAC's plane through three of
    them can lean by a fraction of a degree, which across a 6 m floor lifts its far end
    out of the inlier band and into what is counted in front of it.
    """
    on_plane = cloud[inliers]
    centre = on_plane.mean(axis=0)
    normal = np.linalg.svd(on_plane - centre, full_matrices=False)[2][-1]
    if normal @ model[:3] < 0:
        normal = -normal
    offset = float(normal @ centre)
    signed = cloud @ normal - offset
    front, back = float(np.mean(signed > 2 * distance)), float(np.mean(signed < -2 * distance))
    if back > front:
        normal, offset, signed, front, back = -normal, -offset, -signed, back, front
    own = _cell_counts(cloud, cloud[inliers], normal)
    twin = _twin(cloud, signed, own, normal, distance)
    return Plane(normal, offset, len(inliers) / len(cloud), front, back, np.count_nonzero(own) / COVERAGE_CELLS**2, twin, inliers)


def _twin(cloud: np.ndarray, signed: np.ndarray, own: np.ndarray, normal: np.ndarray, distance: float) -> float:
    """The share of the plane's cells that the densest layer within :data:`TWIN_REACH` in front of it fills too.

    A panel's other face lies under all of it, as densely sampled; a low bed or a rug on a
    floor under a part, the feet of furniture sparsely. A layer fills a cell holding half
    the plane's points per cell. The layers are two inlier distances thick, from two out.
    """
    edges = np.arange(2 * distance, TWIN_REACH * float(np.ptp(cloud, axis=0).max()) + 2 * distance, 2 * distance)
    if len(edges) < 2 or not own.any():
        return 0.0
    counts, _ = np.histogram(signed, bins=edges)
    densest = int(np.argmax(counts))
    layer = _cell_counts(cloud, cloud[(signed >= edges[densest]) & (signed < edges[densest + 1])], normal)
    occupied = own > 0
    filled = layer[occupied] >= 0.5 * own[occupied].mean()
    return float(np.count_nonzero(filled)) / np.count_nonzero(occupied)


def _cell_counts(cloud: np.ndarray, points: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """(64,) how many of ``points`` fall in each cell of an 8×8 grid over the cloud's bounding-box face parallel to the plane."""
    axis = int(np.argmax(np.abs(normal)))
    others = [a for a in range(3) if a != axis]
    lower, span = cloud[:, others].min(axis=0), np.ptp(cloud[:, others], axis=0)
    cells = np.clip(((points[:, others] - lower) / np.maximum(span, 1e-12) * COVERAGE_CELLS).astype(np.int64), 0, COVERAGE_CELLS - 1)
    return np.bincount(cells[:, 0] * COVERAGE_CELLS + cells[:, 1], minlength=COVERAGE_CELLS**2)
