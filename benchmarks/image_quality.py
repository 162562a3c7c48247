"""The image models side by side (issue #23): the depth-first model against the current one.

On the real meshes (default ../shared/eval/meshes), with exactly ``quality.py``'s renders
(the same ``--views`` seeded 224² views per mesh, its canonical poses, inside and
outer-surface rules), every model is scored **in the frame it outputs**:

* ``old``: the canonical-frame model (default ``onet-img-synthetic``) against the mesh in
  the canonical unit frame, as ``quality.py`` scores it;
* ``old facing oracle``: the same prediction turned about y by the best of its four
  quarter turns (a measurement of how much is facing; no model may do it);
* ``new``: the viewer-frame model (default ``pointmap-img-synthetic``) against the mesh
  moved through the render's true camera into the viewer frame (x right, y up, z towards
  the viewer); the scorer, not the model, uses the camera;
* ``old in viewer frame``: the old prediction moved through the same camera, for a
  like-for-like comparison.

Both meshes are centred on their bounding boxes with longest side 1 before scoring
(the viewer-frame model's output convention). IoU over the meshes with an inside,
Chamfer-L1 and F@1% over all.

``--photos DIR`` (default ../shared/eval/photos) adds, for every ``*_image*.png``, the
silhouette agreement of the new model: the IoU between the input mask (the photo's
``*_mask.png``, cropped and resized exactly as the photo is) and the mesh rendered back
through the model's own camera (fitted to its point map), at the network's resolution.
Nothing may be trained, tuned or chosen on these data.

    nice python benchmarks/image_quality.py [--views 8] [--limit N] [--new MODEL] [--old MODEL] [--photos DIR | --no-photos] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import occrecon  # noqa: E402
from occrecon import camera as cam  # noqa: E402
from occrecon.data.prepare import render_views  # noqa: E402
from occrecon.metrics import exterior_depth, filled_solid, outer_surface_sample, sample_surface, sealed_inside_mask, uniform_box_points  # noqa: E402
from occrecon.pipeline import unit_box  # noqa: E402
from quality import DEFAULT_MESHES, SUFFIXES, image_rng, load_unit_mesh, or_empty, scores  # noqa: E402

DEFAULT_PHOTOS = DEFAULT_MESHES.parent / "photos"


class Similarity:
    """``x -> (x @ R.T + t) * s`` : the canonical unit frame into a view's viewer frame, its box centred, longest side 1."""

    def __init__(self, rotation: np.ndarray, vertices: np.ndarray):
        self.rotation = rotation
        turned = vertices @ rotation.T
        lo, hi = turned.min(0), turned.max(0)
        self.shift, self.scale = -(lo + hi) / 2, 1.0 / float(np.max(hi - lo))

    def forward(self, points: np.ndarray) -> np.ndarray:
        return (points @ self.rotation.T + self.shift) * self.scale

    def inverse(self, points: np.ndarray) -> np.ndarray:
        return (points / self.scale - self.shift) @ self.rotation


def viewer_rotation(camera_Rt: np.ndarray) -> np.ndarray:
    """The rotation from the canonical frame into the view's viewer axes (translation dropped: boxes are recentred)."""
    return cam.OPENCV_TO_VIEWER @ np.asarray(camera_Rt, dtype=np.float64)[:, :3]


def turned_y(mesh: trimesh.Trimesh, quarter_turns: int) -> trimesh.Trimesh:
    out = mesh.copy()
    out.apply_transform(trimesh.transformations.rotation_matrix(quarter_turns * np.pi / 2, (0, 1, 0)))
    return out


def moved(mesh: trimesh.Trimesh | None, transform) -> trimesh.Trimesh | None:
    if mesh is None or len(mesh.faces) == 0:
        return mesh
    return trimesh.Trimesh(unit_box(transform(np.asarray(mesh.vertices, dtype=np.float64))), mesh.faces, process=False)


