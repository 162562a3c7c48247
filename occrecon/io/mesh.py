"""Writing meshes: one table of formats, atomic replace, no silent overwrite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from occrecon.errors import NonFiniteMeshError, OutputExistsError
from occrecon.io.atomic import write_bytes_atomic

MESH_FORMATS: dict[str, str] = {"obj": "obj", "ply": "ply", "off": "off", "glb": "glb", "stl": "stl"}
"""Output format name → trimesh ``file_type``."""


def format_from_path(path: str | Path, default: str = "obj") -> str:
    """The mesh format implied by a file suffix, or ``default`` when it names none."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in MESH_FORMATS else default


def check_format(name: str) -> str:
    """Normalise a format name; raises ``ValueError`` listing the supported ones."""
    key = name.lower().lstrip(".")
    if key not in MESH_FORMATS:
        raise ValueError(f"unknown mesh format {name!r}; choose one of {', '.join(MESH_FORMATS)}")
    return key


def vertex_colours(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """(n, 4) uint8 RGBA vertex colours where the mesh carries its own, else None."""
    visual = getattr(mesh, "visual", None)
    if visual is None or getattr(visual, "kind", None) != "vertex":
        return None
    colours = np.asarray(visual.vertex_colors)
    return colours if colours.shape == (len(mesh.vertices), 4) else None


def _coloured_off(mesh: trimesh.Trimesh, colours: np.ndarray) -> bytes:
    """OFF with vertex colours (Geomview's ``COFF``: ``x y z r g b a`` per vertex, 0-255), which trimesh does not write."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    head = f"COFF\n{len(mesh.vertices)} {len(faces)} 0\n"
    vertices = "\n".join(
        f"{x:.10f} {y:.10f} {z:.10f} {r} {g} {b} {a}" for (x, y, z), (r, g, b, a) in zip(np.asarray(mesh.vertices, dtype=np.float64).tolist(), colours.tolist())
    )
    triangles = "\n".join(f"3 {i} {j} {k}" for i, j, k in faces.tolist())
    return (head + vertices + "\n" + triangles + "\n").encode()


def mesh_bytes(mesh: trimesh.Trimesh, file_format: str) -> bytes:
    """Serialise ``mesh`` in ``file_format`` (see ``MESH_FORMATS``).

    Vertex colours are kept in every format that holds them: PLY (red, green, blue, alpha),
    OBJ (``v x y z r g b``), GLB (``COLOR_0``) and OFF (``COFF``); STL has no place for them.
    """
    key = check_format(file_format)
    colours = vertex_colours(mesh) if key == "off" else None
    if colours is not None:
        return _coloured_off(mesh, colours)
    data = mesh.export(file_type=MESH_FORMATS[key])
    return data.encode() if isinstance(data, str) else bytes(data)


def write_mesh(mesh: trimesh.Trimesh, path: str | Path, *, file_format: str | None = None, overwrite: bool = False) -> Path:
    """Write ``mesh`` to ``path`` atomically.

    The bytes go to a temporary file in the destination folder, which is then
    renamed over the target, so readers never see a half-written mesh and an
    interrupted run leaves no partial output.

    Args:
        mesh: the mesh to write.
        path: destination; its folder is created when missing.
        file_format: one of ``MESH_FORMATS``; default from the suffix, else obj.
        overwrite: replace an existing file instead of raising ``OutputExistsError``.

    Returns:
        The destination path.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        NonFiniteMeshError: a vertex is NaN or infinite (such a mesh is never written).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists (pass --overwrite to replace it)")
    check_finite_vertices(getattr(mesh, "vertices", np.zeros((0, 3))), what=f"{path}: the mesh")
    data = mesh_bytes(mesh, file_format or format_from_path(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, data)


def check_finite_vertices(vertices: np.ndarray, what: str = "the mesh") -> None:
    """Raise :class:`~occrecon.errors.NonFiniteMeshError` when a vertex coordinate is NaN or inf."""
    vertices = np.asarray(vertices)
    if vertices.size == 0 or vertices.dtype.kind not in "fc":
        return
    finite = np.isfinite(vertices).reshape(len(vertices), -1).all(axis=1)
    if not finite.all():
        bad = int(len(finite) - np.count_nonzero(finite))
        raise NonFiniteMeshError(f"{what} has {bad} of {len(finite)} vertices that are not finite (NaN/inf); it is not written")


def make_mesh(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    """A trimesh without trimesh's automatic merging/reordering, so vertex order is ours.

    Raises:
        NonFiniteMeshError: a vertex is NaN or infinite (a field or a transform went wrong:
            such a mesh must be an error, not a result).
    """
    vertices = np.asarray(vertices, np.float64)
    check_finite_vertices(vertices)
    return trimesh.Trimesh(vertices=vertices, faces=np.asarray(faces, np.int64), process=False)
