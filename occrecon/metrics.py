"""Reconstruction metrics of the ONet / ConvONet papers, with their units spelled out.

Definitions follow upstream ``eval_meshes.py`` (see ``docs``/README, "occrecon eval"):

- accuracy: mean distance from each predicted surface sample to its nearest ground-truth sample;
- completeness: the same from ground truth to prediction;
- Chamfer-L1 = (accuracy + completeness) / 2, Chamfer-L2 = (mean squared pred->GT + mean squared GT->pred) / 2;
- normal consistency: mean |dot| of the normals of nearest-neighbour pairs, averaged over both directions;
- F-score@tau = 2PR / (P + R), precision = share of pred->GT distances <= tau, recall = GT->pred;
- volumetric IoU on uniform points in the padded box [-0.55, 0.55]^3 of the ground truth's unit frame
  (enlarged to cover the prediction when it sticks out, instead of silently cutting it off).

By default both meshes are placed in the ground truth's unit frame (bounding-box centre at the
origin, longest side 1), so distances are in "unit-cube" units. The papers print Chamfer-L1 multiplied
by 10; that number is only ever exposed under the explicit name ``chamfer_l1_x10``.

Only numpy, scipy, trimesh and open3d are used here, so the training validation and the benchmarks
can import this module without the CLI dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from occrecon.errors import InputError

__all__ = [
    "DEFAULT_F_THRESHOLDS",
    "IOU_BOX_HALF_EXTENT",
    "UNIT_FRAME_LABEL",
    "STATUS_OK",
    "STATUS_EMPTY",
    "STATUS_DEGENERATE",
    "MeshMetrics",
    "sample_surface",
    "nearest_neighbors",
    "pointcloud_metrics",
    "worst_pointcloud_metrics",
    "is_closed",
    "inside_mask",
    "filled_solid",
    "filled_inside_mask",
    "sealed_inside_mask",
    "prediction_inside_mask",
    "OPEN_MESH_MODES",
    "exterior_depth",
    "buried_mask",
    "outer_surface_sample",
    "iou_from_occupancy",
    "volumetric_iou",
    "iou_skip_reason",
    "normalization_transform",
    "uniform_box_points",
    "evaluate_meshes",
    "threshold_key",
]

DEFAULT_F_THRESHOLDS: tuple[float, ...] = (0.01, 0.015, 0.02)
# Upstream's points.npz covers the unit cube plus 10% padding; IoU points are drawn from the same box.
IOU_BOX_HALF_EXTENT = 0.55
UNIT_FRAME_LABEL = "unit-cube (GT longest side = 1)"
# Upstream scores an empty prediction with the diagonal of the unit cube, the largest distance two
# points of a normalised object can have.
_WORST_UNIT_DISTANCE = math.sqrt(3.0)

#: How :func:`evaluate_meshes` takes the inside of a mesh that is not closed: ``fill`` seals it
#: (:func:`sealed_inside_mask`), ``skip`` leaves the IoU out.
OPEN_MESH_MODES: tuple[str, ...] = ("fill", "skip")

STATUS_OK = "ok"
STATUS_EMPTY = "empty prediction"
STATUS_DEGENERATE = "degenerate prediction"

# Independent random streams for the three sampling steps, so that the prediction and the ground truth
# never share samples (an identical file must not score better than a re-triangulated identical surface).
_STREAM_PRED, _STREAM_GT, _STREAM_IOU = 1, 2, 3


def threshold_key(name: str, tau: float) -> str:
    """Key of a thresholded metric in the flat dicts, e.g. ``threshold_key("f_score", 0.01) == "f_score@0.01"``."""
    return f"{name}@{tau:g}"


# --------------------------------------------------------------------------------------------------
# Sampling and nearest neighbours


def sample_surface(
    mesh: trimesh.Trimesh, n: int, seed: int | Sequence[int] | np.random.SeedSequence | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw points uniformly over the surface area of a triangle mesh.

    Args:
        mesh: triangle mesh; faces of zero area are never sampled.
        n: number of points.
        seed: anything ``np.random.default_rng`` accepts; the same seed gives the same points.

    Returns:
        points: (n, 3) float64 surface points.
        normals: (n, 3) float64 unit normals of the faces the points lie on (winding order decides the sign).
        Both are (0, 3) when the mesh has no faces or no area.

    Example:
        >>> pts, nrm = sample_surface(trimesh.creation.box(), 1000, seed=0)
        >>> pts.shape, bool(np.allclose(np.abs(pts).max(axis=1), 0.5))
        ((1000, 3), True)
    """
    if n < 0:
        raise ValueError(f"number of samples must be >= 0, got {n}")
    empty = np.zeros((0, 3)), np.zeros((0, 3))
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if n == 0 or len(faces) == 0:
        return empty
    triangles = vertices[faces]
    edge1 = triangles[:, 1] - triangles[:, 0]
    edge2 = triangles[:, 2] - triangles[:, 0]
    cross = np.cross(edge1, edge2)
    double_area = np.linalg.norm(cross, axis=1)
    cdf = np.cumsum(double_area)
    if not np.isfinite(cdf[-1]) or cdf[-1] <= 0.0:
        return empty

    rng = np.random.default_rng(seed)
    # side="right" skips zero-area faces: their cdf entry equals the previous one.
    face_index = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    np.minimum(face_index, len(faces) - 1, out=face_index)
    u, v = rng.random((2, n))
    # Folding the unit square onto the triangle keeps the distribution uniform.
    outside = u + v > 1.0
    u[outside], v[outside] = 1.0 - u[outside], 1.0 - v[outside]
    points = triangles[face_index, 0] + u[:, None] * edge1[face_index] + v[:, None] * edge2[face_index]
    normals = cross[face_index] / double_area[face_index, None]
    return points, normals


