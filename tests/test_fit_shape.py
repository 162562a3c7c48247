"""`occrecon fit` / `occrecon.fit_shape`: one network fitted to one mesh (issue #28)."""

from __future__ import annotations

import json
from pathlib import Path

import mcubes
import numpy as np
import pytest
import torch
import trimesh

import occrecon
from occrecon.config import ModelConfig
from occrecon.errors import InputError, InvalidModelFolderError
from occrecon.metrics import inside_mask, iou_from_occupancy
from occrecon.shape_fit import FitOptions, extract_shape, fit_shape, save_shape_model
from occrecon.shape_labels import LabelOptions

# Small enough to fit in seconds on a CPU; the defaults are far larger.
SMALL = dict(width=48, depth=3, steps=250, batch_size=2048, resolution=32, upsampling_steps=1,
             labels=LabelOptions(uniform=30_000, near=30_000), device="cpu")


def _mesh_of(shape, low: float, high: float, res: int = 64) -> trimesh.Trimesh:
    from occrecon.data.sdf import sdf_grid

    grid = sdf_grid(shape, [low] * 3, [high] * 3, res)
    vertices, faces = mcubes.marching_cubes(-grid, 0.0)  # inside positive
    return trimesh.Trimesh(low + vertices * (high - low) / res, faces)


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    # Off the origin and not of unit size: the fitted mesh must come back in this frame.
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=2.0)
    mesh.apply_translation([10.0, -5.0, 3.0])
    return mesh


@pytest.fixture(scope="module")
def box_with_hole() -> trimesh.Trimesh:
    from occrecon.data.sdf import Box, Cylinder

    return _mesh_of(Box((0.4, 0.2, 0.4)) - Cylinder(0.18, 0.5), -0.5, 0.5)


def _iou(fitted: trimesh.Trimesh, mesh: trimesh.Trimesh) -> float:
    low, high = mesh.bounds
    pad = 0.05 * (high - low).max()
    points = np.random.default_rng(1).uniform(low - pad, high + pad, size=(100_000, 3))
    return float(iou_from_occupancy(inside_mask(fitted, points), inside_mask(mesh, points)))


@pytest.mark.parametrize("activation", ["sine", "relu"])
def test_a_sphere_fits_in_its_own_frame(sphere, activation):
    fitted = fit_shape(sphere, FitOptions(activation=activation, **SMALL))
    assert _iou(fitted.mesh, sphere) >= 0.95
    largest = max(fitted.mesh.split(only_watertight=False), key=lambda part: len(part.faces))
    assert np.allclose(largest.bounds, sphere.bounds, atol=0.1)  # a small fit may leave specks; the sphere is where it was
    assert fitted.model.task == "shape" and fitted.model.config.architecture["activation"] == activation


def test_a_box_with_a_hole_keeps_its_hole(box_with_hole):
    fitted = fit_shape(box_with_hole, activation="sine", **SMALL)
    assert _iou(fitted.mesh, box_with_hole) >= 0.95
    # Genus 1: the hole stays open (a small fit may leave specks apart from the body; they are not the body).
    body = max(fitted.mesh.split(only_watertight=False), key=lambda part: len(part.faces))
    assert body.is_watertight and body.euler_number == 0


def test_a_saved_model_reloads_to_identical_logits_and_extracts_again(sphere, tmp_path):
    fitted = fit_shape(sphere, activation="relu", **SMALL)
    folder = save_shape_model(fitted, tmp_path / "model")
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    loaded = occrecon.load_model(folder, "cpu")
    points = torch.rand(1, 5000, 3) - 0.5
    assert torch.equal(loaded.eval_points(None, points), fitted.model.eval_points(None, points))
    finer = extract_shape(loaded, resolution=32, upsampling_steps=2)
    assert len(finer.faces) > len(fitted.mesh.faces)
    assert _iou(finer, sphere) >= 0.95


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    from occrecon.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


CLI_SMALL = ["--width", "32", "--depth", "2", "--steps", "150", "--batch-size", "2048", "--resolution", "32", "--upsampling-steps", "1", "--device", "cpu"]


def test_sine_never_falls_back_to_relu(sphere, tmp_path, capsys):
    from occrecon.nets.shape import SineLayer

    path = tmp_path / "sphere.ply"
    sphere.export(path)
    code, _, err = _run(["fit", str(path), "-o", str(tmp_path / "out.obj"), "--activation", "sine", "--save-model", str(tmp_path / "m"), *CLI_SMALL, "-q"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "m" / "config.json").read_text())["architecture"]["activation"] == "sine"
    net = occrecon.load_model(tmp_path / "m", "cpu").net
    assert any(isinstance(m, SineLayer) for m in net.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    # And no activation the builder does not know is ever replaced by another one.
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["architecture"]["activation"] = "tanh"
    with pytest.raises(InvalidModelFolderError, match="activation"):
        ModelConfig.from_dict(config)


def test_the_cli_writes_skips_and_reextracts(sphere, tmp_path, capsys):
    path = tmp_path / "sphere.obj"
    sphere.export(path)
    args = ["fit", str(path), "-d", str(tmp_path / "out"), "--save-model", str(tmp_path / "model"), *CLI_SMALL, "--json"]
    code, stdout, err = _run(args, capsys)
    assert code == 0, err
    row = json.loads(stdout.splitlines()[0])
    assert row["status"] == "ok" and row["output"] == str(tmp_path / "out" / "sphere.obj")
    code, stdout, _ = _run(args, capsys)
    assert code == 0 and json.loads(stdout.splitlines()[0])["status"] == "skipped"
    code, _, err = _run(["extract", str(tmp_path / "model"), "-o", str(tmp_path / "again.ply"), "--upsampling-steps", "2", "-q"], capsys)
    assert code == 0, err
    again = trimesh.load(tmp_path / "again.ply")
    largest = max(again.split(only_watertight=False), key=lambda part: len(part.faces))
    assert np.allclose(largest.bounds, sphere.bounds, atol=0.1)


def _bad_meshes(folder: Path) -> dict[str, str]:
    folder.mkdir()
    (folder / "empty.obj").write_text("")
    sheet = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]])
    sheet.export(folder / "open_sheet.obj")
    rng = np.random.default_rng(0)
    soup = trimesh.Trimesh(rng.uniform(size=(300, 3)), rng.integers(0, 300, size=(100, 3)), process=False)
    soup.export(folder / "soup.ply")
    return {"empty.obj": "no faces", "open_sheet.obj": "encloses no volume", "soup.ply": "encloses no volume"}


def test_bad_meshes_each_give_one_clear_line(tmp_path, capsys):
    expected = _bad_meshes(tmp_path / "bad")
    code, _, err = _run(["fit", str(tmp_path / "bad"), "-d", str(tmp_path / "out"), *CLI_SMALL, "-q"], capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 3 and len(err.splitlines()) == 3, err
    for name, problem in expected.items():
        assert sum(name in line and problem in line for line in errors) == 1, (name, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.obj"))


def test_the_api_raises_one_line_for_a_bad_mesh(tmp_path):
    _bad_meshes(tmp_path / "bad")
    with pytest.raises(InputError, match="encloses no volume") as info:
        fit_shape(tmp_path / "bad" / "open_sheet.obj", **SMALL)
    assert "\n" not in str(info.value) and "open_sheet.obj" in str(info.value)


def test_options_name_their_flag():
    with pytest.raises(ValueError, match="--activation"):
        FitOptions(activation="tanh").validate()
    with pytest.raises(ValueError, match="--width"):
        FitOptions(width=0).validate()
