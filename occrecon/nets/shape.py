"""One shape's occupancy network: an MLP from a point to a logit, fitted to a single mesh (``occrecon fit``).

Two kinds, as the research after ONet answered ReLU's oversmoothing:

* ``relu``: random Fourier features (Tancik et al., NeurIPS 2020), ``[p, cos 2πBp, sin 2πBp]``
  with ``B ~ N(0, σ²)``, then ReLU layers. ``B`` is a buffer, saved with the weights, so a
  reloaded model gives the same logits.
* ``sine``: SIREN (Sitzmann et al., NeurIPS 2020), ``sin(ω₀(Wx + b))`` layers with SIREN's
  initialisation: the first layer ``U(-1/n, 1/n)``, the others ``U(-√(6/n)/ω₀, √(6/n)/ω₀)``.

The network works in the canonical frame (bounding-box centre 0, longest side 1), as every
occrecon model does; the block's ``frame`` maps its meshes back to the mesh's own frame. Its
``encode``/``decode`` have :class:`~occrecon.nets.model.OccupancyNet`'s signatures, so
:class:`~occrecon.loading.OccupancyModel` and ``load_model`` treat it like any other model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "ShapeNet", "SineLayer", "build_shape_net", "parameter_count"]

ACTIVATIONS = ("relu", "sine")

# SIREN's inputs span [-1, 1]; the canonical box spans ±0.55, so points are doubled first.
_INPUT_SCALE = 2.0


class SineLayer(nn.Module):
    """``sin(ω₀ (W x + b))`` with SIREN's initialisation (first layer or hidden layer)."""

    def __init__(self, in_features: int, out_features: int, omega_0: float, first: bool) -> None:
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Linear(in_features, out_features)
        # SIREN's bound keeps ω₀·Wx roughly in [-π/2·k, π/2·k] at every depth, so activations
        # stay arcsine-distributed instead of collapsing (the paper's Sec. 3.2).
        bound = 1.0 / in_features if first else math.sqrt(6.0 / in_features) / omega_0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega_0 * self.linear(x))


class FourierFeatures(nn.Module):
    """``[p, cos 2πBp, sin 2πBp]`` with a fixed Gaussian ``B`` (a saved buffer, not a parameter)."""

    def __init__(self, n_features: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.randn(n_features, 3) * scale)

    @property
    def out_features(self) -> int:
        return 3 + 2 * self.matrix.shape[0]

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        projected = (2.0 * math.pi) * (p @ self.matrix.T)
        return torch.cat([p, torch.cos(projected), torch.sin(projected)], dim=-1)


def _relu_layers(encoding: FourierFeatures, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [encoding]
    width = encoding.out_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _sine_layers(hidden: int, depth: int, omega_0: float) -> nn.Sequential:
    layers: list[nn.Module] = [SineLayer(3, hidden, omega_0, first=True)]
    layers += [SineLayer(hidden, hidden, omega_0, first=False) for _ in range(depth - 1)]
    last = nn.Linear(hidden, 1)
    with torch.no_grad():
        bound = math.sqrt(6.0 / hidden) / omega_0
        last.weight.uniform_(-bound, bound)
    layers.append(last)
    return nn.Sequential(*layers)


class ShapeNet(nn.Module):
    """A coordinate MLP: (B, M, 3) canonical points -> (B, M) occupancy logits.

    Args:
        activation: ``relu`` (with Fourier features) or ``sine`` (SIREN).
        hidden_size: width of every hidden layer.
        n_layers: hidden layers (each a linear map and its activation).
        fourier_features: rows of ``B`` (``relu`` only).
        fourier_scale: σ of ``B``, in cycles per unit of the canonical frame (``relu`` only).
        omega_0: SIREN's frequency factor (``sine`` only).
    """

    method = "shape"
    z_dim = 0

    def __init__(self, activation: str, hidden_size: int, n_layers: int, *, fourier_features: int = 64,
                 fourier_scale: float = 3.0, omega_0: float = 30.0) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:  # never a silent fallback to another activation
            raise ValueError(f"unknown activation {activation!r}; one of {', '.join(ACTIVATIONS)}")
        if hidden_size < 1 or n_layers < 1:
            raise ValueError("hidden_size and n_layers must be positive")
        self.activation = activation
        if activation == "sine":
            self.decoder = _sine_layers(hidden_size, n_layers, omega_0)
        else:
            self.decoder = _relu_layers(FourierFeatures(fourier_features, fourier_scale), hidden_size, n_layers)

    def encode(self, inputs: Any = None, batch_size: int = 1) -> torch.Tensor:
        """No input: an empty (batch_size, 0) conditioning, as an unconditional model gives."""
        param = next(self.decoder.parameters())
        return torch.empty(batch_size, 0, device=param.device, dtype=param.dtype)

    def decode(self, p: torch.Tensor, c: Any = None, z: Any = None) -> torch.Tensor:
        """Logits (B, M) at (B, M, 3) canonical points; ``c`` and ``z`` are ignored (one shape)."""
        x = p * _INPUT_SCALE if self.activation == "sine" else p
        return self.decoder(x).squeeze(-1)

    def forward(self, p: torch.Tensor, inputs: Any = None) -> torch.Tensor:
        return self.decode(p)


def build_shape_net(arch: Mapping[str, Any]) -> ShapeNet:
    """The :class:`ShapeNet` an architecture block (``method: shape``) describes, in eval mode."""
    net = ShapeNet(
        str(arch["activation"]),
        int(arch["hidden_size"]),
        int(arch["n_layers"]),
        fourier_features=int(arch.get("fourier_features", 64)),
        fourier_scale=float(arch.get("fourier_scale", 3.0)),
        omega_0=float(arch.get("omega_0", 30.0)),
    )
    return net.eval()


def parameter_count(activation: str, hidden_size: int, n_layers: int, fourier_features: int = 64) -> int:
    """Stored numbers (weights, biases and ``B``) of a :class:`ShapeNet`, without building it."""
    first_in = 3 if activation == "sine" else 3 + 2 * fourier_features
    buffer = 0 if activation == "sine" else 3 * fourier_features
    hidden = (first_in + 1) * hidden_size + (n_layers - 1) * (hidden_size + 1) * hidden_size
    return buffer + hidden + hidden_size + 1
