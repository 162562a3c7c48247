"""Scene quality (issue #29): the scene model against Open3D screened Poisson, side by side in one run.

Generated test set. Held-out procedural rooms: room ``k`` is ``random_room(np.random.default_rng([2029, k]))``.
The bundled ``convonet-scene-synthetic`` was trained on dataset seed 0 (``default_rng([0, i])``, rooms
0-165, its threshold chosen on 150-165), and ``benchmarks/scene.py`` uses ``default_rng([1_000_003])``:
seed 2029 was never used for training, threshold or design choices. Each room's true surface is
:func:`occrecon.data.rooms.room_mesh` (1 cm lattice near furniture, 2 cm elsewhere). It is scanned by
the virtual scanner (:mod:`occrecon.data.scanner`, default settings: 3 free floor spots at 1.2-1.8 m,
0.2° panorama, -60° to +90° elevation, 12 m range, mixed pixels and 0.2% random ranges) with range
noise sigma = n/2 + (n/6)·range, i.e. sigma = n at 3 m, for n = 5 mm and 1 cm; the scan is then
subsampled (seeded) to 50k and 200k points (``--million`` adds 1 M).

Scores, in metres:

* the reference ("the room surface near the scan") is 400k area-weighted samples of the true surface,
  kept where (a) a scanner position sees them: in range, in the scanner's field of view, met at most
  87° off the normal, and the first surface along the line of sight (ray cast, 5 mm tolerance), and
  (b) an inlier point of this scan (outliers excluded, the scanner flags them) lies within 5 cm:
  wall backs, shadows behind furniture and surfaces the subsampled scan does not cover are not scored;
* completeness: distance from each reference point to the reconstructed mesh (exact, ray-casting scene);
* accuracy: distance from 200k area-weighted samples of the reconstructed mesh to the whole true
  surface (exact): surface made up where nothing is (a lid over a room without ceiling) counts against
  a method, surface on true but unseen geometry (a wall's back at the right thickness) does not;
* F@2cm and F@5cm: harmonic mean of the shares within 2 / 5 cm; Chamfer-L1 the mean of the two means.

Methods, each on the same points: occrecon's scene model (``reconstruct_scene``, units m, up axis found
from the points, as ``occrecon points scan.ply --scene --units m`` does), and Open3D screened Poisson at
depth 9 and 10 (normals from the 30 nearest points within 10 cm, each turned towards the scanner position
that saw its point; vertices under the 5% density quantile removed, as ``benchmarks/scene.py`` does). Time
is the call's wall time; memory is the process's peak resident memory during the call (the kernel's
high-water mark, reset through ``/proc/self/clear_refs`` before each call), as a whole (``peak_rss_mb``,
which includes the truth mesh and the loaded model) and above its level before the call (``peak_mb``).
The latter underestimates: heap pages that earlier steps freed stay resident and are reused without
raising the mark (2026-12-07: 6-18 MB "above" for Poisson depth 10 on 50k points). A fair per-method
peak needs each method in a fresh process; ``benchmarks/scene.py`` measures occrecon's alone.

Real scans (``--real``; ../shared/eval/scans, measured only, never tuned on): the ICL-NUIM living room,
the two registered 3DMatch fragments and the Kinect office, in metres. No reference exists, so: the share
of input points farther than 2 cm from each mesh, the share of the mesh's area farther than 5 cm from every
input point, connected pieces, and boundary loops (holes and open borders). Poisson uses the file's
normals where it has them (ICL-NUIM), else normals estimated as above and turned towards the sensor at
the origin (both other scans are in their first camera's frame). ``--figures DIR`` renders occrecon
above Poisson (depth 10) per scan with :mod:`occrecon.preview`.

    python benchmarks/scene_quality.py --rooms 0 1 2 --out results.jsonl
    python benchmarks/scene_quality.py --real --figures docs --out results.jsonl
    python benchmarks/scene_quality.py --summary results.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

TEST_SEED = 2029
"""Dataset seed of the held-out rooms (training used seed 0)."""
REAL_SCANS = ("indoor_iclnuim_livingroom_synthetic", "indoor_3dmatch_fragments", "indoor_kinect_office")
ROOT = Path(__file__).resolve().parents[1]
EVAL_SCANS = ROOT.parent / "shared" / "eval" / "scans"
NEAR_SCAN = 0.05
"""A reference point is scored when an inlier scan point lies within this (m)."""


# --------------------------------------------------------------------------------------
# Time and memory
# --------------------------------------------------------------------------------------
def _status_kb(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key))


class Measured:
    """Wall time and peak resident memory (above the level at entry) of a block."""

    def __enter__(self) -> "Measured":
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        self.rss0 = _status_kb("VmRSS:")
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.peak_rss_mb = _status_kb("VmHWM:") / 1024.0
        self.peak_mb = self.peak_rss_mb - self.rss0 / 1024.0


# --------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------
def run_occrecon(model, points: np.ndarray):
    from occrecon.scene import reconstruct_scene

    result = reconstruct_scene(model, points, units="m", up=None)
    result.mesh.metadata["crops_run"] = result.n_crops - result.n_skipped  # outliers far from the room add crops
    return result.mesh


def poisson(points: np.ndarray, normals: np.ndarray, depth: int):
    """Open3D screened Poisson at ``depth``, vertices under the 5% density quantile removed (a trimesh)."""
    import open3d as o3d
    import trimesh

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.normals = o3d.utility.Vector3dVector(normals.astype(np.float64))
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth)
    densities = np.asarray(densities)
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, 0.05))
    return trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.triangles), process=False)


def oriented_normals(points: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """Normals estimated from the points (30 nearest within 10 cm), each turned towards ``towards`` (n, 3) or (3,)."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=0.1, max_nn=30))
    normals = np.asarray(cloud.normals)
    flip = np.einsum("ij,ij->i", normals, np.broadcast_to(towards, points.shape) - points) < 0
    normals[flip] *= -1
    return normals


