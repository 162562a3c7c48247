"""benchmarks/quality.py end to end on two tiny meshes (the voxels task: the fastest; the image task for its viewpoints)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trimesh

ROOT = Path(__file__).resolve().parents[1]


def test_quality_benchmark_samples_the_outer_surface_unless_asked_for_all(tmp_path: Path) -> None:
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    box = trimesh.creation.box(extents=(0.8, 0.6, 0.8))
    box.export(meshes / "box.ply")
    trimesh.util.concatenate([box, trimesh.creation.box(extents=(0.7, 0.02, 0.7))]).export(meshes / "shelf.ply")
    runs = {}
    for flag in ("", "--all-surfaces"):
        out = tmp_path / f"q{flag}.json"
        command = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--meshes", str(meshes), "--only", "voxels", "--device", "cpu", "--json", str(out)]
        result = subprocess.run(command + ([flag] if flag else []), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        runs[flag] = {row["mesh"]: row for row in json.loads(out.read_text(encoding="utf-8"))["rows"]}
        assert ("shelf.ply+" in result.stdout) == (flag == "")
    outer, every = runs[""], runs["--all-surfaces"]
    assert outer["box.ply"]["buried_area"] == 0.0
    assert 0.2 < outer["shelf.ply"]["buried_area"] < 0.3  # 2 × 0.49 of 4.2 (unscaled)
    assert "buried_area" not in every["shelf.ply"]
    # The box has nothing buried: identical figures under both protocols.
    assert outer["box.ply"]["voxels"] == every["box.ply"]["voxels"]
    # The partition is no reference surface any more: completeness no longer counts it as missed.
    assert outer["shelf.ply"]["voxels"]["f_score_1"] > every["shelf.ply"]["voxels"]["f_score_1"]
    assert outer["shelf.ply"]["voxels"]["iou"] == every["shelf.ply"]["voxels"]["iou"]


def test_quality_benchmark_renders_each_mesh_from_its_own_viewpoints(tmp_path: Path) -> None:
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    trimesh.creation.box(extents=(0.8, 0.6, 0.8)).export(meshes / "box.ply")
    trimesh.creation.icosphere(subdivisions=3).export(meshes / "ball.ply")
    views = {}
    for flags in (["--image-views", "2"], ["--image-views", "1", "--shared-view"]):
        out = tmp_path / "q.json"
        command = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--meshes", str(meshes), "--only", "image", "--device", "cpu", "--samples", "5000", "--iou-points", "5000", "--json", str(out)]
        result = subprocess.run(command + flags, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        rows = {row["mesh"]: row for row in json.loads(out.read_text(encoding="utf-8"))["rows"]}
        views[flags[-1]] = {name: [view["azimuth"] for view in row["image_views"]] for name, row in rows.items()}
        for row in rows.values():
            # The mesh's scores are the mean of its views'.
            assert row["image"]["iou"] == pytest.approx(sum(view["iou"] for view in row["image_views"]) / len(row["image_views"]))
    own, shared = views["2"], views["--shared-view"]
    assert len(own["box.ply"]) == 2 and own["box.ply"][0] != own["box.ply"][1]
    assert own["box.ply"] != own["ball.ply"]
    assert shared["box.ply"] == shared["ball.ply"]
    assert abs(shared["box.ply"][0] - 102.3) < 0.1  # every mesh from the same side: the protocol before 2026-11-28 night


def test_heldout_write_threshold_makes_the_best_reconstruction_threshold_the_default(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from heldout import write_threshold

    from occrecon.loading import read_config
    from occrecon.training import model_card

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text((ROOT / "weights" / "convonet-points-synthetic" / "config.json").read_text(encoding="utf-8"))
    network_best = max(read_config(folder).training["threshold_sweep"]["iou"].items(), key=lambda item: item[1])[0]
    best = write_threshold(folder, {0.55: 0.9041, 0.45: 0.9065, 0.5: 0.9056}, "8-rotation ensemble", "2240-2303 (generator seed 0)")
    config = read_config(folder).to_dict()
    assert best == 0.45 and config["generation"]["threshold"] == 0.45
    assert config["training"]["reconstruction_threshold_sweep"]["iou"] == {"0.45": 0.9065, "0.5": 0.9056, "0.55": 0.9041}
    card = model_card(config)
    assert "Occupancy threshold 0.45: the best mean IoU of the default reconstruction (8-rotation ensemble) on held-out generated shapes 2240-2303" in card
    assert f"The network alone (one pass) has its best volumetric IoU at {network_best} on the held-out items" in card


def test_heldout_measures_an_image_model_on_renders_of_the_shapes(tmp_path: Path) -> None:
    out = tmp_path / "heldout.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "heldout.py"), "--model", "onet-img-synthetic", "--device", "cpu", "--rotations", "1", "--count", "2"]
    result = subprocess.run(command + ["--thresholds", "0.3,0.5", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert [row["index"] for row in rows] == [2240, 2241]
    for row in rows:
        assert 0.0 <= row["image t0.5"]["iou"] <= 1.0 and 0.0 <= row["image t0.3"]["iou"] <= 1.0
        # A lower threshold keeps more of the field: the surface moves outward.
        assert row["image t0.3"]["chamfer_l1"] != row["image t0.5"]["chamfer_l1"]
    refused = subprocess.run(command + ["--fit-steps", "60"], capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "image model" in refused.stderr


def test_quality_benchmark_scores_predictions_as_occrecon_eval_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import numpy as np
    from quality import scores

    from occrecon.metrics import evaluate_meshes, sample_surface, sealed_inside_mask, uniform_box_points

    gt = trimesh.creation.icosphere(subdivisions=4, radius=0.4)
    gt_points, _ = sample_surface(gt, 5000, seed=0)
    iou_points = uniform_box_points(20_000, 0)
    gt_inside = sealed_inside_mask(gt, iou_points)
    # An open sheet encloses nothing: IoU 0 in both, not the thin shell of its voxels.
    sheet = trimesh.Trimesh(gt.vertices, gt.faces[gt.triangles_center[:, 1] > 0.0], process=False)
    assert scores(sheet, gt_points, gt_inside, iou_points)["iou"] == 0.0
    assert evaluate_meshes(sheet, gt, n_samples=5000, iou_points=20_000).iou == 0.0
    # A triangle soup of a closed mesh (every face with vertices of its own, as STL stores it) is closed.
    soup = trimesh.Trimesh(gt.triangles.reshape(-1, 3), np.arange(len(gt.faces) * 3).reshape(-1, 3), process=False)
    assert scores(soup, gt_points, gt_inside, iou_points)["iou"] == pytest.approx(1.0, abs=0.01)
