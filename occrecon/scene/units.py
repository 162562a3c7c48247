"""A scan's units, size and orientation, read from its points: what decides whether a cloud is a scene and how it is scaled.

Nothing here runs a network; :mod:`occrecon.scene.window` (the sliding window) and
:mod:`occrecon.pipeline` (the object-or-scene decision) use it.
"""

from __future__ import annotations

import numpy as np

from occrecon.io.crs import UNITS_PER_METRE, LinearUnits
from occrecon.options import OptionError
from occrecon.orientation import MIN_STANDING, count_walls, detect_up, standing_share
from occrecon.planes import CloudPlanes, find_planes

OBJECT_SCALE_LIMIT_M = 4.0
"""Clouds whose longest side exceeds this (in metres) are treated as scenes by default."""


def detect_units(points: np.ndarray, units: str | LinearUnits | None) -> tuple[float | np.ndarray, str | None]:
    """Input units per metre (a (3,) array where z's unit differs from x and y's), and a note saying where they came from.

    ``units``: a name of :data:`UNITS_PER_METRE`, the units a file's header states
    (:class:`~occrecon.io.crs.LinearUnits`), or None to guess: indoor scans in
    metres span from a metre to a few hundred; a scene that spans thousands of
    units is almost surely in millimetres, hundreds with a height under a
    storey's suggests centimetres.
    """
    if isinstance(units, LinearUnits):
        per_metre = units.units_per_metre()
        single = bool(np.allclose(per_metre, per_metre[0], rtol=1e-9))
        return (float(per_metre[0]) if single else per_metre), f"units from the {units.origin}: {units.describe()}"
    if units is not None:
        key = units.lower()
        if key not in UNITS_PER_METRE:
            raise OptionError(f"--units must be one of {', '.join(UNITS_PER_METRE)}, got {units!r}")
        return UNITS_PER_METRE[key], None
    extent = np.ptp(points, axis=0)
    longest, shortest = float(extent.max()), float(extent.min())
    if longest > 2000:
        return 1000.0, f"assuming millimetres (the scan spans {longest:.0f} units); pass --units to override"
    if longest > 200 and shortest > 150:
        return 100.0, f"assuming centimetres (the scan spans {longest:.0f} units); pass --units to override"
    return 1.0, None


ROOM_SIZED_M = 1.5
"""Object clouds wider than this (in metres) may be small rooms or scans of a corner: a note names --scene."""


def extent_metres(points: np.ndarray, units: str | LinearUnits | None = None) -> float:
    """A cloud's longest side in metres (units as :func:`detect_units` takes them)."""
    per_metre, _ = detect_units(points, units)
    return float(np.max(np.ptp(points, axis=0) / per_metre))


def is_scene(points: np.ndarray, units: str | LinearUnits | None = None) -> bool:
    """Whether a cloud is far larger than an object (longest side above ``OBJECT_SCALE_LIMIT_M``)."""
    return extent_metres(points, units) > OBJECT_SCALE_LIMIT_M


def scene_or_object(points: np.ndarray, units: str | LinearUnits | None, planes: CloudPlanes | None = None) -> tuple[bool, str | None]:
    """Whether a cloud should go through the sliding window when nobody said, and a note when it is unsure.

    Over :data:`OBJECT_SCALE_LIMIT_M` across, a size in known units (given, or stated by the
    file) decides for a scene. Where the units are a guess, size alone cannot tell (1,019
    units: a 10 m room in centimetres or a 1 m chair in millimetres), so the cloud's shape
    decides (:func:`cloud_is_scene`): a room, seen from inside, has a floor with walls at its
    bounding box's faces. Anything else stays an object, with a note on how to ask for a
    scene (open ground too: a bed's or a car's flat bottom is a floor with things on it). A
    cloud at most :data:`OBJECT_SCALE_LIMIT_M` across stays an object whatever its shape: an
    open-fronted bookcase is shaped like a room. ``planes``: the cloud's, when already found.
    """
    per_metre, _ = detect_units(points, units)
    longest = float(np.max(np.ptp(points, axis=0)))
    metres = float(np.max(np.ptp(points, axis=0) / per_metre))
    if metres <= OBJECT_SCALE_LIMIT_M:
        return False, None
    if units is not None:
        return True, None
    if cloud_is_scene(points, planes=planes):
        return True, None
    if not np.all(np.asarray(per_metre) == 1.0):
        return False, (
            f"reconstructed as one object: {longest:.0f} units across, which is {longest / 100:.3g} m in centimetres "
            f"(a room) or {longest / 1000:.3g} m in millimetres (an object), and its points show no floor with walls; "
            "if it is a scene, --scene --units cm says so"
        )
    return False, (
        f"reconstructed as one object: {longest:.3g} units across, and its points show no floor with walls; "
        "if it is a scene, --scene says so (with --units if it is not in metres)"
    )


MIN_WALLS = 2
"""A room seen from inside has walls on two sides at least (a fragment from its corner too); a sofa has one, its back."""

def cloud_is_scene(points: np.ndarray, planes: CloudPlanes | None = None) -> bool:
    """Whether a cloud's shape is a room's, seen from inside: a floor (as :func:`~occrecon.orientation.detect_up` finds one), walls on it, and things standing in it."""
    planes = planes if planes is not None else find_planes(points)
    found = detect_up(points, planes)
    if found.axis is None or found.evidence != "floor":
        return False
    return count_walls(planes, found.axis) >= MIN_WALLS and standing_share(planes, found.axis) >= MIN_STANDING


SPARSE_SPACING_VOXELS = 4.0
"""Median point spacing, in voxels, above which a scan is too sparse for the voxel size (a note says so)."""


def sparse_points_note(points: np.ndarray, unit_size: float, voxel_metres: float, units_assumed: bool, sample: int = 20_000) -> str | None:
    """A note when the points lie much farther apart than a voxel: the network then sees dots, not surfaces.

    ``units_assumed``: the units were neither given nor stated by the file, so they may be the problem.
    """
    from scipy.spatial import cKDTree

    if len(points) < 2:
        return None
    picked = points[np.random.default_rng(0).choice(len(points), min(len(points), sample), replace=False)]
    gaps = cKDTree(points).query(picked, k=2)[0][:, 1]
    spacing = float(np.median(gaps[gaps > 0])) / unit_size if np.any(gaps > 0) else 0.0
    if spacing <= SPARSE_SPACING_VOXELS:
        return None
    metres = spacing * voxel_metres
    return (
        f"the points lie {metres:.3g} m apart (median), {spacing:.0f} voxels of {voxel_metres:.3g} m: too sparse for the network "
        f"to see surfaces; --voxel-size {metres:.2g}{' (or --units if the scan is not in metres)' if units_assumed else ''} suits this scan"
    )

