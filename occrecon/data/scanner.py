"""A virtual terrestrial / RGB-D scanner: a mesh scanned from a few positions inside it.

A scanner stands at a position and sends rays over a panorama grid (equal steps in azimuth
and elevation, a blind cone below it where the tripod stands), keeping the first hit of each
ray up to a maximum range. What a real scan looks like then comes for free or nearly:

- occlusion shadows: a ray stops at the first surface, so nothing behind it is seen (wall
  backs, the far side of furniture, the floor under a bed);
- density falling with range: a fixed angular step spreads ~1/range^2 points per m^2, fewer
  again on surfaces seen at a grazing angle;
- range noise along the ray, sigma = ``noise_a + noise_b * range`` (Gaussian);
- outliers: mixed pixels at depth edges (a return between the foreground and the background
  depth, as a beam footprint straddling an edge gives) and a small share of random ranges
  along the ray (dust, multipath), both flagged in :class:`Scan`;
- a point budget: a seeded random subset, which keeps the density profile.

:func:`scanner_positions` picks free floor spots of a procedural room
(:class:`occrecon.data.rooms.Room`) at scanner height, away from furniture and walls;
:func:`scan_mesh` scans any triangle mesh from given positions. Everything is y up, in metres,
and deterministic from a seed (Open3D's ray casting is exact and ordered).

This module does not import :mod:`occrecon.data.rooms` (which imports it); a room is read
through its ``size``, ``parts`` (``kind``, ``bounds``) and ``shape.sdf``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

Array = np.ndarray

SCANNER_VERSION = "1"
"""Changes whenever the same settings and seed would give other points (recorded in dataset manifests)."""

_RAYS_PER_CHUNK = 1 << 20
"""Rays cast at once (24 MB of float32 rays): memory stays bounded at fine angular steps."""


@dataclass(frozen=True)
class ScannerSettings:
    """How a virtual scan is taken.

    Attributes:
        n_positions: scanner positions per room (:func:`scanner_positions`).
        height_range: (lo, hi) scanner height above the floor in metres, drawn uniformly
            (kept 0.15 m under the room's top).
        clearance: horizontal distance in metres a position keeps from furniture, clutter and walls.
        angular_step_deg: step of the panorama grid in azimuth and elevation, in degrees
            (0.2°: 1,800 × 750 rays per position with the default field of view).
        min_elevation_deg: lowest elevation scanned, in degrees (-90 looks straight down;
            terrestrial scanners are blind below about -60°, where their tripod stands).
        max_elevation_deg: highest elevation scanned, in degrees.
        min_range: returns nearer than this (m) are dropped.
        max_range: returns farther than this (m) are dropped.
        max_incidence_deg: returns from surfaces met more obliquely than this (angle between the
            ray and the surface normal) are dropped, as a real sensor loses them.
        noise_a: constant part of the range noise sigma (m).
        noise_b: part of the range noise sigma growing with range (m per m).
        edge_jump: a depth difference between neighbouring rays above this (m) marks a depth edge.
        mixed_pixel_prob: probability that the nearer ray at a depth edge returns a mixed pixel,
            a range drawn uniformly between the two depths.
        far_outlier_share: share of returns whose range is replaced by a uniform draw in
            ``[min_range, max_range]`` along the same ray (they may land behind walls).
        max_points: random subset of at most this many points over all positions (None: all).
    """

    n_positions: int = 3
    height_range: tuple[float, float] = (1.2, 1.8)
    clearance: float = 0.4
    angular_step_deg: float = 0.2
    min_elevation_deg: float = -60.0
    max_elevation_deg: float = 90.0
    min_range: float = 0.3
    max_range: float = 12.0
    max_incidence_deg: float = 87.0
    noise_a: float = 0.002
    noise_b: float = 0.001
    edge_jump: float = 0.1
    mixed_pixel_prob: float = 0.5
    far_outlier_share: float = 0.002
    max_points: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "height_range", tuple(float(v) for v in self.height_range))
        problems = _problems(self)
        if problems:
            raise ValueError("invalid scanner settings: " + "; ".join(problems))

    def sigma(self, ranges: Array) -> Array:
        """Range noise sigma (m) at ``ranges`` (m)."""
        return self.noise_a + self.noise_b * np.asarray(ranges, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON types, with :data:`SCANNER_VERSION` (what a dataset manifest records)."""
        out = dataclasses.asdict(self)
        out["height_range"] = list(self.height_range)
        out["version"] = SCANNER_VERSION
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ScannerSettings":
        """Settings from :meth:`to_dict`'s output or any subset of the fields (the rest default).

        Raises:
            ValueError: an unknown field, or a ``version`` other than :data:`SCANNER_VERSION`.
        """
        values = dict(values)
        version = str(values.pop("version", SCANNER_VERSION))
        if version != SCANNER_VERSION:
            raise ValueError(f"scanner settings of version {version}; this occrecon scans with version {SCANNER_VERSION}: rebuild the dataset")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown scanner settings {unknown}; known: {sorted(known)}")
        return cls(**values)


def scanner_settings(value: "ScannerSettings | Mapping[str, Any] | None") -> ScannerSettings | None:
    """``value`` as :class:`ScannerSettings` (a mapping goes through :meth:`ScannerSettings.from_dict`); None stays None."""
    if value is None or isinstance(value, ScannerSettings):
        return value
    if isinstance(value, Mapping):
        return ScannerSettings.from_dict(value)
    raise ValueError(f"scanner settings must be ScannerSettings, a mapping or None, not {type(value).__name__}")


def _problems(s: ScannerSettings) -> list[str]:
    """What is wrong with settings ``s``, one message per problem."""
    out = []
    finite = all(math.isfinite(float(v)) for v in (
        s.clearance, s.angular_step_deg, s.min_elevation_deg, s.max_elevation_deg, s.min_range, s.max_range,
        s.max_incidence_deg, s.noise_a, s.noise_b, s.edge_jump, s.mixed_pixel_prob, s.far_outlier_share, *s.height_range,
    ))
    if not finite:
        return ["every number must be finite"]
    if int(s.n_positions) != s.n_positions or s.n_positions < 1:
        out.append(f"n_positions must be a whole number >= 1, got {s.n_positions}")
    if len(s.height_range) != 2 or not 0 < s.height_range[0] <= s.height_range[1]:
        out.append(f"height_range must be (lo, hi) with 0 < lo <= hi, got {s.height_range}")
    if s.clearance < 0:
        out.append(f"clearance must be >= 0 m, got {s.clearance}")
    if not 0 < s.angular_step_deg <= 10:
        out.append(f"angular_step_deg must be in (0, 10], got {s.angular_step_deg}")
    if not -90 <= s.min_elevation_deg < s.max_elevation_deg <= 90:
        out.append(f"need -90 <= min_elevation_deg < max_elevation_deg <= 90, got {s.min_elevation_deg}, {s.max_elevation_deg}")
    if not 0 <= s.min_range < s.max_range:
        out.append(f"need 0 <= min_range < max_range, got {s.min_range}, {s.max_range}")
    if not 0 < s.max_incidence_deg <= 90:
        out.append(f"max_incidence_deg must be in (0, 90], got {s.max_incidence_deg}")
    if s.noise_a < 0 or s.noise_b < 0:
        out.append(f"noise_a and noise_b must be >= 0, got {s.noise_a}, {s.noise_b}")
    if s.edge_jump <= 0:
        out.append(f"edge_jump must be > 0 m, got {s.edge_jump}")
    for name in ("mixed_pixel_prob", "far_outlier_share"):
        if not 0 <= getattr(s, name) <= 1:
            out.append(f"{name} must be in [0, 1], got {getattr(s, name)}")
    if s.max_points is not None and (int(s.max_points) != s.max_points or s.max_points < 1):
        out.append(f"max_points must be a whole number >= 1 or None, got {s.max_points}")
    return out


@dataclass(frozen=True)
class Scan:
    """A virtual scan.

    Attributes:
        points: (n, 3) float32 returns, noise and outliers included.
        normals: (n, 3) float32 unit normals of the surfaces hit, turned towards the scanner
            (an outlier carries the normal of the surface its ray hit).
        scanner: (n,) int32 index into ``positions`` of the position each point was seen from.
        ranges: (n,) float32 noise-free range (m) of the surface each ray hit.
        outlier: (n,) bool, True for mixed pixels and random ranges.
        positions: (k, 3) float64 scanner positions.
    """

    points: Array
    normals: Array
    scanner: Array
    ranges: Array
    outlier: Array
    positions: Array

    def __len__(self) -> int:
        return len(self.points)


def panorama_directions(settings: ScannerSettings) -> tuple[Array, int, int]:
    """Unit ray directions of the panorama grid, row by row (elevation rows, azimuth columns).

    Returns:
        (rows * cols, 3) float32 directions (y up; azimuth 0 looks along +z), rows, cols.
    """
    step = math.radians(settings.angular_step_deg)
    lo, hi = math.radians(settings.min_elevation_deg), math.radians(settings.max_elevation_deg)
    rows = max(1, int(round((hi - lo) / step)))
    cols = max(3, int(round(2 * math.pi / step)))
    elevation = lo + (np.arange(rows) + 0.5) * (hi - lo) / rows
    azimuth = np.arange(cols) * (2 * math.pi / cols)
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    dirs = np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=-1)
    return dirs.reshape(-1, 3).astype(np.float32), rows, cols


