"""Go/no-go probe of a depth-first image model (issue #23): true depth → partial cloud → the points model.

For each held-out generated shape (by default 48 of the 64 validation shapes of the
bundled models' dataset, generator seed 0, shapes 2240-2287; ``benchmarks/heldout.py``
uses 2240-2303), one 224² render in the image model's training style, the very
render ``heldout.py`` gives the image model, is taken with its true depth
(``render_views(..., depth=True)``: z in the camera frame through each pixel centre).
The depth is degraded (``occrecon.data.partial.degrade_depth``: Gaussian noise of
0.5% (or 1%) of the distance along each ray; the pixels on either side of every
depth discontinuity and of the silhouette dropped, the next ring with probability
1/2; up to 4 round holes; 1% dropout), unprojected through the render's pinhole
camera (``occrecon.camera.unproject``) into a partial cloud of the visible surface,
moved into the viewer-centred frame (x right, y up in the image, z towards the
viewer) and reconstructed by the bundled points model ``convonet-points-synthetic``
through ``occrecon.reconstruct_points``: "fast" is ``rotations=1, fit_steps=0,
winding=False`` (MISE anchors as the model's default), "default" the model's
defaults (8 rotations, 60 fitting steps, winding-number prior, MISE anchors). The
cloud carries its noise, so the model adds none (``input_noise=0``, as
``quality.py`` feeds it); "clean" is the undegraded true depth.

Frames. The viewer-centred frame centres the object's bounding box and makes its
longest side 1. At test time only the visible points are known, so ``vis`` takes
the box of the partial cloud itself: the hidden back is missing from it, so the box
is too shallow in z, its centre sits towards the viewer, and where the depth is the
longest side the scale is too small. ``full`` (an oracle) takes the full shape's box
in the same axes. The model sees the cloud in that frame (its own normalisation is
turned off for the probe, in memory: ``input.normalize = none``).

Scoring. Every reconstruction is mapped through the true camera into the *ground
truth's* viewer-centred frame (the full shape's box centred, longest side 1) and
scored there against the shape: volumetric IoU on 100k uniform points in the ±0.55
box (exact occupancy: the shape's SDF sign), Chamfer-L1, F@1% (with its precision
and recall) against 100k surface samples (``quality.scores``' definitions).
``ownbox`` is the IoU after centring the prediction on its own box with longest side
1 (how a viewer-centred model frames its output: "both meshes centred on their
bounding boxes"). ``carved`` is the IoU after silhouette carving of the predicted
volume with the render's mask dilated by 1 px: a uniform point projecting outside
it counts as outside (what carving the field does, measured on the volume; the mesh
is not re-extracted). The bundled image model ``onet-img-synthetic`` reconstructs the
same render and is scored as ``heldout.py`` scores it, in its canonical output frame.
``complete fast`` feeds the points model 3000 points of the whole surface (noise
0.005, as ``heldout.py``) in the ground truth's viewer frame: what full geometry
gives in that frame (the object tilted by the camera's elevation); ``complete
canon. fast`` the same points in the canonical object frame the model was trained
in (upright, axis-aligned), its mesh then moved into the viewer frame to be scored. ``depth hull``,
no network: the volume the view leaves possible (inside the silhouette, not in front
of the seen surface), cut at the full shape's box.

``--eval-meshes`` runs the same probe, for information only, on the 28 real meshes
of ``../shared/eval/meshes`` (the first of ``quality.py``'s 8 renders per mesh, its
canonical poses, its inside and outer-surface rules); nothing may be chosen on it.

    nice -n 10 python benchmarks/image_depth_probe.py [--start 2240 --count 48] [--eval-meshes [DIR]] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import occrecon  # noqa: E402
from occrecon import camera as cam  # noqa: E402
from occrecon.data.partial import CLEAN, DepthDegradation, degrade_depth  # noqa: E402
from occrecon.data.prepare import canonical_lattice, occupancy, render_views  # noqa: E402
from occrecon.data.shapes import random_shape  # noqa: E402
from occrecon.metrics import prediction_inside_mask, sample_surface, uniform_box_points  # noqa: E402
from quality import or_empty, scores  # noqa: E402

IMAGE_SIZE = 224
DEGRADED = DepthDegradation(noise=0.005, edge_px=1, edge_extra_px=1)
DEGRADED_1PCT = dataclasses.replace(DEGRADED, noise=0.01)
FAST = dict(rotations=1, fit_steps=0, winding=False)
DEFAULT: dict = {}

# (label, cloud, frame, reconstruction options)
VARIANTS = [
    ("clean vis fast", "clean", "vis", FAST),
    ("0.5% vis fast", "deg", "vis", FAST),
    ("1% vis fast", "deg1", "vis", FAST),
    ("0.5% full fast", "deg", "full", FAST),
    ("0.5% vis default", "deg", "vis", DEFAULT),
    ("complete fast", "complete", "full", FAST),
    ("complete canon. fast", "complete", "canonical", FAST),
]
HULL = "depth hull (oracle box)"


@dataclasses.dataclass
class Truth:
    """What a prediction in the ground truth's viewer frame is scored against."""

    surface: np.ndarray  # (n, 3) reference surface samples
    iou_points: np.ndarray  # (m, 3) uniform points in the ±0.55 box
    inside: np.ndarray | None  # (m,) bool, None where the mesh has no inside

    @functools.cached_property
    def tree(self) -> cKDTree:
        return cKDTree(self.surface)


