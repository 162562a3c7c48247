"""Regenerate the example inputs in this folder from occrecon's own procedural generator.

    python examples/make_examples.py

Writes a rendered chair (chair.png), a point cloud sampled from its surface
(chair_points.ply, 3000 points with 0.005 noise as in ConvONet's object
benchmark) and its 32³ voxel grid (chair.binvox). Deterministic: seed 7.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from occrecon.data.prepare import extract_mesh, render_views, sample_surface, voxelize
from occrecon.data.shapes import FAMILIES, canonicalize
from occrecon.io.writers import write_binvox

HERE = Path(__file__).resolve().parent
SEED = 7


def main() -> None:
    rng = np.random.default_rng(SEED)
    shape = canonicalize(FAMILIES["chair"](rng))
    mesh = extract_mesh(shape)

    views = render_views(mesh, rng, n_views=1, image_size=224)
    Image.fromarray(views["images"][0]).save(HERE / "chair.png")

    points, _ = sample_surface(mesh, 3000, rng)
    points = points + rng.normal(scale=0.005, size=points.shape)
    trimesh.PointCloud(points).export(HERE / "chair_points.ply")

    # Voxel centres sit at -0.5 + (i + 0.5)/32: the grid spans the unit cube.
    write_binvox(HERE / "chair.binvox", voxelize(shape, 32), translate=(-0.5, -0.5, -0.5), scale=1.0)
    print(f"wrote chair.png, chair_points.ply, chair.binvox to {HERE}")


if __name__ == "__main__":
    main()
