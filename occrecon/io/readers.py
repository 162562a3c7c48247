"""Read every supported input file into plain arrays, refusing bad input clearly.

Three families, each dispatched on the (lower-case) file suffix through a table:

* images (:data:`IMAGE_SUFFIXES`) with Pillow: :func:`read_image`, :func:`read_mask`;
* point clouds (:data:`POINT_SUFFIXES`): :func:`read_points` -> :class:`PointCloud`;
* voxel grids (:data:`VOXEL_SUFFIXES`): :func:`read_voxels` -> :class:`VoxelGrid`.

Every problem with a file (missing, not a regular file, empty, truncated,
unreadable, wrong shape, no usable content, unsupported suffix, over the memory
budget) raises :class:`occrecon.errors.InputError` with the file name and one
short line saying what is wrong; a third-party parser's own exception (``list
index out of range``, ``std::bad_alloc``) is never the reason shown, it is kept
as the ``__cause__``. ``.npy``/``.npz`` files are always loaded with
``allow_pickle=False``: occrecon never unpickles.

Resource limits. What a file declares (an image's pixel count, an array's shape
and dtype, a binvox ``dim`` line, a PLY/PCD/LAS point count) is checked before
anything that size is allocated or decoded:

* the memory one input may take, :data:`DEFAULT_MAX_INPUT_BYTES` (2 GiB), or
  ``OCCRECON_MAX_INPUT_BYTES`` (``8G``, ``500M``, or bytes);
* the pixels of an image, :data:`DEFAULT_MAX_PIXELS` (100 MP), or
  ``OCCRECON_MAX_PIXELS``; images above :data:`DOWNSCALE_PIXELS` (16.8 MP,
  4096²) are downscaled while they are read (JPEGs decoded at a reduced scale),
  since the networks see 224 px;
* coordinates beyond ±:data:`MAX_COORDINATE` are refused (a corrupt file or a
  wrong scale, and float overflow further on).

Heavy third-party readers (open3d, trimesh, laspy) are imported lazily, so that
importing this module (and starting the CLI) stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import struct
import sys
import threading
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
from PIL import Image, ImageOps

from occrecon.errors import InputError, OccreconError
from occrecon.io.crs import GeographicCRSError, LinearUnits, las_units
from occrecon.io.paths import check_regular_file

__all__ = [
    "IMAGE_SUFFIXES",
    "POINT_SUFFIXES",
    "VOXEL_SUFFIXES",
    "PointCloud",
    "VoxelGrid",
    "DEFAULT_MAX_INPUT_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DOWNSCALE_PIXELS",
    "MAX_COORDINATE",
    "max_input_bytes",
    "max_pixels",
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

#: Memory one input's decoded data may take, unless ``OCCRECON_MAX_INPUT_BYTES`` says otherwise.
DEFAULT_MAX_INPUT_BYTES = 2 * 1024**3
#: Pixels an image may declare, unless ``OCCRECON_MAX_PIXELS`` says otherwise.
DEFAULT_MAX_PIXELS = 100_000_000
#: Images with more pixels are downscaled to about this many while they are read.
DOWNSCALE_PIXELS = 4096 * 4096
#: Largest coordinate magnitude a point file may hold (1e12 mm is a million km).
MAX_COORDINATE = 1e12

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

# The parsers log what they find wrong in a hostile file (Pillow: "More samples per pixel than can
# be decoded"). With no handler configured, Python's last-resort handler prints such records to
# stderr, past the one error line; a NullHandler keeps them for an application that configures
# logging (they still propagate to its root handlers) and off the terminal otherwise.
for _logger in ("PIL", "trimesh", "laspy"):
    logging.getLogger(_logger).addHandler(logging.NullHandler())


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
        colours: (n, 3) uint8 RGB of each point where the file carries colours (PLY
            red/green/blue, PCD rgb/rgba, XYZ colour columns, LAS/LAZ red/green/blue),
            else None. 16-bit and float colours are brought to 0-255.
    """

    points: np.ndarray
    dropped_nonfinite: int = 0
    source: str = ""
    units: LinearUnits | None = None
    up: str | None = None
    colours: np.ndarray | None = None


@dataclass
class _Columns:
    """What a point reader found: x y z, and the points' colours and the units where the file states them."""

    points: np.ndarray
    colours: np.ndarray | None = None
    units: LinearUnits | None = None


def colours_to_uint8(values: np.ndarray) -> np.ndarray | None:
    """(n, 3) colours of any numeric type as uint8: 0-1 floats scaled by 255, 16-bit values by 1/257.

    Returns None for values that are not colours (negative, non-finite where the points are
    finite is left to the caller, over 65,535).
    """
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] < 3 or values.dtype.kind not in "uif":
        return None
    with np.errstate(all="ignore"):
        rgb = values[:, :3].astype(np.float64)
        finite = rgb[np.isfinite(rgb).all(axis=1)]
        if len(finite) == 0 or finite.min() < 0 or finite.max() > 65535:
            return None
        if values.dtype.kind == "f" and finite.max() <= 1.0:
            rgb = rgb * 255.0
        elif finite.max() > 255:  # 16-bit colours (LAS stores 8-bit ones in 16-bit fields too)
            rgb = rgb / 257.0
        return np.nan_to_num(rgb).round().clip(0, 255).astype(np.uint8)


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


