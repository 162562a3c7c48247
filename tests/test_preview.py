"""Preview pictures: `--preview` on the reconstruction commands, `occrecon preview`, and the renderer itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from occrecon.cli.main import main
from occrecon.preview import PANEL_SIZE, InputView, PreviewError, is_preview, render_preview, write_preview

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(args: list, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def panels(picture: np.ndarray) -> list[np.ndarray]:
    return [picture[:, k * PANEL_SIZE + 1 : (k + 1) * PANEL_SIZE - 1] for k in range(picture.shape[1] // PANEL_SIZE)]  # without the lines between panels


def foreground(panel: np.ndarray) -> np.ndarray:
    return panel.min(axis=-1) < 240


def box_of(mask: np.ndarray) -> tuple[int, int]:
    """(height, width) of the foreground's bounding box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def coloured(mesh: trimesh.Trimesh, rgb) -> trimesh.Trimesh:
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.tile([*rgb, 255], (len(mesh.vertices), 1)).astype(np.uint8))
    return mesh


def test_size_and_a_foreground_neither_empty_nor_full():
    mesh = trimesh.creation.icosphere(3)
    alone = render_preview(mesh)
    assert alone.shape == (PANEL_SIZE, 3 * PANEL_SIZE, 3) and alone.dtype == np.uint8
    cloud = render_preview(mesh, InputView(points=mesh.sample(3000, seed=0)))
    assert cloud.shape == (PANEL_SIZE, 4 * PANEL_SIZE, 3)
    for panel in panels(cloud):
        share = foreground(panel).mean()
        assert 0.05 < share < 0.9, share


@pytest.mark.parametrize("up, extents", [("y", (0.3, 1.0, 0.3)), ("z", (0.3, 0.3, 1.0)), ("-x", (1.0, 0.3, 0.3))])
def test_a_tall_box_comes_out_tall(up, extents):
    box = trimesh.creation.box(extents)
    picture = render_preview(box, InputView(points=box.sample(4000, seed=0)), up=up)
    for panel in panels(picture):
        height, width = box_of(foreground(panel))
        assert height > 1.8 * width, (up, height, width)


def test_the_same_box_lying_down_is_wide():
    box = trimesh.creation.box((0.3, 1.0, 0.3))  # tall along y, drawn with z up: it lies on its side
    for panel in panels(render_preview(box, up="z")):
        height, width = box_of(foreground(panel))
        assert height < width


def test_vertex_colours_are_drawn_and_a_plain_mesh_is_grey():
    red = render_preview(coloured(trimesh.creation.icosphere(3), (220, 20, 20)))
    plain = render_preview(trimesh.creation.icosphere(3))
    for panel in panels(red):
        pixels = panel[foreground(panel)].astype(int)
        assert np.median(pixels[:, 0] - pixels[:, 2]) > 60
    for panel in panels(plain):
        pixels = panel[foreground(panel)].astype(int)
        assert abs(np.median(pixels[:, 0] - pixels[:, 2])) < 30  # grey-blue, no hue of its own


