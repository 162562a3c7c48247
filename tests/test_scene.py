"""Sliding-window scenes: tiling, point binning, seams across crops, units, real crop networks."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from occrecon.errors import InputError
from occrecon.io.crs import LinearUnits
from occrecon.io.readers import PointCloud
from occrecon.loading import OccupancyModel
from occrecon.nets import ARCHITECTURE_PRESETS, build_network
from occrecon.pipeline import ExtractionOptions, SceneOptions, reconstruct
from occrecon.scene import (
    CropGrid,
    FaceCache,
    PointBins,
    SceneSettings,
    detect_units,
    is_scene,
    plan_crops,
    reconstruct_scene,
)

# No trimming: the analytic surfaces below sit a few centimetres off their scan points.
SETTINGS = SceneSettings(unit_size=0.02, query_voxels=25, input_voxels=48, resolution=10, upsampling_steps=1, trim_voxels=None)


class AnalyticCropNet(torch.nn.Module):
    """Speaks the crop model's interface; its field is a floor slab whose height depends on the crop.

    The crop (input box) is recovered from ``p`` and ``p_n``; each crop shifts the
    surface a little, so crops that evaluated their shared faces independently
    would leave cracks.
    """

    def __init__(self, height: float = 0.5, wobble: float = 0.004):
        super().__init__()
        self.height, self.wobble = height, wobble
        self.encoded = 0

    def encode(self, inputs, batch_size: int = 1):
        self.encoded += 1
        return {"n": inputs["points"].shape[1]}

    def decode(self, p, c, z=None):
        points, normalized = p["p"], p["p_n"]["grid"]
        extent = SETTINGS.input_size
        lower = points - normalized * extent
        crop_shift = self.wobble * torch.sin(lower[..., 0] * 37.0 + lower[..., 2] * 11.0)
        return 50.0 * (self.height + crop_shift - points[..., 1])


def analytic_model(**kwargs) -> OccupancyModel:
    config = copy.deepcopy(ARCHITECTURE_PRESETS["convonet-scene"])
    return OccupancyModel(net=AnalyticCropNet(**kwargs), config=config, name="analytic", source="local", revision=None, path=None, device=torch.device("cpu"))


def floor_scan(n=20000, size=(2.0, 1.5), height=0.5, seed=0) -> np.ndarray:
    """A noisy horizontal floor plus one point at the origin, so that the model frame equals the scan's."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(0, size[0], n), np.full(n, height) + rng.normal(0, 0.002, n), rng.uniform(0, size[1], n)]
    return np.vstack([[0.0, 0.0, 0.0], floor])


def box_room(n=8000, size=(6.0, 2.6, 5.0), seed=0) -> np.ndarray:
    """A scan of a room from inside, y up, in metres: the floor, three walls and two boxes standing on the floor (no ceiling)."""
    rng = np.random.default_rng(seed)
    width, height, depth = size

    def patch(count, lower, upper):
        return rng.uniform(lower, upper, (count, 3))

    parts = [
        patch(int(0.35 * n), (0, 0, 0), (width, 0, depth)),  # floor
        patch(int(0.12 * n), (0, 0, 0), (0, height, depth)),  # walls at x = 0, x = width and z = 0
        patch(int(0.12 * n), (width, 0, 0), (width, height, depth)),
        patch(int(0.14 * n), (0, 0, 0), (width, height, 0)),
    ]
    for corner, box in (((1.0, 0.0, 1.5), (1.6, 0.8, 0.9)), ((3.5, 0.0, 3.0), (1.2, 0.5, 1.2))):
        lower, upper = np.asarray(corner), np.asarray(corner) + box
        for axis in range(3):  # the box's top and sides, not its bottom (it stands on the floor)
            for end in ((upper,) if axis == 1 else (lower, upper)):
                face = patch(int(0.015 * n), lower, upper)
                face[:, axis] = end[axis]
                parts.append(face)
    return np.vstack(parts) + rng.normal(scale=0.004, size=(sum(len(p) for p in parts), 3))


def test_crop_tiling_covers_the_scene():
    points = np.array([[0.0, 0.0, 0.0], [2.0, 0.3, 1.1]])
    grid = plan_crops(points, 0.5)
    assert grid.counts == (5, 1, 3)  # ceil((2 + 0.02) / 0.5), ceil(0.32 / 0.5), ceil(1.12 / 0.5)
    lo, hi = grid.query_box((4, 0, 2))
    assert np.all(hi >= points.max(axis=0)) and np.all(grid.lower <= points.min(axis=0))
    in_lo, in_hi = grid.input_box((0, 0, 0), 0.9)
    np.testing.assert_allclose((in_lo + in_hi) / 2, (grid.query_box((0, 0, 0))[0] + 0.25))
    assert list(grid)[:3] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]


