"""The virtual scanner (occrecon.data.scanner) and its hook into the room data (issue #29)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from occrecon.data import rooms
from occrecon.data.scanner import SCANNER_VERSION, ScannerSettings, scan_mesh, scanner_positions, scanner_settings

QUIET = dict(mixed_pixel_prob=0.0, far_outlier_share=0.0)
"""No outliers: every point is a noisy return from the surface its ray hit."""


def _box(lo, hi) -> trimesh.Trimesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return trimesh.creation.box(extents=hi - lo, transform=trimesh.transformations.translation_matrix((lo + hi) / 2))


def _room_with_a_box() -> trimesh.Trimesh:
    """A closed 4 x 3 x 4 m box room (floor at y = 0) with a 0.5 m box standing on its floor at x in [0.5, 1]."""
    return trimesh.util.concatenate([_box((-2, 0, -2), (2, 3, 2)), _box((0.5, 0, -0.25), (1.0, 1.0, 0.25))])


def _distance_to(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


def test_points_lie_on_the_mesh_within_the_range_noise():
    mesh = _room_with_a_box()
    settings = ScannerSettings(angular_step_deg=1.0, noise_a=0.002, noise_b=0.002, **QUIET)
    scan = scan_mesh(mesh.vertices, mesh.faces, [[-1.0, 1.5, 0.0]], settings, seed=0)
    assert len(scan) > 20_000 and not scan.outlier.any()
    distance = _distance_to(mesh, scan.points)
    sigma = settings.sigma(scan.ranges)
    assert np.all(distance <= 5 * sigma + 1e-5)
    assert 0.3 < np.mean(distance <= sigma) < 0.9  # Gaussian along the ray, mostly not perpendicular to the surface
    noiseless = scan_mesh(mesh.vertices, mesh.faces, [[-1.0, 1.5, 0.0]], ScannerSettings(angular_step_deg=1.0, noise_a=0.0, noise_b=0.0, **QUIET))
    assert _distance_to(mesh, noiseless.points).max() < 1e-4
    # Normals face the scanner.
    towards = noiseless.positions[noiseless.scanner] - noiseless.points
    assert np.all(np.einsum("ij,ij->i", noiseless.normals, towards) > 0)


def test_outliers_are_a_small_flagged_share():
    mesh = _room_with_a_box()
    settings = ScannerSettings(angular_step_deg=1.0, far_outlier_share=0.01, mixed_pixel_prob=1.0)
    scan = scan_mesh(mesh.vertices, mesh.faces, [[-1.0, 1.5, 0.0]], settings, seed=0)
    assert 0.005 < scan.outlier.mean() < 0.05
    inliers = _distance_to(mesh, scan.points[~scan.outlier])
    assert np.all(inliers <= 5 * settings.sigma(scan.ranges[~scan.outlier]) + 1e-5)
    assert np.mean(_distance_to(mesh, scan.points[scan.outlier]) > 0.05) > 0.3  # most outliers are off the surface


def test_nothing_is_seen_behind_a_wall_or_an_obstacle():
    mesh = _room_with_a_box()
    outside = _box((2.5, 0, -0.5), (3.5, 1.0, 0.5))  # a box beyond the closed room's x+ wall
    everything = trimesh.util.concatenate([mesh, outside])
    positions = [[-1.0, 1.5, 0.0], [-1.5, 1.2, 1.5]]  # both on the -x side of the inner box
    scan = scan_mesh(everything.vertices, everything.faces, positions, ScannerSettings(angular_step_deg=0.5, **QUIET), seed=3)
    p = scan.points
    # The inner box's face at x = 1 looks away from both scanners: no point on it.
    hidden = (np.abs(p[:, 0] - 1.0) < 0.01) & (p[:, 1] > 0.02) & (p[:, 1] < 0.98) & (np.abs(p[:, 2]) < 0.23)
    assert not hidden.any()
    seen = (np.abs(p[:, 0] - 0.5) < 0.01) & (p[:, 1] > 0.02) & (p[:, 1] < 0.98) & (np.abs(p[:, 2]) < 0.23)
    assert seen.sum() > 100  # while its face towards them is seen
    # Nothing beyond the room's walls (the outer box included).
    assert np.all(np.abs(p[:, [0, 2]]) < 2.02) and np.all(p[:, 1] > -0.02) and np.all(p[:, 1] < 3.02)


def test_density_falls_with_range():
    corridor = _box((-8, 0, -1.5), (8, 3, 1.5))
    settings = ScannerSettings(angular_step_deg=0.5, max_range=20.0, noise_a=0.0, noise_b=0.0, **QUIET)
    scan = scan_mesh(corridor.vertices, corridor.faces, [[-7.0, 1.5, 0.0]], settings)
    floor = scan.points[np.abs(scan.points[:, 1]) < 1e-3]
    counts = np.histogram(floor[:, 0], bins=np.arange(-5.0, 8.0, 2.0))[0]  # ranges from 2.5 m to 15 m
    assert np.all(np.diff(counts) < 0)
    assert counts[0] > 10 * counts[-1]
    # Nothing is kept beyond the maximum range (measured before the range noise).
    near = scan_mesh(corridor.vertices, corridor.faces, [[-7.0, 1.5, 0.0]], ScannerSettings(angular_step_deg=0.5, max_range=5.0, **QUIET))
    assert near.ranges.max() <= 5.0 and floor[:, 0].max() > -7.0 + 10.0


def test_seeded_scans_are_identical_and_the_budget_holds():
    mesh = _room_with_a_box()
    settings = ScannerSettings(angular_step_deg=1.0, max_points=5000, far_outlier_share=0.01)
    a = scan_mesh(mesh.vertices, mesh.faces, [[-1.0, 1.5, 0.0], [1.0, 1.4, 1.0]], settings, seed=7)
    b = scan_mesh(mesh.vertices, mesh.faces, [[-1.0, 1.5, 0.0], [1.0, 1.4, 1.0]], settings, seed=7)
    c = scan_mesh(mesh.vertices, mesh.faces, [[-1.0, 1.5, 0.0], [1.0, 1.4, 1.0]], settings, seed=8)
    assert len(a) == 5000 and set(np.unique(a.scanner)) == {0, 1}
    for field in ("points", "normals", "scanner", "ranges", "outlier"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.points, c.points)


def _small_room(seed: int = 5, **kwargs) -> rooms.Room:
    return rooms.random_room(np.random.default_rng(seed), size_range=((3.0, 3.4), (2.4, 2.6), (3.0, 3.4)), **kwargs)


def test_scanner_positions_stand_free_in_the_room():
    room = _small_room(n_furniture=(3, 5))
    settings = ScannerSettings(n_positions=3, clearance=0.3)
    positions = scanner_positions(room, settings, seed=1)
    np.testing.assert_array_equal(positions, scanner_positions(room, settings, seed=1))
    assert positions.shape == (3, 3)
    W, H, D = room.size
    assert np.all((positions[:, 1] >= 1.2) & (positions[:, 1] <= min(1.8, H - 0.15)))
    assert np.all(np.abs(positions[:, 0]) < W / 2) and np.all(np.abs(positions[:, 2]) < D / 2)
    assert np.all(room.shape.sdf(positions) > 0.05)  # in free space
    for part in room.parts:
        if part.kind != rooms.STRUCTURE:
            lo, hi = part.bounds
            inside = (positions[:, 0] > lo[0]) & (positions[:, 0] < hi[0]) & (positions[:, 2] > lo[2]) & (positions[:, 2] < hi[2])
            assert not inside.any(), part.name  # never above furniture
    assert len({tuple(p) for p in positions.round(6)}) == 3


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"angular_step_deg": 0.0}, "angular_step_deg"),
        ({"max_range": 0.2}, "max_range"),
        ({"noise_a": -0.001}, "noise_a"),
        ({"far_outlier_share": 1.5}, "far_outlier_share"),
        ({"height_range": (1.8, 1.2)}, "height_range"),
        ({"n_positions": 0}, "n_positions"),
        ({"max_points": 0}, "max_points"),
        ({"min_elevation_deg": 95.0}, "min_elevation_deg"),
        ({"noise_b": float("nan")}, "finite"),
    ],
)
def test_bad_settings_are_refused_with_their_name(changes, words):
    with pytest.raises(ValueError, match=words):
        ScannerSettings(**changes)


def test_settings_round_trip_and_refuse_unknown_fields_and_versions():
    settings = ScannerSettings(angular_step_deg=0.5, max_points=1000)
    recorded = json.loads(json.dumps(settings.to_dict()))
    assert recorded["version"] == SCANNER_VERSION
    assert scanner_settings(recorded) == settings
    with pytest.raises(ValueError, match="unknown scanner settings"):
        ScannerSettings.from_dict({"angular_step": 0.5})
    with pytest.raises(ValueError, match="version"):
        ScannerSettings.from_dict({**recorded, "version": "0"})
    with pytest.raises(ValueError, match="position"):
        scan_mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.zeros((0, 3)))


def test_the_room_data_hook_records_the_scanner_and_keeps_the_default():
    assert rooms.RoomSampling().scanner is None
    assert rooms.recorded_prepare(None) == {} and rooms.recorded_prepare({"surface_density": 400.0}) == {"surface_density": 400.0}
    recorded = rooms.recorded_prepare({"scanner": {"max_points": 20_000}})
    assert recorded["scanner"] == ScannerSettings(max_points=20_000).to_dict()  # every field and the version

    room = _small_room(n_furniture=(0, 0), n_clutter=(0, 0))
    light = dict(surface_density=200.0, uniform_density=100.0, near_density=100.0)
    plain = rooms.prepare_room(room, np.random.default_rng(0), **light)
    scanned = rooms.prepare_room(room, np.random.default_rng(0), scanner={"angular_step_deg": 2.0, "max_points": 4000}, **light)
    assert len(scanned["surface_points"]) <= 4000
    assert np.unpackbits(scanned["scan_mask"], count=len(scanned["surface_points"])).all()
    points, _ = rooms.scan_cloud(scanned, np.random.default_rng(1), noise_std=0.0)
    assert len(points) == len(scanned["surface_points"])
    # The occupancy samples are drawn as without a scanner, before the scan.
    assert len(scanned["uniform_points"]) == len(plain["uniform_points"])