def held_out_lattice(seed: int, index: int):
    """``heldout.held_out_shape``'s (lattice, family), reusing the lattice that canonicalisation computed (the same arrays, computed once)."""
    shape, family = random_shape(np.random.default_rng([seed, index]))
    lattice = getattr(shape, "lattice", None)
    return (lattice if lattice is not None else canonical_lattice(shape)), family


def keep_coordinates(model):
    """A view of ``model`` (the same network) whose input preparation keeps a cloud's coordinates (``input.normalize = none``)."""
    config = model.config
    if isinstance(config, dict):
        config = {**config, "input": {**config["input"], "normalize": "none"}}
    else:  # the typed config
        config = dataclasses.replace(config, input=dataclasses.replace(config.input, normalize="none"))
    return dataclasses.replace(model, config=config)


def own_box(mesh):
    """The mesh centred on its bounding box, longest side 1."""
    out = mesh.copy()
    lo, hi = out.bounds
    out.apply_translation(-(lo + hi) / 2)
    out.apply_scale(1.0 / float(np.max(hi - lo)))
    return out


def score_view(pred, truth: Truth, carve_mask: np.ndarray | None) -> dict:
    """``quality.scores`` (the same definitions, in one pass), plus the IoU after carving
    (``carve_mask``: which iou points lie inside the silhouette) and after re-framing the
    prediction by its own box (``iou_own``)."""
    if pred is None or len(pred.faces) == 0:
        row = scores(None, truth.surface, truth.inside, truth.iou_points)
        return {**row, "iou_carved": row["iou"], "iou_own": row["iou"]}
    pred_points, _ = sample_surface(pred, len(truth.surface), seed=1)
    # Exact nearest neighbours as occrecon.metrics.nearest_neighbors finds them, on one thread, the reference's tree built once.
    accuracy, _ = truth.tree.query(pred_points, k=1, workers=1)
    completeness, _ = cKDTree(pred_points).query(truth.surface, k=1, workers=1)
    precision, recall = float(np.mean(accuracy <= 0.01)), float(np.mean(completeness <= 0.01))
    row = {
        "chamfer_l1": float(0.5 * (accuracy.mean() + completeness.mean())),
        "f_score_1": 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall),
        "precision_1": precision,
        "recall_1": recall,
        "iou": None, "iou_carved": None, "iou_own": None,
    }
    if truth.inside is not None:
        inside = prediction_inside_mask(pred, truth.iou_points)
        row["iou"] = _iou(inside, truth.inside)
        if carve_mask is not None:
            row["iou_carved"] = _iou(inside & carve_mask, truth.inside)
        lo, hi = pred.bounds
        # The prediction centred on its own box, longest side 1: test the uniform points mapped the other way.
        own = prediction_inside_mask(pred, truth.iou_points * float(np.max(hi - lo)) + (lo + hi) / 2)
        row["iou_own"] = _iou(own, truth.inside)
    return row


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 1.0


