"""One input → one mesh: the orchestration of the stages, and nothing else.

read → route (object or scene) → prepare → encode → prior / fit → extract → map back

Each stage lives in its own module: readers in :mod:`occrecon.io`, preparation in
:mod:`occrecon.preprocess`, fields and encoding in :mod:`occrecon.field`, the
winding-number prior in :mod:`occrecon.winding`, fitting in :mod:`occrecon.fitting`,
extraction in :mod:`occrecon.surface`, the sliding window in :mod:`occrecon.scene`.
Settings arrive as one :class:`~occrecon.options.ReconstructOptions`, resolved
against the model once.

The CLI is a thin loop over :func:`reconstruct` (through :mod:`occrecon.batch`);
``reconstruct_image``, ``reconstruct_points`` and ``reconstruct_voxels`` are the
short forms that return only the mesh.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import trimesh

from occrecon.colour import colours_from_photo, colours_from_points, with_colours
from occrecon.config import InputSpec
from occrecon.errors import InputError, NoSurfaceError, OccreconError
from occrecon.field import Field, WithWindingPrior, encode_field, encode_rotated
from occrecon.fitting import FitOptions, fit_to_occupancy, fit_to_points
from occrecon.frames import FrameTransform, turn_grid, up_rotation
from occrecon.io.mesh import make_mesh
from occrecon.io.readers import PointCloud, VoxelGrid, read_points, read_voxels
from occrecon.loading import ModelOnDemand, OccupancyModel
from occrecon.nets import upstream_arithmetic
from occrecon.options import ExtractionOptions, ReconstructOptions, ResolvedOptions, SceneOptions
from occrecon.orientation import resolve_up
from occrecon.preprocess import PreparedInput, prepare_input
from occrecon.preview import InputView, voxel_cells
from occrecon.registry import bundled_weights_dir
from occrecon.scene import OBJECT_SCALE_LIMIT_M, ROOM_SIZED_M, extent_metres, reconstruct_scene, scene_or_object, settings_for
from occrecon.surface import extract_surface, no_surface_message
from occrecon.visibility import BUNDLED_PARTIAL_MODEL, one_sided_note
from occrecon.winding import PriorOptions, winding_prior

__all__ = [
    "Events",
    "ExtractionOptions",
    "ModelOnDemand",
    "Reconstruction",
    "ReconstructOptions",
    "SceneOptions",
    "check_task",
    "reconstruct",
    "reconstruct_image",
    "reconstruct_points",
    "reconstruct_resolved",
    "reconstruct_voxels",
]


@dataclass
class Reconstruction:
    """The result of one reconstruction.

    Attributes:
        mesh: in the input's own coordinate frame.
        transform: canonical → input frame map that was applied.
        timings: seconds per stage.
        n_evaluations: network queries spent on extraction.
        notes: remarks for the user (dropped rows, resampling, device fallback).
        preview: what the network saw (a PIL image, canonical points or a voxel grid).
        model_name: the model that made the mesh (the scene model, where a cloud turned out to be a scene).
        model_revision: its revision.
        up: the input frame's up axis (``y``, ``z``, ``-y``...): what a preview draws pointing up.
        input_view: the input in the mesh's frame, for a preview (:class:`~occrecon.preview.InputView`).
    """

    mesh: trimesh.Trimesh
    transform: FrameTransform
    timings: dict[str, float] = field(default_factory=dict)
    n_evaluations: int = 0
    notes: list[str] = field(default_factory=list)
    preview: Any = None
    model_name: str = ""
    model_revision: str | None = None
    up: str = "y"
    input_view: Any = None


@dataclass
class Events:
    """Who hears about a reconstruction while it runs: the stage it is in, and notes worth saying before it ends."""

    on_stage: Callable[[str], None] | None = None
    on_note: Callable[[str], None] | None = None

    def stage(self, name: str) -> None:
        if self.on_stage:
            self.on_stage(name)

    def note(self, message: str) -> None:
        if self.on_note:
            self.on_note(message)

    def steps(self, name: str) -> Callable[[int, int], None] | None:
        """``on_step(k, n)`` that says ``<name> k/n`` as a stage (progress displays count such stages in steps)."""
        return None if self.on_stage is None else (lambda done, total: self.stage(f"{name} {done}/{total}"))


SceneModel = Union[OccupancyModel, ModelOnDemand, Callable[[], OccupancyModel], None]

_TAKES = {"image": "image", "points": "points", "voxels": "voxels", "scene": "points", "unconditional": "none"}


def check_task(model: OccupancyModel, kind: str) -> None:
    """Refuse a model that takes another kind of input than the command's."""
    takes = _TAKES.get(model.task, model.task)
    if takes != kind:
        raise OccreconError(f"model {model.name} takes {takes} input ({model.task} model), not {kind}; pick another --model (see `occrecon models`)")


