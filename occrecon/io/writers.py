"""Writing inputs (voxel grids, point clouds) in the formats occrecon reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from occrecon.io.atomic import write_bytes_atomic


def write_binvox(path: str | Path, occupancy: np.ndarray, translate=(0.0, 0.0, 0.0), scale: float = 1.0) -> Path:
    """Write a bool grid indexed ``[x, y, z]`` as ``.binvox`` (run-length encoded, y fastest then z then x).

    World position of voxel ``(i, j, k)``'s centre: ``translate + (index + 0.5) / dim * scale``.
    """
    grid = np.asarray(occupancy, dtype=bool)
    if grid.ndim != 3 or len(set(grid.shape)) != 1:
        raise ValueError(f"binvox needs a cubic 3-D grid, got shape {grid.shape}")
    # binvox's storage order is x slowest, then z, then y fastest.
    flat = grid.transpose(0, 2, 1).reshape(-1).astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(flat)]]))
    runs = []
    for start, length in zip(starts, lengths):
        value = flat[start]
        while length > 0:
            chunk = min(int(length), 255)
            runs.extend((value, chunk))
            length -= chunk
    dim = grid.shape[0]
    header = (
        f"#binvox 1\ndim {dim} {dim} {dim}\n"
        f"translate {translate[0]:.6f} {translate[1]:.6f} {translate[2]:.6f}\nscale {scale:.6f}\ndata\n"
    )
    return write_bytes_atomic(Path(path), header.encode() + bytes(np.asarray(runs, dtype=np.uint8)))
