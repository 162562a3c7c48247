"""The two U-Nets ConvONet runs on its feature planes and grids.

``UNet2D`` follows jaxony/unet-pytorch (keys ``down_convs.*``, ``up_convs.*``,
``conv_final``); ``UNet3D`` follows wolny/pytorch-3dunet with 'gcr' layers
(keys ``encoders.*.basic_module.SingleConv{1,2}.{groupnorm,conv}``,
``decoders.*``, ``final_conv``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DownConv2d(nn.Module):
    """Two 3x3 conv + ReLU, then an optional 2x2 max pool.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        pooling: pool after the convolutions (all levels but the deepest).
    """

    def __init__(self, in_channels: int, out_channels: int, pooling: bool) -> None:
        super().__init__()
        self.pooling = pooling
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (pooled output, pre-pool skip features)."""
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        skip = x
        if self.pooling:
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        return x, skip


class UpConv2d(nn.Module):
    """Transposed-conv upsampling, merge with the skip, two 3x3 conv + ReLU.

    Args:
        in_channels: channels coming from the deeper level.
        out_channels: output channels (= skip channels).
        merge_mode: ``"concat"`` (all checkpoints) or ``"add"``.
    """

    def __init__(self, in_channels: int, out_channels: int, merge_mode: str = "concat") -> None:
        super().__init__()
        self.merge_mode = merge_mode
        self.upconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        merged = 2 * out_channels if merge_mode == "concat" else out_channels
        self.conv1 = nn.Conv2d(merged, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` (B, in, H/2, W/2) and fuse it with ``skip`` (B, out, H, W)."""
        up = self.upconv(x)
        # Upstream concatenates (upsampled, skip) in this order.
        x = torch.cat((up, skip), 1) if self.merge_mode == "concat" else up + skip
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UNet2D(nn.Module):
    """2D U-Net with ``depth`` levels and ``start_filts * 2**i`` channels.

    Input side lengths must be divisible by ``2**(depth-1)``.

    Args:
        num_classes: output channels.
        in_channels: input channels.
        depth: number of levels (4 for 64^2 planes, 5 for 128^2).
        start_filts: channels of the first level.
        up_mode: only ``"transpose"`` (what every checkpoint uses).
        merge_mode: ``"concat"`` or ``"add"``.
    """

    def __init__(self, num_classes: int, in_channels: int = 32, depth: int = 4, start_filts: int = 32,
                 up_mode: str = "transpose", merge_mode: str = "concat") -> None:
        super().__init__()
        if up_mode != "transpose":
            raise ValueError(f"only up_mode='transpose' is supported, got {up_mode!r}")
        if merge_mode not in ("concat", "add"):
            raise ValueError(f"merge_mode must be 'concat' or 'add', got {merge_mode!r}")
        widths = [start_filts * 2**i for i in range(depth)]
        self.down_convs = nn.ModuleList(
            DownConv2d(in_channels if i == 0 else widths[i - 1], widths[i], pooling=i < depth - 1)
            for i in range(depth)
        )
        self.up_convs = nn.ModuleList(
            UpConv2d(widths[i], widths[i - 1], merge_mode=merge_mode) for i in range(depth - 1, 0, -1)
        )
        self.conv_final = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in_channels, H, W) to (B, num_classes, H, W)."""
        skips = []
        for down in self.down_convs:
            x, skip = down(x)
            skips.append(skip)
        for i, up in enumerate(self.up_convs):
            x = up(skips[-(i + 2)], x)
        return self.conv_final(x)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` whose CPU inference always runs oneDNN's kernel.

    PyTorch sends a batch-1 float convolution with a kernel at most 3 wide to its
    native kernel when N·C·D·H ≤ 20480, a threshold tuned for 2-D convolutions:
    on the scene U-Net's 20³ and 10³ levels that kernel took 3× oneDNN's time, and
    the whole U-Net runs in 0.80× the time with oneDNN throughout
    (``benchmarks/conv_kernels.py``). Same weights, same keys; training and other
    devices take the usual path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled() and torch.backends.mkldnn.is_available() and self.padding_mode == "zeros":
            return torch.ops.aten.mkldnn_convolution(x.contiguous(), self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
        return super().forward(x)


class SingleConv3d(nn.Sequential):
    """GroupNorm -> Conv3d (no bias) -> ReLU, named ``groupnorm``, ``conv``, ``ReLU``.

    Args:
        in_channels: input channels (the norm runs on them, before the conv).
        out_channels: output channels.
        num_groups: GroupNorm groups; 1 when there are fewer channels than groups.
    """

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 8) -> None:
        super().__init__()
        groups = 1 if in_channels < num_groups else num_groups
        self.add_module("groupnorm", nn.GroupNorm(groups, in_channels))
        self.add_module("conv", Conv3d(in_channels, out_channels, 3, padding=1, bias=False))
        self.add_module("ReLU", nn.ReLU(inplace=True))


class DoubleConv3d(nn.Sequential):
    """Two :class:`SingleConv3d` layers (``SingleConv1``, ``SingleConv2``).

    On the encoder path the first conv widens to ``max(out // 2, in)``; on the
    decoder path it goes straight to ``out``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        encoder: encoder-path channel rule.
        num_groups: GroupNorm groups.
    """

    def __init__(self, in_channels: int, out_channels: int, encoder: bool, num_groups: int = 8) -> None:
        super().__init__()
        mid = max(out_channels // 2, in_channels) if encoder else out_channels
        self.add_module("SingleConv1", SingleConv3d(in_channels, mid, num_groups))
        self.add_module("SingleConv2", SingleConv3d(mid, out_channels, num_groups))


class Encoder3d(nn.Module):
    """Optional 2x max pool followed by a :class:`DoubleConv3d` (``basic_module``)."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool, num_groups: int = 8) -> None:
        super().__init__()
        self.pool = pool
        self.basic_module = DoubleConv3d(in_channels, out_channels, encoder=True, num_groups=num_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in, D, H, W) to (B, out, D', H', W')."""
        if self.pool:
            x = F.max_pool3d(x, kernel_size=2)
        return self.basic_module(x)


class Decoder3d(nn.Module):
    """Nearest upsampling to the skip's size, concat (skip first), :class:`DoubleConv3d`."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 8) -> None:
        super().__init__()
        self.basic_module = DoubleConv3d(in_channels, out_channels, encoder=False, num_groups=num_groups)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Fuse deeper features ``x`` into ``skip`` (B, C_skip, D, H, W)."""
        x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        return self.basic_module(torch.cat((skip, x), dim=1))


class UNet3D(nn.Module):
    """3D U-Net with ``num_levels`` levels of ``f_maps * 2**k`` channels, 'gcr' layers.

    Upstream also builds a Sigmoid that is never applied (and has no
    parameters), so it is left out.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        f_maps: channels of the first level.
        num_levels: 3 (32^3 grids) or 4 (64^3 grids and crops).
        num_groups: GroupNorm groups.
    """

    def __init__(self, in_channels: int = 32, out_channels: int = 32, f_maps: int = 32, num_levels: int = 4,
                 num_groups: int = 8) -> None:
        super().__init__()
        widths = [f_maps * 2**k for k in range(num_levels)]
        self.encoders = nn.ModuleList(
            Encoder3d(in_channels if k == 0 else widths[k - 1], widths[k], pool=k > 0, num_groups=num_groups)
            for k in range(num_levels)
        )
        rev = widths[::-1]
        self.decoders = nn.ModuleList(
            Decoder3d(rev[k] + rev[k + 1], rev[k + 1], num_groups=num_groups) for k in range(num_levels - 1)
        )
        self.final_conv = nn.Conv3d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in_channels, D, H, W) to (B, out_channels, D, H, W)."""
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.insert(0, x)
        for decoder, skip in zip(self.decoders, skips[1:]):
            x = decoder(skip, x)
        return self.final_conv(x)