def test_point_bins_match_a_brute_force_box_query():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 3, (5000, 3))
    bins = PointBins(points, plan_crops(points, 0.7))
    lo, hi = np.array([0.4, 1.0, 0.2]), np.array([1.9, 2.2, 2.9])
    expected = points[np.all((points >= lo) & (points < hi), axis=1)]
    got = bins.in_box(lo, hi)
    assert len(got) == len(expected)
    assert {tuple(p) for p in got} == {tuple(p) for p in expected}


def test_face_cache_hands_shared_faces_to_the_next_crops():
    cache = FaceCache()
    a = np.random.default_rng(0).random((5, 5, 5)).astype(np.float32)
    cache.store((0, 0, 0), a)
    preset = cache.preset((1, 0, 0), 4)
    np.testing.assert_array_equal(preset[0], a[-1])
    assert np.isnan(preset[1:]).all()
    diagonal = cache.preset((1, 1, 1), 4)
    assert diagonal[0, 0, 0] == a[-1, -1, -1] and np.isnan(diagonal[1:]).all()
    assert cache.preset((3, 0, 0), 4) is None
    cache.store((2, 0, 0), a)
    assert len(cache) == 1  # slab 0 is no longer anybody's lower neighbour


def test_plane_across_crop_borders_is_one_seamless_sheet():
    scan = floor_scan()
    result = reconstruct_scene(analytic_model(), scan, units="m", settings=SETTINGS)
    mesh = result.mesh
    assert result.n_crops > 4 and result.n_crops - result.n_skipped >= 4
    assert len(mesh.split(only_watertight=False)) == 1
    # The only open edges are on the outer border of the tiled region, none along crop borders.
    edges = mesh.edges_sorted
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = mesh.vertices[unique[counts == 1].ravel()]
    grid = plan_crops(scan, SETTINGS.query_size, margin=SETTINGS.border_voxels * SETTINGS.unit_size)
    tiled_lo = grid.lower
    tiled_hi = tiled_lo + np.asarray(grid.counts) * SETTINGS.query_size
    on_border = np.isclose(boundary[:, 0], tiled_lo[0], atol=1e-6) | np.isclose(boundary[:, 0], tiled_hi[0], atol=1e-6)
    on_border |= np.isclose(boundary[:, 2], tiled_lo[2], atol=1e-6) | np.isclose(boundary[:, 2], tiled_hi[2], atol=1e-6)
    assert on_border.all()
    surface = 0.5 + np.log(4.0) / 50.0  # where 50·(0.5 - y) equals logit(0.2)
    assert np.all(np.abs(mesh.vertices[:, 1] - surface) < 0.006)


def test_lattice_reaches_beyond_the_scan_so_edge_surfaces_close():
    # The scan's floor points lie at its lowest y: without a border the surface slightly
    # below them would fall outside the lattice and the floor would be lost.
    scan = floor_scan(n=8000, size=(1.2, 0.8), height=0.0)
    model = analytic_model(height=-0.02, wobble=0.0)
    mesh = reconstruct_scene(model, scan, units="m", settings=SETTINGS).mesh
    # The field is defined in the model frame, shifted by whole voxels to the scan's minimum.
    origin = np.floor(scan[:, 1].min() / SETTINGS.unit_size) * SETTINGS.unit_size
    assert np.all(np.abs(mesh.vertices[:, 1] - (origin - 0.02 + np.log(4.0) / 50.0)) < 0.006)
    assert mesh.area > 0.9 * 1.2 * 0.8
    # Centred tiling: the flat scan's one row of crops reaches half a crop below it.
    bare = dataclasses.replace(SETTINGS, border_voxels=0.0)
    assert reconstruct_scene(model, scan, units="m", settings=bare).mesh.area > 0.9 * 1.2 * 0.8