def nearest_neighbors(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean nearest neighbour in ``reference`` of every query point (KD-tree, all cores).

    Args:
        query: (n, 3) float points.
        reference: (m, 3) float points, m >= 1.

    Returns:
        distances: (n,) float64.
        indices: (n,) int64 rows of ``reference``.
    """
    query = np.asarray(query, dtype=np.float64).reshape(-1, 3)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    if len(reference) == 0:
        raise ValueError("nearest_neighbors needs at least one reference point")
    if len(query) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    # An unbalanced, non-compacted tree builds twice as fast and answers far-away queries (a prediction
    # offset from the ground truth) about twice as fast; near queries cost the same.
    tree = cKDTree(reference, balanced_tree=False, compact_nodes=False)
    distances, indices = tree.query(query, k=1, workers=-1)
    return np.asarray(distances, dtype=np.float64), np.asarray(indices, dtype=np.int64)


def _reference_nearest_neighbors(
    query: np.ndarray, reference: np.ndarray, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force twin of :func:`nearest_neighbors`, O(n*m); only for checking the KD-tree path in tests."""
    query = np.asarray(query, dtype=np.float64).reshape(-1, 3)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    distances = np.empty(len(query))
    indices = np.empty(len(query), dtype=np.int64)
    for start in range(0, len(query), chunk):
        block = query[start : start + chunk]
        d2 = ((block[:, None, :] - reference[None, :, :]) ** 2).sum(axis=-1)
        best = d2.argmin(axis=1)
        indices[start : start + chunk] = best
        distances[start : start + chunk] = np.sqrt(d2[np.arange(len(block)), best])
    return distances, indices


# --------------------------------------------------------------------------------------------------
# Point-cloud metrics


def _unit_rows(normals: np.ndarray) -> np.ndarray:
    normals = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    # Zero-length normals stay zero and so count as "perpendicular" rather than producing NaN.
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def worst_pointcloud_metrics(
    f_thresholds: Sequence[float] = DEFAULT_F_THRESHOLDS, worst_distance: float = _WORST_UNIT_DISTANCE
) -> dict[str, float]:
    """The scores an empty prediction gets, so that it is counted (as the worst case) instead of dropped.

    Distances are ``worst_distance`` (sqrt(3), the unit cube's diagonal, in the unit frame), Chamfer-L2 its
    square, normal consistency 0 (the worst value |dot| can take; upstream writes -1, which lies outside
    the metric's range and would pull means below what any real mesh can score), precision, recall and
    F-score 0.

    Returns:
        dict with the same keys as :func:`pointcloud_metrics`.
    """
    result = {
        "accuracy": worst_distance,
        "completeness": worst_distance,
        "chamfer_l1": worst_distance,
        "chamfer_l2": worst_distance**2,
        "normal_consistency": 0.0,
    }
    for tau in f_thresholds:
        result[threshold_key("f_score", tau)] = 0.0
        result[threshold_key("precision", tau)] = 0.0
        result[threshold_key("recall", tau)] = 0.0
    return result


def pointcloud_metrics(
    pred_points: np.ndarray,
    pred_normals: np.ndarray | None,
    gt_points: np.ndarray,
    gt_normals: np.ndarray | None,
    f_thresholds: Sequence[float] = DEFAULT_F_THRESHOLDS,
) -> dict[str, float | None]:
    """Accuracy, completeness, Chamfer-L1/L2, normal consistency and F-scores of two oriented point sets.

    All distances are in the units of the inputs; ``f_thresholds`` are in the same units.

    Args:
        pred_points: (n, 3) points sampled on the prediction.
        pred_normals: (n, 3) their normals, or None to skip normal consistency.
        gt_points: (m, 3) points sampled on the ground truth, m >= 1.
        gt_normals: (m, 3) their normals, or None.
        f_thresholds: distance thresholds tau of the F-scores.

    Returns:
        ``accuracy``, ``completeness``, ``chamfer_l1``, ``chamfer_l2``, ``normal_consistency`` (None without
        normals) and, per tau, ``f_score@tau``, ``precision@tau``, ``recall@tau`` (keys from
        :func:`threshold_key`). An empty prediction gives :func:`worst_pointcloud_metrics` (sqrt(3) distances).
    """
    pred_points = np.asarray(pred_points, dtype=np.float64).reshape(-1, 3)
    gt_points = np.asarray(gt_points, dtype=np.float64).reshape(-1, 3)
    if len(gt_points) == 0:
        raise ValueError("the ground-truth point set is empty")
    if len(pred_points) == 0:
        return dict(worst_pointcloud_metrics(f_thresholds))

    dist_pred_to_gt, idx_pred_to_gt = nearest_neighbors(pred_points, gt_points)
    dist_gt_to_pred, idx_gt_to_pred = nearest_neighbors(gt_points, pred_points)
    accuracy = float(dist_pred_to_gt.mean())
    completeness = float(dist_gt_to_pred.mean())
    result: dict[str, float | None] = {
        "accuracy": accuracy,
        "completeness": completeness,
        "chamfer_l1": 0.5 * (accuracy + completeness),
        "chamfer_l2": 0.5 * (float(np.mean(dist_pred_to_gt**2)) + float(np.mean(dist_gt_to_pred**2))),
        "normal_consistency": None,
    }
    if pred_normals is not None and gt_normals is not None:
        pred_n = _unit_rows(pred_normals)
        gt_n = _unit_rows(gt_normals)
        nc_acc = np.abs((pred_n * gt_n[idx_pred_to_gt]).sum(axis=1)).mean()
        nc_comp = np.abs((gt_n * pred_n[idx_gt_to_pred]).sum(axis=1)).mean()
        result["normal_consistency"] = float(0.5 * (nc_acc + nc_comp))
    for tau in f_thresholds:
        precision = float(np.mean(dist_pred_to_gt <= tau))
        recall = float(np.mean(dist_gt_to_pred <= tau))
        denominator = precision + recall
        result[threshold_key("f_score", tau)] = 2.0 * precision * recall / denominator if denominator > 0 else 0.0
        result[threshold_key("precision", tau)] = precision
        result[threshold_key("recall", tau)] = recall
    return result


# --------------------------------------------------------------------------------------------------
# Volumes


def _faces_and_vertices(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3), np.asarray(mesh.faces, dtype=np.int64).reshape(
        -1, 3
    )


def _row_groups(rows: np.ndarray) -> np.ndarray:
    """(n,) group id of each row of an (n, k) int array, equal rows sharing an id (sort-based, no hashing)."""
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    starts = np.empty(len(rows), dtype=bool)
    starts[:1] = True
    np.any(ordered[1:] != ordered[:-1], axis=1, out=starts[1:])
    groups = np.empty(len(rows), dtype=np.int64)
    groups[order] = np.cumsum(starts) - 1
    return groups


def is_closed(mesh: trimesh.Trimesh) -> bool:
    """True when every edge of the mesh is shared by exactly two faces (after merging coincident vertices).

    This is what ray-parity inside tests need. Unlike ``mesh.is_watertight`` it does not depend on whether
    the loader merged duplicated vertices (OBJ/STL files often store every triangle separately).
    """
    vertices, faces = _faces_and_vertices(mesh)
    if len(faces) == 0 or not np.isfinite(vertices).all():
        return False
    scale = float(np.ptp(vertices, axis=0).max()) if len(vertices) else 0.0
    if scale == 0.0:
        return False
    # Merge vertices on a grid far finer than any real feature but coarser than float noise.
    vertex_ids = _row_groups(np.round(vertices / (scale * 1e-9)).astype(np.int64))
    faces = vertex_ids[faces]
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    if len(faces) == 0:
        return False
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    # Ids are < number of vertices, so (a, b) packs into one int64 without collisions.
    _, counts = np.unique(edges[:, 0] * (int(vertex_ids.max()) + 1) + edges[:, 1], return_counts=True)
    return bool(np.all(counts == 2))


def _raycasting_scene(mesh: trimesh.Trimesh) -> Any:
    """An open3d ``RaycastingScene`` holding the mesh's triangles (inside tests and closest points)."""
    import open3d as o3d

    vertices, faces = _faces_and_vertices(mesh)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    return scene


def inside_mask(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Which points lie inside a closed mesh (open3d ray casting, majority of 3 rays).

    Args:
        mesh: closed triangle mesh; for an open mesh the answer is not meaningful.
        points: (n, 3) query points.

    Returns:
        (n,) bool, True inside. All False for a mesh without faces.
    """
    import open3d as o3d  # imported here: it is heavy and only the IoU needs it

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(mesh.faces) == 0 or len(points) == 0:
        return np.zeros(len(points), dtype=bool)
    scene = _raycasting_scene(mesh)
    # Three rays and a majority vote: a single ray that grazes an edge or vertex flips the parity.
    occupancy = scene.compute_occupancy(o3d.core.Tensor(points.astype(np.float32)), nsamples=3)
    return occupancy.numpy() > 0.5


def filled_solid(mesh: trimesh.Trimesh, *, low: float = -0.55, high: float = 0.55, resolution: int = 256) -> np.ndarray:
    """The solid a person would see: the voxels the surface passes through, with every cavity the exterior cannot reach filled.

    Real meshes are often not closed (missing faces, intersecting parts), which
    makes ray parity meaningless. Marking the voxels the surface passes through
    and filling the cavities seals holes up to about two voxels wide.

    Args:
        mesh: triangle mesh inside the box ``[low, high]³``.
        low, high: the box the voxel grid spans.
        resolution: voxels per axis (256 over the ±0.55 box: 4.3 mm cells).

    Returns:
        (resolution, resolution, resolution) bool, indexed by (x, y, z) cell.
    """
    from scipy.ndimage import binary_dilation, binary_erosion, binary_fill_holes

    grid = np.zeros((resolution,) * 3, dtype=bool)
    if len(mesh.faces) == 0:
        return grid
    cell = (high - low) / resolution
    # Enough samples that every voxel the surface crosses receives several.
    n_samples = int(min(2e7, max(1e5, 8 * float(mesh.area) / cell**2)))
    samples, _ = trimesh.sample.sample_surface(mesh, n_samples, seed=0)
    idx = np.clip(np.floor((samples - low) / cell).astype(np.int64), 0, resolution - 1)
    grid[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    # Surface voxels that sampling missed leave gaps the exterior leaks through:
    # close them with a one-voxel dilation, fill, then take the dilation back.
    shell = binary_dilation(grid, iterations=1)
    return binary_erosion(binary_fill_holes(shell), iterations=1) | grid


def _grid_values(grid: np.ndarray, points: np.ndarray, low: float, high: float, outside: Any) -> np.ndarray:
    """The value of the cell of ``grid`` (spanning ``[low, high]³``) each of (n, 3) ``points`` falls in; ``outside`` beyond the box."""
    resolution = grid.shape[0]
    query = np.floor((np.asarray(points, dtype=np.float64).reshape(-1, 3) - low) / ((high - low) / resolution)).astype(np.int64)
    inside = np.all((query >= 0) & (query < resolution), axis=1)
    result = np.full(len(query), outside, dtype=grid.dtype)
    q = query[inside]
    result[inside] = grid[q[:, 0], q[:, 1], q[:, 2]]
    return result


def filled_inside_mask(
    mesh: trimesh.Trimesh,
    points: np.ndarray,
    *,
    low: float = -0.55,
    high: float = 0.55,
    resolution: int = 256,
    solid: np.ndarray | None = None,
) -> np.ndarray:
    """Inside test that also works for open meshes: the inside of :func:`filled_solid`, to within float precision at its surface.

    The filled solid counts every voxel the surface passes through as inside,
    which thickens the solid by about half a voxel on every side (a perfect
    reconstruction of a closed mesh with walls 0.02 thick scored 0.86 IoU against
    it at 256³). So in the solid's cells within two cells of its outside, the
    side of the nearest face decides: the face's outward side is the one whose
    probe 1.5 cells away leaves the solid; faces with both probes outside it
    (parts thinner than 3 cells) keep the file's orientation, and faces with both
    probes inside (buried faces) leave the point inside.

    Args:
        mesh: triangle mesh inside the box ``[low, high]³``.
        points: (n, 3) query points.
        low, high, resolution: the voxel grid of :func:`filled_solid`.
        solid: that filled solid, if already computed (it must span ``[low, high]³``).

    Returns:
        (n,) bool, True inside.
    """
    from scipy.ndimage import binary_dilation, generate_binary_structure

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(mesh.faces) == 0 or len(points) == 0:
        return np.zeros(len(points), dtype=bool)
    if solid is None:
        solid = filled_solid(mesh, low=low, high=high, resolution=resolution)
    near_outside = binary_dilation(~solid, generate_binary_structure(3, 3), iterations=2)
    inside = _grid_values(solid, points, low, high, False)
    boundary = np.flatnonzero(inside & _grid_values(near_outside, points, low, high, True))
    if len(boundary) == 0:
        return inside
    nearest, normals = _closest_surface_points(mesh, points[boundary])
    probe = 1.5 * (high - low) / solid.shape[0]
    ahead = _grid_values(solid, nearest + probe * normals, low, high, False)
    behind = _grid_values(solid, nearest - probe * normals, low, high, False)
    outward = np.where((ahead & ~behind)[:, None], -normals, normals)
    beneath = np.einsum("ij,ij->i", points[boundary] - nearest, outward) < 0.0
    inside[boundary] = beneath | (ahead & behind)
    return inside


def _closest_surface_points(mesh: trimesh.Trimesh, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nearest point of ``mesh`` to each of (n, 3) ``points`` and the unit normal of its face (open3d)."""
    import open3d as o3d

    found = _raycasting_scene(mesh).compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))
    # Degenerate faces have no normal: a zero one leaves their points as the voxels say.
    normals = np.nan_to_num(found["primitive_normals"].numpy().astype(np.float64))
    return found["points"].numpy().astype(np.float64), normals


