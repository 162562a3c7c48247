"""Input → mesh for one item: preprocessing, encoding, MISE, marching cubes, refinement.

The CLI is a thin loop over ``reconstruct``; ``reconstruct_image``,
``reconstruct_points`` and ``reconstruct_voxels`` are the short forms that
return only the mesh.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np
import torch
import trimesh

from occrecon.errors import InputError, NoSurfaceError, OccreconError
from occrecon.extract import box_bounds, extract_grid, marching_cubes, probability_to_logit, refine_vertices, simplify
from occrecon.fitting import FitOptions, fit_to_points
from occrecon.frames import FrameTransform, up_rotation
from occrecon.io.mesh import make_mesh
from occrecon.loading import OccupancyModel
from occrecon.winding import PriorOptions, WindingPrior, winding_prior

if TYPE_CHECKING:
    from occrecon.preprocess import PreparedInput

StageFn = Callable[[str], None]


@dataclass
class ExtractionOptions:
    """How the field becomes a mesh; ``None`` means the model config's default.

    Attributes:
        threshold: occupancy probability of the surface (upstream: 0.2).
        resolution: coarse MISE grid cells per axis (upstream: 32).
        upsampling_steps: MISE subdivision levels (upstream: 2, i.e. 128³).
        refine: gradient refinement steps (upstream demo: 30; default 0).
        simplify: target face count, or None to keep every face.
        points_batch_size: decoder rows (query points × ensemble members) per
            forward pass; None picks what suits the model's device (``OccupancyModel.query_rows``).
    """

    threshold: float | None = None
    resolution: int | None = None
    upsampling_steps: int | None = None
    refine: int = 0
    simplify: int | None = None
    points_batch_size: int | None = None

    def resolved(self, model: OccupancyModel) -> "ExtractionOptions":
        gen = model.generation
        return ExtractionOptions(
            threshold=float(self.threshold if self.threshold is not None else gen.get("threshold", 0.2)),
            resolution=int(self.resolution if self.resolution is not None else gen.get("resolution", 32)),
            upsampling_steps=int(self.upsampling_steps if self.upsampling_steps is not None else gen.get("upsampling_steps", 2)),
            refine=int(self.refine if self.refine else gen.get("refinement_steps", 0) or 0),
            simplify=self.simplify if self.simplify is not None else gen.get("simplify_faces"),
            points_batch_size=int(self.points_batch_size if self.points_batch_size is not None else model.query_rows),
        )


@dataclass
class SceneOptions:
    """How point clouds are treated as scenes.

    Attributes:
        scene: True forces the sliding window, False the object path, None decides
            per input from its extent (needs ``scene_model``).
        scene_model: the crop model for scenes, or a function that loads it when
            the first scene turns up.
        units: ``m``, ``cm``, ``mm``, ``ft``, ``us-ft``; None takes what a LAS/LAZ
            header states, or else guesses.
        voxel_size: voxel edge in metres (default: the model's).
        up: the clouds' up axis (``"z"``, ``"-x"``...; objects too, despite the name); None
            takes what the format says (LAS/LAZ: z), else y, the models' own.
        trim: drop surface the scan cannot have seen (farther than the model's
            ``trim_voxels`` from every point, e.g. the backs of walls).
    """

    scene: bool | None = None
    scene_model: "OccupancyModel | Callable[[], OccupancyModel] | None" = None
    units: str | None = None
    voxel_size: float | None = None
    trim: bool = True
    up: str | None = None


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
    """

    mesh: trimesh.Trimesh
    transform: FrameTransform
    timings: dict[str, float] = field(default_factory=dict)
    n_evaluations: int = 0
    notes: list[str] = field(default_factory=list)
    preview: Any = None
    model_name: str = ""
    model_revision: str | None = None


_KIND_OF_TASK = {"image": "image", "points": "points", "voxels": "voxels", "scene": "points", "unconditional": "none"}


def check_task(model: OccupancyModel, kind: str) -> None:
    """Refuse a model that takes another kind of input than the command's."""
    takes = _KIND_OF_TASK.get(model.task, model.task)
    if takes != kind:
        raise OccreconError(f"model {model.name} takes {takes} input ({model.task} model), not {kind}; pick another --model (see `occrecon models`)")


@dataclass
class RotationEnsemble:
    """Encodings of one cloud under several rotations, decoded as one field.

    Member ``k`` saw the cloud turned by a rotation and re-normalised; a query
    ``p`` in the main input's canonical frame is therefore decoded at
    ``p @ matrices[k].T + offsets[k]`` in member ``k``'s frame, and the logits
    are averaged with ``weights``. A three-plane encoder projects the cloud onto
    three planes, where parts that overlap in a projection (crossing tubes, the
    near and far walls of a bulky object) share features; other rotations give
    other projections, so their average resolves what one projection confuses.
    Member 0 is the unrotated input and keeps half the weight: the model was
    trained on axis-aligned poses, in which thin flat parts (panels, seats) are
    sharpest, and turned members blur them. The members are one batch, so each
    query costs one network call, not ``k``.

    Attributes:
        matrices: (k, 3, 3) float32 on the model's device.
        offsets: (k, 3) float32 on the model's device.
        weights: (k,) float32 summing to 1.
        conditioning: the network's encoding of the batch of ``k`` turned clouds.
    """

    matrices: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor
    conditioning: Any

    @property
    def size(self) -> int:
        return len(self.weights)


@dataclass
class WithWindingPrior:
    """An encoding (plain or :class:`RotationEnsemble`) whose logits get a :class:`~occrecon.winding.WindingPrior`'s added."""

    conditioning: Any
    prior: WindingPrior


def network_encoding(conditioning: Any) -> Any:
    """The network's own encoding (plain or :class:`RotationEnsemble`) inside a :class:`WithWindingPrior`, or ``conditioning`` itself."""
    return conditioning.conditioning if isinstance(conditioning, WithWindingPrior) else conditioning


def decoder_of(model: OccupancyModel, conditioning: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``(n, 3) canonical points (tensor on the model's device) -> (n,) logits`` for one encoded input."""
    if isinstance(conditioning, WithWindingPrior):
        network, prior = decoder_of(model, conditioning.conditioning), conditioning.prior
        return lambda points: network(points) + prior.logits(points).to(points.dtype)
    if not isinstance(conditioning, RotationEnsemble):
        return lambda points: model.net.decode(points[None], conditioning)[0]
    ensemble = conditioning

    def decode(points: torch.Tensor) -> torch.Tensor:
        per_member = torch.einsum("kij,nj->kni", ensemble.matrices, points) + ensemble.offsets[:, None]
        return ensemble.weights @ model.net.decode(per_member, ensemble.conditioning)

    return decode


def field_function(model: OccupancyModel, conditioning: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``(n, 3) float32 canonical points -> (n,) logits`` for one encoded input."""
    decode = decoder_of(model, conditioning)

    def query(points: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(model.device)
        with torch.inference_mode():
            return decode(tensor).float().cpu().numpy()

    return query


def _encode(model: OccupancyModel, tensor: torch.Tensor | None) -> Any:
    # no_grad rather than inference_mode: refinement differentiates the decoder
    # through this conditioning, which inference tensors would forbid.
    with torch.no_grad():
        if tensor is None:
            return model.net.encode(None, batch_size=1)
    return _encode_batch(model, [tensor])


def _encode_batch(model: OccupancyModel, tensors: list[torch.Tensor]) -> Any:
    with torch.no_grad():  # as in _encode
        return model.net.encode(torch.stack(tensors).to(model.device, torch.float32))


def random_rotations(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3, 3) rotation matrices: the identity, then uniformly random ones (seeded)."""
    # Gaussian quaternions are uniform on the unit sphere, hence uniform rotations.
    quaternions = np.random.default_rng([seed, 0x5EED]).normal(size=(max(count - 1, 0), 4))
    turns = [trimesh.transformations.quaternion_matrix(q)[:3, :3] for q in quaternions]
    return np.stack([np.eye(3), *turns]) if count > 0 else np.zeros((0, 3, 3))


def encode_rotated(model: OccupancyModel, cloud: np.ndarray, main: PreparedInput, spec: dict[str, Any], rotations: int, seed: int) -> RotationEnsemble:
    """Encode ``cloud`` (input frame) under ``rotations`` rotations about its box centre.

    ``main`` is the prepared unrotated input (the plain reconstruction's), member 0
    and the frame in which the mesh is extracted; it weighs 1/2, the others share the
    other half. Member ``k`` subsamples and adds noise with seed ``seed + k``.
    """
    from occrecon.preprocess import prepare_input

    centre = (cloud.min(axis=0) + cloud.max(axis=0)) / 2
    matrices, offsets, inputs = [np.eye(3)], [np.zeros(3)], [main.tensor]
    frame_of_main = main.transform
    for k, rotation in enumerate(random_rotations(rotations, seed)[1:], start=1):
        turned = prepare_input("points", (cloud - centre) @ rotation.T, spec, seed=seed + k)
        frame = turned.transform
        # p (main canonical) -> input -> turned input -> member canonical, an affine map.
        matrices.append(rotation * (frame_of_main.scale / frame.scale))
        offsets.append(((np.asarray(frame_of_main.translation) - centre) @ rotation.T - np.asarray(frame.translation)) / frame.scale)
        inputs.append(turned.tensor)
    weights = np.full(len(inputs), 0.5 / max(len(inputs) - 1, 1))
    weights[0] = 0.5 if len(inputs) > 1 else 1.0
    as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=model.device)  # noqa: E731
    return RotationEnsemble(as_tensor(matrices), as_tensor(offsets), as_tensor(weights), _encode_batch(model, inputs))


class ExtractedSurface(NamedTuple):
    """What :func:`mesh_from_conditioning` extracted: the canonical-frame mesh and how the field looked."""

    vertices: np.ndarray
    faces: np.ndarray
    n_evaluations: int
    # The extremes of the occupancy probability on the evaluated lattice: when there is no
    # surface, they say which thresholds would give one.
    lowest_probability: float
    highest_probability: float


def no_surface_message(threshold: float, lowest: float, highest: float) -> str:
    """Why a field has no surface at ``threshold``, and what would give one."""
    # Rounded towards the threshold side that works, so the printed value is one.
    if lowest > threshold:
        shown = math.ceil(lowest * 1000) / 1000
        return f"the model found no surface at threshold {threshold:g}: the whole box is inside (lowest occupancy probability {shown:.3f}); a higher --threshold gives one"
    shown = math.floor(highest * 1000) / 1000
    return f"the model found no surface at threshold {threshold:g}: its highest occupancy probability is {shown:.3f}; a lower --threshold gives one"


def mesh_from_conditioning(
    model: OccupancyModel,
    conditioning: Any,
    options: ExtractionOptions,
    *,
    seed: int = 0,
    on_stage: StageFn | None = None,
    timings: dict[str, float] | None = None,
    anchors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Extract the canonical-frame mesh of an encoded input.

    ``anchors``: (m, 3) canonical points the surface passes near, whose coarse MISE cells are subdivided whatever their corners say.

    Returns:
        :class:`ExtractedSurface`: vertices (v, 3), faces (f, 3), the number of network
        evaluations and the field's lowest and highest occupancy probability.
    """
    timings = {} if timings is None else timings
    opts = options.resolved(model)
    logit = probability_to_logit(opts.threshold)
    lower, upper = box_bounds(model.padding)
    network = network_encoding(conditioning)
    members = network.size if isinstance(network, RotationEnsemble) else 1

    stage = time.perf_counter()
    if on_stage:
        on_stage("evaluating the occupancy field")
    grid = extract_grid(
        field_function(model, conditioning),
        resolution0=opts.resolution,
        upsampling_steps=opts.upsampling_steps,
        threshold=logit,
        lower=lower,
        upper=upper,
        # An ensemble decodes every query once per member, all in one call.
        batch_size=max(1, opts.points_batch_size // members),
        anchors=anchors,
    )
    timings["field"] = time.perf_counter() - stage

    stage = time.perf_counter()
    if on_stage:
        on_stage("marching cubes")
    vertices, faces = marching_cubes(grid, logit)
    timings["marching_cubes"] = time.perf_counter() - stage

    if opts.simplify and len(faces):
        stage = time.perf_counter()
        if on_stage:
            on_stage("simplifying")
        vertices, faces = simplify(vertices, faces, int(opts.simplify))
        timings["simplify"] = time.perf_counter() - stage

    if opts.refine and len(faces):
        stage = time.perf_counter()
        if on_stage:
            on_stage("refining")

        vertices = refine_vertices(
            vertices, faces, decoder_of(model, conditioning), threshold=opts.threshold, steps=opts.refine, seed=seed, device=model.device
        )
        timings["refine"] = time.perf_counter() - stage
    # Lattice values MISE did not evaluate are interpolated between evaluated ones, so they set no new extreme.
    lowest, highest = (0.5 + 0.5 * math.tanh(float(v) / 2) for v in (grid.values.min(), grid.values.max()))  # sigmoid, safe for any logit
    return ExtractedSurface(vertices, faces, grid.n_evaluations * members, lowest, highest)


def reconstruct(
    model: OccupancyModel,
    kind: str,
    source: str | Path | np.ndarray | Any,
    *,
    options: ExtractionOptions | None = None,
    mask: str | Path | np.ndarray | None = None,
    seed: int = 0,
    on_stage: StageFn | None = None,
    on_note: Callable[[str], None] | None = None,
    scene: SceneOptions | None = None,
    input_noise: float | None = None,
    rotations: int | None = None,
    fit_steps: int | None = None,
    winding: bool | None = None,
    anchor_points: bool | None = None,
) -> Reconstruction:
    """Reconstruct one input.

    Args:
        model: a loaded model whose task matches ``kind``.
        kind: ``image``, ``points`` or ``voxels``.
        source: a file path or an in-memory array/image (see ``occrecon.preprocess``).
        options: extraction settings (defaults from the model config).
        mask: object mask for images (path or (H, W) bool array).
        seed: seeds subsampling, input noise and refinement.
        on_stage: called with a short stage name as work proceeds.
        on_note: called with notes that matter before a long run ends (a scene's
            units, points too sparse for its voxels); every note is also in the result.
        scene: whether and how point clouds go through the sliding window.
        input_noise: Gaussian std (canonical units) added to an object cloud before
            encoding; None keeps the model's (0.005 for the object models, as upstream
            adds at test time), 0 suits clouds that carry that much noise already.
        rotations: encode an object cloud under this many rotations (the identity and
            random ones, seeded by ``seed``) and decode their weighted average
            (:class:`RotationEnsemble`): a few times the time, for shapes whose
            parts overlap in the three-plane projections. None takes the model's
            ``generation.rotations`` (1 where it has none).
        fit_steps: fit the encoding of an object cloud to its points for this many
            steps (:func:`occrecon.fitting.fit_to_points`): the surface then passes
            through the points where the network alone misses them by a little.
            0 turns it off; None takes the model's ``generation.fit_steps`` (0 where
            it has none).
        winding: add the winding-number prior of an object cloud's own points to
            the network's field away from them (:mod:`occrecon.winding`): it
            decides inside and outside where the network confuses overlapping
            parts. None takes the model's ``generation.winding_prior`` (off where
            it has none).
        anchor_points: MISE also subdivides every coarse cell near an object
            cloud's points (``anchors`` of :func:`~occrecon.extract.extract_grid`):
            a part thinner than a coarse cell can lie between the coarse lattice
            points and vanish otherwise. None takes the model's
            ``generation.anchor_points`` (off where it has none, as upstream).

    Returns:
        A ``Reconstruction`` whose mesh is in the input's coordinate frame.
    """
    from occrecon.io.readers import read_points
    from occrecon.preprocess import prepare_input

    check_task(model, kind)
    if input_noise is not None and (kind != "points" or not input_noise >= 0):
        raise ValueError(f"input_noise is a std >= 0 for point clouds, got {input_noise} for {kind}")
    if rotations is not None and rotations != 1 and (kind != "points" or rotations < 1):
        raise ValueError(f"rotations is a count >= 1 for point clouds, got {rotations} for {kind}")
    if fit_steps is not None and fit_steps != 0 and (kind != "points" or fit_steps < 0):
        raise ValueError(f"fit_steps is a count >= 0 for point clouds, got {fit_steps} for {kind}")
    if winding and kind != "points":
        raise ValueError(f"the winding-number prior is for point clouds, not {kind}")
    if anchor_points and kind != "points":
        raise ValueError(f"anchor points come from point clouds, not from {kind}")
    # Asked for explicitly (the model's defaults are for object clouds): the scene path says it ignores them.
    asked = (("--rotations", rotations, 1), ("--fit-steps", fit_steps, 0), ("--winding-prior", winding, False), ("--anchor-points", anchor_points, False))
    object_only = [flag for flag, value, off in asked if value not in (None, off)]
    if rotations is None:
        rotations = int(model.generation.get("rotations", 1)) if kind == "points" else 1
    if fit_steps is None:
        fit_steps = int(model.generation.get("fit_steps", 0)) if kind == "points" else 0
    if winding is None:
        winding = bool(model.generation.get("winding_prior", False)) and kind == "points"
    if anchor_points is None:
        anchor_points = bool(model.generation.get("anchor_points", False)) and kind == "points"
    options = options or ExtractionOptions()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if on_stage:
        on_stage("reading input")
    label = str(source) if isinstance(source, (str, Path)) else None  # errors name the file, also once it is read
    object_note: str | None = None
    if kind == "points":
        if isinstance(source, (str, Path)):
            source = read_points(source)
        scene_model = _scene_model_for(model, source, scene or SceneOptions())
        object_note = _room_sized_note(source, scene or SceneOptions()) if scene_model is None else None
        if scene_model is not None:
            result = _reconstruct_scene(scene_model, source, scene or SceneOptions(), options, seed, on_stage, on_note, start)
            if object_only:
                flags = " and ".join([", ".join(object_only[:-1]), object_only[-1]] if len(object_only) > 1 else object_only)
                result.notes.append(f"{flags} apply to object clouds, not the scene's sliding window: ignored")
            return result
    frame, frame_notes = _object_frame(source, scene or SceneOptions()) if kind == "points" else (None, [])
    if frame is not None:
        points = _cloud_array(source)[:, :3] @ frame.T
        source = dataclasses.replace(source, points=points, units=None, up="y") if hasattr(source, "points") else points
    spec = model.input_spec if input_noise is None else {**model.input_spec, "noise": input_noise}
    prepared = prepare_input(kind, source, spec, mask=mask, seed=seed)
    timings["preprocess"] = time.perf_counter() - start

    stage = time.perf_counter()
    if on_stage:
        on_stage("encoding")
    if rotations > 1:
        cloud = _cloud_array(source)[:, :3]
        cloud = cloud[np.isfinite(cloud).all(axis=1)]
        conditioning = encode_rotated(model, cloud, prepared, spec, rotations, seed)
    else:
        conditioning = _encode(model, prepared.tensor)
    timings["encode"] = time.perf_counter() - stage
    # The prior, the fit and the anchors use the cloud as given: the same subset, without the noise added for the encoder.
    clean_points = None
    if winding or fit_steps > 0 or anchor_points:
        clean = prepared if not spec.get("noise") else prepare_input(kind, source, {**spec, "noise": 0.0}, seed=seed)
        clean_points = clean.tensor.numpy()
    notes: list[str] = []
    if winding:
        stage = time.perf_counter()
        if on_stage:
            on_stage("winding-number prior")
        prior = winding_prior(model, conditioning, clean_points, PriorOptions(seed=seed))
        conditioning = WithWindingPrior(conditioning, prior)
        timings["prior"] = time.perf_counter() - stage
        notes.append("winding-number prior of the input points added away from them")
    if fit_steps > 0:
        stage = time.perf_counter()
        if on_stage:
            on_stage("fitting to the points")
        threshold = options.resolved(model).threshold
        conditioning = fit_to_points(model, conditioning, clean_points, threshold, FitOptions(steps=fit_steps, seed=seed))
        timings["fit"] = time.perf_counter() - stage

    anchors = clean_points if anchor_points else None
    if anchor_points:
        notes.append("MISE anchored at the input points: every coarse cell near one is subdivided")
    vertices, faces, n_evals, lowest, highest = mesh_from_conditioning(model, conditioning, options, seed=seed, on_stage=on_stage, timings=timings, anchors=anchors)
    if len(faces) == 0:
        raise NoSurfaceError(label, no_surface_message(options.resolved(model).threshold, lowest, highest), preview=prepared.preview)
    vertices = prepared.transform.to_input(vertices)
    if frame is not None:
        vertices = vertices @ np.linalg.inv(frame).T
    notes += frame_notes
    if object_note:
        notes.append(object_note)
    mesh = make_mesh(vertices, faces)
    timings["total"] = time.perf_counter() - start
    return Reconstruction(
        mesh=mesh,
        transform=prepared.transform,
        timings=timings,
        n_evaluations=n_evals,
        notes=list(model.notes) + list(prepared.notes) + ([f"rotation ensemble of {rotations} encodings"] if rotations > 1 else [])
        + notes
        + ([f"encoding fitted to the input points ({fit_steps} steps)"] if fit_steps > 0 else []),
        preview=prepared.preview,
        model_name=model.name,
        model_revision=model.revision,
    )


def _cloud_array(source: Any) -> np.ndarray:
    return np.asarray(getattr(source, "points", source), dtype=np.float64)


def _up_axis(source: Any, scene: SceneOptions) -> str | None:
    """``--up`` when given, else what the format says (LAS/LAZ: z), else None (y, unstated)."""
    return scene.up or getattr(source, "up", None)


def _object_frame(source: Any, scene: SceneOptions) -> tuple[np.ndarray | None, list[str]]:
    """The linear map (3, 3) taking an object cloud into the frame the network expects (None: none needed), and notes on it.

    An object is normalised by one scale, so a z in other units than x and y (LAS: feet
    across, metres up) would squash or stretch it: z is brought into x and y's unit. A
    cloud whose up axis is not y is turned y-up. The mesh goes back by the inverse.
    """
    frame, notes = np.eye(3), []
    up = _up_axis(source, scene) or "y"
    if up != "y":
        frame = up_rotation(up)
        notes.append(f"{up} up: turned y-up for the network, and back")
    units = getattr(source, "units", None)
    if units is not None and units.vertical != units.horizontal:
        stretch = units.vertical / units.horizontal
        frame = frame @ np.diag([1.0, 1.0, stretch])
        notes.append(f"z ({units.vertical_name}) scaled by {stretch:.7g} into the unit of x and y ({units.horizontal_name}) for the network, and back")
    return (None if not notes else frame), notes


def _scene_units(source: Any, scene: SceneOptions) -> Any:
    """``--units`` when given, else what the file's header states (LAS/LAZ), else None (guess)."""
    return scene.units if scene.units is not None else getattr(source, "units", None)


def _room_sized_note(source: Any, scene: SceneOptions) -> str | None:
    """For a cloud the extent rule sent down the object path although it may be a small room: how to say otherwise."""
    from occrecon.scene import OBJECT_SCALE_LIMIT_M, ROOM_SIZED_M, extent_metres

    if scene.scene is not None or scene.scene_model is None:
        return None  # the user chose, or no scene model is on offer
    metres = extent_metres(_cloud_array(source), _scene_units(source, scene))
    if metres <= ROOM_SIZED_M:
        return None
    return (
        f"reconstructed as one object: {metres:.2f} m across, under the {OBJECT_SCALE_LIMIT_M:g} m at which clouds count as scenes; "
        "if it is a room or a part of one, --scene reconstructs it with the scene model"
    )


def _scene_model_for(model: OccupancyModel, source: Any, scene: SceneOptions) -> OccupancyModel | None:
    """The crop model to use for this cloud, or None for the object path."""
    from occrecon.scene import is_scene

    if model.task == "scene":
        return model
    if scene.scene is False or scene.scene_model is None:
        if scene.scene:
            raise OccreconError(f"model {model.name} is an object model; --scene needs a scene model")
        return None
    if scene.scene is None and not is_scene(_cloud_array(source), _scene_units(source, scene)):
        return None
    if callable(scene.scene_model) and not isinstance(scene.scene_model, OccupancyModel):
        scene.scene_model = scene.scene_model()
    return scene.scene_model  # type: ignore[return-value]


def _reconstruct_scene(
    model: OccupancyModel,
    source: Any,
    scene: SceneOptions,
    options: ExtractionOptions,
    seed: int,
    on_stage: StageFn | None,
    on_note: Callable[[str], None] | None,
    start: float,
) -> Reconstruction:
    from occrecon.scene import reconstruct_scene, scene_settings

    cloud = _cloud_array(source)
    notes = list(model.notes)
    dropped = getattr(source, "dropped_nonfinite", 0)
    if dropped:
        notes.append(f"dropped {dropped} non-finite rows")
    if len(cloud) < 4 or not np.all(np.ptp(cloud, axis=0) > 0):
        raise InputError(getattr(source, "source", None), "a scene needs points spread in all three dimensions")
    settings = scene_settings(
        model,
        threshold=options.threshold,
        resolution=options.resolution,
        upsampling_steps=options.upsampling_steps,
        batch_size=options.points_batch_size,
    )
    if not scene.trim:
        settings = dataclasses.replace(settings, trim_voxels=None)

    def progress(done: int, total: int) -> None:
        if on_stage:
            on_stage(f"crop {done}/{total}")

    result = reconstruct_scene(model, cloud, units=_scene_units(source, scene), voxel_size=scene.voxel_size, up=_up_axis(source, scene), settings=settings, seed=seed, on_crop=progress, on_note=on_note)
    notes += result.notes
    notes.append(f"scene: {result.n_crops - result.n_skipped} of {result.n_crops} crops reconstructed with {model.name}")
    timings = dict(result.timings)
    timings["total"] = time.perf_counter() - start
    return Reconstruction(
        mesh=result.mesh,
        transform=FrameTransform.identity(),
        timings=timings,
        n_evaluations=result.n_evaluations,
        notes=notes,
        preview=None,
        model_name=model.name,
        model_revision=model.revision,
    )


def _extraction_kwargs(kwargs: dict[str, Any]) -> tuple[ExtractionOptions, dict[str, Any]]:
    names = ExtractionOptions.__dataclass_fields__
    options = ExtractionOptions(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})
    return options, kwargs


