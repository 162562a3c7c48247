"""Claims on outputs, so that two processes writing the same outputs share the work instead of doing it twice.

A process that starts an input first creates ``.<output name>.claim`` beside the output,
atomically (``O_CREAT | O_EXCL``), holding its host and process id; it removes the claim
when the input is finished, failed or interrupted. Another process that finds the claim
skips that input ("being made by another process"). A claim whose owner is gone is
stale and taken over:

* on the same host, when its process no longer exists (``kill -9``, a crash);
* from another host (a cluster's shared file system), when it has not been refreshed
  for :data:`STALE_AFTER_S`: an owner refreshes its claim while it works (:meth:`Claim.refresh`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

STALE_AFTER_S = 600.0
"""A claim from another host not refreshed for this long belongs to a process that is gone."""

REFRESH_EVERY_S = 30.0


def claim_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.claim")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


@dataclass
class Claim:
    """This process's claim on one output (remove it with :meth:`release`)."""

    path: Path
    refreshed: float

    def refresh(self) -> None:
        """Tell other hosts the work goes on (at most every :data:`REFRESH_EVERY_S`)."""
        now = time.monotonic()
        if now - self.refreshed >= REFRESH_EVERY_S:
            self.refreshed = now
            try:
                os.utime(self.path)
            except OSError:
                pass  # the claim is advisory; losing it only risks duplicated work

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class ClaimedElsewhere:
    """Who holds a claim: host and process id."""

    host: str
    pid: int

    def __str__(self) -> str:
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"being made by another process (pid {self.pid}{where})"


def _holder(path: Path) -> ClaimedElsewhere | None:
    """The live holder of an existing claim, or None when it is stale (and then removed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        holder = ClaimedElsewhere(str(data["host"]), int(data["pid"]))
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        holder, age = None, STALE_AFTER_S + 1  # unreadable: written by a process killed mid-write
    if holder is not None and (holder.pid == os.getpid() and holder.host == socket.gethostname()):
        return None
    if holder is not None and holder.host == socket.gethostname():
        stale = not _alive(holder.pid)
    else:
        stale = age > STALE_AFTER_S
    if stale:
        path.unlink(missing_ok=True)
        return None
    return holder


def claim(output: Path) -> Claim | ClaimedElsewhere:
    """Claim ``output`` for this process, or say who holds it.

    The folder must exist. A claim that cannot be written (a read-only folder) is not an
    error: the output's own write will report that.
    """
    path = claim_path(output)
    for _ in range(2):  # a stale claim is removed once, then claimed afresh
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None:
                return holder
            continue
        except OSError:
            return Claim(path, time.monotonic())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"host": socket.gethostname(), "pid": os.getpid()}, handle)
        return Claim(path, time.monotonic())
    holder = _holder(path)
    return holder if holder is not None else Claim(path, time.monotonic())
