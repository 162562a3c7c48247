"""Upstream's gradient-based vertex refinement (ONet's ``refinement_step``)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from occrecon.optim import RMSprop

DecodeFn = Callable[[torch.Tensor], torch.Tensor]
"""``decode_fn(points (n, 3) float32 tensor) -> (n,) logits``, differentiable."""


def refine_vertices(
    vertices: np.ndarray,
    faces: np.ndarray,
    decode_fn: DecodeFn,
    *,
    threshold: float,
    steps: int,
    learning_rate: float = 1e-4,
    normal_weight: float = 0.01,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Move vertices onto the iso-surface, as upstream does after marching cubes.

    Each step samples one random point per face (barycentric weights from a
    Dirichlet(0.5, 0.5, 0.5)), pulls its occupancy probability towards the
    threshold and aligns the face normal with the field's negative gradient.

    Args:
        vertices: (v, 3) float, in the frame ``decode_fn`` expects.
        faces: (f, 3) int.
        decode_fn: differentiable field.
        threshold: iso-level as a probability (upstream compares sigmoid outputs).
        steps: optimisation steps (upstream's demo uses 30).

    Returns:
        (v, 3) float64 refined vertices.
    """
    if steps <= 0 or len(faces) == 0:
        return np.asarray(vertices, np.float64)
    generator = torch.Generator().manual_seed(seed)
    verts = torch.tensor(np.asarray(vertices), dtype=torch.float32, device=device, requires_grad=True)
    face_idx = torch.as_tensor(np.asarray(faces), dtype=torch.long, device=device)
    optimizer = RMSprop([verts], lr=learning_rate)
    for _ in range(steps):
        tri = verts[face_idx]  # (f, 3, 3)
        weights = _dirichlet(generator, len(faces))
        points = (tri * weights.to(device)[:, :, None]).sum(dim=1)
        edge_a = tri[:, 1] - tri[:, 0]
        edge_b = tri[:, 2] - tri[:, 1]
        face_normal = torch.cross(edge_a, edge_b, dim=1)
        face_normal = face_normal / (face_normal.norm(dim=1, keepdim=True) + 1e-10)

        probability = torch.sigmoid(decode_fn(points))
        (gradient,) = torch.autograd.grad(probability.sum(), points, create_graph=True)
        target_normal = -gradient / (gradient.norm(dim=1, keepdim=True) + 1e-10)

        data_loss = ((probability - threshold) ** 2).mean()
        normal_loss = ((face_normal - target_normal) ** 2).sum(dim=1).mean()
        (data_loss + normal_weight * normal_loss).backward()
        optimizer.step()
    return verts.detach().cpu().numpy().astype(np.float64)


def _dirichlet(generator: torch.Generator, n: int) -> torch.Tensor:
    """Seeded Dirichlet(0.5, 0.5, 0.5) samples via normalised Gamma(0.5) draws."""
    # Gamma(0.5, 1) is half a chi-square with one degree of freedom: z² / 2.
    gamma = torch.randn((n, 3), generator=generator) ** 2 / 2
    return gamma / gamma.sum(dim=1, keepdim=True).clamp_min(1e-12)
