"""How many CPU threads the networks use, and how idle threads wait.

Kept apart from :mod:`occrecon.device` and free of torch at import, because the
settings that matter most must be in the environment before torch loads its
OpenMP runtime: GNU OpenMP reads ``OMP_WAIT_POLICY`` (and ``OMP_NUM_THREADS``)
once, when the library is loaded, and never again.

Two things go wrong on a machine shared with other work (``benchmarks/threads.py``
measures both):

* torch starts one thread per core it *sees*, which is every core of the host
  inside a container whose cgroup quota allows two, and every core of the host
  while a batch job holds a few of them. The default here is the cores this
  process may actually run on: its affinity mask, cut to its cgroup CPU quota.
* OpenMP threads that finish a parallel region early spin, burning a core, while
  they wait for the others; when a competing process holds a core, the thread that
  is still working waits for that core while its siblings spin. ``PASSIVE`` makes
  them sleep instead.

The thread count is process-wide (``torch.set_num_threads``), so it is a setting of
the program, not of one reconstruction: the CLI applies it once, before anything
imports torch; a Python program calls :func:`set_threads` at its start.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

__all__ = ["ThreadSetting", "available_cpus", "cgroup_cpu_limit", "default_threads", "set_threads", "thread_environment"]

MAX_THREADS = 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: What idle OpenMP threads do; set only when the user has not chosen (see the module docstring).
WAIT_POLICY = "PASSIVE"


@dataclass(frozen=True)
class ThreadSetting:
    """What :func:`set_threads` applied: the thread count, where it came from, and the OpenMP wait policy in force (None: torch was loaded first, with whatever policy its environment had then)."""

    threads: int
    reason: str
    wait_policy: str | None


def _quota_v2(folder: Path) -> float | None:
    """CPUs allowed by one cgroup v2 folder's ``cpu.max`` (``"max 100000"``: no limit)."""
    try:
        quota, _, period = (folder / "cpu.max").read_text(encoding="ascii").strip().partition(" ")
    except (OSError, UnicodeDecodeError):
        return None
    if quota == "max":
        return None
    try:
        cpus = int(quota) / int(period or 100_000)
    except (ValueError, ZeroDivisionError):
        return None
    return cpus if cpus > 0 else None


def _quota_v1(folder: Path) -> float | None:
    """CPUs allowed by one cgroup v1 folder's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: no limit)."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text(encoding="ascii"))
        period = int((folder / "cpu.cfs_period_us").read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroups(root: Path) -> list[tuple[Path, bool]]:
    """The folders that may limit this process's CPU time, innermost first, each up to its hierarchy's mount, and whether each is cgroup v2.

    ``/proc/self/cgroup`` names the process's cgroup in each hierarchy (``0::/PATH`` for v2,
    ``N:cpu,cpuacct:/PATH`` for v1); every parent's quota applies too. Inside a container
    the namespace's own cgroup is the mount itself, which is looked at in any case.
    """
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    places: list[tuple[Path, str, bool]] = []  # (mount, path inside it, v2)
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.strip().lstrip("/")
        if controllers == "":
            places.append((root, relative, True))
        elif "cpu" in controllers.split(","):
            places += [(root / controllers, relative, False), (root / "cpu", relative, False)]
    places += [(root, "", True), (root / "cpu", "", False), (root / "cpu,cpuacct", "", False)]
    folders: list[tuple[Path, bool]] = []
    for mount, relative, v2 in places:
        parts = Path(relative).parts if relative else ()
        for depth in range(len(parts), -1, -1):
            folder = mount.joinpath(*parts[:depth])
            if (folder, v2) not in folders:
                folders.append((folder, v2))
    return folders


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroups in CPUs (1.5: one and a half cores' time), the tightest of every level; None: no quota."""
    limits = [limit for folder, v2 in _own_cgroups(root) if (limit := (_quota_v2(folder) if v2 else _quota_v1(folder))) is not None]
    return min(limits) if limits else None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: its CPU affinity mask, cut to its cgroup quota (rounded down, at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        # Rounded down: threads beyond the quota are throttled together, and a parallel region waits for its slowest thread.
        cores = min(cores, max(1, math.floor(limit)))
    return max(1, cores)


def _omp_threads(environ: Mapping[str, str]) -> int | None:
    """``OMP_NUM_THREADS`` as OpenMP reads it (its first level: ``"4,2"`` is 4), or None where unset or not a positive number."""
    text = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(text) if text.isdigit() and 0 < int(text) <= MAX_THREADS else None


def default_threads(environ: Mapping[str, str] | None = None, root: Path = CGROUP_ROOT) -> tuple[int, str]:
    """The thread count when none is asked for: ``OMP_NUM_THREADS`` when set, else :func:`available_cpus`; with the reason, for notes."""
    environ = os.environ if environ is None else environ
    omp = _omp_threads(environ)
    if omp is not None:
        return omp, "OMP_NUM_THREADS"
    return available_cpus(root), "the cores free to this process (affinity and cgroup quota)"


def thread_environment(threads: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that make OpenMP and MKL use ``threads`` threads, with idle threads sleeping unless ``environ`` chose otherwise."""
    return {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OMP_WAIT_POLICY": environ.get("OMP_WAIT_POLICY") or WAIT_POLICY,
    }


def set_threads(threads: int | None = None) -> ThreadSetting:
    """Use ``threads`` CPU threads (None: :func:`default_threads`) in this process and the processes it starts.

    Sets ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` and, unless the user chose one,
    ``OMP_WAIT_POLICY=PASSIVE`` (:func:`thread_environment`); then ``torch.set_num_threads``
    where torch is loaded already. The wait policy only takes effect when this runs before
    torch is first imported, since OpenMP reads it once, when torch loads it.

    Raises:
        ValueError: ``threads`` is not a whole number in 1..1024.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 0 < threads <= MAX_THREADS):
        raise ValueError(f"--threads must be a whole number in [1, {MAX_THREADS}], got {threads!r}")
    count, reason = (threads, "--threads") if threads is not None else default_threads()
    torch = sys.modules.get("torch")
    policy = os.environ.get("OMP_WAIT_POLICY") if torch is not None else None
    os.environ.update(thread_environment(count, os.environ))
    if torch is None:
        policy = os.environ["OMP_WAIT_POLICY"]
    elif hasattr(torch, "set_num_threads"):
        torch.set_num_threads(count)
    return ThreadSetting(count, reason, policy)
