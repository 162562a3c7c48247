"""Colours carried onto a mesh: from the nearest points of a coloured cloud, or from the photo it was made from.

* **Clouds** (:func:`colours_from_points`): each vertex takes the weighted median, channel by
  channel, of its ``k`` nearest input points' colours, weighted by ``1 / (d + s)`` with ``d`` the
  distance and ``s`` the cloud's median point spacing. The median, unlike a mean, ignores a stray
  point of another colour (noise, a neighbouring surface's point) as long as most neighbours agree,
  and it never invents a colour between two regions: a vertex on a red-blue border is red or blue.
* **Photos** (:func:`colours_from_photo`): the mesh is seen through a camera fitted to the photo
  (:func:`fit_photo_camera`): for a model whose mesh is in the camera's frame, the camera looking
  down -z; for one whose mesh is in the object's canonical frame (y up, the photo's viewpoint
  unknown), the orthographic view around the object, 0-50° above it, whose silhouette best
  matches the photo's. Vertices that camera sees (facing it, nothing in front, by Open3D ray
  casting) take the photo's colour there, sampled inside the object's outline so that the white
  background never bleeds in; the hidden ones take the inverse-distance mean of the nearest seen
  vertices, so the back of an object continues its visible sides' colours instead of going black.

Colours are (n, 3) uint8. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PhotoCamera", "colours_from_photo", "colours_from_points", "fit_photo_camera", "photo_mask", "with_colours"]

NEIGHBOURS = 8
"""Input points (clouds) or seen vertices (photos) each vertex takes its colour from."""

_GRID = 64
"""Side of the grid on which silhouettes are compared when fitting a photo's camera."""


def with_colours(mesh: Any, colours: np.ndarray | None) -> Any:
    """``mesh`` (a trimesh) with (n, 3) uint8 vertex colours set (opaque); None leaves it as it is."""
    import trimesh

    if colours is None:
        return mesh
    rgba = np.concatenate([np.asarray(colours, dtype=np.uint8), np.full((len(colours), 1), 255, np.uint8)], axis=1)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    return mesh


# ---------------------------------------------------------------------------------------
# Clouds
# ---------------------------------------------------------------------------------------
def _spacing(tree: Any, points: np.ndarray) -> float:
    """The median distance from a point to its nearest other point (on a seeded subset of 2,000)."""
    sample = points if len(points) <= 2000 else points[np.random.default_rng(0).choice(len(points), 2000, replace=False)]
    distances, _ = tree.query(sample, k=2)
    spacing = float(np.median(distances[:, 1]))
    return spacing if spacing > 0 else float(np.ptp(points, axis=0).max()) * 1e-3 or 1e-9


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row and channel, the weighted median of ``values`` (n, k, c) with ``weights`` (n, k)."""
    order = np.argsort(values, axis=1)
    sorted_values = np.take_along_axis(values, order, axis=1)
    sorted_weights = np.take_along_axis(np.broadcast_to(weights[..., None], values.shape), order, axis=1)
    cumulative = np.cumsum(sorted_weights, axis=1)
    half = cumulative[:, -1:, :] / 2
    index = np.argmax(cumulative >= half, axis=1)  # (n, c): the first value reaching half the weight
    return np.take_along_axis(sorted_values, index[:, None, :], axis=1)[:, 0, :]


def colours_from_points(vertices: np.ndarray, points: np.ndarray, colours: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Vertex colours from a coloured cloud: the distance-weighted median of the ``k`` nearest points' colours.

    Args:
        vertices: (n, 3) mesh vertices, in the cloud's frame.
        points: (m, 3) the cloud.
        colours: (m, 3) uint8 the points' colours.
        k: neighbours per vertex (fewer when the cloud has fewer points).

    Returns:
        (n, 3) uint8.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    colours = np.asarray(colours)[:, :3]
    vertices = np.asarray(vertices, dtype=np.float64)
    if len(vertices) == 0:
        return np.zeros((0, 3), np.uint8)
    tree = cKDTree(points)
    k = max(1, min(int(k), len(points)))
    distances, index = tree.query(vertices, k=k)
    distances, index = distances.reshape(len(vertices), k), index.reshape(len(vertices), k)
    weights = 1.0 / (distances + _spacing(tree, points))
    return _weighted_median(colours[index].astype(np.float64), weights).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Photos
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhotoCamera:
    """An orthographic camera on a photo: pixel column ``scale * p·right + offset[0]``, row ``offset[1] - scale * p·up``.

    ``toward`` points from the object to the camera; ``score`` is the silhouette IoU the fit reached.
    """

    right: np.ndarray
    up: np.ndarray
    toward: np.ndarray
    scale: float
    offset: np.ndarray
    score: float = 1.0

    def project(self, points: np.ndarray) -> np.ndarray:
        """(n, 2) (column, row) pixel positions of (n, 3) points."""
        return np.stack([self.scale * (points @ self.right) + self.offset[0], self.offset[1] - self.scale * (points @ self.up)], axis=1)


def photo_mask(image: np.ndarray, background: int = 245) -> np.ndarray:
    """(H, W) bool: the object in a photo composited on white (any channel darker than ``background``), holes filled."""
    from scipy import ndimage

    rgb = np.asarray(image)[..., :3]
    return ndimage.binary_fill_holes(rgb.min(axis=-1) < background)


def _axes(azimuth: float, elevation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, up, toward) of a view from azimuth / elevation in degrees around the y axis (azimuth 0: from +z)."""
    a, e = np.radians(azimuth), np.radians(elevation)
    toward = np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
    right = np.cross([0.0, 1.0, 0.0], toward)
    right /= np.linalg.norm(right)
    return right, np.cross(toward, right), toward