def depth_hull(points_camera: np.ndarray, depth: np.ndarray, mask: np.ndarray, camera: cam.Camera) -> np.ndarray:
    """Which points (OpenCV camera frame) the view leaves possible: inside the silhouette and not in front of the seen surface.

    A masked pixel without a depth reading constrains nothing along its ray. No
    network: the largest volume consistent with one view, bounded only by the box
    the points fill.
    """
    uv, z = cam.project(points_camera, camera)
    out = cam.carve(points_camera, mask, camera)
    idx = np.flatnonzero(out)
    d = depth[np.floor(uv[idx, 1]).astype(np.int64), np.floor(uv[idx, 0]).astype(np.int64)]
    out[idx] = (d <= 0) | (z[idx] >= d)
    return out


def probe_one(points_model, points_none, image_model, mesh, render, truth_canonical: Truth, world_inside, seed: int, complete_world: np.ndarray | None) -> dict:
    """Every variant on one render. ``world_inside(points) -> bool`` is the shape's occupancy in the canonical (world) frame."""
    K, Rt = render["camera_K"][0], render["camera_Rt"][0]
    camera = cam.Camera.from_matrix(K, IMAGE_SIZE)
    depth, mask = render["depth"][0], render["mask"][0]
    # The ground truth's viewer-centred frame: the full shape's box in viewer axes.
    gt_frame = cam.ViewerFrame.of_points(cam.world_to_camera(mesh.vertices, Rt))
    A, b = gt_frame.world_to_output(Rt)
    iou_points = truth_canonical.iou_points  # the same uniform draw, read in the viewer frame
    world_of_iou = cam.camera_to_world(gt_frame.to_camera(iou_points), Rt)
    truth = Truth(truth_canonical.surface @ A.T + b, iou_points, world_inside(world_of_iou))
    carve_mask = cam.carve(gt_frame.to_camera(iou_points), mask, camera, dilate=1)

    clouds = {
        "clean": cam.unproject(depth, mask, camera),
        "deg": cam.unproject(degrade_depth(depth, np.random.default_rng([seed, 1]), DEGRADED), None, camera),
        "deg1": cam.unproject(degrade_depth(depth, np.random.default_rng([seed, 1]), DEGRADED_1PCT), None, camera),
    }
    if complete_world is not None:
        clouds["complete"] = cam.world_to_camera(complete_world, Rt)
    row: dict = {"visible_pixels": int(mask.sum()), "points": {k: len(v) for k, v in clouds.items()}}
    vis_frame = cam.ViewerFrame.of_points(clouds["deg"])
    # How far the visible box is from the full one, in the full box's units.
    row["vis_box"] = {
        "centre_offset": [float(x) for x in (np.asarray(vis_frame.centre) - np.asarray(gt_frame.centre)) / gt_frame.scale],
        "scale_ratio": vis_frame.scale / gt_frame.scale,
    }
    for label, cloud_key, frame_key, options in VARIANTS:
        if cloud_key not in clouds:
            continue
        cloud = clouds[cloud_key]
        if frame_key == "canonical":  # the object frame the points model was trained in, for comparison
            x = cam.camera_to_world(cloud, Rt)
        else:
            frame = gt_frame if frame_key == "full" else cam.ViewerFrame.of_points(cloud)
            x = frame.from_camera(cloud)
        start = time.perf_counter()
        pred = or_empty(lambda: occrecon.reconstruct_points(points_none, x, input_noise=0.0, seed=seed, **options))
        seconds = time.perf_counter() - start
        if pred is not None:
            pred.vertices = pred.vertices @ A.T + b if frame_key == "canonical" else gt_frame.from_camera(frame.to_camera(pred.vertices))
        row[label] = {**score_view(pred, truth, carve_mask), "seconds": seconds}
    start = time.perf_counter()
    pred = or_empty(lambda: occrecon.reconstruct_image(image_model, render["images"][0]))
    seconds = time.perf_counter() - start
    row["image model"] = {**scores(pred, truth_canonical.surface, truth_canonical.inside, truth_canonical.iou_points), "seconds": seconds}
    if truth.inside is not None:
        degraded = degrade_depth(depth, np.random.default_rng([seed, 1]), DEGRADED)
        hull = depth_hull(gt_frame.to_camera(iou_points), degraded, mask, camera) & (np.abs(iou_points) <= 0.5).all(axis=1)
        row[HULL] = {"iou": _iou(hull, truth.inside), "seconds": 0.0}
    return row


