"""Issue 27, item 8: ``occrecon eval`` scores a point-cloud prediction as a cloud, and names every missing file."""

from __future__ import annotations

import json

import pytest
import trimesh
import typer
from typer.testing import CliRunner

from occrecon.cli.eval import eval_command
from occrecon.evaluation import STATUS_CLOUD, evaluate_folders, evaluate_pair, load_mesh, mean_metrics

FAST = ["--samples", "5000", "--iou-points", "5000"]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("eval")(eval_command)

    @app.callback()
    def main() -> None:
        pass

    return app


def invoke(app, *args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


@pytest.fixture
def scan(tmp_path):
    """A sphere as ground truth and 4000 points on it, written as a PLY of points (no faces)."""
    gt = trimesh.creation.icosphere(subdivisions=4)
    gt.export(tmp_path / "gt.obj")
    points, _ = trimesh.sample.sample_surface(gt, 4000, seed=0)
    trimesh.PointCloud(points).export(tmp_path / "scan.ply")
    return tmp_path / "scan.ply", tmp_path / "gt.obj"


def test_a_cloud_is_read_with_its_points(scan):
    mesh = load_mesh(scan[0])
    assert len(mesh.vertices) == 4000 and len(mesh.faces) == 0


def test_a_cloud_is_scored_as_a_cloud_not_as_an_empty_mesh(app, scan):
    result = evaluate_pair(*scan, n_samples=5000, iou_points=5000)
    assert result.status == STATUS_CLOUD and result.evaluated and result.error is None
    metrics = result.metrics
    assert metrics.normal_consistency is None and metrics.iou is None
    assert metrics.accuracy < 0.02 and metrics.completeness < 0.02 and metrics.f_score[0.02] > 0.7
    assert "scored as a cloud" in metrics.notes[0]

    # A cloud off the surface scores worse: the numbers are the cloud's, not the worst values.
    shifted = scan[0].with_name("shifted.ply")
    trimesh.PointCloud(load_mesh(scan[0]).vertices * 1.2).export(shifted)
    worse = evaluate_pair(shifted, scan[1], n_samples=5000, iou_points=0)
    assert worse.status == STATUS_CLOUD and 0.02 < worse.metrics.accuracy < 1.0

    cli = invoke(app, *scan, "--json", *FAST)
    assert cli.exit_code == 0, cli.output
    (item,) = json.loads(cli.stdout)["items"]
    assert item["status"] == "point cloud" and item["normal_consistency"] is None and item["iou"] is None
    table = invoke(app, *scan, *FAST)
    assert table.exit_code == 0 and "point cloud" in table.stdout and "empty prediction" not in table.stdout


def test_the_mean_of_clouds_and_meshes_says_over_what_normals_are_taken(app, scan, tmp_path):
    preds, gts = tmp_path / "preds", tmp_path / "gts"
    preds.mkdir()
    gts.mkdir()
    scan[0].rename(preds / "a.ply")
    trimesh.creation.icosphere(subdivisions=4).export(preds / "b.obj")
    for stem in "ab":
        trimesh.creation.icosphere(subdivisions=4).export(gts / f"{stem}.obj")
    evaluation = evaluate_folders(preds, gts, n_samples=3000, iou_points=3000)
    mean = mean_metrics(evaluation.results)
    assert mean["count"] == 2 and mean["normal_consistency_count"] == 1 and mean["normal_consistency"] > 0.9
    table = invoke(app, preds, gts, *FAST)
    assert table.exit_code == 0, table.output
    assert "normal consistency mean over 1 of 2 items" in table.stdout


def test_two_missing_files_are_both_named_without_a_table(app, tmp_path):
    result = invoke(app, tmp_path / "pred.obj", tmp_path / "gt.obj", *FAST)
    assert result.exit_code == 1
    assert result.stdout == ""  # no table of worst values for files that are not there
    lines = result.stderr.strip().splitlines()
    assert lines == [f"Error: {tmp_path / 'pred.obj'}: file not found", f"Error: {tmp_path / 'gt.obj'}: file not found"]
    json_run = invoke(app, tmp_path / "pred.obj", tmp_path / "gt.obj", "--json")
    assert json_run.exit_code == 1 and json_run.stdout == ""


def test_a_cloud_as_ground_truth_is_refused_in_one_line(app, scan):
    result = invoke(app, scan[1], scan[0], *FAST)
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "scan.ply" in line