def sealed_inside_mask(
    mesh: trimesh.Trimesh,
    points: np.ndarray,
    *,
    low: float = -0.55,
    high: float = 0.55,
    resolution: int = 256,
    solid: np.ndarray | None = None,
) -> np.ndarray | None:
    """:func:`filled_inside_mask` of a mesh that is not closed, or None when sealing its holes encloses nothing.

    Filling seals holes up to about two cells wide. A mesh with wider holes, or one
    made of open sheets, leaves a "solid" no thicker than its own surface voxels;
    its inside is then undefined rather than a thin shell.

    Args:
        mesh, low, high, resolution, solid: as :func:`filled_inside_mask` takes them.
        points: (n, 3) query points, uniform in the box ``[low, high]³``: the share
            inside them estimates the enclosed volume.

    Returns:
        (n,) bool, True inside, or None.
    """
    inside = filled_inside_mask(mesh, points, low=low, high=high, resolution=resolution, solid=solid)
    # The surface voxels alone fill about area * cell of the box's volume; a real solid fills clearly more.
    shell_fraction = float(mesh.area) * ((high - low) / resolution) / (high - low) ** 3
    return inside if inside.mean() > 2.0 * shell_fraction else None


def exterior_depth(solid: np.ndarray) -> np.ndarray:
    """(r, r, r) float: each cell's distance, in cells, to the nearest cell outside ``solid`` (0 outside it)."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(solid)


def buried_mask(points: np.ndarray, depth: np.ndarray, *, max_depth: float = 2.5, low: float = -0.55, high: float = 0.55) -> np.ndarray:
    """True for (n, 3) ``points`` more than ``max_depth`` cells inside the solid of ``depth`` (:func:`exterior_depth`, spanning ``[low, high]³``).

    2.5 cells keeps the surface of thin walls and the roughness of voxelisation.
    """
    return _grid_values(depth, points, low, high, 0.0) > max_depth


def outer_surface_sample(
    mesh: trimesh.Trimesh, n: int, seed: int, depth: np.ndarray, *, max_depth: float = 2.5, low: float = -0.55, high: float = 0.55
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_surface` without the faces buried in the mesh's filled solid.

    Buried faces are the hidden parts of intersecting components, panels behind
    closed doors and the like. A benchmark whose inside is the filled solid must
    take its input points and reference surface from that solid's boundary too, as
    upstream samples both from watertight meshes; otherwise the input holds
    surfaces the ground truth calls solid material.

    Args:
        mesh: triangle mesh in the box ``[low, high]³``.
        n: number of points.
        seed: an int; the draw is ``sample_surface(mesh, n, seed)`` when no face is buried.
        depth: :func:`exterior_depth` of the mesh's :func:`filled_solid`.
        max_depth, low, high: as :func:`buried_mask` takes them.

    Returns:
        points (n, 3) and normals (n, 3); fewer only if almost the whole surface is buried.
    """
    kept_points, kept_normals, total = [], [], 0
    for attempt in range(8):
        points, normals = sample_surface(mesh, n if attempt == 0 else 2 * n, seed if attempt == 0 else [seed, attempt])
        keep = ~buried_mask(points, depth, max_depth=max_depth, low=low, high=high)
        kept_points.append(points[keep])
        kept_normals.append(normals[keep])
        total += int(keep.sum())
        if total >= n or len(points) == 0:
            break
    return np.concatenate(kept_points)[:n], np.concatenate(kept_normals)[:n]


