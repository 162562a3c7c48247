"""Read every supported input file into plain arrays, refusing bad input clearly.

Three families, each dispatched on the (lower-case) file suffix through a table:

* images (:data:`IMAGE_SUFFIXES`) with Pillow: :func:`read_image`, :func:`read_mask`;
* point clouds (:data:`POINT_SUFFIXES`): :func:`read_points` -> :class:`PointCloud`;
* voxel grids (:data:`VOXEL_SUFFIXES`): :func:`read_voxels` -> :class:`VoxelGrid`.

Every problem with a file (missing, empty, truncated, unreadable, wrong shape,
no usable content, unsupported suffix) raises :class:`occrecon.errors.InputError`
with the file name and one short line saying what is wrong. ``.npy``/``.npz``
files are always loaded with ``allow_pickle=False``: occrecon never unpickles.

Heavy third-party readers (open3d, trimesh, laspy) are imported lazily, so that
importing this module (and starting the CLI) stays cheap.
"""

from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

from occrecon.errors import InputError
from occrecon.io.crs import GeographicCRSError, LinearUnits, las_units

__all__ = [
    "IMAGE_SUFFIXES",
    "POINT_SUFFIXES",
    "VOXEL_SUFFIXES",
    "PointCloud",
    "VoxelGrid",
    "normalise_image_mode",
    "read_image",
    "read_mask",
    "read_points",
    "read_voxels",
]

PathLike = str | Path

# How many leading lines of a text point file may be headers (column names, a
# point count, comments) before we decide the file holds no numeric rows.
_MAX_TEXT_HEADER_LINES = 1000
# A binvox header is a handful of short lines; anything longer is not binvox.
_MAX_BINVOX_HEADER_BYTES = 65536
# Keys tried, in order, for the point array in an ``.npz`` (upstream's
# pointcloud.npz uses ``points``) and for the grid in a voxel ``.npz``.
_NPZ_POINT_KEYS = ("points", "pointcloud", "xyz", "pts")
_NPZ_VOXEL_KEYS = ("occupancy", "voxels", "occ", "grid", "data")

_LAS_HINT = 'reading {suffix} files needs the optional laspy package: pip install "occrecon[las]"'


# --------------------------------------------------------------------------- results


@dataclass
class PointCloud:
    """A point cloud as read from a file.

    Attributes:
        points: (n, 3) float64, finite, in the file's own units and frame.
        dropped_nonfinite: how many rows held NaN/inf and were dropped.
        source: the file it came from (for messages).
        units: the linear units the file's header states (LAS/LAZ with a projected
            CRS), None when it states none; scenes use them unless told otherwise.
        up: the axis the format says points up (``"z"`` for LAS/LAZ, whose z is
            elevation), None when it says nothing; used unless ``--up`` says otherwise.
    """

    points: np.ndarray
    dropped_nonfinite: int = 0
    source: str = ""
    units: LinearUnits | None = None
    up: str | None = None


@dataclass
class VoxelGrid:
    """An occupancy grid with the frame its cells live in.

    The grid's cells tile the box ``[translate, translate + scale * dims / max(dims)]``
    in the source frame: cell ``i`` spans ``translate + [i, i + 1] * scale / max(dims)``
    along each axis, so its centre is ``translate + (i + 0.5) / max(dims) * scale``.

    Attributes:
        occupancy: (D, H, W) bool, indexed ``[x, y, z]``.
        translate: (3,) float64, source-frame position of the grid's lower corner.
        scale: source-frame length of the grid's longest side.
        source: the file it came from (for messages).
        convention: which source frame ``translate``/``scale`` describe:
            ``"binvox"`` (the world frame stored in a binvox header) or
            ``"index"`` (plain arrays: the voxel index frame, cell i spans [i, i+1]).
    """

    occupancy: np.ndarray
    translate: np.ndarray
    scale: float
    source: str = ""
    convention: str = "index"


# --------------------------------------------------------------------------- shared checks


def _name(path: PathLike) -> str:
    """How a file is named in messages: the path as the user gave it (it ends in the file name)."""
    return str(path)


