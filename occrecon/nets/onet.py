"""Occupancy Networks (Mescheder et al., CVPR 2019): encoders and decoders.

Module and parameter names follow ``im2mesh`` so that the published
checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from occrecon.nets.layers import CBatchNorm1d, CResnetBlockConv1d, ResnetBlockFC
from occrecon.nets.resnet import ResNet18Features

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize_imagenet(images: torch.Tensor) -> torch.Tensor:
    """Apply the ImageNet channel normalisation.

    Args:
        images: (B, 3, H, W) RGB in [0, 1].

    Returns:
        (B, 3, H, W) normalised images (a new tensor).
    """
    channels = [(images[:, i] - IMAGENET_MEAN[i]) / IMAGENET_STD[i] for i in range(3)]
    return torch.stack(channels, dim=1)


class Resnet18Encoder(nn.Module):
    """ResNet-18 image encoder (``resnet18``): ``fc(features(normalize(x)))``.

    Args:
        c_dim: output code size.
        normalize: apply the ImageNet normalisation inside the encoder (upstream default).
    """

    def __init__(self, c_dim: int = 256, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize
        self.features = ResNet18Features()
        self.fc = nn.Linear(512, c_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode (B, 3, 224, 224) images in [0, 1] into (B, c_dim) codes."""
        if self.normalize:
            images = normalize_imagenet(images)
        return self.fc(self.features(images))


class ResnetPointnet(nn.Module):
    """PointNet with residual blocks and global max pooling (``pointnet_resnet``).

    Args:
        c_dim: output code size.
        dim: point dimension.
        hidden_dim: block width; blocks take ``2 * hidden_dim`` inputs.
    """

    def __init__(self, c_dim: int = 512, dim: int = 3, hidden_dim: int = 512) -> None:
        super().__init__()
        self.fc_pos = nn.Linear(dim, 2 * hidden_dim)
        self.block_0 = ResnetBlockFC(2 * hidden_dim, hidden_dim)
        self.block_1 = ResnetBlockFC(2 * hidden_dim, hidden_dim)
        self.block_2 = ResnetBlockFC(2 * hidden_dim, hidden_dim)
        self.block_3 = ResnetBlockFC(2 * hidden_dim, hidden_dim)
        self.block_4 = ResnetBlockFC(2 * hidden_dim, hidden_dim)
        self.fc_c = nn.Linear(hidden_dim, c_dim)

    @staticmethod
    def _with_global(net: torch.Tensor) -> torch.Tensor:
        pooled = net.max(dim=1, keepdim=True)[0].expand_as(net)
        return torch.cat([net, pooled], dim=2)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Encode (B, T, 3) points (any T >= 1) into (B, c_dim) codes."""
        net = self.block_0(self.fc_pos(points))
        for block in (self.block_1, self.block_2, self.block_3, self.block_4):
            net = block(self._with_global(net))
        net = net.max(dim=1)[0]
        return self.fc_c(F.relu(net))


class VoxelEncoder(nn.Module):
    """3D CNN for 32^3 occupancy grids (``voxel_simple``).

    Args:
        c_dim: output code size.
    """

    def __init__(self, c_dim: int = 256) -> None:
        super().__init__()
        self.conv_in = nn.Conv3d(1, 32, 3, padding=1)
        self.conv_0 = nn.Conv3d(32, 64, 3, padding=1, stride=2)
        self.conv_1 = nn.Conv3d(64, 128, 3, padding=1, stride=2)
        self.conv_2 = nn.Conv3d(128, 256, 3, padding=1, stride=2)
        self.conv_3 = nn.Conv3d(256, 512, 3, padding=1, stride=2)
        self.fc = nn.Linear(512 * 2 * 2 * 2, c_dim)

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        """Encode (B, 32, 32, 32) 0/1 grids, indexed [x, y, z], into (B, c_dim) codes."""
        batch_size = voxels.size(0)
        net = self.conv_in(voxels.unsqueeze(1))
        for conv in (self.conv_0, self.conv_1, self.conv_2, self.conv_3):
            net = conv(F.relu(net))
        return self.fc(F.relu(net.reshape(batch_size, 512 * 8)))


class SimpleDecoder(nn.Module):
    """MLP decoder with additive z/c injection (``simple``; the unconditional models).

    Args:
        dim: point dimension.
        z_dim: latent size (0 disables ``fc_z``).
        c_dim: conditioning size (0 disables ``fc_c``).
        hidden_size: width.
    """

    def __init__(self, dim: int = 3, z_dim: int = 128, c_dim: int = 0, hidden_size: int = 128) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.fc_p = nn.Linear(dim, hidden_size)
        if z_dim != 0:
            self.fc_z = nn.Linear(z_dim, hidden_size)
        if c_dim != 0:
            self.fc_c = nn.Linear(c_dim, hidden_size)
        self.block0 = ResnetBlockFC(hidden_size)
        self.block1 = ResnetBlockFC(hidden_size)
        self.block2 = ResnetBlockFC(hidden_size)
        self.block3 = ResnetBlockFC(hidden_size)
        self.block4 = ResnetBlockFC(hidden_size)
        self.fc_out = nn.Linear(hidden_size, 1)

    def forward(self, p: torch.Tensor, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Decode logits.

        Args:
            p: (B, T, 3) query points.
            z: (B, z_dim) latent code.
            c: (B, c_dim) conditioning, ignored when ``c_dim == 0``.

        Returns:
            (B, T) occupancy logits.
        """
        net = self.fc_p(p)
        if self.z_dim != 0:
            net = net + self.fc_z(z).unsqueeze(1)
        if self.c_dim != 0:
            assert c is not None
            net = net + self.fc_c(c).unsqueeze(1)
        for block in (self.block0, self.block1, self.block2, self.block3, self.block4):
            net = block(net)
        return self.fc_out(F.relu(net)).squeeze(-1)


