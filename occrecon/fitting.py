"""Test-time fitting: adjust a point cloud's encoding until the surface passes through the points.

An encoder trained on procedural shapes predicts the right inside and outside far
from the cloud, but its surface can sit a percent of the object's size away from
the points it was given (more on shapes unlike its training families). The
points themselves say where the surface is, so the encoding of the cloud (the
feature planes of a ConvONet, the latent code of an ONet) is optimised for a few
Adam steps, with the network's weights frozen, on two terms:

* the occupancy at the input points is pulled to the extraction threshold, so the
  extracted surface passes through them (noise averages out: the surface is a
  least-squares fit through many noisy points, not an interpolation);
* elsewhere the field keeps its initial prediction (binary cross-entropy against
  the initial probabilities at samples in the box and around the cloud), weighted
  by ``1 - exp(-d² / 2h²)`` with ``d`` the distance to the nearest input point:
  within about ``h`` of the cloud the initial surface is what the fit corrects,
  farther away it is trusted, so inside and outside hold there.

For a :class:`~occrecon.field.RotationEnsemble` only member 0 (the unrotated
encoding) is optimised, against the ensemble's combined field: the other members'
logits at the fitting samples are constant and computed once, as are those of a
winding-number prior (:mod:`occrecon.winding`).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from occrecon.field import Field, RotationEnsemble, network_part, with_network_part
from occrecon.loading import OccupancyModel
from occrecon.metrics import nearest_neighbors
from occrecon.nets.convonet import LocalDecoder, sample_feature
from occrecon.nets.coords import normalize_coordinate
from occrecon.optim import Adam

StepFn = Callable[[int, int], None]
"""``on_step(k, steps)``: heard after each fitting step."""

__all__ = ["FitOptions", "fit_to_occupancy", "fit_to_points", "prior_weights", "seeded_subset"]


@dataclass(frozen=True)
class FitOptions:
    """Settings of :func:`fit_to_points` (chosen on held-out generated shapes, see the README).

    Attributes:
        steps: Adam steps; 0 returns the encoding unchanged.
        learning_rate: Adam step size on the encoding.
        release: ``h``, the distance to the cloud (canonical units) within which the
            initial field gives way to the points.
        prior_samples: samples that hold the field elsewhere (half uniform in the
            padded box, half within about 0.03 of the cloud).
        max_points: input points the surface is fitted to; a larger cloud gives a
            seeded random subset, so each step costs the same whatever its size.
        seed: seeds the prior samples and that subset.
    """

    steps: int = 60
    learning_rate: float = 0.005
    release: float = 0.01
    prior_samples: int = 6000
    max_points: int = 3000
    seed: int = 0


def seeded_subset(points: np.ndarray, count: int, seed: Any) -> np.ndarray:
    """``points`` if there are at most ``count`` of them, else ``count`` rows drawn without replacement (``seed`` as ``default_rng`` takes it)."""
    if len(points) <= count:
        return points
    return points[np.random.default_rng(seed).choice(len(points), count, replace=False)]


def prior_weights(samples: np.ndarray, points: np.ndarray, release: float) -> np.ndarray:
    """``1 - exp(-d² / 2h²)`` per sample, ``d`` its distance to the nearest point: 0 on the cloud, 1 far from it."""
    distance, _ = nearest_neighbors(samples, points)
    return -np.expm1(-(distance**2) / (2.0 * release**2))


def _prior_samples(points: np.ndarray, count: int, padding: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0xF17])
    half = 0.5 + padding / 2
    uniform = rng.uniform(-half, half, size=(count - count // 2, 3))
    near = points[rng.integers(0, len(points), count // 2)] + rng.normal(scale=0.03, size=(count // 2, 3))
    return np.concatenate([uniform, near]).astype(np.float32)


def _map(fn, *encodings: Any) -> Any:
    """``fn`` over the matching tensors of encodings (tensors, or dicts of feature maps with the same keys)."""
    if isinstance(encodings[0], dict):
        return {key: fn(*(encoding[key] for encoding in encodings)) for key in encodings[0]}
    return fn(*encodings)


def _tensors(conditioning: Any) -> list[torch.Tensor]:
    return list(conditioning.values()) if isinstance(conditioning, dict) else [conditioning]


class _FixedSampling(torch.autograd.Function):
    """``matrix @ dense`` with a constant sparse ``matrix``, whose gradient is ``transposed @ grad``."""

    @staticmethod
    def forward(ctx: Any, dense: torch.Tensor, matrix: torch.Tensor, transposed: torch.Tensor) -> torch.Tensor:
        ctx.transposed = transposed
        return matrix @ dense

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.transposed @ grad, None, None


def _bilinear_matrix(uv: torch.Tensor, resolution: int) -> torch.Tensor:
    """The (m, r²) CSR matrix of ``grid_sample(align_corners=True, padding_mode="border")`` at (m, 2) plane coordinates ``uv`` in [0, 1]."""
    top = resolution - 1
    xy = (uv.double() * top).clamp(0, top)
    low = xy.floor().clamp(max=top - 1) if resolution > 1 else xy.floor()
    frac = xy - low
    low = low.long()
    x0, y0 = low[:, 0], low[:, 1]
    x1, y1 = (x0 + 1).clamp(max=top), (y0 + 1).clamp(max=top)
    fx, fy = frac[:, 0], frac[:, 1]
    columns = torch.stack([y0 * resolution + x0, y0 * resolution + x1, y1 * resolution + x0, y1 * resolution + x1], 1)
    values = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], 1).float()
    rows = torch.arange(len(uv)).repeat_interleave(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta": nothing the user can act on
        coo = torch.sparse_coo_tensor(
            torch.stack([rows, columns.reshape(-1)]), values.reshape(-1), (len(uv), resolution * resolution), check_invariants=False
        )
        return coo.coalesce().to_sparse_csr()


def _plane_decoder(model: OccupancyModel, member: Any, queries: torch.Tensor) -> Callable[[dict[str, torch.Tensor]], torch.Tensor] | None:
    """``deltas -> (m,) logits`` of ``member + deltas`` at ``queries`` for a float32 plane-feature ConvONet on the CPU, else None.

    Sampling a plane is linear in it and the queries never move, so the features
    of ``member + delta`` are those of ``member``, computed once, plus fixed sparse
    bilinear weights times ``delta``: this replaces ``grid_sample`` and its slow
    backward in every fitting step.
    """
    decoder = getattr(model.net, "decoder", None)
    planes = ("xz", "xy", "yz")
    if (
        getattr(model.net, "method", None) != "convonet"
        or not isinstance(decoder, LocalDecoder)
        or decoder.c_dim == 0
        or decoder.sample_mode != "bilinear"
        or not isinstance(member, dict)
        or not set(member) <= set(planes)
        or any(fea.dtype != torch.float32 for fea in member.values())
        or queries.device.type != "cpu"
    ):
        return None
    p = queries[None]
    uv = {f: normalize_coordinate(p, f, decoder.padding) for f in member}
    with torch.no_grad():
        base = decoder.sum_features({f: sample_feature(uv[f], fea) for f, fea in member.items()})[0]
    matrices = {}
    for f, fea in member.items():
        matrix = _bilinear_matrix(uv[f][0], fea.shape[-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            matrices[f] = (matrix, matrix.t().to_sparse_csr())
    order = [f for f in planes if f in member]

    def decode(deltas: dict[str, torch.Tensor]) -> torch.Tensor:
        features = base
        for f in order:
            flat = deltas[f][0].reshape(deltas[f].shape[1], -1).t()  # (r², channels)
            features = features + _FixedSampling.apply(flat, *matrices[f])
        return decoder.decode_features(p.float(), features[None])[0].float()

    return decode


@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """Gradients for the encoding only, not for the network's weights."""
    previous = [p.requires_grad for p in module.parameters()]
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(module.parameters(), previous):
            parameter.requires_grad_(flag)