def _check_file(path: PathLike) -> Path:
    """Return ``path`` as a Path after checking it is a readable, non-empty file.

    Raises:
        InputError: missing, a directory, empty, or not readable.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(_name(p), "file not found")
    if p.is_dir():
        raise InputError(_name(p), "is a directory, not a file")
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InputError(_name(p), f"cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise InputError(_name(p), "file is empty")
    return p


def _suffix(path: Path, table: dict[str, Callable], what: str) -> Callable:
    """Look up the reader for ``path``'s suffix in ``table``.

    Raises:
        InputError: the suffix is not in the table; the message lists the supported ones.
    """
    reader = table.get(path.suffix.lower())
    if reader is None:
        supported = ", ".join(sorted(table))
        got = path.suffix or "no suffix"
        raise InputError(_name(path), f"unsupported {what} format '{got}' (supported: {supported})")
    return reader


def _load_npy(path: Path) -> np.ndarray:
    """Load an ``.npy`` array without ever unpickling.

    Raises:
        InputError: the file needs pickle (object arrays or a plain pickle) or is corrupt.
    """
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(_name(path), "holds pickled Python objects; refused (occrecon never unpickles)") from exc
        raise InputError(_name(path), f"not a valid .npy array ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise InputError(_name(path), f"not a valid .npy file (truncated or corrupt: {exc})") from exc


def _load_npz_array(path: Path, keys: tuple[str, ...]) -> np.ndarray:
    """Load one array from an ``.npz`` archive without unpickling.

    The first of ``keys`` present is used; an archive with a single array is
    accepted whatever its key.

    Raises:
        InputError: corrupt archive, pickled content, or no suitable key.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            key = next((k for k in keys if k in names), None)
            if key is None and len(names) == 1:
                key = names[0]
            if key is None:
                listed = ", ".join(names) if names else "none"
                raise InputError(_name(path), f"no '{keys[0]}' array in the archive (keys: {listed})")
            return archive[key]
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(_name(path), "holds pickled Python objects; refused (occrecon never unpickles)") from exc
        raise InputError(_name(path), f"not a valid .npz archive ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(_name(path), f"not a valid .npz archive (truncated or corrupt: {exc})") from exc


# --------------------------------------------------------------------------- images

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")

# Pillow raises a zoo of exceptions for broken files depending on the plugin.
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def _open_image(path: PathLike) -> Image.Image:
    """Open and fully decode an image, with its EXIF orientation applied.

    Raises:
        InputError: missing, unsupported suffix, unreadable or truncated.
    """
    p = _check_file(path)
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        supported = ", ".join(IMAGE_SUFFIXES)
        raise InputError(_name(p), f"unsupported image format '{p.suffix or 'no suffix'}' (supported: {supported})")
    try:
        with Image.open(p) as im:
            im.load()  # decode now: truncation only shows up when pixels are read
            # Phone photos store "rotate me" in EXIF instead of rotating pixels.
            out = ImageOps.exif_transpose(im)
            out.load()
            return out.copy() if out is im else out
    except _PIL_ERRORS as exc:
        raise InputError(_name(p), f"cannot be decoded as an image ({exc})") from exc


def _has_alpha(im: Image.Image) -> bool:
    """True when the image carries transparency (an alpha band or a transparent palette entry)."""
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float grayscale image to 8-bit ``L``.

    Pillow's own ``convert("L")`` clips such images at 255 instead of scaling,
    which turns a 16-bit photo white.
    """
    arr = np.asarray(im)
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        top = float(finite.max()) if finite.size else 1.0
        # Float images are usually [0, 1]; otherwise scale their own range.
        scale = 255.0 if top <= 1.0 else 255.0 / top
        out = np.nan_to_num(arr, nan=0.0) * scale
    else:
        top = int(arr.max()) if arr.size else 0
        if im.mode.startswith("I;16") or 255 < top <= 65535:
            out = arr.astype(np.float64) / 257.0  # 65535 -> 255 exactly
        elif top <= 255:
            out = arr.astype(np.float64)
        else:
            out = arr.astype(np.float64) * (255.0 / top)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="L")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """Convert CMYK to RGB, through the embedded ICC profile when there is one.

    Pillow's plain conversion ignores the print profile and gives washed-out
    colours; the profile-based transform is what viewers show.
    """
    icc = im.info.get("icc_profile")
    if icc:
        try:
            import io

            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
        except Exception:  # noqa: BLE001 - a broken profile must not stop us; fall back
            pass
    return im.convert("RGB")


def normalise_image_mode(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to ``RGBA`` (if it has transparency) or ``RGB``."""
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return _high_depth_to_l(im).convert("RGB")
    if im.mode == "CMYK":
        return _cmyk_to_rgb(im)
    if _has_alpha(im):
        return im.convert("RGBA")
    return im.convert("RGB")


def read_image(path: PathLike) -> Image.Image:
    """Read an image file as Pillow RGB or RGBA, upright.

    EXIF orientation is applied. Palette, grayscale, bilevel, 16-bit and CMYK
    images are converted to RGB (16-bit scaled, not clipped; CMYK through its
    ICC profile when present); images with an alpha band or a transparent
    palette entry become RGBA.

    Args:
        path: a file with a suffix in :data:`IMAGE_SUFFIXES`.

    Returns:
        A decoded ``PIL.Image.Image`` of mode ``"RGB"`` or ``"RGBA"``.

    Raises:
        InputError: missing, empty, unsupported suffix, truncated or undecodable.
    """
    return normalise_image_mode(_open_image(path))


def read_mask(path: PathLike) -> np.ndarray:
    """Read a foreground mask image (object = bright / opaque).

    An image with a non-trivial alpha band uses alpha (so an RGBA cut-out works
    as a mask); otherwise its luminance is used. Pixels above 50 % are object.

    Args:
        path: an image file (any mode).

    Returns:
        (H, W) bool array, True on the object, in the upright (EXIF-applied) orientation.

    Raises:
        InputError: unreadable file or a mask without any object pixel.
    """
    im = _open_image(path)
    if _has_alpha(im):
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            mask = alpha >= 128
            return _check_mask(path, mask)
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        lum = np.asarray(_high_depth_to_l(im))
    else:
        lum = np.asarray(im.convert("L"))
    return _check_mask(path, lum >= 128)


def _check_mask(path: PathLike, mask: np.ndarray) -> np.ndarray:
    """Refuse an all-background mask."""
    if not mask.any():
        raise InputError(_name(path), "mask is empty (no pixel above 50 % brightness or opacity)")
    return mask


# --------------------------------------------------------------------------- point clouds


def _text_tokens(line: bytes) -> list[bytes]:
    """Split one text row on whitespace, commas and semicolons."""
    return line.replace(b",", b" ").replace(b";", b" ").split()


def _is_numeric_row(line: bytes) -> bool:
    """True when ``line`` holds at least three numbers and nothing else."""
    tokens = _text_tokens(line)
    if len(tokens) < 3:
        return False
    try:
        for t in tokens:
            float(t)
    except ValueError:
        return False
    return True


def _skip_text_header(buf: bytes, name: str) -> tuple[int, int]:
    """Find the first numeric row of a text point file.

    Leading lines that are not rows of >= 3 numbers (column names, a point
    count as in ``.pts``, comments) are headers and are skipped.

    Returns:
        (byte offset of the first data row, number of header lines skipped).

    Raises:
        InputError: no numeric row within the first lines.
    """
    pos = 0
    for skipped in range(_MAX_TEXT_HEADER_LINES):
        end = buf.find(b"\n", pos)
        line = buf[pos:] if end < 0 else buf[pos:end]
        if _is_numeric_row(line):
            return pos, skipped
        if end < 0:
            break
        pos = end + 1
    raise InputError(name, "no rows of at least 3 numbers (x y z) found")


def _first_bad_row(body: bytes, ncols: int, first_line: int) -> tuple[int, str]:
    """Locate the first row that breaks the table (slow path, only on errors).

    Returns:
        (1-based line number, description), or (0, "") when every row is fine.
    """
    for i, line in enumerate(body.split(b"\n")):
        tokens = _text_tokens(line)
        if not tokens:
            continue
        if len(tokens) != ncols:
            return first_line + i, f"has {len(tokens)} values, expected {ncols}"
        try:
            for t in tokens:
                float(t)
        except ValueError:
            snippet = line.strip()[:40].decode("latin-1")
            return first_line + i, f"is not numeric: '{snippet}'"
    return 0, ""


def _parse_numeric_text(buf: bytes, name: str) -> np.ndarray:
    """Parse a whitespace/comma separated numeric table into (n, 3) float64.

    The whole body is converted by one call to ``np.fromstring`` (C speed; a
    10M-row file takes seconds), never row by row. Extra columns (normals,
    colours, intensity) are dropped. Rows are validated by counting values;
    only when the count does not fit do we walk the lines to name the bad one.

    Args:
        buf: the file's bytes.
        name: file name for messages.

    Returns:
        (n, 3) float64 (may contain NaN/inf; the caller drops those rows).

    Raises:
        InputError: no numeric rows, ragged rows, or non-numeric content.
    """
    start, skipped = _skip_text_header(buf, name)
    # Work with offsets into ``buf``: slicing or stripping a 700 MB buffer
    # copies it, and those copies cost more than the parse itself.
    end = len(buf)
    while end > start and buf[end - 1] in b" \t\r\n":
        end -= 1
    first_end = buf.find(b"\n", start, end)
    ncols = len(_text_tokens(buf[start : end if first_end < 0 else first_end]))
    if buf.find(b",", start, end) >= 0 or buf.find(b";", start, end) >= 0:
        buf = buf[:end].replace(b",", b" ").replace(b";", b" ")
    text = str(memoryview(buf)[start:end], "latin-1")
    try:
        values = np.fromstring(text, dtype=np.float64, sep=" ")
    except ValueError:
        values = None
    del text
    nrows_expected = buf.count(b"\n", start, end) + 1
    if values is None or values.size != nrows_expected * ncols:
        # Either unparsable text, ragged rows, or merely blank lines: find out.
        line_no, problem = _first_bad_row(buf[start:end], ncols, skipped + 1)
        if line_no:
            raise InputError(name, f"line {line_no} {problem}")
        if values is None or values.size % ncols:
            raise InputError(name, "could not parse the numeric table")
    return values.reshape(-1, ncols)[:, :3]


def _read_text_points(path: Path) -> np.ndarray:
    """Read ``.xyz``/``.pts``/``.txt``/``.csv`` tables: x y z [extra columns ignored]."""
    return _parse_numeric_text(path.read_bytes(), _name(path))


def _ply_declared_vertices(path: Path) -> int | None:
    """The vertex count a PLY header declares, or None if the header is unreadable."""
    with path.open("rb") as fh:
        head = fh.read(65536)
    end = head.find(b"end_header")
    if end < 0:
        return None
    match = re.search(rb"element\s+vertex\s+(\d+)", head[:end])
    return int(match.group(1)) if match else None


def _trimesh_vertices(path: Path, file_type: str | None = None) -> np.ndarray:
    """Vertices of whatever trimesh loads (mesh, point cloud or scene).

    Raises:
        InputError: trimesh cannot parse the file.
    """
    import trimesh

    try:
        loaded = trimesh.load(str(path), file_type=file_type, process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types for bad files
        raise InputError(_name(path), f"cannot be parsed as {path.suffix.lstrip('.').upper()} ({exc})") from exc
    if isinstance(loaded, trimesh.Scene):
        # Scenes keep per-node transforms; dump() applies them.
        parts = [np.asarray(g.vertices) for g in loaded.dump() if hasattr(g, "vertices")]
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, 3))
    return np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)