def _quote(raw: bytes | str, limit: int = 40) -> str:
    """A snippet of file content for a message, with anything unprintable shown escaped."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    text = text[:limit]
    return "".join(ch if ch.isprintable() and ch != "\\" else ascii(ch)[1:-1] for ch in text)


def _size_from_env(variable: str, default: int, unit_name: str) -> int:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?", text) if unit_name == "bytes" else re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgG]?)", text)
    if not match:
        example = "8G, 500M or 4294967296" if unit_name == "bytes" else "200M or 200000000"
        raise OccreconError(f"{variable}={text!r} is not a size such as {example}")
    number, unit = float(match.group(1)), match.group(2).lower()
    scale = _SIZE_UNITS[unit] if unit_name == "bytes" else {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[unit]
    value = int(number * scale)
    if value < 1:
        raise OccreconError(f"{variable}={text!r} must be positive")
    return value


def max_input_bytes() -> int:
    """The memory budget of one input: ``OCCRECON_MAX_INPUT_BYTES`` (``8G``, ``500M``, bytes), else :data:`DEFAULT_MAX_INPUT_BYTES`."""
    return _size_from_env("OCCRECON_MAX_INPUT_BYTES", DEFAULT_MAX_INPUT_BYTES, "bytes")


def max_pixels() -> int:
    """The pixel limit of one image: ``OCCRECON_MAX_PIXELS`` (``200M`` or a count), else :data:`DEFAULT_MAX_PIXELS`."""
    return _size_from_env("OCCRECON_MAX_PIXELS", DEFAULT_MAX_PIXELS, "pixels")


def _human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def _check_budget(name: str, nbytes: float, what: str) -> None:
    """Refuse an input whose declared content would take more memory than the budget.

    Raises:
        InputError: naming the size, the limit and how to raise it.
    """
    budget = max_input_bytes()
    if nbytes > budget:
        raise InputError(
            name,
            f"{what} would take {_human_bytes(nbytes)} of memory, over the limit of {_human_bytes(budget)} per input; "
            f"set OCCRECON_MAX_INPUT_BYTES (e.g. OCCRECON_MAX_INPUT_BYTES={math.ceil(nbytes / 1024**3) + 1}G) to raise it "
            "if the machine can hold it",
        )


def _check_file(path: PathLike) -> Path:
    """Return ``path`` as a Path after checking it is a regular, readable, non-empty file.

    Raises:
        InputError: missing, a link loop, not a regular file (a FIFO, a device, a directory), empty, or not readable.
    """
    return check_regular_file(path)


def _file_size(path: Path) -> int:
    return path.stat().st_size


_T = TypeVar("_T")


def _guarded(name: str, what: str, read: Callable[[], _T]) -> _T:
    """Run a parser, turning whatever it raises into an InputError with a readable reason.

    Warnings raised while parsing are silenced and numpy's float errors ignored (a hostile file
    overflows on purpose). Our own InputErrors pass through. A third-party parser's exception text (``list index out of
    range``, ``std::bad_alloc``) is never the reason shown: memory exhaustion becomes "not enough
    memory", anything else "malformed <what> file"; the original is kept as ``__cause__`` for
    ``--debug``.
    """
    try:
        # A parser's warnings about hostile data (numpy overflow while scaling, a header that is not a
        # literal) are not the user's: the outcome is a clean read or one clean error line.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return read()
    except InputError:
        raise
    except OccreconError:
        raise
    except MemoryError as exc:
        raise _parser_failure(name, f"not enough memory to read it as {what}") from exc
    except RecursionError as exc:
        raise _parser_failure(name, f"malformed {what} file (nested too deeply)") from exc
    except Exception as exc:  # noqa: BLE001 - parsers raise anything on hostile input
        if "bad_alloc" in str(exc) or "out of memory" in str(exc).lower():
            raise _parser_failure(name, f"not enough memory to read it as {what}") from exc
        raise _parser_failure(name, f"malformed {what} file") from exc


def _parser_failure(name: str, problem: str) -> InputError:
    """An InputError standing for whatever a parser raised; ``parser_failure`` marks it (the fuzzer
    checks that such exceptions come from third-party parsers, never from occrecon's own code)."""
    error = InputError(name, problem)
    error.parser_failure = True  # type: ignore[attr-defined]
    return error


guarded_parse = _guarded
"""Public name of :func:`_guarded`: run a third-party parser, turning what it raises into an InputError with a readable reason."""


def check_mesh_file_budget(path: Path) -> None:
    """Refuse a mesh file whose parsed arrays would not fit the memory budget (about twice its size)."""
    _check_budget(_name(path), 2 * _file_size(path), f"its {_human_bytes(_file_size(path))} of mesh data")


def _suffix(path: Path, table: dict[str, Callable], what: str) -> Callable:
    """Look up the reader for ``path``'s suffix in ``table``.

    Raises:
        InputError: the suffix is not in the table; the message lists the supported ones.
    """
    reader = table.get(path.suffix.lower())
    if reader is None:
        supported = ", ".join(sorted(table))
        got = _quote(path.suffix) or "no suffix"
        raise InputError(_name(path), f"unsupported {what} format '{got}' (supported: {supported})")
    return reader


_PICKLED = "holds pickled Python objects; refused (occrecon never unpickles)"


def _read_npy_header(handle, name: str, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Read an ``.npy`` header from an open binary stream: (shape, dtype), nothing of the data.

    Raises:
        InputError: not an .npy stream, a corrupt header, or an object (pickled) dtype.
    """
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            # Version 3 differs from 2 only in the header's encoding (utf-8 field names): the shape and
            # the dtype's size, all that is checked here, read the same.
            shape, _, dtype = npy_format.read_array_header_2_0(handle)
        else:
            raise InputError(name, f"not a valid {what} (unknown format version {version[0]}.{version[1]})")
    except InputError:
        raise
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, zlib.error, zipfile.BadZipFile) as exc:
        raise InputError(name, f"not a valid {what} (corrupt or truncated header)") from exc
    if dtype.hasobject:
        raise InputError(name, _PICKLED)
    if any(int(d) < 0 for d in shape):
        raise InputError(name, f"not a valid {what} (negative size in its header)")
    return tuple(int(d) for d in shape), dtype


def _declared_nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _load_npy(path: Path, extra_bytes_per_item: int = 0) -> np.ndarray:
    """Load an ``.npy`` array without ever unpickling, after checking its declared size.

    ``extra_bytes_per_item``: memory the caller adds per array element (a float64 copy, a bool
    grid), counted against the budget with the array itself.

    Raises:
        InputError: the file needs pickle (object arrays or a plain pickle), is corrupt or
            truncated, or declares an array over the memory budget.
    """
    name = _name(path)
    with path.open("rb") as handle:
        shape, dtype = _read_npy_header(handle, name, ".npy array")
        data_start = handle.tell()
    nbytes = _declared_nbytes(shape, dtype)
    _check_budget(name, nbytes + math.prod(shape) * extra_bytes_per_item, f"its {'x'.join(map(str, shape)) or 'scalar'} {dtype} array")
    held = _file_size(path) - data_start
    if held < nbytes:
        raise InputError(name, f"truncated .npy file: its header declares {nbytes} bytes of data, the file holds {max(held, 0)}")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(name, _PICKLED) from exc
        raise InputError(name, "not a valid .npy array (corrupt header or data)") from exc
    except (OSError, EOFError) as exc:
        raise InputError(name, "not a valid .npy file (truncated or corrupt)") from exc
    except MemoryError as exc:
        raise InputError(name, "not enough memory to read its array") from exc


def _load_npz_array(path: Path, keys: tuple[str, ...], extra_bytes_per_item: int = 0) -> np.ndarray:
    """Load one array from an ``.npz`` archive without unpickling, after checking its declared size.

    The first of ``keys`` present is used; an archive with a single array is accepted whatever
    its key. The member's ``.npy`` header is read (a few hundred bytes decompressed) and its
    shape and dtype checked against the memory budget before the array is decompressed: an
    8 MB archive that inflates to 4 GB is refused at once.

    Raises:
        InputError: corrupt archive, pickled content, no suitable key, or over the budget.
    """
    name = _name(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {m.filename[:-4] if m.filename.endswith(".npy") else m.filename: m for m in archive.infolist()}
            names = list(members)
            key = next((k for k in keys if k in members), None)
            if key is None and len(names) == 1:
                key = names[0]
            if key is None:
                listed = ", ".join(_quote(n, 30) for n in names[:20]) if names else "none"
                raise InputError(name, f"no '{keys[0]}' array in the archive (keys: {listed})")
            member = members[key]
            if not member.filename.endswith(".npy"):
                raise InputError(name, f"archive member '{_quote(member.filename)}' is not an .npy array")
            with archive.open(member) as stream:
                shape, dtype = _read_npy_header(stream, name, f".npz member '{_quote(key)}'")
            nbytes = _declared_nbytes(shape, dtype)
            _check_budget(name, nbytes + math.prod(shape) * extra_bytes_per_item, f"its '{_quote(key)}' array ({'x'.join(map(str, shape)) or 'scalar'} {dtype})")
            with archive.open(member) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(name, _PICKLED) from exc
        raise InputError(name, "not a valid .npz archive (corrupt member)") from exc
    except MemoryError as exc:
        raise InputError(name, "not enough memory to read its array") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, RuntimeError, struct.error) as exc:
        raise InputError(name, "not a valid .npz archive (truncated or corrupt)") from exc


# --------------------------------------------------------------------------- images

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")

_PIL_LIMIT_LOCK = threading.Lock()
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


_NATIVE_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block: native decoders (libtiff) print there directly.

    Serialised by a lock, so that two threads cannot swap the descriptor under each other; the
    real stderr is always put back. Where the descriptors cannot be swapped it does nothing.
    """
    with _NATIVE_STDERR_LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, 2)
            finally:
                os.close(devnull)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _too_many_pixels(name: str, pixels: int | None, size: tuple[int, int] | None, limit: int) -> InputError:
    dims = f"{size[0]}x{size[1]} = " if size else ""
    declared = f"image is {dims}{pixels / 1e6:.1f} megapixels" if pixels else "image declares too many pixels"
    suggested = max(2 * limit, pixels or 0) // 10**6
    return InputError(
        name,
        f"{declared}, over the limit of {limit / 1e6:g} MP; set OCCRECON_MAX_PIXELS (e.g. OCCRECON_MAX_PIXELS={suggested}M) to raise it",
    )


def _pil_open(path: Path, limit: int) -> Image.Image:
    """``Image.open`` (lazy: reads the header only) with Pillow's own decompression-bomb guard replaced by ours.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` and raises above twice that, before we can see
    the size; its warning is silenced and its error turned into ours (with our limit), and where
    ``OCCRECON_MAX_PIXELS`` allows more than Pillow does, Pillow's limit is lifted for this open.
    """
    name = _name(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except Image.DecompressionBombError as exc:
            match = _BOMB_PIXELS.search(str(exc))
            pixels = int(match.group(1)) if match else None
            if pixels is None or pixels > limit:
                raise _too_many_pixels(name, pixels, None, limit) from exc
        with _PIL_LIMIT_LOCK:  # our limit is higher than Pillow's: open with Pillow's lifted
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _downscaled_size(size: tuple[int, int], budget: int | None = None) -> tuple[int, int] | None:
    """The size an image of ``size`` is read at: None to keep it, else the largest size within ``budget`` pixels, same aspect.

    Depends on the stored size only, so an image and its mask of the same size come out the same size.
    """
    budget = DOWNSCALE_PIXELS if budget is None else budget
    width, height = size
    if width * height <= budget:
        return None
    scale = math.sqrt(budget / (width * height))
    # The epsilon keeps exact fits exact (512 of 11000 is not 511.99999); the loop keeps us within budget.
    target = max(1, int(width * scale + 1e-6)), max(1, int(height * scale + 1e-6))
    while target[0] * target[1] > budget and min(target) > 1:
        target = max(1, target[0] - 1), max(1, target[1] - 1)
    return target


def _image_failure(name: str, exc: BaseException) -> InputError:
    """A readable reason for an image that Pillow cannot decode (never a parser's internal text)."""
    if isinstance(exc, MemoryError):
        return InputError(name, "not enough memory to decode the image")
    if isinstance(exc, Image.UnidentifiedImageError):
        return InputError(name, "cannot be decoded as an image (not an image, or a format Pillow cannot read)")
    text = str(exc).lower()
    if "truncated" in text or isinstance(exc, EOFError):
        return InputError(name, "cannot be decoded as an image (truncated image data)")
    return InputError(name, "cannot be decoded as an image (corrupt image data)")


def _open_image(path: PathLike) -> Image.Image:
    """Open and fully decode an image, with its EXIF orientation applied.

    The pixel count the header declares is checked against :func:`max_pixels` before anything
    is decoded, and images over :data:`DOWNSCALE_PIXELS` are downscaled while they are read
    (JPEG: decoded at 1/2, 1/4 or 1/8 scale by the codec itself).

    Raises:
        InputError: missing, unsupported suffix, too many pixels, unreadable or truncated.
    """
    p = _check_file(path)
    name = _name(p)
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        supported = ", ".join(IMAGE_SUFFIXES)
        raise InputError(name, f"unsupported image format '{_quote(p.suffix) or 'no suffix'}' (supported: {supported})")
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            # Pillow warns about what it can decode all the same (a corrupt EXIF block, a tag past the end of
            # the file): the image is read or refused here, and a warning would only leak past the one line.
            warnings.simplefilter("ignore")
            im = _pil_open(p, limit)
            with im:
                width, height = im.size
                if width * height > limit:
                    raise _too_many_pixels(name, width * height, (width, height), limit)
                if width < 1 or height < 1:
                    raise InputError(name, "image has no pixels")
                target = _downscaled_size((width, height))
                if target is not None:
                    im.draft(None, target)  # JPEG: the codec decodes at a reduced scale, still >= target
                # Decode now: truncation only shows up when pixels are read. libtiff writes its complaints
                # about a corrupt file straight to file descriptor 2, past any Python handler.
                with _native_stderr_silenced() if im.format == "TIFF" else contextlib.nullcontext():
                    im.load()
                out = im
                if target is not None and out.size != target:
                    try:
                        out = out.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
                    except ValueError:  # modes resize cannot filter (16-bit, ...): nearest is enough for 224 px
                        out = out.resize(target, Image.Resampling.NEAREST)
                # Phone photos store "rotate me" in EXIF instead of rotating pixels; a corrupt EXIF block rotates nothing.
                try:
                    upright = ImageOps.exif_transpose(out)
                except Exception:  # noqa: BLE001 - a broken EXIF block must not lose a readable image
                    upright = out
                upright.load()
                return upright.copy() if upright is im else upright
    except InputError:
        raise
    except OccreconError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(name, None, None, limit) from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises a zoo of exceptions for broken files, by plugin
        raise _image_failure(name, exc) from exc


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
    image = _open_image(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's conversion notes (a palette's transparency in bytes) are not the user's problem
        return normalise_image_mode(image)


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _mask_from_image(path, im)


def _mask_from_image(path: PathLike, im: Image.Image) -> np.ndarray:
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
            return first_line + i, f"is not numeric: '{_quote(line.strip())}'"
    return 0, ""


def _parse_numeric_text(buf: bytes, name: str) -> np.ndarray:
    """Parse a whitespace/comma separated numeric table into (n, c >= 3) float64.

    The whole body is converted by one call to ``np.fromstring`` (C speed; a
    10M-row file takes seconds), never row by row. Every column is returned
    (x y z first; :func:`_text_colour_columns` finds colours among the others).
    Rows are validated by counting values;
    only when the count does not fit do we walk the lines to name the bad one.

    Args:
        buf: the file's bytes.
        name: file name for messages.

    Returns:
        (n, c) float64 (may contain NaN/inf; the caller drops those rows).

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
    return values.reshape(-1, ncols)


def _looks_like_colours(columns: np.ndarray) -> bool:
    """Whether three columns of a text table hold RGB: all 0-255 integers (some over 1), or 0-1 values that are not unit normals."""
    finite = columns[np.isfinite(columns).all(axis=1)]
    if len(finite) == 0 or finite.min() < 0:
        return False
    if finite.max() > 1:
        return finite.max() <= 255 and bool(np.all(finite == np.round(finite)))
    return not np.allclose(np.linalg.norm(finite, axis=1), 1.0, atol=1e-3)


def _text_colour_columns(table: np.ndarray, suffix: str) -> np.ndarray | None:
    """The RGB columns of an x y z table, where it has them, as uint8.

    ``x y z r g b`` (6 columns), ``x y z intensity r g b`` (7, the PTS layout) and
    ``x y z r g b nx ny nz`` or ``x y z nx ny nz r g b`` (9) are recognised; normals (values
    in [-1, 1], unit rows) are never read as colours. ``.xyzn`` files hold normals only.
    """
    ncols = table.shape[1]
    if suffix == ".xyzn" or ncols < 6:
        return None
    candidates = {6: [3], 7: [4, 3], 9: [3, 6], 10: [3, 6, 7]}.get(ncols, [3])
    for start in candidates:
        if start + 3 <= ncols and _looks_like_colours(table[:, start : start + 3]):
            return colours_to_uint8(table[:, start : start + 3] / (255.0 if table[:, start : start + 3].max() > 1 else 1.0))
    return None


def _read_text_points(path: Path) -> _Columns:
    """Read ``.xyz``/``.pts``/``.txt``/``.csv`` tables: x y z [colour columns kept, other columns ignored]."""
    # The parsed table takes about as much memory as the text (8 bytes per number of ~8 characters).
    _check_budget(_name(path), _file_size(path), f"its {_human_bytes(_file_size(path))} of text")
    table = _parse_numeric_text(path.read_bytes(), _name(path))
    return _Columns(table[:, :3], _text_colour_columns(table, path.suffix.lower()))


# PLY and PCD scalar types -> bytes.
_PLY_TYPE_BYTES = {
    b"char": 1, b"uchar": 1, b"int8": 1, b"uint8": 1,
    b"short": 2, b"ushort": 2, b"int16": 2, b"uint16": 2,
    b"int": 4, b"uint": 4, b"int32": 4, b"uint32": 4, b"float": 4, b"float32": 4,
    b"double": 8, b"float64": 8,
}


@dataclass
class _PlyHeader:
    """What a PLY header declares: format, and per element its count, scalar row bytes and whether it has lists."""

    format: bytes
    elements: list[tuple[bytes, int, int, bool]]
    data_start: int

    def count(self, element: bytes) -> int:
        return next((n for name, n, _, _ in self.elements if name == element), 0)


def _ply_header(path: Path) -> _PlyHeader:
    """Parse a PLY header (only the header: at most 1 MiB is read).

    Raises:
        InputError: "malformed PLY header" with what is wrong.
    """
    name = _name(path)
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    if not head.startswith(b"ply"):
        raise InputError(name, "malformed PLY header (no 'ply' magic line)")
    end = head.find(b"end_header")
    if end < 0:
        raise InputError(name, "malformed PLY header (no end_header line within 1 MiB)")
    newline = head.find(b"\n", end)
    data_start = len(head) if newline < 0 else newline + 1
    fmt, elements = b"", []
    for raw in head[:end].splitlines()[1:]:
        tokens = raw.split()
        if not tokens or tokens[0] in (b"comment", b"obj_info"):
            continue
        key = tokens[0]
        try:
            if key == b"format":
                fmt = tokens[1]
                if fmt not in (b"ascii", b"binary_little_endian", b"binary_big_endian"):
                    raise ValueError
            elif key == b"element":
                count = int(tokens[2])
                if count < 0:
                    raise ValueError
                elements.append((tokens[1], count, 0, False))
            elif key == b"property":
                if not elements:
                    raise ValueError
                element, count, row, lists = elements[-1]
                if tokens[1] == b"list":
                    lists = True
                    if tokens[2] not in _PLY_TYPE_BYTES or tokens[3] not in _PLY_TYPE_BYTES:
                        raise ValueError
                else:
                    row += _PLY_TYPE_BYTES[tokens[1]]
                elements[-1] = (element, count, row, lists)
            else:
                raise ValueError
        except (ValueError, IndexError, KeyError):
            raise InputError(name, f"malformed PLY header (line '{_quote(raw.strip())}')") from None
    if not fmt:
        raise InputError(name, "malformed PLY header (no format line)")
    return _PlyHeader(fmt, elements, data_start)


def _check_ply_sizes(path: Path, header: _PlyHeader) -> None:
    """Refuse a PLY whose declared elements do not fit the file, or would not fit the memory budget."""
    name = _name(path)
    held = _file_size(path) - header.data_start
    vertices = header.count(b"vertex")
    # trimesh keeps every element's rows as float64 columns, and vertices and faces as (n, 3) arrays.
    declared = sum(count * max(row, 8) * 3 for _, count, row, _ in header.elements)
    _check_budget(name, declared, f"its {vertices} vertices")
    minimum = 0
    for _, count, row, lists in header.elements:
        if header.format == b"ascii":
            minimum += count * 2  # at least one digit and one separator per row
        else:
            minimum += count * (row + (1 if lists else 0))
    if minimum > held:
        raise InputError(name, f"truncated: header declares {vertices} vertices, the file is too short to hold them")


def _trimesh_vertices(path: Path, file_type: str | None = None, with_colours: bool = False) -> Any:
    """Vertices of whatever trimesh loads (mesh, point cloud or scene); with ``with_colours``, (vertices, PLY vertex colours or None).

    Raises:
        InputError: trimesh cannot parse the file (with a readable reason, never trimesh's own text).
    """
    import trimesh

    what = (file_type or path.suffix.lstrip(".")).upper()

    def load() -> Any:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            loaded = trimesh.load(str(path), file_type=file_type, process=False)
        if isinstance(loaded, trimesh.Scene):
            # Scenes keep per-node transforms; dump() applies them.
            parts = [np.asarray(g.vertices) for g in loaded.dump() if hasattr(g, "vertices")]
            vertices = np.concatenate(parts, axis=0) if parts else np.zeros((0, 3))
        else:
            vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
        return (vertices, _ply_colours(loaded)) if with_colours else vertices

    return _guarded(_name(path), what, load)


_PLY_COLOUR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))


def _ply_colours(loaded: Any) -> np.ndarray | None:
    """The PLY vertex element's own colour properties as uint8 (trimesh invents grey for a file without any)."""
    raw = getattr(loaded, "metadata", {}).get("_ply_raw", {}) if hasattr(loaded, "metadata") else {}
    data = raw.get("vertex", {}).get("data") if isinstance(raw, dict) else None
    names = getattr(getattr(data, "dtype", None), "names", None) or ()
    for fields in _PLY_COLOUR_NAMES:
        if set(fields) <= set(names):
            return colours_to_uint8(np.stack([np.asarray(data[f]).reshape(-1) for f in fields], axis=1))
    return None


def _read_ply(path: Path) -> _Columns:
    """Read PLY vertices (ascii or binary, point cloud or mesh) with trimesh.

    The header is parsed first: a malformed one is named as such, and the declared element
    counts are checked against the file's size (a truncated file) and the memory budget before
    trimesh allocates anything. trimesh is used rather than open3d because open3d silently
    returns zeros for a truncated binary PLY; we also compare with the header's vertex count
    because a truncated ascii PLY loads partially without complaint.
    """
    header = _ply_header(path)
    _check_ply_sizes(path, header)
    pts, colours = _trimesh_vertices(path, "ply", with_colours=True)
    declared = header.count(b"vertex")
    if declared and len(pts) < declared:
        raise InputError(_name(path), f"truncated: header declares {declared} vertices, file holds {len(pts)}")
    return _Columns(pts, colours if colours is not None and len(colours) == len(pts) else None)


_PCD_KEYS = (b"VERSION", b"FIELDS", b"SIZE", b"TYPE", b"COUNT", b"WIDTH", b"HEIGHT", b"VIEWPOINT", b"POINTS", b"DATA")


def _pcd_header(path: Path) -> tuple[dict[bytes, list[bytes]], int]:
    """The PCD header's lines by key, and the byte offset of the data.

    Raises:
        InputError: no POINTS or DATA line, or a malformed line.
    """
    name = _name(path)
    with path.open("rb") as fh:
        head = fh.read(65536)
    fields: dict[bytes, list[bytes]] = {}
    pos = 0
    while True:
        end = head.find(b"\n", pos)
        if end < 0:
            break
        tokens = head[pos:end].split()
        pos = end + 1
        if not tokens or tokens[0].startswith(b"#"):
            continue
        key = tokens[0].upper()
        if key not in _PCD_KEYS:
            raise InputError(name, f"malformed PCD header (line '{_quote(b' '.join(tokens))}')")
        fields[key] = tokens[1:]
        if key == b"DATA":
            return fields, pos
    if b"POINTS" not in fields:
        raise InputError(name, "not a PCD file (no POINTS line in the header)")
    raise InputError(name, "malformed PCD header (no DATA line)")


def _check_pcd_sizes(path: Path, fields: dict[bytes, list[bytes]], data_start: int) -> int:
    """Check a PCD header's declared sizes against the file and the memory budget; returns the point count.

    binary_compressed data starts with its compressed and uncompressed sizes; both must be what
    the header implies, or open3d would allocate whatever they say.
    """
    name = _name(path)
    try:
        points = int(fields[b"POINTS"][0])
        sizes = [int(v) for v in fields.get(b"SIZE", [])]
        counts = [int(v) for v in fields.get(b"COUNT", [])] or [1] * len(sizes)
        data = fields[b"DATA"][0].lower()
    except (KeyError, IndexError, ValueError):
        raise InputError(name, "malformed PCD header (POINTS, SIZE, COUNT or DATA)") from None
    if points < 0 or any(v <= 0 for v in sizes + counts) or len(counts) != len(sizes):
        raise InputError(name, "malformed PCD header (negative or mismatched sizes)")
    row = sum(size * count for size, count in zip(sizes, counts))
    _check_budget(name, points * (max(row, 1) + 3 * 8 * 2), f"its {points} points")
    held = _file_size(path) - data_start
    if data == b"ascii":
        if points * 2 > held + 1:
            raise InputError(name, f"truncated: header declares {points} points, the file is too short to hold them")
    elif data == b"binary":
        if points * row > held:
            raise InputError(name, f"truncated: header declares {points} points of {row} bytes, the file holds {max(held, 0)} bytes of data")
    elif data == b"binary_compressed":
        with path.open("rb") as fh:
            fh.seek(data_start)
            sizes_raw = fh.read(8)
        if len(sizes_raw) < 8:
            raise InputError(name, "truncated: no binary_compressed data after the header")
        compressed, uncompressed = struct.unpack("<II", sizes_raw)
        if uncompressed != points * row or compressed > held - 8:
            raise InputError(name, "corrupt binary_compressed PCD data (its sizes do not match the header or the file)")
    else:
        raise InputError(name, f"malformed PCD header (unknown DATA '{_quote(data)}')")
    return points


def _pcd_rgb(values: np.ndarray, kind: bytes) -> np.ndarray:
    """PCD's packed colours (``rgb``/``rgba``: a float32 (TYPE F) or an unsigned integer whose bytes are 0xAARRGGBB) as (n, 3) uint8."""
    with np.errstate(all="ignore"):
        values = np.nan_to_num(np.asarray(values, dtype=np.float64))
        packed = values.astype(np.float32).view(np.uint32) if kind == b"F" else np.clip(values, 0, 2**32 - 1).astype(np.uint32)
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)


def _pcd_colour_column(fields: dict[bytes, list[bytes]]) -> tuple[int, bytes] | None:
    """The value column of a PCD's packed ``rgb``/``rgba`` field and its TYPE letter, or None."""
    names = [n.lower() for n in fields.get(b"FIELDS", [])]
    types = [t.upper() for t in fields.get(b"TYPE", [])]
    try:
        counts = [int(v) for v in fields.get(b"COUNT", [])] or [1] * len(names)
    except ValueError:
        return None
    starts = dict(zip(names, np.cumsum([0, *counts[:-1]]).tolist()))
    for key in (b"rgb", b"rgba"):
        if key in starts:
            index = names.index(key)
            return int(starts[key]), (types[index] if index < len(types) else b"F")
    return None


def _pcd_xyz_columns(fields: dict[bytes, list[bytes]], name: str) -> tuple[list[int], int]:
    """The value columns of x, y and z in a PCD row, and the number of values per row."""
    names = [n.lower() for n in fields.get(b"FIELDS", [])]
    try:
        counts = [int(v) for v in fields.get(b"COUNT", [])] or [1] * len(names)
    except ValueError:
        raise InputError(name, "malformed PCD header (COUNT)") from None
    if len(counts) != len(names):
        raise InputError(name, "malformed PCD header (FIELDS and COUNT differ in length)")
    starts = dict(zip(names, np.cumsum([0, *counts[:-1]]).tolist()))
    if not {b"x", b"y", b"z"} <= set(starts):
        listed = ", ".join(_quote(n, 20) for n in names[:20]) or "none"
        raise InputError(name, f"PCD has no x, y, z fields (fields: {listed})")
    return [int(starts[axis]) for axis in (b"x", b"y", b"z")], sum(counts)


def _read_pcd_ascii(path: Path, fields: dict[bytes, list[bytes]], data_start: int, declared: int) -> _Columns:
    """Parse the rows of an ascii PCD ourselves, strictly.

    open3d leaves a value it cannot parse uninitialised: a corrupt row came back as whatever was
    in memory (a different cloud on every read, sometimes 1e100). Every row must hold exactly
    the header's values, and there must be ``POINTS`` rows.
    """
    name = _name(path)
    columns, ncols = _pcd_xyz_columns(fields, name)
    _check_budget(name, _file_size(path), f"its {_human_bytes(_file_size(path))} of text")
    raw = path.read_bytes()
    first_line = raw.count(b"\n", 0, data_start) + 1
    body = raw[data_start:].rstrip()
    try:
        values = np.fromstring(str(body, "latin-1"), dtype=np.float64, sep=" ")
    except ValueError:
        values = None
    if values is None or values.size != declared * ncols:
        line_no, problem = _first_bad_row(body, ncols, first_line)
        if line_no:
            raise InputError(name, f"line {line_no} {problem}")
        held = 0 if values is None else values.size // max(ncols, 1)
        raise InputError(name, f"header declares {declared} points, the data holds {held} (truncated or corrupt)")
    table = values.reshape(declared, ncols)
    colour = _pcd_colour_column(fields)
    colours = None if colour is None else _pcd_rgb(table[:, colour[0]], colour[1])
    return _Columns(table[:, columns], colours)


def _read_pcd(path: Path) -> np.ndarray | _Columns:
    """Read PCD, keeping NaN rows for counting: ascii parsed here, binary and binary_compressed with open3d (colours too)."""
    import open3d as o3d

    fields, data_start = _pcd_header(path)
    declared = _check_pcd_sizes(path, fields, data_start)
    if fields[b"DATA"][0].lower() == b"ascii":
        return _read_pcd_ascii(path, fields, data_start, declared)

    def load() -> _Columns:
        # open3d reports failures as log warnings and returns an empty cloud.
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            cloud = o3d.io.read_point_cloud(str(path), format="pcd", remove_nan_points=False, remove_infinite_points=False)
        points = np.asarray(cloud.points, dtype=np.float64)
        colours = np.asarray(cloud.colors, dtype=np.float64) if cloud.has_colors() else None
        return _Columns(points, colours_to_uint8(colours) if colours is not None and len(colours) == len(points) else None)

    read = _guarded(_name(path), "PCD", load)
    if len(read.points) < declared:
        raise InputError(_name(path), f"cannot be decoded: header declares {declared} points, read {len(read.points)} (truncated or corrupt?)")
    return read


def _read_mesh_vertices(path: Path) -> np.ndarray:
    """Read OBJ/OFF/STL vertices with trimesh.

    STL stores every triangle's corners separately, so shared corners repeat;
    exact duplicates are merged so they do not bias subsampling.
    """
    # trimesh's parsed arrays take a few times the text (OBJ, OFF) or about the size (STL) of the file.
    check_mesh_file_budget(path)
    pts = _trimesh_vertices(path)
    if len(pts) == 0:
        # trimesh returns an empty scene, rather than raising, for some truncated files.
        raise InputError(_name(path), "no vertices could be read (empty, truncated or corrupt file)")
    if path.suffix.lower() == ".stl":
        pts = np.unique(pts, axis=0)
    return pts


def _check_las_header(path: Path) -> None:
    """Check the record counts of a LAS/LAZ public header against the file's size before laspy reads it.

    laspy loops over the header's count of variable-length records whatever the file holds: a
    count of four billion in a 10 KB file keeps it reading nothing for hours.

    Raises:
        InputError: not LAS, or a header whose counts cannot fit the file.
    """
    name = _name(path)
    size = _file_size(path)
    with path.open("rb") as fh:
        head = fh.read(375)
    if not head.startswith(b"LASF"):
        return  # laspy names it ("Invalid file signature")
    if len(head) < 104:
        raise InputError(name, "truncated LAS header")
    minor = head[25]
    header_size, _, n_vlrs = struct.unpack_from("<HII", head, 94)
    if header_size > size or n_vlrs * 54 > size - header_size:
        raise InputError(name, f"malformed LAS header: it declares {n_vlrs} variable-length records, the file cannot hold them")
    if minor >= 4 and header_size >= 247 and len(head) >= 247:
        start, n_evlrs = struct.unpack_from("<QI", head, 235)
        if n_evlrs and (start > size or n_evlrs * 60 > size - start):
            raise InputError(name, f"malformed LAS header: it declares {n_evlrs} extended records, the file cannot hold them")


def _read_las(path: Path) -> _Columns:
    """Read LAS/LAZ with the optional ``laspy`` (+ ``lazrs`` for LAZ) packages, and the units its CRS states.

    The header's point count is checked against the memory budget (and, for LAS, the file's
    size) before any point is read.

    Raises:
        InputError: laspy (or a LAZ backend) is missing, the file is corrupt, over the budget, or
            its CRS is geographic (x and y in degrees cannot be meshed).
    """
    suffix = path.suffix.lower()
    name, what = _name(path), suffix.lstrip(".").upper()
    try:
        import laspy
    except ImportError as exc:
        raise InputError(name, _LAS_HINT.format(suffix=suffix)) from exc

    def failure(exc: Exception) -> InputError:
        text = str(exc)
        if "backend" in text.lower():
            return InputError(name, _LAS_HINT.format(suffix=suffix).replace("laspy package", "lazrs backend"))
        if isinstance(exc, MemoryError) or "bad_alloc" in text:
            return InputError(name, f"not enough memory to read it as {what}")
        if isinstance(exc, laspy.errors.LaspyException) and text.strip():
            # laspy's own messages are written for users ("Invalid file signature ..."); others are not.
            return InputError(name, f"cannot be read as {what} ({_quote(text.strip().splitlines()[0], 100)})")
        return InputError(name, f"malformed {what} file")

    _check_las_header(path)
    try:
        with laspy.open(str(path)) as reader:
            header = reader.header
            count = int(header.point_count)
            record = int(header.point_format.size)
            offset = int(header.offset_to_point_data)
    except Exception as exc:  # noqa: BLE001 - laspy raises LaspyException, ValueError, OSError, struct.error...
        raise failure(exc) from exc
    # The raw records, then x, y and z as float64 twice (laspy's scaled arrays, our stacked copy).
    _check_budget(name, count * (record + 48), f"its {count} points")
    if suffix == ".las" and count * record > _file_size(path) - offset:
        raise InputError(name, f"truncated: header declares {count} points of {record} bytes, the file is too short to hold them")
    try:
        las = laspy.read(str(path))
        xyz = np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)]).astype(np.float64)
        dimensions = set(las.point_format.dimension_names)
        colours = colours_to_uint8(np.column_stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)])) if {"red", "green", "blue"} <= dimensions else None
    except Exception as exc:  # noqa: BLE001
        raise failure(exc) from exc
    try:
        units = las_units(las.header)
    except GeographicCRSError as exc:
        raise InputError(name, f"its header says {exc}: reproject it to a projected CRS (e.g. with PDAL) first") from exc
    except Exception:  # noqa: BLE001 - a malformed CRS record: the points are still good, and --units can say what the header could not
        units = None
    # x/y/z apply the header's scale and offset (the raw X/Y/Z are integers).
    return _Columns(xyz, colours, units)


