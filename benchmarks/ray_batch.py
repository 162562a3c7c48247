"""A batch on Ray (`--ray`) against the local batch: overhead, start-up, and 1 against 2 actors.

Makes ``--count`` clouds from ``examples/chair_points.ply`` by small seeded perturbations
(each point moved by Gaussian noise of 0.2% of the chair's size, a seeded 90% of its points
kept) in a temporary folder, then, in one process and one run:

1. the local batch: the bundled points model loaded once, :func:`occrecon.batch.run_batch`
   over the clouds with every free core's thread (model load included);
2. Ray's start-up: a local Ray with the cores free to this process, no dashboard (timed alone);
3. the same batch on that Ray with 1 actor (all the cores' threads), then with 2 actors
   (the cores split between them): actors created, model loaded in each, every result back.

Each run writes into its own fresh folder. Prints each wall time, the overhead ratio
Ray-1-actor / local (start-up excluded) and the throughput ratio 2 actors / 1 actor.
By default the clouds run with ``--fit-steps 0 --rotations 1`` (the model's other defaults),
so that 20 clouds take minutes, not an hour, on 2 cores; pass ``--fit-steps -1`` to keep the
model's own. No GPU figure: run it on a GPU node with ``--device cuda`` for one.

    python benchmarks/ray_batch.py [--count 20] [--fit-steps 0] [--rotations 1] [--upsampling-steps K] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHAIR = ROOT / "examples" / "chair_points.ply"


def make_clouds(folder: Path, count: int) -> list[Path]:
    from occrecon.io.readers import read_points

    points = np.asarray(read_points(CHAIR).points, dtype=np.float64)
    size = float(np.ptp(points, axis=0).max())
    paths = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        kept = points[rng.random(len(points)) < 0.9]
        path = folder / f"chair{seed:03d}.xyz"
        np.savetxt(path, kept + rng.normal(scale=0.002 * size, size=kept.shape), fmt="%.6f")
        paths.append(path)
    return paths


def settings(args: argparse.Namespace):
    from occrecon.batch import BatchOptions, plan_batch
    from occrecon.io.paths import InputItem
    from occrecon.io.provenance import Request
    from occrecon.options import ReconstructOptions
    from occrecon.registry import default_model

    changes = {}
    if args.fit_steps >= 0:
        changes["fit_steps"] = args.fit_steps
    if args.rotations >= 1:
        changes["rotations"] = args.rotations
    if args.upsampling_steps is not None:
        changes["upsampling_steps"] = args.upsampling_steps
    options = ReconstructOptions(**changes)
    name = default_model("points")
    request = Request.of("points", name, None, options)

    def plan(clouds: list[Path], out: Path):
        return plan_batch([InputItem(c) for c in clouds], file_format="obj", output=None, output_dir=out)

    return name, options, BatchOptions(), request, plan


def run_local(clouds, out, args) -> tuple[float, int]:
    from occrecon.batch import run_batch
    from occrecon.loading import load_model

    name, options, batch, request, plan = settings(args)
    start = time.perf_counter()
    model = load_model(name, args.device)
    results = list(run_batch(model, "points", plan(clouds, out), options, batch, request=request))
    return time.perf_counter() - start, sum(r.status == "ok" for r in results)


def run_ray(clouds, out, args, actors: int) -> tuple[float, int, str]:
    from occrecon.cluster import ClusterJob, ClusterOptions, ClusterRun

    name, options, batch, request, plan = settings(args)
    job = ClusterJob("points", name, None, args.device, options, batch, request)
    start = time.perf_counter()
    with ClusterRun(job, ClusterOptions(actors=actors)) as run:
        run.start()
        results = list(run.results(plan(clouds, out)))
        where = run.device
    return time.perf_counter() - start, sum(r.status == "ok" for r in results), where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--fit-steps", type=int, default=0, help="-1: the model's own")
    parser.add_argument("--rotations", type=int, default=1, help="0: the model's own")
    parser.add_argument("--upsampling-steps", type=int, default=None, help="MISE levels (default: the model's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from occrecon.threads import available_cpus, set_threads

    set_threads(available_cpus())  # before torch loads, as the CLI and each actor do: OpenMP reads its wait policy once

    from occrecon.cluster import ClusterOptions, connect

    import ray

    with tempfile.TemporaryDirectory(prefix="occrecon-ray-bench-") as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        clouds = make_clouds(folder / "in", args.count)
        local_s, local_ok = run_local(clouds, folder / "local", args)
        print(f"local batch: {local_s:.1f} s, {local_ok}/{len(clouds)} ok", flush=True)
        start = time.perf_counter()
        connect(ClusterOptions())
        startup_s = time.perf_counter() - start
        print(f"Ray start-up: {startup_s:.1f} s", flush=True)
        try:
            one_s, one_ok, one_where = run_ray(clouds, folder / "ray1", args, 1)
            print(f"Ray, {one_where}: {one_s:.1f} s, {one_ok}/{len(clouds)} ok", flush=True)
            two_s, two_ok, two_where = run_ray(clouds, folder / "ray2", args, 2)
            print(f"Ray, {two_where}: {two_s:.1f} s, {two_ok}/{len(clouds)} ok", flush=True)
        finally:
            ray.shutdown()
    report = {
        "count": len(clouds), "fit_steps": args.fit_steps, "rotations": args.rotations, "upsampling_steps": args.upsampling_steps, "device": args.device,
        "cpus": available_cpus(), "machine": platform.processor() or platform.machine(), "ray": ray.__version__,
        "local_s": round(local_s, 2), "ray_startup_s": round(startup_s, 2), "ray_1_actor_s": round(one_s, 2), "ray_2_actors_s": round(two_s, 2),
        "overhead_ratio_ray1_over_local": round(one_s / local_s, 3), "throughput_ratio_2_over_1_actors": round(one_s / two_s, 3),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