def _read_ply(path: Path) -> np.ndarray:
    """Read PLY vertices (ascii or binary, point cloud or mesh) with trimesh.

    trimesh is used rather than open3d because open3d silently returns zeros
    for a truncated binary PLY; we also compare with the header's vertex count
    because a truncated ascii PLY loads partially without complaint.
    """
    pts = _trimesh_vertices(path, "ply")
    declared = _ply_declared_vertices(path)
    if declared is not None and len(pts) < declared:
        raise InputError(_name(path), f"truncated: header declares {declared} vertices, file holds {len(pts)}")
    return pts


def _pcd_declared_points(path: Path) -> int | None:
    """The point count a PCD header declares (``POINTS n``), or None."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    match = re.search(rb"^POINTS\s+(\d+)", head, re.MULTILINE)
    return int(match.group(1)) if match else None


def _read_pcd(path: Path) -> np.ndarray:
    """Read PCD (ascii, binary, binary_compressed) with open3d, keeping NaN rows for counting."""
    import open3d as o3d

    declared = _pcd_declared_points(path)
    if declared is None:
        raise InputError(_name(path), "not a PCD file (no POINTS line in the header)")
    # open3d reports failures as log warnings and returns an empty cloud.
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.io.read_point_cloud(str(path), format="pcd", remove_nan_points=False, remove_infinite_points=False)
    pts = np.asarray(cloud.points, dtype=np.float64)
    if len(pts) < declared:
        raise InputError(_name(path), f"cannot be decoded: header declares {declared} points, read {len(pts)} (truncated or corrupt?)")
    return pts


def _read_mesh_vertices(path: Path) -> np.ndarray:
    """Read OBJ/OFF/STL vertices with trimesh.

    STL stores every triangle's corners separately, so shared corners repeat;
    exact duplicates are merged so they do not bias subsampling.
    """
    pts = _trimesh_vertices(path)
    if len(pts) == 0:
        # trimesh returns an empty scene, rather than raising, for some truncated files.
        raise InputError(_name(path), "no vertices could be read (empty, truncated or corrupt file)")
    if path.suffix.lower() == ".stl":
        pts = np.unique(pts, axis=0)
    return pts


def _read_las(path: Path) -> tuple[np.ndarray, LinearUnits | None]:
    """Read LAS/LAZ with the optional ``laspy`` (+ ``lazrs`` for LAZ) packages, and the units its CRS states.

    Raises:
        InputError: laspy (or a LAZ backend) is missing, the file is corrupt, or its
            CRS is geographic (x and y in degrees cannot be meshed).
    """
    suffix = path.suffix.lower()
    try:
        import laspy
    except ImportError as exc:
        raise InputError(_name(path), _LAS_HINT.format(suffix=suffix)) from exc
    try:
        las = laspy.read(str(path))
    except Exception as exc:  # noqa: BLE001 - laspy raises LaspyException, ValueError, OSError...
        if "backend" in str(exc).lower():
            raise InputError(_name(path), _LAS_HINT.format(suffix=suffix).replace("laspy package", "lazrs backend")) from exc
        raise InputError(_name(path), f"cannot be read as {suffix.lstrip('.').upper()} ({exc})") from exc
    try:
        units = las_units(las.header)
    except GeographicCRSError as exc:
        raise InputError(_name(path), f"its header says {exc}: reproject it to a projected CRS (e.g. with PDAL) first") from exc
    except (ValueError, TypeError, AttributeError):
        units = None  # a malformed CRS record: the points are still good, and --units can say what the header could not
    # x/y/z apply the header's scale and offset (the raw X/Y/Z are integers).
    return np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)]).astype(np.float64), units


def _points_from_array(arr: np.ndarray, name: str) -> np.ndarray:
    """Validate an array from ``.npy``/``.npz`` as (n, >=3) and keep x y z.

    Structured arrays with ``x``, ``y``, ``z`` fields are accepted too.

    Raises:
        InputError: wrong shape or dtype.
    """
    if arr.dtype.names:
        if not {"x", "y", "z"} <= set(arr.dtype.names):
            raise InputError(name, f"structured array without x, y, z fields (fields: {', '.join(arr.dtype.names)})")
        arr = np.stack([arr["x"].ravel(), arr["y"].ravel(), arr["z"].ravel()], axis=1)
    if arr.dtype.kind not in "fiub":
        raise InputError(name, f"expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] < 3:
        hint = " (a 3-D array is a voxel grid: use the voxels command)" if arr.ndim == 3 else ""
        if arr.ndim == 2 and arr.shape[0] == 3 and arr.shape[1] != 3:
            hint = " (transpose it to (N, 3))"
        raise InputError(name, f"expected an (N, 3) array, got shape {arr.shape}{hint}")
    return np.asarray(arr[:, :3], dtype=np.float64)


def _read_npy_points(path: Path) -> np.ndarray:
    return _points_from_array(_load_npy(path), _name(path))


def _read_npz_points(path: Path) -> np.ndarray:
    return _points_from_array(_load_npz_array(path, _NPZ_POINT_KEYS), _name(path))


_POINT_READERS: dict[str, Callable[[Path], np.ndarray | tuple[np.ndarray, LinearUnits | None]]] = {
    ".ply": _read_ply,
    ".pcd": _read_pcd,
    ".xyz": _read_text_points,
    ".xyzn": _read_text_points,
    ".xyzrgb": _read_text_points,
    ".pts": _read_text_points,
    ".txt": _read_text_points,
    ".csv": _read_text_points,
    ".npy": _read_npy_points,
    ".npz": _read_npz_points,
    ".obj": _read_mesh_vertices,
    ".off": _read_mesh_vertices,
    ".stl": _read_mesh_vertices,
    ".las": _read_las,
    ".laz": _read_las,
}
POINT_SUFFIXES: tuple[str, ...] = tuple(_POINT_READERS)


def _finite_rows(points: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Drop rows with NaN/inf and check that a usable cloud is left.

    Args:
        points: (n, 3) float64.
        name: file name for messages.

    Returns:
        ((m, 3) finite points, number of dropped rows).

    Raises:
        InputError: no points, all non-finite, a single point, or all identical.
    """
    n = len(points)
    if n == 0:
        raise InputError(name, "holds no points")
    finite = np.isfinite(points).all(axis=1)
    kept = points[finite]
    dropped = n - len(kept)
    if len(kept) == 0:
        raise InputError(name, f"all {n} points are non-finite (NaN/inf)")
    if len(kept) == 1:
        raise InputError(name, "holds a single point; need at least 2 distinct points")
    if not (kept.max(axis=0) > kept.min(axis=0)).any():
        raise InputError(name, f"all {len(kept)} points are identical; need an extent to normalise")
    return kept, dropped


