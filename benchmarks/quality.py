"""Quality of the bundled models on real meshes (default: ../shared/eval/meshes).

For every mesh, normalised to the unit frame (bounding-box centre, longest side 1):

* points:  the bundled points model on 3000 surface points with noise 0.005
           (ConvONet's object benchmark), against Open3D screened Poisson on the
           same points (normals estimated and consistently oriented);
* voxels:  the bundled voxels model on the mesh's solid 32³ grid, against
           marching cubes of that grid;
* image:   the bundled image model on a render of the mesh in the canonical pose.

Prints IoU, Chamfer-L1 and F-score@1% (unit-cube units) per mesh and the mean.
IoU needs an inside/outside for the ground truth: for open meshes it comes from a
majority vote of three ray-parity tests, and such meshes are marked with '*'.

    python benchmarks/quality.py [--meshes DIR] [--only points,voxels,image] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import trimesh

import occrecon
from occrecon.data.mesh_source import MeshShape
from occrecon.data.prepare import render_views, voxelize
from occrecon.extract import GridValues, marching_cubes
from occrecon.metrics import inside_mask, is_closed, nearest_neighbors, sample_surface, uniform_box_points
from occrecon.registry import default_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MESHES = ROOT.parent / "shared" / "eval" / "meshes"
SUFFIXES = {".obj", ".ply", ".off", ".stl", ".glb"}


def load_unit_mesh(path: Path) -> trimesh.Trimesh:
    mesh = trimesh.load(path, force="mesh", process=True)
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(1.0 / float(np.max(hi - lo)))
    return mesh


def scores(pred: trimesh.Trimesh | None, gt_points: np.ndarray, gt_inside: np.ndarray, iou_points: np.ndarray, seed: int = 0) -> dict:
    """IoU, Chamfer-L1 and F@1% of a prediction in the unit frame (worst values for an empty one)."""
    if pred is None or len(pred.faces) == 0:
        return {"iou": 0.0, "chamfer_l1": float(np.sqrt(3)), "f_score_1": 0.0}
    pred_points, _ = sample_surface(pred, len(gt_points), seed=seed + 1)
    accuracy, _ = nearest_neighbors(pred_points, gt_points)
    completeness, _ = nearest_neighbors(gt_points, pred_points)
    precision, recall = float(np.mean(accuracy <= 0.01)), float(np.mean(completeness <= 0.01))
    f_score = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    pred_inside = inside_mask(pred, iou_points)
    union = np.logical_or(pred_inside, gt_inside).sum()
    iou = float(np.logical_and(pred_inside, gt_inside).sum() / union) if union else 1.0
    return {"iou": iou, "chamfer_l1": float(0.5 * (accuracy.mean() + completeness.mean())), "f_score_1": f_score}


def poisson(points: np.ndarray, depth: int = 8) -> trimesh.Trimesh:
    """Screened Poisson on unoriented points: normals estimated, oriented, 2% lowest-density vertices trimmed."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=20))
    cloud.orient_normals_consistent_tangent_plane(15)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth)
    densities = np.asarray(densities)
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, 0.02))
    result = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.triangles), process=False)
    # Orientation of estimated normals is arbitrary: flip an inside-out result.
    if result.is_watertight and result.volume < 0:
        result.invert()
    return result


