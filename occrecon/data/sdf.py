"""Vectorised signed-distance primitives and CSG operators (numpy).

A shape is a small immutable tree of :class:`Shape` nodes. ``shape.sdf(p)`` maps
points ``(n, 3)`` to signed distances ``(n,)``, negative inside. Every primitive
here is an exact Euclidean SDF or a *bound* (``|sdf| <= true distance``, same
sign); every operator keeps that property (smooth union and non-uniform scaling
keep the sign exact and the bound up to a constant factor). Occupancy is
``sdf < 0`` and is therefore exact whatever the Lipschitz quality, while the
bound property lets :func:`sdf_grid` skip empty space safely.

Shapes carry a conservative axis-aligned bounding box (``bounds()``), so unions
only evaluate a child where it can matter, and can be placed with
``translate``/``rotate``/``scale`` (furniture into a room). Leaves can be given
a material tag with :meth:`Shape.tag`; :meth:`Shape.sdf_tags` returns the tag of
the closest part, which the renderer uses to colour parts differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Array = np.ndarray


def _as_points(p: Array) -> Array:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must have shape (n, 3), got {p.shape}")
    return p


def _length(v: Array) -> Array:
    """Row norms of ``(n, k)`` arrays, without the overhead of ``np.linalg.norm``."""
    return np.sqrt(np.einsum("ij,ij->i", v, v))


def rotation_matrix(axis: Sequence[float], angle: float) -> Array:
    """Rotation ``(3, 3)`` by ``angle`` radians about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    x, y, z = a
    c, s = np.cos(angle), np.sin(angle)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) * c + s * k + (1 - c) * np.outer(a, a)


def mat3(p: Array, m: Array) -> Array:
    """``p @ m`` for ``p`` (n, 3) and ``m`` (3, k) without BLAS.

    BLAS threads for such skinny products cost far more than the arithmetic (and
    fight over cores in parallel data generation); three fused column passes do not.
    """
    return p[:, 0:1] * m[0] + p[:, 1:2] * m[1] + p[:, 2:3] * m[2]


def dot3(p: Array, v: Array) -> Array:
    """``p @ v`` for ``p`` (n, 3) and ``v`` (3,) without BLAS."""
    return p[:, 0] * v[0] + p[:, 1] * v[1] + p[:, 2] * v[2]


def _max3(q: Array) -> Array:
    """Row maxima of an ``(n, 3)`` array (faster than ``q.max(axis=1)`` for 3 columns)."""
    return np.maximum(np.maximum(q[:, 0], q[:, 1]), q[:, 2])


def box_distance(p: Array, lo: Array, hi: Array) -> Array:
    """Exact signed distance ``(n,)`` from points ``(n, 3)`` to the box ``[lo, hi]``."""
    c = (lo + hi) * 0.5
    h = (hi - lo) * 0.5
    q = np.abs(p - c) - h
    return _length(np.maximum(q, 0.0)) + np.minimum(_max3(q), 0.0)


def box_distance_bound(p: Array, lo: Array, hi: Array) -> Array:
    """Cheap lower bound ``(n,)`` of the distance to the box ``[lo, hi]``: ``max_i(|p_i - c_i| - h_i)``.

    Positive exactly outside the box and never larger than the Euclidean distance.
    """
    q = np.abs(p - (lo + hi) * 0.5) - (hi - lo) * 0.5
    return _max3(q)


