"""ConvONet coordinate conventions: unit-cube normalisation, cell indices, crop coordinates.

Scatter (encoder) uses ``floor(u * R)`` so that cell i covers ``[i/R, (i+1)/R)``,
while sampling (decoder) uses ``grid_sample(align_corners=True)``. The half-cell
offset between the two is baked into the trained weights and must be kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PLANE_AXES: dict[str, tuple[int, int]] = {"xz": (0, 2), "xy": (0, 1), "yz": (1, 2)}
"""Which point axes span each canonical plane: (u, v) -> (W, H) of the feature map."""

FEATURE_ORDER: tuple[str, ...] = ("xz", "xy", "yz", "grid")
"""Order in which the encoder builds its cell indices (and sums local pooling)."""

PLANE_EPS = 10e-6
GRID_EPS = 10e-4


def _clamp_unit(u: torch.Tensor, eps: float) -> torch.Tensor:
    # Upstream writes 1 - eps into outliers >= 1 and 0 into negatives.
    u = torch.where(u >= 1, torch.full_like(u, 1 - eps), u)
    return torch.where(u < 0, torch.zeros_like(u), u)


def normalize_plane_coordinate(p: torch.Tensor, plane: str, padding: float = 0.1) -> torch.Tensor:
    """Project points onto a canonical plane and map the padded unit box to [0, 1).

    Args:
        p: (B, N, 3) points in the object frame (object in [-0.5, 0.5]^3).
        plane: ``"xz"``, ``"xy"`` or ``"yz"``.
        padding: box padding; the box is [-(1+padding)/2, (1+padding)/2].

    Returns:
        (B, N, 2) coordinates in [0, 1 - 1e-5].
    """
    a, b = PLANE_AXES[plane]
    return normalize_plane_axes(p[..., [a, b]], padding)


def normalize_plane_axes(p: torch.Tensor, padding: float = 0.1) -> torch.Tensor:
    """Every coordinate of ``p`` (any shape) normalised as a plane coordinate (eps 1e-5, clamped).

    Elementwise, so normalising all three axes once and then picking a plane's pair is
    :func:`normalize_plane_coordinate` to the last bit (the decoder samples its three planes so).
    """
    uv = p / (1 + padding + PLANE_EPS) + 0.5
    return _clamp_unit(uv, PLANE_EPS)


def normalize_grid_coordinate(p: torch.Tensor, padding: float = 0.1) -> torch.Tensor:
    """Map points in the padded unit box to [0, 1) for the 3D grid (eps 1e-3).

    Args:
        p: (B, N, 3) points.
        padding: box padding.

    Returns:
        (B, N, 3) coordinates in [0, 1 - 1e-3].
    """
    u = p / (1 + padding + GRID_EPS) + 0.5
    return _clamp_unit(u, GRID_EPS)


def normalize_coordinate(p: torch.Tensor, feature: str, padding: float = 0.1) -> torch.Tensor:
    """Dispatch to the plane or grid normalisation.

    Args:
        p: (B, N, 3) points.
        feature: ``"xz"``, ``"xy"``, ``"yz"`` or ``"grid"``.
        padding: box padding.

    Returns:
        (B, N, 2) or (B, N, 3) coordinates in [0, 1).
    """
    if feature == "grid":
        return normalize_grid_coordinate(p, padding)
    return normalize_plane_coordinate(p, feature, padding)


def coordinate_to_index(u: torch.Tensor, resolution: int) -> torch.Tensor:
    """Flatten normalised coordinates to cell indices.

    Planes use ``x + R * y``; the grid uses ``x + R * (y + R * z)``, so a
    reshaped (R, R, R) volume is indexed [z, y, x], which is the (D, H, W)
    layout ``grid_sample`` reads with an (x, y, z) grid.

    Args:
        u: (B, N, 2) or (B, N, 3) coordinates in [0, 1).
        resolution: R cells per axis.

    Returns:
        (B, 1, N) int64 indices.
    """
    cell = (u * resolution).long()
    if u.size(-1) == 2:
        index = cell[..., 0] + resolution * cell[..., 1]
    else:
        index = cell[..., 0] + resolution * (cell[..., 1] + resolution * cell[..., 2])
    return index[:, None, :]


def crop_normalize(p: torch.Tensor, lower: torch.Tensor | Sequence[float], upper: torch.Tensor | Sequence[float], feature: str) -> torch.Tensor:
    """Normalise points to an axis-aligned crop, as upstream's sliding window does (no clamping).

    Args:
        p: (..., 3) points in the scene frame.
        lower: (3,) crop lower corner.
        upper: (3,) crop upper corner.
        feature: ``"xz"``, ``"xy"``, ``"yz"`` or ``"grid"``.

    Returns:
        (..., 2) or (..., 3) coordinates, in [0, 1) for points inside the crop.
    """
    # The extent is formed in float64 and rounded once, like upstream's numpy
    # bounds applied to a float32 tensor.
    lower64 = torch.as_tensor(lower, dtype=torch.float64, device=p.device)
    upper64 = torch.as_tensor(upper, dtype=torch.float64, device=p.device)
    extent = (upper64 - lower64).to(p.dtype)
    u = (p - lower64.to(p.dtype)) / extent
    if feature == "grid":
        return u
    a, b = PLANE_AXES[feature]
    return u[..., [a, b]]


def crop_index(p: torch.Tensor, lower: torch.Tensor | Sequence[float], upper: torch.Tensor | Sequence[float], resolution: int, feature: str) -> torch.Tensor:
    """Cell index of points relative to an input crop (upstream ``coord2index``).

    Args:
        p: (N, 3) points, assumed inside the crop.
        lower: (3,) input-crop lower corner.
        upper: (3,) input-crop upper corner.
        resolution: cells per axis of the crop's feature volume.
        feature: feature type.

    Returns:
        (N,) int64 indices; callers add the batch/channel axes, (1, 1, N).
    """
    u = crop_normalize(p, lower, upper, feature)
    cell = torch.floor(u * resolution).long()
    if u.size(-1) == 2:
        return cell[:, 0] + resolution * cell[:, 1]
    return cell[:, 0] + resolution * (cell[:, 1] + resolution * cell[:, 2])
