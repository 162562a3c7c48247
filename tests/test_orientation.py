"""The up axis read from a cloud's points: a floor with things standing on it, every way round; y and a note where unsure; --up wins."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from occrecon.frames import UP_AXES, turn_grid, up_rotation
from occrecon.orientation import detect_up, resolve_up
from occrecon.planes import find_planes
from test_scene import box_room


def on_ground(n: int = 4000, seed: int = 0) -> np.ndarray:
    """A y-up object scan: a ball standing on a disc of ground twice its width, as a scan of a thing in place has."""
    rng = np.random.default_rng(seed)
    ball = rng.normal(size=(n, 3))
    ball = ball / np.linalg.norm(ball, axis=1, keepdims=True) * 0.3 + [0.0, 0.3, 0.0]
    angle, radius = rng.uniform(0, 2 * np.pi, n), 0.6 * np.sqrt(rng.uniform(0, 1, n))
    ground = np.c_[radius * np.cos(angle), rng.normal(0, 0.002, n), radius * np.sin(angle)]
    return np.vstack([ball, ground])


def table(n: int = 6000, seed: int = 0) -> np.ndarray:
    """A table sampled all round, y up: a 3 cm top (both faces) on four legs; turned over it stands on its top as well."""
    rng = np.random.default_rng(seed)
    top = np.c_[rng.uniform(-0.6, 0.6, n), np.where(rng.random(n) < 0.5, 0.75, 0.72), rng.uniform(-0.4, 0.4, n)]
    legs = []
    for x in (-0.55, 0.55):
        for z in (-0.35, 0.35):
            angle, height = rng.uniform(0, 2 * np.pi, n // 8), rng.uniform(0, 0.72, n // 8)
            legs.append(np.c_[x + 0.02 * np.cos(angle), height, z + 0.02 * np.sin(angle)])
    return np.vstack([top, *legs])


@pytest.mark.parametrize("up", UP_AXES)
def test_a_room_stored_any_way_round_is_read_the_right_way_up(up):
    room = box_room()
    assert detect_up(room @ up_rotation(up)).axis == up
    # A scan a few degrees off level still has its floor.
    tilt = Rotation.from_rotvec(np.radians(6.0) * np.array([0.6, 0.0, 0.8])).as_matrix()
    assert detect_up((room @ tilt.T) @ up_rotation(up)).axis == up


@pytest.mark.parametrize("up", ["z", "-y", "x"])
def test_an_object_on_the_ground_is_read_the_right_way_up(up):
    assert detect_up(on_ground() @ up_rotation(up)).axis == up


def test_a_panel_is_no_floor_so_a_table_does_not_come_out_upside_down():
    # The top is the largest plane, with everything on one side of it, as a floor; but it has an underside.
    for up in ("y", "z"):
        assert detect_up(table() @ up_rotation(up)).axis in (None, up)


def test_a_bare_floor_says_nothing_of_which_side_is_up():
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(0, 3, 5000), rng.normal(0, 0.002, 5000), rng.uniform(0, 2, 5000)]
    found = detect_up(floor @ up_rotation("z"))
    assert found.axis is None and found.guess is None


def test_the_planes_are_the_same_on_every_run():
    room = box_room() @ up_rotation("-x")
    first, second = find_planes(room), find_planes(room)
    assert len(first.planes) == len(second.planes) >= 4
    for a, b in zip(first.planes, second.planes):
        np.testing.assert_array_equal(a.inliers, b.inliers)


def test_up_given_or_stated_wins_over_the_points():
    z_room = box_room() @ up_rotation("z")
    assert resolve_up(z_room, "y") == ("y", None)  # --up y: read as given, no second-guessing
    assert resolve_up(z_room, None, stated="-x") == ("-x", None)  # what the format says (LAS: z)
    assert resolve_up(z_room, "auto", stated="-x")[0] == "z"  # --up auto looks at the points whatever the format says
    up, note = resolve_up(z_room, None)
    assert up == "z" and "up axis found from the points: z" in note and "--up y" in note


def test_unsure_points_keep_y_and_name_the_axis_to_try(monkeypatch):
    from occrecon import orientation

    monkeypatch.setattr(orientation, "detect_up", lambda points, planes=None: orientation.UpAxis(None, "-z", "floor", 1.2))
    up, note = resolve_up(np.zeros((10, 3)), None)
    assert up == "y" and "unsure" in note and "--up -z" in note
    monkeypatch.setattr(orientation, "detect_up", lambda points, planes=None: orientation.UpAxis(None, "y", "floor", 1.2))
    assert resolve_up(np.zeros((10, 3)), None) == ("y", None)  # leaning to y: nothing to try


def test_an_object_cloud_stored_z_up_is_turned_without_being_told(tmp_path):
    from occrecon.loading import load_model
    from occrecon.pipeline import reconstruct
    from tiny_models import save_tiny_model

    model = load_model(str(save_tiny_model("points", tmp_path / "tiny")), "cpu")
    plain = dict(rotations=1, fit_steps=0, winding=False, anchor_points=False, input_noise=0.0, threshold=0.2)
    upright = reconstruct(model, "points", on_ground(), **plain)
    stored = reconstruct(model, "points", on_ground() @ up_rotation("z"), **plain)
    assert any(note.startswith("up axis found from the points: z") for note in stored.notes)
    np.testing.assert_allclose(stored.mesh.vertices @ up_rotation("z").T, upright.mesh.vertices, atol=2e-3)
    told = reconstruct(model, "points", on_ground() @ up_rotation("z"), up="y", **plain)
    assert not any("up axis" in note for note in told.notes)


def test_a_grid_turned_y_up_holds_the_same_cells_where_the_rotation_puts_them():
    rng = np.random.default_rng(0)
    cells = rng.random((5, 7, 3)) < 0.3
    lower, edge = np.array([1.0, -2.0, 0.5]), 0.25
    for up in UP_AXES[:6]:
        turned, turned_lower = turn_grid(cells, lower, edge, up)
        centres = lower + (np.argwhere(cells) + 0.5) * edge
        expected = centres @ up_rotation(up).T
        got = turned_lower + (np.argwhere(turned) + 0.5) * edge
        assert {tuple(np.round(p, 9)) for p in expected} == {tuple(np.round(p, 9)) for p in got}


def test_voxels_take_up_and_the_mesh_comes_back_in_the_grids_frame(tmp_path):
    from occrecon.loading import load_model
    from occrecon.pipeline import reconstruct
    from tiny_models import save_tiny_model

    model = load_model(str(save_tiny_model("voxels", tmp_path / "tiny")), "cpu")
    grid = np.zeros((32, 32, 32), dtype=bool)
    grid[8:24, 4:12, 10:20] = True  # a slab, y up
    grid[14:18, 12:28, 14:18] = True  # a post on it
    upright = reconstruct(model, "voxels", grid, threshold=0.15, upsampling_steps=0)
    z_up = np.ascontiguousarray(np.transpose(grid, (0, 2, 1))[:, ::-1, :])  # the same grid lying with its top towards +z
    turned = reconstruct(model, "voxels", z_up, threshold=0.15, upsampling_steps=0, up="z")
    assert "z up: grid turned y-up for the network, and the mesh back" in turned.notes
    # Back in the z-up grid's own index frame: y-up vertices (x, y, z) sit at (x, 32 - z, y).
    back = upright.mesh.vertices[:, [0, 2, 1]] * [1.0, -1.0, 1.0] + [0.0, 32.0, 0.0]
    np.testing.assert_allclose(np.sort(turned.mesh.vertices, axis=0), np.sort(back, axis=0), atol=1e-4)
    assert turned.mesh.volume == pytest.approx(upright.mesh.volume, rel=1e-6)  # a proper turn: the faces keep their outside


def test_voxels_command_takes_up_but_not_auto(tmp_path, capsys):
    from occrecon.cli.main import main

    np.save(tmp_path / "grid.npy", np.ones((4, 4, 4), dtype=bool))
    with pytest.raises(SystemExit) as exit_info:
        main(["voxels", str(tmp_path / "grid.npy"), "--up", "auto", "-d", str(tmp_path)])
    assert exit_info.value.code == 2 and "--up auto applies to point clouds" in capsys.readouterr().err


def test_a_scene_mesh_facing_away_from_the_scanner_is_turned_round():
    import trimesh

    from occrecon.scene.window import face_the_scanner, facing_vote

    room = trimesh.creation.box(extents=(6.0, 2.6, 5.0))  # its faces point out: seen from inside, away from the scanner
    scan = box_room(size=(6.0, 2.6, 5.0)) - [3.0, 1.3, 2.5]
    inward = room.faces[:, ::-1]
    assert facing_vote(room.vertices, inward, scan, inside=True) > 0.9
    faces, note = face_the_scanner(room.vertices, room.faces, scan, inside=True)
    np.testing.assert_array_equal(faces, inward)
    assert "faced away from where the scan was seen from" in note
    kept, note = face_the_scanner(room.vertices, inward, scan, inside=True)
    assert note is None and kept is inward  # facing the scanner already: left as it is
    # Open ground, seen from above: a floor facing down is turned up.
    ground = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 0, 1]], [[0, 1, 2]])  # normal (0, -1, 0)
    faces, note = face_the_scanner(ground.vertices, ground.faces, scan, inside=False)
    assert note and trimesh.Trimesh(ground.vertices, faces).face_normals[0][1] > 0
