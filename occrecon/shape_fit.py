"""One shape: fit an occupancy network to a single mesh, and mesh it again at any resolution.

ONet's representation-power experiment ("optimizing for one shape") as a tool: the
network (:mod:`occrecon.nets.shape`, ReLU with Fourier features or SIREN) is fitted by
binary cross-entropy to the mesh's occupancy labels (:mod:`occrecon.shape_labels`), then
its surface is extracted by MISE and marching cubes and mapped back to the mesh's own
frame and units. The fitted network is an ordinary :class:`~occrecon.loading.OccupancyModel`
of task ``shape``: :func:`save_shape_model` writes a model folder that ``load_model`` reads,
and :func:`extract_shape` meshes it again.

Example:
    >>> import occrecon
    >>> fitted = occrecon.fit_shape("bunny.obj", activation="sine")  # doctest: +SKIP
    >>> fitted.mesh.export("bunny-fit.obj")  # doctest: +SKIP
    >>> occrecon.shape_fit.save_shape_model(fitted, "bunny-model/")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import trimesh

from occrecon.config import ModelConfig
from occrecon.errors import NoSurfaceError, OccreconError, OptionError
from occrecon.loading import OccupancyModel, save_model_folder
from occrecon.nets.shape import ACTIVATIONS, ShapeNet, build_shape_net
from occrecon.shape_labels import BOX_HALF, LabelOptions, Labels, MeshFrame, occupancy_labels, read_shape_mesh

__all__ = ["FitOptions", "FittedShape", "extract_shape", "fit_shape", "save_shape_model", "shape_frame"]

StageFn = Callable[[str], None]


@dataclass(frozen=True)
class FitOptions:
    """Every setting of a fit, checked once by :meth:`validate` (the CLI's flags are these fields).

    Defaults were chosen on occrecon's procedural shapes (``occrecon.data.shapes``), never on
    the evaluation meshes; see the README's *One shape* section.

    Attributes:
        activation: ``relu`` (Fourier features) or ``sine`` (SIREN).
        width: channels of each hidden layer.
        depth: hidden layers.
        steps: Adam steps.
        batch_size: labelled points per step.
        learning_rate: Adam's initial rate; it decays to 0 along a cosine.
        fourier_features: rows of the Fourier matrix (``relu``).
        fourier_scale: its σ, cycles per canonical unit (``relu``).
        omega_0: SIREN's frequency factor (``sine``).
        resolution: MISE's coarse cells per axis.
        upsampling_steps: MISE's subdivisions (final lattice ``resolution · 2^steps``).
        threshold: occupancy probability of the surface.
        labels: how many labelled points, and where.
        seed: seeds the labels, the initial weights and the batches.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
    """

    activation: str = "sine"
    width: int = 128
    depth: int = 4
    steps: int = 2000
    batch_size: int = 8192
    learning_rate: float | None = None
    fourier_features: int = 64
    fourier_scale: float = 3.0
    omega_0: float = 30.0
    resolution: int = 64
    upsampling_steps: int = 2
    threshold: float = 0.5
    labels: LabelOptions = field(default_factory=LabelOptions)
    seed: int = 0
    device: str = "auto"

    def validate(self) -> "FitOptions":
        """Raise :class:`OptionError` naming the flag of the first bad setting; returns itself."""
        if self.activation not in ACTIVATIONS:
            raise OptionError(f"--activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        checks = [("--width", self.width, 1, 2048), ("--depth", self.depth, 1, 32), ("--steps", self.steps, 0, 1_000_000),
                  ("--batch-size", self.batch_size, 1, 1 << 22), ("--resolution", self.resolution, 2, 512),
                  ("--upsampling-steps", self.upsampling_steps, 0, 6), ("--seed", self.seed, 0, 2**63 - 1)]
        for flag, value, low, high in checks:
            if not low <= value <= high:
                raise OptionError(f"{flag} must be in [{low}, {high}], got {value}")
        if self.resolution * 2**self.upsampling_steps > 1024:
            raise OptionError(f"--resolution {self.resolution} with --upsampling-steps {self.upsampling_steps} asks for more than a 1024³ lattice")
        if not 0.0 < self.threshold < 1.0:
            raise OptionError(f"--threshold is a probability strictly between 0 and 1, got {self.threshold}")
        if self.learning_rate is not None and not (0.0 < self.learning_rate < 1.0):
            raise OptionError(f"--learning-rate must be in (0, 1), got {self.learning_rate}")
        return self

    @property
    def rate(self) -> float:
        """Adam's initial rate: SIREN's 1e-4 scaled for its small batches is too slow here; both were chosen on procedural shapes."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-4 if self.activation == "sine" else 2e-3

    def architecture(self, frame: MeshFrame) -> dict[str, Any]:
        """The config's architecture block for these settings (``method: shape``)."""
        block: dict[str, Any] = {"method": "shape", "activation": self.activation, "hidden_size": self.width, "n_layers": self.depth}
        if self.activation == "sine":
            block["omega_0"] = self.omega_0
        else:
            block.update(fourier_features=self.fourier_features, fourier_scale=self.fourier_scale)
        block["frame"] = frame.as_dict()
        return block


@dataclass
class FittedShape:
    """What :func:`fit_shape` returns.

    Attributes:
        model: the fitted network as an :class:`~occrecon.loading.OccupancyModel` (task ``shape``).
        mesh: its surface in the input mesh's own frame and units.
        notes: what the fit had to say (a mesh filled because it was not closed, ...).
        timings: seconds per stage (``labels``, ``fit``, ``extract``).
        label_accuracy: the share of the labelled points the network classifies right.
        source: the input's name.
    """

    model: OccupancyModel
    mesh: trimesh.Trimesh
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    label_accuracy: float = 0.0
    source: str = ""


def shape_frame(model: OccupancyModel) -> MeshFrame:
    """The frame a shape model's meshes go back to (its config's ``architecture.frame``)."""
    if model.task != "shape":
        raise OccreconError(f"model {model.name} is a {model.task} model, not a fitted shape (made by occrecon fit --save-model)")
    frame = model.config.architecture["frame"]
    center = tuple(float(c) for c in frame["center"])
    half = tuple(float(h) for h in frame.get("half_extent", (0.5, 0.5, 0.5)))
    return MeshFrame(center=(center[0], center[1], center[2]), scale=float(frame["scale"]), half_extent=(half[0], half[1], half[2]))


def _model_config(options: FitOptions, frame: MeshFrame, source: str, record: dict[str, Any]) -> ModelConfig:
    return ModelConfig.from_dict({
        "name": Path(source).stem if source else "shape",
        "task": "shape",
        "description": f"{options.activation} network fitted to {Path(source).name or 'one mesh'} by occrecon fit",
        "architecture": options.architecture(frame),
        "input": {"kind": "none"},
        "generation": {"threshold": options.threshold, "resolution": options.resolution,
                       "upsampling_steps": options.upsampling_steps, "padding": 0.1},
        "training": record,
    }, "the fitted model's config")


def _train(net: ShapeNet, labels: Labels, options: FitOptions, device: torch.device, on_step: Callable[[int], None] | None) -> None:
    """Adam on binary cross-entropy over random batches of the labels, the rate decaying along a cosine."""
    points = torch.from_numpy(labels.points).to(device)
    targets = torch.from_numpy(labels.inside.astype(np.float32)).to(device)
    generator = torch.Generator(device="cpu").manual_seed(options.seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=options.rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / max(1, options.steps))))
    net.train()
    for step in range(options.steps):
        index = torch.randint(len(points), (options.batch_size,), generator=generator).to(device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net.decode(points[index][None])[0], targets[index])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if on_step is not None:
            on_step(step)
    net.eval()