def reconstruct(
    model: OccupancyModel,
    kind: str,
    source: str | Path | np.ndarray | Any,
    options: ReconstructOptions | ExtractionOptions | None = None,
    *,
    mask: str | Path | np.ndarray | None = None,
    scene: SceneOptions | None = None,
    scene_model: SceneModel = None,
    on_stage: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    **fields: Any,
) -> Reconstruction:
    """Reconstruct one input with a loaded model.

    Args:
        model: from :func:`occrecon.load_model`.
        kind: ``"image"``, ``"points"`` or ``"voxels"``.
        source: a file path or an in-memory image / array / :class:`~occrecon.io.readers.PointCloud`.
        options: a :class:`~occrecon.options.ReconstructOptions` (or the older
            :class:`~occrecon.options.ExtractionOptions`); None takes the model's defaults.
        mask: object mask (array or file) for a photo without alpha.
        scene: the older way to give the scene settings (:class:`~occrecon.options.SceneOptions`).
        scene_model: the crop model for clouds that turn out to be scenes (a model, a
            :class:`ModelOnDemand`, or a function that loads it); without one, every
            cloud is an object unless ``model`` itself is a scene model.
        on_stage: hears each stage's name as it starts (for progress displays).
        on_note: hears the notes that decide whether a long run is worth it (a scene's
            units, points too sparse for the voxel size) before it runs; they are in
            the result's notes too.
        **fields: any field of :class:`~occrecon.options.ReconstructOptions`
            (``threshold=0.3``, ``rotations=1``, ``seed=3``...), overriding ``options``.

    Returns:
        A :class:`Reconstruction` whose mesh is in the input's coordinate frame.

    Raises:
        InputError: the input cannot be used (:class:`~occrecon.errors.NoSurfaceError`: the field has no surface).
        OptionError: a setting is out of range or does not apply to this input.
    """
    settings = ReconstructOptions.combine(options, scene, **fields)
    check_task(model, kind)
    resolved = settings.resolve(model, kind)
    if scene_model is None and scene is not None:
        scene_model = scene.scene_model
    return reconstruct_resolved(model, kind, source, resolved, mask=mask, scene_model=scene_model, events=Events(on_stage, on_note))


def reconstruct_resolved(
    model: OccupancyModel,
    kind: str,
    source: str | Path | np.ndarray | Any,
    options: ResolvedOptions,
    *,
    mask: str | Path | np.ndarray | None = None,
    scene_model: SceneModel = None,
    events: Events | None = None,
) -> Reconstruction:
    """:func:`reconstruct` with settings already resolved against ``model`` (a batch resolves them once)."""
    events = events or Events()
    start = time.perf_counter()
    events.stage("reading input")
    if kind == "points":
        if isinstance(source, (str, Path)):
            source = read_points(source)
        crop_model, unsure = _route(model, source, options, scene_model)
        if crop_model is not None:
            return _reconstruct_scene(crop_model, source, options, events, start)
        note = unsure or _room_sized_note(source, options, scene_model)
        return _reconstruct_object(model, kind, source, options, mask, events, note=note)
    return _reconstruct_object(model, kind, source, options, mask, events)


# ---------------------------------------------------------------------------------------
# Routing: object or scene
# ---------------------------------------------------------------------------------------
def _cloud_array(source: Any) -> np.ndarray:
    return np.asarray(getattr(source, "points", source), dtype=np.float64)


def _scene_units(source: Any, options: ResolvedOptions) -> Any:
    """``--units`` when given, else what the file's header states (LAS/LAZ), else None (guess)."""
    return options.units if options.units is not None else getattr(source, "units", None)


