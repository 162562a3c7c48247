"""Expanding the inputs of a batch call and planning where outputs go."""

from __future__ import annotations

import errno
import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from occrecon.errors import InputError


@dataclass(frozen=True)
class InputItem:
    """One requested input: a path, or a problem found while expanding the request."""

    path: Path
    problem: str | None = None


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a plain file")


def _stat_problem(path: Path, exc: OSError) -> str:
    """Why ``os.stat`` failed, in words."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (the link never reaches a file)"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.islink(path):
            return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
        return "file not found"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return f"cannot be read ({exc.strerror or type(exc).__name__})"


def check_regular_file(path: str | Path, *, allow_empty: bool = False) -> Path:
    """Check that ``path`` is a regular, readable, non-empty file, without ever reading it.

    The one check every input goes through (point clouds, images, masks, voxel grids, meshes
    to evaluate): a FIFO would block for ever, ``/dev/zero`` and ``/dev/urandom`` never end, a
    directory or a socket is not data; each is refused at once with one line.

    Args:
        path: the file.
        allow_empty: accept an empty file (``occrecon eval`` scores an empty prediction).

    Returns:
        ``path`` as a Path.

    Raises:
        InputError: missing, a symbolic link loop or a broken link, not a regular file, empty,
            or not readable.
    """
    p = Path(path)
    try:
        info = os.stat(p)
    except OSError as exc:
        raise InputError(p, _stat_problem(p, exc)) from exc
    except ValueError as exc:  # an embedded NUL byte
        raise InputError(p, "invalid file name") from exc
    if not stat.S_ISREG(info.st_mode):
        raise InputError(p, f"not a regular file: it is {_kind(info.st_mode)}")
    try:
        # O_NONBLOCK: should the name have been swapped for a FIFO since the stat, open returns at once.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InputError(p, _stat_problem(p, exc)) from exc
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise InputError(p, f"not a regular file: it is {_kind(info.st_mode)}")
    if info.st_size == 0 and not allow_empty:
        raise InputError(p, "file is empty")
    return p


def _has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def expand_inputs(requests: list[str | Path], suffixes: set[str], *, recursive: bool = False) -> list[InputItem]:
    """Turn files, folders and glob patterns into a sorted, de-duplicated input list.

    A folder contributes its files with a supported suffix (sorted by name); a
    glob its matches (``**`` crosses folders). Requests that match nothing are
    kept as items with a ``problem`` so that a batch can report them and go on.

    Args:
        requests: what the user typed.
        suffixes: lower-case suffixes with the dot, e.g. ``{".ply", ".xyz"}``.
        recursive: descend into sub-folders of folder requests.
    """
    items: list[InputItem] = []
    seen: set[Path] = set()

    def add(path: Path, problem: str | None = None) -> None:
        key: Path = path
        if problem is None:
            try:
                key = path.resolve()
            except (OSError, RuntimeError) as exc:  # a symbolic link loop: that input fails, not the batch
                problem = "symbolic link loop (the link never reaches a file)" if not isinstance(exc, OSError) or exc.errno == errno.ELOOP else _stat_problem(path, exc)
                key = path.absolute()
        if key in seen:
            return
        seen.add(key)
        items.append(InputItem(path, problem))

    def wanted(p: Path) -> bool:
        """A folder's entry to process: a file with a supported suffix, or a dangling or looping link that looks like one (reported)."""
        return p.suffix.lower() in suffixes and (p.is_file() or (p.is_symlink() and not p.exists()))

    for request in requests:
        text = str(request)
        path = Path(text)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            matches = sorted(p for p in path.glob(pattern) if wanted(p))
            if not matches:
                add(path, f"folder has no supported files ({', '.join(sorted(suffixes))})")
            for match in matches:
                add(match)
        elif _has_glob(text) and not path.exists():
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if os.path.isfile(m))
            matches = [m for m in matches if m.suffix.lower() in suffixes]
            if not matches:
                add(path, "pattern matches no supported file")
            for match in matches:
                add(match)
        else:
            add(path)
    return items


def parse_shard(spec: str | None, environ: dict[str, str] | None = None) -> tuple[int, int]:
    """``"K/N"`` → (K, N); with no spec, read SLURM job-array variables, else (0, 1).

    SLURM numbers array tasks from ``SLURM_ARRAY_TASK_MIN`` (often 0, sometimes 1),
    so the shard index is taken relative to it.
    """
    env = os.environ if environ is None else environ
    if spec is None:
        if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
            return 0, 1
        try:
            index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        except ValueError:
            raise ValueError("SLURM_ARRAY_TASK_ID, _MIN and _COUNT must be whole numbers; or give --shard K/N") from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(
                f"SLURM_ARRAY_TASK_ID {env['SLURM_ARRAY_TASK_ID']} (min {env.get('SLURM_ARRAY_TASK_MIN', '0')}) "
                f"is not a task of an array of SLURM_ARRAY_TASK_COUNT {env['SLURM_ARRAY_TASK_COUNT']}; or give --shard K/N"
            )
        return index, count
    try:
        k_text, n_text = spec.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard K/N needs N >= 1 and 0 <= K < N, got {spec!r}")
    return k, n


def select_shard(items: list, shard: tuple[int, int]) -> list:
    """Every N-th item starting at K (the list must already be in a stable order)."""
    k, n = shard
    return items[k::n]


def plan_output(
    input_path: Path,
    *,
    file_format: str,
    output: Path | None = None,
    output_dir: Path | None = None,
) -> Path:
    """Where the mesh of ``input_path`` goes: ``-o`` as given, else ``DIR/<stem>.<format>``."""
    if output is not None:
        return output
    return (output_dir or Path(".")) / f"{input_path.stem}.{file_format}"