class DecoderCBatchNorm(nn.Module):
    """ONet's conditional-batch-norm decoder (``cbatchnorm``), 5 CBN residual blocks.

    Must run in ``eval()`` mode for inference: the BN running statistics are
    part of the model, and train-mode statistics would depend on the query batch.

    Args:
        dim: point dimension.
        z_dim: latent size (0 for every released model).
        c_dim: conditioning size.
        hidden_size: width.
        legacy: use the paper checkpoint's ``fc_gamma``/``fc_beta`` layout.
    """

    def __init__(self, dim: int = 3, z_dim: int = 0, c_dim: int = 256, hidden_size: int = 256, legacy: bool = False) -> None:
        super().__init__()
        self.z_dim = z_dim
        if z_dim != 0:
            self.fc_z = nn.Linear(z_dim, hidden_size)
        self.fc_p = nn.Conv1d(dim, hidden_size, 1)
        self.block0 = CResnetBlockConv1d(c_dim, hidden_size, legacy=legacy)
        self.block1 = CResnetBlockConv1d(c_dim, hidden_size, legacy=legacy)
        self.block2 = CResnetBlockConv1d(c_dim, hidden_size, legacy=legacy)
        self.block3 = CResnetBlockConv1d(c_dim, hidden_size, legacy=legacy)
        self.block4 = CResnetBlockConv1d(c_dim, hidden_size, legacy=legacy)
        self.bn = CBatchNorm1d(c_dim, hidden_size, legacy=legacy)
        self.fc_out = nn.Conv1d(hidden_size, 1, 1)
        # Eval-time fast path (:meth:`forward_folded`); occrecon.nets.upstream_arithmetic turns it off.
        self.fast_eval = True

    def forward(self, p: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Decode logits.

        Args:
            p: (B, T, 3) query points.
            z: (B, z_dim) latent code (empty when ``z_dim == 0``).
            c: (B, c_dim) conditioning code.

        Returns:
            (B, T) occupancy logits.
        """
        if self.fast_eval and self.bn.can_fold(c):
            return self.forward_folded(p, z, c)
        net = self.fc_p(p.transpose(1, 2))
        if self.z_dim != 0:
            net = net + self.fc_z(z).unsqueeze(2)
        for block in (self.block0, self.block1, self.block2, self.block3, self.block4):
            net = block(net, c)
        return self.fc_out(F.relu(self.bn(net, c))).squeeze(1)

    def forward_folded(self, p: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` in eval mode with every conditional batch norm folded into one affine map per object.

        Rows stay channels-last, (B, T, hidden), so every 1x1 convolution is one matrix product
        (see :meth:`CResnetBlockConv1d.forward_folded`). The logits equal :meth:`forward`'s up to
        float32 rounding: within 1e-5 of the largest logit's magnitude (``tests/test_fast_eval.py``),
        not to the last bit, which is why upstream's extraction turns this path off.
        """
        net = F.linear(p, self.fc_p.weight[..., 0], self.fc_p.bias)
        if self.z_dim != 0:
            net = net + self.fc_z(z).unsqueeze(1)
        for block in (self.block0, self.block1, self.block2, self.block3, self.block4):
            net = block.forward_folded(net, c)
        scale, shift = self.bn.affine(c)
        net = torch.addcmul(shift[:, None], net, scale[:, None]).relu_()
        return F.linear(net, self.fc_out.weight[..., 0], self.fc_out.bias).squeeze(-1)


class LatentEncoder(nn.Module):
    """Posterior encoder q(z | points, occupancies) (``encoder_latent: simple``).

    Only used for training / the ELBO; kept so that the unconditional
    checkpoints load completely.

    Args:
        dim: point dimension.
        z_dim: latent size.
        c_dim: conditioning size (0 for the unconditional models).
    """

    def __init__(self, dim: int = 3, z_dim: int = 128, c_dim: int = 0) -> None:
        super().__init__()
        self.c_dim = c_dim
        self.fc_pos = nn.Linear(dim, 128)
        if c_dim != 0:
            self.fc_c = nn.Linear(c_dim, 128)
        self.fc_0 = nn.Linear(1, 128)
        self.fc_1 = nn.Linear(128, 128)
        self.fc_2 = nn.Linear(256, 128)
        self.fc_3 = nn.Linear(256, 128)
        self.fc_mean = nn.Linear(128, z_dim)
        self.fc_logstd = nn.Linear(128, z_dim)

    def forward(self, p: torch.Tensor, occ: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters.

        Args:
            p: (B, T, 3) points.
            occ: (B, T) occupancies in {0, 1}.
            c: (B, c_dim) conditioning, ignored when ``c_dim == 0``.

        Returns:
            mean (B, z_dim) and log standard deviation (B, z_dim).
        """
        net = self.fc_0(occ.unsqueeze(-1)) + self.fc_pos(p)
        if self.c_dim != 0:
            assert c is not None
            net = net + self.fc_c(c).unsqueeze(1)
        net = self.fc_1(F.relu(net))
        for fc in (self.fc_2, self.fc_3):
            pooled = net.max(dim=1, keepdim=True)[0].expand_as(net)
            net = fc(F.relu(torch.cat([net, pooled], dim=2)))
        net = net.max(dim=1)[0]
        return self.fc_mean(net), self.fc_logstd(net)


def _convert_cbn(state_dict: Mapping[str, torch.Tensor], to_current: bool) -> "OrderedDict[str, torch.Tensor]":
    names = {"fc_gamma": "conv_gamma", "fc_beta": "conv_beta"}
    if not to_current:
        names = {new: old for old, new in names.items()}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[-2] in names and parts[0] == "decoder":
            parts[-2] = names[parts[-2]]
            if parts[-1] == "weight":
                value = value.unsqueeze(-1) if to_current else value.squeeze(-1)
            key = ".".join(parts)
        out[key] = value
    return out


def legacy_cbn_to_current(state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rewrite a legacy CBN decoder state dict into the current layout.

    ``decoder.*.fc_gamma/fc_beta.weight`` (256, c) become
    ``decoder.*.conv_gamma/conv_beta.weight`` (256, c, 1); biases are renamed.
    Every other entry is passed through unchanged, in order.

    Args:
        state_dict: full-model state dict (keys prefixed ``decoder.``).

    Returns:
        A new ordered state dict.
    """
    return _convert_cbn(state_dict, to_current=True)


def current_cbn_to_legacy(state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Inverse of :func:`legacy_cbn_to_current` ((256, c, 1) -> (256, c)).

    Args:
        state_dict: full-model state dict with ``conv_gamma``/``conv_beta`` decoder entries.

    Returns:
        A new ordered state dict.
    """
    return _convert_cbn(state_dict, to_current=False)