def _up_axis(source: Any, options: ResolvedOptions) -> str | None:
    """``--up`` when given, else what the format says (LAS/LAZ: z), else None (found from the points)."""
    return options.up or getattr(source, "up", None)


def _route(model: OccupancyModel, source: Any, options: ResolvedOptions, scene_model: SceneModel) -> tuple[OccupancyModel | None, str | None]:
    """The crop model to use for this cloud (None: the object path), and a note when the choice was unsure."""
    if model.task == "scene":
        return model, None
    if options.scene is False or scene_model is None:
        if options.scene:
            raise OccreconError(f"model {model.name} is an object model; --scene needs a scene model")
        return None, None
    if options.scene is None:
        scene, note = scene_or_object(_cloud_array(source), _scene_units(source, options))
        if not scene:
            return None, note
    if isinstance(scene_model, ModelOnDemand):
        return scene_model.get(), None
    return (scene_model if isinstance(scene_model, OccupancyModel) else scene_model()), None


def _room_sized_note(source: Any, options: ResolvedOptions, scene_model: SceneModel) -> str | None:
    """For a cloud the extent rule sent down the object path although it may be a small room: how to say otherwise."""
    if scene_model is None or options.scene is not None:
        return None  # no scene model on offer, or the user chose
    metres = extent_metres(_cloud_array(source), _scene_units(source, options))
    if metres <= ROOM_SIZED_M:
        return None
    return (
        f"reconstructed as one object: {metres:.2f} m across, under the {OBJECT_SCALE_LIMIT_M:g} m at which clouds count as scenes; "
        "if it is a room or a part of one, --scene reconstructs it with the scene model"
    )


def _reconstruct_scene(model: OccupancyModel, source: Any, options: ResolvedOptions, events: Events, start: float) -> Reconstruction:
    cloud = _cloud_array(source)
    notes = list(model.notes)
    dropped = getattr(source, "dropped_nonfinite", 0)
    if dropped:
        notes.append(f"dropped {dropped} non-finite rows")
    if len(cloud) < 4 or not np.all(np.ptp(cloud, axis=0) > 0):
        raise InputError(getattr(source, "source", None), "a scene needs points spread in all three dimensions")
    result = reconstruct_scene(
        model,
        cloud,
        units=_scene_units(source, options),
        voxel_size=options.voxel_size,
        up=_up_axis(source, options),
        settings=settings_for(model, options),
        seed=options.seed,
        on_crop=lambda done, total: events.stage(f"crop {done}/{total}"),
        on_note=events.note,
    )
    notes += result.notes
    notes.append(f"scene: {result.n_crops - result.n_skipped} of {result.n_crops} crops reconstructed with {model.name}")
    colours = getattr(source, "colours", None)
    if options.colour and colours is not None and len(result.mesh.vertices):
        with_colours(result.mesh, colours_from_points(result.mesh.vertices, cloud, colours))
        notes.append("vertex colours from the nearest input points")
    up = _up_axis(source, options)
    if up in (None, "auto"):
        up = resolve_up(cloud[:, :3], up, None)[0]
    if options.object_flags_asked:
        asked = options.object_flags_asked
        flags = " and ".join([", ".join(asked[:-1]), asked[-1]] if len(asked) > 1 else asked)
        notes.append(f"{flags} apply to object clouds, not the scene's sliding window: ignored")
    return Reconstruction(
        mesh=result.mesh,
        transform=FrameTransform.identity(),
        timings={**result.timings, "total": time.perf_counter() - start},
        n_evaluations=result.n_evaluations,
        notes=notes,
        model_name=model.name,
        model_revision=model.revision,
        up=up,
        input_view=InputView(points=cloud, colours=colours),
    )