def read_points(path: PathLike) -> PointCloud:
    """Read a point cloud file (x y z only; other attributes are ignored).

    Supported: PLY (ascii/binary), PCD (incl. binary_compressed), XYZ/PTS/TXT/CSV
    (whitespace, comma or semicolon separated, header lines tolerated), NPY
    (N x >=3), NPZ (``points`` key), OBJ/OFF/STL vertices, LAS/LAZ (optional laspy).

    Args:
        path: the file.

    Returns:
        :class:`PointCloud` with (n, 3) float64 finite points; rows with NaN/inf
        are dropped and counted in ``dropped_nonfinite``.

    Raises:
        InputError: any unusable file (see module docstring).
    """
    p = _check_file(path)
    reader = _suffix(p, _POINT_READERS, "point cloud")
    read = reader(p)
    read, units = read if isinstance(read, tuple) else (read, None)
    pts = np.asarray(read, dtype=np.float64).reshape(-1, 3)
    kept, dropped = _finite_rows(pts, _name(p))
    las = p.suffix.lower() in (".las", ".laz")
    return PointCloud(points=kept, dropped_nonfinite=dropped, source=str(p), units=units, up="z" if las else None)


# --------------------------------------------------------------------------- voxels


def _parse_binvox_header(raw: bytes, name: str) -> tuple[tuple[int, int, int], np.ndarray, float, int]:
    """Parse a binvox header, tolerating comments, blank lines, extra whitespace and any key order.

    Returns:
        (dims, translate (3,), scale, byte offset of the run-length data).

    Raises:
        InputError: not binvox, a malformed line, no ``dim`` or no ``data`` line.
    """
    head = raw[:_MAX_BINVOX_HEADER_BYTES]
    if not head.lstrip().startswith(b"#binvox"):
        raise InputError(name, "not a binvox file (no '#binvox' magic line)")
    pos = head.find(b"\n") + 1  # skip the magic line
    dims, translate, scale = None, np.zeros(3), 1.0
    while True:
        end = head.find(b"\n", pos)
        if end < 0:
            raise InputError(name, "binvox header has no 'data' line (truncated or not binvox)")
        line, pos = head[pos:end], end + 1
        # Comments start with '#' anywhere on the line; strip() also eats '\r' and tabs.
        tokens = line.split(b"#", 1)[0].split()
        if not tokens:
            continue
        key, args = tokens[0].lower(), tokens[1:]
        try:
            if key == b"data":
                break
            if key == b"dim":
                dims = tuple(int(a) for a in args)
                if len(dims) != 3 or min(dims) < 1:
                    raise ValueError("dim needs 3 positive integers")
            elif key == b"translate":
                translate = np.array([float(a) for a in args], dtype=np.float64)
                if translate.shape != (3,):
                    raise ValueError("translate needs 3 numbers")
            elif key == b"scale":
                if len(args) != 1:
                    raise ValueError("scale needs 1 number")
                scale = float(args[0])
            else:
                raise ValueError("unknown keyword")
        except ValueError as exc:
            text = line.strip().decode("latin-1")[:60]
            raise InputError(name, f"bad binvox header line '{text}' ({exc})") from exc
    if dims is None:
        raise InputError(name, "binvox header has no 'dim' line")
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(translate).all()):
        raise InputError(name, f"binvox header has an invalid translate/scale ({translate.tolist()}, {scale})")
    return dims, translate, scale, pos