def iou_from_occupancy(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Intersection over union of boolean occupancies (values >= 0.5 count as occupied for float input).

    Args:
        a: (..., n) occupancies.
        b: (..., n) occupancies, same shape.

    Returns:
        IoU over the last axis: a float for 1-D input, an array of shape (...) otherwise. Two empty sets
        count as identical (IoU 1), so that a batch mean stays finite.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"occupancy shapes differ: {a.shape} vs {b.shape}")
    a = a >= 0.5 if a.dtype != bool else a
    b = b >= 0.5 if b.dtype != bool else b
    intersection = np.logical_and(a, b).sum(axis=-1)
    union = np.logical_or(a, b).sum(axis=-1)
    iou = np.where(union > 0, intersection / np.maximum(union, 1), 1.0)
    return float(iou) if iou.ndim == 0 else iou


def iou_skip_reason(pred_mesh: trimesh.Trimesh, gt_mesh: trimesh.Trimesh) -> str | None:
    """Why a volumetric IoU of the two meshes would be meaningless, or None when both are closed."""
    reasons = []
    if not is_closed(gt_mesh):
        reasons.append("ground truth not closed")
    if len(pred_mesh.faces) > 0 and not is_closed(pred_mesh):
        reasons.append("prediction not closed")
    return f"{' and '.join(reasons)}: IoU skipped" if reasons else None