def voxel_mesh(grid: np.ndarray) -> trimesh.Trimesh:
    """Marching cubes of a 32³ occupancy grid whose cell centres are -0.5 + (i + 0.5)/32."""
    res = grid.shape[0]
    half = 0.5 - 0.5 / res
    values = GridValues(grid.astype(np.float32) - 0.5, np.full(3, -half), np.full(3, half), 0, 1)
    vertices, faces = marching_cubes(values, 0.0)
    return trimesh.Trimesh(vertices, faces, process=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meshes", type=Path, default=DEFAULT_MESHES)
    parser.add_argument("--only", default="points,voxels,image")
    parser.add_argument("--points-model", default=default_model("points"))
    parser.add_argument("--voxels-model", default=default_model("voxels"))
    parser.add_argument("--image-model", default=default_model("image"))
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--iou-points", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not args.meshes.is_dir():
        print(f"{args.meshes}: no such folder of meshes", file=sys.stderr)
        return 2
    tasks = [t.strip() for t in args.only.split(",") if t.strip()]
    models = {}
    if "points" in tasks:
        models["points"] = occrecon.load_model(args.points_model, args.device)
    if "voxels" in tasks:
        models["voxels"] = occrecon.load_model(args.voxels_model, args.device)
    if "image" in tasks:
        models["image"] = occrecon.load_model(args.image_model, args.device)
    methods = {"points": ["points", "poisson"], "voxels": ["voxels", "voxel_mc"], "image": ["image"]}
    columns = [m for t in tasks for m in methods[t]]
    print("models: " + ", ".join(f"{t}={m.name}" for t, m in models.items()))
    print(f"{'mesh':28} " + " ".join(f"{c + ' IoU/CD/F':>26}" for c in columns))

    rows = []
    for path in sorted(p for p in args.meshes.iterdir() if p.suffix.lower() in SUFFIXES):
        gt = load_unit_mesh(path)
        rng = np.random.default_rng(0)
        gt_points, _ = sample_surface(gt, args.samples, seed=0)
        iou_points = uniform_box_points(args.iou_points, seed=0, low=-0.55, high=0.55)
        closed = is_closed(gt)
        gt_inside = inside_mask(gt, iou_points)
        row = {"mesh": path.name, "closed": closed, "seconds": {}}
        if "points" in tasks:
            cloud, _ = sample_surface(gt, 3000, seed=1)
            cloud = cloud + rng.normal(scale=0.005, size=cloud.shape)
            start = time.perf_counter()
            pred = occrecon.reconstruct_points(models["points"], cloud)
            row["seconds"]["points"] = time.perf_counter() - start
            row["points"] = scores(pred, gt_points, gt_inside, iou_points)
            try:
                row["poisson"] = scores(poisson(cloud), gt_points, gt_inside, iou_points)
            except Exception as exc:  # Poisson can fail on degenerate clouds: score it as empty
                print(f"  poisson failed on {path.name}: {exc}", file=sys.stderr)
                row["poisson"] = scores(None, gt_points, gt_inside, iou_points)
        if "voxels" in tasks:
            grid = voxelize(MeshShape(gt), 32)
            start = time.perf_counter()
            pred = occrecon.reconstruct_voxels(models["voxels"], grid.astype(np.float32))
            row["seconds"]["voxels"] = time.perf_counter() - start
            # A plain array is read in voxel-index units: map it back to the unit frame.
            pred.apply_scale(1.0 / 32)
            pred.apply_translation([-0.5, -0.5, -0.5])
            row["voxels"] = scores(pred, gt_points, gt_inside, iou_points)
            row["voxel_mc"] = scores(voxel_mesh(grid), gt_points, gt_inside, iou_points)
        if "image" in tasks:
            view = render_views(gt, np.random.default_rng(3), n_views=1, image_size=224)["images"][0]
            start = time.perf_counter()
            pred = occrecon.reconstruct_image(models["image"], view)
            row["seconds"]["image"] = time.perf_counter() - start
            row["image"] = scores(pred, gt_points, gt_inside, iou_points)
        rows.append(row)
        mark = "" if closed else "*"
        print(f"{path.name + mark:28} " + " ".join(f"{row[c]['iou']:>8.3f} {row[c]['chamfer_l1']:>8.4f} {row[c]['f_score_1']:>8.3f}" for c in columns), flush=True)

    mean = {c: {k: float(np.mean([r[c][k] for r in rows])) for k in ("iou", "chamfer_l1", "f_score_1")} for c in columns}
    print(f"{'mean (' + str(len(rows)) + ' meshes)':28} " + " ".join(f"{mean[c]['iou']:>8.3f} {mean[c]['chamfer_l1']:>8.4f} {mean[c]['f_score_1']:>8.3f}" for c in columns))
    if "points" in tasks:
        print(f"points vs Poisson: F@1% ratio {mean['points']['f_score_1'] / max(mean['poisson']['f_score_1'], 1e-9):.2f}, IoU ratio {mean['points']['iou'] / max(mean['poisson']['iou'], 1e-9):.2f}")
    if "voxels" in tasks:
        print(f"voxels vs marching cubes of the input: IoU {mean['voxels']['iou'] - mean['voxel_mc']['iou']:+.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "mean": mean, "models": {t: m.name for t, m in models.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
