"""Input → mesh for one item: preprocessing, encoding, MISE, marching cubes, refinement.

The CLI is a thin loop over ``reconstruct``; ``reconstruct_image``,
``reconstruct_points`` and ``reconstruct_voxels`` are the short forms that
return only the mesh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import trimesh

from occrecon.errors import InputError, OccreconError
from occrecon.extract import box_bounds, extract_grid, marching_cubes, probability_to_logit, refine_vertices, simplify
from occrecon.frames import FrameTransform
from occrecon.io.mesh import make_mesh
from occrecon.loading import OccupancyModel

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
        points_batch_size: network queries per forward pass.
    """

    threshold: float | None = None
    resolution: int | None = None
    upsampling_steps: int | None = None
    refine: int = 0
    simplify: int | None = None
    points_batch_size: int = 100_000

    def resolved(self, model: OccupancyModel) -> "ExtractionOptions":
        gen = model.generation
        return ExtractionOptions(
            threshold=float(self.threshold if self.threshold is not None else gen.get("threshold", 0.2)),
            resolution=int(self.resolution if self.resolution is not None else gen.get("resolution", 32)),
            upsampling_steps=int(self.upsampling_steps if self.upsampling_steps is not None else gen.get("upsampling_steps", 2)),
            refine=int(self.refine if self.refine else gen.get("refinement_steps", 0) or 0),
            simplify=self.simplify if self.simplify is not None else gen.get("simplify_faces"),
            points_batch_size=int(self.points_batch_size),
        )


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


def field_function(model: OccupancyModel, conditioning: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``(n, 3) float32 canonical points -> (n,) logits`` for one encoded input."""

    def query(points: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(model.device)[None]
        with torch.inference_mode():
            return model.net.decode(tensor, conditioning)[0].float().cpu().numpy()

    return query


def _encode(model: OccupancyModel, tensor: torch.Tensor | None) -> Any:
    # no_grad rather than inference_mode: refinement differentiates the decoder
    # through this conditioning, which inference tensors would forbid.
    with torch.no_grad():
        if tensor is None:
            return model.net.encode(None, batch_size=1)
        return model.net.encode(tensor.to(model.device, torch.float32)[None])


def mesh_from_conditioning(
    model: OccupancyModel,
    conditioning: Any,
    options: ExtractionOptions,
    *,
    seed: int = 0,
    on_stage: StageFn | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Extract the canonical-frame mesh of an encoded input.

    Returns:
        vertices (v, 3), faces (f, 3), number of network evaluations.
    """
    timings = {} if timings is None else timings
    opts = options.resolved(model)
    logit = probability_to_logit(opts.threshold)
    lower, upper = box_bounds(model.padding)

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
        batch_size=opts.points_batch_size,
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

        def decode(points: torch.Tensor) -> torch.Tensor:
            return model.net.decode(points[None], conditioning)[0]

        vertices = refine_vertices(
            vertices, faces, decode, threshold=opts.threshold, steps=opts.refine, seed=seed, device=model.device
        )
        timings["refine"] = time.perf_counter() - stage
    return vertices, faces, grid.n_evaluations


def reconstruct(
    model: OccupancyModel,
    kind: str,
    source: str | Path | np.ndarray | Any,
    *,
    options: ExtractionOptions | None = None,
    mask: str | Path | np.ndarray | None = None,
    seed: int = 0,
    on_stage: StageFn | None = None,
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

    Returns:
        A ``Reconstruction`` whose mesh is in the input's coordinate frame.
    """
    from occrecon.preprocess import prepare_input

    check_task(model, kind)
    options = options or ExtractionOptions()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if on_stage:
        on_stage("reading input")
    prepared = prepare_input(kind, source, model.input_spec, mask=mask, seed=seed)
    timings["preprocess"] = time.perf_counter() - start

    stage = time.perf_counter()
    if on_stage:
        on_stage("encoding")
    conditioning = _encode(model, prepared.tensor)
    timings["encode"] = time.perf_counter() - stage

    vertices, faces, n_evals = mesh_from_conditioning(model, conditioning, options, seed=seed, on_stage=on_stage, timings=timings)
    if len(faces) == 0:
        label = source if isinstance(source, (str, Path)) else None
        raise InputError(label, f"the model found no surface at threshold {options.resolved(model).threshold:g} (try a lower --threshold)")
    mesh = make_mesh(prepared.transform.to_input(vertices), faces)
    timings["total"] = time.perf_counter() - start
    return Reconstruction(
        mesh=mesh,
        transform=prepared.transform,
        timings=timings,
        n_evaluations=n_evals,
        notes=list(model.notes) + list(prepared.notes),
        preview=prepared.preview,
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
    """Mesh from a point cloud (path or (n, 3) array), in the cloud's own frame."""
    options, rest = _extraction_kwargs(dict(kwargs))
    return reconstruct(model, "points", points, options=options, **rest).mesh


def reconstruct_voxels(model: OccupancyModel, voxels: str | Path | np.ndarray, **kwargs: Any) -> trimesh.Trimesh:
    """Mesh from a voxel grid (path or (D, H, W) array), in the grid's own frame."""
    options, rest = _extraction_kwargs(dict(kwargs))
    return reconstruct(model, "voxels", voxels, options=options, **rest).mesh