class Shape:
    """Base node. Subclasses implement ``_sdf``, ``_sdf_tags`` and ``bounds``."""

    def sdf(self, p: Array) -> Array:
        """Signed distance (bound) ``(n,)`` at points ``(n, 3)``; negative inside."""
        return self._sdf(_as_points(p))

    def sdf_tags(self, p: Array) -> tuple[Array, Array]:
        """Signed distance ``(n,)`` and integer material tag ``(n,)`` of the deciding part."""
        return self._sdf_tags(_as_points(p))

    def contains(self, p: Array) -> Array:
        """Occupancy ``(n,)`` bool: exact, since only the sign of the SDF is used."""
        return self.sdf(p) < 0.0

    def bounds(self) -> tuple[Array, Array]:
        """Conservative axis-aligned box ``(lo (3,), hi (3,))`` containing the solid."""
        raise NotImplementedError

    def _sdf(self, p: Array) -> Array:
        raise NotImplementedError

    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    # -- composition helpers (return new nodes; shapes are never mutated) --
    def translate(self, t: Sequence[float]) -> "Shape":
        return Transform(self, translation=np.asarray(t, dtype=np.float64))

    def rotate(self, axis: Sequence[float], angle: float) -> "Shape":
        """Rotate about ``axis`` through the origin by ``angle`` radians."""
        return Transform(self, rotation=rotation_matrix(axis, angle))

    def rotate_matrix(self, r: Array) -> "Shape":
        return Transform(self, rotation=np.asarray(r, dtype=np.float64))

    def scale(self, s: float | Sequence[float]) -> "Shape":
        """Uniform scale (exact SDF) or per-axis scale (sign exact, distance a bound)."""
        s_arr = np.broadcast_to(np.asarray(s, dtype=np.float64), (3,)).copy()
        if np.any(s_arr <= 0):
            raise ValueError("scale factors must be positive")
        return Transform(self, scale=s_arr)

    def round(self, r: float) -> "Shape":
        """Inflate by ``r`` (rounds convex edges; grows the shape by ``r``)."""
        return Offset(self, -float(r))

    def shell(self, thickness: float) -> "Shape":
        """Hollow shell of total wall ``thickness`` centred on the surface."""
        return Shell(self, float(thickness))

    def tag(self, k: int) -> "Shape":
        """Give the whole subtree material tag ``k`` (used for part colours)."""
        return Tag(self, int(k))

    def __or__(self, other: "Shape") -> "Shape":
        return Union([self, other])

    def __sub__(self, other: "Shape") -> "Shape":
        return Subtract(self, other)

    def __and__(self, other: "Shape") -> "Shape":
        return Intersect([self, other])


# --------------------------------------------------------------------------------------
# Primitives. All are centred at the origin; place them with Transform.
# --------------------------------------------------------------------------------------
class Primitive(Shape):
    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        return self._sdf(p), np.zeros(len(p), dtype=np.int32)


@dataclass(frozen=True, eq=False)
class Sphere(Primitive):
    radius: float

    def _sdf(self, p: Array) -> Array:
        return _length(p) - self.radius

    def bounds(self) -> tuple[Array, Array]:
        r = np.full(3, self.radius)
        return -r, r


@dataclass(frozen=True, eq=False)
class Box(Primitive):
    """Axis-aligned box with half extents ``half`` (3,), optionally with rounded edges of radius ``radius``.

    The rounded box keeps the outer size ``2*half`` (edges are cut, not grown).
    """

    half: tuple[float, float, float]
    radius: float = 0.0

    def _sdf(self, p: Array) -> Array:
        h = np.asarray(self.half) - self.radius
        q = np.abs(p) - h
        return _length(np.maximum(q, 0.0)) + np.minimum(_max3(q), 0.0) - self.radius

    def bounds(self) -> tuple[Array, Array]:
        h = np.asarray(self.half, dtype=np.float64)
        return -h, h


@dataclass(frozen=True, eq=False)
class Cylinder(Primitive):
    """Capped cylinder along y: radius ``radius``, half height ``half_height``."""

    radius: float
    half_height: float

    def _sdf(self, p: Array) -> Array:
        dx = np.hypot(p[:, 0], p[:, 2]) - self.radius
        dy = np.abs(p[:, 1]) - self.half_height
        return np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)

    def bounds(self) -> tuple[Array, Array]:
        h = np.array([self.radius, self.half_height, self.radius])
        return -h, h


