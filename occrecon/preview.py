"""Preview pictures: a mesh from three viewpoints beside what it was made from, rendered on the CPU.

A preview is one PNG strip of square panels: the input (the photo as the network saw it, the
point cloud, or the voxel grid), then the shaded mesh from three viewpoints 120° apart, 20° above
the horizon. Every panel is drawn in the input's own frame with its up axis pointing up the
picture, through one orthographic camera framing the mesh and the input together, so the panels
are at the same scale and a tall object comes out tall.

Meshes and voxels are ray cast with Open3D's ``RaycastingScene`` (the renderer of the training
data); point clouds are splatted with a depth buffer in numpy. No display, no GPU.

:func:`render_preview` makes the picture (an (H, W, 3) uint8 array), :func:`write_preview` writes
it atomically, and :func:`preview_path` names it: ``<mesh stem>.png`` beside the mesh. A file of
that name that is not a preview (a photo) is never replaced: :class:`PreviewError` says so.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occrecon.errors import OccreconError
from occrecon.frames import up_rotation
from occrecon.io.atomic import write_bytes_atomic

__all__ = [
    "InputView",
    "PreviewError",
    "PANEL_SIZE",
    "VIEWS",
    "preview_path",
    "render_preview",
    "write_preview",
    "write_result_preview",
    "voxel_cells",
]

PANEL_SIZE = 256
"""Side of one square panel, in pixels."""

VIEWS = ((30.0, 20.0), (150.0, 20.0), (270.0, 20.0))
"""(azimuth, elevation) of the three mesh views in degrees; azimuth 0 looks at the front (+z once the up axis is y)."""

MAX_SPLAT_POINTS = 60_000
"""A cloud is drawn from at most this many of its points (a seeded subset)."""

MAX_VOXEL_SIDE = 64
"""A larger grid is drawn max-pooled to this many cells along its longest side."""

_MARKER = "occrecon preview"
"""The PNG text chunk (``Software``) that tells a preview from any other picture of the same name."""

_MESH_COLOUR = np.array([0.72, 0.75, 0.80])
_VOXEL_COLOUR = np.array([0.85, 0.66, 0.42])
_POINT_COLOUR = np.array([0.30, 0.45, 0.70])


class PreviewError(OccreconError):
    """A preview that cannot be written where it should go (the name is taken by another picture)."""


@dataclass
class InputView:
    """What a preview shows beside the mesh: the input, in the mesh's frame.

    Attributes:
        image: the photo as the network saw it (a PIL image), for image inputs.
        points: (n, 3) float, a cloud's points in its own frame.
        colours: (n, 3) uint8, the points' colours, or None.
        cells: (m, 3) float, centres of a voxel grid's filled cells in the grid's frame.
        cell_size: the cells' edge.
    """

    image: Any = None
    points: np.ndarray | None = None
    colours: np.ndarray | None = None
    cells: np.ndarray | None = None
    cell_size: float = 0.0

    def extent_points(self) -> np.ndarray:
        """(k, 3) points whose box the camera must frame (none for a photo)."""
        if self.points is not None and len(self.points):
            return np.asarray(self.points, dtype=np.float64)
        if self.cells is not None and len(self.cells):
            half = self.cell_size / 2
            return np.concatenate([self.cells - half, self.cells + half])
        return np.zeros((0, 3))


def voxel_cells(occupancy: np.ndarray, lower: np.ndarray, cell: float, max_side: int = MAX_VOXEL_SIDE) -> tuple[np.ndarray, float]:
    """The centres of a grid's filled cells, ``lower + (ijk + 0.5) * cell``, max-pooled to at most ``max_side`` cells a side.

    Args:
        occupancy: (X, Y, Z) bool.
        lower: (3,) the grid box's lower corner.
        cell: the cells' edge.

    Returns:
        ((m, 3) float64 centres, the edge of the cells returned).
    """
    occ = np.asarray(occupancy, dtype=bool)
    factor = max(1, int(np.ceil(max(occ.shape) / max_side)))
    if factor > 1:
        padded = [int(np.ceil(s / factor)) * factor for s in occ.shape]
        occ = np.pad(occ, [(0, p - s) for p, s in zip(padded, occ.shape)])
        occ = occ.reshape(padded[0] // factor, factor, padded[1] // factor, factor, padded[2] // factor, factor).any(axis=(1, 3, 5))
    size = cell * factor
    return np.asarray(lower, dtype=np.float64) + (np.argwhere(occ) + 0.5) * size, size


# ---------------------------------------------------------------------------------------
# The camera
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _View:
    """An orthographic camera: ``toward`` points from the object to the camera; the picture spans ``half`` either side of ``centre``."""

    centre: np.ndarray
    right: np.ndarray
    up: np.ndarray
    toward: np.ndarray
    half: float
    size: int

    def pixels(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(column, row, depth towards the camera) of (n, 3) points."""
        rel = points - self.centre
        u, v, depth = rel @ self.right, rel @ self.up, rel @ self.toward
        scale = self.size / (2 * self.half)
        return (u + self.half) * scale, (self.half - v) * scale, depth

    def rays(self, supersample: int, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """(h, w, 6) float32 rays (origin, direction), one per sub-pixel centre of the sub-pixel ``window`` (row0, row1, col0, col1; default all)."""
        n = self.size * supersample
        r0, r1, c0, c1 = window or (0, n, 0, n)
        steps = ((np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1) * self.half
        u, v = steps[c0:c1], -steps[r0:r1]
        base = (self.centre + self.toward * (4 * self.half)).astype(np.float32)
        rays = np.empty((r1 - r0, c1 - c0, 6), np.float32)
        rays[..., :3] = base + u[None, :, None] * self.right.astype(np.float32) + v[:, None, None] * self.up.astype(np.float32)
        rays[..., 3:] = -self.toward.astype(np.float32)
        return rays

    def window(self, points: np.ndarray, supersample: int) -> tuple[int, int, int, int]:
        """The sub-pixel rows and columns (row0, row1, col0, col1) that (n, 3) points project into, a sub-pixel wider."""
        n = self.size * supersample
        col, row, _ = self.pixels(points)
        col, row = col * supersample, row * supersample
        clip = lambda value: int(np.clip(value, 0, n))  # noqa: E731
        return clip(np.floor(row.min()) - 1), clip(np.ceil(row.max()) + 1), clip(np.floor(col.min()) - 1), clip(np.ceil(col.max()) + 1)


def _views(points: np.ndarray, up: str, size: int) -> list[_View]:
    """The three mesh views of (n, 3) ``points`` in the input frame, ``up`` up: centred on their box, framing their farthest point."""
    bounds = np.stack([points.min(axis=0), points.max(axis=0)])
    turn = up_rotation(up)  # input → y-up; its rows are the input-frame directions of x, y, z after the turn
    centre = bounds.mean(axis=0)
    half = float(np.linalg.norm(points - centre, axis=1).max()) * 1.04 or 1.0
    views = []
    for azimuth, elevation in VIEWS:
        a, e = np.radians(azimuth), np.radians(elevation)
        toward = np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
        right = np.cross([0.0, 1.0, 0.0], toward)
        right /= np.linalg.norm(right)
        upward = np.cross(toward, right)
        # Directions chosen in the y-up frame, taken back into the input frame.
        views.append(_View(centre, turn.T @ right, turn.T @ upward, turn.T @ toward, half, size))
    return views


# ---------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------
def _cast(vertices: np.ndarray, faces: np.ndarray, view: _View, base: Any, supersample: int, scene: Any = None) -> np.ndarray:
    """A shaded (S, S, 3) float render of triangles on white; ``base`` is one RGB colour or (n, 3) vertex colours in [0, 1]."""
    import open3d as o3d

    if scene is None:
        scene = _scene(vertices, faces)
    n = view.size * supersample
    r0, r1, c0, c1 = view.window(np.asarray(vertices, dtype=np.float64), supersample)  # only rays that can hit
    full = np.ones((n, n, 3))
    if r1 <= r0 or c1 <= c0:
        return full.reshape(view.size, supersample, view.size, supersample, 3).mean(axis=(1, 3))
    hit = scene.cast_rays(o3d.core.Tensor(view.rays(supersample, (r0, r1, c0, c1)).reshape(-1, 6)))
    t = hit["t_hit"].numpy()
    ok = np.isfinite(t)
    rgb = np.ones((len(t), 3))
    if ok.any():
        normals = hit["primitive_normals"].numpy()[ok].astype(np.float64)
        normals *= np.where(normals @ view.toward < 0, -1.0, 1.0)[:, None]  # both sides lit, as seen
        key = view.toward * 0.5 + view.up * 0.7 - view.right * 0.5
        key /= np.linalg.norm(key)
        light = 0.32 + 0.48 * np.clip(normals @ view.toward, 0, 1) + 0.32 * np.clip(normals @ key, 0, 1)
        if np.ndim(base) == 1:
            colour = np.asarray(base, dtype=np.float64)[None, :]
        else:
            ids = hit["primitive_ids"].numpy()[ok].astype(np.int64)
            uv = hit["primitive_uvs"].numpy()[ok].astype(np.float64)
            corners = np.asarray(base, dtype=np.float64)[np.asarray(faces)[ids]]  # (k, 3 corners, 3)
            weights = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
            colour = np.einsum("kc,kcd->kd", weights, corners)
        rgb[ok] = np.clip(colour * light[:, None], 0, 1)
    full[r0:r1, c0:c1] = rgb.reshape(r1 - r0, c1 - c0, 3)
    rgb = full
    side = view.size
    return rgb.reshape(side, supersample, side, supersample, 3).mean(axis=(1, 3))


def _scene(vertices: np.ndarray, faces: np.ndarray) -> Any:
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)), o3d.core.Tensor(np.asarray(faces, dtype=np.uint32)))
    return scene