def _fmt(r: dict, key: str = "iou") -> str:
    v = r.get(key)
    return "   –  " if v is None else f"{v:6.3f}"


def summarise(rows: list[dict], labels: list[str]) -> dict:
    keys = ("iou", "iou_carved", "iou_own", "chamfer_l1", "f_score_1", "precision_1", "recall_1", "seconds")
    out = {}
    for label in labels:
        if not any(label in r for r in rows):
            continue
        out[label] = {}
        for k in keys:
            vals = [r[label][k] for r in rows if label in r and r[label].get(k) is not None]
            out[label][k] = float(np.mean(vals)) if vals else None
        secs = [r[label]["seconds"] for r in rows if label in r]
        out[label]["median_seconds"] = float(np.median(secs)) if secs else None
    return out


def print_table(mean: dict, title: str) -> None:
    print(f"\n{title}")
    print(f"{'variant':24} {'IoU':>6} {'carved':>6} {'ownbox':>6} {'CD-L1':>7} {'F@1%':>6} {'P@1%':>6} {'R@1%':>6} {'s/obj':>6}")
    for label, m in mean.items():
        cd = "   –   " if m["chamfer_l1"] is None else f"{m['chamfer_l1']:7.4f}"
        print(f"{label:24} {_fmt(m)} {_fmt(m, 'iou_carved')} {_fmt(m, 'iou_own')} {cd} {_fmt(m, 'f_score_1')} {_fmt(m, 'precision_1')} {_fmt(m, 'recall_1')} {m['median_seconds']:6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="generator seed of the dataset")
    parser.add_argument("--start", type=int, default=2240)
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--points-model", default="convonet-points-synthetic")
    parser.add_argument("--image-model", default="onet-img-synthetic")
    parser.add_argument("--eval-meshes", nargs="?", const=str(Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "meshes"), default=None,
                        help="also (for information only) the real meshes in this folder (default ../shared/eval/meshes)")
    parser.add_argument("--skip-heldout", action="store_true", help="only the --eval-meshes run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    points_model = occrecon.load_model(args.points_model, "cpu")
    # The probe frames the cloud itself (visible box or full box): the model must keep it as given.
    points_none = keep_coordinates(points_model)
    image_model = occrecon.load_model(args.image_model, "cpu")
    labels = [v[0] for v in VARIANTS] + ["image model", HULL]
    results: dict = {"variants": labels}
    t0 = time.perf_counter()

    if not args.skip_heldout:
        print(f"held-out shapes {args.start}-{args.start + args.count - 1} of generator seed {args.seed}; IoU per variant")
        print(f"{'shape':18} " + " ".join(f"{lab[:12]:>12}" for lab in labels))
        rows = []
        for index in range(args.start, args.start + args.count):
            lattice, family = held_out_lattice(args.seed, index)
            render = render_views(lattice.mesh, np.random.default_rng([args.seed, index]), n_views=1, image_size=IMAGE_SIZE, depth=True)
            surface, _ = sample_surface(lattice.mesh, 100_000, seed=0)
            iou_points = uniform_box_points(100_000, seed=0, low=-0.55, high=0.55)
            truth = Truth(surface, iou_points, occupancy(lattice.shape, iou_points))
            complete, _ = sample_surface(lattice.mesh, 3000, seed=1)
            complete = complete + np.random.default_rng(index).normal(scale=0.005, size=complete.shape)
            row = probe_one(points_model, points_none, image_model, lattice.mesh, render, truth, lambda p: occupancy(lattice.shape, p), index, complete)
            row.update(index=index, family=family, view=[float(v) for v in render["camera_view"][0]])
            rows.append(row)
            print(f"{f'{index} {family}':18} " + " ".join(f"{_fmt(row[lab]):>12}" for lab in labels if lab in row) + f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
        mean = summarise(rows, labels)
        print_table(mean, f"mean over {len(rows)} held-out shapes (generator seed {args.seed}, {args.start}-{args.start + args.count - 1})")
        boxes = np.array([r["vis_box"]["centre_offset"] for r in rows])
        ratios = np.array([r["vis_box"]["scale_ratio"] for r in rows])
        print(f"visible box vs full box (full-box units): centre offset mean |x| {np.abs(boxes[:, 0]).mean():.3f}, |y| {np.abs(boxes[:, 1]).mean():.3f}, "
              f"z {boxes[:, 2].mean():+.3f} (+: towards the viewer); longest side ratio median {np.median(ratios):.3f} (range {ratios.min():.3f}-{ratios.max():.3f})")
        results["heldout"] = {"rows": rows, "mean": mean}

    if args.eval_meshes:
        results["eval_meshes"] = run_eval_meshes(Path(args.eval_meshes), points_model, points_none, image_model, labels)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


def run_eval_meshes(folder: Path, points_model, points_none, image_model, labels: list[str]) -> dict:
    """The probe on real meshes, for information only (``quality.py``'s poses, first render, inside and surface rules)."""
    from quality import SUFFIXES, image_rng, load_unit_mesh
    from occrecon.metrics import exterior_depth, filled_inside_mask, filled_solid, outer_surface_sample, sealed_inside_mask

    print(f"\nreal meshes in {folder} (information only; nothing is chosen on them)")
    rows = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES):
        gt = load_unit_mesh(path)
        solid = filled_solid(gt)
        iou_points = uniform_box_points(100_000, seed=0, low=-0.55, high=0.55)
        inside = sealed_inside_mask(gt, iou_points, solid=solid)
        if inside is not None:
            depth_cells = exterior_depth(solid)
            sample = lambda count, seed: outer_surface_sample(gt, count, seed, depth_cells)[0]  # noqa: E731
        else:
            sample = lambda count, seed: sample_surface(gt, count, seed=seed)[0]  # noqa: E731
        surface = sample(100_000, 0)
        # quality.py's input cloud for the points model.
        complete = sample(3000, 1) + np.random.default_rng(0).normal(scale=0.005, size=(3000, 3))
        render = render_views(gt, image_rng(path.name), n_views=1, image_size=IMAGE_SIZE, depth=True)
        truth = Truth(surface, iou_points, inside)
        # Whether the mesh has an inside is decided once, on the uniform points, as quality.py does; the viewer frame's points are not uniform in the box.
        world_inside = (lambda p: filled_inside_mask(gt, p, solid=solid)) if inside is not None else (lambda p: None)
        row = probe_one(points_model, points_none, image_model, gt, render, truth, world_inside, 0, complete)
        row.update(mesh=path.name)
        rows.append(row)
        print(f"{path.name[:18]:18} " + " ".join(f"{_fmt(row[lab]):>12}" for lab in labels if lab in row), flush=True)
    mean = summarise(rows, labels)
    print_table(mean, f"mean over {len(rows)} real meshes (IoU over those with an inside)")
    return {"rows": rows, "mean": mean}


if __name__ == "__main__":
    raise SystemExit(main())
