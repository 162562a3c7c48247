"""Quality of the bundled models on real meshes (default: ../shared/eval/meshes).

For every mesh, normalised to the unit frame (bounding-box centre, longest side 1):

* points:  the bundled points model on 3000 surface points with noise 0.005
           (ConvONet's object benchmark: noise added once, so the model adds
           none of its own), against Open3D screened Poisson on the same points
           (normals estimated and consistently oriented);
* voxels:  the bundled voxels model on the mesh's solid 32³ grid, against
           marching cubes of that grid; the grid made by both fill rules: a cell
           filled when any part of it is inside (binvox's rule, ShapeNet's: the
           ``voxels`` columns) and when its centre is (``mesh.contains(centres)``:
           the ``_centre`` columns), the latter read with ``--fill-rule centre``
           and, as before that option, as a binvox-rule grid (``_as_any``);
           ``--fill-rule auto``'s choice is printed per grid, and its means
           (which reuse the run of the rule it chose);
* image:   the bundled image model on renders of the mesh in the canonical pose:
           ``--image-views`` (8) views per mesh, each mesh with viewpoints and
           colours of its own (seeded by its file name), scored as the mean
           over its views. ONet's test set shows each object from a viewpoint
           of its own; one shared viewpoint (``--shared-view``, the protocol
           before 2026-11-28 night) showed every mesh from its +x side.

The canonical pose is ShapeNet's and the generator's: y up, front towards +z.
Real meshes come in their authors' poses (ModelNet chairs and scanned bottles
are z-up, the cow and the milk truck face +-x), so ``CANONICAL_POSES`` turns each
of those into it with axis rotations that were read off renders of the meshes
alone, never off reconstructions. ``--file-pose`` measures the file poses.

Prints IoU, Chamfer-L1 and F-score@1% (unit-cube units) per mesh and the mean.
IoU needs an inside/outside, which many real meshes (marked '*': not closed) do
not define. The surface is voxelised (256³ over the ±0.55 box) and every cavity
the outside cannot reach is filled: right for closed meshes, for overlapping
parts (where ray parity fails) and for holes up to two voxels. Within two
voxels of the outside, the side of the nearest face decides, so the voxels the
surface passes through do not thicken the solid (on the 13 closed meshes the
result matches ray parity to 0.996-1.000 IoU; counting those voxels as inside,
as before 2026-11-28 evening (commit b32156b), gave 0.86-0.97). Meshes whose
holes are too big to seal, or made of open sheets, have no inside: their IoU is
left out ('–') and the mean IoU says over how many meshes it was taken. The
32³ voxel inputs mark every cell that this inside reaches.

The input points and the reference surface of Chamfer-L1 and F-score come from
the boundary of that filled solid: faces buried inside it (the hidden parts of
intersecting components, panels behind closed doors; 44% of the sofa's area)
are left out, as upstream samples both from watertight meshes. Otherwise the
input holds surfaces that the ground truth calls solid material. The '+' after
a name marks a mesh with buried faces; ``--all-surfaces`` samples every face
(the protocol of the figures before 2026-11-28).

    python benchmarks/quality.py [--meshes DIR] [--only points,voxels,image] [--image-views 8 | --shared-view] [--all-surfaces] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh

import occrecon
from occrecon.data.prepare import render_views
from occrecon.errors import InputError
from occrecon.extract import GridValues, marching_cubes
from occrecon.metrics import (
    buried_mask,
    exterior_depth,
    filled_inside_mask,
    filled_solid,
    is_closed,
    nearest_neighbors,
    outer_surface_sample,
    prediction_inside_mask,
    sample_surface,
    sealed_inside_mask,
    uniform_box_points,
)
from occrecon.registry import default_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MESHES = ROOT.parent / "shared" / "eval" / "meshes"
SUFFIXES = {".obj", ".ply", ".off", ".stl", ".glb"}

# Rotations (axis, degrees; applied in order about the unit frame's origin) into the
# canonical pose. Meshes not listed are already y up and face +z, or have no front.
CANONICAL_POSES: dict[str, tuple[tuple[str, float], ...]] = {
    "chair_0890.off": (("x", -90),),
    "chair_0892.off": (("x", -90),),
    "chair_0893.off": (("x", -90),),
    "bathtub_0154.ply": (("x", -90),),
    "003_cracker_box.obj": (("x", -90), ("y", 90)),  # YCB scans are z-up; the printed face is the front
    "006_mustard_bottle.obj": (("x", -90),),
    "fuze.obj": (("x", -90),),
    "cow.obj": (("y", 90),),
    "CesiumMilkTruck.ply": (("y", -90),),
    "tum_rabbit.ply": (("y", 180),),
}
_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def load_unit_mesh(path: Path, canonical: bool = True) -> trimesh.Trimesh:
    """The mesh centred on its bounding box with longest side 1, in the canonical pose unless ``canonical`` is False."""
    mesh = trimesh.load(path, force="mesh", process=True)
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(1.0 / float(np.max(hi - lo)))
    for axis, degrees in CANONICAL_POSES.get(path.name, ()) if canonical else ():
        # Quarter turns about the box centre keep it centred with longest side 1.
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.radians(degrees), _AXES[axis]))
    return mesh


def scores(pred: trimesh.Trimesh | None, gt_points: np.ndarray, gt_inside: np.ndarray | None, iou_points: np.ndarray, seed: int = 0) -> dict:
    """IoU, Chamfer-L1 and F@1% of a prediction in the unit frame (worst values for an empty one)."""
    if pred is None or len(pred.faces) == 0:
        return {"iou": None if gt_inside is None else 0.0, "chamfer_l1": float(np.sqrt(3)), "f_score_1": 0.0}
    pred_points, _ = sample_surface(pred, len(gt_points), seed=seed + 1)
    accuracy, _ = nearest_neighbors(pred_points, gt_points)
    completeness, _ = nearest_neighbors(gt_points, pred_points)
    precision, recall = float(np.mean(accuracy <= 0.01)), float(np.mean(completeness <= 0.01))
    f_score = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    iou = None
    if gt_inside is not None:
        pred_inside = prediction_inside_mask(pred, iou_points)
        union = np.logical_or(pred_inside, gt_inside).sum()
        iou = float(np.logical_and(pred_inside, gt_inside).sum() / union) if union else 1.0
    return {"iou": iou, "chamfer_l1": float(0.5 * (accuracy.mean() + completeness.mean())), "f_score_1": f_score}


def poisson(points: np.ndarray, depth: int = 8) -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    """Screened Poisson on unoriented points (normals estimated and oriented).

    Returns:
        (surface with the 2% lowest-density vertices trimmed, as users run it, for
        distances; the untrimmed surface, for IoU, since a trimmed one encloses no
        volume: closed unless Open3D cut it open at its octree's box).
    """
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=20))
    cloud.orient_normals_consistent_tangent_plane(15)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth)
    # Copies: open3d returns views of its own buffers, which the trimming below frees.
    closed = trimesh.Trimesh(np.array(mesh.vertices), np.array(mesh.triangles), process=False)
    densities = np.asarray(densities)
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, 0.02))
    trimmed = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.triangles), process=False)
    # Orientation of estimated normals is arbitrary: flip an inside-out result.
    if closed.is_watertight and closed.volume < 0:
        closed.invert()
        trimmed.invert()
    return trimmed, closed


def solid_voxels(mesh: trimesh.Trimesh, res: int = 32, sub: int = 5, solid: np.ndarray | None = None) -> np.ndarray:
    """(res, res, res) bool over [-0.5, 0.5]³: a cell is occupied when any of its sub³ lattice points is inside.

    ``solid``: the mesh's :func:`~occrecon.metrics.filled_solid`, if already computed.
    """
    offsets = np.linspace(0.0, 1.0, sub)
    corner = np.stack(np.meshgrid(np.arange(res), np.arange(res), np.arange(res), indexing="ij"), -1).reshape(-1, 1, 3)
    local = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(1, -1, 3)
    points = ((corner + local) / res - 0.5).reshape(-1, 3)
    return filled_inside_mask(mesh, points, solid=solid).reshape(res, res, res, -1).any(axis=-1)


def centre_voxels(mesh: trimesh.Trimesh, res: int = 32, solid: np.ndarray | None = None) -> np.ndarray:
    """(res, res, res) bool over [-0.5, 0.5]³ by the centre rule: a cell is occupied when its centre is inside, as ``mesh.contains(centres)`` makes it."""
    centres = (np.arange(res) + 0.5) / res - 0.5
    points = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    return filled_inside_mask(mesh, points, solid=solid).reshape(res, res, res)


def voxel_model_mesh(model, grid: np.ndarray, fill_rule: str) -> trimesh.Trimesh | None:
    """The model's mesh of a 32³ grid over the unit cube, read by ``fill_rule``, in the unit frame (None where it finds no surface)."""
    pred = or_empty(lambda: occrecon.reconstruct(model, "voxels", grid.astype(np.float32), fill_rule=fill_rule).mesh)
    if pred is not None:
        # A plain array is read in voxel-index units: map it back to the unit frame.
        pred.apply_scale(1.0 / grid.shape[0])
        pred.apply_translation([-0.5, -0.5, -0.5])
    return pred


VOXEL_RUNS = {"voxels": ("any", "any"), "voxels_centre": ("centre", "centre"), "voxels_centre_as_any": ("centre", "any")}
"""Column -> (the rule the grid was made by, the ``--fill-rule`` it is read with)."""


def voxel_rows(model, gt: trimesh.Trimesh, solid: np.ndarray, truth: tuple) -> dict:
    """The voxels columns of one mesh: the model on its grid by either fill rule, marching cubes of each, and ``auto``'s choices."""
    from occrecon.preprocess.voxels import detect_fill_rule

    gt_points, gt_inside, iou_points = truth
    grids = {"any": solid_voxels(gt, 32, solid=solid), "centre": centre_voxels(gt, 32, solid=solid)}
    row: dict = {"seconds": {}, "auto_rule": {rule: detect_fill_rule(grid)[0] for rule, grid in grids.items()}}
    for column, (made, read) in VOXEL_RUNS.items():
        start = time.perf_counter()
        pred = voxel_model_mesh(model, grids[made], read)
        row["seconds"][column] = time.perf_counter() - start
        row[column] = scores(pred, gt_points, gt_inside, iou_points)
    row["voxel_mc"] = scores(voxel_mesh(grids["any"]), gt_points, gt_inside, iou_points)
    row["voxel_mc_centre"] = scores(voxel_mesh(grids["centre"]), gt_points, gt_inside, iou_points)
    # --fill-rule auto: the run of the rule it chose, made here only where that is no other column's.
    row["voxels_centre_auto"] = row["voxels_centre" if row["auto_rule"]["centre"] == "centre" else "voxels_centre_as_any"]
    row["voxels_auto"] = row["voxels"]
    if row["auto_rule"]["any"] == "centre":
        row["voxels_auto"] = scores(voxel_model_mesh(model, grids["any"], "centre"), gt_points, gt_inside, iou_points)
    return row


def or_empty(reconstruct: Callable[[], trimesh.Trimesh]) -> trimesh.Trimesh | None:
    """The reconstruction, or None (scored as an empty prediction) where the model finds no surface above its threshold."""
    try:
        return reconstruct()
    except InputError:
        return None


def image_rng(name: str, shared: bool = False) -> np.random.Generator:
    """The generator of a mesh's renders: seeded by its file name, so each mesh has its own viewpoints and colours, reproducibly.

    ``shared``: the same generator for every mesh (one viewpoint for all: the protocol before 2026-11-28 night).
    """
    return np.random.default_rng(3 if shared else [3, zlib.crc32(name.encode())])


def voxel_mesh(grid: np.ndarray) -> trimesh.Trimesh:
    """Marching cubes of a 32³ occupancy grid whose cell centres are -0.5 + (i + 0.5)/32."""
    res = grid.shape[0]
    half = 0.5 - 0.5 / res
    values = GridValues(grid.astype(np.float32) - 0.5, np.full(3, -half), np.full(3, half), 0, 1)
    vertices, faces = marching_cubes(values, 0.0)
    return trimesh.Trimesh(vertices, faces, process=False)


def _mean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _cells(score: dict) -> str:
    iou = "–" if score["iou"] is None else f"{score['iou']:.3f}"
    return f"{iou:>8} {score['chamfer_l1']:>8.4f} {score['f_score_1']:>8.3f}"


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
    parser.add_argument("--update-cards", action="store_true", help="write the figures into the bundled models' cards")
    parser.add_argument("--file-pose", action="store_true", help="measure the meshes in their files' poses, not the canonical one")
    parser.add_argument("--all-surfaces", action="store_true", help="sample inputs and references from every face, buried ones included (the protocol before 2026-11-28)")
    parser.add_argument("--image-views", type=int, default=8, help="renders per mesh for the image model; its scores are their mean")
    parser.add_argument("--shared-view", action="store_true", help="render every mesh from the same viewpoint, in the same colours (the protocol before 2026-11-28 night: one view, all meshes seen from azimuth 102°)")
    parser.add_argument("--timing-note", default="", help="said after the card's timing, e.g. 'while training ran on the same 2 cores'")
    args = parser.parse_args()
    if args.image_views < 1:
        parser.error("--image-views must be at least 1")
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
    methods = {"points": ["points", "poisson"], "voxels": ["voxels", "voxel_mc", "voxels_centre", "voxels_centre_as_any", "voxel_mc_centre"], "image": ["image"]}
    columns = [m for t in tasks for m in methods[t]]
    print("models: " + ", ".join(f"{t}={m.name}" for t, m in models.items()))
    print(f"{'mesh':28} " + " ".join(f"{c + ' IoU/CD/F':>26}" for c in columns))

    rows = []
    for path in sorted(p for p in args.meshes.iterdir() if p.suffix.lower() in SUFFIXES):
        gt = load_unit_mesh(path, canonical=not args.file_pose)
        rng = np.random.default_rng(0)
        iou_points = uniform_box_points(args.iou_points, seed=0, low=-0.55, high=0.55)
        closed = is_closed(gt)
        solid = filled_solid(gt)
        # The sealed inside for closed meshes too: ray parity fails where closed parts overlap. None: it encloses nothing.
        gt_inside = sealed_inside_mask(gt, iou_points, solid=solid)
        row = {"mesh": path.name, "closed": closed, "has_inside": gt_inside is not None, "seconds": {}}
        if gt_inside is None or args.all_surfaces:
            surface = lambda count, seed: sample_surface(gt, count, seed=seed)[0]  # noqa: E731
        else:
            # Faces buried in the filled solid are neither input nor reference (see the module docstring).
            depth = exterior_depth(solid)
            surface = lambda count, seed: outer_surface_sample(gt, count, seed, depth)[0]  # noqa: E731
            row["buried_area"] = float(np.mean(buried_mask(sample_surface(gt, 20_000, seed=2)[0], depth)))
        gt_points = surface(args.samples, 0)
        if "points" in tasks:
            cloud = surface(3000, 1)
            cloud = cloud + rng.normal(scale=0.005, size=cloud.shape)
            start = time.perf_counter()
            # The cloud carries its noise already: the model must not add its test-time 0.005 on top.
            pred = or_empty(lambda: occrecon.reconstruct_points(models["points"], cloud, input_noise=0.0))
            row["seconds"]["points"] = time.perf_counter() - start
            row["points"] = scores(pred, gt_points, gt_inside, iou_points)
            try:
                trimmed, closed_surface = poisson(cloud)
                row["poisson"] = scores(trimmed, gt_points, gt_inside, iou_points)
                row["poisson"]["iou"] = scores(closed_surface, gt_points, gt_inside, iou_points)["iou"]
            except Exception as exc:  # Poisson can fail on degenerate clouds: score it as empty
                print(f"  poisson failed on {path.name}: {exc}", file=sys.stderr)
                row["poisson"] = scores(None, gt_points, gt_inside, iou_points)
        if "voxels" in tasks:
            voxels = voxel_rows(models["voxels"], gt, solid, (gt_points, gt_inside, iou_points))
            row["seconds"].update(voxels.pop("seconds"))
            row.update(voxels)
        if "image" in tasks:
            renders = render_views(gt, image_rng(path.name, args.shared_view), n_views=args.image_views, image_size=224)
            per_view, seconds = [], []
            for view, camera in zip(renders["images"], renders["camera_view"]):
                start = time.perf_counter()
                pred = or_empty(lambda: occrecon.reconstruct_image(models["image"], view))
                seconds.append(time.perf_counter() - start)
                per_view.append({**scores(pred, gt_points, gt_inside, iou_points), "azimuth": float(camera[0]), "elevation": float(camera[1])})
            row["seconds"]["image"] = float(np.median(seconds))
            row["image"] = {k: _mean([v[k] for v in per_view]) for k in ("iou", "chamfer_l1", "f_score_1")}
            row["image_views"] = per_view
        rows.append(row)
        mark = ("" if closed else "*") + ("+" if row.get("buried_area", 0.0) > 0.01 else "")
        auto = f"  auto: {row['auto_rule']['any']}, {row['auto_rule']['centre']}" if "auto_rule" in row else ""
        print(f"{path.name + mark:28} " + " ".join(_cells(row[c]) for c in columns) + auto, flush=True)

    mean = {c: {k: _mean([r[c][k] for r in rows]) for k in ("iou", "chamfer_l1", "f_score_1")} for c in columns}
    n_iou = sum(r["has_inside"] for r in rows)
    print(f"{'mean (' + str(len(rows)) + ' meshes)':28} " + " ".join(_cells(mean[c]) for c in columns))
    print(f"(IoU over the {n_iou} meshes with a defined inside; Chamfer-L1 and F-score over all {len(rows)})")
    if "points" in tasks:
        print(f"points vs Poisson: F@1% ratio {mean['points']['f_score_1'] / max(mean['poisson']['f_score_1'], 1e-9):.2f}, IoU ratio {mean['points']['iou'] / max(mean['poisson']['iou'], 1e-9):.2f}")
    if "voxels" in tasks:
        print(f"voxels vs marching cubes of the input: IoU {mean['voxels']['iou'] - mean['voxel_mc']['iou']:+.3f}")
        print_fill_rules(rows, mean)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "mean": mean, "models": {t: m.name for t, m in models.items()}}, indent=1), encoding="utf-8")
    if args.update_cards:
        update_cards(models, rows, mean, args.meshes, args.timing_note, canonical=not args.file_pose, all_surfaces=args.all_surfaces, shared_view=args.shared_view)
    return 0


