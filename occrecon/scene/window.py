"""Whole rooms and buildings: sliding-window reconstruction with ConvONet's crop model.

The scene is tiled by cubic *query crops*; each is reconstructed from the
points of a larger *input crop* centred on it (the extra margin covers the 3D
U-Net's receptive field). Compared with upstream's generator this module

* streams: crops are processed one after another in raster order and only the
  faces shared with crops still to come are kept, so working memory is a few
  crops whatever the size of the scene;
* evaluates only where a surface can be: only crops with input points nearby
  are visited (found from the points, so a sparse scan a kilometre across costs
  what its points cost, not what its tiling does), each crop runs hierarchical
  extraction (MISE) instead of a dense 128³ grid, and cells far from every
  input point are never refined;
* is seamless: a crop takes the values of the lattice points it shares with
  already processed neighbours from them instead of evaluating them again,
  so both sides triangulate the shared face from identical values and the
  per-crop meshes join exactly (their vertices are merged on the global lattice).

Units: the network works in its own metric frame (voxel = ``unit_size``,
2 cm for upstream's model). Scans in other units, or a different voxel size,
are handled by one scale in and out: uniform, or per axis where a LAS header
gives z a unit of its own (feet across, metres up is common in US LiDAR).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
import trimesh

from occrecon.config import GenerationDefaults, SceneSpec
from occrecon.errors import InputError, OccreconError
from occrecon.extract import RefinementGuide, extract_grid, probability_to_logit
from occrecon.extract.meshing import marching_cubes_block
from occrecon.extract.mise import cells_near
from occrecon.frames import up_rotation
from occrecon.io.crs import LinearUnits
from occrecon.loading import GPU_QUERY_ROWS, OccupancyModel
from occrecon.nets.coords import crop_index, crop_normalize
from occrecon.options import OptionError, ResolvedOptions
from occrecon.orientation import count_walls, detect_up, resolve_up
from occrecon.planes import CloudPlanes, find_planes
from occrecon.scene.units import detect_units, sparse_points_note

@dataclass(frozen=True)
class SceneSettings:
    """Geometry and extraction settings of a sliding-window run (model frame units).

    Attributes:
        unit_size: the model's voxel edge in its own frame (upstream: 0.02).
        query_voxels: query-crop edge in voxels (upstream demo: 90).
        input_voxels: input-crop edge in voxels = the encoder's grid resolution (upstream: 160).
        resolution: coarse MISE cells per query crop.
        upsampling_steps: MISE levels per crop (final lattice: resolution·2^steps per crop).
        threshold: surface probability.
        max_points_per_crop: input points per crop above which a crop is subsampled.
        refine_margin_voxels: cells farther than this from every input point are not refined.
        border_voxels: the lattice reaches at least this far beyond the scan's bounds
            (upstream's 1 cm at 2 cm voxels); the tiling is centred on the scan, so the spare
            room of its last crop adds to it, and surfaces at the scan's edge (a wall seen
            from inside, the floor) are crossed by the lattice instead of lying on its last
            layer, without a row of crops more than upstream's tiling.
        trim_voxels: faces whose centre lies farther than this from every input point
            are dropped (None keeps them): what a scan cannot see, such as the backs of
            walls and the underside of the floor, is guessed by the network and left out.
        batch_size: decoder queries per forward pass (default: ``OccupancyModel.query_rows``).
        max_crops: a plan of more crops than this is refused before any runs (a scan in the
            wrong units, or far sparser than the voxel size, plans hours of crops).
    """

    unit_size: float
    query_voxels: int
    input_voxels: int
    resolution: int = SceneSpec.mise_resolution
    upsampling_steps: int = SceneSpec.mise_upsampling_steps
    threshold: float = GenerationDefaults.threshold
    max_points_per_crop: int = SceneSpec.max_points_per_crop
    refine_margin_voxels: float = 3.0
    border_voxels: float = 0.5
    trim_voxels: float | None = 1.5
    batch_size: int = GPU_QUERY_ROWS
    max_crops: int = 2_000

    @property
    def query_size(self) -> float:
        return self.query_voxels * self.unit_size

    @property
    def input_size(self) -> float:
        return self.input_voxels * self.unit_size

    @property
    def cells_per_crop(self) -> int:
        return self.resolution * 2**self.upsampling_steps


def scene_settings(model: OccupancyModel, **overrides: Any) -> SceneSettings:
    """Sliding-window settings from a crop model's config (its ``scene`` block), with overrides (None keeps the model's)."""
    config = model.config
    spec = config.scene or SceneSpec()
    encoder = config.architecture.get("encoder_kwargs", {})
    values = {
        "unit_size": float(encoder.get("unit_size", spec.unit_size)),
        "query_voxels": spec.query_vol_size,
        "input_voxels": int(encoder["grid_resolution"]),
        "resolution": spec.mise_resolution,
        "upsampling_steps": spec.mise_upsampling_steps,
        "threshold": config.generation.threshold,
        "max_points_per_crop": spec.max_points_per_crop,
        "batch_size": model.query_rows,
        "max_crops": _max_crops(),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SceneSettings(**values)


def _max_crops() -> int:
    """The crop budget: ``OCCRECON_MAX_CROPS`` where set, else :attr:`SceneSettings.max_crops` (about an hour on 2 CPU cores)."""
    text = os.environ.get("OCCRECON_MAX_CROPS", "").strip()
    if not text:
        return SceneSettings.max_crops
    if not text.isdigit() or int(text) < 1:
        raise OptionError(f"OCCRECON_MAX_CROPS must be a positive whole number, got {text!r}")
    return int(text)


def settings_for(model: OccupancyModel, options: ResolvedOptions) -> SceneSettings:
    """A crop model's sliding-window settings under the user's options: the extraction flags the user gave, ``--no-trim``."""
    given = options.user
    settings = scene_settings(
        model,
        threshold=given.threshold,
        resolution=given.resolution,
        upsampling_steps=given.upsampling_steps,
        batch_size=given.points_batch_size,
    )
    return settings if options.trim else dataclasses.replace(settings, trim_voxels=None)


@dataclass(frozen=True)
class CropGrid:
    """A tiling of the scene bounds by query crops, in the model frame.

    Attributes:
        lower: (3,) corner of crop (0, 0, 0).
        size: query-crop edge.
        counts: crops per axis.
    """

    lower: np.ndarray
    size: float
    counts: tuple[int, int, int]

    def __len__(self) -> int:
        return int(np.prod(self.counts))

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """Raster order, z fastest: every crop comes after all of its lower neighbours."""
        for i in range(self.counts[0]):
            for j in range(self.counts[1]):
                for k in range(self.counts[2]):
                    yield (i, j, k)

    def crops_near(self, points: np.ndarray, reach: float) -> list[tuple[int, int, int]]:
        """The crops whose query box grown by ``reach`` may hold one of ``points``, in raster order.

        A superset of the exact set (a hair of slack covers rounding), found from
        the points instead of by visiting every crop: an aerial tile a kilometre
        across tiles into 10⁸ crops, of which a few 10⁵ hold points.
        """
        counts = np.asarray(self.counts)
        if len(points) == 0:
            return []
        relative = (np.asarray(points, np.float64) - self.lower) / self.size
        slack = reach / self.size + 1e-6
        first = np.clip(np.floor(relative - slack), 0, counts - 1).astype(np.int64)
        last = np.clip(np.floor(relative + slack), 0, counts - 1).astype(np.int64)
        spans = np.unique(np.hstack([first, last]), axis=0)
        width = int((spans[:, 3:] - spans[:, :3]).max()) + 1
        keys = []
        for offset in itertools.product(range(width), repeat=3):
            cell = spans[:, :3] + np.asarray(offset)
            keys.append(np.ravel_multi_index(cell[np.all(cell <= spans[:, 3:], axis=1)].T, self.counts))
        flat = np.unique(np.concatenate(keys))  # C order: sorted keys are raster order
        return [tuple(int(v) for v in ijk) for ijk in zip(*np.unravel_index(flat, self.counts))]

    def query_box(self, ijk: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        lo = self.lower + np.asarray(ijk) * self.size
        return lo, lo + self.size

    def input_box(self, ijk: tuple[int, int, int], input_size: float) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.query_box(ijk)
        centre = (lo + hi) / 2
        return centre - input_size / 2, centre + input_size / 2


def plan_crops(points: np.ndarray, size: float, margin: float = 0.01) -> CropGrid:
    """Tile the points' bounds (± ``margin``) by cubes of edge ``size``, centred on the points.

    As many crops per axis as upstream's tiling (bounds ± 0.01, ``ceil(extent / size)``)
    for the same ``margin``, so a border never adds a row of crops. The tiling is centred,
    not started at the lower bound: the room the last crop has to spare is split between
    both ends, so surfaces at the scan's edge (a floor, the walls seen from inside) lie
    inside the lattice by that much, not only by ``margin``.
    """
    lo = points.min(axis=0).astype(np.float64)
    hi = points.max(axis=0).astype(np.float64)
    counts = tuple(int(max(1, math.ceil((e + 2 * margin) / size))) for e in (hi - lo))
    lower = (lo + hi) / 2 - np.asarray(counts) * size / 2
    return CropGrid(lower=lower, size=float(size), counts=counts)  # type: ignore[arg-type]


class PointBins:
    """Points sorted by query crop, so any box's points are found without scanning the scene."""

    def __init__(self, points: np.ndarray, grid: CropGrid):
        self.points = points
        self.grid = grid
        cell = np.floor((points - grid.lower) / grid.size).astype(np.int64)
        cell = np.clip(cell, 0, np.asarray(grid.counts) - 1)
        flat = np.ravel_multi_index(cell.T, grid.counts)
        self.order = np.argsort(flat, kind="stable")
        # Sorted crop keys of the points, not a table over every crop: memory follows the points, not the tiling.
        self.keys = flat[self.order]

    def in_box(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """(n, 3) points with ``lo <= p < hi``."""
        counts = np.asarray(self.grid.counts)
        first = np.clip(np.floor((lo - self.grid.lower) / self.grid.size).astype(np.int64), 0, counts - 1)
        last = np.clip(np.floor((hi - self.grid.lower) / self.grid.size).astype(np.int64), 0, counts - 1)
        # Each (i, j) column of crops is one run of keys from z = first to z = last.
        i, j = (a.ravel() for a in np.meshgrid(np.arange(first[0], last[0] + 1), np.arange(first[1], last[1] + 1), indexing="ij"))
        starts = np.searchsorted(self.keys, np.ravel_multi_index((i, j, np.full_like(i, first[2])), self.grid.counts), side="left")
        stops = np.searchsorted(self.keys, np.ravel_multi_index((i, j, np.full_like(i, last[2])), self.grid.counts), side="right")
        chunks = [self.order[a:b] for a, b in zip(starts, stops) if b > a]
        if not chunks:
            return np.zeros((0, 3), self.points.dtype)
        selected = self.points[np.concatenate(chunks)]
        inside = np.all((selected >= lo) & (selected < hi), axis=1)
        return selected[inside]


class FaceCache:
    """Upper-face lattice values of processed crops, kept only while a later crop may need them."""

    def __init__(self) -> None:
        self._faces: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def store(self, ijk: tuple[int, int, int], values: np.ndarray) -> None:
        self._faces[ijk] = (values[-1].copy(), values[:, -1].copy(), values[:, :, -1].copy())
        # Crops two x-slabs back can no longer be a lower neighbour of anything to come.
        for key in [key for key in self._faces if key[0] < ijk[0] - 1]:
            del self._faces[key]

    def preset(self, ijk: tuple[int, int, int], n: int) -> np.ndarray | None:
        """(n+1)³ array with the values shared with processed lower neighbours, NaN elsewhere."""
        i, j, k = ijk
        out = np.full((n + 1,) * 3, np.nan, dtype=np.float32)
        found = False
        # Diagonal neighbours first (edges and corners), then the direct ones.
        for (di, dj, dk), write in (
            ((-1, -1, -1), lambda f: out.__setitem__((0, 0, 0), f[0][-1, -1])),
            ((-1, -1, 0), lambda f: out.__setitem__((0, 0, slice(None)), f[0][-1, :])),
            ((-1, 0, -1), lambda f: out.__setitem__((0, slice(None), 0), f[0][:, -1])),
            ((0, -1, -1), lambda f: out.__setitem__((slice(None), 0, 0), f[1][:, -1])),
            ((-1, 0, 0), lambda f: out.__setitem__((0, slice(None), slice(None)), f[0])),
            ((0, -1, 0), lambda f: out.__setitem__((slice(None), 0, slice(None)), f[1])),
            ((0, 0, -1), lambda f: out.__setitem__((slice(None), slice(None), 0), f[2])),
        ):
            faces = self._faces.get((i + di, j + dj, k + dk))
            if faces is not None:
                write(faces)
                found = True
        return out if found else None

    def __len__(self) -> int:
        return len(self._faces)



def _near_points_filter(points: np.ndarray, lo: np.ndarray, size: float, resolution0: int, margin: float) -> Callable[[np.ndarray, int], np.ndarray]:
    """``refine_filter`` for MISE: only cells within ``margin`` of an input point may be subdivided."""

    def allow(active: np.ndarray, level: int) -> np.ndarray:
        n = active.shape[0]
        cell = size / n
        return cells_near(points, lo, cell, n, int(math.ceil(margin / cell)))

    return allow


def _faces_near(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, lower: np.ndarray, step: float, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """The faces (lattice-unit ``vertices`` from ``lower``) whose centre is within ``distance`` of a point, re-indexed."""
    from scipy.spatial import cKDTree

    if len(points) == 0:
        return vertices[:0], faces[:0]
    centres = lower + vertices[faces].mean(axis=1) * step
    gap, _ = cKDTree(points).query(centres, distance_upper_bound=distance)
    faces = faces[np.isfinite(gap)]
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]


class VertexWelder:
    """Collects the crops' meshes with one global index per lattice vertex.

    Vertices on a crop's faces are those its neighbours make on the shared face
    (same lattice values), up to the last bit: PyMCubes may round a crossing on
    an edge of the face differently from the two sides (1e-15 lattice units seen).
    So they are matched by their global lattice position quantised to
    ``1 / KEY_SCALE`` of a cell, far coarser than that rounding and far finer than
    any two distinct crossings; a dictionary holds only the vertices of crop faces
    of the last two x-slabs, and nothing is sorted at the end, so memory is the
    output mesh plus a few crops.
    """

    KEY_SCALE = 2.0**24

    def __init__(self, cells: int):
        self.cells = cells
        self._shared: dict[bytes, int] = {}
        self._slab_keys: dict[int, list[bytes]] = {}
        self._vertices: list[np.ndarray] = []
        self._faces: list[np.ndarray] = []
        self.n_vertices = 0
        self.n_faces = 0

    def add(self, ijk: tuple[int, int, int], vertices: np.ndarray, faces: np.ndarray) -> None:
        """Add a crop's mesh (vertices in its local lattice units, ``0 … cells``)."""
        for slab in [slab for slab in self._slab_keys if slab < ijk[0] - 1]:
            for key in self._slab_keys.pop(slab):
                del self._shared[key]
        lattice = vertices.astype(np.float64) + np.asarray(ijk, dtype=np.float64) * self.cells
        on_face = np.any((vertices == 0) | (vertices == self.cells), axis=1)
        index = np.empty(len(lattice), dtype=np.int64)
        interior = np.flatnonzero(~on_face)
        index[interior] = self.n_vertices + np.arange(len(interior))
        self.n_vertices += len(interior)
        new = [interior]
        keys = self._slab_keys.setdefault(ijk[0], [])
        fresh = []
        keys_on_face = np.round(lattice * self.KEY_SCALE).astype(np.int64)
        for row in np.flatnonzero(on_face):
            key = keys_on_face[row].tobytes()
            found = self._shared.get(key)
            if found is None:
                found = self._shared[key] = self.n_vertices
                self.n_vertices += 1
                keys.append(key)
                fresh.append(row)
            index[row] = found
        new.append(np.asarray(fresh, dtype=np.int64))
        self._vertices.append(lattice[np.concatenate(new)])
        dtype = np.int32 if self.n_vertices < 2**31 else np.int64
        self._faces.append(index[faces].astype(dtype))
        self.n_faces += len(faces)

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (n, 3) in global lattice units, faces (m, 3) int64), degenerate faces dropped."""
        vertices = np.concatenate(self._vertices)
        self._vertices.clear()
        faces = np.concatenate(self._faces).astype(np.int64)
        self._faces.clear()
        faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
        return vertices, faces


@dataclass
class SceneResult:
    """A reconstructed scene and what it cost."""

    mesh: trimesh.Trimesh
    n_crops: int
    n_skipped: int
    n_evaluations: int
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    peak_cached_crops: int = 0


def _crop_inputs(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, resolution: int, device: torch.device) -> dict[str, Any]:
    tensor = torch.from_numpy(points.astype(np.float32)).to(device)
    index = crop_index(tensor, lo, hi, resolution, "grid").view(1, 1, -1)
    return {"points": tensor[None], "index": {"grid": index}}


def _crop_field(model: OccupancyModel, c: Any, lo: np.ndarray, hi: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def query(p: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)).to(model.device)[None]
        with torch.inference_mode():
            inputs = {"p": tensor, "p_n": {"grid": crop_normalize(tensor, lo, hi, "grid")}}
            return model.net.decode(inputs, c)[0].float().cpu().numpy()

    return query


@dataclass(frozen=True)
class SceneFrame:
    """How a scan's coordinates become the crop model's: ``model = (input · scale) @ turn.T - origin``.

    Attributes:
        scale: input units → model units (per axis where z has a unit of its own).
        turn: the rotation that brings the scan's up axis to y.
        origin: a whole number of voxels, so float32 keeps a georeferenced scan's detail.
        notes: where the units and the up axis came from.
    """

    scale: float | np.ndarray
    turn: np.ndarray
    origin: np.ndarray
    notes: tuple[str, ...]

    def to_input(self, points: np.ndarray) -> np.ndarray:
        return ((points + self.origin) @ self.turn) / self.scale


def scene_frame(
    points: np.ndarray, settings: SceneSettings, units: str | LinearUnits | None, voxel_size: float | None, up: str | None, planes: CloudPlanes | None = None
) -> tuple[SceneFrame, np.ndarray]:
    """The scan's frame in the model (see :class:`SceneFrame`) and its points in it, float32.

    ``up`` None or ``"auto"``: found from the points (:func:`~occrecon.orientation.resolve_up`), from ``planes`` when given.
    """
    per_metre, units_note = detect_units(points, units)
    metres = voxel_size if voxel_size is not None else settings.unit_size
    # input units → model frame: metres, then rescaled so one scan voxel is one model voxel, then turned y-up.
    scale = (1.0 / per_metre) * (settings.unit_size / metres)
    given = up
    up, up_note = resolve_up(points, up, planes=planes)
    if up_note is None and given not in (None, "auto") and up != "y":
        up_note = f"{up} up: turned y-up for the network (its rooms are y-up), and back"
    turn = up_rotation(up)
    turned = (points * scale) @ turn.T
    # Shift to small coordinates by a whole number of voxels, which leaves the decoder's in-voxel coordinates as they were.
    origin = np.floor(turned.min(axis=0) / settings.unit_size) * settings.unit_size
    model_points = (turned - origin).astype(np.float32)
    sparse_note = sparse_points_note(model_points, settings.unit_size, metres, units_assumed=units is None)
    notes = tuple(note for note in (units_note, up_note, sparse_note) if note)
    return SceneFrame(scale, turn, origin, notes), model_points


@dataclass
class _Window:
    """The state of one sliding-window run: the tiling, the points binned by crop, the shared lattice values and the welded mesh."""

    model: OccupancyModel
    settings: SceneSettings
    grid: CropGrid
    bins: PointBins
    rng: np.random.Generator
    cache: FaceCache = field(default_factory=FaceCache)
    timings: dict[str, float] = field(default_factory=lambda: {"encode": 0.0, "field": 0.0, "marching_cubes": 0.0})
    n_evaluations: int = 0
    peak_cached: int = 0

    def __post_init__(self) -> None:
        settings = self.settings
        self.welder = VertexWelder(settings.cells_per_crop)
        self.margin = settings.refine_margin_voxels * settings.unit_size
        self.reach = max(self.margin, (settings.trim_voxels or 0.0) * settings.unit_size)

    def crop_points(self, ijk: tuple[int, int, int], skip_empty: bool) -> tuple[np.ndarray, np.ndarray]:
        """(points near the query box, points of the input crop, subsampled to the cap)."""
        q_lo, q_hi = self.grid.query_box(ijk)
        near = self.bins.in_box(q_lo - self.reach, q_hi + self.reach)
        in_lo, in_hi = self.grid.input_box(ijk, self.settings.input_size)
        points = self.bins.in_box(in_lo, in_hi) if len(near) or not skip_empty else near
        cap = self.settings.max_points_per_crop
        if len(points) > cap:
            points = points[self.rng.choice(len(points), cap, replace=False)]
        return near, points

    def run_crop(self, ijk: tuple[int, int, int], near: np.ndarray, points: np.ndarray) -> None:
        """Encode one crop, extract its lattice (sharing faces with finished neighbours), keep the faces near the scan."""
        settings, model = self.settings, self.model
        q_lo, q_hi = self.grid.query_box(ijk)
        in_lo, in_hi = self.grid.input_box(ijk, settings.input_size)
        cells = settings.cells_per_crop
        logit = probability_to_logit(settings.threshold)

        tick = time.perf_counter()
        with torch.inference_mode():
            encoding = model.net.encode(_crop_inputs(points, in_lo, in_hi, settings.input_voxels, model.device))
        self.timings["encode"] += time.perf_counter() - tick

        tick = time.perf_counter()
        values = extract_grid(
            _crop_field(model, encoding, in_lo, in_hi),
            resolution0=settings.resolution,
            upsampling_steps=settings.upsampling_steps,
            threshold=logit,
            lower=q_lo,
            upper=q_hi,
            batch_size=settings.batch_size,
            guide=RefinementGuide(
                preset=self.cache.preset(ijk, cells),
                refine_filter=_near_points_filter(near, q_lo, settings.query_size, settings.resolution, self.margin),
            ),
        )
        del encoding
        self.timings["field"] += time.perf_counter() - tick
        self.n_evaluations += values.n_evaluations
        self.cache.store(ijk, values.values)
        self.peak_cached = max(self.peak_cached, len(self.cache))

        tick = time.perf_counter()
        local_vertices, faces = marching_cubes_block(values.values, logit)
        if len(faces) and settings.trim_voxels is not None:
            step = settings.query_size / cells
            local_vertices, faces = _faces_near(local_vertices, faces, near, q_lo, step, settings.trim_voxels * settings.unit_size)
        if len(faces):
            self.welder.add(ijk, local_vertices, faces)
        self.timings["marching_cubes"] += time.perf_counter() - tick


def reconstruct_scene(
    model: OccupancyModel,
    points: np.ndarray,
    *,
    units: str | LinearUnits | None = None,
    voxel_size: float | None = None,
    up: str | None = None,
    settings: SceneSettings | None = None,
    seed: int = 0,
    skip_empty: bool = True,
    on_crop: Callable[[int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> SceneResult:
    """Reconstruct a scene point cloud with a sliding-window crop model.

    Args:
        model: a crop model (``task == "scene"``).
        points: (n, 3) scan in its own units and frame.
        units: ``m``, ``cm``, ``mm``, ``ft`` or ``us-ft``, or the units the file's
            header states (``PointCloud.units``); None guesses (with a note).
        voxel_size: voxel edge in metres the scan is cut into (default: the
            model's, 2 cm for upstream's); a coarser voxel makes bigger crops.
        up: the scan's axis that points up (``"z"``, ``"-y"``...): crop models are
            trained on y-up rooms, and a z-up floor looks to them like a wall.
            None or ``"auto"``: found from the points (:func:`~occrecon.orientation.resolve_up`;
            y, with a note naming the axis to try, where they do not say clearly).
        settings: sliding-window settings (default from the model config).
        seed: seeds per-crop subsampling.
        skip_empty: skip crops with no input point near their query box.
        on_crop: called as ``on_crop(done, total)`` after each crop.
        on_note: called with each note about the input (its units, points too
            sparse for the voxel size) as soon as it is known, before the crops
            run: a run that will not give a useful mesh says so at once. The
            notes are in the result as well.

    Returns:
        ``SceneResult`` with the mesh in the scan's own coordinates.
    """
    if model.task != "scene":
        raise OccreconError(f"model {model.name} is not a sliding-window scene model")
    settings = settings or scene_settings(model)
    points = np.asarray(points, dtype=np.float64)
    planes = find_planes(points)
    frame, model_points = scene_frame(points, settings, units, voxel_size, up, planes)
    start = time.perf_counter()
    grid = plan_crops(model_points, settings.query_size, margin=settings.border_voxels * settings.unit_size)
    window = _Window(model, settings, grid, PointBins(model_points, grid), np.random.default_rng(seed))
    crops = grid.crops_near(model_points, window.reach) if skip_empty else list(grid)
    if len(crops) > settings.max_crops:
        raise InputError(
            None,
            f"the scene plans {len(crops):,} crops of {settings.query_size / settings.unit_size * (voxel_size or settings.unit_size):.3g} m, over the "
            f"{settings.max_crops:,} occrecon runs without being told (env OCCRECON_MAX_CROPS); check --units, or a coarser --voxel-size makes fewer",
        )
    skipped = len(grid) - len(crops)
    for note in frame.notes:
        if on_note:
            on_note(note)

    for done, ijk in enumerate(crops, start=1):
        near, crop_points = window.crop_points(ijk, skip_empty)
        if len(crop_points):
            window.run_crop(ijk, near, crop_points)
        else:
            skipped += 1
        if on_crop:
            on_crop(done, len(crops))

    if not window.welder.n_faces:
        raise InputError(None, f"no surface found in the scene at threshold {settings.threshold:g}")
    tick = time.perf_counter()
    lattice_vertices, faces = window.welder.mesh()
    step = settings.query_size / settings.cells_per_crop
    vertices = grid.lower + lattice_vertices * step
    faces, facing_note = face_the_scanner(vertices, faces, model_points, _surrounds_scanner(points, planes))
    mesh = trimesh.Trimesh(vertices=frame.to_input(vertices), faces=faces, process=False)
    timings = dict(window.timings, merge=time.perf_counter() - tick, total=time.perf_counter() - start)
    return SceneResult(
        mesh=mesh,
        n_crops=len(grid),
        n_skipped=skipped,
        n_evaluations=window.n_evaluations,
        timings=timings,
        notes=list(frame.notes) + ([facing_note] if facing_note else []),
        peak_cached_crops=window.peak_cached,
    )


FACING_VOTE = -0.1
"""A mesh is turned round when its faces vote this clearly for facing away from the scanner (1: all face it)."""


def _surrounds_scanner(points: np.ndarray, planes: CloudPlanes) -> bool:
    """Whether the scan was taken from inside: a floor with walls on two sides at least (a room, not open ground)."""
    found = detect_up(points, planes)
    return found.axis is not None and found.evidence == "floor" and count_walls(planes, found.axis) >= 2


def facing_vote(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, inside: bool) -> float:
    """How the faces of a scene mesh (model frame, y up) that lie flat face the scanner: 1 all towards it, -1 all away.

    ``inside``: the scan surrounds its scanner (a room), which stood about where its points'
    median is, so a floor should face up to it and a ceiling down. Otherwise (open ground, a
    fragment) the scanner was above, and flat faces should face up. Area-weighted. Only flat
    faces vote: read upside down, the example room came out with its floor facing away
    (flat faces -0.32) but its walls still about right (+0.09), a volume of -1.55 m³.
    """
    if len(faces) == 0:
        return 1.0
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    area = np.linalg.norm(normals, axis=1)
    unit = normals / np.maximum(area, 1e-30)[:, None]
    flat = np.abs(unit[:, 1]) > 0.7
    if not flat.any():
        return 1.0
    if inside:
        towards = np.sign(unit[flat, 1] * (np.median(points[:, 1]) - corners[flat, :, 1].mean(axis=1)))
    else:
        towards = np.sign(unit[flat, 1])
    return float(np.sum(area[flat] * towards) / np.sum(area[flat]))


def face_the_scanner(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, inside: bool) -> tuple[np.ndarray, str | None]:
    """The faces, turned round when they face away from the scanner (:func:`facing_vote`), and a note when they were.

    A crop model can take a room's floor for a ceiling and fill the room instead of its
    walls; the surface is in the right place, but the mesh faces away from where it was
    seen from (negative volume, walls dark from inside).
    """
    vote = facing_vote(vertices, faces, points, inside)
    if vote >= FACING_VOTE:
        return faces, None
    side = "its inside" if inside else "above"
    return faces[:, ::-1].copy(), f"the mesh faced away from where the scan was seen from ({side}); its faces were turned round"
