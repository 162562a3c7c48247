"""Writing meshes: one table of formats, atomic replace, no silent overwrite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from occrecon.errors import OutputExistsError
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


def mesh_bytes(mesh: trimesh.Trimesh, file_format: str) -> bytes:
    """Serialise ``mesh`` in ``file_format`` (see ``MESH_FORMATS``)."""
    data = mesh.export(file_type=MESH_FORMATS[check_format(file_format)])
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
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists (pass --overwrite to replace it)")
    data = mesh_bytes(mesh, file_format or format_from_path(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, data)


def make_mesh(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    """A trimesh without trimesh's automatic merging/reordering, so vertex order is ours."""
    return trimesh.Trimesh(vertices=np.asarray(vertices, np.float64), faces=np.asarray(faces, np.int64), process=False)