def methods(model, points: np.ndarray, normals: np.ndarray):
    """(name, mesh, Measured) of every method on the same points (normals: for Poisson)."""
    out = []
    for name, call in (
        ("occrecon", lambda: run_occrecon(model, points)),
        ("Poisson d9", lambda: poisson(points, normals, 9)),
        ("Poisson d10", lambda: poisson(points, normals, 10)),
    ):
        with Measured() as measured:
            mesh = call()
        out.append((name, mesh, measured))
    return out


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------
def raycasting(mesh):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)), o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    return scene


def distance(scene, points: np.ndarray) -> np.ndarray:
    import open3d as o3d

    return scene.compute_distance(o3d.core.Tensor(np.asarray(points, np.float32))).numpy().astype(np.float64)


def seen_by_scanner(scene, points: np.ndarray, normals: np.ndarray, positions: np.ndarray, settings) -> np.ndarray:
    """(n,) bool: some scanner position sees the point (range, field of view, incidence, first along its line of sight)."""
    import open3d as o3d

    seen = np.zeros(len(points), bool)
    for origin in positions:
        ray = points - origin
        rng = np.linalg.norm(ray, axis=1)
        direction = ray / rng[:, None]
        elevation = np.degrees(np.arcsin(np.clip(direction[:, 1], -1, 1)))
        incidence = np.degrees(np.arccos(np.clip(np.abs(np.einsum("ij,ij->i", direction, normals)), 0, 1)))
        ok = (rng >= settings.min_range) & (rng <= settings.max_range) & (elevation >= settings.min_elevation_deg)
        ok &= (elevation <= settings.max_elevation_deg) & (incidence <= settings.max_incidence_deg)
        rays = np.concatenate([np.broadcast_to(origin, points.shape), direction], axis=1).astype(np.float32)
        hit = scene.cast_rays(o3d.core.Tensor(rays[ok]))["t_hit"].numpy()
        seen[np.flatnonzero(ok)[hit >= rng[ok] - 0.005]] = True
    return seen


