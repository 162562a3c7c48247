"""Colours carried onto meshes: readers keep them, clouds and photos give them, every format that can holds them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from occrecon.cli.main import main
from occrecon.colour import PhotoCamera, colours_from_photo, colours_from_points, with_colours
from occrecon.io.mesh import mesh_bytes
from occrecon.io.readers import read_points

RED, BLUE = (230, 20, 20), (20, 20, 230)


def half_and_half(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A unit sphere's points, red where x > 0 and blue where x < 0."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return p, np.where(p[:, :1] > 0, RED, BLUE).astype(np.uint8)


def write_ply(path, p, c):
    trimesh.PointCloud(p, colors=np.c_[c, np.full(len(c), 255, np.uint8)]).export(path)


def write_pcd(path, p, c, ascii=False):
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
    cloud.colors = o3d.utility.Vector3dVector(c / 255.0)
    o3d.io.write_point_cloud(str(path), cloud, write_ascii=ascii)


def write_xyz(path, p, c):
    np.savetxt(path, np.c_[p, c], fmt="%.6f %.6f %.6f %d %d %d")


def write_las(path, p, c):
    laspy = pytest.importorskip("laspy")
    header = laspy.LasHeader(point_format=2, version="1.2")
    header.scales = [1e-4] * 3
    las = laspy.LasData(header)
    las.x, las.y, las.z = p[:, 0], p[:, 1], p[:, 2]
    las.red, las.green, las.blue = (c[:, k].astype(np.uint16) * 257 for k in range(3))  # 16-bit colours
    las.write(str(path))


WRITERS = {
    "ply": write_ply,
    "pcd": write_pcd,
    "ascii.pcd": lambda path, p, c: write_pcd(path, p, c, ascii=True),
    "xyz": write_xyz,
    "las": write_las,
}


def split_ok(vertices: np.ndarray, colours: np.ndarray) -> tuple[float, float]:
    """Shares of the vertices clearly on the red side (x > 0.05) that are red, and on the blue side that are blue."""
    red_side, blue_side = vertices[:, 0] > 0.05, vertices[:, 0] < -0.05
    is_red = (colours[:, 0] > 200) & (colours[:, 2] < 60)
    is_blue = (colours[:, 2] > 200) & (colours[:, 0] < 60)
    return float(is_red[red_side].mean()), float(is_blue[blue_side].mean())


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_readers_keep_colours_and_each_half_carries_its_colour(suffix, tmp_path):
    p, c = half_and_half()
    path = tmp_path / f"ball.{suffix}"
    WRITERS[suffix](path, p, c)
    cloud = read_points(path)
    assert cloud.colours is not None and cloud.colours.shape == (len(p), 3) and cloud.colours.dtype == np.uint8
    assert np.abs(cloud.colours.astype(int) - c).max() <= 1
    sphere = trimesh.creation.icosphere(4)
    red, blue = split_ok(np.asarray(sphere.vertices), colours_from_points(sphere.vertices, cloud.points, cloud.colours))
    assert red > 0.99 and blue > 0.99


def test_colours_stay_with_their_points_when_rows_are_dropped(tmp_path):
    p, c = half_and_half(200)
    table = np.c_[p, c].astype(float)
    table[10, 1] = np.nan
    np.savetxt(tmp_path / "holes.xyz", table, fmt="%.6f")
    cloud = read_points(tmp_path / "holes.xyz")
    assert cloud.dropped_nonfinite == 1 and np.array_equal(cloud.colours, np.delete(c, 10, axis=0))


def test_normals_and_plain_clouds_are_not_colours(tmp_path):
    p, _ = half_and_half(300)
    np.savetxt(tmp_path / "normals.xyz", np.c_[p, p], fmt="%.6f")
    np.savetxt(tmp_path / "plain.xyz", p, fmt="%.6f")
    assert read_points(tmp_path / "normals.xyz").colours is None
    assert read_points(tmp_path / "plain.xyz").colours is None


def test_the_transfer_is_robust_to_stray_points():
    p, c = half_and_half(6000)
    rng = np.random.default_rng(1)
    stray = rng.choice(len(c), len(c) // 20, replace=False)  # 5% of the points get a random colour
    c[stray] = rng.integers(0, 256, size=(len(stray), 3))
    noisy = p + rng.normal(scale=0.01, size=p.shape)
    sphere = trimesh.creation.icosphere(4)
    red, blue = split_ok(np.asarray(sphere.vertices), colours_from_points(sphere.vertices, noisy, c))
    assert red > 0.97 and blue > 0.97


def read_coff(data: bytes) -> np.ndarray:
    lines = data.decode().split("\n")
    assert lines[0] == "COFF"
    n = int(lines[1].split()[0])
    return np.array([[int(v) for v in line.split()[3:6]] for line in lines[2 : 2 + n]])


@pytest.mark.parametrize("fmt", ["ply", "obj", "glb", "off"])
def test_every_format_that_can_holds_the_colours(fmt):
    sphere = trimesh.creation.icosphere(3)
    colours = np.where(sphere.vertices[:, :1] > 0, RED, BLUE).astype(np.uint8)
    data = mesh_bytes(with_colours(sphere, colours), fmt)
    if fmt == "off":
        read = read_coff(data)
    else:
        loaded = trimesh.load(trimesh.util.wrap_as_stream(data), file_type=fmt, force="mesh", process=False)
        read = np.asarray(loaded.visual.vertex_colors)[:, :3]
    assert np.abs(read.astype(int) - colours).max() <= 1
    assert b"COFF" not in mesh_bytes(trimesh.creation.icosphere(1), "off")[:5]  # a plain mesh stays plain OFF


def test_a_photo_colours_the_seen_side_and_fills_the_hidden_one():
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    box = box.subdivide().subdivide()
    photo = np.full((64, 64, 3), 255, np.uint8)
    photo[12:52, 12:32] = RED  # the left half of the front face is red, the right half blue
    photo[12:52, 32:52] = BLUE
    camera = PhotoCamera(np.eye(3)[0], np.eye(3)[1], np.eye(3)[2], scale=40.0, offset=np.array([32.0, 32.0]))
    colours = colours_from_photo(box, photo, camera)
    v = np.asarray(box.vertices)
    front = v[:, 2] > 0.49
    assert (colours[front & (v[:, 0] < -0.1)][:, 0] > 200).all() and (colours[front & (v[:, 0] > 0.1)][:, 2] > 200).all()
    back = v[:, 2] < -0.49
    assert (colours[back].max(axis=1) > 150).all()  # filled from the seen side: never black


def test_fitted_camera_finds_the_view_of_a_canonical_mesh():
    from occrecon.colour import fit_photo_camera

    slab = trimesh.creation.box((1.0, 0.6, 0.05))  # a thin slab: the width of its silhouette says from where it is seen
    mask = np.zeros((224, 224), bool)
    mask[72:152, 45:179] = True  # seen face-on: 1.0 wide, 0.6 tall
    camera = fit_photo_camera(slab, mask)
    assert camera.score > 0.8 and abs(camera.toward[2]) > 0.9  # looking along z, at the big face


def test_points_command_colours_the_mesh_unless_no_colour(points_model, tmp_path, capsys):
    p, c = half_and_half(2000)
    write_ply(tmp_path / "ball.ply", p, c)
    for flags, name in (([], "coloured.ply"), (["--no-colour"], "plain.ply")):
        with pytest.raises(SystemExit) as exit_info:
            main(["points", str(tmp_path / "ball.ply"), "--model", str(points_model), "-o", str(tmp_path / name), "--json", *flags])
        captured = capsys.readouterr()
        assert exit_info.value.code == 0, captured.err
        assert json.loads(captured.out)["status"] == "ok"
    coloured = trimesh.load(tmp_path / "coloured.ply", process=False)
    assert coloured.visual.kind == "vertex"
    red, blue = split_ok(np.asarray(coloured.vertices), np.asarray(coloured.visual.vertex_colors)[:, :3])
    assert red > 0.95 and blue > 0.95
    assert trimesh.load(tmp_path / "plain.ply", process=False).visual.kind is None