@dataclass(frozen=True, eq=False)
class Capsule(Primitive):
    """Segment ``a``–``b`` swept by a ball of ``radius`` (exact)."""

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    radius: float

    def _sdf(self, p: Array) -> Array:
        a = np.asarray(self.a, dtype=np.float64)
        ba = np.asarray(self.b, dtype=np.float64) - a
        pa = p - a
        h = np.clip(dot3(pa, ba) / max(float(ba @ ba), 1e-18), 0.0, 1.0)
        return _length(pa - h[:, None] * ba) - self.radius

    def bounds(self) -> tuple[Array, Array]:
        a, b = np.asarray(self.a, dtype=np.float64), np.asarray(self.b, dtype=np.float64)
        return np.minimum(a, b) - self.radius, np.maximum(a, b) + self.radius


@dataclass(frozen=True, eq=False)
class RoundCone(Primitive):
    """Convex hull of a ball of ``r_a`` at ``a`` and one of ``r_b`` at ``b`` (exact): a tapered limb.

    Needs ``|r_a - r_b| < |b - a|`` (otherwise one ball swallows the other; use a Sphere).
    """

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    r_a: float
    r_b: float

    def __post_init__(self) -> None:
        length = float(np.linalg.norm(np.subtract(self.b, self.a)))
        if not abs(self.r_a - self.r_b) < length:
            raise ValueError("RoundCone needs |r_a - r_b| < |b - a|")

    def _sdf(self, p: Array) -> Array:
        # Closed form in the plane through the axis: the hull's side is the common
        # tangent of the two circles, whose normal makes a fixed angle with the axis.
        a = np.asarray(self.a, dtype=np.float64)
        ba = np.asarray(self.b, dtype=np.float64) - a
        l2 = float(ba @ ba)
        rr = self.r_a - self.r_b
        a2 = l2 - rr * rr
        pa = p - a
        y = pa @ ba
        z = y - l2
        x2 = np.einsum("ij,ij->i", pa * l2 - y[:, None] * ba, pa * l2 - y[:, None] * ba)
        y2, z2 = y * y * l2, z * z * l2
        k = np.sign(rr) * rr * rr * x2
        side = (np.sqrt(x2 * a2 / l2) + y * rr) / l2 - self.r_a
        near_b = np.sqrt(x2 + z2) / l2 - self.r_b
        near_a = np.sqrt(x2 + y2) / l2 - self.r_a
        return np.where(np.sign(z) * a2 * z2 > k, near_b, np.where(np.sign(y) * a2 * y2 < k, near_a, side))

    def bounds(self) -> tuple[Array, Array]:
        a, b = np.asarray(self.a, dtype=np.float64), np.asarray(self.b, dtype=np.float64)
        return np.minimum(a - self.r_a, b - self.r_b), np.maximum(a + self.r_a, b + self.r_b)


@dataclass(frozen=True, eq=False)
class Cone(Primitive):
    """Capped cone / frustum along y from ``y=-h`` (radius ``r_bottom``) to ``y=+h`` (``r_top``); exact."""

    half_height: float
    r_bottom: float
    r_top: float

    def _sdf(self, p: Array) -> Array:
        h, r1, r2 = self.half_height, self.r_bottom, self.r_top
        qx = np.hypot(p[:, 0], p[:, 2])
        qy = p[:, 1]
        # Distance to the two caps and to the slanted side, in the 2D (radius, y) half-plane.
        ca_x = qx - np.minimum(qx, np.where(qy < 0, r1, r2))
        ca_y = np.abs(qy) - h
        k2x, k2y = r2 - r1, 2.0 * h
        k2dot = k2x * k2x + k2y * k2y
        t = np.clip(((qx - r1) * k2x + (qy + h) * k2y) / k2dot, 0.0, 1.0)
        # Closest point on the side segment from (r1, -h) to (r2, h).
        cb_x = qx - (r1 + t * k2x)
        cb_y = qy - (-h + t * k2y)
        inside = (cb_x < 0) & (ca_y < 0)
        d = np.sqrt(np.minimum(ca_x * ca_x + ca_y * ca_y, cb_x * cb_x + cb_y * cb_y))
        return np.where(inside, -d, d)

    def bounds(self) -> tuple[Array, Array]:
        r = max(self.r_bottom, self.r_top)
        h = np.array([r, self.half_height, r])
        return -h, h


