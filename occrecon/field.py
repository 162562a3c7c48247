"""Occupancy fields: an encoded input as a function from canonical points to logits.

Every stage after encoding (the winding-number prior, test-time fitting, MISE,
refinement) sees one :class:`Field`: ``decode(points)`` maps ``(n, 3)`` points in
the model's canonical frame (a tensor on the model's device) to ``(n,)`` logits.
Three implementations compose:

* :class:`NetworkField`: the network's decoder on one encoding;
* :class:`RotationEnsemble`: the average of encodings of the same cloud under
  several rotations;
* :class:`WithWindingPrior`: another field plus a prior's logits.

This module also encodes inputs into fields (:func:`encode_field`,
:func:`encode_rotated`). It depends on the network and preprocessing only; the
stages that use fields (:mod:`occrecon.fitting`, :mod:`occrecon.winding`,
:mod:`occrecon.surface`) depend on it, and the orchestration
(:mod:`occrecon.pipeline`) on all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np
import torch
import trimesh

from occrecon.config import InputSpec
from occrecon.loading import OccupancyModel
from occrecon.preprocess import PreparedInput, prepare_input

__all__ = [
    "Field",
    "LogitPrior",
    "NetworkField",
    "RotationEnsemble",
    "WithWindingPrior",
    "encode_field",
    "encode_rotated",
    "network_part",
    "numpy_query",
    "random_rotations",
]


@runtime_checkable
class Field(Protocol):
    """What every stage after encoding needs of an encoded input."""

    model: OccupancyModel

    @property
    def rows_per_query(self) -> int:
        """Decoder rows one query point costs (the ensemble's size), for batching."""
        ...

    def decode(self, points: torch.Tensor) -> torch.Tensor:
        """``(n, 3)`` canonical points on the model's device → ``(n,)`` logits."""
        ...


class LogitPrior(Protocol):
    """Logits added to a field (:class:`occrecon.winding.WindingPrior` is one)."""

    def logits(self, points: torch.Tensor) -> torch.Tensor: ...


@dataclass
class NetworkField:
    """The network's decoder on one encoding (a batch of one)."""

    model: OccupancyModel
    encoding: Any

    @property
    def rows_per_query(self) -> int:
        return 1

    @property
    def first_member_weight(self) -> float:
        """The weight of the encoding that decodes in the main canonical frame (all of it)."""
        return 1.0

    def decode(self, points: torch.Tensor) -> torch.Tensor:
        return self.model.net.decode(points[None], self.encoding)[0]

    def with_encoding(self, encoding: Any) -> "NetworkField":
        return NetworkField(self.model, encoding)


@dataclass
class RotationEnsemble:
    """Encodings of one cloud under several rotations, decoded as one field.

    Member ``k`` saw the cloud turned by a rotation and re-normalised; a query
    ``p`` in the main input's canonical frame is therefore decoded at
    ``p @ matrices[k].T + offsets[k]`` in member ``k``'s frame, and the logits
    are averaged with ``weights``. A three-plane encoder projects the cloud onto
    three planes, where parts that overlap in a projection (crossing tubes, the
    near and far walls of a bulky object) share features; other rotations give
    other projections, so their average resolves what one projection confuses.
    Member 0 is the unrotated input and keeps half the weight: the model was
    trained on axis-aligned poses, in which thin flat parts (panels, seats) are
    sharpest, and turned members blur them. The members are one batch, so each
    query costs one network call, not ``k``.

    Attributes:
        model: the network that made the encodings.
        matrices: (k, 3, 3) float32 on the model's device.
        offsets: (k, 3) float32 on the model's device.
        weights: (k,) float32 summing to 1.
        encoding: the network's encoding of the batch of ``k`` turned clouds.
    """

    model: OccupancyModel
    matrices: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor
    encoding: Any

    @property
    def size(self) -> int:
        return len(self.weights)

    @property
    def rows_per_query(self) -> int:
        return self.size

    @property
    def first_member_weight(self) -> float:
        return float(self.weights[0])

    def decode(self, points: torch.Tensor) -> torch.Tensor:
        per_member = torch.einsum("kij,nj->kni", self.matrices, points) + self.offsets[:, None]
        return self.weights @ self.model.net.decode(per_member, self.encoding)

    def with_encoding(self, encoding: Any) -> "RotationEnsemble":
        return dataclasses.replace(self, encoding=encoding)


NetworkPart = Union[NetworkField, RotationEnsemble]


@dataclass
class WithWindingPrior:
    """A network field whose logits get a prior's added (:mod:`occrecon.winding`)."""

    base: NetworkPart
    prior: LogitPrior

    @property
    def model(self) -> OccupancyModel:  # type: ignore[override]
        return self.base.model

    @property
    def rows_per_query(self) -> int:
        return self.base.rows_per_query

    def decode(self, points: torch.Tensor) -> torch.Tensor:
        return self.base.decode(points) + self.prior.logits(points).to(points.dtype)


def network_part(field: Field) -> NetworkPart:
    """The network's own field inside ``field`` (without a prior)."""
    return field.base if isinstance(field, WithWindingPrior) else field  # type: ignore[return-value]


def with_network_part(field: Field, part: NetworkPart) -> Field:
    """``field`` with its network part replaced (a prior stays as it was)."""
    return WithWindingPrior(part, field.prior) if isinstance(field, WithWindingPrior) else part


def numpy_query(field: Field) -> "Any":
    """``(n, 3) float32 canonical points -> (n,) float32 logits`` in NumPy, for MISE."""
    device = field.model.device

    def query(points: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(device)
        with torch.inference_mode():
            return field.decode(tensor).float().cpu().numpy()

    return query


# ---------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------
def _encode_batch(model: OccupancyModel, tensors: list[torch.Tensor]) -> Any:
    # no_grad rather than inference_mode: refinement and fitting differentiate the
    # decoder through this encoding, which inference tensors would forbid.
    with torch.no_grad():
        return model.net.encode(torch.stack(tensors).to(model.device, torch.float32))


def encode_field(model: OccupancyModel, tensor: torch.Tensor | None) -> NetworkField:
    """The field of one prepared input (``None`` for an unconditional model's prior mean)."""
    if tensor is None:
        with torch.no_grad():
            return NetworkField(model, model.net.encode(None, batch_size=1))
    return NetworkField(model, _encode_batch(model, [tensor]))


def random_rotations(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3, 3) rotation matrices: the identity, then uniformly random ones (seeded)."""
    # Gaussian quaternions are uniform on the unit sphere, hence uniform rotations.
    quaternions = np.random.default_rng([seed, 0x5EED]).normal(size=(max(count - 1, 0), 4))
    turns = [trimesh.transformations.quaternion_matrix(q)[:3, :3] for q in quaternions]
    return np.stack([np.eye(3), *turns]) if count > 0 else np.zeros((0, 3, 3))


def encode_rotated(model: OccupancyModel, cloud: np.ndarray, main: PreparedInput, spec: InputSpec, rotations: int, seed: int) -> RotationEnsemble:
    """Encode ``cloud`` (input frame) under ``rotations`` rotations about its box centre.

    ``main`` is the prepared unrotated input (the plain reconstruction's), member 0
    and the frame in which the mesh is extracted; it weighs 1/2, the others share the
    other half. Member ``k`` subsamples and adds noise with seed ``seed + k``.
    """
    centre = (cloud.min(axis=0) + cloud.max(axis=0)) / 2
    matrices, offsets, inputs = [np.eye(3)], [np.zeros(3)], [main.tensor]
    frame_of_main = main.transform
    for k, rotation in enumerate(random_rotations(rotations, seed)[1:], start=1):
        turned = prepare_input("points", (cloud - centre) @ rotation.T, spec, seed=seed + k)
        frame = turned.transform
        # p (main canonical) -> input -> turned input -> member canonical, an affine map.
        matrices.append(rotation * (frame_of_main.scale / frame.scale))
        offsets.append(((np.asarray(frame_of_main.translation) - centre) @ rotation.T - np.asarray(frame.translation)) / frame.scale)
        inputs.append(turned.tensor)
    weights = np.full(len(inputs), 0.5 / max(len(inputs) - 1, 1))
    weights[0] = 0.5 if len(inputs) > 1 else 1.0

    def as_tensor(values: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values), dtype=torch.float32, device=model.device)

    return RotationEnsemble(model, as_tensor(matrices), as_tensor(offsets), as_tensor(weights), _encode_batch(model, inputs))