def _splat(points: np.ndarray, colours: np.ndarray | None, view: _View) -> np.ndarray:
    """(S, S, 3) float: the points as 2×2 pixel dots, the nearest in front, shaded by depth where they have no colours."""
    side = view.size
    if len(points) > MAX_SPLAT_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(points), MAX_SPLAT_POINTS, replace=False))
        points = points[keep]
        colours = None if colours is None else colours[keep]
    col, row, depth = view.pixels(np.asarray(points, dtype=np.float64))
    if colours is not None:
        rgb = np.asarray(colours, dtype=np.float64)[:, :3] / 255.0
    else:
        near = (depth - depth.min()) / max(float(np.ptp(depth)), 1e-12)
        rgb = _POINT_COLOUR * (0.55 + 0.45 * near)[:, None]
    image = np.ones((side * side, 3))
    order = np.argsort(-depth)  # nearest first: np.unique keeps each pixel's first point
    for dc, dr in ((0, 0), (1, 0), (0, 1), (1, 1)):
        c, r = np.floor(col[order]).astype(np.int64) + dc, np.floor(row[order]).astype(np.int64) + dr
        inside = (c >= 0) & (c < side) & (r >= 0) & (r < side)
        flat = r[inside] * side + c[inside]
        # Pixels the (0, 0) pass drew keep their point: a neighbour's dot only fills empty pixels.
        taken = np.all(image[flat] == 1.0, axis=1)
        first = np.unique(flat[taken], return_index=True)[1]
        image[flat[taken][first]] = rgb[order][inside][taken][first]
    return image.reshape(side, side, 3)