@dataclass(frozen=True, eq=False)
class Torus(Primitive):
    """Torus in the xz plane (axis y): ring radius ``major``, tube radius ``minor``; exact."""

    major: float
    minor: float

    def _sdf(self, p: Array) -> Array:
        q = np.hypot(p[:, 0], p[:, 2]) - self.major
        return np.hypot(q, p[:, 1]) - self.minor

    def bounds(self) -> tuple[Array, Array]:
        r = self.major + self.minor
        h = np.array([r, self.minor, r])
        return -h, h


@dataclass(frozen=True, eq=False)
class Ellipsoid(Primitive):
    """Axis-aligned ellipsoid with semi-axes ``radii``.

    Uses the sphere-scaled bound ``min(r) * (|p/r| - 1)``: exact sign, and a valid
    lower bound of the distance (scaling by the smallest radius keeps it 1-Lipschitz).
    """

    radii: tuple[float, float, float]

    def _sdf(self, p: Array) -> Array:
        r = np.asarray(self.radii, dtype=np.float64)
        return (_length(p / r) - 1.0) * r.min()

    def bounds(self) -> tuple[Array, Array]:
        r = np.asarray(self.radii, dtype=np.float64)
        return -r, r


@dataclass(frozen=True, eq=False)
class HalfSpace(Primitive):
    """Solid ``n . p <= offset`` (``n`` normalised); infinite, use inside intersections only."""

    normal: tuple[float, float, float]
    offset: float

    def _sdf(self, p: Array) -> Array:
        n = np.asarray(self.normal, dtype=np.float64)
        n = n / np.linalg.norm(n)
        return dot3(p, n) - self.offset

    def bounds(self) -> tuple[Array, Array]:
        big = np.full(3, 1e9)
        return -big, big


# --------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------
def _bbox_corners(lo: Array, hi: Array) -> Array:
    idx = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    return np.where(idx == 0, lo, hi)


class Union(Shape):
    """``min`` of the children (exact outside, bound inside).

    Children are only evaluated at points inside their (slightly grown) bounding box;
    elsewhere the distance to that box, a lower bound of the child's distance that is
    positive, stands in. That keeps the sign exact and the result a bound, while
    furniture made of many small parts costs little per point.
    """

    def __init__(self, children: Sequence[Shape]):
        if not children:
            raise ValueError("Union needs at least one child")
        self.children = list(children)
        self._boxes = [c.bounds() for c in self.children]

    def bounds(self) -> tuple[Array, Array]:
        lo = np.min([b[0] for b in self._boxes], axis=0)
        hi = np.max([b[1] for b in self._boxes], axis=0)
        return lo, hi

    def _child_values(self, i: int, p: Array, with_tags: bool):
        lo, hi = self._boxes[i]
        child = self.children[i]
        db = box_distance_bound(p, lo, hi)
        # Points within `margin` of the box are evaluated exactly so the field is exact
        # near the surface (a box distance would overstate nothing, but is coarse).
        near = db < 0.05 * float(np.max(hi - lo)) + 1e-3
        if near.all():
            return child._sdf_tags(p) if with_tags else (child._sdf(p), None)
        d = db.copy()
        tags = np.zeros(len(p), dtype=np.int32) if with_tags else None
        if near.any():
            if with_tags:
                d[near], tags[near] = child._sdf_tags(p[near])
            else:
                d[near] = child._sdf(p[near])
        return d, tags

    def _sdf(self, p: Array) -> Array:
        out = None
        for i in range(len(self.children)):
            d, _ = self._child_values(i, p, False)
            out = d if out is None else np.minimum(out, d)
        return out

    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        out, tags = None, None
        for i in range(len(self.children)):
            d, t = self._child_values(i, p, True)
            if out is None:
                out, tags = d, t
            else:
                better = d < out
                out = np.where(better, d, out)
                tags = np.where(better, t, tags)
        return out, tags


