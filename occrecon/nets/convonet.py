"""Convolutional Occupancy Networks (Peng et al., ECCV 2020): encoders and decoders.

Feature maps are returned as a dict ``{'xz'|'xy'|'yz': (B, C, R, R), 'grid': (B, C, R, R, R)}``.
Plane maps are indexed [v, u] (e.g. 'xz' -> [z, x]) and the grid [z, y, x],
which is what ``grid_sample`` expects for (u, v) / (x, y, z) sample coordinates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from occrecon.nets.coords import FEATURE_ORDER, PLANE_AXES, coordinate_to_index, normalize_coordinate, normalize_plane_axes
from occrecon.nets.layers import ResnetBlockFC
from occrecon.nets.scatter import pool_local, scatter_mean
from occrecon.nets.unet import UNet2D, UNet3D

PLANES: tuple[str, ...] = ("xz", "xy", "yz")


def feature_types(plane_type: str | Sequence[str]) -> list[str]:
    """Normalise upstream's ``plane_type`` (a string such as ``'grid'`` or a list) to a list.

    Args:
        plane_type: ``'xz'``, ``'grid'``, ``['xz', 'xy', 'yz']``, ``['xz', 'xy', 'yz', 'grid']``...

    Returns:
        The requested feature types in canonical order (xz, xy, yz, grid).
    """
    wanted = [plane_type] if isinstance(plane_type, str) else list(plane_type)
    unknown = set(wanted) - set(FEATURE_ORDER)
    if unknown:
        raise ValueError(f"unknown plane_type entries: {sorted(unknown)}")
    return [f for f in FEATURE_ORDER if f in wanted]


def map_to_local(p: torch.Tensor, unit_size: float) -> torch.Tensor:
    """Position inside the voxel of size ``unit_size`` (``local_coord``), in [0, 1).

    Args:
        p: (..., 3) points.
        unit_size: voxel edge length.

    Returns:
        (..., 3) ``(p mod unit_size) / unit_size`` with a non-negative remainder.
    """
    return torch.remainder(p, unit_size) / unit_size


@dataclass(frozen=True)
class VolumeSettings:
    """Where a ConvONet encoder scatters its point features, and the U-Nets that process them (upstream's encoder kwargs).

    Attributes:
        plane_type: feature types, e.g. ``['xz', 'xy', 'yz']`` or ``'grid'``.
        plane_resolution: plane side R (64 ShapeNet, 128 rooms).
        grid_resolution: grid side R (32 or 64).
        unet: a shared 2D U-Net over the planes, with ``unet_kwargs`` (``depth``, ``merge_mode``, ``start_filts``).
        unet3d: a 3D U-Net over the grid, with ``unet3d_kwargs`` (``num_levels``, ``f_maps``, ``in_channels``, ``out_channels``).
        padding: unit-box padding (0.1).
    """

    plane_type: str | Sequence[str] = "xz"
    plane_resolution: int | None = None
    grid_resolution: int | None = None
    unet: bool = False
    unet_kwargs: Mapping[str, Any] | None = None
    unet3d: bool = False
    unet3d_kwargs: Mapping[str, Any] | None = None
    padding: float = 0.1

    @classmethod
    def split(cls, kwargs: Mapping[str, Any], padding: float) -> tuple["VolumeSettings", dict[str, Any]]:
        """(these settings, the encoder's other kwargs) from upstream's flat ``encoder_kwargs``."""
        names = {f.name for f in dataclasses.fields(cls)}
        settings = cls(**{k: v for k, v in kwargs.items() if k in names and k != "padding"}, padding=padding)
        return settings, {k: v for k, v in kwargs.items() if k not in names}


class _FeatureVolumes(nn.Module):
    """Shared scatter-to-planes/grid logic plus the optional U-Nets.

    Subclasses call :meth:`_init_volumes` after creating their own layers, so
    that the U-Nets appear where upstream registers them in the state dict.
    """

    def _init_volumes(self, c_dim: int, volumes: VolumeSettings) -> None:
        """Store the feature-volume settings of ``c_dim`` channels and build the U-Nets."""
        self.c_dim = c_dim
        self.features = feature_types(volumes.plane_type)
        self.reso_plane = volumes.plane_resolution
        self.reso_grid = volumes.grid_resolution
        self.padding = volumes.padding
        self.unet = UNet2D(c_dim, in_channels=c_dim, **dict(volumes.unet_kwargs or {})) if volumes.unet else None
        self.unet3d = UNet3D(**dict(volumes.unet3d_kwargs or {})) if volumes.unet3d else None
        # Eval-time fast path (the planes through the U-Net as one batch, see _volumes).
        self.fast_eval = True

    def _cells(self, feature: str) -> int:
        if feature == "grid":
            assert self.reso_grid is not None, "grid features need grid_resolution"
            return self.reso_grid**3
        assert self.reso_plane is not None, "plane features need plane_resolution"
        return self.reso_plane**2

    def _scatter(self, c: torch.Tensor, index: torch.Tensor, feature: str) -> torch.Tensor:
        """Scatter-mean (B, N, C) features into one feature map, (B, C, R, R) or (B, C, R, R, R).

        Indices >= the cell count (the sliding window's overflow bin) are
        dropped, as upstream does by trimming the extra column.
        """
        cells = self._cells(feature)
        src = c.permute(0, 2, 1)
        size = max(cells, int(index.max()) + 1) if index.numel() else cells
        fea = scatter_mean(src, index, size)[:, :, :cells]
        r = self.reso_grid if feature == "grid" else self.reso_plane
        return fea.reshape(c.size(0), self.c_dim, *(r,) * (3 if feature == "grid" else 2))

    def _volume(self, c: torch.Tensor, index: torch.Tensor, feature: str) -> torch.Tensor:
        """One feature map, through its U-Net."""
        fea = self._scatter(c, index, feature)
        unet = self.unet3d if feature == "grid" else self.unet
        return unet(fea) if unet is not None else fea

    def _volumes(self, c: torch.Tensor, index: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Upstream fills the dict grid first, then the planes.
        order = (["grid"] if "grid" in self.features else []) + [f for f in self.features if f != "grid"]
        planes = [f for f in order if f != "grid"]
        if self.unet is None or len(planes) < 2 or self.training or not getattr(self, "fast_eval", False):
            return {f: self._volume(c, index[f], f) for f in order}
        # Eval-time fast path: the planes share one U-Net, so they go through it as one batch
        # (18 convolutions instead of 54). Convolutions may pick other kernels for another batch
        # size, so the features can differ in the last bits (measured: 1.4e-6 of features of
        # size 1); occrecon.nets.upstream_arithmetic turns this off.
        volumes = {f: self._volume(c, index[f], f) for f in order if f == "grid"}
        batched = self.unet(torch.cat([self._scatter(c, index[f], f) for f in planes]))
        volumes.update(zip(planes, batched.split(c.size(0))))
        return volumes


class LocalPoolPointnet(_FeatureVolumes):
    """ResNet PointNet with local pooling onto planes / a grid (``pointnet_local_pool``).

    Args:
        c_dim: feature channels (32 in every checkpoint).
        dim: point dimension.
        hidden_dim: block width.
        scatter_type: local pooling reduction, ``'max'`` (all checkpoints) or ``'mean'``.
        volumes: planes / grid, their resolutions and U-Nets (upstream's flat encoder kwargs, see :class:`VolumeSettings`).
        n_blocks: residual blocks.
    """

    def __init__(self, c_dim: int = 32, dim: int = 3, hidden_dim: int = 32, scatter_type: str = "max",
                 volumes: VolumeSettings = VolumeSettings(), n_blocks: int = 5) -> None:
        super().__init__()
        if scatter_type not in ("max", "mean"):
            raise ValueError(f"scatter_type must be 'max' or 'mean', got {scatter_type!r}")
        self.scatter_type = scatter_type
        self.fc_pos = nn.Linear(dim, 2 * hidden_dim)
        self.blocks = nn.ModuleList(ResnetBlockFC(2 * hidden_dim, hidden_dim) for _ in range(n_blocks))
        self.fc_c = nn.Linear(hidden_dim, c_dim)
        self._init_volumes(c_dim, volumes)

    def point_index(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cell index of every point for every feature type.

        Args:
            p: (B, N, 3) points in the padded unit box.

        Returns:
            feature type -> (B, 1, N) int64 index, in the order xz, xy, yz, grid.
        """
        index = {}
        for f in self.features:
            reso = self.reso_grid if f == "grid" else self.reso_plane
            index[f] = coordinate_to_index(normalize_coordinate(p, f, self.padding), reso)
        return index

    def forward(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode (B, N, 3) points into feature maps ``{'xz': (B, C, R, R), ..., 'grid': (B, C, R, R, R)}``."""
        index = self.point_index(p)
        sizes = {f: self._cells(f) for f in index}
        net = self.blocks[0](self.fc_pos(p))
        for block in self.blocks[1:]:
            pooled = pool_local(net, index, sizes, self.scatter_type)
            net = block(torch.cat([net, pooled], dim=2))
        c = self.fc_c(net)
        return self._volumes(c, index)


class PatchLocalPoolPointnet(_FeatureVolumes):
    """Crop encoder of the sliding-window scene model (``pointnet_crop_local_pool``).

    Unlike :class:`LocalPoolPointnet` it does not compute cell indices itself:
    the caller crops the scene and passes, per feature type, the index of each
    point inside the crop's input volume (see :func:`occrecon.nets.coords.crop_index`).
    An index equal to the cell count is an overflow bin for points outside the
    crop; they still take part in local pooling but not in the feature volume.

    Args:
        c_dim: feature channels.
        dim: point dimension.
        hidden_dim: block width.
        scatter_type: ``'max'`` or ``'mean'``.
        volumes: the grid of one input crop (``['grid']`` for the released model; its side, e.g. 88 in
            training and 160 in the Matterport demo, changes no parameter shape; padding is unused).
        n_blocks: residual blocks.
        local_coord: feed ``(p mod unit_size) / unit_size`` instead of ``p`` to ``fc_pos``.
        pos_encoding: only ``'linear'`` (identity) is supported.
        unit_size: voxel size of the local coordinates.
    """

    def __init__(self, c_dim: int = 32, dim: int = 3, hidden_dim: int = 32, scatter_type: str = "max",
                 volumes: VolumeSettings = VolumeSettings(), n_blocks: int = 5, local_coord: bool = False,
                 pos_encoding: str = "linear", unit_size: float = 0.1) -> None:
        super().__init__()
        if scatter_type not in ("max", "mean"):
            raise ValueError(f"scatter_type must be 'max' or 'mean', got {scatter_type!r}")
        if pos_encoding != "linear":
            raise ValueError("only pos_encoding='linear' is supported (no checkpoint uses 'sin_cos')")
        self.scatter_type = scatter_type
        self.local_coord = local_coord
        self.unit_size = unit_size
        # Attribute order reproduces upstream's state-dict order.
        self.blocks = nn.ModuleList(ResnetBlockFC(2 * hidden_dim, hidden_dim) for _ in range(n_blocks))
        self.fc_c = nn.Linear(hidden_dim, c_dim)
        self._init_volumes(c_dim, volumes)
        self.fc_pos = nn.Linear(dim, 2 * hidden_dim)

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Encode one crop.

        Args:
            inputs: ``{'points': (B, N, 3) points in the scene's (metric) frame,
                'index': {feature: (B, 1, N) int64 cell index in the input crop}}``
                with one index per feature type of the model (``'grid'``).

        Returns:
            ``{'grid': (B, C, R, R, R)}`` (or planes), R = the crop resolution.
        """
        p = inputs["points"]
        index = dict(inputs["index"])
        net = self.fc_pos(map_to_local(p, self.unit_size) if self.local_coord else p)
        net = self.blocks[0](net)
        # Upstream's pooling sizes each reduction by the largest index present.
        sizes = {f: int(idx.max()) + 1 for f, idx in index.items()}
        for block in self.blocks[1:]:
            pooled = pool_local(net, index, sizes, self.scatter_type)
            net = block(torch.cat([net, pooled], dim=2))
        c = self.fc_c(net)
        return self._volumes(c, index)


class LocalVoxelEncoder(_FeatureVolumes):
    """Per-voxel 3D conv features scattered onto planes / a grid (``voxel_simple_local``).

    Voxel ``[i, j, k]`` is placed at ``(l[i], l[j], l[k])`` with
    ``l = linspace(-0.5, 0.5, 32)`` (not ONet's cell centres).

    Args:
        dim: unused (signature parity).
        c_dim: feature channels.
        volumes: planes (side 64) or the grid (side 32); ``'grid'`` excludes planes, as upstream.
        kernel_size: 3 (padding 1) or 1.
    """

    def __init__(self, dim: int = 3, c_dim: int = 32, volumes: VolumeSettings = VolumeSettings(plane_resolution=512),
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.conv_in = nn.Conv3d(1, c_dim, kernel_size, padding=0 if kernel_size == 1 else 1)
        self._init_volumes(c_dim, volumes)
        if "grid" in self.features:
            self.features = ["grid"]

    @staticmethod
    def voxel_centres(shape: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
        """Positions ConvONet assigns to the voxels of an (X, Y, Z) grid.

        Args:
            shape: (X, Y, Z) grid shape.
            device: output device.

        Returns:
            (X*Y*Z, 3) points, row-major over [x, y, z].
        """
        axes = [torch.linspace(-0.5, 0.5, n, device=device) for n in shape]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
        return grid.reshape(-1, 3)

    def forward(self, voxels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode (B, X, Y, Z) 0/1 grids into feature maps."""
        batch_size = voxels.size(0)
        p = self.voxel_centres(voxels.shape[1:], voxels.device).unsqueeze(0).expand(batch_size, -1, -1)
        c = F.relu(self.conv_in(voxels.unsqueeze(1))).reshape(batch_size, self.c_dim, -1).permute(0, 2, 1)
        index = {}
        for f in self.features:
            reso = self.reso_grid if f == "grid" else self.reso_plane
            index[f] = coordinate_to_index(normalize_coordinate(p, f, self.padding), reso)
        return self._volumes(c, index)


def sample_feature(u: torch.Tensor, fea: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample a plane or grid at normalised coordinates (align_corners=True, border padding).

    Args:
        u: (B, M, 2) for a plane (B, C, R, R) or (B, M, 3) for a grid (B, C, R, R, R); in [0, 1].
        fea: feature map.
        mode: ``'bilinear'`` (trilinear on grids) or ``'nearest'``.

    Returns:
        (B, C, M) sampled features.
    """
    vgrid = 2.0 * u.float() - 1.0
    vgrid = vgrid[:, :, None] if u.size(-1) == 2 else vgrid[:, :, None, None]
    out = F.grid_sample(fea, vgrid, mode=mode, padding_mode="border", align_corners=True)
    return out.reshape(out.size(0), out.size(1), -1)


def sample_planes(p: torch.Tensor, c_plane: Mapping[str, torch.Tensor], padding: float, mode: str = "bilinear") -> dict[str, torch.Tensor]:
    """Sample every feature map at query points ``p``: the planes in one ``grid_sample`` call.

    The same as calling :func:`sample_feature` on each map with :func:`normalize_coordinate`,
    to the last bit: the three planes are stacked along the batch (each sample of
    ``grid_sample`` reads only its own map) and the points are normalised once for all three
    axes (the normalisation is elementwise). One call instead of three, and one pass over
    the points instead of three, took ConvONet's sampling from about 0.6 to 0.4 s per 100,000
    points on 2 loaded cores.

    Args:
        p: (B, M, 3) query points in the padded unit box.
        c_plane: feature maps from the encoder ({'xz'|'xy'|'yz': (B, C, R, R), 'grid': (B, C, R, R, R)}).
        padding: unit-box padding.
        mode: ``'bilinear'`` or ``'nearest'``.

    Returns:
        feature type -> (B, C, M) samples.
    """
    planes = [f for f in PLANES if f in c_plane]
    samples = {f: sample_feature(normalize_coordinate(p, f, padding), fea, mode) for f, fea in c_plane.items() if f not in planes}
    if len(planes) < 2 or len({c_plane[f].shape for f in planes}) != 1:
        samples.update({f: sample_feature(normalize_coordinate(p, f, padding), c_plane[f], mode) for f in planes})
        return samples
    # normalize_plane_coordinate, for x, y and z at once; then sample_feature's 2u - 1.
    vgrid = 2.0 * normalize_plane_axes(p, padding).float() - 1.0
    grids = torch.stack([vgrid[..., list(PLANE_AXES[f])] for f in planes])  # (P, B, M, 2)
    stacked = torch.cat([c_plane[f] for f in planes])  # (P * B, C, R, R), plane-major like grids
    batch, channels, m = p.size(0), stacked.size(1), p.size(1)
    out = F.grid_sample(stacked, grids.reshape(-1, m, 1, 2), mode=mode, padding_mode="border", align_corners=True)
    per_plane = out.reshape(len(planes), batch, channels, m)
    samples.update({f: per_plane[i] for i, f in enumerate(planes)})
    return samples


class _LocalMLP(nn.Module):
    """The point MLP shared by both local decoders: ``fc_out(relu(blocks(fc_p(p) + fc_c(c))))``."""

    n_blocks: int
    c_dim: int

    def decode_features(self, p: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, M) at points ``p`` (B, M, 3) from their summed features ``c`` (B, M, c_dim), or none."""
        net = self.fc_p(p)
        for i in range(self.n_blocks):
            if c is not None:
                net = self.fc_c[i](c).add_(net)  # net + fc_c(c) to the last bit, without another allocation
            net = self.blocks[i](net)
        return self.fc_out(net.relu_()).squeeze(-1)

    @staticmethod
    def sum_features(samples: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, M, c_dim) features of M points from their samples (B, c_dim, M) per plane or grid."""
        # Summation order grid, xz, xy, yz is upstream's; it matters for the last bit.
        total: torch.Tensor | int = 0
        for f in ("grid",) + PLANES:
            if f in samples:
                total = total + samples[f]
        assert isinstance(total, torch.Tensor)
        # Contiguous once here, or each of the n_blocks fc_c layers copies the transposed view again.
        return total.transpose(1, 2).contiguous()


class LocalDecoder(_LocalMLP):
    """Occupancy MLP conditioned on features interpolated from planes / grid (``simple_local``).

    Args:
        dim: point dimension.
        c_dim: feature channels (0 = unconditioned).
        hidden_size: width.
        n_blocks: residual blocks.
        leaky: unsupported (no checkpoint uses it); must be False.
        sample_mode: ``'bilinear'`` or ``'nearest'``.
        padding: unit-box padding used to normalise the queries.
    """

    def __init__(self, dim: int = 3, c_dim: int = 32, hidden_size: int = 32, n_blocks: int = 5,
                 leaky: bool = False, sample_mode: str = "bilinear", padding: float = 0.1) -> None:
        super().__init__()
        if leaky:
            raise ValueError("leaky decoders are not supported")
        self.c_dim = c_dim
        self.n_blocks = n_blocks
        if c_dim != 0:
            self.fc_c = nn.ModuleList(nn.Linear(c_dim, hidden_size) for _ in range(n_blocks))
        self.fc_p = nn.Linear(dim, hidden_size)
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden_size) for _ in range(n_blocks))
        self.fc_out = nn.Linear(hidden_size, 1)
        self.sample_mode = sample_mode
        self.padding = padding

    def forward(self, p: torch.Tensor, c_plane: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Decode logits.

        Args:
            p: (B, M, 3) query points in the padded unit box.
            c_plane: feature maps from the encoder.

        Returns:
            (B, M) occupancy logits.
        """
        c = None
        if self.c_dim != 0:
            c = self.sum_features(sample_planes(p, c_plane, self.padding, self.sample_mode))
        return self.decode_features(p.float(), c)


class PatchLocalDecoder(_LocalMLP):
    """Decoder of the sliding-window crop model (``simple_local_crop``).

    Args:
        dim: point dimension.
        c_dim: feature channels.
        hidden_size: width.
        leaky: unsupported; must be False.
        n_blocks: residual blocks.
        sample_mode: ``'bilinear'`` or ``'nearest'``.
        local_coord: feed ``(p mod unit_size) / unit_size`` to ``fc_p``.
        pos_encoding: only ``'linear'``.
        unit_size: voxel size.
        padding: unused (signature parity).
    """

    def __init__(self, dim: int = 3, c_dim: int = 32, hidden_size: int = 32, leaky: bool = False,
                 n_blocks: int = 5, sample_mode: str = "bilinear", local_coord: bool = False,
                 pos_encoding: str = "linear", unit_size: float = 0.1, padding: float = 0.1) -> None:
        super().__init__()
        if leaky:
            raise ValueError("leaky decoders are not supported")
        if pos_encoding != "linear":
            raise ValueError("only pos_encoding='linear' is supported (no checkpoint uses 'sin_cos')")
        self.c_dim = c_dim
        self.n_blocks = n_blocks
        if c_dim != 0:
            self.fc_c = nn.ModuleList(nn.Linear(c_dim, hidden_size) for _ in range(n_blocks))
        self.fc_out = nn.Linear(hidden_size, 1)
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden_size) for _ in range(n_blocks))
        self.fc_p = nn.Linear(dim, hidden_size)
        self.sample_mode = sample_mode
        self.local_coord = local_coord
        self.unit_size = unit_size

    def forward(self, p: Mapping[str, Any], c_plane: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Decode logits for one crop.

        Args:
            p: ``{'p': (B, M, 3) query points in the scene frame,
                'p_n': {feature: (B, M, 3|2) coordinates normalised to the crop's
                input volume, (p - lb_in) / (ub_in - lb_in)}}``
                (see :func:`occrecon.nets.coords.crop_normalize`).
            c_plane: feature maps of the crop from :class:`PatchLocalPoolPointnet`.

        Returns:
            (B, M) occupancy logits.
        """
        points = p["p"].float()
        c = None
        if self.c_dim != 0:
            p_n = p["p_n"]
            samples = {f: sample_feature(p_n[f], fea, self.sample_mode) for f, fea in c_plane.items()}
            c = self.sum_features(samples)
        if self.local_coord:
            points = map_to_local(points, self.unit_size)
        return self.decode_features(points, c)