def volumetric_iou(pred_mesh: trimesh.Trimesh, gt_mesh: trimesh.Trimesh, points: np.ndarray) -> float:
    """Volumetric IoU of two closed meshes, estimated on query points.

    Args:
        pred_mesh: closed prediction (a mesh without faces has no volume, IoU 0).
        gt_mesh: closed ground truth.
        points: (n, 3) query points, normally :func:`uniform_box_points` in the ground truth's frame.

    Returns:
        |inside both| / |inside either| over the points.

    Raises:
        ValueError: when a mesh is not closed (inside/outside is undefined); see :func:`iou_skip_reason`.
    """
    reason = iou_skip_reason(pred_mesh, gt_mesh)
    if reason is not None:
        raise ValueError(reason)
    return float(iou_from_occupancy(inside_mask(pred_mesh, points), inside_mask(gt_mesh, points)))


def uniform_box_points(
    n: int,
    seed: int | Sequence[int] | np.random.SeedSequence | None = 0,
    low: float | np.ndarray = -IOU_BOX_HALF_EXTENT,
    high: float | np.ndarray = IOU_BOX_HALF_EXTENT,
) -> np.ndarray:
    """Uniform points in an axis-aligned box, by default the padded unit frame [-0.55, 0.55]^3.

    Args:
        n: number of points.
        seed: anything ``np.random.default_rng`` accepts.
        low: scalar or (3,) lower corner.
        high: scalar or (3,) upper corner.

    Returns:
        (n, 3) float64 points.
    """
    low = np.broadcast_to(np.asarray(low, dtype=np.float64), (3,))
    high = np.broadcast_to(np.asarray(high, dtype=np.float64), (3,))
    return np.random.default_rng(seed).uniform(low, high, size=(n, 3))