def test_coloured_points_and_voxels_and_a_photo_as_the_first_panel():
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    points = box.sample(3000, seed=0)
    red = np.tile([[200, 10, 10]], (len(points), 1)).astype(np.uint8)
    first = panels(render_preview(box, InputView(points=points, colours=red)))[0]
    assert np.median(first[foreground(first)][:, 0].astype(int) - first[foreground(first)][:, 2]) > 60
    cells = np.argwhere(np.ones((4, 4, 4), bool)) * 0.25 - 0.375
    voxels = panels(render_preview(box, InputView(cells=cells, cell_size=0.25)))[0]
    assert 0.05 < foreground(voxels).mean() < 0.9
    photo = Image.new("RGB", (100, 50), (0, 0, 255))
    drawn = panels(render_preview(box, InputView(image=photo)))[0]
    assert drawn[PANEL_SIZE // 2, PANEL_SIZE // 2].tolist() == [0, 0, 255] and drawn[5, 5].tolist() == [255, 255, 255]


def test_write_preview_marks_its_file_and_never_replaces_another_picture(tmp_path):
    mesh = trimesh.creation.icosphere(2)
    target = write_preview(tmp_path / "m.png", mesh)
    assert is_preview(target) and Image.open(target).size == (3 * PANEL_SIZE, PANEL_SIZE)
    write_preview(target, mesh)  # its own earlier preview is replaced
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    with pytest.raises(PreviewError, match="not an occrecon preview"):
        write_preview(photo, mesh)
    with pytest.raises(PreviewError, match="the input itself"):
        write_preview(target, mesh, protect=(target,))
    assert not list(tmp_path.glob(".*.tmp"))


def sphere_xyz(path: Path, n: int = 2000) -> Path:
    rng = np.random.default_rng(0)
    p = rng.normal(size=(n, 3))
    np.savetxt(path, p / np.linalg.norm(p, axis=1, keepdims=True), fmt="%.6f")
    return path


def test_points_preview_is_named_in_json_and_written_beside_the_mesh(points_model, tmp_path, capsys):
    source = sphere_xyz(tmp_path / "ball.xyz")
    code, out, err = run(["points", source, "--model", points_model, "-d", tmp_path / "out", "--preview", "--json"], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert record["preview"] == str(tmp_path / "out" / "ball.png") and "preview" in record["timings"]
    picture = np.asarray(Image.open(record["preview"]))
    assert picture.shape == (PANEL_SIZE, 4 * PANEL_SIZE, 3)
    assert (tmp_path / "out" / "ball.obj").is_file()


def test_a_failed_preview_leaves_no_mesh(points_model, tmp_path, capsys):
    source = sphere_xyz(tmp_path / "ball.xyz")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    Image.new("RGB", (8, 8)).save(out_dir / "ball.png")  # someone's own picture where the preview would go
    code, out, err = run(["points", source, "--model", points_model, "-d", out_dir, "--preview", "--json"], capsys)
    assert code == 1 and "not an occrecon preview" in err
    assert not (out_dir / "ball.obj").exists()  # a rerun redoes it: nothing is taken for done


def test_image_and_voxel_previews(image_model, voxels_model, tmp_path, capsys):
    code, out, err = run(["image", EXAMPLES / "chair.png", "--model", image_model, "-d", tmp_path, "--preview", "--json", "-t", "0.05"], capsys)
    if json.loads(out)["status"] == "failed" and "no surface" in json.loads(out)["error"]:
        pytest.skip("the tiny random image model found no surface")
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "chair.png")).shape == (PANEL_SIZE, 4 * PANEL_SIZE, 3)
    grid = np.zeros((16, 16, 16), bool)
    grid[4:12, 2:14, 4:12] = True
    np.save(tmp_path / "tower.npy", grid)
    code, out, err = run(["voxels", tmp_path / "tower.npy", "--model", voxels_model, "-d", tmp_path / "v", "--preview", "--json"], capsys)
    assert code == 0, err
    first = panels(np.asarray(Image.open(json.loads(out)["preview"])))[0]
    height, width = box_of(foreground(first))
    assert height > width  # the grid's cells, in its own frame, y up


def test_preview_command_draws_any_mesh(tmp_path, capsys):
    trimesh.creation.box((0.3, 0.3, 1.0)).export(tmp_path / "post.ply")
    code, out, err = run(["preview", tmp_path / "post.ply", "--up", "z", "--json"], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "ok" and record["preview"] == str(tmp_path / "post.png")
    for panel in panels(np.asarray(Image.open(tmp_path / "post.png"))):
        height, width = box_of(foreground(panel))
        assert height > 1.8 * width
    code, out, err = run(["preview", tmp_path / "missing.obj"], capsys)
    assert code == 1 and "missing.obj" in err