def scores(mesh, truth_scene, reference: np.ndarray, n_samples: int = 200_000) -> dict[str, float]:
    from occrecon.metrics import sample_surface

    if not len(mesh.faces):
        return {"F@2cm": 0.0, "F@5cm": 0.0, "chamfer_l1_m": float("inf")}
    accuracy = distance(truth_scene, sample_surface(mesh, n_samples, seed=1)[0])
    completeness = distance(raycasting(mesh), reference)
    out = {}
    for tau in (0.02, 0.05):
        p, r = float(np.mean(accuracy <= tau)), float(np.mean(completeness <= tau))
        out[f"F@{tau * 100:.0f}cm"] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        out[f"precision@{tau * 100:.0f}cm"], out[f"recall@{tau * 100:.0f}cm"] = p, r
    out["chamfer_l1_m"] = float(0.5 * (accuracy.mean() + completeness.mean()))
    return out


# --------------------------------------------------------------------------------------
# Generated rooms
# --------------------------------------------------------------------------------------
def scanner_for(noise: float):
    from occrecon.data.scanner import ScannerSettings

    return ScannerSettings(noise_a=noise / 2, noise_b=noise / 6)


def held_out(k: int):
    """Room ``k`` of the test set: (room, true mesh, scanner positions, reference samples and normals, their visibility)."""
    from occrecon.data.rooms import random_room, room_mesh
    from occrecon.data.scanner import scanner_positions
    from occrecon.metrics import sample_surface

    room = random_room(np.random.default_rng([TEST_SEED, k]))
    mesh = room_mesh(room)
    settings = scanner_for(0.005)
    positions = scanner_positions(room, settings, seed=[TEST_SEED, k, 1])
    samples, normals = sample_surface(mesh, 400_000, seed=[TEST_SEED, k, 2])
    truth_scene = raycasting(mesh)
    seen = seen_by_scanner(truth_scene, samples, normals, positions, settings)
    return room, mesh, positions, samples[seen], truth_scene


def room_rows(model, k: int, budgets: list[int], noises: list[float]) -> list[dict]:
    from occrecon.data.scanner import scan_mesh
    from occrecon.metrics import nearest_neighbors

    start = time.perf_counter()
    room, mesh, positions, visible, truth_scene = held_out(k)
    print(f"room {k}: {room.size.round(2).tolist()} m, {len(mesh.faces):,} true faces, {len(visible):,} reference samples seen "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    rows = []
    for j, noise in enumerate(noises):
        scan = scan_mesh(mesh.vertices, mesh.faces, positions, scanner_for(noise), seed=[TEST_SEED, k, 3, j])
        print(f"  scanned {len(scan):,} points at {noise * 1000:.0f} mm ({time.perf_counter() - start:.0f} s)", flush=True)
        for budget in budgets:
            pick = np.sort(np.random.default_rng([TEST_SEED, k, 4, j, budget]).choice(len(scan), min(budget, len(scan)), replace=False))
            points = scan.points[pick].astype(np.float64)
            inliers = points[~scan.outlier[pick]]
            reference = visible[nearest_neighbors(visible, inliers)[0] <= NEAR_SCAN]
            normals = oriented_normals(points, scan.positions[scan.scanner[pick]])
            base = dict(room=k, size_m=room.size.round(2).tolist(), walls=len(room.walls), ceiling=room.has_ceiling, points=len(points),
                        noise_m=noise, outliers=float(scan.outlier[pick].mean()), reference=len(reference), seen=len(visible))
            for name, result, measured in methods(model, points, normals):
                row = dict(base, method=name, seconds=measured.seconds, peak_mb=measured.peak_mb, peak_rss_mb=measured.peak_rss_mb, faces=len(result.faces),
                           crops_run=result.metadata.get("crops_run"))
                row.update(scores(result, truth_scene, reference))
                rows.append(row)
                print(f"room {k} {len(points):>7,} pts {noise * 1000:>4.0f} mm  {name:<12} F@2cm {row['F@2cm']:.3f}  F@5cm {row['F@5cm']:.3f}  "
                      f"CD-L1 {row['chamfer_l1_m']:.4f} m  {row['seconds']:6.1f} s  {row['peak_mb']:7.0f} MB", flush=True)
    return rows


# --------------------------------------------------------------------------------------
# Real scans
# --------------------------------------------------------------------------------------
def mesh_structure(mesh) -> tuple[int, int]:
    """(connected pieces, boundary loops) once coincident vertices are merged."""
    import scipy.sparse
    import trimesh
    from scipy.sparse.csgraph import connected_components

    m = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=True)
    if not len(m.faces):
        return 0, 0
    pieces = int(trimesh.graph.connected_component_labels(m.face_adjacency, node_count=len(m.faces)).max() + 1)
    edges, counts = np.unique(m.edges_sorted, axis=0, return_counts=True)
    border = edges[counts == 1]
    if not len(border):
        return pieces, 0
    nodes, local = np.unique(border, return_inverse=True)
    local = local.reshape(-1, 2)
    graph = scipy.sparse.coo_matrix((np.ones(len(local)), (local[:, 0], local[:, 1])), shape=(len(nodes), len(nodes)))
    return pieces, int(connected_components(graph, directed=False)[0])


