"""Per-shape training data, prepared the way upstream prepares ShapeNet.

For one shape in the canonical frame (bbox centred, longest side 1, y up) this
module produces: occupancy samples in the padded box ``[-0.55, 0.55]^3``
(uniform, as upstream's ``points.npz``, plus near-surface samples), surface points
with normals (``pointcloud.npz``), a solid 32^3 voxel grid (Choy's binvox style,
ONet cell-centre convention) and shaded renders on white in the style of Choy et
al.'s ShapeNet renderings, with the camera of each view.

Occupancy labels come from the shape's SDF sign, evaluated at the *stored*
(float16-rounded) coordinates, so they are exact for the points as saved. The
surface mesh (marching cubes on the SDF lattice, outside-positive border) is
closed by construction; it is used for surface samples and rendering only.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from typing import Any

import mcubes
import numpy as np
import trimesh

from occrecon.data.sdf import Shape, Transform, dot3, mat3, sdf_grid

BOX_HALF = 0.55  # half side of upstream's padded query box (unit cube + padding 0.1)


# --------------------------------------------------------------------------------------
# Surface
# --------------------------------------------------------------------------------------
MESH_CELLS_PER_UNIT = 128  # marching-cubes lattice spacing 1/128, aligned with the 32^3 voxel cells
MESH_MARGIN_CELLS = 8  # lattice covers [-0.5625, 0.5625]^3 (the padded box plus a margin)


def sdf_lattice(shape: Shape, cells_per_unit: int = MESH_CELLS_PER_UNIT, margin: int = MESH_MARGIN_CELLS) -> tuple[np.ndarray, float]:
    """SDF on the lattice ``-0.5 + (i - margin) / cells_per_unit``, i = 0..cells_per_unit + 2 margin.

    The lattice is aligned with the unit cube, so every voxel of a ``32^3`` grid is
    exactly ``cells_per_unit / 32`` lattice cells wide (see :func:`voxels_from_lattice`).

    Returns:
        (N+1, N+1, N+1) float32 signed distances with N = cells_per_unit + 2 margin, and
        the coordinate of lattice index 0.
    """
    n = cells_per_unit + 2 * margin
    lo = -0.5 - margin / cells_per_unit
    grid = sdf_grid(shape, (lo,) * 3, (lo + n / cells_per_unit,) * 3, n)
    return grid, lo


def mesh_from_lattice(grid: np.ndarray, lo: float, spacing: float) -> trimesh.Trimesh:
    """Closed, outward-oriented marching-cubes surface of an SDF lattice (negative inside).

    Args:
        grid: (N+1, N+1, N+1) signed distances, index [x, y, z].
        lo: coordinate of index 0 on every axis.
        spacing: lattice spacing.

    Returns:
        trimesh with (V, 3) float64 vertices and (F, 3) int64 faces, not processed further
        (processing could merge vertices and break the closed-manifold structure).
    """
    grid = grid.copy()
    # Exact zeros at lattice points make marching cubes emit coincident vertices and
    # zero-area faces; nudging them outward keeps the mesh a clean 2-manifold.
    grid[grid == 0] = 1e-7
    # The lattice border must be outside, so that the surface closes.
    for axis in range(3):
        sl = [slice(None)] * 3
        sl[axis] = [0, -1]
        grid[tuple(sl)] = np.maximum(grid[tuple(sl)], 1e-3)
    # Marching cubes visits every cell; crop to the inside's index range (plus one
    # outside layer) since flat objects leave most of the cube empty.
    inside = grid < 0
    if not inside.any():
        raise ValueError("shape has no surface inside the box")
    start = np.zeros(3, dtype=int)
    crop = []
    for axis in range(3):
        other = tuple(i for i in range(3) if i != axis)
        idx = np.flatnonzero(inside.any(axis=other))
        a, b = max(int(idx[0]) - 1, 0), min(int(idx[-1]) + 2, grid.shape[axis])
        start[axis] = a
        crop.append(slice(a, b))
    verts, faces = mcubes.marching_cubes(-grid[tuple(crop)], 0.0)
    if len(faces) == 0:
        raise ValueError("shape has no surface inside the box")
    return trimesh.Trimesh((verts + start) * spacing + lo, faces.astype(np.int64), process=False)


def extract_mesh(shape: Shape, cells_per_unit: int = MESH_CELLS_PER_UNIT) -> trimesh.Trimesh:
    """Closed surface of a canonical-frame shape (lattice spacing ``1 / cells_per_unit``)."""
    grid, lo = sdf_lattice(shape, cells_per_unit)
    return mesh_from_lattice(grid, lo, 1.0 / cells_per_unit)


@dataclass(frozen=True, eq=False)
class Lattice:
    """A shape's SDF lattice and surface in the canonical frame (see :func:`canonical_lattice`).

    Attributes:
        shape: the (possibly re-normalised) shape the lattice belongs to.
        grid: (N+1, N+1, N+1) float32 signed distances, index [x, y, z].
        lo: coordinate of lattice index 0.
        cells: lattice cells per unit length.
        mesh: closed marching-cubes surface.
    """

    shape: Shape
    grid: np.ndarray
    lo: float
    cells: int
    mesh: trimesh.Trimesh


def canonical_lattice(shape: Shape, cells: int = MESH_CELLS_PER_UNIT, tol: float | None = 5e-3) -> Lattice:
    """Evaluate the lattice and surface; optionally snap the shape to the canonical frame.

    With ``tol`` set, the bounding box is measured on the extracted surface and, if the
    longest side is off 1 or the centre off 0 by more than ``tol``, the shape is rescaled
    and recentred (a similarity, so occupancy stays exact) and the lattice recomputed.
    Coarse canonicalisations miss thin extremities (wing tips), which this catches.
    """
    grid, lo = sdf_lattice(shape, cells)
    mesh = mesh_from_lattice(grid, lo, 1.0 / cells)
    if tol is not None:
        bmin, bmax = mesh.bounds
        ext = float(np.max(bmax - bmin))
        centre = (bmin + bmax) / 2
        if abs(ext - 1) > tol or np.abs(centre).max() > tol:
            shape = Transform(shape, translation=-centre / ext, scale=np.full(3, 1.0 / ext))
            grid, lo = sdf_lattice(shape, cells)
            mesh = mesh_from_lattice(grid, lo, 1.0 / cells)
    return Lattice(shape, grid, lo, cells, mesh)


def voxels_from_lattice(
    grid: np.ndarray, res: int = 32, cells_per_unit: int = MESH_CELLS_PER_UNIT, margin: int = MESH_MARGIN_CELLS
) -> np.ndarray:
    """Solid voxels from an aligned SDF lattice (see :func:`voxelize` for the rule).

    Voxel i spans lattice indices ``margin + k i .. margin + k (i + 1)`` (k = cells_per_unit / res);
    it is occupied if any of those ``(k+1)^3`` lattice points is inside.
    """
    k = cells_per_unit // res
    if k * res != cells_per_unit:
        raise ValueError("cells_per_unit must be a multiple of the voxel resolution")
    a = grid[margin : margin + cells_per_unit + 1, margin : margin + cells_per_unit + 1, margin : margin + cells_per_unit + 1] < 0
    for axis in range(3):
        # Window of k+1 points with stride k: the k points of the block plus the next block's first.
        a = np.moveaxis(a, axis, 0)
        blocks = a[:-1].reshape(res, k, *a.shape[1:]).any(axis=1)
        a = np.moveaxis(blocks | a[k::k], 0, axis)
    return a


def sample_surface(mesh: trimesh.Trimesh, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted surface samples with face normals.

    Returns:
        points (n, 3) float32, normals (n, 3) float32 (unit, outward).
    """
    tri = mesh.vertices[mesh.faces]  # (F, 3, 3)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(cross, axis=1)
    cdf = np.cumsum(area2)
    face = np.searchsorted(cdf, rng.uniform(0, cdf[-1], n), side="right")
    face = np.minimum(face, len(cdf) - 1)
    # Uniform barycentrics by the square-root trick.
    r1 = np.sqrt(rng.uniform(size=n))
    r2 = rng.uniform(size=n)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    pts = np.einsum("nk,nkj->nj", w, tri[face])
    normals = cross[face] / np.maximum(area2[face], 1e-30)[:, None]
    return pts.astype(np.float32), normals.astype(np.float32)


