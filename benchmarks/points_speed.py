"""Time per object of the points model's reconstruction variants, as ratios against the first.

On the clouds of ``benchmarks/quality.py`` (3000 surface points of each real mesh,
noise 0.005 added once), every variant (``--variants 1/0/0,8/0/0,8/60/0,8/60/1,8/60/1/1``:
rotation-ensemble size / test-time fitting steps / winding-number prior off or on /
MISE anchor points off or on; left-out fields are 0)
reconstructs every cloud in the same process, after one warm-up call; the median seconds
per object and each variant's ratio against the first are printed, with the stages
(encode, prior, fit, field, marching cubes) that make it up.

    python benchmarks/points_speed.py [--meshes DIR] [--variants 1/0/0,8/0/0,8/60/0,8/60/1,8/60/1/1] [--model NAME]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import occrecon  # noqa: E402
from occrecon.metrics import sample_surface  # noqa: E402
from occrecon.registry import default_model  # noqa: E402
from quality import DEFAULT_MESHES, SUFFIXES, load_unit_mesh  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meshes", type=Path, default=DEFAULT_MESHES)
    parser.add_argument("--model", default=default_model("points"))
    parser.add_argument(
        "--variants",
        default="1/0/0,8/0/0,8/60/0,8/60/1,8/60/1/1",
        help="rotations/fit-steps/winding prior (0 or 1)/anchor points (0 or 1), comma-separated, left-out fields 0; the first is the baseline",
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not args.meshes.is_dir():
        print(f"{args.meshes}: no such folder of meshes", file=sys.stderr)
        return 2
    variants = [(tuple(int(x) for x in v.split("/")) + (0, 0, 0))[:4] for v in args.variants.split(",") if v.strip()]
    model = occrecon.load_model(args.model, args.device)
    clouds = []
    for path in sorted(p for p in args.meshes.iterdir() if p.suffix.lower() in SUFFIXES):
        cloud, _ = sample_surface(load_unit_mesh(path), 3000, seed=1)
        clouds.append(cloud + np.random.default_rng(0).normal(scale=0.005, size=cloud.shape))
    occrecon.reconstruct(model, "points", clouds[0], input_noise=0.0, rotations=1, fit_steps=0, winding=False, anchor_points=False)  # warm-up
    seconds: dict[tuple, list[float]] = {v: [] for v in variants}
    stages: dict[tuple, dict[str, list[float]]] = {v: {} for v in variants}
    for cloud in clouds:
        for variant in variants:
            rotations, fit_steps, winding, anchors = variant
            start = time.perf_counter()
            result = occrecon.reconstruct(
                model, "points", cloud, input_noise=0.0, rotations=rotations, fit_steps=fit_steps, winding=bool(winding), anchor_points=bool(anchors)
            )
            seconds[variant].append(time.perf_counter() - start)
            for stage, value in result.timings.items():
                stages[variant].setdefault(stage, []).append(value)
    print(f"model {model.name} on {model.device}, {len(clouds)} clouds of 3000 points")
    base = float(np.median(seconds[variants[0]]))
    for variant in variants:
        median = float(np.median(seconds[variant]))
        parts = ", ".join(f"{k} {np.median(v):.2f}" for k, v in stages[variant].items() if k not in ("total", "preprocess"))
        prior = (", winding prior" if variant[2] else "") + (", anchor points" if variant[3] else "")
        print(f"rotations {variant[0]}, fit steps {variant[1]}{prior}: median {median:.2f} s per object (x{median / base:.1f}; {parts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