# ---------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------
def _object_frame(source: Any, options: ResolvedOptions) -> tuple[np.ndarray | None, list[str], str]:
    """The linear map (3, 3) taking an object cloud into the frame the network expects (None: none needed), notes on it, and the up axis.

    An object is normalised by one scale, so a z in other units than x and y (LAS: feet
    across, metres up) would squash or stretch it: z is brought into x and y's unit. A
    cloud whose up axis is not y is turned y-up. The mesh goes back by the inverse.
    """
    frame, notes = np.eye(3), []
    # No --up and no axis stated by the format: found from the points (y, with a note, where they do not say clearly).
    up, up_note = resolve_up(_cloud_array(source)[:, :3], options.up, getattr(source, "up", None))
    if up != "y":
        frame = up_rotation(up)
    if up_note or up != "y":
        notes.append(up_note or f"{up} up: turned y-up for the network, and back")
    units = getattr(source, "units", None)
    if units is not None and units.vertical != units.horizontal:
        stretch = units.vertical / units.horizontal
        frame = frame @ np.diag([1.0, 1.0, stretch])
        notes.append(f"z ({units.vertical_name}) scaled by {stretch:.7g} into the unit of x and y ({units.horizontal_name}) for the network, and back")
    return (None if np.array_equal(frame, np.eye(3)) else frame), notes, up


def _voxel_frame(source: Any, options: ResolvedOptions) -> tuple[Any, np.ndarray | None, list[str]]:
    """A voxel grid turned y-up when ``--up`` names another axis: (the grid, the rotation the mesh goes back by, notes)."""
    if options.up in (None, "y"):
        return source, None, []
    grid = read_voxels(source) if isinstance(source, (str, Path)) else source
    if not isinstance(grid, VoxelGrid):
        array = np.asarray(grid)
        if array.ndim != 3 or array.dtype.kind not in "biuf":
            return source, None, []  # not a grid: preparing it says what is wrong
        with np.errstate(invalid="ignore"):
            cells = array.astype(bool) if array.dtype.kind == "b" else array >= 0.5
        grid = VoxelGrid(cells, np.zeros(3), float(max(cells.shape)), "", "index")
    cell = grid.scale / max(grid.occupancy.shape)
    cells, lower = turn_grid(grid.occupancy, grid.translate, cell, options.up)
    turned = dataclasses.replace(grid, occupancy=cells, translate=lower)
    return turned, up_rotation(options.up), [f"{options.up} up: grid turned y-up for the network, and the mesh back"]


def _one_sided_note(model: OccupancyModel, source: Any) -> str | None:
    """For a cloud seen from one side only, which completion model to use instead (:mod:`occrecon.visibility`)."""
    bundled = (bundled_weights_dir() / BUNDLED_PARTIAL_MODEL / "config.json").is_file()
    return one_sided_note(_cloud_array(source)[:, :3], model.name, bundled=bundled)


def _encode(model: OccupancyModel, source: Any, prepared: PreparedInput, options: ResolvedOptions) -> Field:
    """The field of one prepared input: one encoding, or a rotation ensemble of the cloud."""
    if options.rotations <= 1:
        return encode_field(model, prepared.tensor)
    cloud = _cloud_array(source)[:, :3]
    cloud = cloud[np.isfinite(cloud).all(axis=1)]
    return encode_rotated(model, cloud, prepared, _cloud_spec(model, options), options.rotations, options.seed)


def _cloud_spec(model: OccupancyModel, options: ResolvedOptions) -> InputSpec:
    """The model's object-cloud preparation with the user's noise, and without the normalisation under ``--no-normalize``."""
    spec = dataclasses.replace(model.input_spec, noise=options.input_noise)
    return spec if options.normalize else dataclasses.replace(spec, normalize="none")


def _shape_with_points(field: Field, clean_points: np.ndarray, options: ResolvedOptions, events: Events, timings: dict[str, float]) -> Field:
    """The winding-number prior and the fit to the points, each where the options ask for it."""
    if options.winding:
        stage = time.perf_counter()
        events.stage("winding-number prior")
        field = WithWindingPrior(field, winding_prior(field, clean_points, PriorOptions(seed=options.seed)))  # type: ignore[arg-type]
        timings["prior"] = time.perf_counter() - stage
    if options.fit_steps > 0:
        stage = time.perf_counter()
        events.stage("fitting to the points")
        field = fit_to_points(field, clean_points, options.threshold, FitOptions(steps=options.fit_steps, seed=options.seed), on_step=events.steps("fitting step"))
        timings["fit"] = time.perf_counter() - stage
    return field


