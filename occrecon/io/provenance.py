"""What made an output: a small record beside each mesh, so that a rerun skips only the same work.

Each mesh ``NAME.obj`` a batch writes gets ``.NAME.obj.occrecon.json`` beside it, written just
before the mesh, holding:

* the input: its path, size, modification time (ns) and a BLAKE2b hash of its bytes (and of the
  ``--mask`` image, where one was given);
* the command (``image``, ``points``, ``voxels``), the model asked for and its revision, and the
  model that made the mesh (the scene model, where a cloud turned out to be a scene);
* every option that changes the mesh, as the user gave it (None: the model's default, which the
  model's name and revision fix).

A rerun compares the record with what it is asked to do, before any model is loaded:
size and modification time first (no read), the hash only where they differ, so a rerun over
thousands of finished outputs costs a ``stat`` and a small JSON read per output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from occrecon.io.atomic import write_bytes_atomic

RECORD_VERSION = 1
_CHUNK = 1 << 20

#: Options that do not change the mesh (how many decoder rows go through at once), left out of the record.
NOT_RECORDED = frozenset({"points_batch_size"})


def record_path(output: Path) -> Path:
    """``.NAME.obj.occrecon.json`` beside ``NAME.obj``."""
    return output.with_name(f".{output.name}.occrecon.json")


def file_hash(path: Path) -> str:
    """BLAKE2b (128 bits) of the file's bytes, read in 1 MiB chunks (about 1 GB/s on one core)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(path: Path) -> dict[str, Any]:
    """Path, size, modification time and hash of an input file."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "blake2b": file_hash(path)}


def same_file(recorded: dict[str, Any] | None, path: Path | None) -> bool:
    """Whether ``path`` holds the bytes ``recorded`` describes: size and time first, the hash only when they do not settle it."""
    if recorded is None or path is None:
        return recorded is None and path is None
    try:
        stat = path.stat()
    except OSError:
        return False
    if stat.st_size != recorded.get("size"):
        return False
    if stat.st_mtime_ns == recorded.get("mtime_ns") and str(path.resolve()) == recorded.get("path"):
        return True
    try:
        return file_hash(path) == recorded.get("blake2b")
    except OSError:
        return False


@dataclass(frozen=True)
class Request:
    """What a batch is asked to make, known before any model is loaded.

    Attributes:
        kind: ``image``, ``points`` or ``voxels``.
        model: the model asked for (a registered name, Hub id or folder), None for the default one.
        revision: the Hub revision asked for.
        options: the mesh-changing options as the user gave them (None: the model's default).
        mask: the ``--mask`` image, where one was given.
    """

    kind: str
    model: str
    revision: str | None
    options: dict[str, Any]
    mask: Path | None = None

    @classmethod
    def of(cls, kind: str, model: str, revision: str | None, options: Any, mask: Path | None = None) -> "Request":
        """From a :class:`~occrecon.options.ReconstructOptions` (or any dataclass of settings)."""
        from dataclasses import asdict

        recorded = {key: value for key, value in asdict(options).items() if key not in NOT_RECORDED}
        return cls(kind, _model_key(model), revision, json.loads(json.dumps(recorded, default=str)), mask)


def _model_key(model: str) -> str:
    """A model folder by its absolute path (so that ``./m`` and ``m`` agree); a name as given."""
    try:
        folder = Path(model).expanduser()
        if folder.is_dir():
            return str(folder.resolve())
    except OSError:
        pass
    return model


@dataclass
class Verdict:
    """How an existing output relates to a request: ``same`` (skip it), or why it is another one."""

    same: bool
    reason: str = ""
    differences: list[str] = field(default_factory=list)


def read_record(output: Path) -> dict[str, Any] | None:
    """The record of ``output``; None when there is none or it cannot be read."""
    try:
        data = json.loads(record_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == RECORD_VERSION else None


def compare(output: Path, input_path: Path, request: Request) -> Verdict:
    """Whether the existing ``output`` was made from ``input_path`` as ``request`` asks."""
    record = read_record(output)
    if record is None:
        return Verdict(False, f"no record of what made it (no {record_path(output).name} beside it)")
    if not same_file(record.get("input"), input_path):
        made_from = (record.get("input") or {}).get("path", "another file")
        return Verdict(False, f"made from {made_from}, another input")
    differences = []
    if record.get("kind") != request.kind:
        differences.append(f"command {record.get('kind')} (now {request.kind})")
    asked = record.get("model") or {}
    if asked.get("requested") != request.model or asked.get("revision") != request.revision:
        was = asked.get("requested") or "?"
        was += f"@{asked['revision']}" if asked.get("revision") else ""
        now = request.model + (f"@{request.revision}" if request.revision else "")
        differences.append(f"model {was} (now {now})")
    before = record.get("options") or {}
    for key in sorted(set(before) | set(request.options)):
        if before.get(key) != request.options.get(key):
            differences.append(f"{key} {_shown(before.get(key))} (now {_shown(request.options.get(key))})")
    if not same_file(record.get("mask"), request.mask):
        differences.append("another --mask")
    if differences:
        return Verdict(False, "made with other settings", differences)
    return Verdict(True)


def _shown(value: Any) -> str:
    return "the model's default" if value is None else str(value)


def write_record(output: Path, input_path: Path, request: Request, made_by: tuple[str, str | None], described: dict[str, Any] | None = None) -> Path:
    """Write the record of ``output`` atomically (before the mesh itself: a mesh on disk always has its record).

    ``described`` is :func:`describe_file` of the input taken before it was read, so that an input
    changed while it was reconstructed is not taken for the one that was.
    """
    data = {
        "version": RECORD_VERSION,
        "kind": request.kind,
        "input": described or describe_file(input_path),
        "mask": None if request.mask is None else describe_file(request.mask),
        "model": {"requested": request.model, "revision": request.revision, "made_by": made_by[0], "made_by_revision": made_by[1]},
        "options": request.options,
    }
    return write_bytes_atomic(record_path(output), (json.dumps(data, indent=1) + "\n").encode("utf-8"))


__all__ = ["NOT_RECORDED", "Request", "Verdict", "compare", "describe_file", "file_hash", "read_record", "record_path", "same_file", "write_record"]
