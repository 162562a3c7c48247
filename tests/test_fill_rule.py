"""Voxel grids filled by the centre rule (a cell filled when its centre is inside) as well as by binvox's (any part inside)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import occrecon
from occrecon.errors import OptionError
from occrecon.io.readers import VoxelGrid
from occrecon.loading import read_config
from occrecon.options import ReconstructOptions
from occrecon.preprocess import prepare_input
from occrecon.preprocess.voxels import centre_to_any, detect_fill_rule, prepare_voxels

ROOT = Path(__file__).resolve().parents[1]


def _centres(res: int) -> np.ndarray:
    c = (np.arange(res) + 0.5) / res - 0.5
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)


def sphere_grids(res: int = 32, radius: float = 0.4, centre=(0.013, -0.021, 0.007)) -> dict[str, np.ndarray]:
    """A ball over the unit cube, voxelised both ways exactly: by its centres, and by whether it touches each cell's box."""
    centres = _centres(res) - np.asarray(centre)
    half = 0.5 / res
    nearest = np.clip(centres, -half, half)  # the point of each cell's box nearest the ball's centre, relative to the cell
    gap = np.linalg.norm(centres - nearest, axis=-1)
    return {"centre": np.linalg.norm(centres, axis=-1) < radius, "any": gap < radius}


def rod_grids(res: int = 32, radius: float = 0.012) -> dict[str, np.ndarray]:
    """A rod thinner than a cell along the diagonal of the x-y plane, voxelised both ways (the any rule on a fine lattice)."""
    def inside(points: np.ndarray) -> np.ndarray:
        direction = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
        points = points - np.array([0.0, 0.0, 0.5 / res])  # through a row of cell centres
        along = points @ direction
        return (np.linalg.norm(points - along[..., None] * direction, axis=-1) < radius) & (np.abs(along) < 0.45)

    offsets = (np.arange(9) / 8 - 0.5) / res  # 9³ points per cell, corners included
    grid = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3)
    touched = np.zeros((res, res, res), dtype=bool)
    for offset in grid:
        touched |= inside(_centres(res) + offset)
    return {"centre": inside(_centres(res)), "any": touched}


def test_centre_to_any_recovers_most_of_the_cells_the_centre_rule_left_out():
    grids = sphere_grids()
    centre, binvox = grids["centre"], grids["any"]
    assert (binvox & ~centre).sum() > 1000  # the half cell the centre rule erodes: a whole layer
    converted = centre_to_any(centre)
    assert converted.dtype == np.float32 and set(np.unique(converted)) <= {0.0, 0.5, 1.0}
    assert np.all(converted[centre] == 1.0)  # a centre inside means the cell is touched
    before = np.abs(centre.astype(np.float32) - binvox).sum()
    after = np.abs(converted - binvox).sum()
    assert after < 0.6 * before


def test_the_rule_is_found_where_a_thin_part_shows_it_and_nowhere_else():
    rod = rod_grids()
    assert detect_fill_rule(rod["centre"])[0] == "centre"
    assert detect_fill_rule(rod["any"])[0] == "any"
    ball = sphere_grids()
    assert detect_fill_rule(ball["any"])[0] == "any"
    rule, why = detect_fill_rule(ball["centre"])  # a thick part holds no evidence: read as binvox's rule
    assert rule == "any" and "no thin part" in why


def test_auto_converts_arrays_that_show_the_centre_rule_but_never_binvox_files():
    rod = rod_grids()["centre"]
    spec = {"kind": "voxels", "resolution": 32}
    as_array = prepare_input("voxels", rod.astype(np.float32), spec, fill_rule="auto")
    assert (as_array.tensor.numpy() == 0.5).any()
    assert any("read as filled by the centre rule" in note for note in as_array.notes)
    as_binvox = prepare_input("voxels", VoxelGrid(rod, np.zeros(3), 1.0, "rod.binvox", "binvox"), spec, fill_rule="auto")
    assert set(np.unique(as_binvox.tensor.numpy())) == {0.0, 1.0}
    assert not any("fill" in note for note in as_binvox.notes)
    plain = prepare_input("voxels", sphere_grids()["centre"], spec, fill_rule="auto")
    assert any("--fill-rule centre if cells were filled when their centre is inside" in note for note in plain.notes)


def test_a_converted_grid_is_pooled_like_any_other_and_its_preview_shows_the_cells_taken_as_filled():
    fine = sphere_grids(res=64)["centre"]
    prepared = prepare_voxels(fine, resolution=32, fill_rule="centre")
    values = prepared.tensor.numpy()
    assert values.shape == (32, 32, 32) and set(np.unique(values)) <= {0.0, 0.5, 1.0} and (values == 0.5).any()
    assert np.array_equal(prepared.preview, values >= 0.5)
    # Finer than twice the model's grid, pooling alone is close to binvox's rule: left as it is, with a note.
    finer = prepare_voxels(sphere_grids(res=96)["centre"], resolution=32, fill_rule="centre")
    assert set(np.unique(finer.tensor.numpy())) == {0.0, 1.0}
    assert any("pooled" in note for note in finer.notes)


def test_the_model_reads_a_centre_rule_grid_without_eroding_it():
    model = occrecon.load_model("convonet-voxels-synthetic", "cpu")
    radius = 0.4
    true_volume = 4 / 3 * np.pi * radius**3 * 32**3  # in voxel-index units, as a plain array is read
    grid = sphere_grids(radius=radius)["centre"].astype(np.float32)
    volumes = {rule: occrecon.reconstruct(model, "voxels", grid, fill_rule=rule, upsampling_steps=1).mesh.volume for rule in ("any", "centre")}
    assert volumes["any"] < 0.9 * true_volume  # read as binvox's rule, the ball comes back eroded
    assert abs(volumes["centre"] / true_volume - 1) < abs(volumes["any"] / true_volume - 1) / 2


def test_the_fill_rule_is_a_voxels_setting_checked_with_its_flag():
    with pytest.raises(OptionError, match="--fill-rule must be one of any, centre, auto"):
        ReconstructOptions(fill_rule="corner").validate("voxels")
    with pytest.raises(OptionError, match="--fill-rule applies to voxel grids, not to points input"):
        ReconstructOptions(fill_rule="centre").validate("points")
    ReconstructOptions().validate("image")  # auto, the default, is let through everywhere
    config = read_config(ROOT / "weights" / "convonet-voxels-synthetic")
    assert ReconstructOptions(fill_rule="centre").resolve_config(config, "voxels", 4096).fill_rule == "centre"


def test_the_cli_takes_fill_rule_for_voxels_only(tmp_path: Path):
    command = [sys.executable, "-m", "occrecon.cli.main"]
    refused = subprocess.run(command + ["points", str(ROOT / "examples" / "chair_points.ply"), "--fill-rule", "centre", "-d", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--fill-rule" in refused.stderr
    bad = subprocess.run(command + ["voxels", str(ROOT / "examples" / "chair.binvox"), "--fill-rule", "corner", "-d", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--fill-rule must be one of" in bad.stderr
    assert not any(tmp_path.iterdir())