@pytest.mark.parametrize("extent", [0.49, 0.5, 0.51, 1.79, 3.3])
def test_tiling_needs_no_more_crops_than_upstreams_and_is_centred(extent):
    size, margin = 0.5, 0.01
    points = np.array([[0.0, 0.0, 0.0], [extent, 0.2, 1.0]])
    grid = plan_crops(points, size, margin=margin)
    upstream = [math.ceil((e + 2 * 0.01) / size) for e in (extent, 0.2, 1.0)]  # bounds ± 0.01, ceil(extent / size)
    assert list(grid.counts) == upstream
    tiled_hi = grid.lower + np.asarray(grid.counts) * size
    np.testing.assert_allclose(points.min(axis=0) - grid.lower, tiled_hi - points.max(axis=0))
    assert np.all(points.min(axis=0) - grid.lower >= margin - 1e-12)


class SlabCropNet(AnalyticCropNet):
    """A 20 cm slab whose top face is scanned and whose underside is not."""

    def decode(self, p, c, z=None):
        y = p["p"][..., 1]
        return 50.0 * torch.minimum(self.height - y, y - (self.height - 0.2))


def test_surface_the_scan_cannot_see_is_trimmed_unless_asked():
    scan = floor_scan(n=8000, size=(1.2, 0.8))
    model = OccupancyModel(net=SlabCropNet(), config=analytic_model().config, name="slab", source="local", revision=None, path=None, device=torch.device("cpu"))
    trimmed = reconstruct_scene(model, scan, units="m", settings=dataclasses.replace(SETTINGS, trim_voxels=2.5)).mesh
    kept = reconstruct_scene(model, scan, units="m", settings=SETTINGS).mesh
    top, bottom = 0.5 + np.log(4.0) / 50.0, 0.3 - np.log(4.0) / 50.0  # where the field crosses logit(0.2)
    assert np.all(np.abs(trimmed.vertices[:, 1] - top) < 0.01)
    assert np.any(np.abs(kept.vertices[:, 1] - bottom) < 0.01) and np.any(np.abs(kept.vertices[:, 1] - top) < 0.01)
    assert len(trimmed.vertices) == len(np.unique(trimmed.faces))  # no vertex left without a face
    # Through the public API: trim=False keeps the underside.
    from occrecon.pipeline import reconstruct_points

    api = reconstruct_points(model, scan, units="m", trim=False)
    assert api.bounds[0, 1] < bottom + 0.01


def test_empty_crops_are_skipped_and_refinement_stays_near_points():
    model = analytic_model()
    sparse = floor_scan(n=4000, size=(0.3, 0.3))
    far = np.array([[3.0, 0.5, 3.0]])
    result = reconstruct_scene(model, np.vstack([sparse, far]), units="m", settings=SETTINGS)
    assert result.n_skipped > 0.8 * result.n_crops
    assert model.net.encoded == result.n_crops - result.n_skipped


@pytest.mark.parametrize(("unit", "factor"), [("m", 1.0), ("cm", 100.0), ("mm", 1000.0)])
def test_units_give_the_same_scene_in_the_input_frame(unit, factor):
    scan = floor_scan(n=8000, size=(1.2, 0.8))
    reference = reconstruct_scene(analytic_model(wobble=0.0), scan, units="m", settings=SETTINGS).mesh
    scaled = reconstruct_scene(analytic_model(wobble=0.0), scan * factor, units=unit, settings=SETTINGS).mesh
    np.testing.assert_allclose(scaled.bounds / factor, reference.bounds, atol=1e-6)
    assert len(scaled.faces) == len(reference.faces)


def test_unit_detection_and_scene_detection():
    room_mm = floor_scan() * np.array([3000.0, 1.0, 3000.0]) + np.array([0, 2500.0, 0])
    room_mm[:, 1] = np.random.default_rng(0).uniform(0, 2500, len(room_mm))
    per_metre, note = detect_units(room_mm, None)
    assert per_metre == 1000.0 and "millimetres" in note
    assert detect_units(floor_scan(), None) == (1.0, None)
    assert detect_units(floor_scan(), "cm")[0] == 100.0
    with pytest.raises(ValueError, match="--units"):
        detect_units(floor_scan(), "furlong")
    bunny = np.random.default_rng(0).uniform(0, 0.15, (100, 3))
    assert not is_scene(bunny) and is_scene(floor_scan(size=(8.0, 5.0)))


def test_voxel_size_rescales_the_crops():
    scan = floor_scan(n=8000, size=(2.0, 2.0))
    fine = reconstruct_scene(analytic_model(wobble=0.0), scan, units="m", settings=SETTINGS)
    # Twice the voxel size halves the scan in the model frame: the floor sits at model height 0.25.
    coarse_model = analytic_model(height=0.25 - np.log(4.0) / 50.0, wobble=0.0)
    coarse = reconstruct_scene(coarse_model, scan, units="m", voxel_size=0.04, settings=SETTINGS)
    assert coarse.n_crops < fine.n_crops
    np.testing.assert_allclose(coarse.mesh.vertices[:, 1].mean(), 0.5, atol=0.005)


