"""Regenerate the example room scan in this folder from occrecon's procedural room generator.

    python examples/make_room_example.py

Writes room_points.ply: a scan-like point cloud (binary PLY, metres, y up, floor
at y = 0) of a furnished ~4 x 2.6 x 4 m room: surface samples without the ceiling,
exterior faces and some random holes, plus 0.005 m Gaussian noise, at most 150k
points. Deterministic: seed 11.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from occrecon.data.rooms import prepare_room, random_room, scan_cloud

HERE = Path(__file__).resolve().parent
SEED = 11
MAX_POINTS = 150_000


def main() -> None:
    rng = np.random.default_rng(SEED)
    room = random_room(rng, size_range=((3.8, 4.2), (2.5, 2.7), (3.8, 4.2)), n_furniture=(7, 9))
    # Only the surface is needed: few occupancy samples keep this quick.
    data = prepare_room(room, rng, surface_density=3000.0, uniform_density=1.0, near_density=1.0)
    points, _ = scan_cloud(data, rng, noise_std=0.005, max_points=MAX_POINTS)
    trimesh.PointCloud(points).export(HERE / "room_points.ply", encoding="binary")
    W, H, D = room.size
    names = sorted(p.name for p in room.parts if p.kind != "structure")
    print(f"wrote room_points.ply ({len(points)} points, room {W:.2f} x {H:.2f} x {D:.2f} m: {', '.join(names)}) to {HERE}")


if __name__ == "__main__":
    main()
