"""The voxels model on grids filled by either rule, on held-out generated shapes: the set that chose ``--fill-rule``.

A voxeliser fills a cell when ANY part of it is inside the object (binvox's rule, how
ShapeNet's grids and the voxels models' training data were made) or when its CENTRE is
(``mesh.contains(centres)``, common in numpy code). Each held-out shape (by default the 64
validation shapes of the bundled models' datasets: generator seed 0, shapes 2240-2303,
which no bundled model trained on) is voxelised both ways at ``--resolution`` (32³, the
model's grid; 64³ is max-pooled to it): the any rule from the shape's SDF lattice
exactly as the training data was (any of the (k+1)³ lattice points of a cell inside), the
centre rule from the SDF's sign at the cell centres. Then, on each grid:

* ``mc``: marching cubes of the grid (cell centres at -0.5 + (i + 0.5)/R);
* ``model as any``: the bundled voxels model reading the grid as binvox-rule (``--fill-rule any``,
  what it did before the option);
* ``model as centre``: ``--fill-rule centre`` (the grid turned into the binvox rule first,
  ``occrecon.preprocess.voxels.centre_to_any``);
* ``model auto``: ``--fill-rule auto`` (the rule looked for in the grid,
  ``occrecon.preprocess.voxels.detect_fill_rule``; reuses the run of the rule it chose).

IoU against the shape's exact occupancy (its SDF sign) at 100k uniform points in the
±0.55 box, Chamfer-L1 and F-score@1% against 100k surface samples, as ``heldout.py``.

    python benchmarks/fill_rule.py [--start 2240 --count 64] [--resolution 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import occrecon  # noqa: E402
from occrecon.data.prepare import occupancy, voxel_centres, voxels_from_lattice  # noqa: E402
from occrecon.metrics import sample_surface, uniform_box_points  # noqa: E402
from occrecon.preprocess.voxels import detect_fill_rule  # noqa: E402
from occrecon.registry import default_model  # noqa: E402
from heldout import held_out_shape  # noqa: E402
from quality import or_empty, scores, voxel_mesh  # noqa: E402

RULES = ("any", "centre")
METHODS = ("mc", "model as any", "model as centre", "model auto")


def voxelise(lattice, resolution: int) -> dict[str, np.ndarray]:
    """The shape's (R, R, R) grids by both rules, over the unit cube."""
    return {
        "any": voxels_from_lattice(lattice.grid, resolution, lattice.cells),
        "centre": occupancy(lattice.shape, voxel_centres(resolution)).reshape(resolution, resolution, resolution),
    }


def model_mesh(model, grid: np.ndarray, fill_rule: str):
    """The model's mesh of a grid over the unit cube (None where it finds no surface), in the unit frame."""
    mesh = or_empty(lambda: occrecon.reconstruct(model, "voxels", grid.astype(np.float32), fill_rule=fill_rule).mesh)
    if mesh is not None:
        # A plain array is read in voxel-index units.
        mesh.apply_scale(1.0 / grid.shape[0])
        mesh.apply_translation([-0.5, -0.5, -0.5])
    return mesh


def measure_grid(model, grid: np.ndarray, truth: tuple) -> tuple[dict[str, dict], str]:
    """Every method on one grid, and the rule ``auto`` chose for it."""
    gt_points, gt_inside, iou_points = truth
    row: dict[str, dict] = {"mc": scores(voxel_mesh(grid), gt_points, gt_inside, iou_points)}
    for rule in RULES:
        start = time.perf_counter()
        row[f"model as {rule}"] = {**scores(model_mesh(model, grid, rule), gt_points, gt_inside, iou_points), "seconds": time.perf_counter() - start}
    chosen, _ = detect_fill_rule(grid)
    row["model auto"] = row[f"model as {chosen}"]
    return row, chosen


def _cell(score: dict) -> str:
    return f"{score['iou']:.3f}/{score['chamfer_l1']:.4f}/{score['f_score_1']:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model("voxels"))
    parser.add_argument("--seed", type=int, default=0, help="generator seed of the dataset")
    parser.add_argument("--start", type=int, default=2240, help="first held-out shape index")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=32, help="grid side the shapes are voxelised at (a divisor of 128)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = occrecon.load_model(args.model, args.device)
    columns = [(rule, method) for rule in RULES for method in METHODS]
    print(f"model {model.name}; shapes {args.start}-{args.start + args.count - 1} of generator seed {args.seed}, voxelised at {args.resolution}³; IoU/Chamfer-L1/F@1%")
    print(f"{'shape':16} " + " ".join(f"{rule + ' ' + method:>22}" for rule, method in columns) + "  auto chose (any grid, centre grid)")
    rows = []
    iou_points = uniform_box_points(100_000, seed=0, low=-0.55, high=0.55)
    for index in range(args.start, args.start + args.count):
        lattice, family = held_out_shape(args.seed, index)
        truth = (sample_surface(lattice.mesh, 100_000, seed=0)[0], occupancy(lattice.shape, iou_points), iou_points)
        row: dict = {"index": index, "family": family}
        for rule, grid in voxelise(lattice, args.resolution).items():
            row[rule], row[f"{rule} auto chose"] = measure_grid(model, grid, truth)
        rows.append(row)
        print(f"{f'{index} {family}':16} " + " ".join(f"{_cell(row[rule][method]):>22}" for rule, method in columns) + f"  {row['any auto chose']}, {row['centre auto chose']}", flush=True)

    mean = {rule: {method: {k: float(np.mean([r[rule][method][k] for r in rows])) for k in ("iou", "chamfer_l1", "f_score_1")} for method in METHODS} for rule in RULES}
    print(f"{'mean':16} " + " ".join(f"{_cell(mean[rule][method]):>22}" for rule, method in columns))
    for rule in RULES:
        chose = np.mean([r[f"{rule} auto chose"] == "centre" for r in rows])
        print(f"{rule}-rule grids: auto read {chose:.0%} of them as centre-rule")
    before, after, ceiling, mc = mean["centre"]["model as any"], mean["centre"]["model as centre"], mean["any"]["model as any"], mean["centre"]["mc"]
    print(f"centre-rule grids, IoU: read as any {before['iou']:.3f} → as centre {after['iou']:.3f} (the model on binvox-rule grids: {ceiling['iou']:.3f}; marching cubes of the centre-rule grid: {mc['iou']:.3f})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "mean": mean, "model": model.name, "resolution": args.resolution}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