def reconstruct_image(model: OccupancyModel, image: str | Path | np.ndarray | Any, **kwargs: Any) -> trimesh.Trimesh:
    """Mesh from one photo or render (path, PIL image or (H, W, 3|4) array), in the model's canonical frame.

    Keyword arguments: ``mask``, ``seed`` and the fields of ``ExtractionOptions``.
    """
    options, rest = _extraction_kwargs(dict(kwargs))
    return reconstruct(model, "image", image, options=options, **rest).mesh


def reconstruct_points(model: OccupancyModel, points: str | Path | np.ndarray, **kwargs: Any) -> trimesh.Trimesh:
    """Mesh from a point cloud (path or (n, 3) array), in the cloud's own frame.

    ``up="z"`` (or ``"-y"``...) names the cloud's up axis (default: z for LAS/LAZ, else y).
    With a scene model (``convonet-scene``) the cloud goes through the sliding
    window; ``units``, ``voxel_size`` and ``trim`` then apply (see ``occrecon.scene``).
    """
    options, rest = _extraction_kwargs(dict(kwargs))
    scene_names = ("units", "voxel_size", "trim", "up")
    scene = SceneOptions(**{k: rest.pop(k) for k in scene_names if k in rest})
    return reconstruct(model, "points", points, options=options, scene=scene, **rest).mesh


def reconstruct_voxels(model: OccupancyModel, voxels: str | Path | np.ndarray, **kwargs: Any) -> trimesh.Trimesh:
    """Mesh from a voxel grid (path or (D, H, W) array), in the grid's own frame."""
    options, rest = _extraction_kwargs(dict(kwargs))
    return reconstruct(model, "voxels", voxels, options=options, **rest).mesh
