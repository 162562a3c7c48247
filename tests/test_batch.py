"""Batches: what counts as finished, and two processes writing the same outputs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


from occrecon.io.claims import STALE_AFTER_S, claim_path

from tests.batch_helpers import run, write_cloud




def statuses(out: str) -> dict[str, dict]:
    return {Path(json.loads(line)["input"]).name: json.loads(line) for line in out.splitlines()}


def write_claim(output: Path, host: str, pid: int, age_s: float = 0.0) -> Path:
    path = claim_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid}))
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_output_claimed_by_a_live_process_is_skipped_not_redone(points_model, tmp_path, capsys):
    src = write_cloud(tmp_path / "a.xyz")
    out = tmp_path / "out"
    held = write_claim(out / "a.obj", socket.gethostname(), os.getppid())  # a live process that is not this one
    code, stdout, _ = run(["points", src, "--model", points_model, "-d", out, "--json", "-q"], capsys)
    result = statuses(stdout)["a.xyz"]
    assert code == 0 and result["status"] == "skipped" and "being made by another process" in result["notes"][0]
    assert not (out / "a.obj").exists() and held.exists()  # someone else's claim is left alone


def test_stale_claims_are_taken_over_and_released(points_model, tmp_path, capsys):
    sources = [write_cloud(tmp_path / f"{name}.xyz", seed) for seed, name in enumerate("abc")]
    out = tmp_path / "out"
    write_claim(out / "a.obj", socket.gethostname(), dead_pid())  # killed on this host
    write_claim(out / "b.obj", "another-host", 12345, age_s=STALE_AFTER_S + 60)  # a host that stopped refreshing it
    fresh = write_claim(out / "c.obj", "another-host", 12345)  # still working elsewhere
    code, stdout, _ = run(["points", *sources, "--model", points_model, "-d", out, "--json", "-q"], capsys)
    result = statuses(stdout)
    assert code == 0
    assert result["a.xyz"]["status"] == result["b.xyz"]["status"] == "ok"
    assert result["c.xyz"]["status"] == "skipped" and "on another-host" in result["c.xyz"]["notes"][0]
    assert not claim_path(out / "a.obj").exists() and not claim_path(out / "b.obj").exists() and fresh.exists()


def test_a_folder_named_like_the_output_is_not_a_finished_item(points_model, tmp_path, capsys):
    src = write_cloud(tmp_path / "chair.xyz")
    (tmp_path / "out" / "chair.obj").mkdir(parents=True)
    code, stdout, err = run(["points", src, "--model", points_model, "-d", tmp_path / "out", "--json"], capsys)
    assert code == 1 and statuses(stdout)["chair.xyz"]["status"] == "failed" and "is a folder" in err


def test_a_preview_that_cannot_be_saved_leaves_no_mesh_so_a_rerun_redoes_it(points_model, tmp_path, capsys, monkeypatch):
    from occrecon import batch

    src = write_cloud(tmp_path / "chair.xyz")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch, "save_preview", full_disk)
    code, _, _ = run(["points", src, "--model", points_model, "-d", tmp_path / "out", "--save-input", "-q"], capsys)
    assert code == 1 and not (tmp_path / "out" / "chair.obj").exists()
    monkeypatch.undo()
    code, _, _ = run(["points", src, "--model", points_model, "-d", tmp_path / "out", "--save-input", "-q"], capsys)
    assert code == 0 and (tmp_path / "out" / "chair.obj").is_file() and (tmp_path / "out" / "chair.input.ply").is_file()


def test_the_result_names_the_model_that_made_the_mesh(points_model, tmp_path, monkeypatch):
    """A cloud that turns out to be a scene names the scene model, not the object model the batch was given."""
    import trimesh

    from occrecon import batch
    from occrecon.io.paths import expand_inputs
    from occrecon.loading import load_model
    from occrecon.options import ReconstructOptions
    from occrecon.pipeline import Reconstruction

    def made_by_the_scene_model(*args, **kwargs):
        return Reconstruction(mesh=trimesh.creation.box(), transform=None, model_name="the-scene-model", model_revision="abc")  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "reconstruct_resolved", made_by_the_scene_model)
    src = write_cloud(tmp_path / "room.xyz")
    plan = batch.plan_batch(expand_inputs([str(src)], {".xyz"}), file_format="obj", output=None, output_dir=tmp_path / "out")
    (result,) = batch.run_batch(load_model(str(points_model), "cpu"), "points", plan, ReconstructOptions())
    assert result.status == "ok" and result.model == "the-scene-model" and result.model_revision == "abc"
