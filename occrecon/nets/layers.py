"""Building blocks shared by the ONet and ConvONet networks.

Parameter names mirror the upstream modules exactly (``fc_0``, ``fc_1``,
``shortcut``, ``conv_gamma``...), because the published checkpoints are loaded
into these modules with ``strict=True``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResnetBlockFC(nn.Module):
    """Pre-activation residual MLP block: ``x' = s(x) + fc_1(relu(fc_0(relu(x))))``.

    Args:
        size_in: input feature size.
        size_out: output feature size (default ``size_in``).
        size_h: hidden size (default ``min(size_in, size_out)``).
    """

    def __init__(self, size_in: int, size_out: int | None = None, size_h: int | None = None) -> None:
        super().__init__()
        size_out = size_in if size_out is None else size_out
        size_h = min(size_in, size_out) if size_h is None else size_h
        self.fc_0 = nn.Linear(size_in, size_h)
        self.fc_1 = nn.Linear(size_h, size_out)
        # A bias-free projection only exists when the widths differ; upstream
        # stores no key for the identity case.
        self.shortcut = nn.Linear(size_in, size_out, bias=False) if size_in != size_out else None
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (..., size_in) features.

        Returns:
            (..., size_out) features.
        """
        hidden = self.fc_0(F.relu(x))
        dx = self.fc_1(F.relu(hidden))
        skip = x if self.shortcut is None else self.shortcut(x)
        return skip + dx


class CBatchNorm1d(nn.Module):
    """Conditional batch norm: ``gamma(c) * BN(x) + beta(c)`` with a non-affine BN.

    The current variant maps ``c`` with 1x1 ``Conv1d`` layers (``conv_gamma`` /
    ``conv_beta``, weights ``(f_dim, c_dim, 1)``); the legacy variant of the
    paper checkpoint uses ``Linear`` layers (``fc_gamma`` / ``fc_beta``,
    weights ``(f_dim, c_dim)``). Both compute the same function.

    Args:
        c_dim: conditioning size.
        f_dim: feature channels.
        legacy: build the ``fc_gamma``/``fc_beta`` layout.
    """

    def __init__(self, c_dim: int, f_dim: int, legacy: bool = False) -> None:
        super().__init__()
        self.c_dim = c_dim
        self.f_dim = f_dim
        self.legacy = legacy
        if legacy:
            self.fc_gamma = nn.Linear(c_dim, f_dim)
            self.fc_beta = nn.Linear(c_dim, f_dim)
            gamma, beta = self.fc_gamma, self.fc_beta
        else:
            self.conv_gamma = nn.Conv1d(c_dim, f_dim, 1)
            self.conv_beta = nn.Conv1d(c_dim, f_dim, 1)
            gamma, beta = self.conv_gamma, self.conv_beta
        self.bn = nn.BatchNorm1d(f_dim, affine=False)
        # Identity affine at initialisation, as upstream trains from it.
        nn.init.zeros_(gamma.weight)
        nn.init.zeros_(beta.weight)
        nn.init.ones_(gamma.bias)
        nn.init.zeros_(beta.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` and modulate it with ``c``.

        Args:
            x: (B, f_dim, T) features.
            c: (B, c_dim) conditioning (or (B, c_dim, T) for the current variant).

        Returns:
            (B, f_dim, T) features.
        """
        if self.legacy:
            batch_size = x.size(0)
            gamma = self.fc_gamma(c).view(batch_size, self.f_dim, 1)
            beta = self.fc_beta(c).view(batch_size, self.f_dim, 1)
        else:
            if c.dim() == 2:
                c = c.unsqueeze(2)
            gamma = self.conv_gamma(c)
            beta = self.conv_beta(c)
        return gamma * self.bn(x) + beta


class CResnetBlockConv1d(nn.Module):
    """Residual block ``x + fc_1(relu(bn_1(fc_0(relu(bn_0(x, c))), c)))`` on (B, C, T).

    Args:
        c_dim: conditioning size.
        size: feature channels (input = hidden = output, as in every checkpoint).
        legacy: use the legacy CBN parameter layout.
    """

    def __init__(self, c_dim: int, size: int, legacy: bool = False) -> None:
        super().__init__()
        self.bn_0 = CBatchNorm1d(c_dim, size, legacy=legacy)
        self.bn_1 = CBatchNorm1d(c_dim, size, legacy=legacy)
        self.fc_0 = nn.Conv1d(size, size, 1)
        self.fc_1 = nn.Conv1d(size, size, 1)
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (B, size, T) features.
            c: (B, c_dim) conditioning.

        Returns:
            (B, size, T) features.
        """
        hidden = self.fc_0(F.relu(self.bn_0(x, c)))
        dx = self.fc_1(F.relu(self.bn_1(hidden, c)))
        return x + dx