def _decode_binvox_rle(data: bytes, dims: tuple[int, int, int], name: str) -> np.ndarray:
    """Decode binvox run-length pairs (value byte, count byte) into a bool grid.

    binvox stores voxels with y fastest, then z, then x; like upstream's
    ``binvox_rw.read_as_3d_array(fix_coords=True)`` we reshape to ``dims`` and
    swap the last two axes so the result is indexed ``[x, y, z]``.

    Returns:
        (dims[0], dims[2], dims[1]) bool, indexed [x, y, z].

    Raises:
        InputError: odd byte count or a voxel total that does not match ``dims``.
    """
    rle = np.frombuffer(data, dtype=np.uint8)
    expected = int(np.prod(dims))
    if rle.size % 2:
        raise InputError(name, "truncated binvox data (odd number of run-length bytes)")
    values, counts = rle[0::2], rle[1::2].astype(np.int64)
    total = int(counts.sum())
    if total != expected:
        what = "truncated" if total < expected else "corrupt"
        raise InputError(name, f"{what} binvox data: runs cover {total} voxels, dim {dims} needs {expected}")
    flat = np.repeat(values.astype(bool), counts)
    return np.transpose(flat.reshape(dims), (0, 2, 1))


def _read_binvox(path: Path) -> VoxelGrid:
    """Read a ``.binvox`` file (our own reader; see :func:`_decode_binvox_rle`)."""
    raw = path.read_bytes()
    dims, translate, scale, offset = _parse_binvox_header(raw, _name(path))
    occ = _decode_binvox_rle(raw[offset:], dims, _name(path))
    return VoxelGrid(occupancy=occ, translate=translate, scale=scale, source=str(path), convention="binvox")


