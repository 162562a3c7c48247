"""``occrecon eval`` through a throwaway Typer app, plus the file/folder layer behind it."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import trimesh
import typer
from typer.testing import CliRunner

from occrecon.cli.eval import eval_command
from occrecon.errors import InputError
from occrecon.evaluation import evaluate_folders, evaluate_pair, match_folders, mean_metrics

FAST = ["--samples", "5000", "--iou-points", "20000"]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("eval")(eval_command)

    # A callback makes Typer keep "eval" as a subcommand, as in the real app.
    @app.callback()
    def main() -> None:
        pass

    return app


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def cube(shift_x: float = 0.0) -> trimesh.Trimesh:
    mesh = trimesh.creation.box()
    mesh.apply_translation((shift_x, 0.0, 0.0))
    return mesh


def sphere(radius: float) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=3, radius=radius)


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """GT: cube, sphere, lost, bad. Predictions: cube, sphere, bad (unreadable), extra (no GT)."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    cube().export(gt / "cube.obj")
    cube(0.25).export(pred / "cube.ply")  # another suffix on purpose: matching is by stem
    sphere(1.0).export(gt / "sphere.off")
    sphere(0.8).export(pred / "sphere.stl")
    sphere(1.0).export(gt / "lost.obj")
    cube().export(gt / "bad.obj")
    (pred / "bad.obj").write_text("v 1 2\nf 1 2 3\n", encoding="utf-8")
    sphere(1.0).export(pred / "extra.obj")
    (gt / "readme.txt").write_text("not a mesh", encoding="utf-8")
    return pred, gt


def test_pair_json_reports_metrics_and_units(app, tmp_path):
    cube(0.25).export(tmp_path / "pred.obj")
    cube().export(tmp_path / "gt.obj")
    result = invoke(app, tmp_path / "pred.obj", tmp_path / "gt.obj", "--json", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["normalized"] is True
    assert document["unit"] == "unit-cube (GT longest side = 1)"
    assert document["units"]["chamfer_l1_x10"].startswith("unit-cube units x 10")
    (item,) = document["items"]
    assert item["status"] == "ok" and item["name"] == "pred"
    assert item["iou"] == pytest.approx(0.75 / 1.25, abs=0.02)
    assert item["chamfer_l1_x10"] == pytest.approx(10 * item["chamfer_l1"])
    assert {"f_score@0.01", "f_score@0.015", "f_score@0.02", "precision@0.01", "recall@0.02"} <= set(item)
    assert document["mean"]["count"] == 1
    assert document["mean"]["chamfer_l1"] == pytest.approx(item["chamfer_l1"])


def test_table_names_units_and_the_x10_convention(app, tmp_path):
    sphere(0.8).export(tmp_path / "pred.obj")
    sphere(1.0).export(tmp_path / "gt.obj")
    result = invoke(app, tmp_path / "pred.obj", tmp_path / "gt.obj", *FAST)
    assert result.exit_code == 0, result.output
    out = result.stdout
    expected = ("accuracy", "[uc]", "[uc²]", "F@1%", "F@1.5%", "IoU", "Chamfer-L1 ×10", "mean (n=1)", "uc = unit-cube")
    for text in expected:
        assert text in out, text
    assert result.stderr == ""


def test_units_imply_metric_comparison(app, tmp_path):
    sphere(0.8).export(tmp_path / "pred.obj")
    sphere(1.0).export(tmp_path / "gt.obj")
    args = (tmp_path / "pred.obj", tmp_path / "gt.obj", "--units", "m", "--f-thresholds", "0.1,0.25", *FAST)
    table = invoke(app, *args)
    assert table.exit_code == 0, table.output
    assert "[m]" in table.stdout and "F@0.25 m" in table.stdout and "×10" not in table.stdout

    document = json.loads(invoke(app, *args, "--json").stdout)
    (item,) = document["items"]
    assert document["unit"] == "m" and document["normalized"] is False
    assert item["accuracy"] == pytest.approx(0.2, abs=0.01)
    assert item["f_score@0.1"] == 0.0 and item["f_score@0.25"] == 1.0
    assert item["chamfer_l1_x10"] is None


def test_folders_are_matched_by_stem(app, folders, tmp_path):
    pred, gt = folders
    csv_path = tmp_path / "scores.csv"
    result = invoke(app, pred, gt, "--json", "--csv", csv_path, *FAST)
    # A missing and an unreadable prediction are failures (exit 1) but the rest is evaluated.
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    status = {item["name"]: item["status"] for item in document["items"]}
    assert status == {
        "bad": "unreadable prediction",
        "cube": "ok",
        "lost": "missing prediction",
        "sphere": "ok",
    }
    items = {item["name"]: item for item in document["items"]}
    assert items["cube"]["pred"].endswith("cube.ply")
    assert items["lost"]["pred"] is None
    # Missing and unreadable predictions count in the mean with the worst values.
    assert items["lost"]["chamfer_l1"] == pytest.approx(math.sqrt(3))
    assert document["mean"]["count"] == 4
    expected_mean = sum(item["chamfer_l1"] for item in items.values()) / 4
    assert document["mean"]["chamfer_l1"] == pytest.approx(expected_mean)
    assert document["skipped"] == [f"{pred / 'extra.obj'}: no ground truth with this stem, skipped"]

    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("Error: ") for line in errors)
    assert any("bad.obj: cannot read mesh" in line for line in errors)
    assert any("lost.obj: no prediction with stem 'lost'" in line for line in errors)
    assert "Traceback" not in result.stderr

    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == ["bad", "cube", "lost", "sphere"]
    assert float(rows[1]["iou"]) == pytest.approx(items["cube"]["iou"])