class SmoothUnion(Shape):
    """Polynomial smooth minimum with blend radius ``k`` (fillets between parts).

    ``smin(a, b) = min(a, b) - k/4 * max(0, 1 - |a-b|/k)^2`` is 1-Lipschitz when
    ``a`` and ``b`` are, so it stays a bound; it grows the solid by at most ``k/4``.
    """

    def __init__(self, a: Shape, b: Shape, k: float):
        self.a, self.b, self.k = a, b, float(k)

    def bounds(self) -> tuple[Array, Array]:
        (la, ha), (lb, hb) = self.a.bounds(), self.b.bounds()
        return np.minimum(la, lb) - self.k / 4, np.maximum(ha, hb) + self.k / 4

    def _blend(self, da: Array, db: Array) -> Array:
        h = np.maximum(self.k - np.abs(da - db), 0.0) / self.k
        return np.minimum(da, db) - h * h * self.k * 0.25

    def _sdf(self, p: Array) -> Array:
        return self._blend(self.a._sdf(p), self.b._sdf(p))

    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        (da, ta), (db, tb) = self.a._sdf_tags(p), self.b._sdf_tags(p)
        return self._blend(da, db), np.where(da <= db, ta, tb)


class Intersect(Shape):
    """``max`` of the children (exact inside, bound outside)."""

    def __init__(self, children: Sequence[Shape]):
        if not children:
            raise ValueError("Intersect needs at least one child")
        self.children = list(children)

    def bounds(self) -> tuple[Array, Array]:
        boxes = [c.bounds() for c in self.children]
        lo = np.max([b[0] for b in boxes], axis=0)
        hi = np.min([b[1] for b in boxes], axis=0)
        return lo, np.maximum(hi, lo)

    def _sdf(self, p: Array) -> Array:
        out = self.children[0]._sdf(p)
        for c in self.children[1:]:
            out = np.maximum(out, c._sdf(p))
        return out

    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        out, tags = self.children[0]._sdf_tags(p)
        for c in self.children[1:]:
            d, t = c._sdf_tags(p)
            better = d > out
            out, tags = np.where(better, d, out), np.where(better, t, tags)
        return out, tags


class Subtract(Shape):
    """``a`` minus ``b``: ``max(a, -b)``. ``b`` is only evaluated inside its bounds."""

    def __init__(self, a: Shape, b: Shape):
        self.a, self.b = a, b
        self._bbox_b = b.bounds()

    def bounds(self) -> tuple[Array, Array]:
        return self.a.bounds()

    def _neg_b(self, p: Array, with_tags: bool):
        lo, hi = self._bbox_b
        dbox = box_distance_bound(p, lo, hi)
        near = dbox < 1e-3
        # Outside b's box, -b <= -dbox < 0. Using -dbox there keeps the sign exact and
        # the value a bound (it can only move the result towards zero).
        d = -dbox
        t = np.zeros(len(p), dtype=np.int32) if with_tags else None
        if near.any():
            if with_tags:
                db, tb = self.b._sdf_tags(p[near])
                d[near], t[near] = -db, tb
            else:
                d[near] = -self.b._sdf(p[near])
        return d, t

    def _sdf(self, p: Array) -> Array:
        return np.maximum(self.a._sdf(p), self._neg_b(p, False)[0])

    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        da, ta = self.a._sdf_tags(p)
        nb, tb = self._neg_b(p, True)
        # The cut faces keep the colour of the solid they were cut from.
        return np.maximum(da, nb), ta