# --------------------------------------------------------------------------------------------------
# Mesh-level evaluation


def normalization_transform(gt_mesh: trimesh.Trimesh) -> tuple[np.ndarray, float]:
    """Centre and size of the ground truth's unit frame: ``unit = (x - center) / scale``.

    Args:
        gt_mesh: ground truth with at least one face.

    Returns:
        center: (3,) float64 centre of the bounding box of the vertices used by faces.
        scale: longest side of that bounding box (> 0).

    Raises:
        InputError: (without a path) when the mesh has no faces or no extent.
    """
    vertices, faces = _faces_and_vertices(gt_mesh)
    if len(faces) == 0:
        raise InputError(None, "ground truth mesh has no faces")
    # Unreferenced vertices (left over by some exporters) must not move the frame.
    used = vertices[np.unique(faces)]
    if not np.isfinite(used).all():
        raise InputError(None, "ground truth mesh has non-finite vertex coordinates")
    low, high = used.min(axis=0), used.max(axis=0)
    scale = float((high - low).max())
    if scale <= 0.0:
        raise InputError(None, "ground truth mesh has zero extent")
    return (low + high) / 2.0, scale


def _apply(mesh: trimesh.Trimesh, center: np.ndarray, scale: float) -> trimesh.Trimesh:
    vertices, faces = _faces_and_vertices(mesh)
    return trimesh.Trimesh((vertices - center) / scale, faces, process=False)


def _degeneracy(mesh: trimesh.Trimesh) -> tuple[str | None, str | None]:
    """(status, note) for a prediction that cannot be sampled; (None, None) when it can."""
    vertices, faces = _faces_and_vertices(mesh)
    if len(faces) == 0:
        if len(vertices) == 0:
            return STATUS_EMPTY, "prediction is empty: scored with the worst values"
        return STATUS_DEGENERATE, f"prediction has {len(vertices)} vertices but no faces: scored with the worst values"
    if not np.isfinite(vertices[np.unique(faces)]).all():
        return STATUS_DEGENERATE, "prediction has non-finite vertex coordinates: scored with the worst values"
    if float(trimesh.Trimesh(vertices, faces, process=False).area) <= 0.0:
        return STATUS_DEGENERATE, "prediction has zero surface area: scored with the worst values"
    return None, None


