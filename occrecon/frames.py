"""The map between a model's canonical frame and the frame of the user's input.

Every reconstruction happens in the model's canonical frame (ONet/ConvONet
objects: bounding box centred, longest side 1, y up). The mesh is mapped back
with ``FrameTransform.to_input`` so that users get it where their data was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FrameTransform:
    """``input = canonical * scale + translation`` (a uniform scale and a shift).

    Attributes:
        scale: positive scalar, input units per canonical unit.
        translation: (3,) float64, where the canonical origin lies in the input frame.
    """

    scale: float = 1.0
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Map (n, 3) canonical coordinates into the input frame."""
        return np.asarray(points, dtype=np.float64) * self.scale + np.asarray(self.translation, dtype=np.float64)

    def to_canonical(self, points: np.ndarray) -> np.ndarray:
        """Map (n, 3) input coordinates into the canonical frame."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.translation, dtype=np.float64)) / self.scale

    def as_dict(self) -> dict:
        return {"scale": float(self.scale), "translation": [float(t) for t in np.asarray(self.translation)]}

    @staticmethod
    def identity() -> "FrameTransform":
        return FrameTransform(1.0, np.zeros(3))


UP_AXES: tuple[str, ...] = ("y", "z", "x", "-y", "-z", "-x")
"""The axes ``--up`` names; the models' frame has y up."""


def up_rotation(up: str) -> np.ndarray:
    """(3, 3) rotation taking the axis ``up`` points along (``"z"``, ``"-x"``...) to +y.

    A quarter or half turn, so a signed permutation: exact in floating point, and
    bounding boxes stay boxes. z-up goes to y-up by the turn about x that keeps x
    (``(x, y, z) -> (x, z, -y)``), as ShapeNet's z-up meshes are usually turned.
    """
    if up not in UP_AXES:
        raise ValueError(f"up must be one of {', '.join(UP_AXES)}, got {up!r}")
    sign = -1.0 if up.startswith("-") else 1.0
    axis = "xyz".index(up[-1])
    if axis == 1:  # y or -y: identity, or the half turn about x
        return np.diag([1.0, sign, sign])
    if axis == 2:  # z -> y: (x, y, z) -> (x, z, -y); -z -> y: (x, y, z) -> (x, -z, y)
        return np.array([[1.0, 0.0, 0.0], [0.0, 0.0, sign], [0.0, -sign, 0.0]])
    # x -> y: (x, y, z) -> (-y, x, z); -x -> y: (x, y, z) -> (y, -x, z)
    return np.array([[0.0, -sign, 0.0], [sign, 0.0, 0.0], [0.0, 0.0, 1.0]])


def turn_grid(occupancy: np.ndarray, lower: np.ndarray, cell: float, up: str) -> tuple[np.ndarray, np.ndarray]:
    """A grid of cubic cells whose ``up`` axis points up, turned y-up by :func:`up_rotation`: its cells, and its box's lower corner.

    ``lower``: (3,) the lower corner of the grid's box; ``cell``: the cells' edge. A signed
    permutation moves whole cells, so the turned grid holds exactly the same cells: axis
    ``i`` of the result is the axis the rotation takes there, reversed where it turns sign.
    """
    turn = up_rotation(up)
    source_axis = np.argmax(np.abs(turn), axis=1)
    sign = turn[np.arange(3), source_axis]
    cells = np.transpose(np.asarray(occupancy), source_axis)
    for axis in np.flatnonzero(sign < 0):
        cells = np.flip(cells, axis=int(axis))
    lower = np.asarray(lower, dtype=np.float64)
    upper = lower + np.asarray(np.shape(occupancy), dtype=np.float64) * cell
    turned_lower = np.where(sign > 0, lower[source_axis], -upper[source_axis])
    return np.ascontiguousarray(cells), turned_lower