def fit_to_points(field: Field, points: np.ndarray, threshold: float, options: FitOptions = FitOptions(), on_step: StepFn | None = None) -> Field:
    """``field`` with its encoding fitted to the cloud ``points`` it was encoded from.

    Args:
        field: a network field, a rotation ensemble, or either with a winding prior
            (:mod:`occrecon.field`).
        points: (n, 3) the cloud in the model's canonical frame, without added noise.
        threshold: the occupancy probability at which the surface will be extracted.
        options: see :class:`FitOptions`.
        on_step: called as ``on_step(k, steps)`` after each step (for progress displays).

    Returns:
        A field of the same kind, with member 0's encoding fitted (a prior stays as it was).
    """
    if options.steps <= 0 or len(points) == 0:
        return field
    model = field.model
    device = model.device
    cloud = seeded_subset(np.asarray(points, dtype=np.float32).reshape(-1, 3), options.max_points, [options.seed, 0x5AB])
    samples = _prior_samples(cloud, options.prior_samples, model.padding, options.seed)
    queries = torch.from_numpy(np.concatenate([samples, cloud])).to(device)
    # One decoder call per step: prior samples weighted by how far they are from the cloud,
    # input points weighted so that both terms are means over their own queries.
    query_weights = np.concatenate([prior_weights(samples, cloud, options.release) / len(samples), np.full(len(cloud), 1.0 / len(cloud))])
    query_weights = torch.from_numpy(query_weights).float().to(device)

    def targets(combined: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.sigmoid(combined[: len(samples)]), torch.full((len(cloud),), threshold, device=device)])

    return _fit_encoding(field, queries, targets, query_weights, options, on_step)