def _raycasting_scene(vertices: Array, faces: Array) -> Any:
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)), o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32))
    )
    return scene


def _cast_panorama(scene: Any, origin: Array, dirs: Array) -> tuple[Array, Array]:
    """First hits of rays from ``origin`` along (m, 3) ``dirs``: (m,) float32 range (inf: none), (m, 3) float32 face normals."""
    import open3d as o3d

    t = np.empty(len(dirs), np.float32)
    normals = np.empty((len(dirs), 3), np.float32)
    rays = np.empty((min(len(dirs), _RAYS_PER_CHUNK), 6), np.float32)
    rays[:, :3] = np.asarray(origin, dtype=np.float32)
    for a in range(0, len(dirs), _RAYS_PER_CHUNK):
        b = min(a + _RAYS_PER_CHUNK, len(dirs))
        rays[: b - a, 3:] = dirs[a:b]
        hit = scene.cast_rays(o3d.core.Tensor(rays[: b - a]))
        t[a:b] = hit["t_hit"].numpy()
        normals[a:b] = hit["primitive_normals"].numpy()
    return t, normals


def _mixed_pixels(depth: Array, settings: ScannerSettings, rng: np.random.Generator) -> tuple[Array, Array]:
    """Mixed-pixel ranges at depth edges of a (rows, cols) depth image (inf: no return).

    At each pair of neighbouring rays (along azimuth, wrapping round, and along elevation)
    whose finite depths differ by more than ``edge_jump``, the nearer ray returns, with
    probability ``mixed_pixel_prob``, a range uniform between the two depths.

    Returns:
        (rows, cols) float64 new depth, (rows, cols) bool which rays were changed.
    """
    near = depth.astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf where neither ray returned
        far = _farthest_neighbour(depth, np.full_like(near, -np.inf), settings.edge_jump)
    edge = np.isfinite(far)
    mixed = edge & (rng.random(depth.shape) < settings.mixed_pixel_prob)
    u = rng.random(depth.shape)
    out = near.copy()
    out[mixed] = near[mixed] + u[mixed] * (far[mixed] - near[mixed])
    return out, mixed


