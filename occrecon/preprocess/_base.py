"""The result type shared by every preprocessing path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from occrecon.frames import FrameTransform


@dataclass
class PreparedInput:
    """A network input ready for a model, plus what is needed to use its output.

    Attributes:
        tensor: the network input WITHOUT a batch dimension:
            image (3, S, S) float32 in [0, 1] composited on white;
            points (N, 3) float32 in the canonical frame;
            voxels (R, R, R) float32 0/1 indexed [x, y, z].
        transform: maps the model's canonical frame back to the input's frame
            (identity for images, which have no 3-D frame).
        preview: what the network saw, for saving or display: a PIL RGB image,
            (N, 3) float64 canonical points, or the (R, R, R) bool grid.
        notes: user-facing remarks about what preprocessing did.
        samples: occupancy the input states exactly, where it does: (n, 3) float32 canonical
            points and (n,) bool inside (a centre-rule grid's cell centres), for
            :func:`~occrecon.fitting.fit_to_occupancy`; None for every other input.
    """

    tensor: torch.Tensor
    transform: FrameTransform
    preview: Any
    notes: list[str] = field(default_factory=list)
    samples: tuple[np.ndarray, np.ndarray] | None = None
