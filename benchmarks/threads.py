"""CPU threads and OpenMP's wait policy: the example chair's wall and CPU time, idle and under a competing load.

Each setting runs in a fresh process, since OpenMP reads ``OMP_NUM_THREADS`` and
``OMP_WAIT_POLICY`` once, when torch loads it. The process loads the bundled points
model and reconstructs ``examples/chair_points.ply`` with its defaults (8-rotation
ensemble, fitting, winding prior, anchors); only the reconstruction is timed (wall,
and the process's user + system CPU time over it), not torch's import or the model
load. Every setting runs ``--repeats`` times, interleaved, and the median is kept.

Settings (N = the cores free to this process, ``occrecon.threads.available_cpus``):

* ``torch default``: no thread variable set, what occrecon did before ``--threads``:
  torch's own count (every core it sees) and OpenMP's default wait (spin, then sleep);
* ``1`` / ``N`` / ``2N`` threads with OpenMP's default wait, and ``N`` / ``2N`` with
  ``OMP_WAIT_POLICY=PASSIVE`` (2N: a container that sees more cores than its quota);
* ``occrecon default``: ``occrecon.threads.set_threads()`` before torch loads, as the
  CLI does without ``--threads``.

Loads: ``idle`` (whatever else runs on the machine, run it on an idle one for idle
figures) and ``busy`` (one busy-loop process per free core, started and stopped by
this script, at the same priority). Prints each setting's wall and CPU seconds and
their ratios against ``torch default`` under the same load.

    python benchmarks/threads.py [--repeats 3] [--loads idle,busy] [--settings default,1,N,N-passive,2N,2N-passive,occrecon] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAIR = ROOT / "examples" / "chair_points.ply"
SETTINGS = ("default", "1", "N", "N-passive", "2N", "2N-passive", "occrecon")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def child_environment(setting: str, cores: int) -> dict[str, str]:
    """The environment of one setting's process: the caller's, without thread variables, plus the setting's."""
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    if setting in ("default", "occrecon"):
        return env
    count = {"1": 1, "N": cores, "2N": 2 * cores}[setting.split("-")[0]]
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(count)
    if setting.endswith("-passive"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def run_child(setting: str) -> dict:
    """In the measured process: reconstruct the chair once and report the times as one JSON line."""
    if setting == "occrecon":
        from occrecon.threads import set_threads

        set_threads()
    import torch

    import occrecon

    model = occrecon.load_model("convonet-points-synthetic", "cpu")
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = occrecon.reconstruct(model, "points", str(CHAIR))
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"setting": setting, "wall": wall, "cpu": cpu, "threads": torch.get_num_threads(), "faces": len(result.mesh.faces), "wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def measure(setting: str, cores: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", setting]
    done = subprocess.run(command, env=child_environment(setting, cores), capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"setting {setting} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_load(count: int) -> list[subprocess.Popen]:
    """``count`` busy-loop processes, one per core, as a competing job would be."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop_load(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
        process.wait()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def run_load(load: str, settings: list[str], repeats: int, cores: int) -> dict[str, dict]:
    """Every setting ``repeats`` times, interleaved (so a change in the machine's other work hits all alike), under one load."""
    busy = start_load(cores) if load == "busy" else []
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    try:
        time.sleep(1.0 if busy else 0.0)
        for _ in range(repeats):
            for setting in settings:
                runs[setting].append(measure(setting, cores))
                print(f"  {load} {setting}: wall {runs[setting][-1]['wall']:.2f} s, CPU {runs[setting][-1]['cpu']:.2f} s", file=sys.stderr, flush=True)
    finally:
        stop_load(busy)
    return {s: {"wall": _median([r["wall"] for r in rs]), "cpu": _median([r["cpu"] for r in rs]), "threads": rs[0]["threads"], "faces": rs[0]["faces"], "wait_policy": rs[0]["wait_policy"], "runs": rs} for s, rs in runs.items()}


def report(results: dict[str, dict[str, dict]], cores: int) -> None:
    label = {"N": f"{cores}", "2N": f"{2 * cores}"}
    for load, rows in results.items():
        base = rows.get("default") or next(iter(rows.values()))
        print(f"\n{load}: {'setting':14} {'threads':>7} {'wait':>8} {'wall s':>8} {'CPU s':>8} {'wall ×':>7} {'CPU ×':>7}  faces")
        for setting, row in rows.items():
            name = " ".join(label.get(part, part) for part in setting.split("-"))
            print(f"{'':{len(load) + 2}}{name:14} {row['threads']:>7} {row['wait_policy'] or 'default':>8} {row['wall']:>8.2f} {row['cpu']:>8.2f} {row['wall'] / base['wall']:>7.2f} {row['cpu'] / base['cpu']:>7.2f}  {row['faces']}")
    if {"idle", "busy"} <= set(results):
        print("\nbusy / idle wall:", ", ".join(f"{s} {results['busy'][s]['wall'] / results['idle'][s]['wall']:.2f}" for s in results["busy"] if s in results["idle"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loads", default="idle,busy", help="comma-separated: idle, busy (one busy loop per free core)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child)))
        return 0
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    loads = [s.strip() for s in args.loads.split(",") if s.strip()]
    unknown = sorted(set(settings) - set(SETTINGS)) + sorted(set(loads) - {"idle", "busy"})
    if unknown or args.repeats < 1:
        parser.error(f"unknown settings or loads {unknown}" if unknown else "--repeats must be at least 1")
    sys.path.insert(0, str(ROOT))
    from occrecon.threads import available_cpus

    cores = available_cpus()
    print(f"{CHAIR.name}, bundled points model's defaults; {cores} free cores (affinity and cgroup quota), {os.cpu_count()} seen; load average {os.getloadavg()[0]:.2f} at the start")
    results = {load: run_load(load, settings, args.repeats, cores) for load in loads}
    report(results, cores)
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "results": results}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