def real_measures(mesh, points: np.ndarray) -> dict[str, float]:
    from occrecon.metrics import nearest_neighbors, sample_surface

    far_points = float(np.mean(distance(raycasting(mesh), points) > 0.02))
    area = sample_surface(mesh, 200_000, seed=1)[0]
    far_area = float(np.mean(nearest_neighbors(area, points)[0] > 0.05))
    pieces, loops = mesh_structure(mesh)
    return {"points_over_2cm": far_points, "area_over_5cm": far_area, "pieces": pieces, "boundary_loops": loops}


def real_rows(model, figures: Path | None) -> list[dict]:
    import open3d as o3d

    from occrecon.io.readers import read_points

    rows = []
    for name in REAL_SCANS:
        path = EVAL_SCANS / f"{name}.ply"
        if not path.exists():
            print(f"skip {name}: {path} is missing", file=sys.stderr)
            continue
        points = read_points(path).points.astype(np.float64)
        cloud = o3d.io.read_point_cloud(str(path))
        normals = np.asarray(cloud.normals) if cloud.has_normals() else oriented_normals(points, np.zeros(3))
        meshes = {}
        for method, mesh, measured in methods(model, points, normals):
            row = dict(scan=name, points=len(points), method=method, seconds=measured.seconds, peak_mb=measured.peak_mb,
                       peak_rss_mb=measured.peak_rss_mb, faces=len(mesh.faces))
            row.update(real_measures(mesh, points))
            rows.append(row)
            meshes[method] = mesh
            print(f"{name:<38} {method:<12} points>2cm {row['points_over_2cm']:.3f}  area>5cm {row['area_over_5cm']:.3f}  "
                  f"pieces {row['pieces']:>5}  loops {row['boundary_loops']:>5}  {row['seconds']:6.1f} s  {row['peak_mb']:7.0f} MB", flush=True)
        if figures is not None:
            print(f"  figure {write_figure(figures / f'scene_quality_{name}.png', points, meshes['occrecon'], meshes['Poisson d10'])}")
    return rows