def _fit_to_samples(field: Field, samples: tuple[np.ndarray, np.ndarray], options: ResolvedOptions, events: Events, timings: dict[str, float]) -> Field:
    """The encoding fitted to the occupancy the input states exactly (a centre-rule grid's cells: see ``benchmarks/fill_rule.py``)."""
    stage = time.perf_counter()
    events.stage("fitting to the grid's cells")
    field = fit_to_occupancy(field, *samples, FitOptions(seed=options.seed), on_step=events.steps("fitting step"))
    timings["fit"] = time.perf_counter() - stage
    return field


def _reconstruct_object(model: OccupancyModel, kind: str, source: Any, options: ResolvedOptions, mask: Any, events: Events, note: str | None = None) -> Reconstruction:
    start = time.perf_counter()
    label = str(source) if isinstance(source, (str, Path)) else getattr(source, "source", None) or None  # errors name the file
    original = source  # a cloud in its own frame, with its colours
    frame, frame_notes, up = _object_frame(source, options) if kind == "points" else (None, [], options.up or "y")
    if kind == "points":
        frame_notes += [note for note in (_one_sided_note(model, source),) if note]
    if kind == "voxels":
        source, frame, frame_notes = _voxel_frame(source, options)
    if frame is not None and kind == "points":
        points = _cloud_array(source)[:, :3] @ frame.T
        source = dataclasses.replace(source, points=points, units=None, up="y") if isinstance(source, PointCloud) else points
    spec = _cloud_spec(model, options) if kind == "points" else model.input_spec
    prepared = prepare_input(kind, source, spec, mask=mask, seed=options.seed, fill_rule=options.fill_rule)
    timings = {"preprocess": time.perf_counter() - start}

    stage = time.perf_counter()
    events.stage("encoding")
    # Upstream's extraction is upstream's mesh only on upstream's encoding: no inexact fast paths there either.
    with upstream_arithmetic(model.net) if options.mise_rule == "upstream" else nullcontext():
        field = _encode(model, source, prepared, options)
    timings["encode"] = time.perf_counter() - stage
    if prepared.samples is not None:
        field = _fit_to_samples(field, prepared.samples, options, events, timings)
    # The prior, the fit and the anchors use the cloud as given: the same subset, without the noise added for the encoder.
    clean_points = None
    if options.winding or options.fit_steps > 0 or options.anchor_points:
        clean = prepared if not spec.noise else prepare_input(kind, source, dataclasses.replace(spec, noise=0.0), seed=options.seed)
        clean_points = clean.tensor.numpy()
        field = _shape_with_points(field, clean_points, options, events, timings)

    surface = extract_surface(field, options, anchors=clean_points if options.anchor_points else None, on_stage=events.on_stage, timings=timings)
    if len(surface.faces) == 0:
        raise NoSurfaceError(label, no_surface_message(options.threshold, surface.lowest_probability, surface.highest_probability), preview=prepared.preview)
    vertices = prepared.transform.to_input(surface.vertices)
    if kind == "image" and model.input_spec.frame == "viewer":
        vertices = unit_box(vertices)  # the completion's frame is the visible part's box; the output is the whole object's
    if frame is not None:
        vertices = vertices @ np.linalg.inv(frame).T
    stage = time.perf_counter()
    mesh, seen, colour_note = _dressed(make_mesh(vertices, surface.faces), kind, model, original, prepared, options, frame)
    timings["colour"] = time.perf_counter() - stage
    timings["total"] = time.perf_counter() - start
    return Reconstruction(
        mesh=mesh,
        transform=prepared.transform,
        timings=timings,
        n_evaluations=surface.n_evaluations,
        notes=_object_notes(model, prepared, options, frame_notes, note) + ([colour_note] if colour_note else []),
        preview=prepared.preview,
        model_name=model.name,
        model_revision=model.revision,
        up=up,
        input_view=seen,
    )


