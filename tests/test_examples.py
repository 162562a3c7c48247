"""The example inputs shipped in examples/ are readable and match what the generator makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from occrecon.io.readers import read_image, read_points, read_voxels
from occrecon.io.writers import write_binvox

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_examples_are_valid_inputs():
    cloud = read_points(EXAMPLES / "chair_points.ply")
    assert cloud.points.shape == (3000, 3) and cloud.dropped_nonfinite == 0
    grid = read_voxels(EXAMPLES / "chair.binvox")
    assert grid.occupancy.shape == (32, 32, 32) and 100 < grid.occupancy.sum() < 32**3 / 2
    image = read_image(EXAMPLES / "chair.png")
    assert image.size == (224, 224)
    # The voxel grid and the point cloud describe the same chair in the same frame.
    centres = (np.argwhere(grid.occupancy) + 0.5) / 32 * grid.scale + grid.translate
    assert np.allclose(centres.mean(axis=0), cloud.points.mean(axis=0), atol=0.05)


def test_binvox_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    occupancy = rng.random((16, 16, 16)) > 0.7
    occupancy[:, :, :] |= np.arange(16)[:, None, None] == 3  # long runs (>255) too
    write_binvox(tmp_path / "g.binvox", occupancy, translate=(1.0, -2.0, 0.5), scale=3.0)
    grid = read_voxels(tmp_path / "g.binvox")
    assert np.array_equal(grid.occupancy, occupancy)
    assert np.allclose(grid.translate, [1.0, -2.0, 0.5]) and grid.scale == 3.0


def test_bundled_scene_model_reconstructs_a_corner_of_the_example_room(tmp_path, capsys):
    import json

    import pytest
    import trimesh

    from occrecon.cli.main import main
    from occrecon.metrics import nearest_neighbors, sample_surface

    room = read_points(EXAMPLES / "room_points.ply").points.astype(np.float64)
    lo, hi = room.min(axis=0), room.max(axis=0)
    corner = room[(room[:, 0] < lo[0] + 1.2) & (room[:, 2] > hi[2] - 1.2)]  # floor and the z+ wall
    scan = tmp_path / "corner.ply"
    trimesh.PointCloud(corner.astype(np.float32)).export(scan, encoding="binary")
    with pytest.raises(SystemExit) as exit_info:
        main(["points", str(scan), "-o", str(tmp_path / "corner_mesh.ply"), "--scene", "--units", "m", "--json", "--quiet"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    record = json.loads(out.splitlines()[-1])
    assert record["model"] == "convonet-scene-synthetic"  # bundled: no download
    mesh = trimesh.load(record["output"], process=False)
    # In the scan's own frame, on its floor and its wall.
    assert np.all(mesh.bounds[0] > corner.min(axis=0) - 0.15) and np.all(mesh.bounds[1] < corner.max(axis=0) + 0.15)
    surface = sample_surface(mesh, 200_000, seed=0)[0]
    to_mesh, _ = nearest_neighbors(corner[::10], surface)
    assert np.median(to_mesh) < 0.02
    # 0.786 with the tiling centred on the scan (2026-12-07), above 0.8 with the old one started 3 voxels below
    # it: where the crops' borders fall moves this share by a few points (issue #29: the model's field is blurry).
    assert np.mean(to_mesh < 0.05) > 0.75


def test_bundled_points_model_reconstructs_the_example_chair(tmp_path, capsys):
    """The README's first command: the default points model, offline, a mesh on the chair's points."""
    import json

    import pytest
    import trimesh

    from occrecon.cli.main import main
    from occrecon.metrics import nearest_neighbors, sample_surface

    with pytest.raises(SystemExit) as exit_info:
        main(["points", str(EXAMPLES / "chair_points.ply"), "-o", str(tmp_path / "chair.obj"), "--json", "--quiet"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    record = json.loads(out.splitlines()[-1])
    assert record["model"] == "convonet-points-synthetic"  # bundled: no download
    cloud = read_points(EXAMPLES / "chair_points.ply").points.astype(np.float64)
    size = float(np.max(cloud.max(axis=0) - cloud.min(axis=0)))
    mesh = trimesh.load(record["output"], process=False)
    assert mesh.is_watertight
    # In the cloud's own frame, through its points (they carry noise of 0.5% of the size).
    surface = sample_surface(mesh, 100_000, seed=0)[0]
    to_mesh, _ = nearest_neighbors(cloud, surface)
    to_cloud, _ = nearest_neighbors(surface, cloud)
    assert np.median(to_mesh) < 0.01 * size and np.mean(to_mesh < 0.02 * size) > 0.9
    assert np.mean(to_cloud < 0.03 * size) > 0.9  # no surface where the chair is not
