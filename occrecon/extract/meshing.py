"""From lattice values to a triangle mesh: marching cubes and simplification."""

from __future__ import annotations

import numpy as np

from occrecon.extract.mise import GridValues, check_finite_field

# A value far outside any logit the networks produce: padding with it closes the
# surface at the box boundary, so every mesh is watertight (upstream.md §3.3).
_OUTSIDE = -1e6


def marching_cubes(grid: GridValues, threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate the iso-surface ``values == threshold`` of a lattice.

    Args:
        grid: lattice values, inside positive, indexed ``[x, y, z]``.
        threshold: iso-level (logit).

    Returns:
        vertices: (v, 3) float64 in the grid's world frame;
        faces: (f, 3) int64, wound so that normals point outwards.

    Raises:
        NonFiniteFieldError: the lattice holds NaN or inf.
    """
    import mcubes  # PyMCubes: no vertex shift, unlike upstream's libmcubes

    check_finite_field(grid.values)  # NaN corners make NaN vertices, which would be reported as a mesh
    padded = np.pad(grid.values.astype(np.float64), 1, mode="constant", constant_values=_OUTSIDE)
    vertices, faces = mcubes.marching_cubes(padded, float(threshold))
    if len(faces) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    # Upstream's order of operations (undo the pad, divide by the cells, centre, scale by the
    # box), so that on its box, centred at 0, the vertices are upstream's to the last bit.
    centre, size = (grid.lower + grid.upper) / 2, grid.upper - grid.lower
    vertices = size * ((vertices - 1.0) / grid.resolution - 0.5) + centre
    return vertices, faces.astype(np.int64)


def simplify(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-error decimation to about ``target_faces`` triangles (open3d).

    Meshes already at or below the target are returned unchanged.
    """
    if target_faces <= 0:
        raise ValueError("the target face count must be positive")
    if len(faces) <= target_faces:
        return vertices, faces
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(vertices, np.float64)),
        o3d.utility.Vector3iVector(np.asarray(faces, np.int32)),
    )
    mesh = mesh.simplify_quadric_decimation(target_number_of_triangles=int(target_faces))
    mesh.remove_unreferenced_vertices()
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.triangles, np.int64)


def marching_cubes_block(values: np.ndarray, threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of one block of a larger lattice, in the block's lattice-index units.

    No padding: the surface stays open at the block's faces so that blocks can be
    joined; two blocks with identical values on a shared face produce
    bit-identical vertices there.

    Returns:
        vertices (v, 3) float64 in lattice indices, faces (f, 3) int64 (outward winding).

    Raises:
        NonFiniteFieldError: the block holds NaN or inf.
    """
    import mcubes

    check_finite_field(np.asarray(values))
    vertices, faces = mcubes.marching_cubes(np.asarray(values, dtype=np.float64), float(threshold))
    return np.asarray(vertices, np.float64).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3)
