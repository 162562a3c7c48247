"""Partial point clouds from depth: what a depth-first image model's completion network sees.

A view's true depth (:func:`occrecon.data.prepare.render_views` with ``depth=True``)
is degraded the way measured or predicted depth is (:func:`degrade_depth`: noise
along the rays growing with distance, pixels lost at depth discontinuities, holes)
and unprojected through the view's pinhole camera (:mod:`occrecon.camera`) into
the visible surface, a partial cloud. The cloud is placed in the viewer-centred
output frame (x right, y up, z towards the viewer; the *visible* points' bounding
box centred, longest side 1), since at test time the full shape's box is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DepthDegradation:
    """How true depth is spoilt (defaults: a good RGB-D sensor, or a decent monocular estimate).

    Attributes:
        noise: Gaussian depth noise, std as a fraction of the depth (0.005: 0.5% of the
            distance), applied along each pixel's ray.
        edge_jump: a depth discontinuity is a jump between 4-neighbouring pixels larger
            than this fraction of the nearer depth, or the object's silhouette.
        edge_px: rings of pixels dropped at a discontinuity: 1 drops the pixels on
            either side of it, 2 their neighbours too (square neighbourhoods), 0 none.
        edge_extra_px: the next this many rings are dropped with probability ``edge_extra_p``.
        edge_extra_p: that probability.
        holes: the number of holes is drawn uniformly from ``holes[0]..holes[1]``.
        hole_radius: hole radii, uniform, as a fraction of the image side.
        dropout: share of the remaining pixels dropped independently.
    """

    noise: float = 0.005
    edge_jump: float = 0.03
    edge_px: int = 1
    edge_extra_px: int = 1
    edge_extra_p: float = 0.5
    holes: tuple[int, int] = (0, 4)
    hole_radius: tuple[float, float] = (0.01, 0.04)
    dropout: float = 0.01


CLEAN = DepthDegradation(noise=0.0, edge_px=0, edge_extra_px=0, edge_extra_p=0.0, holes=(0, 0), dropout=0.0)
"""No degradation: the true depth as rendered."""


def discontinuities(depth: np.ndarray, jump: float) -> np.ndarray:
    """(H, W) bool: valid pixels next to a depth jump above ``jump`` x the nearer depth, or next to background."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    d = np.where(valid, depth, 0.0)
    padded = np.pad(d, 1)
    vpad = np.pad(valid, 1)
    out = np.zeros_like(valid)
    h, w = d.shape
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nd = padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        nv = vpad[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        near = np.minimum(d, np.where(nv, nd, np.inf))
        out |= valid & (~nv | (np.abs(d - nd) > jump * near))
    return out


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.copy()
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, np.ones((2 * radius + 1, 2 * radius + 1), bool))


def degrade_depth(depth: np.ndarray, rng: np.random.Generator, spec: DepthDegradation = DepthDegradation()) -> np.ndarray:
    """A degraded copy of a depth map (0 = no reading), as float32.

    Steps, in order (each drawing from ``rng`` the same amount whatever the earlier
    steps removed, so one seed gives one degradation): Gaussian noise of std
    ``spec.noise x depth`` along each ray; ``spec.edge_px`` rings of pixels at every
    depth discontinuity of the *true* depth (and at the silhouette) dropped, the
    next ``spec.edge_extra_px`` rings with probability ``spec.edge_extra_p``; round holes centred on random pixels; and
    independent dropout. Unproject the result with :func:`occrecon.camera.unproject`.
    """
    depth = np.asarray(depth, dtype=np.float64)
    h, w = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    noisy = depth * (1.0 + spec.noise * rng.standard_normal(depth.shape))
    keep = valid & (noisy > 0)
    edges = discontinuities(depth, spec.edge_jump)
    if spec.edge_px > 0:
        keep &= ~_dilate(edges, spec.edge_px - 1)
    outer = _dilate(edges, spec.edge_px - 1 + spec.edge_extra_px) if spec.edge_extra_px > 0 else np.zeros_like(keep)
    keep &= ~(outer & (rng.random(depth.shape) < spec.edge_extra_p))
    n_holes = int(rng.integers(spec.holes[0], spec.holes[1] + 1))
    centres = rng.random((n_holes, 2)) * [h, w]
    radii = rng.uniform(*spec.hole_radius, n_holes) * max(h, w)
    if n_holes:
        rows, cols = np.nonzero(valid)
        if len(rows):
            # Holes sit on the object: each centre is moved to the object pixel its uniform draw picks.
            pick = np.minimum((centres[:, 0] / h * len(rows)).astype(np.int64), len(rows) - 1)
            centres = np.stack([rows[pick] + 0.5, cols[pick] + 0.5], 1)
        rr, cc = np.mgrid[0:h, 0:w] + 0.5
        for (r0, c0), rad in zip(centres, radii):
            keep &= (rr - r0) ** 2 + (cc - c0) ** 2 > rad**2
    keep &= rng.random(depth.shape) >= spec.dropout
    return np.where(keep, noisy, 0.0).astype(np.float32)