def _dressed(mesh: trimesh.Trimesh, kind: str, model: OccupancyModel, original: Any, prepared: PreparedInput, options: ResolvedOptions, frame: np.ndarray | None) -> tuple[trimesh.Trimesh, InputView, str | None]:
    """The mesh with the input's colours where it has them (:mod:`occrecon.colour`), the input as a preview shows it, and a note."""
    if kind == "image":
        viewer = model.input_spec.frame == "viewer"
        if options.colour and len(mesh.vertices):
            with_colours(mesh, colours_from_photo(mesh, prepared.preview, viewer_frame=viewer))
            return mesh, InputView(image=prepared.preview), "vertex colours from the photo where the camera saw the mesh, filled from there elsewhere"
        return mesh, InputView(image=prepared.preview), None
    if kind == "voxels":
        grid = np.asarray(prepared.preview, dtype=bool)
        side = grid.shape[0]
        span = prepared.transform.scale * (side / (side - 1) if model.input_spec.convention == "linspace" else 1.0)
        cells, size = voxel_cells(grid, np.asarray(prepared.transform.translation) - span / 2, span / side)
        return mesh, InputView(cells=cells if frame is None else cells @ np.linalg.inv(frame).T, cell_size=size), None
    points, colours = _cloud_array(original)[:, :3], getattr(original, "colours", None)
    if options.colour and colours is not None and len(mesh.vertices):
        with_colours(mesh, colours_from_points(mesh.vertices, points, colours))
        return mesh, InputView(points=points, colours=colours), "vertex colours from the nearest input points"
    return mesh, InputView(points=points, colours=colours), None


def unit_box(vertices: np.ndarray) -> np.ndarray:
    """``vertices`` moved and scaled so that their bounding box is centred at the origin with its longest side 1."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    return (vertices - (lo + hi) / 2) / max(float(np.max(hi - lo)), 1e-12)


def _object_notes(model: OccupancyModel, prepared: PreparedInput, options: ResolvedOptions, frame_notes: list[str], route_note: str | None) -> list[str]:
    notes = list(model.notes) + list(prepared.notes)
    if model.task == "image" and model.input_spec.frame == "viewer":
        notes.append("mesh in the camera's frame: x right, y up in the picture, z towards the viewer; centred, longest side 1")
    if options.rotations > 1:
        notes.append(f"rotation ensemble of {options.rotations} encodings")
    if options.winding:
        notes.append("winding-number prior of the input points added away from them")
    if options.anchor_points:
        notes.append("MISE anchored at the input points: every coarse cell near one is subdivided")
    notes += frame_notes
    if route_note:
        notes.append(route_note)
    if options.fit_steps > 0:
        notes.append(f"encoding fitted to the input points ({options.fit_steps} steps)")
    if prepared.samples is not None:
        notes.append(f"encoding fitted to {len(prepared.samples[1])} of the grid's cells as occupancy samples at their centres ({FitOptions().steps} steps)")
    return notes


# ---------------------------------------------------------------------------------------
# Short forms
# ---------------------------------------------------------------------------------------
def reconstruct_image(model: OccupancyModel, image: str | Path | np.ndarray | Any, **kwargs: Any) -> trimesh.Trimesh:
    """Mesh from one photo or render (path, PIL image or (H, W, 3|4) array), in the model's canonical frame.

    Keyword arguments: those of :func:`reconstruct` (``mask``, ``seed``, ``threshold``...).
    """
    return reconstruct(model, "image", image, **kwargs).mesh


def reconstruct_points(model: OccupancyModel, points: str | Path | np.ndarray, **kwargs: Any) -> trimesh.Trimesh:
    """Mesh from a point cloud (path or (n, 3) array), in the cloud's own frame.

    ``up="z"`` (or ``"-y"``...) names the cloud's up axis (default: z for LAS/LAZ, else found
    from the points, y where they do not say clearly; ``"auto"`` always looks at the points).
    With a scene model (``convonet-scene``) the cloud goes through the sliding
    window; ``units``, ``voxel_size`` and ``trim`` then apply (see ``occrecon.scene``).
    """
    return reconstruct(model, "points", points, **kwargs).mesh


def reconstruct_voxels(model: OccupancyModel, voxels: str | Path | np.ndarray, **kwargs: Any) -> trimesh.Trimesh:
    """Mesh from a voxel grid (path or (D, H, W) array), in the grid's own frame."""
    return reconstruct(model, "voxels", voxels, **kwargs).mesh