def _box(mask: np.ndarray) -> np.ndarray:
    """(column min, row min, column max, row max) of a mask's pixels, pixel edges included."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def _placed(samples: np.ndarray, axes: tuple[np.ndarray, np.ndarray, np.ndarray], box: np.ndarray, score: float = 0.0) -> PhotoCamera:
    """The camera along ``axes`` that puts the samples' projected box on ``box`` (centres matched, one scale)."""
    right, up, toward = axes
    u, v = samples @ right, samples @ up
    width, height = max(float(np.ptp(u)), 1e-12), max(float(np.ptp(v)), 1e-12)
    scale = float(np.sqrt((box[2] - box[0]) / width * (box[3] - box[1]) / height))
    centre = (box[:2] + box[2:]) / 2
    offset = np.array([centre[0] - scale * (u.min() + u.max()) / 2, centre[1] + scale * (v.min() + v.max()) / 2])
    return PhotoCamera(right, up, toward, scale, offset, score)


def _grow(maps: np.ndarray, grow: bool) -> np.ndarray:
    """(C, G, G) bool maps dilated (``grow``) or eroded by one pixel, 4-neighbourhood."""
    padded = np.pad(maps, ((0, 0), (1, 1), (1, 1)), constant_values=not grow)
    parts = (padded[:, 1:-1, 1:-1], padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:])
    out = parts[0].copy()
    for part in parts[1:]:
        out = out | part if grow else out & part
    return out


def _scores(samples: np.ndarray, views: list[tuple[float, float]], box: np.ndarray, target: np.ndarray, size: int) -> np.ndarray:
    """(C,) silhouette IoU of each view: the samples projected (dots on a ``_GRID`` grid, closed by one pixel) against the target grid."""
    cameras = [_placed(samples, _axes(azimuth, elevation), box) for azimuth, elevation in views]
    count = len(cameras)
    right = np.stack([c.right for c in cameras], axis=1)  # (3, C)
    up = np.stack([c.up for c in cameras], axis=1)
    scale = np.array([c.scale for c in cameras]) * (_GRID / size)
    offset = np.stack([c.offset for c in cameras]) * (_GRID / size)  # (C, 2)
    cols = np.floor(samples @ right * scale + offset[:, 0]).astype(np.int64)  # (N, C)
    rows = np.floor(offset[:, 1] - samples @ up * scale).astype(np.int64)
    inside = (cols >= 0) & (cols < _GRID) & (rows >= 0) & (rows < _GRID)
    which = np.broadcast_to(np.arange(count), cols.shape)
    drawn = np.zeros(count * _GRID * _GRID, bool)
    drawn[(which * _GRID * _GRID + rows * _GRID + cols)[inside]] = True
    drawn = drawn.reshape(count, _GRID, _GRID)
    drawn |= _grow(_grow(drawn, True), False)
    union = np.count_nonzero(drawn | target, axis=(1, 2))
    return np.count_nonzero(drawn & target, axis=(1, 2)) / np.maximum(union, 1)