def fit_to_occupancy(field: Field, points: np.ndarray, inside: np.ndarray, options: FitOptions = FitOptions(), on_step: StepFn | None = None) -> Field:
    """``field`` with its encoding fitted so that its occupancy at ``points`` is ``inside``.

    For inputs that state the occupancy at known points exactly: the cells of a grid filled by
    the centre rule are the object's occupancy at their centres, the very samples the networks
    are trained on. The fit is binary cross-entropy against them, each point weighing the same.

    Args:
        field: as for :func:`fit_to_points`.
        points: (n, 3) in the model's canonical frame.
        inside: (n,) bool, the occupancy at each point.
        options: ``steps``, ``learning_rate`` (the rest concern clouds).
        on_step: as for :func:`fit_to_points`.
    """
    if options.steps <= 0 or len(points) == 0:
        return field
    device = field.model.device
    queries = torch.from_numpy(np.asarray(points, dtype=np.float32).reshape(-1, 3)).to(device)
    labels = torch.from_numpy(np.asarray(inside, dtype=np.float32).reshape(-1)).to(device)
    weights = torch.full((len(labels),), 1.0 / len(labels), device=device)
    return _fit_encoding(field, queries, lambda combined: labels, weights, options, on_step)


def _fit_encoding(
    field: Field,
    queries: torch.Tensor,
    targets_of: Callable[[torch.Tensor], torch.Tensor],
    query_weights: torch.Tensor,
    options: FitOptions,
    on_step: StepFn | None = None,
) -> Field:
    """Member 0's encoding optimised for ``options.steps`` Adam steps on the weighted cross-entropy against ``targets_of(the field's logits at queries)``."""
    model = field.model
    part = network_part(field)
    weight = part.first_member_weight
    member = _map(lambda t: t[:1].detach(), part.encoding)

    def decode_member(code: Any) -> torch.Tensor:
        return model.net.decode(queries[None], code)[0].float()

    with torch.no_grad():
        combined = field.decode(queries).float()
        targets = targets_of(combined)
        # Member 0 decodes in the main canonical frame (identity map); the other members and the prior stay as they are.
        rest = combined - weight * decode_member(member)
    deltas = _map(lambda t: torch.zeros_like(t, dtype=torch.float32, requires_grad=True), member)
    optimizer = Adam(_tensors(deltas), lr=options.learning_rate)

    def shifted() -> Any:
        return _map(lambda base, delta: base + delta.to(base.dtype), member, deltas)

    fast = _plane_decoder(model, member, queries)
    with _frozen(model.net), torch.enable_grad():
        for step in range(options.steps):
            logits = weight * (fast(deltas) if fast is not None else decode_member(shifted())) + rest
            loss = (query_weights * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")).sum()
            loss.backward()
            optimizer.step()
            if on_step is not None:
                on_step(step + 1, options.steps)
    with torch.no_grad():
        fitted = shifted()
    if isinstance(part, RotationEnsemble):
        fitted = _map(lambda first, members: torch.cat([first, members[1:]]), fitted, part.encoding)
    return with_network_part(field, part.with_encoding(fitted))
