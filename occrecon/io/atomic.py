"""Atomic file writes: readers never see half a file, and interrupted writes leave none for long.

A file is written to a hidden temporary file beside it, ``.NAME.PID-HOST.XXXXXXXX.tmp``, then
renamed over ``NAME``. An exception (Ctrl-C, SIGTERM with :func:`install_sigterm_handler`, a
full disk) removes the temporary file. SIGKILL, a power cut or a node lost mid-write cannot run
any code, so the next write of the same ``NAME`` removes what such a run left behind
(:func:`remove_stale_temporaries`):

* a temporary file whose writer ran on this machine and whose process no longer exists is
  removed at once;
* any other (another machine's on a shared file system, one from an older occrecon without the
  process tag, one whose process id was reused) once it has not been modified for
  :data:`STALE_AFTER_S` seconds. The data is serialised before the temporary file is opened, so a
  live writer only spends the time of one ``write`` of bytes already in memory in it: its file is
  seconds old, never minutes, and a file untouched for 15 minutes belongs to no live writer.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: Seconds after its last modification from which a temporary file of ours is taken as abandoned
#: whoever wrote it (see the module docstring).
STALE_AFTER_S = 15 * 60.0

# mkstemp's random part: 8 characters of this alphabet (CPython's tempfile._RandomNameSequence).
_RANDOM = r"[a-z0-9_]{8}"
_TAGGED = re.compile(rf"^(\d+)-([0-9a-f]{{8}})\.{_RANDOM}$")
_UNTAGGED = re.compile(rf"^{_RANDOM}$")

# Folder -> {output name: [temporary names]}, listed once per folder and process: a batch writing
# 10,000 meshes into one folder lists it once, not 10,000 times.
_listed: dict[str, dict[str, list[str]]] = {}
_listed_lock = threading.Lock()


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]


def temporary_prefix(path: Path) -> str:
    """The name prefix of this process's temporary files for ``path``: ``.NAME.PID-HOST.``."""
    return f".{path.name}.{os.getpid()}-{_host_tag()}."


def _owner(temp_name: str, output_name: str) -> tuple[int, str] | None | bool:
    """Parse ``.OUTPUT.MIDDLE.tmp``: (pid, host tag) when tagged, None when an untagged temporary
    of ours, False when the name is not one of our temporaries of ``output_name``."""
    head, tail = f".{output_name}.", ".tmp"
    if not (temp_name.startswith(head) and temp_name.endswith(tail)) or len(temp_name) <= len(head) + len(tail):
        return False
    middle = temp_name[len(head) : -len(tail)]
    match = _TAGGED.match(middle)
    if match:
        return int(match.group(1)), match.group(2)
    return None if _UNTAGGED.match(middle) else False


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, and is someone else's
        return True
    return True


def _is_stale(temp: Path, owner: tuple[int, str] | None, now: float, max_age_s: float) -> bool:
    if owner is not None:
        pid, host = owner
        if host == _host_tag() and pid != os.getpid() and not _process_exists(pid):
            return True
        if host == _host_tag() and pid == os.getpid():
            return False  # ours, being written right now
    try:
        return now - temp.lstat().st_mtime >= max_age_s
    except OSError:
        return False


def _temporaries_in(folder: Path) -> dict[str, list[str]]:
    """Hidden ``*.tmp`` names in ``folder`` grouped by the output name they may belong to (listed once)."""
    key = os.fspath(folder.resolve() if folder.exists() else folder)
    with _listed_lock:
        cached = _listed.get(key)
        if cached is not None:
            return cached
        found: dict[str, list[str]] = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".") and name.endswith(".tmp"):
                        # The output name is what is left after dropping the tag and random parts.
                        stem = name[1:-4]
                        for _ in range(2):
                            stem = stem.rpartition(".")[0]
                            if stem:
                                found.setdefault(stem, []).append(name)
        except OSError:
            pass
        _listed[key] = found
        return found


def remove_stale_temporaries(path: str | Path, *, max_age_s: float = STALE_AFTER_S, now: float | None = None) -> list[Path]:
    """Remove the temporary files an interrupted earlier write of ``path`` left beside it.

    Only the names :func:`write_bytes_atomic` makes for exactly this ``path`` are looked at
    (``.NAME.PID-HOST.XXXXXXXX.tmp``, or ``.NAME.XXXXXXXX.tmp`` from before the tag), and only
    stale ones removed (see the module docstring). The folder is listed once per process.

    Returns:
        The files removed.
    """
    path = Path(path)
    now = time.time() if now is None else now
    candidates = _temporaries_in(path.parent).get(path.name, [])
    removed = []
    for name in list(candidates):
        owner = _owner(name, path.name)
        if owner is False:
            continue
        temp = path.parent / name
        if _is_stale(temp, owner, now, max_age_s):
            try:
                temp.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                continue
            removed.append(temp)
            candidates.remove(name)
    return removed


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    The file gets the permissions of a plain ``open`` under the current umask
    (``mkstemp`` alone would leave it 0600). The folder must exist. Stale temporary files of
    ``path`` from interrupted earlier runs are removed first (:func:`remove_stale_temporaries`).

    Raises:
        OSError: the folder cannot be written (read-only, full, missing); nothing is left behind.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        try:
            _write_all(fd, data)
            os.chmod(tmp, 0o666 & ~_umask())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


class Terminated(KeyboardInterrupt):
    """SIGTERM (or another signal routed by :func:`install_sigterm_handler`) arrived.

    A ``KeyboardInterrupt``, so that everything that cleans up after Ctrl-C (temporary files,
    progress bars, ``finally`` blocks) does so after a SIGTERM too; ``signum`` lets the caller
    exit with the conventional ``128 + signum`` (143 for SIGTERM).
    """

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def install_sigterm_handler() -> Any:
    """Make SIGTERM raise :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread.

    SLURM, ``timeout``, ``kill`` and container runtimes stop a job with SIGTERM, whose default
    action ends the process without running any cleanup, so a write in progress leaves its
    temporary file. With this handler a SIGTERM unwinds like Ctrl-C: :func:`write_bytes_atomic`
    removes its temporary file and the CLI reports the interruption.

    Call it once, early, from the main thread (``occrecon.cli.main``); elsewhere it does nothing.

    Returns:
        The previous handler (None when not installed: not the main thread, or no SIGTERM).
    """
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


__all__ = [
    "STALE_AFTER_S",
    "Terminated",
    "install_sigterm_handler",
    "remove_stale_temporaries",
    "temporary_prefix",
    "write_bytes_atomic",
]