def _farthest_neighbour(depth: Array, far: Array, jump: float) -> Array:
    """Per ray, the largest neighbour depth more than ``jump`` beyond its own (``far`` where none)."""
    for shifted in (np.roll(depth, -1, axis=1), np.roll(depth, 1, axis=1), np.pad(depth[1:], ((0, 1), (0, 0)), constant_values=np.inf),
                    np.pad(depth[:-1], ((1, 0), (0, 0)), constant_values=np.inf)):
        edge = np.isfinite(depth) & np.isfinite(shifted) & (shifted - depth > jump)
        far = np.where(edge, np.maximum(far, shifted), far)
    return far


def _scan_position(scene: Any, origin: Array, dirs: Array, shape: tuple[int, int], settings: ScannerSettings, rng: np.random.Generator) -> tuple[Array, ...]:
    """One position's returns: points, normals, true ranges, outlier flags (see :class:`Scan`)."""
    t, normals = _cast_panorama(scene, origin, dirs)
    cos_incidence = np.abs(np.einsum("ij,ij->i", normals, dirs))
    ok = np.isfinite(t) & (cos_incidence >= math.cos(math.radians(settings.max_incidence_deg)) - 1e-7)
    t = np.where(ok, t, np.inf)
    measured, mixed = _mixed_pixels(t.reshape(shape), settings, rng)
    measured, mixed = measured.ravel(), mixed.ravel()
    keep = np.flatnonzero(np.isfinite(t) & (t >= settings.min_range) & (t <= settings.max_range))
    true_range = t[keep].astype(np.float64)
    r = measured[keep]
    outlier = mixed[keep]
    far = rng.random(len(keep)) < settings.far_outlier_share
    r = np.where(far, rng.uniform(settings.min_range, settings.max_range, len(keep)), r)
    outlier = outlier | far
    r = r + rng.normal(size=len(keep)) * settings.sigma(r)  # along the ray
    n = normals[keep]
    n = n * np.where(np.einsum("ij,ij->i", n, dirs[keep]) > 0, -1.0, 1.0)[:, None].astype(np.float32)
    points = np.asarray(origin, dtype=np.float64) + dirs[keep].astype(np.float64) * r[:, None]
    return points.astype(np.float32), n.astype(np.float32), true_range.astype(np.float32), outlier