class Transform(Shape):
    """``child`` scaled (per axis), then rotated, then translated: ``x = R (S y) + t``.

    With a uniform scale the SDF is exact (``s * d(y)``); with per-axis scales it is
    multiplied by the smallest factor, which keeps the sign exact and the value a bound.
    """

    def __init__(
        self,
        child: Shape,
        rotation: Array | None = None,
        translation: Array | None = None,
        scale: Array | None = None,
    ):
        # Nested transforms are fused into one so deep placement chains stay cheap.
        r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        t = np.zeros(3) if translation is None else np.asarray(translation, dtype=np.float64)
        s = np.ones(3) if scale is None else np.asarray(scale, dtype=np.float64)
        if isinstance(child, Transform) and np.allclose(s, s[0]):
            # x = R (s (R' (S' y) + t')) + t = (R R') ((s S') y) + (s R t' + t)
            t = r @ (s[0] * child.translation) + t
            r = r @ child.rotation
            s = s[0] * child.scale_xyz
            child = child.child
        self.child = child
        self.rotation = r
        self.translation = t
        self.scale_xyz = s
        # Most placements are pure translations (parts put in place); skipping the
        # identity rotation and unit scale halves the cost of those nodes.
        self._rotates = not np.array_equal(r, np.eye(3))
        self._scales = not np.array_equal(s, np.ones(3))

    def bounds(self) -> tuple[Array, Array]:
        lo, hi = self.child.bounds()
        if np.any(np.abs(lo) > 1e8) or np.any(np.abs(hi) > 1e8):
            return lo, hi
        corners = _bbox_corners(lo, hi) * self.scale_xyz
        x = corners @ self.rotation.T + self.translation
        return x.min(axis=0), x.max(axis=0)

    def _local(self, p: Array) -> Array:
        # y = S^-1 R^T (x - t); row vectors: (x - t) @ R then divide.
        q = p - self.translation
        if self._rotates:
            q = mat3(q, self.rotation)
        return q / self.scale_xyz if self._scales else q

    def _sdf(self, p: Array) -> Array:
        return self.child._sdf(self._local(p)) * self.scale_xyz.min()

    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        d, t = self.child._sdf_tags(self._local(p))
        return d * self.scale_xyz.min(), t


class Offset(Shape):
    """``d - r``: inflate by ``r`` (``r > 0``) or erode (``r < 0``)."""

    def __init__(self, child: Shape, delta: float):
        self.child, self.delta = child, float(delta)

    def bounds(self) -> tuple[Array, Array]:
        lo, hi = self.child.bounds()
        g = max(-self.delta, 0.0)
        return lo - g, hi + g

    def _sdf(self, p: Array) -> Array:
        return self.child._sdf(p) + self.delta

    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        d, t = self.child._sdf_tags(p)
        return d + self.delta, t


class Shell(Shape):
    """``|d| - thickness/2``: a hollow wall around the child's surface."""

    def __init__(self, child: Shape, thickness: float):
        self.child, self.thickness = child, float(thickness)

    def bounds(self) -> tuple[Array, Array]:
        lo, hi = self.child.bounds()
        return lo - self.thickness / 2, hi + self.thickness / 2

    def _sdf(self, p: Array) -> Array:
        return np.abs(self.child._sdf(p)) - self.thickness / 2

    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        d, t = self.child._sdf_tags(p)
        return np.abs(d) - self.thickness / 2, t


class Tag(Shape):
    """Marks a subtree with material tag ``k``; distances are the child's."""

    def __init__(self, child: Shape, k: int):
        self.child, self.k = child, int(k)

    def bounds(self) -> tuple[Array, Array]:
        return self.child.bounds()

    def _sdf(self, p: Array) -> Array:
        return self.child._sdf(p)

    def _sdf_tags(self, p: Array) -> tuple[Array, Array]:
        return self.child._sdf(p), np.full(len(p), self.k, dtype=np.int32)


# --------------------------------------------------------------------------------------
# Convenience constructors used by the shape families.
# --------------------------------------------------------------------------------------
def union(*shapes: Shape) -> Shape:
    """Union of one or more shapes (a single shape is returned as is)."""
    flat = [s for s in shapes if s is not None]
    return flat[0] if len(flat) == 1 else Union(flat)


def smooth_union(a: Shape, b: Shape, k: float) -> Shape:
    return SmoothUnion(a, b, k)