def print_fill_rules(rows: list[dict], mean: dict) -> None:
    """The centre-rule grids' figures beside the binvox-rule ones, and what ``--fill-rule auto`` gives on each."""
    for key in ("voxels", "voxels_centre_as_any", "voxels_centre", "voxel_mc_centre", "voxels_auto", "voxels_centre_auto"):
        score = {k: _mean([r[key][k] for r in rows]) for k in ("iou", "chamfer_l1", "f_score_1")}
        iou = "–" if score["iou"] is None else f"{score['iou']:.3f}"
        print(f"  {key:22} IoU {iou}, Chamfer-L1 {score['chamfer_l1']:.4f}, F@1% {score['f_score_1']:.3f}")
    for made in ("any", "centre"):
        print(f"  --fill-rule auto read {sum(r['auto_rule'][made] == 'centre' for r in rows)} of the {len(rows)} {made}-rule grids as centre-rule")


_BASELINES = {"points": ("poisson", "Open3D screened Poisson (depth 8, normals estimated and oriented; distances on the 2%-density-trimmed surface, IoU on the untrimmed one) on the same points"), "voxels": ("voxel_mc", "marching cubes of the 32³ input grid")}
_CENTRE_RULE_ROWS = {
    "voxels_centre": "{model}, centre-rule grid, `--fill-rule centre`",
    "voxels_centre_as_any": "{model}, centre-rule grid read as binvox's (`--fill-rule any`)",
    "voxel_mc_centre": "marching cubes of the centre-rule grid",
}
_SETUPS = {
    "points": "3000 surface points with Gaussian noise σ = 0.005 (unit-cube units), added once: the model adds none of its own",
    "voxels": "the mesh's solid 32³ voxel grid, a cell filled when any part of it is inside (binvox's rule); the centre-rule rows fill a cell when its centre is inside",
    "image": "{views} 224² renders of the mesh from viewpoints of its own (azimuth uniform, elevation 20-35°; colours and lighting drawn per mesh; seeded by its file name), each mesh scoring the mean over its views",
    "image_shared": "one 224² render of the mesh, every mesh from the same viewpoint (azimuth 102°, elevation 30°) in the same colours",
}


