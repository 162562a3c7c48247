"""Procedural metric rooms and their training data for the scene (crop) model.

A room is built in metres, ``y`` up, with the top of the floor at ``y = 0`` and the
interior ``[-W/2, W/2] x [0, H] x [-D/2, D/2]``: a floor slab below ``y = 0``, two to
four walls outside the interior (some rooms miss walls, as scans do) with door and
window openings, sometimes a ceiling, furniture from the object families of
:mod:`occrecon.data.shapes` (which are built in metres, standing on ``y = 0``, front
``+z``) and clutter primitives. :func:`random_room` composes all of it into one
:class:`~occrecon.data.sdf.Union`, whose bounding-box culling keeps a room's SDF cheap.

:func:`prepare_room` turns a room into arrays: a surface mesh extracted block by
block (fine lattice near furniture, coarser on the flat floor/walls/ceiling), surface
points with normals, a scan-visibility mask (no ceiling, no exterior faces, random
holes), and exactly labelled occupancy samples (uniform and near-surface) in metres.
Every point set is sorted into a coarse grid of spatial bins so that
:class:`occrecon.data.cache.CropDataset` reads only the bins a crop overlaps.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import mcubes
import numpy as np
import trimesh

from occrecon.data.prepare import occupancy, sample_surface
from occrecon.data.scanner import ScannerSettings, scan_room, scanner_settings
from occrecon.data.sdf import Box, Cylinder, Shape, Union, box_at, rotation_matrix, sdf_grid
from occrecon.data.shapes import FAMILIES

Rng = np.random.Generator
Array = np.ndarray

STRUCTURE, FURNITURE, CLUTTER = "structure", "furniture", "clutter"
POINT_SETS = ("surface", "uniform", "near")
"""Binned point sets of a prepared room: ``{name}_points`` and ``{name}_offsets``."""
PACKED = {"scan_mask": "surface", "uniform_occ": "uniform", "near_occ": "near"}
"""Bit-packed per-point flags and the point set they belong to."""


# --------------------------------------------------------------------------------------
# Rooms
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RoomPart:
    """One element of a room.

    Attributes:
        name: family or element name (``"floor"``, ``"wall_x-"``, ``"chair"``, ``"clutter_box"`` ...).
        kind: ``"structure"`` (floor, walls, ceiling), ``"furniture"`` or ``"clutter"``.
        shape: the part placed in the room frame.
        transform: (4, 4) local-to-room matrix (uniform scale, rotation about y, translation);
            the identity for structure, which is built in the room frame.
        bounds: conservative box ``(lo (3,), hi (3,))`` of the placed part.
        on: ``"floor"`` or the index (as a string) of the part it stands on; ``""`` for structure.
    """

    name: str
    kind: str
    shape: Shape
    transform: Array
    bounds: tuple[Array, Array]
    on: str = ""


@dataclass(frozen=True, eq=False)
class Room:
    """A composed room.

    Attributes:
        shape: union of every part (SDF negative inside, metres).
        size: (3,) interior width, height, depth ``(W, H, D)``.
        bounds: conservative box ``(lo (3,), hi (3,))`` of the whole solid.
        parts: the parts, structure first.
        walls: the sides that have a wall, among ``"x-", "x+", "z-", "z+"``.
        has_ceiling: whether a ceiling slab closes the room at ``y = H``.
    """

    shape: Shape
    size: Array
    bounds: tuple[Array, Array]
    parts: tuple[RoomPart, ...]
    walls: tuple[str, ...]
    has_ceiling: bool

    @property
    def height(self) -> float:
        """Interior height ``H`` (floor top to ceiling underside / wall top)."""
        return float(self.size[1])


@dataclass(frozen=True)
class _Indoor:
    """How a family is used indoors: draw weight, where it stands, how often against a wall."""

    weight: float
    on: str  # "floor", "support" (on a table/cabinet) or "either"
    wall_prob: float
    support: bool = False  # other objects may stand on it


INDOOR: dict[str, _Indoor] = {
    "chair": _Indoor(3.0, "floor", 0.1),
    "table": _Indoor(2.0, "floor", 0.3, support=True),
    "sofa": _Indoor(1.0, "floor", 0.7),
    "cabinet": _Indoor(1.5, "floor", 0.9, support=True),
    "lamp": _Indoor(1.0, "either", 0.3),
    "bed": _Indoor(0.6, "floor", 0.8),
    "bench": _Indoor(0.5, "floor", 0.3),
    "monitor": _Indoor(0.8, "support", 0.0),
    "mug": _Indoor(0.7, "either", 0.0),
    "bottle": _Indoor(0.7, "either", 0.0),
    "vase": _Indoor(0.7, "either", 0.1),
}
"""Object families that make sense in a room (cars, airplanes and random CSG do not)."""

_WALL_ANGLE = {"z-": 0.0, "z+": np.pi, "x-": np.pi / 2, "x+": -np.pi / 2}  # front (+z) faces inward


def _u(rng: Rng, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _matrix(scale: float, angle: float, t: Sequence[float]) -> Array:
    """(4, 4) local-to-room transform: uniform ``scale``, rotation ``angle`` about y, translation ``t``."""
    m = np.eye(4)
    m[:3, :3] = rotation_matrix((0, 1, 0), angle) * scale
    m[:3, 3] = t
    return m


def _structure_part(name: str, shape: Shape) -> RoomPart:
    """A floor/wall/ceiling part: built in the room frame, so its transform is the identity."""
    return RoomPart(name, STRUCTURE, shape, np.eye(4), shape.bounds())


def _structure(rng: Rng, size: Array) -> tuple[list[RoomPart], tuple[str, ...], bool]:
    """Floor slab, 2-4 walls with door/window openings, and an optional ceiling (room frame)."""
    W, H, D = (float(v) for v in size)
    tw = _u(rng, 0.1, 0.25)  # wall thickness
    tf = _u(rng, 0.1, 0.2)  # floor slab thickness
    has_ceiling = bool(rng.random() < 0.3)
    tc = _u(rng, 0.1, 0.2)
    top = H + tc if has_ceiling else H
    parts = [_structure_part("floor", box_at((0, -tf / 2, 0), (W + 2 * tw, tf, D + 2 * tw)))]
    n_walls = int(rng.choice([2, 3, 4], p=[0.15, 0.25, 0.6]))
    sides = ("x-", "x+", "z-", "z+")
    keep = sorted(rng.choice(4, n_walls, replace=False).tolist())
    walls = tuple(sides[k] for k in keep)
    for side in walls:
        along_x = side[0] == "z"  # a wall at z = +-D/2 runs along x
        length = W + 2 * tw if along_x else D + 2 * tw
        inner = W if along_x else D  # stretch of the wall facing the interior
        sign = -1.0 if side[1] == "-" else 1.0
        off = sign * ((D if along_x else W) / 2 + tw / 2)
        centre = (0.0, (top - tf) / 2, off) if along_x else (off, (top - tf) / 2, 0.0)
        dims = (length, top + tf, tw) if along_x else (tw, top + tf, length)
        wall: Shape = box_at(centre, dims)
        holes = _openings(rng, inner, H, tw, along_x, off)
        if holes:
            wall = wall - (holes[0] if len(holes) == 1 else Union(holes))
        parts.append(_structure_part(f"wall_{side}", wall))
    if has_ceiling:
        parts.append(_structure_part("ceiling", box_at((0, H + tc / 2, 0), (W + 2 * tw, tc, D + 2 * tw))))
    return parts, walls, has_ceiling


def _openings(rng: Rng, inner: float, H: float, tw: float, along_x: bool, off: float) -> list[Shape]:
    """Door and window boxes cut through one wall, side by side without overlapping."""
    spans: list[tuple[float, float]] = []
    holes: list[Shape] = []
    wants = []
    if rng.random() < 0.5:
        wants.append("door")
    wants += ["window"] * int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))
    for kind in wants:
        if kind == "door":
            w = _u(rng, 1.4, 1.8) if rng.random() < 0.1 else _u(rng, 0.75, 1.0)
            y0, y1 = 0.0, min(_u(rng, 2.0, 2.2), H - 0.1)
        else:
            w = _u(rng, 0.5, 2.0)
            y0 = _u(rng, 0.6, 1.1)
            y1 = min(y0 + _u(rng, 0.6, 1.6), H - 0.15)
        if w > inner - 0.4 or y1 - y0 < 0.3:
            continue
        for _ in range(10):
            c = _u(rng, -inner / 2 + 0.15 + w / 2, inner / 2 - 0.15 - w / 2)
            if all(c + w / 2 + 0.2 < a or c - w / 2 - 0.2 > b for a, b in spans):
                spans.append((c - w / 2, c + w / 2))
                # Deeper than the wall so the cut goes through both faces.
                depth = tw + 0.2
                centre = (c, (y0 + y1) / 2, off) if along_x else (off, (y0 + y1) / 2, c)
                dims = (w, y1 - y0, depth) if along_x else (depth, y1 - y0, w)
                holes.append(box_at(centre, dims))
                break
    return holes


@dataclass
class _Support:
    """A placed table/cabinet other objects can stand on."""

    index: int  # part index
    shape: Shape
    angle: float
    centre: Array  # (3,) translation of the part
    half: tuple[float, float]  # local half extents (x, z) of its top, scaled
    top: float  # highest y of its bounds
    rects: list[tuple[float, float, float, float]] = field(default_factory=list)


def _overlaps(r: tuple[float, float, float, float], others: list[tuple[float, float, float, float]], shrink: float) -> bool:
    """Whether footprint ``r`` = (x0, z0, x1, z1) overlaps any of ``others`` once both are shrunk by ``shrink``."""
    for o in others:
        if (r[0] + shrink < o[2] - shrink and o[0] + shrink < r[2] - shrink
                and r[1] + shrink < o[3] - shrink and o[1] + shrink < r[3] - shrink):
            return True
    return False


def _top_height(shape: Shape, x: float, z: float, y_hi: float, depth: float = 0.4, step: float = 0.002) -> float | None:
    """Height of the first solid point below ``y_hi`` on the vertical line at ``(x, z)`` (None: no top there)."""
    ys = y_hi + step - np.arange(0.0, depth, step)
    p = np.stack([np.full_like(ys, x), ys, np.full_like(ys, z)], 1)
    inside = np.flatnonzero(shape.sdf(p) < 0)
    return float(ys[inside[0]]) if len(inside) else None


def _draw_object(rng: Rng, name: str, max_height: float) -> tuple[Shape, float] | None:
    """A family shape and a scale within +-20% of its native metric size that fits under ``max_height``."""
    for _ in range(5):
        base = FAMILIES[name](rng)
        h = float(base.bounds()[1][1])
        s_hi = min(1.2, max_height / max(h, 1e-6))
        if s_hi >= 0.8:
            return base, _u(rng, 0.8, s_hi)
    return None


def _clutter_shape(rng: Rng, small: bool) -> Shape:
    """A box or cylinder standing on ``y = 0`` (``small``: table-top sized)."""
    k = 0.35 if small else 1.0
    if rng.random() < 0.6:
        size = (_u(rng, 0.08, 0.6) * k, _u(rng, 0.05, 0.5) * k, _u(rng, 0.08, 0.6) * k)
        return box_at((0, size[1] / 2, 0), size, _u(rng, 0.0, 0.3) * min(size))
    r, h = _u(rng, 0.04, 0.25) * k, _u(rng, 0.08, 0.8) * k
    return Cylinder(r, h / 2).translate((0, h / 2, 0))


def _place_floor(
    rng: Rng, base: Shape, scale: float, size: Array, walls: tuple[str, ...], wall_prob: float,
    rects: list[tuple[float, float, float, float]], tries: int = 30,
) -> tuple[Shape, float, Array] | None:
    """Rejection-sample a floor position and a rotation about y without footprint overlap.

    Returns:
        (placed shape, angle, translation (3,)) or None when nothing fits.
    """
    W, _, D = (float(v) for v in size)
    for _ in range(tries):
        side = None
        if walls and rng.random() < wall_prob:
            side = walls[int(rng.integers(len(walls)))]
            angle = _WALL_ANGLE[side] + float(rng.normal(0, np.radians(1.5)))
        elif rng.random() < 0.6:  # most furniture is aligned with the walls
            angle = float(rng.integers(4)) * np.pi / 2 + float(rng.normal(0, np.radians(3)))
        else:
            angle = _u(rng, 0, 2 * np.pi)
        lo, hi = base.scale(scale).rotate((0, 1, 0), angle).bounds()
        if hi[0] - lo[0] > W - 0.04 or hi[2] - lo[2] > D - 0.04:
            continue
        x = _u(rng, -W / 2 + 0.02 - lo[0], W / 2 - 0.02 - hi[0])
        z = _u(rng, -D / 2 + 0.02 - lo[2], D / 2 - 0.02 - hi[2])
        gap = _u(rng, 0.0, 0.05)
        if side == "z-":
            z = -D / 2 + gap - lo[2]
        elif side == "z+":
            z = D / 2 - gap - hi[2]
        elif side == "x-":
            x = -W / 2 + gap - lo[0]
        elif side == "x+":
            x = W / 2 - gap - hi[0]
        r = (x + lo[0], z + lo[2], x + hi[0], z + hi[2])
        # A little shrink tolerates touching/tucked-in parts, not furniture inside furniture.
        if _overlaps(r, rects, 0.03):
            continue
        rects.append(r)
        t = np.array([x, 0.0, z])
        return base.scale(scale).rotate((0, 1, 0), angle).translate(t), angle, t
    return None


def _place_on_support(
    rng: Rng, base: Shape, scale: float, supports: list[_Support], H: float, monitor: bool, tries: int = 20
) -> tuple[Shape, float, Array, int] | None:
    """Put an object on a random table/cabinet top (monitors near its back edge, facing its front).

    Returns:
        (placed shape, angle, translation (3,), support part index) or None.
    """
    for _ in range(tries):
        sup = supports[int(rng.integers(len(supports)))]
        hx, hz = sup.half
        # Inner 35% of the top's extents: inside round/oval tops too (0.35*sqrt(2) < 0.5).
        u = _u(rng, -0.35, 0.35) * 2 * hx
        v = (_u(rng, -0.35, -0.15) if monitor else _u(rng, -0.35, 0.35)) * 2 * hz
        c, s = np.cos(sup.angle), np.sin(sup.angle)
        x, z = sup.centre[0] + c * u + s * v, sup.centre[2] - s * u + c * v
        y = _top_height(sup.shape, x, z, sup.top)
        if y is None:
            continue
        angle = sup.angle + float(rng.normal(0, np.radians(10))) if monitor else _u(rng, 0, 2 * np.pi)
        placed = base.scale(scale).rotate((0, 1, 0), angle)
        lo, hi = placed.bounds()
        if y + hi[1] > H - 0.1:
            continue
        r = (x + lo[0], z + lo[2], x + hi[0], z + hi[2])
        if _overlaps(r, sup.rects, 0.0):
            continue
        sup.rects.append(r)
        t = np.array([x, y, z])
        return placed.translate(t), angle, t, sup.index
    return None


def random_room(
    rng: Rng,
    *,
    size_range: Sequence[Sequence[float]] = ((3, 8), (2.4, 3.2), (3, 8)),
    n_furniture: tuple[int, int] = (4, 12),
    n_clutter: tuple[int, int] = (0, 6),
    families: Sequence[str] | None = None,
) -> Room:
    """A random furnished room in metres (y up, floor top at ``y = 0``, interior centred on x/z).

    Furniture is drawn from :data:`INDOOR` (or ``families``), scaled to its family's
    native size +-20%, rotated about y (mostly wall-aligned, sometimes against a
    wall), placed by 2D footprint rejection sampling; monitors, table lamps and small
    objects go on tables/cabinets. Items that do not fit after a few tries are dropped,
    so small rooms hold fewer than drawn.

    Args:
        rng: the only source of randomness.
        size_range: ``((W lo, W hi), (H lo, H hi), (D lo, D hi))`` interior size ranges in metres.
        n_furniture: inclusive range of the number of family objects drawn.
        n_clutter: inclusive range of the number of clutter boxes/cylinders.
        families: indoor families to draw from (default: all of :data:`INDOOR`).

    Returns:
        the room.
    """
    names = list(INDOOR) if families is None else list(families)
    unknown = [n for n in names if n not in INDOOR]
    if unknown or not names:
        raise ValueError(f"unknown indoor families {unknown}; known: {sorted(INDOOR)}")
    size = np.array([_u(rng, float(a), float(b)) for a, b in size_range])
    W, H, D = (float(v) for v in size)
    parts, walls, has_ceiling = _structure(rng, size)

    weights = np.array([INDOOR[n].weight for n in names])
    n_draw = int(rng.integers(n_furniture[0], n_furniture[1] + 1))
    drawn = [names[int(k)] for k in rng.choice(len(names), n_draw, p=weights / weights.sum())]
    objects = []
    for name in drawn:
        got = _draw_object(rng, name, H - 0.1)
        if got is not None:
            objects.append((name, *got))
    # Large floor items first, while there is still room for them.
    def footprint(o: tuple[str, Shape, float]) -> float:
        lo, hi = o[1].bounds()
        return float((hi[0] - lo[0]) * (hi[2] - lo[2])) * o[2] ** 2

    floor_first = sorted(
        (o for o in objects if INDOOR[o[0]].on == "floor"), key=footprint, reverse=True
    ) + [o for o in objects if INDOOR[o[0]].on != "floor"]
    for _ in range(int(rng.integers(n_clutter[0], n_clutter[1] + 1))):
        small = bool(rng.random() < 0.3)
        floor_first.append(("clutter_small" if small else "clutter", _clutter_shape(rng, small), 1.0))

    rects: list[tuple[float, float, float, float]] = []
    supports: list[_Support] = []
    for name, base, scale in floor_first:
        kind = CLUTTER if name.startswith("clutter") else FURNITURE
        where = "support" if name == "clutter_small" else ("floor" if kind == CLUTTER else INDOOR[name].on)
        if name == "lamp" and where == "either":
            where = "support" if base.bounds()[1][1] * scale < 0.8 else "floor"  # table vs floor lamps
        if where == "either":
            where = "support" if supports and rng.random() < 0.7 else "floor"
        on = "floor"
        placed = None
        if where == "support" and supports:
            got = _place_on_support(rng, base, scale, supports, H, monitor=name == "monitor")
            if got is not None:
                shape, angle, t, k = got
                placed, on = (shape, angle, t), str(k)
        if placed is None and (where != "support" or name in ("lamp", "mug", "bottle", "vase", "clutter_small")):
            placed = _place_floor(rng, base, scale, size, walls, 0.0 if kind == CLUTTER else INDOOR[name].wall_prob, rects)
        if placed is None:
            continue
        shape, angle, t = placed
        tag = name
        if kind == CLUTTER:
            tag = "clutter_box" if isinstance(_leaf(base), Box) else "clutter_cylinder"
        part = RoomPart(tag, kind, shape, _matrix(scale, angle, t), shape.bounds(), on)
        parts.append(part)
        if kind == FURNITURE and INDOOR[name].support and on == "floor":
            lo, hi = base.bounds()
            top = float(shape.bounds()[1][1])
            if top < 1.3:  # objects on tall wardrobes would be out of a scanner's sight
                half = (float(max(-lo[0], hi[0])) * scale, float(max(-lo[2], hi[2])) * scale)
                supports.append(_Support(len(parts) - 1, shape, angle, t, half, top))

    shape = Union([p.shape for p in parts])
    return Room(shape, size, shape.bounds(), tuple(parts), walls, has_ceiling)


def _leaf(shape: Shape) -> Shape:
    """The primitive under a chain of transforms (to name clutter parts)."""
    while hasattr(shape, "child"):
        shape = shape.child
    return shape


# --------------------------------------------------------------------------------------
# Surface
# --------------------------------------------------------------------------------------
def _cells(block_size: float, cell: float) -> int:
    n = int(round(block_size / cell))
    if abs(n * cell - block_size) > 1e-9 * max(block_size, 1.0) or n % 4:
        raise ValueError(f"block_size {block_size} must be a multiple of 4 lattice cells of {cell}")
    return n


def iter_room_mesh(
    room: Room, *, mesh_cell: float = 0.01, voxel_size: float = 0.02, block_size: float = 0.64
) -> Iterator[tuple[Array, Array]]:
    """Marching-cubes surface of a room, block by block (see :func:`room_mesh`).

    Yields:
        per non-empty block, vertices (v, 3) float64 in metres and faces (f, 3) int64
        indexing that block's vertices, in a fixed block order.
    """
    n_fine, n_coarse = _cells(block_size, mesh_cell), _cells(block_size, voxel_size)
    lo, hi = room.bounds
    # Aligned with the coarse lattice (hence the fine one) and two cells of air around the room.
    origin = (np.floor(lo / voxel_size) - 2) * voxel_size
    n_blocks = np.ceil((hi + 2 * voxel_size - origin) / block_size).astype(int)
    parts = room.parts
    boxes_lo = np.array([p.bounds[0] for p in parts])
    boxes_hi = np.array([p.bounds[1] for p in parts])
    structural = np.array([p.kind == STRUCTURE for p in parts])
    margin = 3 * voxel_size
    half_diag = 0.5 * np.sqrt(3) * block_size
    for idx in np.ndindex(*n_blocks):
        blo = origin + np.asarray(idx) * block_size
        bhi = blo + block_size
        gap = np.max(np.maximum(np.maximum(boxes_lo - bhi, blo - boxes_hi), 0.0), axis=1)
        kids = np.flatnonzero(gap < margin)
        if not len(kids):
            continue
        local = parts[kids[0]].shape if len(kids) == 1 else Union([parts[k].shape for k in kids])
        # The SDF is a distance bound: a centre value beyond the half-diagonal means no surface.
        if abs(float(local.sdf(((blo + bhi) / 2)[None])[0])) > half_diag * 1.05:
            continue
        fine = not structural[kids].all()
        n = n_fine if fine else n_coarse
        grid = sdf_grid(local, blo, bhi, n)
        inside = grid < 0
        if not inside.any() or inside.all():
            continue
        # Exact zeros make marching cubes emit degenerate faces (see prepare.mesh_from_lattice).
        grid[grid == 0] = 1e-7
        v, f = mcubes.marching_cubes(-grid, 0.0)
        if len(f):
            yield v * ((bhi - blo) / n) + blo, f.astype(np.int64)


def room_mesh(room: Room, *, mesh_cell: float = 0.01, voxel_size: float = 0.02, block_size: float = 0.64) -> trimesh.Trimesh:
    """Marching-cubes surface of a room, extracted block by block.

    The room is cut into cubes of side ``block_size``; each is meshed from the SDF of
    only the parts whose boxes come within a few cells of it (their union is the
    room's SDF wherever ``|sdf|`` is below that margin, so values at sign changes, and
    hence vertices on shared block faces, are identical to the whole room's). Blocks
    near furniture or clutter use the fine lattice ``mesh_cell``; blocks with only
    floor/walls/ceiling use ``voxel_size`` (axis-aligned faces come out exact, only
    their edges are chamfered at that scale). :func:`prepare_room` samples the blocks
    as they come, so only one block's lattice and mesh are ever in memory; this
    function keeps them all (a large room has a few million faces).

    Args:
        room: the room.
        mesh_cell: lattice spacing near furniture/clutter (m).
        voxel_size: lattice spacing of structure-only blocks (m); a multiple of ``mesh_cell``.
        block_size: block side (m); a multiple of ``4 * voxel_size``.

    Returns:
        trimesh (V, 3) vertices / (F, 3) faces, outward oriented, vertices not merged
        across blocks (the surface is closed up to those seams).
    """
    verts, faces, n_verts = [], [], 0
    for v, f in iter_room_mesh(room, mesh_cell=mesh_cell, voxel_size=voxel_size, block_size=block_size):
        verts.append(v)
        faces.append(f + n_verts)
        n_verts += len(v)
    if not faces:
        raise ValueError("room has no surface")
    return trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False)


def _face_areas(verts: Array, faces: Array) -> Array:
    """(F,) triangle areas."""
    tri = verts[faces]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def sample_room_surface(
    room: Room, density: float, rng: Rng, *, mesh: trimesh.Trimesh | None = None, **mesh_kwargs: float
) -> tuple[Array, Array, float, Array]:
    """Area-weighted surface samples of a room at ``density`` points per m^2, block by block.

    Each block gets ``density * area`` samples, stochastically rounded (so the total
    matches the density in expectation without a second meshing pass), drawn with
    :func:`occrecon.data.prepare.sample_surface`.

    Args:
        room: the room.
        density: samples per m^2.
        rng: random generator.
        mesh: sample this mesh instead (one block).
        **mesh_kwargs: ``mesh_cell``, ``voxel_size``, ``block_size`` of :func:`iter_room_mesh`.

    Returns:
        points (N, 3) float32, outward normals (N, 3) float32, total area (m^2),
        mesh bounds (2, 3) float64.
    """
    blocks = [(mesh.vertices, mesh.faces)] if mesh is not None else iter_room_mesh(room, **mesh_kwargs)
    pts, nrm = [], []
    area = 0.0
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for v, f in blocks:
        a = float(_face_areas(v, f).sum())
        area += a
        lo, hi = np.minimum(lo, v.min(axis=0)), np.maximum(hi, v.max(axis=0))
        x = density * a
        n = int(x) + int(rng.random() < x - int(x))
        if n:
            p, q = sample_surface(trimesh.Trimesh(v, f, process=False), n, rng)
            pts.append(p)
            nrm.append(q)
    if not np.isfinite(lo).all():
        raise ValueError("room has no surface")
    if not pts:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), area, np.stack([lo, hi])
    return np.concatenate(pts), np.concatenate(nrm), area, np.stack([lo, hi])


# --------------------------------------------------------------------------------------
# Scan-like visibility
# --------------------------------------------------------------------------------------
def scan_mask(
    room: Room,
    points: Array,
    rng: Rng,
    *,
    area: float,
    holes_per_m2: float = 0.05,
    hole_radius: tuple[float, float] = (0.05, 0.4),
    drop_ceiling: bool = True,
    drop_exterior: bool = True,
) -> Array:
    """Which surface points a scan from inside the room would contain.

    Drops the ceiling (and wall tops) at ``y >= H``, exterior faces (outside the
    interior box: wall backs, the floor's underside and edges), and random spherical
    patches (``Poisson(holes_per_m2 * area)`` holes, radii uniform in ``hole_radius``)
    like the holes of RGB-D/LiDAR scans.

    Args:
        room: the room the points were sampled on.
        points: (N, 3) surface points.
        rng: random generator.
        area: surface area the points were sampled from (m^2), sets the number of holes.
        holes_per_m2: hole density.
        hole_radius: (min, max) hole radius in metres.
        drop_ceiling: drop points at or above the ceiling height.
        drop_exterior: drop points outside the interior box.

    Returns:
        (N,) bool, True where the point is kept.
    """
    W, H, D = (float(v) for v in room.size)
    eps = 0.005
    keep = np.ones(len(points), dtype=bool)
    if drop_ceiling:
        keep &= points[:, 1] < H - eps
    if drop_exterior:
        keep &= (np.abs(points[:, 0]) < W / 2 + eps) & (np.abs(points[:, 2]) < D / 2 + eps) & (points[:, 1] > -eps)
    n_holes = int(rng.poisson(holes_per_m2 * area)) if len(points) else 0
    if n_holes:
        centres = points[rng.integers(0, len(points), n_holes)].astype(np.float64)
        radii = rng.uniform(hole_radius[0], hole_radius[1], n_holes)
        for c, r in zip(centres, radii):
            d = points - c.astype(points.dtype)
            keep &= np.einsum("ij,ij->i", d, d) > r * r
    return keep


# --------------------------------------------------------------------------------------
# Spatial bins
# --------------------------------------------------------------------------------------
def bin_ids(points: Array, origin: Array, dims: Array, bin_size: float) -> Array:
    """Flat bin index ``(ix * dy + iy) * dz + iz`` (n,) int64 of points (n, 3), clamped to the grid."""
    ijk = np.floor((np.asarray(points, dtype=np.float64) - origin) / bin_size).astype(np.int64)
    ijk = np.clip(ijk, 0, np.asarray(dims) - 1)
    return (ijk[:, 0] * dims[1] + ijk[:, 1]) * dims[2] + ijk[:, 2]


def sort_into_bins(points: Array, origin: Array, dims: Array, bin_size: float) -> tuple[Array, Array]:
    """Order that sorts points by bin, and bin offsets.

    Returns:
        order (n,) int64 (stable), offsets (n_bins + 1,) int64: bin b holds sorted points
        ``offsets[b]:offsets[b+1]``.
    """
    ids = bin_ids(points, origin, dims, bin_size)
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=int(np.prod(dims)))
    return order, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def box_ranges(offsets: Array, origin: Array, dims: Array, bin_size: float, lo: Array, hi: Array) -> Array:
    """Point ranges of the bins that overlap the box ``[lo, hi]``.

    Bins along z are contiguous for fixed (x, y), so the result has one range per
    (x, y) column of overlapped bins.

    Args:
        offsets: (n_bins + 1,) bin offsets (any base: shard-global offsets give global ranges).
        origin: (3,) grid origin; dims: (3,) bins per axis; bin_size: bin side.
        lo, hi: (3,) box corners.

    Returns:
        (k, 2) int64 ``[start, stop)`` ranges, empty ones dropped.
    """
    dims = np.asarray(dims, dtype=np.int64)
    a = np.clip(np.floor((np.asarray(lo, np.float64) - origin) / bin_size).astype(np.int64), 0, dims - 1)
    b = np.clip(np.floor((np.asarray(hi, np.float64) - origin) / bin_size).astype(np.int64), 0, dims - 1)
    ix, iy = np.meshgrid(np.arange(a[0], b[0] + 1), np.arange(a[1], b[1] + 1), indexing="ij")
    first = (ix.ravel() * dims[1] + iy.ravel()) * dims[2] + a[2]
    last = first + (b[2] - a[2])
    offsets = np.asarray(offsets)
    ranges = np.stack([offsets[first], offsets[last + 1]], 1).astype(np.int64)
    return ranges[ranges[:, 1] > ranges[:, 0]]


def take_ranges(array: Array, ranges: Array) -> Array:
    """Rows of ``array`` in the ``[start, stop)`` ranges (k, 2), concatenated."""
    if not len(ranges):
        return np.asarray(array[0:0])
    return np.concatenate([np.asarray(array[a:b]) for a, b in ranges])


def unpack_ranges(packed: Array, ranges: Array) -> Array:
    """Bits of a ``np.packbits`` array in the ``[start, stop)`` ranges (k, 2), as (sum of lengths,) bool."""
    out = []
    for a, b in ranges:
        bits = np.unpackbits(np.asarray(packed[a // 8 : (b + 7) // 8]))
        out.append(bits[a % 8 : a % 8 + (b - a)])
    return np.concatenate(out).astype(bool) if out else np.zeros(0, dtype=bool)


# --------------------------------------------------------------------------------------
# Training arrays
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoomSampling:
    """How densely a room is sampled for training, and how its scan is simulated.

    Attributes:
        voxel_size: lattice spacing of floor/wall/ceiling-only mesh blocks (m).
        mesh_cell: lattice spacing of mesh blocks near furniture and clutter (m).
        block_size: mesh extraction block side (m).
        surface_density: surface samples per m^2 of mesh area (scans: ~2000-5000).
        uniform_density: uniform occupancy samples per m^3 of the sample box.
        near_density: near-surface occupancy samples per m^2 of mesh area.
        near_sigmas: Gaussian offsets (m) of the near-surface samples, equal shares.
        pad: the sample box is the mesh's bounds grown by ``pad`` (m), so crops at the
            room's edge see labelled empty space.
        bin_size: side of the spatial bins (m).
        holes_per_m2, hole_radius, drop_ceiling, drop_exterior: scan mask (:func:`scan_mask`).
        scanner: None (the default): the input points are the surface samples, and
            :func:`scan_mask` marks what a scan would see. Otherwise the settings of a virtual
            scanner (:class:`occrecon.data.scanner.ScannerSettings` or a mapping of its fields):
            the input points (``surface_points``) are a virtual scan of the room's mesh from
            a few positions inside it (occlusion, density falling with range, range noise and
            outliers included, all marked visible), while the near-surface occupancy samples
            still come from surface samples of the whole room.
    """

    voxel_size: float = 0.02
    mesh_cell: float = 0.01
    block_size: float = 0.64
    surface_density: float = 3000.0
    uniform_density: float = 4000.0
    near_density: float = 2000.0
    near_sigmas: Sequence[float] = (0.01, 0.04)
    pad: float = 0.5
    bin_size: float = 0.5
    holes_per_m2: float = 0.05
    hole_radius: Sequence[float] = (0.05, 0.4)
    drop_ceiling: bool = True
    drop_exterior: bool = True
    scanner: ScannerSettings | dict[str, Any] | None = None


def recorded_prepare(prepare_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``prepare_kwargs`` as a dataset manifest records them: a ``scanner`` entry is spelled out in full.

    Every scanner field and :data:`occrecon.data.scanner.SCANNER_VERSION` are written, so a
    change of the scanner's defaults or of its code gives another manifest and an old
    dataset is never silently reused. Without a scanner the dict is unchanged.
    """
    out = dict(prepare_kwargs or {})
    if out.get("scanner") is not None:
        out["scanner"] = scanner_settings(out["scanner"]).to_dict()
    return out


def prepare_room(room: Room, rng: Rng, sampling: RoomSampling | None = None, *, mesh: trimesh.Trimesh | None = None, **changes: Any) -> dict[str, Array]:
    """Training arrays of one room, in metres.

    Occupancy labels are the SDF sign at the stored float32 coordinates, so they are
    exact for the points as saved (float16 would move points by up to ~4 mm at 8 m).

    Args:
        room: the room.
        rng: random generator (the only source of randomness).
        sampling: densities and scan simulation (default :class:`RoomSampling`).
        mesh: a surface to use instead of extracting one (e.g. from :func:`room_mesh`).
        changes: fields of :class:`RoomSampling` to change (``surface_density=400.0``...).

    Returns:
        dict of arrays. Per point set S in ``surface``, ``uniform``, ``near``:
        ``S_points`` (N_S, 3) float32 sorted by bin and ``S_offsets`` (n_bins + 1,) int64.
        ``surface_normals`` (N_surface, 3) float16 (outward unit);
        ``scan_mask`` / ``uniform_occ`` / ``near_occ``: bit-packed uint8 flags of the
        surface / uniform / near points (scan-visible; inside);
        ``bin_origin`` (3,) float64, ``bin_dims`` (3,) int64, ``bin_size`` () float64;
        ``bounds`` (2, 3) float32 mesh bounds; ``sample_bounds`` (2, 3) float64 sample box
        (= the bin grid's extent, clipped); ``size`` (3,) float32 interior (W, H, D);
        ``surface_area`` () float64 (m^2); ``has_ceiling`` () bool. With ``scanner`` set, the
        ``surface`` set is the virtual scan (points inside the sample box, all flagged
        scan-visible; normals face the scanner) and ``surface_area`` is still the mesh's.
    """
    settings = dataclasses.replace(sampling or RoomSampling(), **changes)
    scanner = scanner_settings(settings.scanner)
    if scanner is not None and mesh is None:  # the scanner casts its rays at the whole mesh
        mesh = room_mesh(room, mesh_cell=settings.mesh_cell, voxel_size=settings.voxel_size, block_size=settings.block_size)
    surface_density, uniform_density, near_density = settings.surface_density, settings.uniform_density, settings.near_density
    pad, bin_size, near_sigmas = settings.pad, settings.bin_size, settings.near_sigmas
    surf, normals, area, (mlo, mhi) = sample_room_surface(
        room, surface_density, rng, mesh=mesh, mesh_cell=settings.mesh_cell, voxel_size=settings.voxel_size, block_size=settings.block_size
    )
    if not len(surf):
        raise ValueError("surface_density too low: no surface sample")
    slo, shi = mlo - pad, mhi + pad
    dims = np.maximum(np.ceil((shi - slo) / bin_size).astype(np.int64), 1)

    visible = scan_mask(room, surf, rng, area=area, holes_per_m2=settings.holes_per_m2, hole_radius=tuple(settings.hole_radius),
                        drop_ceiling=settings.drop_ceiling, drop_exterior=settings.drop_exterior)
    n_uni = max(int(round(uniform_density * float(np.prod(shi - slo)))), 1)
    uni = rng.uniform(slo, shi, (n_uni, 3)).astype(np.float32)
    n_near = max(int(round(near_density * area)), 1)
    idx = rng.integers(0, len(surf), n_near)
    sig = np.asarray(near_sigmas, dtype=np.float64)[np.arange(n_near) % len(near_sigmas)]
    near = (surf[idx] + rng.normal(size=(n_near, 3)) * sig[:, None]).astype(np.float32)
    near = np.clip(near, slo.astype(np.float32), shi.astype(np.float32))
    if scanner is not None:  # drawn after everything else: the other arrays are as without a scanner
        surf, normals, visible = _scanned_inputs(room, mesh, scanner, rng, slo, shi)

    out: dict[str, Array] = {}
    flags = {"surface": visible, "uniform": occupancy(room.shape, uni), "near": occupancy(room.shape, near)}
    for name, pts in (("surface", surf), ("uniform", uni), ("near", near)):
        order, offsets = sort_into_bins(pts, slo, dims, bin_size)
        out[f"{name}_points"] = np.ascontiguousarray(pts[order], dtype=np.float32)
        out[f"{name}_offsets"] = offsets
        flag_key = next(k for k, v in PACKED.items() if v == name)
        out[flag_key] = np.packbits(flags[name][order])
        if name == "surface":
            out["surface_normals"] = normals[order].astype(np.float16)
    out.update(
        bin_origin=slo.astype(np.float64),
        bin_dims=dims,
        bin_size=np.float64(bin_size),
        bounds=np.stack([mlo, mhi]).astype(np.float32),
        sample_bounds=np.stack([slo, shi]).astype(np.float64),
        size=np.asarray(room.size, dtype=np.float32),
        surface_area=np.float64(area),
        has_ceiling=np.bool_(room.has_ceiling),
    )
    return out


def _scanned_inputs(room: Room, mesh: trimesh.Trimesh, scanner: ScannerSettings, rng: Rng, lo: Array, hi: Array) -> tuple[Array, Array, Array]:
    """A virtual scan of ``room`` (see :func:`occrecon.data.scanner.scan_room`): points and normals
    inside the box ``[lo, hi]`` (far outliers beyond it fall where no crop is labelled), all visible."""
    scan = scan_room(room, mesh, scanner, seed=rng)
    inside = np.all((scan.points >= lo) & (scan.points <= hi), axis=1)
    if not inside.any():
        raise ValueError("the virtual scan saw nothing of the room")
    return scan.points[inside], scan.normals[inside], np.ones(int(inside.sum()), dtype=bool)


def generate_room_item(
    seed: int, i: int, room_kwargs: dict[str, Any] | None = None, prepare_kwargs: dict[str, Any] | None = None
) -> dict[str, Array]:
    """Arrays of room ``i`` of the room dataset ``seed`` (from ``np.random.default_rng([seed, i])`` alone)."""
    rng = np.random.default_rng([seed, i])
    kw = dict(room_kwargs or {})
    if "size_range" in kw:  # JSON manifests turn tuples into lists
        kw["size_range"] = tuple(tuple(r) for r in kw["size_range"])
    if "n_furniture" in kw:
        kw["n_furniture"] = tuple(kw["n_furniture"])
    if "n_clutter" in kw:
        kw["n_clutter"] = tuple(kw["n_clutter"])
    room = random_room(rng, **kw)
    out = prepare_room(room, rng, **dict(prepare_kwargs or {}))
    out["index"] = np.int64(i)
    return out


def stack_rooms(items: list[dict[str, Array]]) -> dict[str, Array]:
    """Concatenate prepared rooms into one shard's arrays.

    Per-room fixed-size arrays are stacked on a new axis 0. Point sets are
    concatenated; their bin offsets are rebased to shard-global point positions and
    concatenated, room ``j``'s ``n_bins_j + 1`` offsets starting at ``bin_start[j]``.
    Bit-packed flags are re-packed over the concatenated points.

    Returns:
        the shard's arrays, with ``bin_start`` (n_rooms + 1,) int64 added.
    """
    ragged = {f"{s}_{k}" for s in POINT_SETS for k in ("points", "offsets")} | {"surface_normals", *PACKED}
    out = {k: np.stack([it[k] for it in items]) for k in items[0] if k not in ragged}
    for s in POINT_SETS:
        base, offs = 0, []
        for it in items:
            offs.append(it[f"{s}_offsets"] + base)
            base += len(it[f"{s}_points"])
        out[f"{s}_points"] = np.concatenate([it[f"{s}_points"] for it in items])
        out[f"{s}_offsets"] = np.concatenate(offs)
    out["surface_normals"] = np.concatenate([it["surface_normals"] for it in items])
    for key, s in PACKED.items():
        bits = [np.unpackbits(it[key], count=len(it[f"{s}_points"])) for it in items]
        out[key] = np.packbits(np.concatenate(bits))
    out["bin_start"] = np.concatenate([[0], np.cumsum([len(it["surface_offsets"]) for it in items])]).astype(np.int64)
    return out


def scan_cloud(
    data: dict[str, Array], rng: Rng, *, noise_std: float = 0.005, max_points: int | None = None
) -> tuple[Array, Array]:
    """A scan-like point cloud of a prepared room: the scan-visible surface points plus Gaussian noise.

    Args:
        data: output of :func:`prepare_room`.
        rng: random generator.
        noise_std: noise sigma (m).
        max_points: random subset of at most this many points.

    Returns:
        points (k, 3) float32, normals (k, 3) float32.
    """
    pts = data["surface_points"]
    keep = np.flatnonzero(np.unpackbits(data["scan_mask"], count=len(pts)).astype(bool))
    if max_points is not None and len(keep) > max_points:
        keep = np.sort(rng.choice(keep, max_points, replace=False))
    noisy = pts[keep] + rng.normal(scale=noise_std, size=(len(keep), 3)).astype(np.float32)
    return noisy.astype(np.float32), data["surface_normals"][keep].astype(np.float32)
