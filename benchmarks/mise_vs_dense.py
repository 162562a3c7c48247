"""MISE against dense evaluation: network queries and wall time, as ratios.

Both extractions use the same model and the same encoded input, in the same
process, so the ratios compare the algorithms and not the machines.

    python benchmarks/mise_vs_dense.py                       # bundled points model on examples/
    python benchmarks/mise_vs_dense.py --model convonet-points-synthetic --input scan.ply
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import occrecon
from occrecon.extract import box_bounds, extract_grid, marching_cubes, probability_to_logit
from occrecon.field import encode_field, numpy_query
from occrecon.preprocess import prepare_input
from occrecon.registry import default_model

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model("points"))
    parser.add_argument("--input", default=str(ROOT / "examples" / "chair_points.ply"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--resolutions", default="128,256", help="final grid resolutions to compare")
    args = parser.parse_args()

    model = occrecon.load_model(args.model, args.device)
    prepared = prepare_input(model.task if model.task != "scene" else "points", args.input, model.input_spec, seed=0)
    query = numpy_query(encode_field(model, prepared.tensor))
    threshold = probability_to_logit(model.generation.threshold)
    lower, upper = box_bounds(model.padding)
    print(f"model {model.name} on {model.device}; input {args.input}")
    print(f"{'final grid':>10} {'MISE evals':>12} {'dense evals':>12} {'eval ratio':>10} {'MISE s':>8} {'dense s':>8} {'speed-up':>8} {'same faces':>10}")
    for final in (int(r) for r in args.resolutions.split(",")):
        steps = int(np.log2(final // 32))
        t_mise, mise = timed(lambda: extract_grid(query, resolution0=32, upsampling_steps=steps, threshold=threshold, lower=lower, upper=upper), args.repeat)
        t_dense, dense = timed(lambda: extract_grid(query, resolution0=final, upsampling_steps=0, threshold=threshold, lower=lower, upper=upper), args.repeat)
        _, f_mise = marching_cubes(mise, threshold)
        _, f_dense = marching_cubes(dense, threshold)
        print(
            f"{final:>9}³ {mise.n_evaluations:>12,} {dense.n_evaluations:>12,} {dense.n_evaluations / mise.n_evaluations:>9.1f}× "
            f"{t_mise:>8.2f} {t_dense:>8.2f} {t_dense / t_mise:>7.1f}× {len(f_mise) / max(1, len(f_dense)):>9.3f}"
        )


if __name__ == "__main__":
    main()