def _setup(task: str, rows: list[dict], shared_view: bool) -> str:
    if task != "image":
        return _SETUPS[task]
    return _SETUPS["image_shared"] if shared_view else _SETUPS["image"].format(views=len(rows[0]["image_views"]))


def update_cards(
    models: dict,
    rows: list[dict],
    mean: dict,
    meshes: Path,
    timing_note: str = "",
    canonical: bool = True,
    all_surfaces: bool = False,
    shared_view: bool = False,
) -> None:
    """Rewrite each bundled model's README.md with the figures just measured."""
    from occrecon.training import model_card

    for task, model in models.items():
        if model.source != "bundled" or model.path is None:
            continue
        n_iou = sum(r["has_inside"] for r in rows)
        buried = sum(r.get("buried_area", 0.0) > 0.01 for r in rows)
        sampled = (
            "Points are sampled from every face."
            if all_surfaces
            else f"Input points and reference surfaces come from the boundary of the filled solid that IoU uses: faces buried inside it ({buried} meshes have some) are left out, as upstream samples from watertight meshes."
        )
        pose = f" and turned into the canonical pose (y up, front +z: {len(CANONICAL_POSES)} of them needed a turn)" if canonical else " in its file's pose"
        lines = [
            f"Measured by `benchmarks/quality.py` on {len(rows)} real meshes ({meshes.name}/: furniture, animals, vehicles, household and CAD parts), each normalised to the unit frame{pose}; input: {_setup(task, rows, shared_view)}. Unit-cube units; Chamfer-L1 is not ×10. IoU over the {n_iou} meshes that enclose a volume (the others are open sheets or have large holes); their inside is the filled 256³ voxelisation, with the side of the nearest face deciding in the voxels the surface passes through (the mesh itself scores 0.996-1.000 against it where ray parity applies). {sampled}",
            "",
            "| method | IoU | Chamfer-L1 | F-score@1% |",
            "|---|---|---|---|",
            f"| {model.name} | {mean[task]['iou']:.3f} | {mean[task]['chamfer_l1']:.4f} | {mean[task]['f_score_1']:.3f} |",
        ]
        if task in _BASELINES:
            key, label = _BASELINES[task]
            lines.append(f"| {label} | {mean[key]['iou']:.3f} | {mean[key]['chamfer_l1']:.4f} | {mean[key]['f_score_1']:.3f} |")
        if task == "voxels":
            for key, label in _CENTRE_RULE_ROWS.items():
                lines.append(f"| {label.format(model=model.name)} | {mean[key]['iou']:.3f} | {mean[key]['chamfer_l1']:.4f} | {mean[key]['f_score_1']:.3f} |")
        seconds = [r["seconds"][task] for r in rows if task in r["seconds"]]
        gen = model.generation
        final = gen.resolution * 2**gen.upsampling_steps
        lines += ["", f"Median reconstruction time per object: {np.median(seconds):.2f} s on {model.device} (MISE {gen.resolution} → {final}³{', ' + timing_note if timing_note else ''})."]
        (model.path / "README.md").write_text(model_card(model.config.to_dict(), benchmark="\n".join(lines)), encoding="utf-8")
        print(f"updated {model.path / 'README.md'}")


if __name__ == "__main__":
    sys.exit(main())