def test_folder_table_and_quiet(app, folders):
    pred, gt = folders
    table = invoke(app, pred, gt, *FAST)
    assert table.exit_code == 1
    assert "missing prediction" in table.stdout and "mean (n=4)" in table.stdout
    assert "extra.obj: no ground truth with this stem, skipped" in table.stdout

    quiet = invoke(app, pred, gt, "--quiet", *FAST)
    assert quiet.exit_code == 1 and quiet.stdout == ""
    assert quiet.stderr.count("Error: ") == 2


def test_ambiguous_stems_fail_only_their_item(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    cube().export(gt / "a.obj")
    cube().export(gt / "a.ply")
    cube().export(pred / "a.obj")
    cube().export(gt / "b.obj")
    cube().export(pred / "b.obj")
    evaluation = evaluate_folders(pred, gt, n_samples=2000, iou_points=2000)
    by_name = {result.name: result for result in evaluation.results}
    assert by_name["a"].status == "failed" and "several meshes share this stem" in by_name["a"].error
    assert by_name["b"].status == "ok"
    assert not evaluation.all_evaluated
    assert mean_metrics(evaluation.results)["failed"] == 1


def test_match_folders_requires_meshes(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(InputError, match="no mesh files"):
        match_folders(tmp_path / "pred", tmp_path / "gt")


def test_empty_and_open_predictions_are_evaluated(app, tmp_path):
    (tmp_path / "empty.obj").write_text("", encoding="utf-8")
    sphere(1.0).export(tmp_path / "gt.obj")
    result = invoke(app, tmp_path / "empty.obj", tmp_path / "gt.obj", "--json", *FAST)
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.stdout)["items"]
    assert item["status"] == "empty prediction"
    assert item["iou"] == 0.0 and item["normal_consistency"] == 0.0

    mesh = sphere(1.0)
    trimesh.Trimesh(mesh.vertices, mesh.faces[5:]).export(tmp_path / "open.obj")
    pair = evaluate_pair(tmp_path / "open.obj", tmp_path / "gt.obj", n_samples=5000, iou_points=5000, open_meshes="skip")
    assert pair.status == "ok" and pair.metrics.iou is None
    assert "prediction not closed: IoU skipped" in pair.metrics.notes
    # By default an open mesh is sealed; this one's hole is too wide, so it encloses nothing.
    result = invoke(app, tmp_path / "open.obj", tmp_path / "gt.obj", "--json", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    (item,) = document["items"]
    assert document["open_meshes"] == "fill" and item["iou"] == 0.0
    assert "prediction not closed and encloses no volume even with its holes sealed: IoU 0" in item["notes"]
    skipped = json.loads(invoke(app, tmp_path / "open.obj", tmp_path / "gt.obj", "--json", "--open-meshes", "skip", *FAST).stdout)
    assert skipped["items"][0]["iou"] is None
    assert invoke(app, tmp_path / "open.obj", tmp_path / "gt.obj", "--open-meshes", "parity").exit_code == 2


def test_bad_ground_truth_is_one_error_line(app, tmp_path):
    sphere(1.0).export(tmp_path / "pred.obj")
    missing = invoke(app, tmp_path / "pred.obj", tmp_path / "nothere.obj", *FAST)
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"Error: {tmp_path / 'nothere.obj'}: file not found"

    (tmp_path / "empty_gt.obj").write_text("", encoding="utf-8")
    empty = invoke(app, tmp_path / "pred.obj", tmp_path / "empty_gt.obj", *FAST)
    assert empty.exit_code == 1
    assert empty.stderr.strip() == f"Error: {tmp_path / 'empty_gt.obj'}: ground truth mesh has no faces"
    with pytest.raises(InputError):
        evaluate_pair(tmp_path / "pred.obj", tmp_path / "empty_gt.obj")

    debug = invoke(app, tmp_path / "pred.obj", tmp_path / "nothere.obj", "--debug", *FAST)
    assert debug.exit_code == 1 and "Traceback" in debug.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("pred.obj", "."), "PRED must be a folder too"),
        ((".", "gt.obj"), "GT must be a folder too"),
        (("pred.obj", "gt.obj", "--f-thresholds", "0.01,abc"), "is not a number"),
        (("pred.obj", "gt.obj", "--f-thresholds", "-0.1"), "must be a positive distance"),
        (("pred.obj", "gt.obj", "--csv", "no/such/dir/out.csv"), "does not exist"),
    ],
)
def test_usage_errors_exit_2(app, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    cube().export(tmp_path / "pred.obj")
    cube().export(tmp_path / "gt.obj")
    result = invoke(app, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- hostile meshes and places (issue 25)


def _nan_mesh(path: Path, share: float = 0.2) -> Path:
    mesh = sphere(1.0)
    vertices = mesh.vertices.copy()
    vertices[:: int(1 / share)] = float("nan")
    lines = [f"v {x} {y} {z}" for x, y, z in vertices] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_prediction_with_nan_vertices_is_refused_not_scored(app, tmp_path):
    """trimesh's processing silently drops NaN vertices: the 20% that are NaN must not be scored as ok."""
    pred = _nan_mesh(tmp_path / "pred.obj")
    sphere(1.0).export(tmp_path / "gt.obj")
    result = invoke(app, pred, tmp_path / "gt.obj", "--json", *FAST)
    assert result.exit_code == 1
    (item,) = json.loads(result.stdout)["items"]
    assert item["status"] == "unreadable prediction" and item["f_score@0.01"] == 0.0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "pred.obj" in line and "not finite (NaN/inf)" in line


def test_a_ground_truth_with_nan_vertices_fails_its_item(app, tmp_path):
    sphere(1.0).export(tmp_path / "pred.obj")
    gt = _nan_mesh(tmp_path / "gt.obj")
    result = invoke(app, tmp_path / "pred.obj", gt, *FAST)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "gt.obj" in line and "not finite" in line


def test_a_fifo_or_a_device_as_a_mesh_is_refused_at_once(app, tmp_path):
    import os

    sphere(1.0).export(tmp_path / "gt.obj")
    fifo = tmp_path / "pred.obj"
    os.mkfifo(fifo)
    result = invoke(app, fifo, tmp_path / "gt.obj", *FAST)  # reading it would block for ever
    assert result.exit_code == 1 and "not a regular file: it is a FIFO" in result.stderr
    from occrecon.evaluation import load_mesh

    with pytest.raises(InputError, match="not a regular file"):
        load_mesh("/dev/zero")


def test_csv_to_a_read_only_place_is_refused_before_evaluating(app, tmp_path, monkeypatch):
    import os

    cube().export(tmp_path / "pred.obj")
    cube().export(tmp_path / "gt.obj")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path / "ro") else real_access(path, mode))
    (tmp_path / "ro").mkdir()
    evaluated = []
    monkeypatch.setattr("occrecon.evaluation.evaluate_meshes", lambda *a, **k: evaluated.append(1))
    result = invoke(app, tmp_path / "pred.obj", tmp_path / "gt.obj", "--csv", tmp_path / "ro" / "scores.csv", *FAST)
    assert result.exit_code == 2 and evaluated == []
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "cannot write there" in line
    folder = invoke(app, tmp_path / "pred.obj", tmp_path / "gt.obj", "--csv", tmp_path, *FAST)
    assert folder.exit_code == 2 and evaluated == []  # a folder (refused by the option itself)