@dataclass
class MeshMetrics:
    """Scores of one prediction against one ground truth.

    Distances are in ``unit`` (Chamfer-L2 in ``unit`` squared); normal consistency, precision, recall,
    F-score and IoU are fractions in [0, 1].

    Attributes:
        status: ``"ok"``, ``"empty prediction"`` or ``"degenerate prediction"`` (the last two carry the
            worst values, see :func:`worst_pointcloud_metrics`, and are meant to be averaged in).
        unit: unit of the distances, ``UNIT_FRAME_LABEL`` when normalised.
        normalized: whether both meshes were placed in the ground truth's unit frame.
        accuracy: mean pred->GT nearest-neighbour distance.
        completeness: mean GT->pred nearest-neighbour distance.
        chamfer_l1: (accuracy + completeness) / 2.
        chamfer_l2: mean of the two mean squared distances.
        normal_consistency: mean |cos| between nearest-neighbour normals, both directions averaged.
        f_score: tau -> F-score; tau in ``unit``.
        precision: tau -> share of pred->GT distances <= tau.
        recall: tau -> share of GT->pred distances <= tau.
        iou: volumetric IoU, None when skipped (reason in ``notes``).
        chamfer_l1_x10: the papers' "Chamfer-L1 x 10" convention (only in the unit frame, else None).
        notes: human-readable remarks (skipped IoU, why a prediction is degenerate).
        n_samples: surface samples per mesh.
        seed: seed of the sampling.
        gt_scale: longest bounding-box side of the ground truth in input units.
    """

    status: str
    unit: str
    normalized: bool
    accuracy: float
    completeness: float
    chamfer_l1: float
    chamfer_l2: float
    normal_consistency: float
    f_score: dict[float, float]
    precision: dict[float, float]
    recall: dict[float, float]
    iou: float | None
    chamfer_l1_x10: float | None
    notes: list[str] = field(default_factory=list)
    n_samples: int = 0
    seed: int = 0
    gt_scale: float = 1.0

    @property
    def f_thresholds(self) -> tuple[float, ...]:
        return tuple(self.f_score)

    def as_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready dict; thresholded metrics use :func:`threshold_key` names."""
        result: dict[str, Any] = {
            "status": self.status,
            "unit": self.unit,
            "normalized": self.normalized,
            "accuracy": self.accuracy,
            "completeness": self.completeness,
            "chamfer_l1": self.chamfer_l1,
            "chamfer_l2": self.chamfer_l2,
            "normal_consistency": self.normal_consistency,
        }
        for tau in self.f_score:
            result[threshold_key("f_score", tau)] = self.f_score[tau]
        for tau in self.f_score:
            result[threshold_key("precision", tau)] = self.precision[tau]
            result[threshold_key("recall", tau)] = self.recall[tau]
        result.update(
            iou=self.iou,
            chamfer_l1_x10=self.chamfer_l1_x10,
            notes=list(self.notes),
            n_samples=self.n_samples,
            seed=self.seed,
            gt_scale=self.gt_scale,
        )
        return result


def _mesh_iou(pred: trimesh.Trimesh | None, gt: trimesh.Trimesh, n_points: int, seed: int, open_meshes: str, notes: list[str]) -> float | None:
    """Volumetric IoU of ``pred`` (None: empty or degenerate) and ``gt``, both in the GT's unit frame; appends what was done to ``notes``."""
    if open_meshes == "skip":
        reason = iou_skip_reason(pred if pred is not None else trimesh.Trimesh(), gt)
        if reason is not None:
            notes.append(reason)
            return None
    gt_closed = is_closed(gt)
    if pred is None and gt_closed:
        return 0.0
    low, high = np.full(3, -IOU_BOX_HALF_EXTENT), np.full(3, IOU_BOX_HALF_EXTENT)
    if pred is not None:
        pred_low, pred_high = pred.bounds
        if (pred_low < low).any() or (pred_high > high).any():
            # Upstream's fixed box would silently cut off the part of the prediction that sticks out,
            # which inflates its IoU; the box grows instead (same result whenever the prediction fits).
            low, high = np.minimum(low, pred_low), np.maximum(high, pred_high)
            notes.append("prediction extends beyond the [-0.55, 0.55]^3 IoU box: box enlarged to cover it")
    points = uniform_box_points(n_points, np.random.SeedSequence([seed, _STREAM_IOU]), low, high)
    # The sealed voxelisation needs a cube; it covers the whole (possibly enlarged) box.
    cube = {"low": float(low.min()), "high": float(high.max())}
    if gt_closed:
        gt_inside = inside_mask(gt, points)
    else:
        gt_inside = sealed_inside_mask(gt, points, **cube)
        if gt_inside is None:
            notes.append("ground truth not closed and encloses no volume even with its holes sealed: IoU skipped")
            return None
        notes.append("ground truth not closed: its inside is that of its sealed voxelisation")
    if pred is None:
        return 0.0
    return float(iou_from_occupancy(prediction_inside_mask(pred, points, notes, **cube), gt_inside))


def prediction_inside_mask(pred: trimesh.Trimesh, points: np.ndarray, notes: list[str] | None = None, *, low: float = -0.55, high: float = 0.55) -> np.ndarray:
    """(n,) bool: which points lie inside a predicted mesh, as IoU counts them.

    Ray parity where the mesh is closed (:func:`is_closed`); otherwise its sealed
    voxelisation (:func:`sealed_inside_mask` over ``[low, high]³``), and nothing
    where sealing encloses no volume: an open sheet predicts no solid. What was
    done is appended to ``notes``. ``occrecon eval`` and ``benchmarks/quality.py``
    both score predictions this way.
    """
    if is_closed(pred):
        return inside_mask(pred, points)
    sealed = sealed_inside_mask(pred, points, low=low, high=high)
    if notes is not None:
        notes.append(
            "prediction not closed: its inside is that of its sealed voxelisation"
            if sealed is not None
            else "prediction not closed and encloses no volume even with its holes sealed: IoU 0"
        )
    return sealed if sealed is not None else np.zeros(len(points), dtype=bool)


