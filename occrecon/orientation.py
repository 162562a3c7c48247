"""Which way is up in a point cloud, read from its points.

The networks expect y up, and a scan's file says nothing about it (PLY, XYZ, NPY...):
Kinect and OpenCV frames have -y up, ScanNet and LiDAR z. A room read the wrong way
round comes out inside-out. The evidence read here, from the planes of
:mod:`occrecon.planes`, is **a floor**: the cloud lies on one side of a large plane
perpendicular to an axis, and what is not on the planes (furniture, the object on a
table, cars on a road) stands close to it. Walls are such planes too, and can hold as
many points; what stands on the floor tells them apart (a wall's weight is about 1/2).
A ceiling holds as many points as the floor, but nothing stands on it. An object's own
flat base (a bed's, a car's underside, a bottle's bottom) is such a floor too.

A plane counts as a floor only when it is scanned from one side (no parallel layer
just in front of it: a table top sampled with its underside is a panel, and a table
upside down stands on it as well as the right way up), something stands in front of
it, and it holds a few per cent of the points. Objects without a flat base (a chair on
its legs, a figure) mostly leave the answer open. An answer is given only when one
direction clearly wins (:data:`CONFIDENT_RATIO`); otherwise :func:`detect_up` says which
direction led, and :func:`resolve_up` keeps y and says which ``--up`` to try. The
thresholds were chosen on procedural rooms and objects (``benchmarks/up_axis.py``,
seeds apart from the ones it reports on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occrecon.planes import CloudPlanes, find_planes

CONFIDENT_RATIO = 1.5
"""The winning direction's evidence must be this many times the runner-up's."""

MIN_EVIDENCE = 0.04
"""Evidence below this counts as this much when it is the runner-up: one small plane alone proves nothing."""

OPPOSITE_RATIO = 2.5
"""Where the runner-up is the opposite direction (a floor against a ceiling, a box's bottom against its top), only what
stands on the floor tells them apart, so it must win by this much."""

MIN_FLOOR_SHARE = 0.025
"""A plane holding less of the points is no floor or base."""

MIN_FRONT = 0.05
"""Something must stand on a floor: this share of the points in front of it at least (a bare floor says nothing of its sign)."""

MIN_STANDING = 0.03
"""Fewer points than this share off the planes are too few to say where things stand; in a room more stand off its floor."""

MAX_TWIN = 0.4
"""A floor is scanned from one side: a plane whose cells a parallel layer just in front fills this much is a panel (a table top, a chair's back)."""


def direction_name(axis: int, sign: float) -> str:
    """``(2, -1)`` → ``"-z"``: the names ``--up`` takes."""
    return ("-" if sign < 0 else "") + "xyz"[axis]


@dataclass(frozen=True)
class UpAxis:
    """What the points say about the up axis.

    Attributes:
        axis: the up axis when the evidence is clear (``"z"``, ``"-y"``...), else None.
        guess: the direction the evidence favours most (None: no evidence at all).
        evidence: ``"floor"`` (what decided), or ``"none"`` (no floor at all).
        ratio: the leading direction's evidence over the runner-up's (or over :data:`MIN_EVIDENCE`).
    """

    axis: str | None
    guess: str | None
    evidence: str
    ratio: float


def detect_up(points: np.ndarray, planes: CloudPlanes | None = None) -> UpAxis:
    """The cloud's up axis from its planes (see the module's docstring); ``planes`` from :func:`~occrecon.planes.find_planes` when known."""
    planes = planes if planes is not None else find_planes(points)
    floor = floor_evidence(planes)
    if floor and max(floor.values()) > 0:
        return _decide(floor, "floor")
    return UpAxis(None, None, "none", 0.0)


def _decide(scores: dict[str, float], evidence: str) -> UpAxis:
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    best, runner_up = ranked[0][1], (ranked[1][1] if len(ranked) > 1 else 0.0)
    ratio = best / max(runner_up, MIN_EVIDENCE)
    opposite = len(ranked) > 1 and ranked[1][0][-1] == ranked[0][0][-1] and runner_up >= MIN_EVIDENCE
    confident = ratio >= (OPPOSITE_RATIO if opposite else CONFIDENT_RATIO)
    return UpAxis(ranked[0][0] if confident else None, ranked[0][0], evidence, ratio)


def floor_evidence(planes: CloudPlanes) -> dict[str, float]:
    """Per up direction: the share of the points on bounding planes facing it, weighted by how low the rest of the cloud sits above them.

    A floor's weight is near 1 (furniture stands on it), a wall's about 1/2 and a ceiling's
    small (nothing hangs from it), so the floor wins over walls that hold as many points.
    """
    points, extent, off_planes = planes.points, planes.extent, planes.rest
    # What stands is what lies on no plane; where the planes hold nearly all (a corner of bare floor and wall), the rest of the cloud.
    few = np.count_nonzero(off_planes) < MIN_STANDING * len(points)
    scores: dict[str, float] = {}
    for plane in planes.planes:
        direction = plane.direction()
        if direction is None or not plane.bounding or plane.share < MIN_FLOOR_SHARE or plane.twin >= MAX_TWIN or plane.front < MIN_FRONT:
            continue
        axis, sign = direction
        name = direction_name(axis, sign)
        if not extent[axis] > 0:
            continue
        rest = np.delete(points, plane.inliers, axis=0) if few else points[off_planes]
        height = (rest[:, axis] - points[:, axis].min()) if sign > 0 else (points[:, axis].max() - rest[:, axis])
        lowness = 1.0 - float(np.mean(height / extent[axis]))
        scores[name] = scores.get(name, 0.0) + plane.share * lowness
    return scores


def resolve_up(points: np.ndarray, up: str | None, stated: str | None = None, planes: CloudPlanes | None = None) -> tuple[str, str | None]:
    """The up axis to read a cloud with, and a note for the user (None: nothing worth saying).

    ``up``: what the user gave (``"auto"``: find it from the points, whatever the file says);
    ``stated``: what the file's format says (LAS/LAZ: z). Neither: found from the points
    where they are clear, else y (the models' own), with a note naming the ``--up`` to try
    when the points lean to another axis.
    """
    if up not in (None, "auto"):
        return up, None
    if up is None and stated is not None:
        return stated, None
    found = detect_up(points, planes)
    if found.axis is not None:
        if found.axis == "y":
            return "y", None
        return found.axis, (
            f"up axis found from the points: {found.axis} (a floor or base across {found.axis[-1]}, the rest standing on it); "
            "turned y-up for the network, and back; --up y reads the file's y as up instead"
        )
    if found.guess not in (None, "y"):
        return "y", f"the up axis is unsure: read as y, but the points lean to {found.guess}; if {found.guess} is up, --up {found.guess} turns it"
    return "y", None


MIN_WALL_SHARE = 0.05
MIN_WALL_COVERAGE = 0.6
"""A wall holds this share of the points at least and spans this share of its bounding-box face (a bed's side does not)."""

MIN_WALL_HEIGHT = 0.8
"""A wall rises from the floor to the top of the scan: this share of the cloud's height at least (a car's flat side does not)."""


def count_walls(planes: CloudPlanes, up: str) -> int:
    """How many walls stand on the floor: one-sided planes perpendicular to ``up`` that bound the cloud and span its side, floor to top.

    A room scanned from inside has two to four (a fragment from a corner two); an object
    standing on its base has one at most (a sofa's back), its other sides being panels
    sampled on both faces, too small, or not as tall as the object.
    """
    axis = "xyz".index(up[-1])
    height = float(np.ptp(planes.points[:, axis])) if len(planes.points) else 0.0
    walls = 0
    for plane in planes.planes:
        direction = plane.direction()
        if direction is None or direction[0] == axis or not plane.bounding:
            continue
        tall = float(np.ptp(planes.points[plane.inliers, axis])) >= MIN_WALL_HEIGHT * height
        if tall and plane.share >= MIN_WALL_SHARE and plane.coverage >= MIN_WALL_COVERAGE and plane.twin < MAX_TWIN:
            walls += 1
    return walls


def standing_share(planes: CloudPlanes, up: str, above: float = 0.08) -> float:
    """The share of the points off the planes that rise above ``above`` of the cloud's height over its floor: furniture in a room.

    A closed box (a cabinet with its doors shut) has planes at all its faces as a room has,
    but nothing inside rises from the one taken for a floor.
    """
    if not len(planes.points):
        return 0.0
    axis = "xyz".index(up[-1])
    height = planes.points[:, axis] * (-1.0 if up.startswith("-") else 1.0)
    span = float(np.ptp(height))
    if not span > 0:
        return 0.0
    return float(np.mean(planes.rest & ((height - height.min()) / span > above)))
