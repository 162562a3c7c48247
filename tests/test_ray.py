"""`--ray`: a batch on a Ray cluster keeps the local batch's promises (one local Ray of 2 CPUs for the module)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.batch_helpers import run, write_cloud

ray = pytest.importorskip("ray")


def by_name(stdout: str) -> dict[str, dict]:
    return {Path(row["input"]).name: row for row in map(json.loads, stdout.splitlines())}


def leftovers(folder: Path) -> list[str]:
    """Temporary files and claims: none may be left when a batch has ended."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".claim")))


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for every test here: 2 CPUs, no dashboard, stopped at the end."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_importing_occrecon_and_its_cli_does_not_load_ray():
    code = "import sys, occrecon, occrecon.cluster, occrecon.cli.main; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_mixed_folder_good_bad_and_finished(ray_session, points_model, tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for seed, name in enumerate(["a", "b", "c", "done"]):
        write_cloud(inputs / f"{name}.xyz", seed)
    (inputs / "bad.xyz").write_text("not a point cloud\n")
    model = ["--model", points_model, "-d", out, "--json", "-q"]
    assert run(["points", inputs / "done.xyz", *model], capsys)[0] == 0  # finished before, on this machine
    code, stdout, stderr = run(["points", inputs, *model, "--ray", "--ray-actors", "2"], capsys)
    rows = by_name(stdout)
    assert code == 1, stderr
    assert {name: row["status"] for name, row in rows.items()} == {"a.xyz": "ok", "b.xyz": "ok", "c.xyz": "ok", "done.xyz": "skipped", "bad.xyz": "failed"}
    assert "bad.xyz" in rows["bad.xyz"]["error"] and len(stderr.strip().splitlines()) == 1  # one line for the bad input
    for name in "abc":
        row = rows[f"{name}.xyz"]
        assert row["node"] == socket.gethostname() and row["node_id"] and row["vertices"] > 0
        assert Path(row["output"]).is_file()
    assert rows["done.xyz"]["node_id"] is None  # decided by the driver, before Ray
    assert sorted(p.name for p in out.glob("*.obj")) == ["a.obj", "b.obj", "c.obj", "done.obj"]
    assert leftovers(out) == []


def test_a_rerun_skips_what_is_finished_and_resumes_the_rest(ray_session, points_model, tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for seed in range(3):
        write_cloud(inputs / f"s{seed}.xyz", seed)
    command = ["points", inputs, "--model", points_model, "-d", out, "--json", "-q", "--ray"]
    assert run(command, capsys)[0] == 0
    (out / "s1.obj").unlink()  # as if the job had been stopped before this one was written
    code, stdout, _ = run(command, capsys)
    assert code == 0 and {n: r["status"] for n, r in by_name(stdout).items()} == {"s0.xyz": "skipped", "s1.xyz": "ok", "s2.xyz": "skipped"}
    code, stdout, _ = run(command, capsys)  # all finished: decided before Ray is needed
    assert code == 0 and {r["status"] for r in by_name(stdout).values()} == {"skipped"}


def test_an_actor_killed_mid_job_leaves_no_partial_file_and_the_job_completes(ray_session, points_model, tmp_path):
    import trimesh

    from occrecon.batch import BatchOptions, plan_batch
    from occrecon.cluster import ClusterJob, ClusterOptions, ClusterRun
    from occrecon.io.paths import InputItem
    from occrecon.io.provenance import Request
    from occrecon.options import ReconstructOptions

    sources = [write_cloud(tmp_path / f"k{i}.xyz", i) for i in range(6)]
    out = tmp_path / "out"
    plan = plan_batch([InputItem(s) for s in sources], file_format="obj", output=None, output_dir=out)
    options = ReconstructOptions()
    job = ClusterJob("points", str(points_model), None, "cpu", options, BatchOptions(), Request.of("points", str(points_model), None, options))
    results = []
    with ClusterRun(job, ClusterOptions(actors=2)) as run_:
        run_.start()
        for result in run_.results(plan):
            if not results:  # both actors are busy now: kill one mid-input; Ray restarts it and runs its input again
                ray.kill(run_.actors[0], no_restart=False)
            results.append(result)
    assert sorted(Path(r.input).name for r in results) == sorted(s.name for s in sources)
    assert {r.status for r in results} <= {"ok", "skipped"}, [r.error for r in results]
    for source in sources:
        mesh = trimesh.load(out / f"{source.stem}.obj", force="mesh")
        assert len(mesh.faces) > 0
    assert leftovers(out) == []
