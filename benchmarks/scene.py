"""Scenes: time and peak memory against scene size, against upstream-style dense crops, and quality.

All figures are ratios against a baseline run in this same process:

* scaling: the example room tiled 1×, 2× and 4× in floor area; time should grow
  about linearly and peak memory (process high-water mark) stay flat;
* dense: upstream's scheme on the 1× room (every crop, dense lattice per crop)
  against occrecon's (empty crops skipped, MISE refined near points only);
* quality: a held-out generated room (seed 1_000_003, never used for training)
  scanned like a sensor, reconstructed, and scored against its true surface with
  F-score at 2 cm and 5 cm, next to Open3D screened Poisson on the same points.

    python benchmarks/scene.py [--model convonet-scene-synthetic] [--skip-quality] [--update-card]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

import occrecon
from occrecon.io.readers import read_points
from occrecon.metrics import nearest_neighbors, sample_surface
from occrecon.registry import default_model
from occrecon.scene import reconstruct_scene, scene_settings

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tiled(points: np.ndarray, nx: int, nz: int, gap: float = 0.5) -> np.ndarray:
    extent = np.ptp(points, axis=0)
    copies = [points + np.array([i * (extent[0] + gap), 0.0, k * (extent[2] + gap)]) for i in range(nx) for k in range(nz)]
    return np.concatenate(copies)


def f_scores(pred_points: np.ndarray, gt_points: np.ndarray, thresholds=(0.02, 0.05)) -> dict[str, float]:
    accuracy, _ = nearest_neighbors(pred_points, gt_points)
    completeness, _ = nearest_neighbors(gt_points, pred_points)
    out = {}
    for tau in thresholds:
        p, r = float(np.mean(accuracy <= tau)), float(np.mean(completeness <= tau))
        out[f"F@{tau * 100:.0f}cm"] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    out["chamfer_l1_m"] = float(0.5 * (accuracy.mean() + completeness.mean()))
    return out


def poisson_points(points: np.ndarray, n: int, depth: int = 10) -> np.ndarray:
    import open3d as o3d
    import trimesh

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=0.1, max_nn=30))
    cloud.orient_normals_consistent_tangent_plane(15)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth)
    densities = np.asarray(densities)
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, 0.05))
    result = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.triangles), process=False)
    return sample_surface(result, n, seed=1)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model("scene"))
    parser.add_argument("--room", type=Path, default=ROOT / "examples" / "room_points.ply")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--update-card", action="store_true", help="write the figures into the bundled model's card")
    args = parser.parse_args()
    card: list[str] = []

    model = occrecon.load_model(args.model, args.device)
    room = read_points(args.room).points
    settings = scene_settings(model)
    print(f"model {model.name} on {model.device}; room {args.room.name}: {len(room):,} points, {np.ptp(room, axis=0).round(2).tolist()} m")

    print("\nscaling (ratios against 1×)")
    print(f"{'area':>5} {'points':>10} {'crops':>7} {'skipped':>8} {'evals':>12} {'time s':>8} {'time ×':>7} {'peak MB':>8} {'peak ×':>7}")
    base_time = base_peak = None
    for nx, nz in ((1, 1), (2, 1), (2, 2)):
        cloud = tiled(room, nx, nz)
        start = time.perf_counter()
        result = reconstruct_scene(model, cloud, units="m", settings=settings)
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()
        base_time, base_peak = base_time or seconds, base_peak or peak
        line = (
            f"{nx * nz:>4}× {len(cloud):>10,} {result.n_crops:>7} {result.n_skipped:>8} {result.n_evaluations:>12,} "
            f"{seconds:>8.1f} {seconds / base_time:>6.2f}× {peak:>8.0f} {peak / base_peak:>6.2f}×"
        )
        print(line)
        card.append(f"| {nx * nz}× | {len(cloud):,} | {result.n_crops - result.n_skipped} of {result.n_crops} | {seconds / base_time:.2f}× | {peak / base_peak:.2f}× |")

    print("\nupstream-style dense crops vs occrecon on the 1× room")
    start = time.perf_counter()
    ours = reconstruct_scene(model, room, units="m", settings=settings)
    t_ours = time.perf_counter() - start
    dense_settings = scene_settings(model, resolution=settings.cells_per_crop, upsampling_steps=0)
    start = time.perf_counter()
    dense = reconstruct_scene(model, room, units="m", settings=dense_settings, skip_empty=False)
    t_dense = time.perf_counter() - start
    print(f"network evaluations: dense {dense.n_evaluations:,} / occrecon {ours.n_evaluations:,} = {dense.n_evaluations / ours.n_evaluations:.1f}×")
    print(f"crops encoded:       dense {dense.n_crops - dense.n_skipped} / occrecon {ours.n_crops - ours.n_skipped}")
    print(f"wall time:           dense {t_dense:.1f} s / occrecon {t_ours:.1f} s = {t_dense / t_ours:.1f}×")
    card = [
        f"Measured by `benchmarks/scene.py` on {model.device} ({len(room):,}-point example room, {base_time:.1f} s).",
        "",
        "| area | points | crops run | time | peak memory |",
        "|---|---|---|---|---|",
        *card,
        "",
        f"Against upstream-style dense crops (every crop, a dense {settings.cells_per_crop}³ lattice each) on the example room: "
        f"{dense.n_evaluations / ours.n_evaluations:.1f}× fewer network evaluations, {t_dense / t_ours:.1f}× less wall time.",
    ]

    if not args.skip_quality:
        from occrecon.data.rooms import prepare_room, random_room, room_mesh, scan_cloud

        rng = np.random.default_rng([1_000_003])
        held_out = random_room(rng)
        data = prepare_room(held_out, rng)
        scan, _ = scan_cloud(data, rng, noise_std=0.005)
        truth = sample_surface(room_mesh(held_out), 200_000, seed=0)[0]
        # Score only the part a scan can see: the truth near the scan.
        visible, _ = nearest_neighbors(truth, scan)
        truth = truth[visible < 0.05]
        result = reconstruct_scene(model, scan, units="m", settings=settings)
        ours_q = f_scores(sample_surface(result.mesh, len(truth), seed=1)[0], truth)
        poisson_q = f_scores(poisson_points(scan, len(truth)), truth)
        print(f"\nquality on a held-out generated room ({len(scan):,} scan points, {held_out.size.round(2).tolist()} m)")
        for name, q in (("occrecon", ours_q), ("Poisson", poisson_q)):
            print(f"{name:>9}: " + ", ".join(f"{k} {v:.3f}" for k, v in q.items()))
        card += [
            "",
            f"Quality on a held-out generated room ({held_out.size.round(1).tolist()} m, {len(scan):,} scan points with 5 mm noise, "
            "never trained on), scored against the true surface the scan can see:",
            "",
            "| method | F@2cm | F@5cm | Chamfer-L1 (m) |",
            "|---|---|---|---|",
            *(f"| {name} | {q['F@2cm']:.3f} | {q['F@5cm']:.3f} | {q['chamfer_l1_m']:.4f} |" for name, q in ((model.name, ours_q), ("Open3D screened Poisson (depth 10)", poisson_q))),
        ]
    if args.update_card:
        from occrecon.training import model_card

        if model.source != "bundled" or model.path is None:
            print("--update-card: only bundled models' cards are written", file=sys.stderr)
            return 2
        (model.path / "README.md").write_text(model_card(model.config, benchmark="\n".join(card)), encoding="utf-8")
        print(f"updated {model.path / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
