"""ONet's "discrete vs continuous": voxel grids against fitted networks of the same storage (issue #28).

For each closed mesh (default: ../shared/eval/meshes), in its canonical frame (box centre 0,
longest side 1, the ±0.55 box):

* voxel grids of 32³-256³ cells over the box, each cell filled when its centre is inside
  (ray parity), stored as one bit per cell (N³/8 bytes);
* networks fitted by ``occrecon.fit_shape`` (ReLU with Fourier features, and SIREN) whose
  float32 weights take the same bytes as each grid, and the default-sized networks (with the
  grid whose bits equal their bytes);

scored by IoU on 100k uniform points of the box (the grid's cell or the network's logit
decides each point) and Chamfer-L1 (mean of accuracy and completeness, unit-frame units,
100k surface samples; a grid's surface is the marching cubes of its cells), with the time
each takes. Writes a JSON of every row, a PNG of IoU against bytes (matplotlib when
installed, else drawn with Pillow) and prints the Markdown table for benchmarks/README.md.

    python benchmarks/representation.py --limit 4 --steps 1000 --out benchmarks/results/representation
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from occrecon.evaluation import MESH_SUFFIXES, load_mesh
from occrecon.metrics import inside_mask, is_closed, nearest_neighbors
from occrecon.nets.shape import parameter_count
from occrecon.shape_fit import FitOptions, fit_shape
from occrecon.shape_labels import BOX_HALF, mesh_frame

GRIDS = (32, 64, 128, 256)


@dataclass
class Row:
    mesh: str
    kind: str  # voxels | relu | sine
    label: str
    bytes: int
    iou: float
    chamfer_l1: float
    seconds: float


def canonical_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    frame = mesh_frame(mesh)
    return trimesh.Trimesh(frame.to_canonical(mesh.vertices), mesh.faces, process=False)


def chamfer_l1(surface: trimesh.Trimesh, reference: np.ndarray, n: int = 100_000) -> float:
    if len(surface.faces) == 0:
        return float("nan")
    points, _ = trimesh.sample.sample_surface(surface, n, seed=0)
    accuracy = nearest_neighbors(points, reference)[0].mean()
    completeness = nearest_neighbors(reference, points)[0].mean()
    return float((accuracy + completeness) / 2)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def voxel_row(name: str, mesh: trimesh.Trimesh, n: int, test: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> Row:
    """A grid of n³ cells over the box, filled by the centre rule; IoU by cell lookup, Chamfer on its marching cubes."""
    import mcubes

    start = time.perf_counter()
    cell = 2 * BOX_HALF / n
    axis = -BOX_HALF + cell * (np.arange(n) + 0.5)
    centres = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    grid = inside_mask(mesh, centres).reshape(n, n, n)
    seconds = time.perf_counter() - start
    index = np.clip(np.floor((test + BOX_HALF) / cell).astype(int), 0, n - 1)
    predicted = grid[index[:, 0], index[:, 1], index[:, 2]]
    vertices, faces = mcubes.marching_cubes(np.pad(grid.astype(np.float64), 1), 0.5)
    surface = trimesh.Trimesh(axis[0] + (vertices - 1) * cell, faces, process=False)
    return Row(name, "voxels", f"{n}³", n**3 // 8, iou(predicted, truth), chamfer_l1(surface, reference), seconds)


def width_for(activation: str, depth: int, budget_bytes: int) -> tuple[int, int]:
    """The widest network (and its Fourier rows) whose float32 weights fit in ``budget_bytes``."""
    best = (1, 8)
    for width in range(1, 2049):
        features = max(8, min(64, width // 2))
        if 4 * parameter_count(activation, width, depth, features) > budget_bytes:
            break
        best = (width, features)
    return best


def network_row(name: str, mesh: trimesh.Trimesh, options: FitOptions, label: str, test: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> Row:
    start = time.perf_counter()
    fitted = fit_shape(mesh, options)
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        logits = fitted.model.net.decode(torch.from_numpy(test.astype(np.float32))[None])[0].numpy()
    stored = sum(p.numel() for p in fitted.model.net.parameters()) + sum(b.numel() for b in fitted.model.net.buffers())
    return Row(name, options.activation, label, 4 * stored, iou(logits > 0, truth), chamfer_l1(fitted.mesh, reference), seconds)


def rows_for(path: Path, args: argparse.Namespace) -> list[Row]:
    mesh = canonical_mesh(load_mesh(path))
    rng = np.random.default_rng(0)
    test = rng.uniform(-BOX_HALF, BOX_HALF, size=(100_000, 3))
    truth = inside_mask(mesh, test)
    reference, _ = trimesh.sample.sample_surface(mesh, 100_000, seed=1)
    rows = [voxel_row(path.name, mesh, n, test, truth, reference) for n in args.grids]
    common = dict(steps=args.steps, batch_size=args.batch_size, device=args.device)
    for activation in args.activations:
        for n in args.network_grids:
            width, features = width_for(activation, args.depth, n**3 // 8)
            options = FitOptions(activation=activation, width=width, depth=args.depth, fourier_features=features, **common)
            rows.append(network_row(path.name, mesh, options, f"= {n}³ (w{width})", test, truth, reference))
        if args.no_default:
            continue
        default = FitOptions(activation=activation, **common)
        row = network_row(path.name, mesh, default, "default", test, truth, reference)
        equal = int(round((8 * row.bytes) ** (1 / 3)))  # the grid whose bits equal the network's bytes
        rows += [row, voxel_row(path.name, mesh, equal, test, truth, reference)]
        rows[-1].label = f"{equal}³ (= default {activation})"
    return rows


def plot(rows: list[Row], path: Path) -> None:
    """IoU against bytes, one line per kind (mean over meshes); matplotlib if installed, else Pillow."""
    series: dict[str, list[tuple[float, float]]] = {}
    for kind in ("voxels", "relu", "sine"):
        by_label: dict[str, list[Row]] = {}
        for row in rows:
            if row.kind == kind and "default" not in row.label:
                by_label.setdefault(row.label, []).append(row)
        points = sorted((float(np.mean([r.bytes for r in rs])), float(np.mean([r.iou for r in rs]))) for rs in by_label.values())
        if points:
            series[kind] = points
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        _plot_pillow(series, path)
    else:
        _plot_matplotlib(series, path)


def _plot_matplotlib(series: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for kind, points in series.items():
        axes.plot(*zip(*points), marker="o", label=kind)
    axes.set(xscale="log", xlabel="bytes", ylabel="IoU", title="IoU against storage")
    axes.legend()
    figure.savefig(path, dpi=120, bbox_inches="tight")


def _plot_pillow(series: dict[str, list[tuple[float, float]]], path: Path) -> None:
    from PIL import Image, ImageDraw

    width, height, margin = 640, 420, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x_low, x_high = math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.1
    y_low, y_high = min(ys) - 0.02, 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return (margin + (math.log10(x) - x_low) / (x_high - x_low) * (width - 2 * margin),
                height - margin - (y - y_low) / (y_high - y_low) * (height - 2 * margin))

    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    for exponent in range(math.ceil(x_low), math.floor(x_high) + 1):
        x, _ = at(10**exponent, y_low)
        draw.line([x, height - margin, x, height - margin + 5], fill="black")
        draw.text((x - 12, height - margin + 8), f"1e{exponent}", fill="black")
    for tick in np.linspace(y_low, y_high, 5):
        _, y = at(10**x_low, tick)
        draw.text((8, y - 6), f"{tick:.3f}", fill="black")
    colours = {"voxels": (90, 90, 90), "relu": (200, 60, 40), "sine": (40, 90, 200)}
    for row, (kind, points) in enumerate(series.items()):
        draw.line([at(x, y) for x, y in points], fill=colours[kind], width=2)
        for x, y in points:
            cx, cy = at(x, y)
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colours[kind])
        draw.text((margin + 10, margin + 10 + 14 * row), kind, fill=colours[kind])
    draw.text((width // 2 - 90, height - 25), "bytes (log scale); IoU, mean over meshes", fill="black")
    image.save(path)


def table(rows: list[Row]) -> str:
    """Mean IoU, Chamfer-L1, bytes and seconds per representation, over the meshes."""
    lines = ["| representation | bytes | IoU | Chamfer-L1 | seconds |", "|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.kind, row.label.split(" (")[0] if row.kind == "voxels" and "default" in row.label else row.label), []).append(row)
    for (kind, label), group in groups.items():
        lines.append(f"| {kind} {label} | {int(np.mean([r.bytes for r in group])):,} | {np.mean([r.iou for r in group]):.4f} | "
                     f"{np.nanmean([r.chamfer_l1 for r in group]):.5f} | {np.mean([r.seconds for r in group]):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "eval" / "meshes")
    parser.add_argument("--limit", type=int, default=0, help="the first N closed meshes (0: all)")
    parser.add_argument("--only", type=lambda s: s.split(","), default=[], help="these file names only (comma-separated)")
    parser.add_argument("--grids", type=lambda s: [int(v) for v in s.split(",")], default=list(GRIDS))
    parser.add_argument("--network-grids", type=lambda s: [int(v) for v in s.split(",")], default=list(GRIDS), help="grid sizes whose storage the networks get")
    parser.add_argument("--activations", type=lambda s: s.split(","), default=["relu", "sine"])
    parser.add_argument("--steps", type=int, default=FitOptions.steps)
    parser.add_argument("--batch-size", type=int, default=FitOptions.batch_size)
    parser.add_argument("--depth", type=int, default=FitOptions.depth)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-default", action="store_true", help="skip the default-sized networks and their equal grids")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/representation"))
    args = parser.parse_args()
    paths = sorted(p for p in args.meshes.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    closed = [p for p in paths if is_closed(load_mesh(p))]
    closed = [p for p in closed if not args.only or p.name in args.only]
    closed = closed[: args.limit] if args.limit else closed
    rows: list[Row] = []
    for path in closed:
        rows += rows_for(path, args)
        print(f"{path.name}: done", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    plot(rows, args.out.with_suffix(".png"))
    print(f"{len(closed)} closed meshes of {len(paths)}: {', '.join(p.name for p in closed)}; torch threads {torch.get_num_threads()}")
    print(table(rows))


if __name__ == "__main__":
    main()
