"""Field evaluation time against the number of decoder rows per forward pass, as ratios.

A decoder row is one query point seen by one network (an 8-rotation ensemble
decodes 8 rows per point). Each bundled model reconstructs its example input in
``examples/`` once per batch size, in the same process and after one warm-up;
the median seconds of the ``field`` stage (MISE's network queries) over
``--repeat`` runs and each size's ratio against the first are printed.

    python benchmarks/query_batch.py [--rows 100000,65536,32768,16384,8192] [--repeat 3] [--device auto]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import occrecon
from occrecon.options import ExtractionOptions
from occrecon.registry import default_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"image": "chair.png", "points": "chair_points.ply", "voxels": "chair.binvox"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,65536,32768,16384,8192", help="decoder rows per forward pass; the first is the baseline")
    parser.add_argument("--tasks", default="image,points,voxels")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    sizes = [int(r) for r in args.rows.split(",")]
    for task in args.tasks.split(","):
        model = occrecon.load_model(default_model(task), args.device)
        source = ROOT / "examples" / EXAMPLES[task]
        occrecon.reconstruct(model, task, source)  # warm-up
        field: dict[int, list[float]] = {size: [] for size in sizes}
        total: dict[int, list[float]] = {size: [] for size in sizes}
        faces: dict[int, int] = {}
        for _ in range(args.repeat):
            for size in sizes:
                start = time.perf_counter()
                result = occrecon.reconstruct(model, task, source, options=ExtractionOptions(points_batch_size=size))
                total[size].append(time.perf_counter() - start)
                field[size].append(result.timings["field"])
                faces[size] = len(result.mesh.faces)
        base = float(np.median(field[sizes[0]]))
        print(f"{model.name} on {model.device} ({source.name}):")
        for size in sizes:
            median = float(np.median(field[size]))
            print(
                f"  {size:>7} rows per pass: field {median:.2f} s (x{median / base:.2f}), "
                f"whole reconstruction {np.median(total[size]):.2f} s, {faces[size]} faces"
            )


if __name__ == "__main__":
    main()