def test_csv_on_a_full_disk_is_one_line_and_leaves_no_half_file(app, tmp_path, monkeypatch):
    import errno

    cube().export(tmp_path / "pred.obj")
    cube().export(tmp_path / "gt.obj")
    out_dir = tmp_path / "scores"
    out_dir.mkdir()
    (out_dir / "scores.csv").write_text("old,table\n", encoding="utf-8")

    def full(fd, data):
        import os

        os.write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("occrecon.io.atomic._write_all", full)
    result = invoke(app, tmp_path / "pred.obj", tmp_path / "gt.obj", "--csv", out_dir / "scores.csv", "--json", *FAST)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "scores.csv: cannot write the CSV: no space left on the device" in line
    assert json.loads(result.stdout)["items"][0]["status"] == "ok"  # the scores were still shown
    assert sorted(p.name for p in out_dir.iterdir()) == ["scores.csv"]  # no temporary file left
    assert (out_dir / "scores.csv").read_text(encoding="utf-8") == "old,table\n"  # the old file is whole


def test_names_with_markup_and_escapes_show_as_themselves(app, tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for name in ("scan[final]", "loud[red]"):
        cube().export(gt / f"{name}.obj")
        cube(0.1).export(pred / f"{name}.obj")
    evil = "bad\x1b[2Jname"
    cube().export(gt / f"{evil}.obj")
    result = invoke(app, pred, gt, *FAST)
    assert result.exit_code == 1, result.output
    assert "scan[final]" in result.stdout and "loud[red]" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "bad\\x1b[2Jname" in line
