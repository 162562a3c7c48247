"""A million-point scene on a CI-class machine: bounded memory, mesh in the scan's own frame.

Slow (several minutes on 2 cores): run with ``python3 -m pytest -m slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from occrecon.io.readers import read_points
from occrecon.loading import load_model
from occrecon.metrics import nearest_neighbors, sample_surface
from occrecon.scene import scene_settings

EXAMPLE_ROOM = Path(__file__).resolve().parents[1] / "examples" / "room_points.ply"
N_POINTS = 1_000_000
PEAK_LIMIT_BYTES = 4 * 1024**3
# A scan far from the origin, as registered scans are: the mesh must come back there.
OFFSET = np.array([250.0, -1.5, -120.0])


def million_point_floor() -> np.ndarray:
    """Nine copies of the example room side by side (~14 x 14 m), cut to exactly 1 M points."""
    room = read_points(EXAMPLE_ROOM).points.astype(np.float64)
    extent = np.ptp(room, axis=0)
    copies = [room + np.array([i * (extent[0] + 0.3), 0.0, k * (extent[2] + 0.3)]) for i in range(3) for k in range(3)]
    scene = np.concatenate(copies)
    rng = np.random.default_rng(0)
    if len(scene) >= N_POINTS:
        scene = scene[rng.choice(len(scene), N_POINTS, replace=False)]
    else:  # jittered duplicates: the density a denser scanner would give
        extra = scene[rng.choice(len(scene), N_POINTS - len(scene))] + rng.normal(0, 0.003, (N_POINTS - len(scene), 3))
        scene = np.concatenate([scene, extra])
    return scene + OFFSET


def run_measured(args: list[str], cwd: Path) -> tuple[int, int, str]:
    """Run a command; (exit code, its peak resident memory in bytes, stdout)."""
    out_path = cwd / "stdout.txt"
    with open(out_path, "wb") as stdout:
        process = subprocess.Popen(args, cwd=cwd, stdout=stdout, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss * 1024, out_path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_million_point_scene_reconstructs_under_4_gb(tmp_path: Path) -> None:
    points = million_point_floor()
    assert len(points) == N_POINTS
    scan = tmp_path / "floor.ply"
    trimesh.PointCloud(points.astype(np.float32)).export(scan, encoding="binary")
    output = tmp_path / "floor_mesh.ply"

    start = time.perf_counter()
    code, peak, log = run_measured(
        [sys.executable, "-m", "occrecon", "points", str(scan), "-o", str(output), "--scene", "--units", "m", "--quiet", "--json"], tmp_path
    )
    assert code == 0, log
    print(f"1 M points: peak resident memory {peak / 1024**3:.2f} GiB, {time.perf_counter() - start:.0f} s")
    assert peak < PEAK_LIMIT_BYTES, f"peak resident memory {peak / 1024**3:.2f} GiB"
    result = json.loads(log.strip().splitlines()[-1])
    assert result["status"] == "ok" and result["output"].endswith("floor_mesh.ply")
    assert result["model"] == "convonet-scene-synthetic"  # the bundled default for scenes, offline

    mesh = trimesh.load(output, process=False)
    assert len(mesh.faces) > 100_000
    # In the scan's frame: the mesh spans the scan (walls reach its sides) and stays within
    # the trimming distance beyond it (the walls' unseen backs are cut there).
    settings = scene_settings(load_model("convonet-scene-synthetic", "cpu"))
    border = (settings.trim_voxels or 0.0) * settings.unit_size + settings.query_size / settings.cells_per_crop + 0.01
    lo, hi = points.min(axis=0), points.max(axis=0)
    assert np.all(mesh.bounds[0] > lo - border) and np.all(mesh.bounds[1] < hi + border)
    assert np.all(np.abs(mesh.bounds[0] - lo)[[0, 2]] < border) and np.all(np.abs(mesh.bounds[1] - hi)[[0, 2]] < border)
    # Surface accuracy: most scan points lie within 3 cm of the mesh.
    sample = points[np.random.default_rng(1).choice(len(points), 20_000, replace=False)]
    distance, _ = nearest_neighbors(sample, sample_surface(mesh, 1_000_000, seed=0)[0])
    assert np.median(distance) < 0.03