def test_real_crop_network_runs_through_the_sliding_window():
    config = copy.deepcopy(ARCHITECTURE_PRESETS["convonet-scene"])
    kwargs = config["architecture"]["encoder_kwargs"]
    kwargs["grid_resolution"] = SETTINGS.input_voxels
    kwargs["unet3d_kwargs"].update(num_levels=2, f_maps=8)
    torch.manual_seed(0)
    net = build_network(config["architecture"]).eval()
    model = OccupancyModel(net=net, config=config, name="tiny", source="local", revision=None, path=None, device=torch.device("cpu"))
    scan = floor_scan(n=6000, size=(1.0, 0.8))
    # Random weights: put the threshold at the median logit so that a surface exists.
    settings = SceneSettings(**{**SETTINGS.__dict__, "threshold": 0.5})
    with torch.no_grad():
        net.decoder.fc_out.bias.zero_()
        probe = reconstruct_probe(model, scan)
        net.decoder.fc_out.bias -= probe
    result = reconstruct_scene(model, scan, units="m", settings=settings)
    assert len(result.mesh.faces) > 0
    assert np.all(result.mesh.bounds[0] >= scan.min(axis=0) - SETTINGS.query_size)


def reconstruct_probe(model: OccupancyModel, scan: np.ndarray) -> float:
    """Median logit of the network around the scan (to calibrate a random network)."""
    from occrecon.nets.coords import crop_index, crop_normalize

    lo = scan.min(axis=0) - 0.1
    hi = lo + SETTINGS.input_size
    points = torch.from_numpy(scan[np.all(scan < hi, axis=1)].astype(np.float32))
    index = crop_index(points, lo, hi, SETTINGS.input_voxels, "grid").view(1, 1, -1)
    c = model.net.encode({"points": points[None], "index": {"grid": index}})
    q = torch.from_numpy(lo + np.random.default_rng(0).random((500, 3)) * SETTINGS.input_size).float()[None]
    logits = model.net.decode({"p": q, "p_n": {"grid": crop_normalize(q, lo, hi, "grid")}}, c)
    return float(logits.median())


def tiny_scene_model_folder(path: Path) -> Path:
    """A real crop architecture, small and calibrated so its random field has a surface near the scan."""
    from occrecon.loading import save_model_folder

    config = copy.deepcopy(ARCHITECTURE_PRESETS["convonet-scene"])
    config["name"] = "tiny-scene"
    kwargs = config["architecture"]["encoder_kwargs"]
    kwargs["grid_resolution"] = SETTINGS.input_voxels
    kwargs["unet3d_kwargs"].update(num_levels=2, f_maps=8)
    config["scene"].update(query_vol_size=SETTINGS.query_voxels, mise_resolution=10, mise_upsampling_steps=1)
    config["generation"]["threshold"] = 0.5
    torch.manual_seed(0)
    net = build_network(config["architecture"]).eval()
    model = OccupancyModel(net=net, config=config, name="tiny", source="local", revision=None, path=None, device=torch.device("cpu"))
    with torch.no_grad():
        net.decoder.fc_out.bias.zero_()
        net.decoder.fc_out.bias -= reconstruct_probe(model, floor_scan(n=6000, size=(1.0, 0.8)))
    return save_model_folder(net, config, path)


