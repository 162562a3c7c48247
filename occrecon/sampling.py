"""Shapes from an unconditional model's prior: sampling and latent-space interpolation.

ONet's unconditional models (``onet-uncond-airplanes``, ``-cars``, ``-chairs``,
``-sofas``) decode an occupancy field from a latent code ``z`` alone; their
prior is ``p(z) = N(0, I)`` with ``z_dim`` = 128 (upstream.md §1.2). A sample
draws ``z`` from the prior, a mesh is extracted from the field it decodes to
(MISE and marching cubes, as for every other model), in the model's canonical
frame (y up, the object within about the unit cube).

Latent codes come from a CPU generator seeded by ``seed``, one row after the
other, so they do not depend on the device, and the first ``m`` samples of
``n`` are the ``m`` samples of a smaller run with the same seed.
:func:`interpolate` walks the straight line between the first two codes of a
seed, so its first and last meshes are ``sample(model, 2, seed=seed)``.

Example:
    >>> import occrecon
    >>> model = occrecon.load_model("onet-uncond-chairs")  # doctest: +SKIP
    >>> chairs = occrecon.sample(model, 4, seed=0)  # doctest: +SKIP
    >>> morph = occrecon.sampling.interpolate(model, 8, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from occrecon.errors import NoSurfaceError, OccreconError
from occrecon.options import ExtractionOptions, ReconstructOptions, ResolvedOptions

if TYPE_CHECKING:
    import torch
    import trimesh

    from occrecon.loading import OccupancyModel


SampleSettings = ExtractionOptions
"""How each latent code's field becomes a mesh: threshold, resolution, upsampling_steps, refine,
simplify, points_batch_size; ``None`` takes the model's ``generation`` default (the extraction
part of :class:`~occrecon.options.ReconstructOptions`, resolved the same way)."""


@dataclass
class SampledShape:
    """One latent code and what it gave.

    Attributes:
        index: position in the run (0-based).
        z: (z_dim,) latent code, on the CPU.
        t: position along an interpolation (0 at the first code, 1 at the second), or None for a sample.
        mesh: the mesh in the model's canonical frame, or None when the field has no surface.
        error: why there is no mesh.
        seconds: extraction time.
        n_evaluations: network queries spent.
    """

    index: int
    z: "torch.Tensor"
    t: float | None = None
    mesh: "trimesh.Trimesh | None" = None
    error: str | None = None
    seconds: float = 0.0
    n_evaluations: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def _resolve(model: "OccupancyModel", settings: SampleSettings) -> ResolvedOptions:
    """The settings checked and filled from the model's defaults, as for every other reconstruction."""
    return ReconstructOptions.combine(settings).resolve(model, "none")


def check_unconditional(model: "OccupancyModel") -> int:
    """The latent size of an unconditional model; any other model is refused with one line."""
    z_dim = int(getattr(model.net, "z_dim", 0) or 0)
    if model.task != "unconditional" or z_dim <= 0:
        raise OccreconError(
            f"model {model.name} is a {model.task} model; sampling needs an unconditional one "
            "(onet-uncond-airplanes, onet-uncond-cars, onet-uncond-chairs or onet-uncond-sofas)"
        )
    return z_dim


def draw_latents(z_dim: int, n: int, seed: int = 0) -> "torch.Tensor":
    """``n`` codes from the prior ``N(0, I)``: a (n, z_dim) float32 CPU tensor, the same for a seed on any machine."""
    import torch

    if n < 1:
        raise ValueError(f"the number of samples must be >= 1, got {n}")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    # Row by row: one (n, z_dim) draw would not begin with the rows of a smaller n (torch fills
    # normals in blocks of 16 and redraws the last block), and -n 8 must begin with -n 2's shapes.
    return torch.stack([torch.randn(z_dim, generator=generator, dtype=torch.float32) for _ in range(n)])


def interpolate_latents(start: "torch.Tensor", end: "torch.Tensor", steps: int) -> tuple["torch.Tensor", list[float]]:
    """``steps`` codes evenly spaced on the segment from ``start`` to ``end`` (both included), and their positions t."""
    import torch

    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps (its two ends), got {steps}")
    ts = [i / (steps - 1) for i in range(steps)]
    codes = torch.stack([start if t == 0 else end if t == 1 else torch.lerp(start, end, t) for t in ts])
    return codes, ts


