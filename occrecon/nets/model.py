"""The model wrapper and the factory that builds it from an architecture config."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from occrecon.nets.convonet import (
    LocalDecoder,
    LocalPoolPointnet,
    LocalVoxelEncoder,
    PatchLocalDecoder,
    PatchLocalPoolPointnet,
    VolumeSettings,
)
from occrecon.nets.onet import DecoderCBatchNorm, LatentEncoder, Resnet18Encoder, ResnetPointnet, SimpleDecoder, VoxelEncoder

ONET_ENCODERS = {"resnet18": Resnet18Encoder, "pointnet_resnet": ResnetPointnet, "voxel_simple": VoxelEncoder}
ONET_DECODERS = {"cbatchnorm": DecoderCBatchNorm, "simple": SimpleDecoder}
CONVONET_ENCODERS = {
    "pointnet_local_pool": LocalPoolPointnet,
    "pointnet_crop_local_pool": PatchLocalPoolPointnet,
    "voxel_simple_local": LocalVoxelEncoder,
    "voxel_local": LocalVoxelEncoder,
}
CONVONET_DECODERS = {"simple_local": LocalDecoder, "simple_local_crop": PatchLocalDecoder}
METHOD_ALIASES = {"onet": "onet", "convonet": "convonet", "conv_onet": "convonet"}

Conditioning = torch.Tensor | dict[str, torch.Tensor]


class OccupancyNet(nn.Module):
    """An ONet or ConvONet model whose ``state_dict()`` matches upstream's checkpoints.

    Submodules: ``encoder`` (None for unconditional models), ``decoder``,
    ``encoder_latent`` (only when ``z_dim != 0``). Use it in ``eval()`` mode:
    ONet's CBN decoder depends on BatchNorm running statistics.

    Interfaces by family:

    * ONet image: ``encode((B, 3, 224, 224) RGB in [0, 1])`` -> (B, 256).
    * ONet points: ``encode((B, T, 3))`` -> (B, 512).
    * ONet voxels: ``encode((B, 32, 32, 32) 0/1, indexed [x, y, z])`` -> (B, 256).
    * ONet unconditional: ``encode(None, batch_size)`` -> empty (batch_size, 0);
      ``decode`` uses z = prior mean (zeros) unless ``z`` is given.
    * ConvONet points / voxels: ``encode`` -> ``{'xz'|'xy'|'yz': (B, 32, R, R), 'grid': (B, 32, R, R, R)}``.
    * ConvONet crop model (``pointnet_crop_local_pool`` / ``simple_local_crop``):
      ``encode({'points': (B, N, 3), 'index': {'grid': (B, 1, N) int64}})`` and
      ``decode({'p': (B, M, 3), 'p_n': {'grid': (B, M, 3)}}, c)``; see
      :class:`PatchLocalPoolPointnet` and :class:`PatchLocalDecoder`.

    In every case ``decode`` returns (B, M) logits; probability = sigmoid(logit).

    Args:
        decoder: the decoder module.
        encoder: the encoder module, or None.
        encoder_latent: the posterior encoder, or None.
        method: ``"onet"`` or ``"convonet"``.
        z_dim: latent size.
        arch: the architecture block this model was built from (kept for reference).
    """

    def __init__(self, decoder: nn.Module, encoder: nn.Module | None = None, encoder_latent: nn.Module | None = None,
                 method: str = "onet", z_dim: int = 0, arch: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        # Registration order decoder, encoder_latent, encoder reproduces the key
        # order of upstream checkpoints.
        self.decoder = decoder
        if encoder_latent is not None:
            self.encoder_latent = encoder_latent
        self.register_module("encoder", encoder)
        self.method = method
        self.z_dim = z_dim
        self.arch: dict[str, Any] = copy.deepcopy(dict(arch)) if arch is not None else {}

    @property
    def is_crop_model(self) -> bool:
        """True for the sliding-window scene model (dict inputs to encode/decode)."""
        return isinstance(self.decoder, PatchLocalDecoder)

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        param = next(self.decoder.parameters())
        return param.device, param.dtype

    def encode(self, inputs: Any, batch_size: int = 1) -> Conditioning:
        """Compute the conditioning from the inputs.

        Args:
            inputs: image (B, 3, 224, 224) in [0, 1]; points (B, N, 3); voxels
                (B, 32, 32, 32); the crop dict for the scene model; or None for
                unconditional models.
            batch_size: batch size of the empty conditioning when ``inputs`` is None.

        Returns:
            (B, c_dim) code for ONet, a dict of feature maps for ConvONet, or an
            empty (batch_size, 0) tensor without an encoder.
        """
        if self.encoder is None:
            if inputs is not None and isinstance(inputs, torch.Tensor):
                batch_size = inputs.size(0)
            device, dtype = self._device_dtype()
            return torch.empty(batch_size, 0, device=device, dtype=dtype)
        if inputs is None:
            raise ValueError("this model needs inputs to encode")
        return self.encoder(inputs)

    def decode(self, p: Any, c: Conditioning, z: torch.Tensor | None = None) -> torch.Tensor:
        """Occupancy logits at query points.

        Args:
            p: (B, M, 3) points in the model's frame, or for the crop model
                ``{'p': (B, M, 3), 'p_n': {feature: (B, M, 3|2)}}``.
            c: conditioning from :meth:`encode`.
            z: (B, z_dim) latent code for ONet; defaults to the prior mean (zeros).

        Returns:
            (B, M) logits.
        """
        if self.method == "convonet":
            return self.decoder(p, c)
        batch_size = p.size(0)
        if z is None:
            z = p.new_zeros(batch_size, self.z_dim)
        return self.decoder(p, z, c)

    def forward(self, p: Any, inputs: Any = None) -> torch.Tensor:
        """``decode(p, encode(inputs))``; see :meth:`encode` and :meth:`decode`."""
        batch_size = p["p"].size(0) if isinstance(p, Mapping) else p.size(0)
        return self.decode(p, self.encode(inputs, batch_size=batch_size))


def _architecture(arch: Mapping[str, Any]) -> Mapping[str, Any]:
    if "architecture" in arch and isinstance(arch["architecture"], Mapping):
        return arch["architecture"]
    return arch


def build_network(arch: Mapping[str, Any]) -> OccupancyNet:
    """Build an untrained network from an architecture block (or a whole preset).

    Args:
        arch: ``{"method", "encoder", "encoder_kwargs", "decoder", "decoder_kwargs",
            "encoder_latent", "c_dim", "z_dim", "padding"}``; a preset dict with an
            ``"architecture"`` key is accepted too.

    Returns:
        The :class:`OccupancyNet`, in eval mode.

    Raises:
        ValueError: unknown method, encoder or decoder name.
    """
    arch = _architecture(arch)
    if arch.get("method") == "depthfirst":  # the two-stage image model: its completion stage is itself an architecture
        from occrecon.nets.pointmap import build_depthfirst

        return build_depthfirst(dict(arch), build_network)  # type: ignore[return-value]
    if arch.get("method") == "shape":  # one fitted shape (occrecon fit): a coordinate MLP, no encoder
        from occrecon.nets.shape import build_shape_net

        return build_shape_net(arch)  # type: ignore[return-value]
    method = METHOD_ALIASES.get(str(arch.get("method", "onet")))
    if method is None:
        raise ValueError(f"unknown method {arch.get('method')!r}")
    c_dim = int(arch.get("c_dim", 0))
    z_dim = int(arch.get("z_dim", 0))
    padding = float(arch.get("padding", 0.1))
    enc_name = arch.get("encoder")
    dec_name = arch["decoder"]
    enc_kwargs = dict(arch.get("encoder_kwargs") or {})
    dec_kwargs = dict(arch.get("decoder_kwargs") or {})

    encoder: nn.Module | None = None
    latent: nn.Module | None = None
    if method == "onet":
        if dec_name not in ONET_DECODERS:
            raise ValueError(f"unknown ONet decoder {dec_name!r}")
        decoder = ONET_DECODERS[dec_name](dim=3, z_dim=z_dim, c_dim=c_dim, **dec_kwargs)
        if enc_name is not None:
            if enc_name not in ONET_ENCODERS:
                raise ValueError(f"unknown ONet encoder {enc_name!r}")
            encoder = ONET_ENCODERS[enc_name](c_dim=c_dim, **enc_kwargs)
        latent_name = arch.get("encoder_latent")
        if z_dim != 0 and latent_name is not None:
            if latent_name != "simple":
                raise ValueError(f"unknown encoder_latent {latent_name!r}")
            latent = LatentEncoder(dim=3, z_dim=z_dim, c_dim=c_dim, **dict(arch.get("encoder_latent_kwargs") or {}))
    else:
        if dec_name not in CONVONET_DECODERS:
            raise ValueError(f"unknown ConvONet decoder {dec_name!r}")
        decoder = CONVONET_DECODERS[dec_name](dim=3, c_dim=c_dim, padding=padding, **dec_kwargs)
        if enc_name is not None:
            if enc_name not in CONVONET_ENCODERS:
                raise ValueError(f"unknown ConvONet encoder {enc_name!r}")
            volumes, rest = VolumeSettings.split(enc_kwargs, padding)
            encoder = CONVONET_ENCODERS[enc_name](dim=3, c_dim=c_dim, volumes=volumes, **rest)
    model = OccupancyNet(decoder, encoder, latent, method=method, z_dim=z_dim, arch=arch)
    return model.eval()