def box_at(center: Sequence[float], size: Sequence[float], radius: float = 0.0) -> Shape:
    """Box with full ``size`` (3,) centred at ``center``; ``radius`` rounds its edges."""
    half = tuple(float(s) / 2 for s in size)
    r = min(float(radius), 0.999 * min(half))
    return Box(half, max(r, 0.0)).translate(center)


def cylinder_between(a: Sequence[float], b: Sequence[float], radius: float) -> Shape:
    """Capped cylinder with axis from ``a`` to ``b``."""
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    axis = b_ - a_
    length = float(np.linalg.norm(axis))
    cyl = Cylinder(float(radius), length / 2)
    return Transform(cyl, rotation=_rotation_y_to(axis / max(length, 1e-12)), translation=(a_ + b_) / 2)


def _rotation_y_to(d: Array) -> Array:
    """Rotation ``(3, 3)`` taking the +y axis to unit vector ``d``."""
    y = np.array([0.0, 1.0, 0.0])
    v = np.cross(y, d)
    s = np.linalg.norm(v)
    c = float(y @ d)
    if s < 1e-9:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    return rotation_matrix(v / s, float(np.arctan2(s, c)))


# --------------------------------------------------------------------------------------
# Grid evaluation with empty-space skipping
# --------------------------------------------------------------------------------------
def sdf_grid(shape: Shape, lo: Sequence[float], hi: Sequence[float], res: int, block: int = 4) -> Array:
    """Signed distances on the ``(res+1)^3`` lattice spanning ``[lo, hi]`` (indices ``[x, y, z]``).

    Coarse-to-fine: the SDF is first evaluated at the centres of blocks of
    ``block^3`` cells; a block whose centre value exceeds its half-diagonal cannot
    contain the surface (the SDF is a distance bound), so its lattice points get the
    centre's value (right sign, no zero crossing). Only blocks near the surface are
    evaluated point by point. Marching cubes on the result is watertight as long as
    the border is outside the shape.

    Args:
        shape: the shape.
        lo, hi: (3,) corners of the lattice.
        res: cells per axis; must be a multiple of ``block``.
        block: cells per coarse block side.

    Returns:
        (res+1, res+1, res+1) float32 signed distances.
    """
    lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if res % block:
        raise ValueError("res must be a multiple of block")
    nb = res // block
    step = (hi_a - lo_a) / res
    bidx = np.stack(np.meshgrid(*(np.arange(nb),) * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = lo_a + (bidx + 0.5) * block * step
    dc = shape.sdf(centres)
    half_diag = 0.5 * block * float(np.linalg.norm(step))
    # 1.05 margin: tolerate SDFs that are bounds only up to round-off.
    near = np.abs(dc) <= half_diag * 1.05 + 1e-9
    coarse = dc.reshape(nb, nb, nb)
    # Fill every lattice point with its block's centre value (lattice points on
    # block faces take the value of the block with the larger index, clamped).
    cell_block = np.minimum(np.arange(res + 1) // block, nb - 1)
    grid = coarse[np.ix_(cell_block, cell_block, cell_block)].astype(np.float32)
    if near.any():
        # Lattice points to evaluate: every corner of every cell of a near block. A
        # point is needed when any of the (up to 8) cells around it is in a near block.
        cells = np.repeat(np.repeat(np.repeat(near.reshape(nb, nb, nb), block, 0), block, 1), block, 2)
        need = np.zeros((res + 1,) * 3, dtype=bool)
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    need[dx : dx + res, dy : dy + res, dz : dz + res] |= cells
        flat = np.flatnonzero(need)
        ijk = np.stack(np.unravel_index(flat, (res + 1,) * 3), -1)
        grid.reshape(-1)[flat] = shape.sdf(lo_a + ijk * step).astype(np.float32)
    # Far blocks adjacent to near ones share face points that were just evaluated
    # exactly; a far block's own value has the same sign there, since a far block
    # contains no surface at all.
    return grid