def extract_latent(model: "OccupancyModel", z: "torch.Tensor", settings: SampleSettings | None = None, *, seed: int = 0) -> SampledShape:
    """Extract the mesh of one latent code (MISE, marching cubes, optional simplification and refinement).

    Returns:
        A :class:`SampledShape` with ``mesh`` set, or with ``error`` when the field
        does not cross the threshold anywhere in the box.
    """
    import numpy as np
    import torch

    from occrecon.extract import box_bounds, extract_grid, marching_cubes, probability_to_logit, refine_vertices, simplify
    from occrecon.io.mesh import make_mesh

    opts = _resolve(model, settings or SampleSettings())
    started = time.perf_counter()
    timings: dict[str, float] = {}
    code = z.detach().to(model.device, torch.float32).reshape(1, -1)
    with torch.no_grad():  # not inference mode: refinement differentiates through this conditioning
        conditioning = model.net.encode(None, batch_size=1)

    def decode(points: torch.Tensor) -> torch.Tensor:
        return model.net.decode(points[None], conditioning, z=code)[0]

    def query(points: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(model.device)
        with torch.inference_mode():
            return decode(tensor).float().cpu().numpy()

    logit = probability_to_logit(opts.threshold)
    lower, upper = box_bounds(model.padding)
    stage = time.perf_counter()
    grid = extract_grid(query, resolution0=opts.resolution, upsampling_steps=opts.upsampling_steps, threshold=logit,
                        lower=lower, upper=upper, batch_size=opts.points_batch_size)
    timings["field"] = time.perf_counter() - stage
    stage = time.perf_counter()
    vertices, faces = marching_cubes(grid, logit)
    timings["marching_cubes"] = time.perf_counter() - stage
    shape = SampledShape(index=0, z=z.detach().cpu().reshape(-1), n_evaluations=grid.n_evaluations, timings=timings)
    if len(faces) == 0:
        lowest, highest = (0.5 + 0.5 * math.tanh(float(v) / 2) for v in (grid.values.min(), grid.values.max()))
        inside = lowest > opts.threshold
        shape.error = (
            f"the field has no surface at threshold {opts.threshold:g}: "
            + (f"the whole box is inside (lowest occupancy probability {lowest:.3f})" if inside else f"its highest occupancy probability is {highest:.3f}")
        )
        shape.seconds = time.perf_counter() - started
        return shape
    if opts.simplify:
        stage = time.perf_counter()
        vertices, faces = simplify(vertices, faces, int(opts.simplify))
        timings["simplify"] = time.perf_counter() - stage
    if opts.refine:
        stage = time.perf_counter()
        vertices = refine_vertices(vertices, faces, decode, threshold=opts.threshold, steps=opts.refine, seed=seed, device=model.device)
        timings["refine"] = time.perf_counter() - stage
    shape.mesh = make_mesh(vertices, faces)
    shape.seconds = time.perf_counter() - started
    return shape


def generate(
    model: "OccupancyModel",
    latents: "torch.Tensor",
    settings: SampleSettings | None = None,
    *,
    positions: list[float] | None = None,
    seed: int = 0,
) -> Iterator[SampledShape]:
    """Extract one shape per row of ``latents`` (n, z_dim), in order; ``positions`` are the rows' interpolation t."""
    check_unconditional(model)
    settings = settings or SampleSettings()
    _resolve(model, settings)  # refuse bad settings before the first extraction
    for index, z in enumerate(latents):
        # One refinement seed for all: an interpolation's ends then match the samples exactly, refined or not.
        shape = extract_latent(model, z, settings, seed=seed)
        shape.index = index
        shape.t = None if positions is None else positions[index]
        yield shape


def _load(model: "OccupancyModel | str | Path", device: str | None) -> "OccupancyModel":
    if isinstance(model, (str, Path)):
        from occrecon.loading import load_model

        return load_model(model, device)
    return model


def _meshes(shapes: Iterator[SampledShape], model: "OccupancyModel") -> list["trimesh.Trimesh"]:
    meshes = []
    for shape in shapes:
        if shape.mesh is None:
            raise NoSurfaceError(None, f"model {model.name}, shape {shape.index}: {shape.error}")
        meshes.append(shape.mesh)
    return meshes


def sample(
    model: "OccupancyModel | str | Path",
    n: int = 1,
    *,
    seed: int = 0,
    threshold: float | None = None,
    resolution: int | None = None,
    upsampling_steps: int | None = None,
    refine: int = 0,
    simplify: int | None = None,
    points_batch_size: int | None = None,
    device: str | None = None,
) -> list["trimesh.Trimesh"]:
    """Draw ``n`` shapes from an unconditional model's prior (z ~ N(0, I)), one mesh each.

    Args:
        model: a loaded unconditional model, or its name / folder (loaded here).
        n: number of shapes.
        seed: seeds the latent codes (and refinement); a seed gives the same shapes anywhere.
        threshold, resolution, upsampling_steps, refine, simplify, points_batch_size:
            extraction settings; None takes the model's defaults (see :class:`SampleSettings`).
        device: where to load ``model`` when it is given by name.

    Returns:
        ``n`` meshes in the model's canonical frame (y up, about the unit cube).

    Raises:
        OccreconError: the model is not unconditional.
        NoSurfaceError: a code's field has no surface at the threshold.
    """
    loaded = _load(model, device)
    z_dim = check_unconditional(loaded)
    settings = SampleSettings(threshold, resolution, upsampling_steps, refine, simplify, points_batch_size)
    return _meshes(generate(loaded, draw_latents(z_dim, n, seed), settings, seed=seed), loaded)


def interpolate(
    model: "OccupancyModel | str | Path",
    steps: int,
    *,
    seed: int = 0,
    threshold: float | None = None,
    resolution: int | None = None,
    upsampling_steps: int | None = None,
    refine: int = 0,
    simplify: int | None = None,
    points_batch_size: int | None = None,
    device: str | None = None,
) -> list["trimesh.Trimesh"]:
    """``steps`` meshes along the straight line between the first two latent codes of ``seed``.

    The first and last meshes are ``sample(model, 2, seed=seed)`` (same settings);
    the others decode ``(1 - t)·z0 + t·z1`` for evenly spaced t, ONet's
    latent-space interpolation.
    """
    loaded = _load(model, device)
    z_dim = check_unconditional(loaded)
    ends = draw_latents(z_dim, 2, seed)
    codes, ts = interpolate_latents(ends[0], ends[1], steps)
    settings = SampleSettings(threshold, resolution, upsampling_steps, refine, simplify, points_batch_size)
    return _meshes(generate(loaded, codes, settings, positions=ts, seed=seed), loaded)


__all__ = [
    "SampleSettings",
    "SampledShape",
    "check_unconditional",
    "draw_latents",
    "extract_latent",
    "generate",
    "interpolate",
    "interpolate_latents",
    "sample",
]