def _points_from_array(arr: np.ndarray, name: str) -> np.ndarray:
    """Validate an array from ``.npy``/``.npz`` as (n, >=3) and keep x y z.

    Structured arrays with ``x``, ``y``, ``z`` fields are accepted too. A (3, N) or (4, N)
    array with N larger is refused with the hint to pass its transpose: read as given it would
    be 3 or 4 points of N values, and occrecon never guesses which the file meant.

    Raises:
        InputError: wrong shape or dtype.
    """
    if arr.dtype.names:
        if not {"x", "y", "z"} <= set(arr.dtype.names):
            fields = ", ".join(_quote(f, 20) for f in arr.dtype.names[:20])
            raise InputError(name, f"structured array without x, y, z fields (fields: {fields})")
        arr = np.stack([arr["x"].ravel(), arr["y"].ravel(), arr["z"].ravel()], axis=1)
    if arr.dtype.kind not in "fiub":
        raise InputError(name, f"expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[0] in (3, 4) and arr.shape[1] > arr.shape[0]:
        rows, cols = arr.shape
        raise InputError(
            name,
            f"array looks transposed: shape ({rows}, {cols}) reads as {rows} points of {cols} values; "
            f"pass its transpose, shape ({cols}, {rows}) (e.g. np.save(path, array.T))",
        )
    if arr.ndim != 2 or arr.shape[1] < 3:
        hint = " (a 3-D array is a voxel grid: use the voxels command)" if arr.ndim == 3 else ""
        if arr.ndim == 2 and arr.shape[0] == 3 and arr.shape[1] != 3:
            hint = " (transpose it to (N, 3))"
        raise InputError(name, f"expected an (N, 3) array, got shape {arr.shape}{hint}")
    with np.errstate(all="ignore"):  # float16/float128 extremes become inf here, dropped and counted later
        return np.asarray(arr[:, :3], dtype=np.float64)


def _read_npy_points(path: Path) -> np.ndarray:
    return _points_from_array(_load_npy(path, extra_bytes_per_item=8), _name(path))


def _read_npz_points(path: Path) -> np.ndarray:
    return _points_from_array(_load_npz_array(path, _NPZ_POINT_KEYS, extra_bytes_per_item=8), _name(path))


_POINT_READERS: dict[str, Callable[[Path], np.ndarray | _Columns]] = {
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
        InputError: no points, all non-finite, a single point, absurd magnitudes, or all identical.
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
    largest = float(np.abs(kept).max())
    if largest > MAX_COORDINATE:
        raise InputError(
            name,
            f"holds a coordinate of magnitude {largest:.3g}, beyond ±{MAX_COORDINATE:g}: not a measurement "
            "(a corrupt file, or units far too small); fix or rescale the file",
        )
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
    read = _guarded(_name(p), p.suffix.lstrip(".").upper(), lambda: reader(p))
    read = read if isinstance(read, _Columns) else _Columns(read)
    pts = np.asarray(read.points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        if pts.size:
            raise InputError(_name(p), f"malformed {p.suffix.lstrip('.').upper()} file (its vertices are not x y z triples)")
        pts = pts.reshape(0, 3)
    kept, dropped = _finite_rows(pts, _name(p))
    colours = read.colours
    if colours is not None and len(colours) == len(pts):
        colours = colours[np.isfinite(pts).all(axis=1)] if dropped else colours
    else:
        colours = None  # a reader's colours that do not match its points are dropped, never guessed at
    las = p.suffix.lower() in (".las", ".laz")
    return PointCloud(points=kept, dropped_nonfinite=dropped, source=str(p), units=read.units, up="z" if las else None, colours=colours)


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
            raise InputError(name, f"bad binvox header line '{_quote(line.strip(), 60)}' ({exc})") from exc
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
    expected = math.prod(dims)
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
    name = _name(path)
    with path.open("rb") as fh:
        head = fh.read(_MAX_BINVOX_HEADER_BYTES)
    dims, translate, scale, offset = _parse_binvox_header(head, name)
    # One byte per cell (a bool grid), checked before the run-length data is read or expanded.
    _check_budget(name, math.prod(dims), f"its {'x'.join(map(str, dims))} grid")
    _check_budget(name, _file_size(path), f"its {_human_bytes(_file_size(path))} of run-length data")
    raw = path.read_bytes()
    occ = _decode_binvox_rle(raw[offset:], dims, name)
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
    occ = _grid_from_array(_load_npy(path, extra_bytes_per_item=1), _name(path))
    return VoxelGrid(occ, np.zeros(3), float(max(occ.shape)), str(path), "index")


def _read_npz_voxels(path: Path) -> VoxelGrid:
    occ = _grid_from_array(_load_npz_array(path, _NPZ_VOXEL_KEYS, extra_bytes_per_item=1), _name(path))
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
    grid = _guarded(_name(p), p.suffix.lstrip(".").upper(), lambda: reader(p))
    if not grid.occupancy.any():
        raise InputError(_name(p), f"voxel grid {'x'.join(map(str, grid.occupancy.shape))} has no occupied voxel")
    return grid
