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
