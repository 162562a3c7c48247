"""Expanding the inputs of a batch call and planning where outputs go."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class InputItem:
    """One requested input: a path, or a problem found while expanding the request."""

    path: Path
    problem: str | None = None


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
        key = path.resolve() if problem is None else path
        if key in seen:
            return
        seen.add(key)
        items.append(InputItem(path, problem))

    for request in requests:
        text = str(request)
        path = Path(text)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            matches = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in suffixes)
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
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            return index, int(env["SLURM_ARRAY_TASK_COUNT"])
        return 0, 1
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