def write_figure(path: Path, points: np.ndarray, ours, theirs, size: int = 200) -> Path:
    """occrecon's mesh (top row) above Poisson's (bottom row), each beside the scan, in one PNG under 300 KB."""
    import io

    import trimesh
    from PIL import Image, ImageDraw

    from occrecon.orientation import resolve_up
    from occrecon.preview import InputView, render_preview

    up = resolve_up(points, None)[0]
    lo, hi = points.min(axis=0) - 0.1, points.max(axis=0) + 0.1

    def cropped(mesh):  # the scan's box: a mesh's far-flung parts would shrink the picture
        inside = np.all((mesh.vertices >= lo) & (mesh.vertices <= hi), axis=1)
        keep = inside[mesh.faces].all(axis=1)
        return trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False)

    strips = [render_preview(cropped(m), InputView(points=points), up=up, size=size) for m in (ours, theirs)]
    picture = Image.fromarray(np.concatenate(strips, axis=0))
    draw = ImageDraw.Draw(picture)
    for row, label in enumerate(("occrecon convonet-scene-synthetic", "Open3D Poisson depth 10")):
        draw.text((size + 6, row * size + 4), label, fill=(0, 0, 0))
    for colours in (None, 128, 64):
        encoded = io.BytesIO()
        (picture if colours is None else picture.quantize(colours)).save(encoded, format="PNG", optimize=True)
        if encoded.tell() < 300_000:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded.getvalue())
    return path


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------
def summary(rows: list[dict]) -> str:
    """Markdown tables: generated rooms (mean over rooms per setting and method) and real scans."""
    lines = []
    generated = [r for r in rows if "room" in r]
    if generated:
        lines += ["| points | noise | method | F@2cm | F@5cm | Chamfer-L1 (m) | time (s) | peak memory (MB) |", "|---|---|---|---|---|---|---|---|"]
        keys = sorted({(r["points"] // 1000 * 1000, r["noise_m"]) for r in generated})
        for budget, noise in keys:
            for method in ("occrecon", "Poisson d9", "Poisson d10"):
                sel = [r for r in generated if r["points"] // 1000 * 1000 == budget and r["noise_m"] == noise and r["method"] == method]
                if sel:
                    mean = {k: float(np.mean([r[k] for r in sel])) for k in ("F@2cm", "F@5cm", "chamfer_l1_m", "seconds", "peak_mb")}
                    lines.append(f"| {budget // 1000}k | {noise * 1000:.0f} mm | {method} | {mean['F@2cm']:.3f} | {mean['F@5cm']:.3f} | "
                                 f"{mean['chamfer_l1_m']:.4f} | {mean['seconds']:.1f} | {mean['peak_mb']:.0f} |")
        lines.append(f"\n{len({r['room'] for r in generated})} rooms: {sorted({r['room'] for r in generated})}")
    real = [r for r in rows if "scan" in r]
    if real:
        lines += ["", "| scan | points | method | points > 2 cm from mesh | mesh area > 5 cm from points | pieces | boundary loops | time (s) | peak memory (MB) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in real:
            lines.append(f"| {r['scan']} | {r['points']:,} | {r['method']} | {r['points_over_2cm']:.3f} | {r['area_over_5cm']:.3f} | "
                         f"{r['pieces']:,} | {r['boundary_loops']:,} | {r['seconds']:.1f} | {r['peak_mb']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="convonet-scene-synthetic")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rooms", type=int, nargs="*", default=[], help="held-out room indices (seed 2029) to run")
    parser.add_argument("--points", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--million", action="store_true", help="add 1 M-point scans")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.005, 0.01], help="range noise sigma at 3 m (m)")
    parser.add_argument("--real", action="store_true", help="measure the real scans in ../shared/eval/scans")
    parser.add_argument("--figures", type=Path, help="folder for the real scans' side-by-side PNGs")
    parser.add_argument("--out", type=Path, help="append result rows to this JSON-lines file")
    parser.add_argument("--summary", type=Path, help="print the tables of a JSON-lines file and stop")
    args = parser.parse_args()
    if args.summary:
        print(summary([json.loads(line) for line in args.summary.read_text(encoding="utf-8").splitlines() if line.strip()]))
        return 0

    import occrecon

    model = occrecon.load_model(args.model, args.device)
    budgets = args.points + ([1_000_000] if args.million else [])
    rows = []
    for k in args.rooms:
        rows += room_rows(model, k, budgets, args.noise)
        _append(args.out, rows[-len(budgets) * len(args.noise) * 3:])
    if args.real:
        got = real_rows(model, args.figures)
        _append(args.out, got)
        rows += got
    print(summary(rows))
    return 0


def _append(path: Path | None, rows: list[dict]) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
