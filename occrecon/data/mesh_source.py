"""Training data from the user's own meshes (``--data DIR``).

Each file is loaded with trimesh, normalised to the canonical frame the way
upstream normalises ShapeNet (bounding box of the mesh as given: centred, longest
side 1), repaired if it has small holes, and must then be watertight: occupancy
is only defined for closed surfaces. Occupancy comes from open3d ray-parity tests
(``RaycastingScene.compute_occupancy``), distances from its closest-point queries,
and everything else from the same :func:`prepare_sample` used for generated shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d as o3d
import trimesh

from occrecon.data.prepare import prepare_sample
from occrecon.data.sdf import Shape
from occrecon.errors import InputError

MESH_SUFFIXES = (".obj", ".off", ".ply", ".stl", ".glb", ".gltf")


def list_mesh_files(folder: str | Path) -> list[Path]:
    """Mesh files in ``folder`` (recursively), sorted so that shape indices are stable."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "not a directory of mesh files")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise InputError(root, f"no mesh files ({', '.join(MESH_SUFFIXES)}) found")
    return files


def _boundary_edge_count(mesh: trimesh.Trimesh) -> int:
    """Edges used by exactly one face (holes); a closed mesh has none."""
    return len(trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1))


def load_canonical_mesh(path: str | Path) -> trimesh.Trimesh:
    """Load a mesh, normalise it to the canonical frame and make sure it is watertight.

    Args:
        path: mesh file.

    Returns:
        watertight, outward-oriented trimesh with bounding box centred at the origin
        and longest side 1.

    Raises:
        InputError: unreadable/empty file, or a mesh that stays open after repair.
    """
    path = Path(path)
    try:
        mesh = trimesh.load(path, force="mesh", process=True)
    except Exception as exc:  # trimesh raises many types for broken files
        raise InputError(path, f"cannot read mesh: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(path, "file holds no triangles")
    lo, hi = mesh.bounds
    ext = float(np.max(hi - lo))
    if not ext > 0:
        raise InputError(path, "mesh has zero extent")
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(1.0 / ext)
    if not mesh.is_watertight:
        # Cheap repairs: weld duplicated vertices, drop degenerate/duplicate faces, close small holes.
        mesh.merge_vertices()
        mesh.update_faces(mesh.nondegenerate_faces())
        mesh.update_faces(mesh.unique_faces())
        mesh.remove_unreferenced_vertices()
        trimesh.repair.fill_holes(mesh)
    if not mesh.is_watertight:
        n_open = _boundary_edge_count(mesh)
        raise InputError(
            path,
            f"mesh is not watertight ({n_open} boundary edges) and could not be repaired; "
            "occupancy is undefined for open surfaces. Close it first (e.g. with a "
            "watertight remesher such as ManifoldPlus or a TSDF fusion of renders).",
        )
    trimesh.repair.fix_normals(mesh)  # consistent, outward winding for surface normals
    return mesh


class MeshShape(Shape):
    """A closed triangle mesh as a :class:`Shape` (exact distance, ray-parity sign).

    Args:
        mesh: watertight mesh.
        nsamples: rays per occupancy test (odd; majority vote guards against rays
            grazing edges).
    """

    def __init__(self, mesh: trimesh.Trimesh, nsamples: int = 3):
        self.mesh = mesh
        self.nsamples = int(nsamples)
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(
            o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
        )

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.mesh.bounds
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)

    def _sdf(self, p: np.ndarray) -> np.ndarray:
        q = o3d.core.Tensor(p.astype(np.float32))
        dist = self._scene.compute_distance(q).numpy().astype(np.float64)
        inside = self._scene.compute_occupancy(q, nsamples=self.nsamples).numpy() > 0.5
        return np.where(inside, -dist, dist)

    def _sdf_tags(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._sdf(p), np.zeros(len(p), dtype=np.int32)


def prepare_mesh(path: str | Path, rng: np.random.Generator, **kwargs) -> dict[str, np.ndarray]:
    """:func:`prepare_sample` for a user's mesh file (same keys and conventions).

    Raises:
        InputError: see :func:`load_canonical_mesh`.
    """
    mesh = load_canonical_mesh(path)
    return prepare_sample(MeshShape(mesh), rng, mesh=mesh, **kwargs)
