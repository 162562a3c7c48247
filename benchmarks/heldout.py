"""Quality of a points (or image) model on held-out generated shapes: the set that decides what ships.

``benchmarks/quality.py`` measures on real meshes made by others, which must never
steer a choice. This script measures on procedural shapes the model was not
trained on (by default the 64 validation shapes of the bundled points model's
dataset: generator seed 0, shapes 2240-2303) with the same protocol: 3000
surface points with Gaussian noise σ = 0.005, added once; IoU against the
shape's exact occupancy (its SDF sign), Chamfer-L1 and F-score@1% against
100k surface samples. Variants (every rotation-ensemble size of ``--rotations``
with every test-time fitting length of ``--fit-steps``, without and with the
winding-number prior with ``--winding 0,1``, without and with MISE anchored
at the input points with ``--anchors 0,1``, from every coarse MISE grid of
``--coarse``, each refined to the same final grid, and at every occupancy
threshold of ``--thresholds``, which the fitting targets too) run on the same inputs;
the last lines give each variant's figures as ratios against the first, with
the time per object. An image model (``--model onet-img-synthetic --rotations 1``)
reconstructs each shape from one 224² render (a viewpoint and colours of its own,
seeded by the shape's index); only ``--coarse`` and ``--thresholds`` vary.
``--write-threshold`` makes the threshold with the best mean IoU the model
folder's default and records the sweep in its config.json (the card states it
once ``quality.py --update-cards`` rewrites it).

    python benchmarks/heldout.py [--model NAME] [--rotations 1,8] [--fit-steps 0,60] [--winding 0,1] [--anchors 0,1] [--coarse 32,64] [--thresholds 0.5,0.55 [--write-threshold]] [--start 2240 --count 64] [--json out.json]
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
from occrecon.data.prepare import canonical_lattice, occupancy, render_views  # noqa: E402
from occrecon.data.shapes import random_shape  # noqa: E402
from occrecon.io.atomic import write_bytes_atomic  # noqa: E402
from occrecon.metrics import sample_surface, uniform_box_points  # noqa: E402
from occrecon.registry import default_model  # noqa: E402
from quality import or_empty, scores  # noqa: E402


def held_out_shape(seed: int, index: int):
    """Shape ``index`` of the generated dataset ``seed`` (as ``occrecon.data.cache`` draws it): (lattice, family)."""
    shape, family = random_shape(np.random.default_rng([seed, index]))
    return canonical_lattice(shape), family


def coarse_steps(resolution: int, final: int) -> int:
    """MISE subdivisions from a ``resolution`` grid to the ``final`` one (a power-of-two multiple of it)."""
    steps = int(round(np.log2(final / resolution)))
    if steps < 0 or resolution * 2**steps != final:
        raise SystemExit(f"--coarse {resolution} does not refine to the final {final}³ grid by halving")
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model("points"))
    parser.add_argument("--seed", type=int, default=0, help="generator seed of the dataset")
    parser.add_argument("--start", type=int, default=2240, help="first held-out shape index")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--rotations", default="1,8", help="comma-separated ensemble sizes to compare")
    parser.add_argument("--fit-steps", default="0", help="comma-separated test-time fitting lengths to compare (0: none)")
    parser.add_argument("--winding", default="0", help="comma-separated 0 (no winding-number prior) and/or 1 (with it)")
    parser.add_argument("--anchors", default="0", help="comma-separated 0 (plain MISE) and/or 1 (cells near the input points always subdivided)")
    parser.add_argument("--coarse", default="", help="comma-separated coarse MISE resolutions, each refined to the model's final grid (default: the model's)")
    parser.add_argument("--thresholds", default="", help="comma-separated occupancy thresholds (default: the model's)")
    parser.add_argument("--write-threshold", action="store_true", help="write the threshold with the best mean IoU into the model folder's config.json")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = lambda text: [int(t) for t in text.split(",") if t.strip()]  # noqa: E731
    model = occrecon.load_model(args.model, args.device)
    image = model.task == "image"
    if image and (counts(args.rotations) != [1] or set(counts(args.fit_steps)) != {0} or set(counts(args.winding)) != {0} or set(counts(args.anchors)) != {0}):
        raise SystemExit(f"{model.name} is an image model: only --coarse and --thresholds vary (pass --rotations 1)")
    default_coarse = model.generation.resolution
    final = default_coarse * 2 ** model.generation.upsampling_steps
    coarse = counts(args.coarse) or [default_coarse]
    thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()] or [model.generation.threshold]
    variants = [
        (r, f, w, c, a, t)
        for r in counts(args.rotations)
        for f in counts(args.fit_steps)
        for w in counts(args.winding)
        for c in coarse
        for a in counts(args.anchors)
        for t in thresholds
    ]
    label = {
        v: ("image" if image else f"r{v[0]} fit {v[1]}" + (" wind" if v[2] else ""))
        + (f" c{v[3]}" if len(coarse) > 1 else "")
        + (" anch" if v[4] else "")
        + (f" t{v[5]:g}" if len(thresholds) > 1 else "")
        for v in variants
    }
    print(f"model {model.name}; shapes {args.start}-{args.start + args.count - 1} of generator seed {args.seed}")
    print(f"{'shape':18} " + " ".join(f"{label[v] + ' IoU/CD/F':>26}" for v in variants))

    rows = []
    for index in range(args.start, args.start + args.count):
        lattice, family = held_out_shape(args.seed, index)
        gt_points, _ = sample_surface(lattice.mesh, 100_000, seed=0)
        iou_points = uniform_box_points(100_000, seed=0, low=-0.55, high=0.55)
        gt_inside = occupancy(lattice.shape, iou_points)
        if image:
            view = render_views(lattice.mesh, np.random.default_rng([args.seed, index]), n_views=1, image_size=224)["images"][0]
        else:
            cloud, _ = sample_surface(lattice.mesh, 3000, seed=1)
            cloud = cloud + np.random.default_rng(index).normal(scale=0.005, size=cloud.shape)
        row = {"index": index, "family": family}
        for variant in variants:
            rotations, fit_steps, winding, resolution, anchors, threshold = variant
            options = occrecon.ExtractionOptions(resolution=resolution, upsampling_steps=coarse_steps(resolution, final), threshold=threshold)
            start = time.perf_counter()
            if image:
                mesh = or_empty(lambda: occrecon.reconstruct(model, "image", view, options=options).mesh)
            else:
                mesh = or_empty(
                    lambda: occrecon.reconstruct(
                        model, "points", cloud, input_noise=0.0, rotations=rotations, fit_steps=fit_steps, winding=bool(winding), anchor_points=bool(anchors),
                        options=options,
                    ).mesh
                )
            row[label[variant]] = {**scores(mesh, gt_points, gt_inside, iou_points), "seconds": time.perf_counter() - start}
        rows.append(row)
        cells = " ".join(f"{r['iou']:>10.3f}/{r['chamfer_l1']:.4f}/{r['f_score_1']:.3f}" for r in (row[label[v]] for v in variants))
        print(f"{f'{index} {family}':18} {cells}", flush=True)

    mean = {label[v]: {k: float(np.mean([r[label[v]][k] for r in rows])) for k in ("iou", "chamfer_l1", "f_score_1", "seconds")} for v in variants}
    print(f"{'mean':18} " + " ".join(f"{m['iou']:>10.3f}/{m['chamfer_l1']:.4f}/{m['f_score_1']:.3f}" for m in mean.values()))
    base = mean[label[variants[0]]]
    for v in variants[1:]:
        m = mean[label[v]]
        print(
            f"{label[v]} vs {label[variants[0]]}: IoU x{m['iou'] / base['iou']:.3f}, Chamfer-L1 x{m['chamfer_l1'] / base['chamfer_l1']:.3f}, "
            f"F@1% x{m['f_score_1'] / base['f_score_1']:.3f}, time x{m['seconds'] / base['seconds']:.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"model": model.name, "rows": rows, "mean": mean}, indent=1), encoding="utf-8")
    if args.write_threshold:
        if len({v[:5] for v in variants}) != 1 or model.path is None:
            raise SystemExit("--write-threshold needs a model folder and one variant apart from --thresholds")
        sweep = {v[5]: mean[label[v]]["iou"] for v in variants}
        reconstruction = f"one 224² render per shape, MISE from {variants[0][3]}³" if image else describe(variants[0])
        best = write_threshold(model.path, sweep, reconstruction, f"{args.start}-{args.start + args.count - 1} (generator seed {args.seed})")
        print(f"wrote threshold {best:g} into {model.path / 'config.json'}")
    return 0


def describe(variant: tuple) -> str:
    """A reconstruction variant (rotations, fit steps, winding, coarse grid, anchors, threshold) in words, without its threshold."""
    rotations, fit_steps, winding, resolution, anchors, _ = variant
    return (
        f"{rotations}-rotation ensemble, {fit_steps} fitting steps, {'with' if winding else 'without'} the winding-number prior, "
        f"MISE from {resolution}³{' anchored at the input points' if anchors else ''}"
    )


def write_threshold(folder: Path, sweep: dict[float, float], reconstruction: str, shapes: str) -> float:
    """Make the threshold of ``sweep`` (threshold → mean IoU) with the best IoU the default of the model in ``folder``."""
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    best = max(sweep, key=sweep.get)
    config.setdefault("generation", {})["threshold"] = best
    config.setdefault("training", {})["reconstruction_threshold_sweep"] = {
        "reconstruction": reconstruction,
        "shapes": shapes,
        "iou": {f"{t:g}": round(v, 4) for t, v in sorted(sweep.items())},
    }
    write_bytes_atomic(path, (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode())
    return best


if __name__ == "__main__":
    raise SystemExit(main())
