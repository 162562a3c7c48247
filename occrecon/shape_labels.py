"""Occupancy labels from a mesh: which points are inside it, for fitting a network to that one shape.

Points are drawn as upstream's data preparation draws them: uniformly in the padded box,
plus points near the surface (surface samples moved by Gaussian noise), where a network
has to place its boundary. Inside and outside come from ray parity (three rays, majority)
for a closed mesh. A mesh that is not closed is filled as ``occrecon eval`` fills one (the
inside of its sealed voxelisation, holes up to about two cells wide) and a note says so;
one that encloses no volume even then is refused with one line.

Everything happens in the canonical frame (bounding-box centre 0, longest side 1); the
:class:`MeshFrame` maps back to the mesh's own coordinates and units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from occrecon.errors import InputError
from occrecon.metrics import filled_solid, filled_inside_mask, inside_mask, is_closed

__all__ = ["LabelOptions", "Labels", "MeshFrame", "mesh_frame", "occupancy_labels", "read_shape_mesh"]

BOX_HALF = 0.55
"""Half the side of the canonical box the labels and the extraction span (padding 0.1, as every model)."""


@dataclass(frozen=True)
class MeshFrame:
    """The map from the canonical frame to the mesh's own: ``own = canonical · scale + center``."""

    center: tuple[float, float, float]
    scale: float
    half_extent: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """The mesh's bounding box in the canonical frame: ``±half_extent`` (the longest is 0.5)."""

    def to_canonical(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, np.float64) - np.asarray(self.center)) / self.scale

    def to_own(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) * self.scale + np.asarray(self.center)

    def as_dict(self) -> dict[str, object]:
        return {"center": [float(c) for c in self.center], "scale": float(self.scale), "half_extent": [float(h) for h in self.half_extent]}


@dataclass(frozen=True)
class LabelOptions:
    """How many labelled points, and where.

    Attributes:
        uniform: points uniform in the ±0.55 box.
        near: points near the surface, split evenly over ``sigmas``.
        sigmas: std of the Gaussian offsets of the near points, in canonical units (longest side 1).
        seed: seeds every draw.
    """

    # Half uniform: with a third, small fits left about 1% of the far field inside (floaters at the box's edge).
    uniform: int = 150_000
    near: int = 150_000
    sigmas: tuple[float, ...] = (0.003, 0.01, 0.03)
    seed: int = 0


@dataclass
class Labels:
    """Labelled points in the canonical frame: (n, 3) float32 ``points``, (n,) bool ``inside``."""

    points: np.ndarray
    inside: np.ndarray
    frame: MeshFrame
    filled: bool = False
    notes: list[str] = field(default_factory=list)


def read_shape_mesh(source: str | Path | trimesh.Trimesh) -> tuple[trimesh.Trimesh, str]:
    """The mesh to fit and the name its messages use; an unusable one raises :class:`InputError` (one line)."""
    if isinstance(source, trimesh.Trimesh):
        mesh, name = source, "the mesh"
    else:
        from occrecon.evaluation import load_mesh  # the readers' checks: regular file, format, size, finite

        mesh, name = load_mesh(source), str(source)
    if len(mesh.faces) == 0:
        raise InputError(name, "the mesh has no faces: there is no surface to fit")
    extent = np.ptp(np.asarray(mesh.vertices, np.float64)[np.unique(mesh.faces)], axis=0)
    if not float(extent.max()) > 0.0 or float(mesh.area) <= 0.0:
        raise InputError(name, "the mesh has zero extent or zero area: there is no surface to fit")
    return mesh, name


def mesh_frame(mesh: trimesh.Trimesh) -> MeshFrame:
    """The canonical frame of ``mesh``: its bounding box's centre, and its longest side as the unit."""
    vertices = np.asarray(mesh.vertices, np.float64)[np.unique(mesh.faces)]
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    center = (low + high) / 2.0
    scale = float((high - low).max())
    half = (high - low) / (2.0 * scale)
    return MeshFrame(center=(float(center[0]), float(center[1]), float(center[2])), scale=scale, half_extent=(float(half[0]), float(half[1]), float(half[2])))


def _sample_points(canonical: trimesh.Trimesh, options: LabelOptions) -> np.ndarray:
    rng = np.random.default_rng(options.seed)
    uniform = rng.uniform(-BOX_HALF, BOX_HALF, size=(options.uniform, 3))
    per_sigma = options.near // max(1, len(options.sigmas))
    surface, _ = trimesh.sample.sample_surface(canonical, per_sigma * len(options.sigmas), seed=options.seed)
    offsets = rng.normal(size=surface.shape) * np.repeat(np.asarray(options.sigmas), per_sigma)[:, None]
    near = np.clip(surface + offsets, -BOX_HALF, BOX_HALF)
    return np.concatenate([uniform, near]).astype(np.float32)


def occupancy_labels(mesh: trimesh.Trimesh, options: LabelOptions = LabelOptions(), name: str = "the mesh") -> Labels:
    """Uniform and near-surface points of ``mesh``, each labelled inside or outside.

    Raises:
        InputError: the mesh is not closed and encloses no volume even with its holes sealed.
    """
    frame = mesh_frame(mesh)
    canonical = trimesh.Trimesh(frame.to_canonical(mesh.vertices), np.asarray(mesh.faces), process=False)
    points = _sample_points(canonical, options)
    if is_closed(canonical):
        return Labels(points, inside_mask(canonical, points), frame)
    # As `occrecon eval` fills a mesh that is not closed: the inside of its sealed voxelisation.
    solid = filled_solid(canonical, low=-BOX_HALF, high=BOX_HALF)
    inside = filled_inside_mask(canonical, points, low=-BOX_HALF, high=BOX_HALF, solid=solid)
    uniform_share = float(inside[: options.uniform].mean()) if options.uniform else float(solid.mean())
    # The surface's own voxels fill about area · cell of the box; a real solid fills clearly more.
    shell_share = float(canonical.area) * (2 * BOX_HALF / solid.shape[0]) / (2 * BOX_HALF) ** 3
    if not uniform_share > 2.0 * shell_share:
        raise InputError(name, "the mesh is not closed and encloses no volume even with its holes sealed (an open sheet or a triangle soup): nothing is inside it to fit")
    note = "the mesh is not closed: its inside is that of its sealed voxelisation (256³ cells, holes up to about two cells sealed), as occrecon eval fills one"
    return Labels(points, inside, frame, filled=True, notes=[note])