def _cube_mesh(cells: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """One box of edge ``size`` per centre: (8m, 3) vertices, (12m, 3) faces."""
    corners = (np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64) - 0.5) * size
    box_faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    vertices = (cells[:, None, :] + corners[None]).reshape(-1, 3)
    faces = (box_faces[None] + 8 * np.arange(len(cells))[:, None, None]).reshape(-1, 3)
    return vertices, faces


def _photo_panel(image: Any, side: int) -> np.ndarray:
    """The photo letterboxed on white into a (side, side, 3) float panel."""
    from PIL import Image

    picture = image.convert("RGB") if hasattr(image, "convert") else Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    if max(picture.size) > side:
        picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    elif max(picture.size) < side:
        scale = side / max(picture.size)
        picture = picture.resize((max(1, round(picture.size[0] * scale)), max(1, round(picture.size[1] * scale))), Image.Resampling.BICUBIC)
    panel = Image.new("RGB", (side, side), (255, 255, 255))
    panel.paste(picture, ((side - picture.size[0]) // 2, (side - picture.size[1]) // 2))
    return np.asarray(panel, dtype=np.float64) / 255.0


def _input_panel(view_input: InputView, view: _View, supersample: int) -> np.ndarray | None:
    if view_input.image is not None:
        return _photo_panel(view_input.image, view.size)
    if view_input.points is not None and len(view_input.points):
        return _splat(view_input.points, view_input.colours, view)
    if view_input.cells is not None and len(view_input.cells):
        vertices, faces = _cube_mesh(np.asarray(view_input.cells, dtype=np.float64), view_input.cell_size)
        return _cast(vertices, faces, view, _VOXEL_COLOUR, supersample)
    return None


def _mesh_colours(mesh: Any) -> np.ndarray | None:
    """(n, 3) float vertex colours in [0, 1] where the mesh carries them, else None."""
    visual = getattr(mesh, "visual", None)
    if visual is None or getattr(visual, "kind", None) != "vertex":
        return None
    colours = np.asarray(visual.vertex_colors)
    if colours.shape[0] != len(mesh.vertices):
        return None
    return colours[:, :3].astype(np.float64) / 255.0


def render_preview(mesh: Any, view_input: InputView | None = None, *, up: str = "y", size: int = PANEL_SIZE, supersample: int = 2) -> np.ndarray:
    """The preview strip of ``mesh`` (a trimesh), with ``view_input`` in front when given.

    Args:
        mesh: vertices and faces in the input's frame; its vertex colours are drawn when it has them.
        view_input: what the mesh was made from (:class:`InputView`), drawn as the first panel.
        up: the frame's up axis (``y``, ``z``, ``x``, ``-y``...), drawn pointing up.
        size: panel side in pixels.
        supersample: rays per pixel along each side (2: 4 rays per pixel, smooth edges).

    Returns:
        (size, k · size, 3) uint8, k = 3 or 4 panels.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    extent = [vertices] + ([view_input.extent_points()] if view_input is not None else [])
    everything = np.concatenate([e for e in extent if len(e)]) if any(len(e) for e in extent) else np.zeros((1, 3))
    views = _views(everything, up, size)
    colours = _mesh_colours(mesh)
    base = colours if colours is not None else _MESH_COLOUR
    panels = []
    if view_input is not None:
        first = _input_panel(view_input, views[0], supersample)
        if first is not None:
            panels.append(first)
    scene = _scene(vertices, faces) if len(faces) else None
    for view in views:
        panels.append(_cast(vertices, faces, view, base, supersample, scene) if scene is not None else np.ones((size, size, 3)))
    strip = np.concatenate(panels, axis=1)
    for k in range(1, len(panels)):  # a thin grey line between panels
        strip[:, k * size - 1 : k * size + 1] = 0.85
    return np.round(strip * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def preview_path(mesh_path: str | Path) -> Path:
    """Where a mesh's preview goes: ``<mesh stem>.png`` beside it."""
    mesh_path = Path(mesh_path)
    return mesh_path.with_name(f"{mesh_path.stem}.png")


def is_preview(path: str | Path) -> bool:
    """Whether ``path`` is a PNG that occrecon wrote as a preview (its ``Software`` text says so)."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            return picture.format == "PNG" and picture.info.get("Software") == _MARKER
    except Exception:  # noqa: BLE001 - not a picture, unreadable, ...: not one of ours
        return False


def check_preview_target(path: str | Path, protect: tuple[str | Path, ...] = ()) -> Path:
    """Refuse a preview file name that belongs to something else: an input, or a picture that is not a preview.

    Raises:
        PreviewError: naming the file and what to do.
    """
    path = Path(path)
    for other in protect:
        try:
            if Path(other).exists() and path.exists() and path.samefile(other):
                raise PreviewError(f"the preview {path} would replace the input itself; write the outputs to another folder (-d)")
        except OSError:
            continue
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise PreviewError(f"the preview {path} is a folder or another non-file; rename it or choose another --output-dir")
    if path.exists() and not is_preview(path):
        raise PreviewError(f"{path} exists and is not an occrecon preview; it is not replaced (move it, or write the outputs to another folder with -d)")
    return path


def png_bytes(picture: np.ndarray) -> bytes:
    """A PNG of an (H, W, 3) uint8 picture, marked as an occrecon preview."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", _MARKER)
    encoded = io.BytesIO()
    Image.fromarray(picture, mode="RGB").save(encoded, format="PNG", pnginfo=info, optimize=False, compress_level=6)
    return encoded.getvalue()


def write_preview(path: str | Path, mesh: Any, view_input: InputView | None = None, *, up: str = "y", protect: tuple[str | Path, ...] = (), size: int = PANEL_SIZE) -> Path:
    """Render and write a preview PNG atomically (a temporary file renamed over ``path``).

    A file at ``path`` is replaced only when it is an occrecon preview, and never when it is one
    of ``protect`` (the inputs).

    Raises:
        PreviewError: ``path`` belongs to something else.
        OSError: it cannot be written.
    """
    path = check_preview_target(path, protect)
    data = png_bytes(render_preview(mesh, view_input, up=up, size=size))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, data)


def write_result_preview(result: Any, mesh_path: str | Path, inputs: tuple[str | Path, ...] = ()) -> Path:
    """The preview of a :class:`~occrecon.pipeline.Reconstruction`, written beside its mesh (``<mesh stem>.png``).

    The hook every command that writes meshes calls (``image``, ``points``, ``voxels`` through
    :mod:`occrecon.batch`; ``sample`` and ``fit`` directly) before it writes the mesh, so that a
    mesh never stands without its preview. ``inputs`` are never replaced by it.
    """
    import time

    start = time.perf_counter()
    path = check_preview_target(preview_path(mesh_path), inputs)
    picture = render_preview(result.mesh, getattr(result, "input_view", None), up=getattr(result, "up", "y") or "y")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = write_bytes_atomic(path, png_bytes(picture))
    if isinstance(getattr(result, "timings", None), dict):
        result.timings["preview"] = time.perf_counter() - start  # in the item's --json timings
    return written