def _grid_from_array(arr: np.ndarray, name: str) -> np.ndarray:
    """Validate a 3-D array and turn it into occupancy (floats thresholded at 0.5).

    Raises:
        InputError: not 3-D or not numeric/bool.
    """
    # (1, D, H, W) or (D, H, W, 1): a channel axis left by a training pipeline.
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise InputError(name, f"expected a 3-D voxel grid, got shape {arr.shape}")
    if arr.dtype.kind == "b":
        return arr.astype(bool)
    if arr.dtype.kind not in "fiu":
        raise InputError(name, f"expected a bool or numeric voxel grid, got dtype {arr.dtype}")
    # NaN >= 0.5 is False, so NaN cells count as empty.
    with np.errstate(invalid="ignore"):
        return np.asarray(arr >= 0.5)


def _read_npy_voxels(path: Path) -> VoxelGrid:
    occ = _grid_from_array(_load_npy(path), _name(path))
    return VoxelGrid(occ, np.zeros(3), float(max(occ.shape)), str(path), "index")


def _read_npz_voxels(path: Path) -> VoxelGrid:
    occ = _grid_from_array(_load_npz_array(path, _NPZ_VOXEL_KEYS), _name(path))
    return VoxelGrid(occ, np.zeros(3), float(max(occ.shape)), str(path), "index")


_VOXEL_READERS: dict[str, Callable[[Path], VoxelGrid]] = {
    ".binvox": _read_binvox,
    ".npy": _read_npy_voxels,
    ".npz": _read_npz_voxels,
}
VOXEL_SUFFIXES: tuple[str, ...] = tuple(_VOXEL_READERS)


def read_voxels(path: PathLike) -> VoxelGrid:
    """Read a voxel grid file.

    ``.binvox`` keeps its header's world frame (``convention="binvox"``);
    ``.npy``/``.npz`` 3-D arrays (bool, or numbers thresholded at >= 0.5) live in
    the voxel index frame (``convention="index"``: translate 0, scale = longest side
    in cells, so cell i spans [i, i+1]).

    Args:
        path: the file.

    Returns:
        :class:`VoxelGrid` with a (D, H, W) bool occupancy indexed [x, y, z].

    Raises:
        InputError: unreadable, malformed, wrong shape, or no occupied voxel.
    """
    p = _check_file(path)
    reader = _suffix(p, _VOXEL_READERS, "voxel")
    grid = reader(p)
    if not grid.occupancy.any():
        raise InputError(_name(p), f"voxel grid {'x'.join(map(str, grid.occupancy.shape))} has no occupied voxel")
    return grid
