"""Helpers the batch tests share: running the CLI in-process, and a small cloud file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``occrecon ARGS`` in this process: (exit code, stdout, stderr)."""
    from occrecon.cli.main import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_cloud(path: Path, seed: int = 0) -> Path:
    """1,500 seeded points on the unit sphere as an XYZ file."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(1500, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    np.savetxt(path, points)
    return path