def score_mesh(name: str, gt: trimesh.Trimesh, models: dict, views: int, n_samples: int, n_iou: int) -> dict:
    """Per-view scores of every model on one mesh, and their means."""
    solid = filled_solid(gt)
    iou_points = uniform_box_points(n_iou, seed=0, low=-0.55, high=0.55)
    canonical_inside = sealed_inside_mask(gt, iou_points, solid=solid)
    has_inside = canonical_inside is not None
    depth = exterior_depth(solid) if has_inside else None
    gt_points = outer_surface_sample(gt, n_samples, 0, depth)[0] if has_inside else sample_surface(gt, n_samples, seed=0)[0]
    renders = render_views(gt, image_rng(name), n_views=views, image_size=224)
    per_view = []
    for k, view in enumerate(renders["images"]):
        frame = Similarity(viewer_rotation(renders["camera_Rt"][k]), np.asarray(gt.vertices, dtype=np.float64))
        viewer_inside = sealed_inside_mask(gt, frame.inverse(iou_points), solid=solid) if has_inside else None
        viewer_points = frame.forward(gt_points)
        row: dict = {"azimuth": float(renders["camera_view"][k][0])}
        if "old" in models:
            start = time.perf_counter()
            old = or_empty(lambda: occrecon.reconstruct_image(models["old"], view))
            row["old_seconds"] = time.perf_counter() - start
            row["old"] = scores(old, gt_points, canonical_inside, iou_points)
            turns = [scores(turned_y(old, q), gt_points, canonical_inside, iou_points) for q in range(4)] if old is not None else [row["old"]]
            row["old_oracle"] = max(turns, key=lambda s: (s["iou"] or 0.0, s["f_score_1"]))
            row["old_viewer"] = scores(moved(old, frame.forward), viewer_points, viewer_inside, iou_points)
        if "new" in models:
            start = time.perf_counter()
            new = or_empty(lambda: occrecon.reconstruct_image(models["new"], view))
            row["new_seconds"] = time.perf_counter() - start
            row["new"] = scores(moved(new, lambda v: v), viewer_points, viewer_inside, iou_points)
        per_view.append(row)
    columns = [c for c in ("old", "old_oracle", "old_viewer", "new") if c in per_view[0]]
    mean = {c: {m: _mean([v[c][m] for v in per_view]) for m in ("iou", "chamfer_l1", "f_score_1")} for c in columns}
    return {"mesh": name, "has_inside": has_inside, "views": per_view, "mean": mean}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def rasterise(vertices_uv: np.ndarray, faces: np.ndarray, size: int, supersample: int = 4) -> np.ndarray:
    """(size, size) bool coverage of a projected mesh (pixel units), drawn face by face."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (size * supersample, size * supersample), 0)
    draw = ImageDraw.Draw(canvas)
    scaled = vertices_uv * supersample
    for face in faces:
        draw.polygon([tuple(scaled[i]) for i in face], fill=255)
    big = np.asarray(canvas, dtype=np.float32) / 255.0
    return big.reshape(size, supersample, size, supersample).mean((1, 3)) >= 0.5


def silhouette_agreement(model, photo: Path, mask_path: Path) -> dict:
    """IoU between the photo's mask (prepared as the photo is) and the mesh drawn through the model's own camera."""
    from PIL import Image

    from occrecon.field import NetworkField
    from occrecon.options import ReconstructOptions
    from occrecon.preprocess import prepare_input
    from occrecon.surface import extract_surface

    spec = model.input_spec
    mask = np.asarray(Image.open(mask_path).convert("L")) > 127
    prepared = prepare_input("image", str(photo), spec, mask=mask)
    # The mask itself, cut and resized by the same preparation: a black object on white.
    shown = np.where(mask[..., None], 0, 255).astype(np.uint8).repeat(3, -1)
    input_mask = prepare_input("image", shown, spec, mask=mask).tensor.mean(0).numpy() < 0.5
    with torch.no_grad():
        encoding = model.net.encode(prepared.tensor[None].to(model.device))
    options = ReconstructOptions().resolve(model, "image")
    surface = extract_surface(NetworkField(model, encoding), options)
    if len(surface.faces) == 0 or encoding.camera is None:
        return {"photo": photo.name, "silhouette_iou": 0.0}
    u, v, _ = encoding.camera.project(torch.as_tensor(surface.vertices, dtype=torch.float64))
    drawn = rasterise(np.stack([u.numpy(), v.numpy()], 1), np.asarray(surface.faces), spec.image_size)
    union = (drawn | input_mask).sum()
    return {"photo": photo.name, "silhouette_iou": float((drawn & input_mask).sum() / max(union, 1)), "predicted_mask_iou": float(((encoding.silhouette.numpy()) & input_mask).sum() / max((encoding.silhouette.numpy() | input_mask).sum(), 1))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshes", type=Path, default=DEFAULT_MESHES)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--no-photos", action="store_true")
    parser.add_argument("--no-meshes", action="store_true")
    parser.add_argument("--new", default="pointmap-img-synthetic")
    parser.add_argument("--old", default="onet-img-synthetic")
    parser.add_argument("--only", default="old,new")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--limit", type=int, default=0, help="first N meshes only (0: all)")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--iou-points", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    models = {key: occrecon.load_model(getattr(args, key), "cpu") for key in ("old", "new") if key in wanted}
    print("models: " + ", ".join(f"{k}={m.name}" for k, m in models.items()), flush=True)
    result: dict = {"models": {k: m.name for k, m in models.items()}, "views": args.views, "meshes": [], "photos": []}
    if not args.no_meshes:
        paths = sorted(p for p in args.meshes.iterdir() if p.suffix.lower() in SUFFIXES)
        for path in paths[: args.limit or None]:
            row = score_mesh(path.name, load_unit_mesh(path), models, args.views, args.samples, args.iou_points)
            result["meshes"].append(row)
            print(f"{path.name:28} " + "  ".join(f"{c} {_fmt(s)}" for c, s in row["mean"].items()), flush=True)
        columns = list(result["meshes"][0]["mean"]) if result["meshes"] else []
        result["mean"] = {c: {m: _mean([r["mean"][c][m] for r in result["meshes"]]) for m in ("iou", "chamfer_l1", "f_score_1")} for c in columns}
        n_inside = sum(r["has_inside"] for r in result["meshes"])
        print(f"mean over {len(result['meshes'])} meshes (IoU over {n_inside}): " + "  ".join(f"{c} {_fmt(s)}" for c, s in result["mean"].items()))
        for key in ("old", "new"):
            seconds = [v[f"{key}_seconds"] for r in result["meshes"] for v in r["views"] if f"{key}_seconds" in v]
            if seconds:
                print(f"{key}: median {np.median(seconds):.2f} s per image")
    if not args.no_photos and "new" in models and args.photos.is_dir():
        for photo in sorted(args.photos.glob("*_image*.png")):
            mask = photo.with_name(photo.name.split("__")[0] + "__mask.png")
            if mask.is_file():
                row = silhouette_agreement(models["new"], photo, mask)
                result["photos"].append(row)
                print(f"{photo.name:40} silhouette IoU {row['silhouette_iou']:.3f}", flush=True)
        if result["photos"]:
            print(f"mean silhouette agreement over {len(result['photos'])} photos: {np.mean([r['silhouette_iou'] for r in result['photos']]):.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def _fmt(s: dict) -> str:
    iou = "–" if s["iou"] is None else f"{s['iou']:.3f}"
    return f"{iou}/{s['chamfer_l1']:.4f}/{s['f_score_1']:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