def test_points_command_runs_scene_models(tmp_path, capsys):
    import json

    from occrecon.cli.main import main

    folder = tiny_scene_model_folder(tmp_path / "scene-model")
    scan = floor_scan(n=6000, size=(1.0, 0.8)) * 1000.0
    np.save(tmp_path / "room.npy", scan)
    with pytest.raises(SystemExit) as exit_info:
        main(["points", str(tmp_path / "room.npy"), "--model", str(folder), "--units", "mm", "-d", str(tmp_path), "--json", "-q"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    record = json.loads(out)
    assert record["status"] == "ok" and any("crops reconstructed" in n for n in record["notes"])
    mesh = trimesh.load(record["output"], force="mesh")
    assert mesh.bounds[1][0] > 500  # millimetres in, millimetres out


def test_scene_flag_needs_a_scene_model(tmp_path, capsys):
    from occrecon.cli.main import main
    from tiny_models import save_tiny_model

    folder = save_tiny_model("points", tmp_path / "object-model")
    np.save(tmp_path / "room.npy", floor_scan(n=500))
    with pytest.raises(SystemExit) as exit_info:
        main(["points", str(tmp_path / "room.npy"), "--model", str(folder), "--scene"])
    assert exit_info.value.code == 2 and "--scene needs a scene model" in capsys.readouterr().err


def test_large_clouds_switch_to_the_scene_model_automatically(tmp_path):
    from occrecon.loading import load_model
    from occrecon.pipeline import SceneOptions, reconstruct
    from tiny_models import save_tiny_model

    object_model = load_model(save_tiny_model("points", tmp_path / "object-model"), "cpu")
    scene_model = load_model(tiny_scene_model_folder(tmp_path / "scene-model"), "cpu")
    loads = []

    def load_scene():
        loads.append(1)
        return scene_model

    options = SceneOptions(scene_model=load_scene, units="m")
    small = reconstruct(object_model, "points", floor_scan(n=3000, size=(1.0, 0.8)), scene=options)
    assert not any("crops" in n for n in small.notes) and not loads
    assert not any("--scene" in n for n in small.notes)
    # A small room stays an object by the extent rule, with a note saying how to make it a scene.
    corner = reconstruct(object_model, "points", floor_scan(n=3000, size=(2.5, 2.0)), scene=options)
    assert "reconstructed as one object: 2.50 m across, under the 4 m at which clouds count as scenes; if it is a room or a part of one, --scene reconstructs it with the scene model" in corner.notes
    chosen = reconstruct(object_model, "points", floor_scan(n=3000, size=(2.5, 2.0)), scene=SceneOptions(scene=False, scene_model=load_scene, units="m"))
    assert not any("--scene" in n for n in chosen.notes) and not loads
    # Over 4 m across, yet most crops are empty (and skipped): one far point is enough.
    big = np.vstack([floor_scan(n=3000, size=(1.0, 0.8)), [[4.5, 0.5, 0.2]]])
    result = reconstruct(object_model, "points", big, scene=options)
    assert any("crops reconstructed" in n for n in result.notes) and loads == [1]
    assert not any("ignored" in n for n in result.notes)
    # Object-cloud options asked for on a scene are not silently dropped.
    asked = reconstruct(object_model, "points", big, scene=options, rotations=4, fit_steps=10)
    assert "--rotations and --fit-steps apply to object clouds, not the scene's sliding window: ignored" in asked.notes
    asked = reconstruct(object_model, "points", big, scene=options, rotations=4, fit_steps=10, winding=True)
    assert "--rotations, --fit-steps and --winding-prior apply to object clouds, not the scene's sliding window: ignored" in asked.notes


def test_missing_scene_model_is_a_setup_error(tmp_path, capsys, monkeypatch):
    from occrecon.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("occrecon.registry.default_model", lambda task: {"points": str(tiny_object), "scene": "convonet-scene"}[task])
    from tiny_models import save_tiny_model

    tiny_object = save_tiny_model("points", tmp_path / "object-model")
    np.save(tmp_path / "hall.npy", box_room(size=(9.0, 2.6, 5.0)))
    with pytest.raises(SystemExit) as exit_info:
        main(["points", str(tmp_path / "hall.npy"), "-d", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "convonet-scene" in err and "occrecon models download" in err
    assert not (tmp_path / "hall.obj").exists()


def test_a_scene_model_loaded_on_first_need_does_not_repeat_the_start_up_notes(tmp_path, capsys, monkeypatch):
    import torch

    from occrecon.cli.main import main
    from tiny_models import save_tiny_model

    tiny_object = save_tiny_model("points", tmp_path / "object-model")
    tiny_scene = tiny_scene_model_folder(tmp_path / "scene-model")
    monkeypatch.setattr("occrecon.registry.default_model", lambda task: {"points": str(tiny_object), "scene": str(tiny_scene)}[task])
    np.save(tmp_path / "hall.npy", box_room(size=(9.0, 2.6, 5.0)))
    with pytest.raises(SystemExit) as exit_info:
        main(["points", str(tmp_path / "hall.npy"), "-d", str(tmp_path), "--units", "m"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 0, err
    assert "scene: " in err and (tmp_path / "hall.obj").is_file()  # the scene path ran, with the model loaded then
    gpu_notes = [line for line in err.splitlines() if "no GPU found" in line]
    assert len(gpu_notes) == (0 if torch.cuda.is_available() or torch.backends.mps.is_available() else 1), err


def test_crops_near_are_the_crops_with_a_point_within_reach_in_raster_order():
    points = np.random.default_rng(2).uniform(0, 3, (300, 3))
    grid = plan_crops(points, 0.5)
    reach = 0.12
    exact = []
    for ijk in grid:
        lo, hi = grid.query_box(ijk)
        if np.any(np.all((points >= lo - reach) & (points < hi + reach), axis=1)):
            exact.append(ijk)
    assert 0 < len(exact) < len(grid)
    assert grid.crops_near(points, reach) == exact


def test_a_kilometre_wide_scan_visits_only_the_crops_near_its_points(monkeypatch):
    def every_crop(grid):
        raise AssertionError("walked all the tiling's crops")

    monkeypatch.setattr(CropGrid, "__iter__", every_crop)
    model = analytic_model()
    patch = floor_scan(n=2000, size=(0.3, 0.3))
    scan = np.vstack([patch, patch + [1000.0, 0.0, 600.0]])
    result = reconstruct_scene(model, scan, units="m", settings=SETTINGS)
    assert result.n_crops > 4_000_000  # 2001 m / 0.5 m crops × 1201 m / 0.5 m × 2
    assert model.net.encoded == result.n_crops - result.n_skipped < 40
    assert result.mesh.bounds[0, 0] < 1.0 and result.mesh.bounds[1, 0] > 1000.0


def test_a_scan_far_sparser_than_the_voxel_gets_a_note():
    model = analytic_model()
    grid = np.stack(np.meshgrid(np.arange(0, 2.01, 0.2), [0.5], np.arange(0, 2.01, 0.2), indexing="ij"), -1).reshape(-1, 3)
    sparse = reconstruct_scene(model, np.vstack([[0.0, 0.0, 0.0], grid]), units="m", settings=SETTINGS)
    assert any("0.2 m apart (median), 10 voxels of 0.02 m" in note and "--voxel-size 0.2 suits" in note for note in sparse.notes)  # units given: no --units hint
    dense = reconstruct_scene(analytic_model(), floor_scan(n=20000), units="m", settings=SETTINGS)
    assert not any("apart" in note for note in dense.notes)


def test_header_units_scale_each_axis_and_come_back_in_the_input_frame():
    # LAS scans are z-up; a US one may be in feet across and metres up. Here the floor's
    # normal is the scan's y, so y is a horizontal axis in feet, z the vertical in metres.
    scan = floor_scan(n=8000, size=(1.2, 0.8))
    reference = reconstruct_scene(analytic_model(wobble=0.0), scan, units="m", settings=SETTINGS).mesh
    mixed = LinearUnits(0.3048, 1.0, "foot", "metre", origin="LAS header (WKT)")
    to_file = 1.0 / np.array([0.3048, 0.3048, 1.0])
    result = reconstruct_scene(analytic_model(wobble=0.0), scan * to_file, units=mixed, settings=SETTINGS)
    np.testing.assert_allclose(result.mesh.bounds / to_file, reference.bounds, atol=1e-6)
    assert len(result.mesh.faces) == len(reference.faces)
    assert "units from the LAS header (WKT): x, y in foot (0.3048 m), z in metre" in result.notes
    assert detect_units(scan, LinearUnits(0.3048, 0.3048, "foot", "foot"))[0] == pytest.approx(1 / 0.3048)
    # 13 units across: a scene in metres, a 4 m object in feet.
    room = floor_scan(size=(13.0, 5.0))
    assert is_scene(room) and not is_scene(room, LinearUnits(0.3048, 0.3048, "foot", "foot"))


def test_reconstruct_takes_a_cloud_s_header_units_unless_told_otherwise():
    # The analytic floor lies 0.5 m up in the model frame; the scan's floor is 0.5 m up, written in feet.
    scan = floor_scan(n=8000, size=(1.2, 0.8)) / 0.3048
    cloud = PointCloud(points=scan, source="scan.las", units=LinearUnits(0.3048, 0.3048, "foot", "foot", origin="LAS header (WKT)"))
    in_feet = reconstruct(analytic_model(wobble=0.0), "points", cloud, options=ExtractionOptions(threshold=0.5))
    assert any(note.startswith("units from the LAS header (WKT): foot") for note in in_feet.notes)
    np.testing.assert_allclose(in_feet.mesh.vertices[:, 1], 0.5 / 0.3048, atol=0.02 / 0.3048)
    # Read as metres (--units m), the scan's floor is 1.64 m up, far from the model's.
    with pytest.raises(InputError, match="no surface found"):
        reconstruct(analytic_model(wobble=0.0), "points", cloud, options=ExtractionOptions(threshold=0.5), scene=SceneOptions(units="m"))


def test_notes_about_the_input_are_heard_before_the_crops_run():
    model = analytic_model()
    heard: list[tuple[int, str]] = []
    crops_done = [0]
    grid = np.stack(np.meshgrid(np.arange(0, 2.01, 0.2), [0.5], np.arange(0, 2.01, 0.2), indexing="ij"), -1).reshape(-1, 3)
    result = reconstruct_scene(
        model,
        np.vstack([[0.0, 0.0, 0.0], grid]),
        units=None,
        settings=SETTINGS,
        on_crop=lambda done, total: crops_done.__setitem__(0, done),
        on_note=lambda note: heard.append((crops_done[0], note)),
    )
    assert [note for _, note in heard] == [note for note in result.notes if "apart" in note]
    assert heard and all(done == 0 for done, _ in heard)
    assert "--voxel-size 0.2 (or --units if the scan is not in metres) suits" in heard[0][1]  # metres were assumed


def test_points_command_prints_a_scene_s_notes_once_and_before_its_result(tmp_path, capsys):
    from occrecon.cli.main import main

    folder = tiny_scene_model_folder(tmp_path / "scene-model")
    grid = np.stack(np.meshgrid(np.arange(0, 2.01, 0.2), [0.5], np.arange(0, 2.01, 0.2), indexing="ij"), -1).reshape(-1, 3)
    np.save(tmp_path / "sparse.npy", np.vstack([[0.0, 0.0, 0.0], grid]))
    with pytest.raises(SystemExit) as exit_info:
        main(["points", str(tmp_path / "sparse.npy"), "--model", str(folder), "--scene", "--units", "m", "-d", str(tmp_path)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "apart (median)" in line]
    assert len(lines) == 1 and "sparse.npy: the points lie 0.2 m apart" in lines[0], err
    # Printed while the crops ran, when it could still save a long run; not again with the result.
    assert exit_info.value.code == 0 and err.index(lines[0]) < err.index("→"), err


def test_an_object_cloud_with_z_in_other_units_keeps_its_proportions(tmp_path):
    from tiny_models import save_tiny_model

    from occrecon.loading import load_model

    model = load_model(str(save_tiny_model("points", tmp_path / "tiny")), "cpu")
    rng = np.random.default_rng(0)
    ball = rng.normal(size=(3000, 3))
    ball = 0.4 * ball / np.linalg.norm(ball, axis=1, keepdims=True)  # a 0.8 m ball, in metres
    feet_metres = LinearUnits(0.3048, 1.0, "foot", "metre")
    file_points = ball * np.array([1 / 0.3048, 1 / 0.3048, 1.0])
    stretched = reconstruct(model, "points", PointCloud(points=file_points, units=feet_metres), rotations=1, fit_steps=0, winding=False, anchor_points=False, options=ExtractionOptions(threshold=0.2))
    plain = reconstruct(model, "points", PointCloud(points=ball / 0.3048), rotations=1, fit_steps=0, winding=False, anchor_points=False, options=ExtractionOptions(threshold=0.2))
    # The same shape in feet, except z, which comes back in metres.
    np.testing.assert_allclose(stretched.mesh.vertices * np.array([1.0, 1.0, 1 / 0.3048]), plain.mesh.vertices, atol=1e-4)
    assert any(note.startswith("z (metre) scaled by 3.28084 into the unit of x and y (foot)") for note in stretched.notes)


@pytest.mark.parametrize("up", ["z", "-z", "x", "-y"])
def test_a_scan_with_another_up_axis_is_turned_y_up_and_back(up):
    from occrecon.frames import up_rotation

    scan = floor_scan(n=8000, size=(1.2, 0.8))  # y up, as the crop models' rooms
    reference = reconstruct_scene(analytic_model(wobble=0.0), scan, units="m", settings=SETTINGS)
    turn = up_rotation(up)
    file_frame = scan @ turn  # the same scan with `up` pointing up
    result = reconstruct_scene(analytic_model(wobble=0.0), file_frame, units="m", up=up, settings=SETTINGS)
    np.testing.assert_allclose(result.mesh.vertices @ turn.T, reference.mesh.vertices, atol=1e-9)
    np.testing.assert_array_equal(result.mesh.faces, reference.mesh.faces)
    assert f"{up} up: turned y-up for the network (its rooms are y-up), and back" in result.notes
    # Read as y-up, the floor stands on its edge and the analytic field finds another surface, or none.
    try:
        wrong = reconstruct_scene(analytic_model(wobble=0.0), file_frame, units="m", settings=SETTINGS).mesh
        assert not np.allclose(wrong.bounds, result.mesh.bounds, atol=1e-3)
    except InputError:
        pass


def test_up_axis_rotations_are_proper_quarter_turns():
    from occrecon.frames import UP_AXES, up_rotation

    for up in UP_AXES:
        turn = up_rotation(up)
        axis = np.zeros(3)
        axis["xyz".index(up[-1])] = -1.0 if up.startswith("-") else 1.0
        np.testing.assert_array_equal(turn @ axis, [0.0, 1.0, 0.0])
        assert round(np.linalg.det(turn)) == 1 and set(np.abs(turn).ravel()) == {0.0, 1.0}  # faces keep their winding
    with pytest.raises(ValueError, match="up must be one of"):
        up_rotation("up")


def test_las_clouds_are_z_up_and_objects_turn_too(tmp_path):
    from tiny_models import save_tiny_model

    from occrecon.frames import up_rotation
    from occrecon.io.readers import read_points
    from occrecon.loading import load_model

    laspy = pytest.importorskip("laspy")
    rng = np.random.default_rng(0)
    blob = rng.normal(size=(3000, 3)) * np.array([0.3, 0.1, 0.2])  # flat along y: the turn matters
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = [1e-4] * 3, [0.0] * 3
    las = laspy.LasData(header)
    z_up = blob @ up_rotation("z")  # the blob with its thin axis along z
    las.x, las.y, las.z = z_up[:, 0], z_up[:, 1], z_up[:, 2]
    las.write(str(tmp_path / "blob.las"))
    cloud = read_points(tmp_path / "blob.las")
    assert cloud.up == "z" and read_points(_write_xyz(tmp_path / "blob.xyz", z_up)).up is None
    model = load_model(str(save_tiny_model("points", tmp_path / "tiny")), "cpu")
    plain = dict(rotations=1, fit_steps=0, winding=False, anchor_points=False, input_noise=0.0, options=ExtractionOptions(threshold=0.2))
    turned = reconstruct(model, "points", cloud, **plain)
    upright = reconstruct(model, "points", cloud.points @ up_rotation("z").T, **plain)
    np.testing.assert_allclose(turned.mesh.vertices @ up_rotation("z").T, upright.mesh.vertices, atol=2e-3)
    assert "z up: turned y-up for the network, and back" in turned.notes
    as_given = reconstruct(model, "points", cloud, scene=SceneOptions(up="y"), **plain)
    assert not any("turned" in note for note in as_given.notes)


def _write_xyz(path: Path, points: np.ndarray) -> Path:
    np.savetxt(path, points)
    return path


def test_points_command_refuses_an_unknown_up_axis(tmp_path, capsys):
    from occrecon.cli.main import main

    np.save(tmp_path / "room.npy", floor_scan(n=500))
    with pytest.raises(SystemExit) as exit_info:
        main(["points", str(tmp_path / "room.npy"), "--up", "w", "-d", str(tmp_path)])
    assert exit_info.value.code == 2 and "--up must be one of y, z, x, -y, -z, -x" in capsys.readouterr().err
    assert not list(tmp_path.glob("room.*[!y]"))  # no mesh written


def test_a_scan_stored_another_way_up_is_turned_from_its_points_with_a_note_before_the_crops():
    from occrecon.frames import up_rotation

    z_up = box_room(n=6000, size=(1.6, 1.0, 1.2)) @ up_rotation("z")  # a room stored z-up, as ScanNet's and LiDAR's are
    told: list[str] = []
    notes = reconstruct_scene(analytic_model(), z_up, units="m", settings=SETTINGS, on_note=told.append).notes
    assert any(note.startswith("up axis found from the points: z") for note in notes) and any(note.startswith("up axis found") for note in told)
    as_given = reconstruct_scene(analytic_model(), z_up, units="m", up="y", settings=SETTINGS).notes
    assert not any("up axis" in note for note in as_given)  # --up y said so: no second-guessing
    flat = floor_scan(n=8000, size=(3.0, 2.0)) @ up_rotation("z")  # a bare floor: which side is up, the points cannot say
    assert not any("up" in note for note in reconstruct_scene(analytic_model(), flat, units="m", settings=SETTINGS).notes)