def fit_photo_camera(mesh: Any, mask: np.ndarray, viewer_frame: bool = False) -> PhotoCamera:
    """The camera through which ``mesh`` best matches the photo's object ``mask`` ((H, W) bool, square).

    Args:
        mesh: a trimesh in the model's frame.
        mask: the object's pixels in the photo the network saw.
        viewer_frame: the mesh is in the camera's frame (x right, y up, z towards the viewer): only
            the framing is fitted. Otherwise the mesh is in the canonical object frame (y up) and
            the view around it is searched: azimuth every 10°, elevation 0-50°, then refined.
    """
    import trimesh

    size = mask.shape[0]
    samples = np.concatenate([np.asarray(mesh.vertices), trimesh.sample.sample_surface(mesh, 2000, seed=0)[0]])
    if len(samples) > 4000:
        samples = samples[np.random.default_rng(0).choice(len(samples), 4000, replace=False)]
    box = _box(mask)
    if viewer_frame:
        return _placed(samples, (np.eye(3)[0], np.eye(3)[1], np.eye(3)[2]), box)
    block = size // _GRID if size % _GRID == 0 else None
    target = mask.reshape(_GRID, block, _GRID, block).mean(axis=(1, 3)) >= 0.5 if block else _resized(mask)
    views = [(float(a), float(e)) for a in range(0, 360, 10) for e in range(0, 51, 10)]
    scores = _scores(samples, views, box, target, size)
    azimuth, elevation = views[int(np.argmax(scores))]
    finer = [(azimuth + da, float(np.clip(elevation + de, -10, 60))) for da in range(-6, 7, 3) for de in range(-6, 7, 3)]
    finer_scores = _scores(samples, finer, box, target, size)
    if finer_scores.max() > scores.max():
        (azimuth, elevation), best = finer[int(np.argmax(finer_scores))], float(finer_scores.max())
    else:
        best = float(scores.max())
    return _placed(samples, _axes(azimuth, elevation), box, score=best)


def _resized(mask: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((_GRID, _GRID), Image.Resampling.BILINEAR)) >= 128


def _seen(mesh: Any, camera: PhotoCamera) -> np.ndarray:
    """(n,) bool: the vertices facing the camera with nothing in front of them (Open3D ray casting)."""
    import open3d as o3d

    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    facing = np.asarray(mesh.vertex_normals) @ camera.toward > 0.05
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    step = 1e-3 * float(np.ptp(vertices, axis=0).max() or 1.0)
    origins = vertices + camera.toward * step
    rays = np.concatenate([origins, np.broadcast_to(camera.toward, origins.shape)], axis=1).astype(np.float32)
    clear = ~np.isfinite(scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy())
    return facing & clear


def colours_from_photo(mesh: Any, image: Any, camera: PhotoCamera | None = None, *, viewer_frame: bool = False) -> np.ndarray:
    """Vertex colours of ``mesh`` from the photo it was made from: the seen side from the photo, the rest filled from it.

    Args:
        mesh: a trimesh in the model's frame.
        image: the photo as the network saw it (a PIL image or (S, S, 3) uint8 array, on white).
        camera: the camera on the photo (default: :func:`fit_photo_camera`).
        viewer_frame: the mesh is in the camera's frame (see :func:`fit_photo_camera`).

    Returns:
        (n, 3) uint8.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)[..., :3]
    mask = photo_mask(rgb)
    n = len(mesh.vertices)
    if n == 0 or not mask.any():
        return np.full((n, 3), 160, np.uint8)
    camera = camera or fit_photo_camera(mesh, mask, viewer_frame)
    # Sample the object's own pixels, a pixel in from their edge (not the holes the outline closes,
    # such as the background between a chair's slats): there the photo's colour is the object's.
    solid = rgb.min(axis=-1) < 245
    interior = ndimage.binary_erosion(solid, iterations=1)
    interior = interior if interior.any() else (solid if solid.any() else mask)
    _, (near_rows, near_cols) = ndimage.distance_transform_edt(~interior, return_indices=True)
    pixels = np.floor(camera.project(np.asarray(mesh.vertices, dtype=np.float64))).astype(np.int64)
    cols, rows = np.clip(pixels[:, 0], 0, rgb.shape[1] - 1), np.clip(pixels[:, 1], 0, rgb.shape[0] - 1)
    sampled = rgb[near_rows[rows, cols], near_cols[rows, cols]].astype(np.float64)
    seen = _seen(mesh, camera)
    colours = np.empty((n, 3))
    colours[seen] = sampled[seen]
    hidden = ~seen
    if hidden.any():
        if seen.any():
            vertices = np.asarray(mesh.vertices, dtype=np.float64)
            k = min(NEIGHBOURS, int(seen.sum()))
            distances, index = cKDTree(vertices[seen]).query(vertices[hidden], k=k)
            distances, index = distances.reshape(-1, k), index.reshape(-1, k)
            weights = 1.0 / (distances + 1e-9)
            colours[hidden] = np.einsum("nk,nkc->nc", weights, sampled[seen][index]) / weights.sum(axis=1, keepdims=True)
        else:
            colours[hidden] = rgb[interior].mean(axis=0)
    return colours.round().clip(0, 255).astype(np.uint8)