def scan_mesh(
    vertices: Array, faces: Array, positions: Array, settings: ScannerSettings | None = None, *, seed: int | np.random.Generator | None = 0
) -> Scan:
    """Scan a triangle mesh from ``positions`` (see the module docstring for what the scan models).

    Args:
        vertices: (v, 3) float mesh vertices in metres, y up.
        faces: (f, 3) int triangles (their winding does not matter).
        positions: (k, 3) float scanner positions.
        settings: how to scan (default :class:`ScannerSettings`; ``n_positions``,
            ``height_range`` and ``clearance`` are for :func:`scanner_positions` and unused here).
        seed: a seed or generator (the only randomness: noise, outliers, subsampling).

    Returns:
        the :class:`Scan`, points in position order, at most ``settings.max_points`` of them.

    Example:
        >>> import trimesh
        >>> box = trimesh.creation.box((4.0, 3.0, 4.0))
        >>> scan = scan_mesh(box.vertices, box.faces, [[0.0, 0.0, 0.0]], ScannerSettings(angular_step_deg=2.0))
        >>> bool(len(scan) > 5000)
        True
    """
    settings = settings or ScannerSettings()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if not len(positions) or not np.isfinite(positions).all():
        raise ValueError("scan_mesh needs at least one finite scanner position")
    faces = np.asarray(faces)
    if not len(faces):
        raise ValueError("scan_mesh needs a mesh with faces")
    scene = _raycasting_scene(np.asarray(vertices), faces)
    dirs, rows, cols = panorama_directions(settings)
    parts = []
    for k, origin in enumerate(positions):
        got = _scan_position(scene, origin, dirs, (rows, cols), settings, rng)
        parts.append((*got, np.full(len(got[0]), k, np.int32)))
    points, normals, ranges, outlier, index = (np.concatenate([p[j] for p in parts]) for j in range(5))
    if settings.max_points is not None and len(points) > settings.max_points:
        pick = np.sort(rng.choice(len(points), int(settings.max_points), replace=False))
        points, normals, ranges, outlier, index = points[pick], normals[pick], ranges[pick], outlier[pick], index[pick]
    return Scan(points, normals, index, ranges, outlier, positions)