# --------------------------------------------------------------------------------------
# Training items for a completion network fine-tuned on partial clouds
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartialSpec:
    """Ranges of one partial-cloud training item (see :func:`partial_item`).

    Attributes:
        image_size: side of the depth map in pixels (the image model's 224).
        fov_deg: horizontal field of view, uniform in this range (photos: about 25-55°).
        elevation_deg: camera elevation, uniform in this range (azimuth: any).
        fill: the object's 2-D box side over the image side, uniform in this range.
        noise: depth noise (fraction of the distance), uniform in this range.
        degradation: every other degradation setting (its ``noise`` is replaced).
        n_points: input points per item (drawn without replacement from the visible
            points when there are enough, else with replacement).
        n_uniform: uniform query points in the output frame's ``[-box, box]^3``.
        n_near: query points near the full surface (surface samples plus N(0, 0.01)
            or N(0, 0.04), alternately, clipped to the box), in the output frame.
        box: half side of the uniform query box (upstream's padded box: 0.55).
    """

    image_size: int = 224
    fov_deg: tuple[float, float] = (25.0, 55.0)
    elevation_deg: tuple[float, float] = (0.0, 50.0)
    fill: tuple[float, float] = (0.5, 0.8)
    noise: tuple[float, float] = (0.0, 0.01)
    degradation: DepthDegradation = DepthDegradation()
    n_points: int = 3000
    n_uniform: int = 2048
    n_near: int = 2048
    box: float = 0.55


def partial_spec_from_dict(data: dict) -> PartialSpec:
    """The :class:`PartialSpec` a manifest records (JSON: lists for tuples, a dict for the degradation)."""
    import dataclasses

    data = dict(data)
    deg = data.pop("degradation", None)
    tuples = {f.name for f in dataclasses.fields(PartialSpec) if isinstance(getattr(PartialSpec(), f.name), tuple)}
    values = {k: tuple(v) if k in tuples else v for k, v in data.items()}
    if deg is not None:
        deg = dict(deg)
        deg.update({k: tuple(deg[k]) for k in ("holes", "hole_radius") if k in deg})
        values["degradation"] = DepthDegradation(**deg)
    return PartialSpec(**values)


def partial_spec_to_dict(spec: PartialSpec) -> dict:
    """``spec`` as plain JSON types (the inverse of :func:`partial_spec_from_dict`)."""
    import dataclasses

    return json_types(dataclasses.asdict(spec))