@torch.inference_mode()
def _label_accuracy(net: ShapeNet, labels: Labels, device: torch.device) -> float:
    right = 0
    for start in range(0, len(labels.points), 65536):
        chunk = torch.from_numpy(labels.points[start:start + 65536]).to(device)
        predicted = (net.decode(chunk[None])[0] > 0).cpu().numpy()
        right += int((predicted == labels.inside[start:start + 65536]).sum())
    return right / max(1, len(labels.points))


def _resolve(options: FitOptions | None, overrides: dict[str, Any]) -> FitOptions:
    options = options or FitOptions()
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(FitOptions)}
        if unknown:
            raise TypeError(f"fit_shape() got unknown settings {sorted(unknown)}")
        options = dataclasses.replace(options, **overrides)
    return options.validate()


def fit_shape(
    mesh_or_path: str | Path | trimesh.Trimesh,
    options: FitOptions | None = None,
    *,
    on_stage: StageFn | None = None,
    on_step: Callable[[int], None] | None = None,
    **overrides: Any,
) -> FittedShape:
    """Fit an occupancy network to one mesh and extract its surface.

    Args:
        mesh_or_path: a ``trimesh.Trimesh`` or a mesh file (.obj, .ply, .off, .stl, .glb).
        options: the settings (:class:`FitOptions`); keywords such as ``activation="relu"`` change fields of it.
        on_stage: hears each stage's name as it starts.
        on_step: hears each training step's index.

    Returns:
        The fitted model and its mesh in the input's own frame (:class:`FittedShape`).

    Raises:
        InputError: the mesh is empty, degenerate, or encloses no volume.
        OptionError: a setting is out of range.
        NoSurfaceError: the fitted field has no surface at the threshold.
    """
    from occrecon.device import resolve_device

    options = _resolve(options, overrides)
    say = on_stage or (lambda stage: None)
    device, device_note = resolve_device(options.device)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    say("reading the mesh and labelling points")
    mesh, name = read_shape_mesh(mesh_or_path)
    labels = occupancy_labels(mesh, options.labels, name)
    timings["labels"] = time.perf_counter() - started

    started = time.perf_counter()
    say(f"fitting ({options.steps} steps)")
    torch.manual_seed(options.seed)  # the initial weights and Fourier matrix: a seed gives the same fit
    net = build_shape_net(options.architecture(labels.frame)).to(device)
    _train(net, labels, options, device, on_step)
    timings["fit"] = time.perf_counter() - started
    accuracy = _label_accuracy(net, labels, device)

    record = {"source": Path(name).name, "steps": options.steps, "batch_size": options.batch_size, "learning_rate": options.rate,
              "seed": options.seed, "label_accuracy": round(accuracy, 5), "filled": labels.filled, "seconds": round(timings["fit"], 2)}
    config = _model_config(options, labels.frame, name, record)
    model = OccupancyModel(net=net, config=config, name=config.name, source="local", revision=None, path=None, device=device)
    started = time.perf_counter()
    say("extracting the surface")
    fitted_mesh = extract_shape(model, source=name)
    timings["extract"] = time.perf_counter() - started
    notes = labels.notes + ([device_note] if device_note else [])
    return FittedShape(model, fitted_mesh, notes, timings, accuracy, name)