# --------------------------------------------------------------------------------------
# Occupancy and voxels
# --------------------------------------------------------------------------------------
def uniform_points(n: int, rng: np.random.Generator, half: float = BOX_HALF) -> np.ndarray:
    """``n`` uniform points in ``[-half, half]^3`` as float16 (n, 3), the stored precision."""
    return rng.uniform(-half, half, (n, 3)).astype(np.float16)


def near_surface_points(
    surface: np.ndarray, n: int, rng: np.random.Generator, sigmas: tuple[float, ...] = (0.01, 0.04)
) -> np.ndarray:
    """``n`` points jittered off random surface samples (equal shares per sigma), float16 (n, 3)."""
    idx = rng.integers(0, len(surface), n)
    sig = np.asarray(sigmas)[np.arange(n) % len(sigmas)]
    pts = surface[idx] + rng.normal(size=(n, 3)) * sig[:, None]
    return np.clip(pts, -BOX_HALF, BOX_HALF).astype(np.float16)


def occupancy(shape: Shape, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Exact occupancy (n,) bool at ``points`` (n, 3), evaluated at the given precision."""
    p = np.asarray(points, dtype=np.float64)
    out = np.empty(len(p), dtype=bool)
    for s in range(0, len(p), chunk):
        out[s : s + chunk] = shape.sdf(p[s : s + chunk]) < 0
    return out


def voxel_centres(res: int = 32) -> np.ndarray:
    """ONet voxel centres ``(res^3, 3)`` in [x, y, z] index order: ``-0.5 + (i + 0.5) / res``."""
    c = -0.5 + (np.arange(res) + 0.5) / res
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)


def voxelize(shape: Shape, res: int = 32, sub: int = 4) -> np.ndarray:
    """Solid voxels ``(res, res, res)`` bool, index ``[x, y, z]``, covering the unit cube.

    A cell is occupied when the shape overlaps it, decided on a ``(sub+1)^3`` lattice
    spanning the cell (corners included; spacing ``1 / (res * sub)``): occupied if the
    SDF is negative at any lattice point. That is Choy's binvox rule (surface cells
    plus filled interior) up to features thinner than the lattice spacing. Cells whose
    centre value exceeds the half-diagonal cannot touch the shape (the SDF is a
    distance bound) and are skipped.
    """
    centres = voxel_centres(res)
    d = shape.sdf(centres)
    occ = d < 0
    h = 0.5 / res
    amb = np.flatnonzero(~occ & (d <= h * np.sqrt(3) * 1.01))
    if len(amb):
        o = np.linspace(-h, h, sub + 1)
        off = np.stack(np.meshgrid(o, o, o, indexing="ij"), -1).reshape(-1, 3)
        pts = (centres[amb][:, None, :] + off[None]).reshape(-1, 3)
        occ[amb] = (shape.sdf(pts) < 0).reshape(len(amb), -1).any(axis=1)
    return occ.reshape(res, res, res)


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderStyle:
    """Ranges for the randomised camera and appearance (defaults match Choy's renders)."""

    elevation_deg: tuple[float, float] = (20.0, 35.0)
    fov_deg: float = 40.0
    fill: tuple[float, float] = (0.5, 0.8)  # longest side of the object's 2D box / image side
    supersample: int = 2


def look_at(azimuth: float, elevation: float, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera rotation (3, 3) and translation (3,) of a camera looking at the origin.

    OpenCV convention (x right, y down, z forward). ``azimuth = 0`` looks from +z
    (the objects' front), angles in radians, y is up.
    """
    c = distance * np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
    f = -c / np.linalg.norm(c)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    rot = np.stack([r, d, f])
    return rot, -rot @ c


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """An sRGB base colour in [0, 1]: greys, woods, whites/blacks or saturated paints."""
    kind = rng.choice(["grey", "wood", "paint", "pale", "dark"], p=[0.3, 0.2, 0.3, 0.1, 0.1])
    if kind == "grey":
        return np.full(3, rng.uniform(0.35, 0.85)) + rng.uniform(-0.03, 0.03, 3)
    if kind == "wood":
        return np.array([0.55, 0.35, 0.2]) * rng.uniform(0.6, 1.4) + rng.uniform(-0.05, 0.05, 3)
    if kind == "pale":
        return np.array([0.9, 0.85, 0.75]) + rng.uniform(-0.1, 0.08, 3)
    if kind == "dark":
        return np.full(3, rng.uniform(0.08, 0.25)) + rng.uniform(-0.03, 0.03, 3)
    hue = rng.uniform()
    sat, val = rng.uniform(0.4, 0.9), rng.uniform(0.4, 0.95)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    return val - val * sat * np.clip(np.minimum(k, 4 - k), 0, 1)


def _project(points: np.ndarray, rot: np.ndarray, trans: np.ndarray, f: float) -> np.ndarray:
    cam = mat3(points, rot.T) + trans
    return f * cam[:, :2] / cam[:, 2:3]


def render_views(
    mesh: trimesh.Trimesh,
    rng: np.random.Generator,
    n_views: int,
    image_size: int = 137,
    face_tags: "callable | None" = None,
    style: RenderStyle = RenderStyle(),
    depth: bool = False,
) -> dict[str, np.ndarray]:
    """Shaded renders of ``mesh`` on white from random viewpoints (open3d ray casting).

    Each view: random azimuth, elevation in ``style.elevation_deg``, pinhole camera
    with ``style.fov_deg`` whose distance makes the object's 2D box fill a random
    fraction of the frame, principal point shifted so that box is centred. Shading:
    ambient + two Lambert lights (random key direction from the camera side) + a
    little Blinn-Phong specular, per-part base colours (``face_tags``), supersampled.

    Args:
        mesh: closed mesh in the canonical frame.
        rng: random generator.
        n_views: number of views V.
        image_size: output side S in pixels.
        face_tags: optional ``f(face_ids (k,)) -> tags (k,)`` giving each hit face's part tag.
        style: camera/appearance ranges.
        depth: also return each view's true depth and mask. They come from one more ray
            per pixel, through its centre, which draws nothing from ``rng``: the other
            outputs, and everything drawn from ``rng`` afterwards, are the same with or
            without them.

    Returns:
        ``images`` (V, S, S, 3) uint8; ``camera_K`` (V, 3, 3) float32 intrinsics in pixels
        (pixel i spans [i, i+1)); ``camera_Rt`` (V, 3, 4) float32 canonical-to-camera
        (OpenCV axes); ``camera_view`` (V, 3) float32 azimuth deg, elevation deg, distance.
        With ``depth``: ``depth`` (V, S, S) float32, the z (OpenCV camera frame, canonical
        units; not the distance along the ray) of the surface seen through each pixel
        centre, 0 where the centre ray misses (background: 0 rather than inf, as depth
        sensors and their files mark "no reading", and safe in arithmetic); ``mask``
        (V, S, S) bool, the pixels whose centre ray hits (exactly ``depth > 0``). The mask
        is the geometric silhouette at pixel centres; the image's antialiased edge pixels
        may be partly covered without being in it. :func:`occrecon.camera.unproject`
        turns a view's depth into surface points.
    """
    import open3d as o3d  # here, not at the top: point/voxel-only data generates without it

    verts = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.uint32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts), o3d.core.Tensor(faces))
    S, ss = image_size, style.supersample
    f = 0.5 * S / np.tan(np.radians(style.fov_deg) / 2)
    # Appearance for the whole sample: up to three part colours (often all the same).
    palette = np.stack([_random_colour(rng) for _ in range(3)])
    if rng.random() < 0.4:
        palette[:] = palette[0]
    palette = np.clip(palette, 0, 1)
    vsub = verts if len(verts) <= 20000 else verts[rng.choice(len(verts), 20000, replace=False)]

    images = np.empty((n_views, S, S, 3), dtype=np.uint8)
    Ks = np.zeros((n_views, 3, 3), np.float32)
    Rts = np.zeros((n_views, 3, 4), np.float32)
    views = np.zeros((n_views, 3), np.float32)
    depths = np.zeros((n_views, S, S), np.float32) if depth else None
    pix = (np.arange(S * ss) + 0.5) / ss
    uu, vv = np.meshgrid(pix, pix)  # (S*ss, S*ss): uu = column, vv = row
    for k in range(n_views):
        az, el, dist, rot, trans, K, (u0, v0, u1, v1) = _place_camera(verts, vsub, f, S, style, rng)
        cx, cy = K[0, 2], K[1, 2]
        cand = np.flatnonzero(((uu >= u0) & (uu <= u1) & (vv >= v0) & (vv <= v1)).reshape(-1))
        dirs_cam = np.stack([(uu.reshape(-1)[cand] - cx) / f, (vv.reshape(-1)[cand] - cy) / f, np.ones(len(cand))], -1)
        dirs = mat3(dirs_cam, rot)  # camera -> world (rot is orthonormal)
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        origin = -rot.T @ trans
        rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], 1).astype(np.float32)
        rgb_c = _shade(scene.cast_rays(o3d.core.Tensor(rays)), dirs, rot, palette, face_tags, rng)
        rgb = np.ones((uu.size, 3))
        rgb[cand] = rgb_c
        img = rgb.reshape(S, ss, S, ss, 3).mean(axis=(1, 3))
        images[k] = np.round(img * 255).astype(np.uint8)
        Ks[k] = K
        Rts[k] = np.concatenate([rot, trans[:, None]], 1)
        views[k] = (np.degrees(az), np.degrees(el), dist)
        if depths is not None:
            depths[k] = _centre_depth(scene, rot, trans, K, S, (u0, v0, u1, v1))
    out = {"images": images, "camera_K": Ks, "camera_Rt": Rts, "camera_view": views}
    if depths is not None:
        out["depth"] = depths
        out["mask"] = depths > 0
    return out


def _place_camera(verts: np.ndarray, vsub: np.ndarray, f: float, S: int, style: RenderStyle, rng: np.random.Generator) -> tuple:
    """A random view of the object: (azimuth, elevation, distance, rotation, translation, K, 2D box).

    The distance makes the object's 2D box fill a random share of the frame, and the
    principal point is shifted so that box is centred. The box (u0, v0, u1, v1) is the
    object's projection plus a pixel: only rays inside it can hit.
    """
    az = rng.uniform(0, 2 * np.pi)
    el = np.radians(rng.uniform(*style.elevation_deg))
    target = rng.uniform(*style.fill)
    dist = 2.0
    # Extent scales ~1/distance under perspective; two fixed-point steps suffice.
    for _ in range(3):
        rot, trans = look_at(az, el, dist)
        uv = _project(vsub, rot, trans, f)
        ext = float(np.max(uv.max(0) - uv.min(0))) / S
        dist *= ext / target
    rot, trans = look_at(az, el, dist)
    uv = _project(verts, rot, trans, f)
    mid = (uv.max(0) + uv.min(0)) / 2
    cx, cy = S / 2 - mid[0], S / 2 - mid[1]
    K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
    u0, v0 = uv.min(0) + (cx, cy) - 1.0
    u1, v1 = uv.max(0) + (cx, cy) + 1.0
    return az, el, dist, rot, trans, K, (u0, v0, u1, v1)


def _shade(hit: dict, dirs: np.ndarray, rot: np.ndarray, palette: np.ndarray, face_tags: "callable | None", rng: np.random.Generator) -> np.ndarray:
    """(n, 3) colours of n rays: white where they miss; ambient + two Lambert lights + a little
    Blinn-Phong specular where they hit, each part in its palette colour. The lights are drawn
    from ``rng`` only when a ray hits (the draw order every cached dataset was made with)."""
    t_hit = hit["t_hit"].numpy()
    ok = np.isfinite(t_hit)
    rgb_c = np.ones((len(dirs), 3))
    if not ok.any():
        return rgb_c
    n = hit["primitive_normals"].numpy()[ok].astype(np.float64)
    d = dirs[ok]
    n *= np.where(np.einsum("ij,ij->i", n, d) > 0, -1.0, 1.0)[:, None]  # face the camera
    fid = hit["primitive_ids"].numpy()[ok].astype(np.int64)
    tags = np.zeros(len(fid), np.int64) if face_tags is None else np.clip(face_tags(fid), 0, 2)
    base = palette[tags]
    key_cam = np.array([rng.uniform(-1, 1), -rng.uniform(0.3, 1.2), -rng.uniform(0.3, 1.0)])
    key = rot.T @ (key_cam / np.linalg.norm(key_cam))
    fill_l = rot.T @ np.array([-key_cam[0], -0.2, -1.0]) / np.linalg.norm([key_cam[0], 0.2, 1.0])
    amb = rng.uniform(0.3, 0.5)
    kd = rng.uniform(0.5, 0.8)
    lam = np.clip(dot3(n, key), 0, None) * kd + np.clip(dot3(n, fill_l), 0, None) * 0.25
    half_v = key - d
    half_v /= np.linalg.norm(half_v, axis=1, keepdims=True)
    spec = rng.uniform(0.0, 0.25) * np.clip(np.einsum("ij,ij->i", n, half_v), 0, None) ** 30
    rgb_c[ok] = np.clip(base * (amb + lam)[:, None] + spec[:, None], 0, 1)
    return rgb_c


def _centre_depth(scene, rot: np.ndarray, trans: np.ndarray, K: np.ndarray, S: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """(S, S) float32 camera-frame z of the surface through each pixel centre, 0 where the ray misses.

    Only pixel centres inside ``box`` (u0, v0, u1, v1: the object's 2D box plus a pixel)
    are cast; the others cannot hit.
    """
    import open3d as o3d

    f, cx, cy = float(K[0, 0]), float(K[0, 2]), float(K[1, 2])
    u0, v0, u1, v1 = box
    centres = np.arange(S) + 0.5
    cols = np.flatnonzero((centres >= u0) & (centres <= u1))
    rows = np.flatnonzero((centres >= v0) & (centres <= v1))
    out = np.zeros((S, S), np.float32)
    if len(cols) == 0 or len(rows) == 0:
        return out
    uu, vv = np.meshgrid(centres[cols], centres[rows])
    dirs_cam = np.stack([(uu.reshape(-1) - cx) / f, (vv.reshape(-1) - cy) / f, np.ones(uu.size)], -1)
    norm = np.linalg.norm(dirs_cam, axis=1)
    dirs = mat3(dirs_cam / norm[:, None], rot)  # unit directions in the canonical frame
    origin = -rot.T @ trans
    rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], 1).astype(np.float32)
    t_hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)
    # A unit ray's parameter is the distance along it; z is that distance over the length of (x/z, y/z, 1).
    z = np.where(np.isfinite(t_hit), t_hit / norm, 0.0)
    out[np.ix_(rows, cols)] = z.reshape(len(rows), len(cols))
    return out


# --------------------------------------------------------------------------------------
# Everything for one shape
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeSampling:
    """How much training data one shape gets, and how it is rendered.

    Attributes:
        n_uniform: uniform occupancy samples in [-0.55, 0.55]^3 (upstream: 100k).
        n_near: near-surface occupancy samples (surface + N(0, 0.01) / N(0, 0.04)).
        n_surface: surface samples with normals (upstream: 100k).
        voxel_res: voxel grid side (ONet: 32).
        n_views: rendered views V.
        image_size: render side S (Choy: 137).
        mesh_cells: marching-cubes lattice cells per unit length (128 gives 144 cells over
            the padded box, aligned with the voxel cells).
        renormalize: measure the bounding box on the extracted mesh and, if it is off the
            canonical frame by more than ``renormalize_tol``, rescale/recentre the shape first.
        renormalize_tol: tolerance of that check.
        style: render ranges.
        depth: also store each view's ``depth`` and ``mask`` (see :func:`render_views`);
            every other array is the same with or without them.
    """

    n_uniform: int = 100_000
    n_near: int = 50_000
    n_surface: int = 100_000
    voxel_res: int = 32
    n_views: int = 4
    image_size: int = 137
    mesh_cells: int = MESH_CELLS_PER_UNIT
    renormalize: bool = True
    renormalize_tol: float = 5e-3
    style: RenderStyle = RenderStyle()
    depth: bool = False


def prepare_sample(
    shape: Shape,
    rng: np.random.Generator,
    sampling: ShapeSampling | None = None,
    *,
    mesh: trimesh.Trimesh | None = None,
    **changes: Any,
) -> dict[str, np.ndarray]:
    """All training data for one canonical-frame shape.

    Args:
        shape: shape in the canonical frame; its SDF sign defines occupancy.
        rng: random generator (the only source of randomness, so results are reproducible).
        sampling: sample counts, voxels and renders (default :class:`ShapeSampling`).
        mesh: surface to use instead of extracting one (user meshes; then ``shape`` only
            supplies occupancy and voxels).
        changes: fields of :class:`ShapeSampling` to change (``n_views=0``...).

    Returns:
        dict of numpy arrays:
        ``points`` (n_uniform, 3) float16, ``occupancies`` (ceil(n_uniform/8),) uint8 bit-packed;
        ``near_points`` (n_near, 3) float16, ``near_occupancies`` bit-packed uint8;
        ``surface_points``, ``surface_normals`` (n_surface, 3) float16;
        ``voxels`` (R, R, R) bool, [x, y, z], ONet cell centres -0.5 + (i+0.5)/R;
        ``images`` (V, S, S, 3) uint8 on white; ``camera_K`` (V, 3, 3), ``camera_Rt`` (V, 3, 4),
        ``camera_view`` (V, 3) float32 (see :func:`render_views`); with ``depth``, ``depth``
        (V, S, S) float32 (0: background) and ``mask`` (V, S, S) bool.
    """
    settings = dataclasses.replace(sampling or ShapeSampling(), **changes)
    n_uniform, n_near, n_surface, voxel_res = settings.n_uniform, settings.n_near, settings.n_surface, settings.voxel_res
    n_views, mesh_cells = settings.n_views, settings.mesh_cells
    vox = None
    if mesh is None:
        cached = getattr(shape, "lattice", None)
        if cached is not None and cached.cells == mesh_cells:
            lat = cached  # computed by canonicalize(); no need to evaluate the SDF again
        else:
            lat = canonical_lattice(shape, mesh_cells, settings.renormalize_tol if settings.renormalize else None)
        shape, surf_mesh = lat.shape, lat.mesh
        if mesh_cells % voxel_res == 0:
            vox = voxels_from_lattice(lat.grid, voxel_res, mesh_cells)
    else:
        surf_mesh = mesh
    surf, normals = sample_surface(surf_mesh, n_surface, rng)
    pts = uniform_points(n_uniform, rng)
    occ = occupancy(shape, pts)
    near = near_surface_points(surf, n_near, rng) if n_near > 0 else np.zeros((0, 3), np.float16)
    near_occ = occupancy(shape, near)
    if vox is None:
        vox = voxelize(shape, voxel_res)
    out = {
        "points": pts,
        "occupancies": np.packbits(occ),
        "near_points": near,
        "near_occupancies": np.packbits(near_occ),
        "surface_points": surf.astype(np.float16),
        "surface_normals": normals.astype(np.float16),
        "voxels": vox,
    }
    if n_views > 0:
        tagger = None
        if mesh is None:
            centroids = surf_mesh.vertices[surf_mesh.faces].mean(axis=1)

            def tagger(fid: np.ndarray) -> np.ndarray:
                # Tags only for the faces actually hit, once each.
                u, inv = np.unique(fid, return_inverse=True)
                return shape.sdf_tags(centroids[u])[1][inv]

        out.update(render_views(surf_mesh, rng, n_views, settings.image_size, tagger, settings.style, depth=settings.depth))
    return out


def unpack_occupancies(packed: np.ndarray, n: int) -> np.ndarray:
    """Inverse of ``np.packbits``: (n,) bool."""
    return np.unpackbits(packed, count=n).astype(bool)
