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


SLAB_ELEMENTS = 1 << 26
"""A decoder level whose merged input holds more float32 values than this (256 MiB) runs in slabs at eval time."""


class Decoder3d(nn.Module):
    """Nearest upsampling to the skip's size, concat (skip first), :class:`DoubleConv3d`.

    At eval time a large level runs its first convolution in slabs along depth
    (:meth:`forward_in_slabs`, a ``fast_eval`` path): the merged input and its
    normalised copy never exist whole. On the published crop model's 160³ grid they
    are 1.5 GiB each, and this level set the run's peak memory.
    """

    fast_eval = True

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 8) -> None:
        super().__init__()
        self.basic_module = DoubleConv3d(in_channels, out_channels, encoder=False, num_groups=num_groups)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Fuse deeper features ``x`` into ``skip`` (B, C_skip, D, H, W)."""
        merged_size = skip.shape[0] * (skip.shape[1] + x.shape[1]) * skip[0, 0].numel()
        if self.fast_eval and not torch.is_grad_enabled() and merged_size > SLAB_ELEMENTS:
            return self.forward_in_slabs(skip, x)
        x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        return self.basic_module(torch.cat((skip, x), dim=1))

    def forward_in_slabs(self, skip: torch.Tensor, x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """:meth:`forward` with the first convolution run ``rows`` depth rows at a time.

        The group norm's statistics are gathered first, per slab and summed in float64,
        so the result differs from the whole-volume path only in float32 rounding.
        """
        first = self.basic_module.SingleConv1
        batch, skip_channels, depth, height, width = skip.shape
        channels = skip_channels + x.shape[1]
        rows = rows or max(1, SLAB_ELEMENTS // 4 // (batch * channels * height * width))
        source_rows = _nearest_source(x.shape[2], depth, skip.device)

        def upsampled(a: int, b: int) -> torch.Tensor:
            return F.interpolate(x.index_select(2, source_rows[a:b]), size=(b - a, height, width), mode="nearest")

        slabs = [(a, min(a + rows, depth)) for a in range(0, depth, rows)]
        sums = sum(_channel_sums(torch.cat((skip[:, :, a:b], upsampled(a, b)), dim=1)) for a, b in slabs)
        scale, shift = _group_norm_affine(first.groupnorm, sums, depth * height * width)
        out = skip.new_empty(batch, first.conv.out_channels, depth, height, width)
        buffer = skip.new_empty(batch, channels, rows + 2, height, width)
        for a, b in slabs:
            lo, hi = max(a - 1, 0), min(b + 1, depth)
            # Rows beyond the volume are the convolution's zero padding, as on the whole volume.
            top, bottom = int(a == 0), int(b == depth)
            window = buffer[:, :, : top + (hi - lo) + bottom]
            window[:, :, :top] = 0
            window[:, :, window.shape[2] - bottom :] = 0
            body = window[:, :, top : top + hi - lo]
            body[:, :skip_channels] = skip[:, :, lo:hi]
            body[:, skip_channels:] = upsampled(lo, hi)
            body.mul_(scale).add_(shift)
            out[:, :, a:b] = F.relu_(_convolve_rows(first.conv, window))
        return self.basic_module.SingleConv2(out)


def _convolve_rows(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` (3-wide, stride 1) without padding along depth: the output has two rows fewer than ``x``."""
    padding = (0, *conv.padding[1:])
    if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
        return torch.ops.aten.mkldnn_convolution(x.contiguous(), conv.weight, conv.bias, padding, conv.stride, conv.dilation, conv.groups)
    return F.conv3d(x, conv.weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)


def _nearest_source(size_in: int, size_out: int, device: torch.device) -> torch.Tensor:
    """The input row ``F.interpolate(mode="nearest")`` copies into each output row."""
    return torch.clamp(torch.floor(torch.arange(size_out, device=device, dtype=torch.float64) * (size_in / size_out)).long(), max=size_in - 1)


def _channel_sums(x: torch.Tensor) -> torch.Tensor:
    """(2, B, C) float64: the sums of ``x`` and of its squares per sample and channel."""
    flat = x.flatten(2)
    return torch.stack((flat.sum(2), (flat * flat).sum(2))).double()


def _group_norm_affine(norm: nn.GroupNorm, sums: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, channel) ``scale, shift`` (B, C, 1, 1, 1) with ``norm(x) == x * scale + shift``, from ``x``'s channel sums over ``count`` voxels."""
    batch, channels = sums.shape[1:]
    group = channels // norm.num_groups
    total, squares = sums.view(2, batch, norm.num_groups, group).sum(3) / (count * group)
    inverse = torch.rsqrt((squares - total * total).clamp_min(0) + norm.eps).repeat_interleave(group, dim=1)
    mean = total.repeat_interleave(group, dim=1)
    weight = norm.weight.double() if norm.affine else torch.ones_like(inverse[0])
    bias = norm.bias.double() if norm.affine else torch.zeros_like(inverse[0])
    scale = inverse * weight
    shift = bias - mean * scale
    return scale.float()[..., None, None, None], shift.float()[..., None, None, None]


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
