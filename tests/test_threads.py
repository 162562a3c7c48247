"""CPU threads: the cores free to the process (affinity, cgroup quota), OMP_NUM_THREADS, sleeping idle threads, --threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from occrecon import threads

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")


def test_a_cgroup_v2_quota_caps_the_cores(tmp_path: Path):
    _write(tmp_path / "cpu.max", "150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 1.5
    # Rounded down: a parallel region waits for its slowest thread, and threads beyond the quota are throttled.
    assert threads.available_cpus(tmp_path) == 1
    _write(tmp_path / "cpu.max", "max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None
    assert threads.available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_a_cgroup_v1_quota_caps_the_cores(tmp_path: Path):
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "100000\n")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 1.0
    assert threads.available_cpus(tmp_path) == 1
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None


def test_the_tightest_quota_of_the_process_and_its_parents_counts(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(threads, "_own_cgroups", lambda root: [(root / "job" / "step", True), (root / "job", True), (root, True)])
    _write(tmp_path / "job" / "step" / "cpu.max", "max 100000\n")
    _write(tmp_path / "job" / "cpu.max", "300000 100000\n")
    _write(tmp_path / "cpu.max", "800000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 3.0


def test_the_affinity_mask_caps_the_cores(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert threads.available_cpus(tmp_path) == 1


def test_omp_num_threads_wins_over_the_free_cores(tmp_path: Path):
    assert threads.default_threads({"OMP_NUM_THREADS": "3"}, tmp_path) == (3, "OMP_NUM_THREADS")
    assert threads.default_threads({"OMP_NUM_THREADS": "4,2"}, tmp_path)[0] == 4  # nested levels: the outer one
    for unusable in ("", "0", "many", "-2"):
        assert threads.default_threads({"OMP_NUM_THREADS": unusable}, tmp_path) == (threads.available_cpus(tmp_path), "the cores free to this process (affinity and cgroup quota)")


def test_idle_threads_sleep_unless_the_user_chose_otherwise():
    assert threads.thread_environment(2, {}) == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    assert threads.thread_environment(2, {"OMP_WAIT_POLICY": "active"})["OMP_WAIT_POLICY"] == "active"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_thread_count_must_be_a_whole_positive_number(bad):
    with pytest.raises(ValueError, match="--threads"):
        threads.set_threads(bad)


def _fresh(code: str, **env: str) -> list[str]:
    """``code``'s printed lines in a fresh interpreter (torch not yet loaded), without the caller's thread variables."""
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_set_threads_before_torch_loads_sets_its_threads_and_the_wait_policy():
    code = "from occrecon.threads import set_threads; s = set_threads({}); import torch, os; print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'], s.wait_policy)"
    assert _fresh(code.format(1)) == ["1", "PASSIVE", "PASSIVE"]
    assert _fresh(code.format("None"), OMP_NUM_THREADS="1") == ["1", "PASSIVE", "PASSIVE"]
    assert _fresh(code.format("None"), OMP_WAIT_POLICY="ACTIVE")[1:] == ["ACTIVE", "ACTIVE"]
    # Once torch is loaded the count still changes; the wait policy OpenMP read when it loaded is not known.
    late = "import torch; from occrecon.threads import set_threads; s = set_threads(1); print(torch.get_num_threads(), s.wait_policy)"
    assert _fresh(late) == ["1", "None"]


def test_threads_is_a_flag_of_every_reconstruction_command(tmp_path: Path):
    command = [sys.executable, "-m", "occrecon.cli.main"]
    done = subprocess.run(command + ["voxels", str(ROOT / "examples" / "chair.binvox"), "--threads", "1", "-d", str(tmp_path), "--device", "cpu", "--upsampling-steps", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "on cpu, 1 CPU thread" in done.stderr
    for kind, source in (("points", "chair_points.ply"), ("image", "chair.png")):
        refused = subprocess.run(command + [kind, str(ROOT / "examples" / source), "--threads", "0", "-d", str(tmp_path)], capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and "--threads" in refused.stderr, kind