def json_types(value):
    if isinstance(value, dict):
        return {k: json_types(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_types(v) for v in value]
    return value


PARTIAL_VERSION = "2"
"""Version of :func:`partial_item`'s output; a cache records it so that a change is not mixed with old shards."""


def partial_item(shape, rng: np.random.Generator, spec: PartialSpec = PartialSpec(), lattice=None) -> dict[str, np.ndarray]:
    """One training item for completion from a partial cloud: a view's degraded depth, unprojected, with the full shape's occupancy.

    The view is drawn like the image model's renders (random azimuth; elevation, field
    of view and framing from ``spec``; :func:`occrecon.data.prepare.render_views` with
    ``depth=True``, at the drawn field of view), its true depth degraded
    (:func:`degrade_depth`, noise drawn from ``spec.noise``) and unprojected through its
    camera. Everything is returned in the **viewer-centred output frame** of the visible
    points (:class:`occrecon.camera.ViewerFrame.of_points`: viewer axes, x right, y up,
    z towards the viewer; the visible cloud's bounding box centred, longest side 1), the
    frame a test-time photo gives, where the hidden back may reach beyond the box.
    Occupancy labels are the *full* shape's, exact (its SDF sign at the query points
    mapped back into the canonical frame, at the stored float32 precision), at uniform
    points of the frame's box and near the full surface, so the network learns to
    complete what the view hides.

    Args:
        shape: a canonical-frame shape (``occrecon.data.shapes.random_shape``).
        rng: the only source of randomness: one generator gives one item.
        spec: ranges and sizes.
        lattice: the shape's :class:`occrecon.data.prepare.Lattice` (surface mesh), if
            computed already; else taken from ``shape.lattice`` or computed.

    Returns:
        ``inputs`` (n_points, 3) float32 partial cloud; ``points`` (n_uniform + n_near, 3)
        float32 queries (uniform first) and ``occ`` (n_uniform + n_near,) bool;
        ``camera_K`` (3, 3) float32 intrinsics of the ``image_size`` depth map;
        ``camera_Rt`` (3, 4) float32 canonical-to-camera (OpenCV axes);
        ``frame_centre`` (3,) float32 and ``frame_scale`` () float32 of the output frame
        (``output = (opencv_to_viewer(p_camera) - centre) / scale``); ``mask`` (S, S) bool
        silhouette (for carving); ``fov_deg``, ``noise`` () float32 the drawn settings;
        ``n_visible`` () int64 visible points before subsampling; ``image`` (S, S, 3) uint8
        the shaded render itself (antialiased, on white, the image model's input) and
        ``depth`` (S, S) float16 its true depth (0: background), targets for a network
        that predicts the visible surface from the image.

    Raises:
        ValueError: the view leaves fewer than 16 points (never for the generator's
            shapes at the default framing).
    """
    from occrecon import camera as cam
    from occrecon.data.prepare import RenderStyle, canonical_lattice, occupancy, render_views, sample_surface

    if lattice is None:
        lattice = getattr(shape, "lattice", None) or canonical_lattice(shape)
    fov = float(rng.uniform(*spec.fov_deg))
    noise = float(rng.uniform(*spec.noise))
    style = RenderStyle(elevation_deg=spec.elevation_deg, fov_deg=fov, fill=spec.fill, supersample=2)
    view = render_views(lattice.mesh, rng, 1, spec.image_size, style=style, depth=True)
    K, Rt, mask = view["camera_K"][0], view["camera_Rt"][0], view["mask"][0]
    camera = cam.Camera.from_matrix(K, spec.image_size)
    degraded = degrade_depth(view["depth"][0], rng, DepthDegradation(**{**_fields(spec.degradation), "noise": noise}))
    cloud = cam.unproject(degraded, None, camera)
    if len(cloud) < 16:
        raise ValueError(f"the view leaves {len(cloud)} points")
    frame = cam.ViewerFrame.of_points(cloud)
    pick = rng.choice(len(cloud), spec.n_points, replace=len(cloud) < spec.n_points)
    inputs = frame.from_camera(cloud[pick]).astype(np.float32)
    # Queries in the output frame, labelled by the full shape.
    A, b = frame.world_to_output(Rt)
    uniform = rng.uniform(-spec.box, spec.box, (spec.n_uniform, 3))
    surface, _ = sample_surface(lattice.mesh, spec.n_near, rng)
    sigma = np.where(np.arange(spec.n_near) % 2 == 0, 0.01, 0.04)[:, None]
    near = np.clip(surface.astype(np.float64) @ A.T + b + rng.normal(size=(spec.n_near, 3)) * sigma, -spec.box, spec.box)
    points = np.concatenate([uniform, near]).astype(np.float32)
    world = (points.astype(np.float64) - b) @ np.linalg.inv(A).T
    return {
        "inputs": inputs,
        "points": points,
        "occ": occupancy(lattice.shape, world),
        "camera_K": K.astype(np.float32),
        "camera_Rt": Rt.astype(np.float32),
        "frame_centre": np.asarray(frame.centre, dtype=np.float32),
        "frame_scale": np.float32(frame.scale),
        "mask": mask,
        "fov_deg": np.float32(fov),
        "noise": np.float32(noise),
        "n_visible": np.int64(len(cloud)),
        "image": view["images"][0],
        "depth": view["depth"][0].astype(np.float16),
    }


def _fields(obj) -> dict:
    import dataclasses

    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def generate_partial_item(seed: int, i: int, view: int = 0, families: list[str] | None = None, spec: PartialSpec = PartialSpec()) -> dict[str, np.ndarray]:
    """View ``view`` of shape ``i`` of the generated dataset ``seed``, as a partial-cloud item.

    The shape is the one :func:`occrecon.data.cache.generate_item` draws for the same
    ``seed`` and ``i`` (``random_shape(default_rng([seed, i]))``), so the points and
    image datasets' train/validation split carries over; the view and its degradation
    come from ``default_rng([seed, i, PARTIAL_STREAM, view])`` alone.
    """
    return generate_partial_items(seed, i, [view], families, spec)[0]


def generate_partial_items(seed: int, i: int, views: list[int], families: list[str] | None = None, spec: PartialSpec = PartialSpec()) -> list[dict[str, np.ndarray]]:
    """:func:`generate_partial_item` for several views of one shape, drawing the shape once."""
    from occrecon.data.shapes import random_shape

    shape, name = random_shape(np.random.default_rng([seed, i]), families)
    items = []
    for view in views:
        out = partial_item(shape, np.random.default_rng([seed, i, PARTIAL_STREAM, view]), spec)
        out["index"] = np.int64(i)
        out["view"] = np.int64(view)
        out["family"] = np.array(name)
        items.append(out)
    return items


PARTIAL_STREAM = 0x9A27
"""Third entry of a partial item's seed: keeps its stream apart from the shape's own."""