def scanner_positions(room: Any, settings: ScannerSettings | None = None, *, seed: int | np.random.Generator | None = 0, candidates: int = 400) -> Array:
    """Scanner positions in a procedural room: free floor spots at scanner height, spread apart.

    Candidates are drawn uniformly over the interior floor ``clearance`` in from the walls'
    inner faces, at a height drawn from ``height_range`` (at most 0.15 m under the room's
    top). A candidate is free when it lies ``clearance`` or more outside the floor
    footprint (box) of every piece of furniture and clutter, and the room's SDF there is at
    least ``clearance / 2`` (nothing overhangs it). The positions are chosen by farthest-point
    selection among the free candidates, starting from the first. Where fewer than
    ``n_positions`` candidates are free, the clearance is halved (up to three times); a
    room with no free spot at all gets its freest candidate.

    Args:
        room: a :class:`occrecon.data.rooms.Room` (read through ``size``, ``parts`` and ``shape``).
        settings: ``n_positions``, ``height_range`` and ``clearance`` are used.
        seed: a seed or generator.
        candidates: candidate spots drawn.

    Returns:
        (n_positions, 3) float64 positions in the room frame (y up, floor top at 0).
    """
    settings = settings or ScannerSettings()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    W, H, D = (float(v) for v in room.size)
    items = [p.bounds for p in room.parts if p.kind != "structure"]
    lo = np.array([b[0] for b in items]).reshape(-1, 3)
    hi = np.array([b[1] for b in items]).reshape(-1, 3)
    u = rng.random((candidates, 2))
    top = max(H - 0.15, 0.1)
    height = np.minimum(rng.uniform(*settings.height_range, candidates), top)
    clearance, free = settings.clearance, np.zeros(0, np.int64)
    for _ in range(4):
        margin = np.minimum(clearance, [W / 2 - 0.01, D / 2 - 0.01])
        xz = (u - 0.5) * 2 * np.array([W / 2, D / 2]) * (1 - 2 * margin / np.array([W, D]))
        spots = np.stack([xz[:, 0], height, xz[:, 1]], axis=1)
        gap = _footprint_gap(spots, lo, hi)
        clear = room.shape.sdf(spots) >= clearance / 2
        free = np.flatnonzero((gap >= clearance) & clear)
        if len(free) >= settings.n_positions:
            break
        clearance /= 2
    if not len(free):
        free = np.array([int(np.argmax(gap + np.minimum(room.shape.sdf(spots), 0.0)))])
    return _farthest(spots[free], int(settings.n_positions))


def _footprint_gap(spots: Array, lo: Array, hi: Array) -> Array:
    """(n,) horizontal distance of each spot to the nearest x/z footprint box (inf without boxes)."""
    if not len(lo):
        return np.full(len(spots), np.inf)
    dx = np.maximum(np.maximum(lo[None, :, 0] - spots[:, None, 0], spots[:, None, 0] - hi[None, :, 0]), 0.0)
    dz = np.maximum(np.maximum(lo[None, :, 2] - spots[:, None, 2], spots[:, None, 2] - hi[None, :, 2]), 0.0)
    return np.sqrt(dx * dx + dz * dz).min(axis=1)


def _farthest(points: Array, n: int) -> Array:
    """Up to ``n`` of ``points`` by farthest-point selection from the first; repeats the last when fewer exist."""
    chosen = [0]
    dist = np.linalg.norm(points - points[0], axis=1)
    while len(chosen) < min(n, len(points)):
        k = int(np.argmax(dist))
        chosen.append(k)
        dist = np.minimum(dist, np.linalg.norm(points - points[k], axis=1))
    chosen += [chosen[-1]] * (n - len(chosen))
    return points[chosen].astype(np.float64)


def scan_room(room: Any, mesh: Any, settings: ScannerSettings | None = None, *, seed: int | np.random.Generator | None = 0) -> Scan:
    """Scan a procedural room's surface ``mesh`` (e.g. :func:`occrecon.data.rooms.room_mesh`) from :func:`scanner_positions`."""
    settings = settings or ScannerSettings()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    positions = scanner_positions(room, settings, seed=rng)
    return scan_mesh(mesh.vertices, mesh.faces, positions, settings, seed=rng)