def evaluate_meshes(
    pred: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    n_samples: int = 100_000,
    seed: int = 0,
    normalize: bool = True,
    f_thresholds: Sequence[float] = DEFAULT_F_THRESHOLDS,
    iou_points: int = 100_000,
    units: str | None = None,
    open_meshes: str = "fill",
) -> MeshMetrics:
    """Score a predicted mesh against a ground-truth mesh with the ONet/ConvONet metrics.

    The computation always runs in the ground truth's unit frame (so that IoU points and float32 ray
    casting behave the same for objects and for scenes in metres); with ``normalize=False`` the distances
    are scaled back to input units afterwards and ``f_thresholds`` are read in input units.

    Args:
        pred: predicted mesh; empty or degenerate meshes get the worst values and a status saying so.
        gt: ground-truth mesh with a non-zero surface.
        n_samples: surface samples drawn on each mesh.
        seed: base seed; the prediction, the ground truth and the IoU points use independent streams.
        normalize: report in the unit frame (bbox centre, longest side 1), as the papers do.
        f_thresholds: F-score thresholds, in unit-frame units (or input units when ``normalize=False``).
        iou_points: uniform points in the padded box [-0.55, 0.55]^3 of the unit frame; 0 skips the IoU.
        units: name of the input units (e.g. ``"m"``); only valid with ``normalize=False``.
        open_meshes: the IoU of a mesh that is not closed (ray parity needs a closed one): ``fill``
            takes the inside of its sealed voxelisation (:func:`sealed_inside_mask`; 256³ cells over
            the IoU box, holes up to about two cells sealed), ``skip`` leaves the IoU out.

    Returns:
        The :class:`MeshMetrics`.

    Raises:
        InputError: (without a path) when the ground truth is empty or degenerate.
        ValueError: for inconsistent options.
    """
    if normalize and units is not None:
        raise ValueError("units name the input frame, so they only apply with normalize=False")
    if open_meshes not in OPEN_MESH_MODES:
        raise ValueError(f"open_meshes must be one of {OPEN_MESH_MODES}, got {open_meshes!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    thresholds = tuple(float(t) for t in f_thresholds)
    if any(not t > 0 for t in thresholds):
        raise ValueError(f"F-score thresholds must be positive, got {thresholds}")

    center, scale = normalization_transform(gt)
    gt_unit = _apply(gt, center, scale)
    if float(gt_unit.area) <= 0.0:
        raise InputError(None, "ground truth mesh has zero surface area")
    length = 1.0 if normalize else scale
    unit = UNIT_FRAME_LABEL if normalize else (units or "input units")
    unit_thresholds = [t / length for t in thresholds]

    status, note = _degeneracy(pred)
    notes = [note] if note else []
    if status is None:
        pred_unit = _apply(pred, center, scale)
        pred_points, pred_normals = sample_surface(pred_unit, n_samples, np.random.SeedSequence([seed, _STREAM_PRED]))
        gt_points, gt_normals = sample_surface(gt_unit, n_samples, np.random.SeedSequence([seed, _STREAM_GT]))
        values = pointcloud_metrics(pred_points, pred_normals, gt_points, gt_normals, unit_thresholds)
        status = STATUS_OK
    else:
        pred_unit = trimesh.Trimesh()
        values = worst_pointcloud_metrics(unit_thresholds)

    iou: float | None = None
    if iou_points > 0:
        iou = _mesh_iou(pred_unit if status == STATUS_OK else None, gt_unit, iou_points, seed, open_meshes, notes)
    else:
        notes.append("IoU not requested")

    chamfer_l1 = float(values["chamfer_l1"]) * length
    return MeshMetrics(
        status=status,
        unit=unit,
        normalized=normalize,
        accuracy=float(values["accuracy"]) * length,
        completeness=float(values["completeness"]) * length,
        chamfer_l1=chamfer_l1,
        chamfer_l2=float(values["chamfer_l2"]) * length**2,
        normal_consistency=float(values["normal_consistency"]),
        f_score={t: float(values[threshold_key("f_score", u)]) for t, u in zip(thresholds, unit_thresholds)},
        precision={t: float(values[threshold_key("precision", u)]) for t, u in zip(thresholds, unit_thresholds)},
        recall={t: float(values[threshold_key("recall", u)]) for t, u in zip(thresholds, unit_thresholds)},
        iou=iou,
        chamfer_l1_x10=10.0 * chamfer_l1 if normalize else None,
        notes=notes,
        n_samples=n_samples,
        seed=seed,
        gt_scale=scale,
    )