def extract_shape(
    model: OccupancyModel,
    *,
    resolution: int | None = None,
    upsampling_steps: int | None = None,
    threshold: float | None = None,
    source: str | None = None,
) -> trimesh.Trimesh:
    """The surface of a fitted shape model, in the fitted mesh's own frame and units (MISE, marching cubes).

    Args:
        model: a model of task ``shape`` (from :func:`fit_shape` or ``load_model`` of a saved folder).
        resolution, upsampling_steps, threshold: None takes the model's (the fit's) settings.
        source: the name the error of a field without surface names.

    Raises:
        NoSurfaceError: the field has no surface at the threshold.
    """
    from occrecon.extract import box_bounds, extract_grid, marching_cubes, probability_to_logit
    from occrecon.io.mesh import make_mesh
    from occrecon.loading import decoder_rows
    from occrecon.surface import no_surface_message

    frame = shape_frame(model)
    generation = model.config.generation
    threshold = generation.threshold if threshold is None else threshold
    logit = probability_to_logit(threshold)

    # The mesh lies in its bounding box, so the field is outside beyond it: a short fit's far field
    # (few uniform samples, a network free to wander there) otherwise left floaters at the box's edge.
    reach = np.asarray(frame.half_extent) + BOX_MARGIN

    def query(points: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(model.device)
        with torch.inference_mode():
            logits = model.net.decode(tensor[None])[0].float().cpu().numpy()
        return np.where(np.all(np.abs(points) <= reach, axis=1), logits, np.float32(-20.0))

    lower, upper = box_bounds(model.padding)
    grid = extract_grid(query, resolution0=resolution or generation.resolution,
                        upsampling_steps=generation.upsampling_steps if upsampling_steps is None else upsampling_steps,
                        threshold=logit, lower=lower, upper=upper, batch_size=decoder_rows(model.net, model.device))
    vertices, faces = marching_cubes(grid, logit)
    if len(faces) == 0:
        lowest, highest = (0.5 + 0.5 * math.tanh(float(v) / 2) for v in (grid.values.min(), grid.values.max()))
        raise NoSurfaceError(source or model.name, no_surface_message(threshold, lowest, highest))
    return make_mesh(frame.to_own(vertices), faces)


BOX_MARGIN = 0.02
"""How far beyond the mesh's bounding box (canonical units, longest side 1) the fitted field is kept; outside it, empty."""


def save_shape_model(fitted: FittedShape | OccupancyModel, folder: str | Path) -> Path:
    """Write the fitted network as a model folder (``config.json``, ``model.safetensors``, ``README.md``), atomically per file.

    Weights are stored in float32, so ``load_model(folder)`` gives the same logits bit for bit.
    """
    model = fitted.model if isinstance(fitted, FittedShape) else fitted
    return save_model_folder(model.net, model.config, folder, card=_card(model))


def _card(model: OccupancyModel) -> str:
    arch = model.config.architecture
    record = model.config.training or {}
    parameters = sum(p.numel() for p in model.net.parameters()) + sum(b.numel() for b in model.net.buffers())
    return (
        f"# {model.config.name}\n\n"
        f"An occupancy network fitted to one mesh (`{record.get('source', '?')}`) by `occrecon fit`: "
        f"{arch['activation']} activations, {arch['n_layers']} hidden layers of {arch['hidden_size']} "
        f"({parameters:,} stored numbers, {4 * parameters:,} bytes in float32).\n\n"
        f"- fit: {record.get('steps')} Adam steps of {record.get('batch_size')} points, "
        f"{record.get('seconds')} s; {100 * float(record.get('label_accuracy', 0)):.2f}% of the labelled points right\n"
        f"- frame: meshes are mapped back by `own = canonical * {arch['frame']['scale']:.6g} + {arch['frame']['center']}`\n\n"
        "Mesh it again at any resolution:\n\n"
        "```bash\noccrecon extract THIS_FOLDER -o shape.obj --resolution 64 --upsampling-steps 3\n```\n\n"
        "```python\nimport occrecon\nmodel = occrecon.load_model('THIS_FOLDER')\n"
        "mesh = occrecon.shape_fit.extract_shape(model, upsampling_steps=3)\n```\n"
    )
