"""A field's surface: MISE over the canonical box, marching cubes, then optional decimation and refinement."""

from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import numpy as np

from occrecon.extract import (
    GridValues,
    RefinementGuide,
    UpstreamMise,
    box_bounds,
    extract_grid,
    extract_grid_upstream,
    marching_cubes,
    probability_to_logit,
    refine_vertices,
    simplify,
    upstream_logit,
)
from occrecon.field import Field, numpy_query
from occrecon.nets import upstream_arithmetic
from occrecon.options import ResolvedOptions

StageFn = Callable[[str], None]


class ExtractedSurface(NamedTuple):
    """What :func:`extract_surface` found: the canonical-frame mesh and how the field looked."""

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


def _field_grid(field: Field, options: ResolvedOptions, logit: float, anchors: np.ndarray | None, say: StageFn | None = None) -> GridValues:
    """The field on MISE's lattice, refined by occrecon's rule or, with ``mise_rule="upstream"``, by upstream's.

    ``say`` hears ``MISE level k/n`` as level k (of 1 + upsampling steps) starts.
    """
    levels = options.upsampling_steps + 1
    on_level = None if say is None else (lambda level, n_points: say(f"MISE level {level + 1}/{levels}"))
    lower, upper = box_bounds(field.model.padding)
    # An ensemble decodes every query once per member, all in one call.
    batch_size = max(1, options.points_batch_size // field.rows_per_query)
    query = numpy_query(field)
    if options.mise_rule != "upstream":
        guide = RefinementGuide(anchors=anchors)
        return extract_grid(query, resolution0=options.resolution, upsampling_steps=options.upsampling_steps, threshold=logit, lower=lower, upper=upper, batch_size=batch_size, guide=guide, on_level=on_level)
    settings = UpstreamMise(
        resolution0=options.resolution,
        upsampling_steps=options.upsampling_steps,
        threshold=logit,
        lower=lower,
        upper=upper,
        batch_size=batch_size,
        # ONet's generator scales lattice indices in float32, ConvONet's in float64.
        float32_arithmetic=getattr(field.model.net, "method", None) == "onet",
    )
    # Upstream's mesh needs upstream's logits to the last bit: no folded fast paths.
    with upstream_arithmetic(field.model.net):
        # Upstream's octree asks again until no point is left: its rounds have no count known ahead.
        rounds = None if say is None else (lambda round_, n_points: say(f"MISE round {round_ + 1}"))
        return extract_grid_upstream(query, settings, anchors=anchors, on_level=rounds)


def extract_surface(
    field: Field,
    options: ResolvedOptions,
    *,
    anchors: np.ndarray | None = None,
    on_stage: StageFn | None = None,
    timings: dict[str, float] | None = None,
) -> ExtractedSurface:
    """The surface of ``field`` at ``options.threshold``, in the model's canonical frame.

    Args:
        field: the encoded input.
        options: threshold, MISE resolution and steps, decimation, refinement, rows per pass, seed.
        anchors: (m, 3) canonical points the surface passes near, whose coarse MISE cells are
            subdivided whatever their corners say.
        on_stage: hears the name of each stage as it starts.
        timings: receives seconds per stage.
    """
    timings = {} if timings is None else timings
    say = on_stage or (lambda stage: None)
    model = field.model
    upstream = options.mise_rule == "upstream"
    logit = upstream_logit(options.threshold) if upstream else probability_to_logit(options.threshold)
    members = field.rows_per_query

    stage = time.perf_counter()
    say("evaluating the occupancy field")
    grid = _field_grid(field, options, logit, anchors, on_stage)
    timings["field"] = time.perf_counter() - stage

    stage = time.perf_counter()
    say("marching cubes")
    vertices, faces = marching_cubes(grid, logit)
    timings["marching_cubes"] = time.perf_counter() - stage

    if options.simplify and len(faces):
        stage = time.perf_counter()
        say("simplifying")
        vertices, faces = simplify(vertices, faces, int(options.simplify))
        timings["simplify"] = time.perf_counter() - stage

    if options.refine and len(faces):
        stage = time.perf_counter()
        say("refining")
        vertices = refine_vertices(vertices, faces, field.decode, threshold=options.threshold, steps=options.refine, seed=options.seed, device=model.device)
        timings["refine"] = time.perf_counter() - stage
    # Lattice values MISE did not evaluate are interpolated between (or copied from) evaluated ones, so they set no new extreme.
    lowest, highest = (0.5 + 0.5 * math.tanh(float(v) / 2) for v in (grid.values.min(), grid.values.max()))  # sigmoid, safe for any logit
    return ExtractedSurface(vertices, faces, grid.n_evaluations * members, lowest, highest)
