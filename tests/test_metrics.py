"""Metrics checked against values computed by hand on simple shapes.

Sampled metrics carry a sampling floor: a point on a shared surface is ~0.5/sqrt(density) away from the
nearest sample of the other mesh, not 0. Tolerances below are derived from that floor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from occrecon import metrics as M
from occrecon.errors import InputError

SQRT3 = math.sqrt(3.0)


def sphere(radius: float) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4, radius=radius)


def unit_cube(shift_x: float = 0.0) -> trimesh.Trimesh:
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    cube.apply_translation((shift_x, 0.0, 0.0))
    return cube


def open_sphere(radius: float = 1.0) -> trimesh.Trimesh:
    mesh = sphere(radius)
    return trimesh.Trimesh(mesh.vertices, mesh.faces[20:], process=False)


# --------------------------------------------------------------------------------------------------
# Building blocks


def test_sample_surface_is_area_weighted_on_the_surface_and_seeded():
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    points, normals = M.sample_surface(box, 20_000, seed=3)
    assert points.shape == normals.shape == (20_000, 3)
    half = np.array([1.0, 0.5, 0.5])
    # Every point lies on a face: one coordinate at its bound, the others inside.
    on_face = np.isclose(np.abs(points), half, atol=1e-9)
    assert np.all(on_face.sum(axis=1) >= 1) and np.all(np.abs(points) <= half + 1e-9)
    # Area weighting: the two x faces hold 2 * 1 of the total area 2 * (2 + 2 + 1) = 10.
    assert abs(np.mean(on_face[:, 0]) - 0.2) < 0.015
    # Face normals, unit length and pointing out of the box.
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    assert np.all((normals * points).sum(axis=1) > 0)

    again, _ = M.sample_surface(box, 20_000, seed=3)
    other, _ = M.sample_surface(box, 20_000, seed=4)
    assert np.array_equal(points, again)
    assert not np.allclose(points, other)


def test_sample_surface_of_empty_and_flat_meshes_is_empty():
    for mesh in (trimesh.Trimesh(), trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], faces=[[0, 1, 2]])):
        points, normals = M.sample_surface(mesh, 100, seed=0)
        assert points.shape == normals.shape == (0, 3)


def test_kdtree_nearest_neighbors_match_brute_force_reference():
    rng = np.random.default_rng(0)
    query, reference = rng.normal(size=(1500, 3)), rng.normal(size=(2000, 3))
    distances, indices = M.nearest_neighbors(query, reference)
    ref_distances, ref_indices = M._reference_nearest_neighbors(query, reference)
    np.testing.assert_allclose(distances, ref_distances, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(distances, np.linalg.norm(query - reference[indices], axis=1))


def test_pointcloud_metrics_on_hand_computed_points():
    gt = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pred = np.array([[0.0, 0.0, 0.1], [0.0, 0.0, 3.0]])
    # Normals scaled by 2 on purpose: the metric must normalise them.
    pred_normals = 2 * np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    gt_normals = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    result = M.pointcloud_metrics(pred, pred_normals, gt, gt_normals, f_thresholds=(0.5, 1.0))
    # pred->GT: 0.1 and 2.0; GT->pred: 0.1 and 0.9.
    assert result["accuracy"] == pytest.approx(1.05)
    assert result["completeness"] == pytest.approx(0.5)
    assert result["chamfer_l1"] == pytest.approx(0.775)
    assert result["chamfer_l2"] == pytest.approx(0.5 * ((0.01 + 4.0) / 2 + (0.01 + 0.81) / 2))
    # |dot| per NN pair: pred->GT (1, 0), GT->pred (1, 0) -> 0.5 both ways.
    assert result["normal_consistency"] == pytest.approx(0.5)
    assert result["precision@0.5"] == 0.5 and result["recall@0.5"] == 0.5
    assert result["f_score@0.5"] == pytest.approx(0.5)
    assert result["precision@1"] == 0.5 and result["recall@1"] == 1.0
    assert result["f_score@1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)

    no_normals = M.pointcloud_metrics(pred, None, gt, None, f_thresholds=(0.5,))
    assert no_normals["normal_consistency"] is None
    assert no_normals["chamfer_l1"] == pytest.approx(0.775)


def test_pointcloud_metrics_of_empty_prediction_are_the_worst_values():
    result = M.pointcloud_metrics(np.zeros((0, 3)), np.zeros((0, 3)), np.ones((5, 3)), np.ones((5, 3)))
    assert result["accuracy"] == result["completeness"] == result["chamfer_l1"] == pytest.approx(SQRT3)
    assert result["chamfer_l2"] == pytest.approx(3.0)
    assert result["normal_consistency"] == 0.0
    assert all(result[M.threshold_key("f_score", t)] == 0.0 for t in M.DEFAULT_F_THRESHOLDS)
    with pytest.raises(ValueError):
        M.pointcloud_metrics(np.ones((5, 3)), None, np.zeros((0, 3)), None)


def test_iou_from_occupancy_by_hand():
    a = np.array([1, 1, 0, 0], dtype=bool)
    b = np.array([1, 0, 1, 0], dtype=bool)
    assert M.iou_from_occupancy(a, b) == pytest.approx(1 / 3)
    assert M.iou_from_occupancy(a, a) == 1.0
    # Float occupancies are thresholded at 0.5, batches reduce over the last axis.
    probabilities = np.array([[0.9, 0.6, 0.1, 0.0], [0.0] * 4])
    batch = M.iou_from_occupancy(probabilities, np.array([[1.0, 0.0, 1.0, 0.0], [0.0] * 4]))
    np.testing.assert_allclose(batch, [1 / 3, 1.0])
    with pytest.raises(ValueError):
        M.iou_from_occupancy(a, b[:3])


def test_is_closed():
    cube = unit_cube()
    assert M.is_closed(cube)
    # One vertex per triangle corner, as OBJ/STL exporters often write: still closed once merged.
    soup = trimesh.Trimesh(cube.vertices[cube.faces].reshape(-1, 3), np.arange(36).reshape(-1, 3), process=False)
    assert not soup.is_watertight and M.is_closed(soup)
    assert not M.is_closed(trimesh.Trimesh(cube.vertices, cube.faces[1:], process=False))
    assert not M.is_closed(trimesh.Trimesh())


def test_normalization_transform_uses_the_gt_bounding_box():
    box = trimesh.creation.box(extents=(2.0, 4.0, 1.0))
    box.apply_translation((1.0, 2.0, 3.0))
    # A stray vertex that no face uses must not move the frame.
    mesh = trimesh.Trimesh(np.vstack([box.vertices, [[100.0, 0.0, 0.0]]]), box.faces, process=False)
    center, scale = M.normalization_transform(mesh)
    np.testing.assert_allclose(center, (1.0, 2.0, 3.0))
    assert scale == pytest.approx(4.0)
    with pytest.raises(InputError):
        M.normalization_transform(trimesh.Trimesh())


def test_volumetric_iou_refuses_open_meshes():
    points = M.uniform_box_points(1000, seed=0)
    with pytest.raises(ValueError, match="prediction not closed"):
        M.volumetric_iou(open_sphere(0.5), sphere(0.5), points)


# --------------------------------------------------------------------------------------------------
# evaluate_meshes on shapes with known answers


def test_concentric_spheres_by_hand():
    # GT radius 1 -> longest side 2, so in the unit frame the radii are 0.5 (GT) and 0.4 (prediction):
    # every nearest-neighbour distance is 0.1, squared 0.01; volumes give IoU = 0.8^3.
    result = M.evaluate_meshes(sphere(0.8), sphere(1.0), n_samples=50_000, f_thresholds=(0.01, 0.15))
    assert result.status == "ok" and result.normalized and result.unit == M.UNIT_FRAME_LABEL
    assert result.gt_scale == pytest.approx(2.0)
    assert result.accuracy == pytest.approx(0.1, abs=0.003)
    assert result.completeness == pytest.approx(0.1, abs=0.003)
    assert result.chamfer_l1 == pytest.approx(0.1, abs=0.003)
    assert result.chamfer_l2 == pytest.approx(0.01, abs=0.0006)
    assert result.chamfer_l1_x10 == pytest.approx(10 * result.chamfer_l1)
    assert result.normal_consistency > 0.99
    assert result.f_score[0.01] == 0.0 and result.f_score[0.15] == 1.0
    assert result.iou == pytest.approx(0.8**3, abs=0.015)
    assert result.notes == []

    # Without normalisation the same pair is 0.2 apart in input units.
    metric = M.evaluate_meshes(sphere(0.8), sphere(1.0), n_samples=50_000, normalize=False, units="m")
    assert metric.unit == "m" and metric.chamfer_l1_x10 is None
    assert metric.accuracy == pytest.approx(0.2, abs=0.006)
    assert metric.chamfer_l2 == pytest.approx(0.04, abs=0.0025)
    assert metric.iou == pytest.approx(result.iou)


def test_prediction_larger_than_the_iou_box_is_not_cut_off():
    # Prediction radius 0.6 in the unit frame sticks out of [-0.55, 0.55]^3; the true IoU is (1/1.2)^3.
    result = M.evaluate_meshes(sphere(1.2), sphere(1.0), n_samples=20_000)
    assert result.iou == pytest.approx(1 / 1.2**3, abs=0.015)
    assert any("box enlarged" in note for note in result.notes)


def test_cube_and_shifted_cube_by_hand():
    # Unit cube vs the same cube shifted by 0.25 along x (both directions are mirror images):
    #   +x face (area 1): distance 0.25;
    #   inner -x face (area 1): min(0.25, 0.5-|y|, 0.5-|z|), mean 0.5 * (1 - 0.5^3) / 3 = 0.1458333;
    #   4 side faces: 0 on the overlap, s in (0, 0.25] on the 0.25-wide strip outside -> 4 * 0.25 * 0.125.
    accuracy = (0.25 + 0.5 * (1 - 0.5**3) / 3 + 4 * 0.25 * 0.125) / 6
    # Squares: 0.0625; 0.25 * int_0^0.5 2t(1-t)^2 dt = 0.25 * 0.1145833; 4 * 0.25 * 0.25^2 / 3.
    chamfer_l2 = (0.0625 + 0.25 * (0.25 - 0.5**3 * 4 / 3 + 0.5**4 / 2) + 4 * 0.25 * 0.25**2 / 3) / 6
    # Normals agree on the overlap of the side faces (4 * 0.75), the +x face (1), and the quarter of the -x
    # face whose nearest GT point lies on the GT's -x face.
    normal_consistency = (4 * 0.75 + 1 + 0.25) / 6
    # Distances <= 0.02: the overlap (3), the strip s <= 0.02 (4 * 0.02), the -x face 1 - (1 - 0.04)^2.
    f_score = (3 + 4 * 0.02 + 1 - 0.96**2) / 6
    iou = 0.75 / 1.25

    result = M.evaluate_meshes(unit_cube(0.25), unit_cube(), n_samples=100_000, f_thresholds=(0.02,))
    # Half of the surface (true distance 0) reads the sampling floor ~0.004 instead: +0.002, plus slack.
    assert accuracy == pytest.approx(0.0868056, abs=1e-6)
    assert result.accuracy == pytest.approx(accuracy + 0.002, abs=0.002)
    assert result.completeness == pytest.approx(accuracy + 0.002, abs=0.002)
    assert result.chamfer_l2 == pytest.approx(chamfer_l2, rel=0.02)
    assert result.normal_consistency == pytest.approx(normal_consistency, abs=0.01)
    assert result.f_score[0.02] == pytest.approx(f_score, abs=0.01)
    assert result.iou == pytest.approx(iou, abs=0.01)


def test_identical_meshes_score_perfectly():
    result = M.evaluate_meshes(unit_cube(), unit_cube(), n_samples=100_000)
    # Independent samples on both sides: the Chamfer distance is the sampling floor, not exactly 0.
    assert result.chamfer_l1 < 0.005
    assert result.f_score[0.02] == 1.0
    assert result.normal_consistency > 0.98
    assert result.iou == 1.0


def test_empty_prediction_is_reported_with_the_worst_values():
    result = M.evaluate_meshes(trimesh.Trimesh(), sphere(1.0), n_samples=1000)
    assert result.status == M.STATUS_EMPTY
    assert result.accuracy == result.completeness == result.chamfer_l1 == pytest.approx(SQRT3)
    assert result.chamfer_l2 == pytest.approx(3.0)
    assert result.chamfer_l1_x10 == pytest.approx(10 * SQRT3)
    assert result.normal_consistency == 0.0
    assert set(result.f_score.values()) == {0.0} and set(result.recall.values()) == {0.0}
    assert result.iou == 0.0
    assert any("empty" in note for note in result.notes)
    # Every key is present, unlike upstream, so that means cannot silently skip the item.
    assert all(value is not None for key, value in result.as_dict().items() if key != "chamfer_l1_x10")

    # In input units the worst distance is the diagonal of the GT's bounding cube (side 2 here).
    metric = M.evaluate_meshes(trimesh.Trimesh(), sphere(1.0), n_samples=1000, normalize=False)
    assert metric.accuracy == pytest.approx(2 * SQRT3) and metric.chamfer_l2 == pytest.approx(12.0)


@pytest.mark.parametrize(
    "mesh, why",
    [
        (trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], faces=[[0, 1, 2]], process=False), "zero surface"),
        (trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0]], process=False), "no faces"),
        (trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [np.nan, 0, 1]], faces=[[0, 1, 2]], process=False), "finite"),
    ],
)
def test_degenerate_prediction_is_reported_with_the_worst_values(mesh, why):
    result = M.evaluate_meshes(mesh, unit_cube(), n_samples=1000)
    assert result.status == M.STATUS_DEGENERATE
    assert any(why in note for note in result.notes)
    assert result.chamfer_l1 == pytest.approx(SQRT3) and result.iou == 0.0


def test_open_meshes_skip_leaves_out_only_the_iou():
    result = M.evaluate_meshes(open_sphere(1.0), sphere(1.0), n_samples=20_000, open_meshes="skip")
    assert result.status == "ok"
    assert result.iou is None
    assert "prediction not closed: IoU skipped" in result.notes
    assert result.chamfer_l1 < 0.01 and result.normal_consistency > 0.95

    gt_open = M.evaluate_meshes(sphere(1.0), open_sphere(1.0), n_samples=20_000, open_meshes="skip")
    assert gt_open.iou is None
    assert "ground truth not closed: IoU skipped" in gt_open.notes
    with pytest.raises(ValueError, match="open_meshes"):
        M.evaluate_meshes(sphere(1.0), sphere(1.0), open_meshes="parity")


def test_open_meshes_fill_seals_small_holes_and_refuses_sheets():
    fine = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    pinhole = trimesh.Trimesh(fine.vertices, fine.faces[1:], process=False)  # a hole under two of the 256 cells
    smaller = trimesh.creation.icosphere(subdivisions=5, radius=0.8)
    for pred, gt in ((pinhole, fine), (fine, pinhole), (smaller, pinhole)):
        result = M.evaluate_meshes(pred, gt, n_samples=5000, iou_points=20_000)
        closed = M.evaluate_meshes(smaller if pred is smaller else fine, fine, n_samples=5000, iou_points=20_000)
        assert result.iou == pytest.approx(closed.iou, abs=0.005)
        side = "prediction" if pred is pinhole else "ground truth"
        assert f"{side} not closed: its inside is that of its sealed voxelisation" in result.notes
    assert M.evaluate_meshes(smaller, pinhole, n_samples=5000, iou_points=20_000).iou == pytest.approx(0.8**3, abs=0.02)

    # Wide holes and open sheets enclose nothing: no IoU against them, IoU 0 for a prediction.
    gt_open = M.evaluate_meshes(sphere(1.0), open_sphere(1.0), n_samples=5000, iou_points=20_000)
    assert gt_open.iou is None
    assert "ground truth not closed and encloses no volume even with its holes sealed: IoU skipped" in gt_open.notes
    pred_open = M.evaluate_meshes(open_sphere(1.0), sphere(1.0), n_samples=5000, iou_points=20_000)
    assert pred_open.iou == 0.0
    assert "prediction not closed and encloses no volume even with its holes sealed: IoU 0" in pred_open.notes


def test_fixed_seed_is_deterministic():
    first = M.evaluate_meshes(sphere(0.9), unit_cube(), n_samples=5000, iou_points=5000, seed=7).as_dict()
    second = M.evaluate_meshes(sphere(0.9), unit_cube(), n_samples=5000, iou_points=5000, seed=7).as_dict()
    other = M.evaluate_meshes(sphere(0.9), unit_cube(), n_samples=5000, iou_points=5000, seed=8).as_dict()
    assert first == second
    assert first["accuracy"] != other["accuracy"]


def test_bad_ground_truth_and_options_are_refused():
    with pytest.raises(InputError, match="no faces"):
        M.evaluate_meshes(unit_cube(), trimesh.Trimesh())
    with pytest.raises(ValueError, match="normalize=False"):
        M.evaluate_meshes(unit_cube(), unit_cube(), units="m")
    with pytest.raises(ValueError, match="positive"):
        M.evaluate_meshes(unit_cube(), unit_cube(), f_thresholds=(0.0,))


def test_filled_inside_mask_handles_open_and_overlapping_meshes():
    from occrecon.metrics import filled_inside_mask

    points = np.random.default_rng(0).uniform(-0.55, 0.55, (20000, 3))
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.4)
    truth = np.linalg.norm(points, axis=1) < 0.4
    assert np.mean(filled_inside_mask(sphere, points) == truth) > 0.99
    # A missing triangle (smaller than two voxels) is sealed.
    holed = sphere.copy()
    holed.update_faces(np.arange(len(holed.faces)) != 0)
    assert not holed.is_watertight
    assert np.mean(filled_inside_mask(holed, points, resolution=128) == truth) > 0.98
    # Two overlapping closed boxes stored as one mesh (as in many CAD/ModelNet files):
    # parity-based inside tests get the overlap wrong, the filled voxels do not.
    a = trimesh.creation.box(extents=(0.6, 0.2, 0.2))
    b = trimesh.creation.box(extents=(0.2, 0.6, 0.2))
    cross = trimesh.util.concatenate([a, b])
    in_a = np.all(np.abs(points) < [0.3, 0.1, 0.1], axis=1)
    in_b = np.all(np.abs(points) < [0.1, 0.3, 0.1], axis=1)
    truth = in_a | in_b
    assert np.mean(filled_inside_mask(cross, points) == truth) > 0.99
    assert not filled_inside_mask(trimesh.Trimesh(), points).any()


def test_filled_inside_mask_does_not_thicken_thin_walls():
    from occrecon.metrics import _grid_values, filled_inside_mask, filled_solid

    # Points near a wall 0.02 thick (4.7 cells of the 256³ grid), where half a voxel per side is 20% of its volume.
    rng = np.random.default_rng(1)
    points = np.column_stack([rng.uniform(-0.35, 0.35, 40000), rng.uniform(-0.03, 0.03, 40000), rng.uniform(-0.35, 0.35, 40000)])
    truth = np.abs(points[:, 1]) < 0.01
    wall = trimesh.creation.box(extents=(0.6, 0.02, 0.6))
    solid = filled_solid(wall)
    voxels = _grid_values(solid, points, -0.55, 0.55, False)
    inside = filled_inside_mask(wall, points, solid=solid)
    within = np.all(np.abs(points[:, [0, 2]]) < 0.3, axis=1)
    iou = lambda a, b: np.sum(a & b & within) / np.sum((a | b) & within)  # noqa: E731
    assert iou(voxels, truth) < 0.9  # what the voxels alone say
    assert iou(inside, truth) > 0.995
    # The file's orientation is not trusted where the solid says which side is out: flipped faces give the same answer.
    flipped = wall.copy()
    flipped.invert()
    assert np.array_equal(filled_inside_mask(flipped, points, solid=solid) & within, inside & within)
    # A face buried in the solid (a partition inside a closed box) leaves the points around it inside.
    box = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    partition = trimesh.creation.box(extents=(0.7, 0.7, 0.005))
    near_partition = np.column_stack([rng.uniform(-0.3, 0.3, 5000), rng.uniform(-0.3, 0.3, 5000), rng.uniform(-0.01, 0.01, 5000)])
    assert filled_inside_mask(trimesh.util.concatenate([box, partition]), near_partition).all()


def test_outer_surface_sample_leaves_out_faces_buried_in_the_filled_solid():
    from occrecon.metrics import buried_mask, exterior_depth, filled_inside_mask, filled_solid, outer_surface_sample, sample_surface

    # A closed box with a partition inside it (as furniture files model shelves behind closed doors).
    box = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    partition = trimesh.creation.box(extents=(0.7, 0.7, 0.02))
    mesh = trimesh.util.concatenate([box, partition])
    solid = filled_solid(mesh)
    points = np.random.default_rng(0).uniform(-0.55, 0.55, (5000, 3))
    assert np.array_equal(filled_inside_mask(mesh, points, solid=solid), filled_inside_mask(mesh, points))
    depth = exterior_depth(solid)
    every_face, _ = sample_surface(mesh, 20_000, seed=1)
    on_partition = np.abs(every_face).max(axis=1) < 0.36
    assert 0.2 < on_partition.mean() < 0.3
    buried = buried_mask(every_face, depth)
    assert np.mean(buried == on_partition) > 0.99
    outer, normals = outer_surface_sample(mesh, 3000, 7, depth)
    assert outer.shape == normals.shape == (3000, 3)
    assert np.allclose(np.abs(outer).max(axis=1), 0.4, atol=1e-6)
    assert np.array_equal(outer, outer_surface_sample(mesh, 3000, 7, depth)[0])
    # Nothing buried: the same draw as sample_surface, so figures of closed meshes do not move.
    plain_depth = exterior_depth(filled_solid(box))
    assert np.array_equal(outer_surface_sample(box, 3000, 7, plain_depth)[0], sample_surface(box, 3000, seed=7)[0])
