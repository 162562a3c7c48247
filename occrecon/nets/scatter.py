"""Pure-PyTorch replacements for the two ``torch_scatter`` reductions ConvONet uses.

Both follow torch_scatter's conventions: the index has shape (B, 1, N) and is
broadcast over the channel axis, and cells that receive no point are 0.
"""

from __future__ import annotations

import torch


def _expanded(index: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Broadcast a (B, 1, N) cell index over the C channels of a (B, C, N) source."""
    return index.expand(src.size(0), src.size(1), src.size(2))


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Average point features per cell.

    Sums first and divides by the clamped count afterwards, which is the order
    of operations of ``torch_scatter.scatter_mean`` (so rounding matches).

    Args:
        src: (B, C, N) per-point features.
        index: (B, 1, N) int64 cell index of every point, in ``[0, dim_size)``.
        dim_size: number of cells K.

    Returns:
        (B, C, K) cell means; empty cells are 0.
    """
    batch_size, channels, _ = src.shape
    total = src.new_zeros(batch_size, channels, dim_size)
    total.scatter_add_(2, _expanded(index, src), src)
    count = src.new_zeros(batch_size, 1, dim_size)
    count.scatter_add_(2, index, torch.ones_like(index, dtype=src.dtype))
    count = count.clamp(min=1)
    return total / count


def scatter_max(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Maximum of point features per cell.

    Args:
        src: (B, C, N) per-point features.
        index: (B, 1, N) int64 cell index of every point, in ``[0, dim_size)``.
        dim_size: number of cells K.

    Returns:
        (B, C, K) cell maxima; empty cells are 0 (torch_scatter's fill value).
    """
    batch_size, channels, _ = src.shape
    out = src.new_zeros(batch_size, channels, dim_size)
    # include_self=False makes the zero fill irrelevant for occupied cells, so
    # all-negative features keep their true maximum.
    return out.scatter_reduce(2, _expanded(index, src), src, reduce="amax", include_self=False)


def pool_local(features: torch.Tensor, index: dict[str, torch.Tensor], dim_sizes: dict[str, int], reduce: str = "max") -> torch.Tensor:
    """Local pooling of ConvONet's PointNet: reduce per cell, gather back, sum over feature types.

    Args:
        features: (B, N, C) per-point features.
        index: feature type -> (B, 1, N) cell index; iterated in insertion order
            (the summation order of upstream).
        dim_sizes: feature type -> number of cells (must exceed every index).
        reduce: ``"max"`` (all published models) or ``"mean"``.

    Returns:
        (B, N, C) pooled features.
    """
    src = features.permute(0, 2, 1)
    reducer = scatter_max if reduce == "max" else scatter_mean
    pooled: torch.Tensor | int = 0
    for key, idx in index.items():
        cells = reducer(src, idx, dim_sizes[key])
        pooled = pooled + cells.gather(2, _expanded(idx, src))
    assert isinstance(pooled, torch.Tensor)
    return pooled.permute(0, 2, 1)
