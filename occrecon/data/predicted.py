"""Completion items whose input is a point-map network's prediction (stage 2 of the depth-first image model).

The completion network first learns from partial clouds unprojected from true depth
(:mod:`occrecon.data.partial`); at test time it gets the point-map network's
prediction instead, which is smoother, bends at depth jumps and is right only up to
scale and shift. Stage 2 fine-tunes it on the predictions themselves: each item's
input becomes the predicted cloud (normalised as the image model normalises it), and
its labelled queries are carried into that cloud's frame by the similarity that best
maps the true visible surface onto the prediction, pixel by pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occrecon import camera as cam


@dataclass(frozen=True)
class Alignment:
    """``predicted ≈ scale * clean + shift``: from the clean visible surface's frame to the prediction's.

    Attributes:
        scale: the least-squares scale (clamped to 0.2-5, as the point-map loss clamps it).
        shift: (3,) the least-squares shift.
        residual: mean L1 distance left after the map, in the prediction's frame (its cloud's longest side is 1).
        n_pixels: pixels both the prediction and the true depth cover.
    """

    scale: float
    shift: np.ndarray
    residual: float
    n_pixels: int

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(points, dtype=np.float64) + self.shift


def align_to_prediction(predicted: np.ndarray, clean: np.ndarray) -> Alignment:
    """The scale and shift that carry ``clean`` (n, 3) points onto ``predicted`` (n, 3), least squares.

    Raises:
        ValueError: fewer than 16 corresponding pixels.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    clean = np.asarray(clean, dtype=np.float64)
    if len(clean) < 16:
        raise ValueError(f"the prediction and the true depth share {len(clean)} pixels")
    mean_p, mean_c = predicted.mean(0), clean.mean(0)
    dc, dp = clean - mean_c, predicted - mean_p
    scale = float(np.clip((dc * dp).sum() / max((dc * dc).sum(), 1e-12), 0.2, 5.0))
    shift = mean_p - scale * mean_c
    residual = float(np.abs(scale * clean + shift - predicted).mean())
    return Alignment(scale, shift, residual, len(clean))


def clean_frame(depth: np.ndarray, K: np.ndarray) -> cam.ViewerFrame:
    """The viewer-centred frame of a true depth map's visible surface (the point-map targets' frame)."""
    depth = np.asarray(depth, dtype=np.float64)
    camera = cam.Camera.from_matrix(np.asarray(K, dtype=np.float64), depth.shape[1], depth.shape[0])
    return cam.ViewerFrame.of_points(cam.unproject(depth, depth > 0, camera))


def queries_in_prediction(points: np.ndarray, item_frame: cam.ViewerFrame, clean: cam.ViewerFrame, alignment: Alignment) -> np.ndarray:
    """An item's query ``points`` (its own output frame) in the predicted cloud's frame, float32."""
    return alignment.apply(clean.from_camera(item_frame.to_camera(points))).astype(np.float32)


def even_pick(n_available: int, n_points: int) -> np.ndarray:
    """``n_points`` indices spread evenly over ``n_available`` (each once when there are few), as the image model picks."""
    return np.round(np.linspace(0, n_available - 1, n_points)).astype(np.int64)
