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
