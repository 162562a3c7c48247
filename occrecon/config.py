"""A model's ``config.json`` as one typed, validated object: :class:`ModelConfig`.

Every default a reconstruction falls back on (MISE, the object-cloud extras, the
sliding window) is written once here, as a dataclass field default; presets,
training and the pipeline build or read :class:`ModelConfig` objects instead of
looking up string keys. The ``None``-means-"the model's default" rule of the
options (:mod:`occrecon.options`) resolves against these objects, in the spirit
of timm's ``PretrainedCfg``.

A config file comes from outside (a model folder, a Hub repo), so
:meth:`ModelConfig.from_dict` validates it as strictly as command-line input:
types, nesting, and every size against a limit, before anything is built from
it. Files written before this module (format version 1) read unchanged, and
:meth:`ModelConfig.to_dict` writes the same layout back.

This module imports no torch: ``occrecon models`` and ``--help`` read configs
without it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from occrecon.errors import InvalidModelFolderError

TASKS = ("image", "points", "voxels", "scene", "unconditional", "shape")
"""What a model reconstructs from (``scene``: point clouds through the sliding window; ``shape``: nothing, one fitted shape)."""

INPUT_KINDS = ("image", "points", "voxels", "none")
MISE_RULES = ("occrecon", "upstream")
"""Whose MISE refines the lattice: occrecon's, or upstream's rule reproduced exactly."""
OUTPUT_FRAMES = ("canonical", "viewer")
"""An image model's output frame: the object's own (upright, facing +z: ONet) or the camera's
(x right, y up in the image, z towards the viewer: the depth-first model)."""

FORMAT_VERSION = 1

DEFAULT_MARGIN = 0.2
"""Image preprocessing: blank space on each side of the object, as a share of the output side
(the object's longer side fills 1 - 2 * margin = 60 % of the frame)."""

# ---------------------------------------------------------------------------------------
# Limits: the largest values a config or an option may ask for. They bound what one
# value can make occrecon allocate or loop over; each is far above any published model.
# ---------------------------------------------------------------------------------------
MAX_WIDTH = 4096
"""Channels of any layer (ONet's widest published layer has 512)."""
MAX_PLANE_RESOLUTION = 512
MAX_GRID_RESOLUTION = 256
MAX_MISE_RESOLUTION = 512
MAX_UPSAMPLING_STEPS = 6
MAX_FINAL_RESOLUTION = 1024
"""Cells per axis of MISE's finest lattice (resolution · 2^steps): 1024³ is 4 GiB of float32 values."""
MAX_ROTATIONS = 64
MAX_STEPS = 100_000
MAX_POINTS = 10_000_000
MAX_IMAGE_SIZE = 2048
MAX_NESTING = 6
MAX_TEXT = 4096


def _problem(where: str, message: str) -> InvalidModelFolderError:
    return InvalidModelFolderError(f"{where}: {message}")


def check_number(where: str, name: str, value: Any, *, low: float, high: float, integer: bool = False, open_low: bool = False, open_high: bool = False) -> float | int:
    """``value`` as a finite number within ``[low, high]`` (ends open where asked), else an error naming it and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        raise _problem(where, f"{name} must be {kind}, got {_shown(value)}")
    if not math.isfinite(value) or value < low or value > high or (open_low and value == low) or (open_high and value == high):
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise _problem(where, f"{name} must be in {left}{low:g}, {high:g}{right}, got {_shown(value)}")
    return int(value) if integer else float(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_text(where: str, name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _problem(where, f"{name} must be a string, got {_shown(value)}")
    return value


def _check_choice(where: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _problem(where, f"{name} must be one of {', '.join(choices)}, got {_shown(value)}")
    return value


def _check_mapping(where: str, name: str, value: Any, *, optional: bool = False) -> dict[str, Any] | None:
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise _problem(where, f"{name} must be an object, got {type(value).__name__}")
    _check_json_tree(where, name, value, depth=0)
    return dict(value)


def _check_json_tree(where: str, name: str, value: Any, depth: int) -> None:
    """Plain JSON values, at most ``MAX_NESTING`` deep (a deep tree is a denial of service, not a config)."""
    if depth > MAX_NESTING:
        raise _problem(where, f"{name} is nested more than {MAX_NESTING} levels deep")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _problem(where, f"{name} has a key that is not a string")
            _check_json_tree(where, f"{name}.{key}", item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_json_tree(where, name, item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _problem(where, f"{name} holds a non-finite number")


# ---------------------------------------------------------------------------------------
# The blocks of a config
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationDefaults:
    """How a model's field becomes a mesh when the user does not say (``generation`` block).

    The field defaults are upstream's (``configs/default.yaml``); object-cloud extras are off.

    Attributes:
        threshold: occupancy probability of the surface.
        resolution: coarse MISE cells per axis.
        upsampling_steps: MISE subdivision levels (final lattice: resolution · 2^steps).
        padding: the box is ``[-0.5 - padding/2, 0.5 + padding/2]³`` in the canonical frame.
        refinement_steps: gradient refinement of the vertices (upstream's demo: 30).
        simplify_faces: decimate to about this many faces (None keeps them all).
        rotations: rotation ensemble size for object clouds (1: one pass).
        fit_steps: test-time fitting steps for object clouds (0: off).
        winding_prior: add the winding-number prior of an object cloud's points.
        anchor_points: MISE subdivides every coarse cell near an object cloud's points.
        use_sampling: unconditional models: upstream draws z at generation time.
        mise_rule: ``occrecon`` (occrecon's MISE) or ``upstream`` (upstream's rule, exactly); see ``--mise``.
    """

    threshold: float = 0.2
    resolution: int = 32
    upsampling_steps: int = 2
    padding: float = 0.1
    refinement_steps: int = 0
    simplify_faces: int | None = None
    rotations: int = 1
    fit_steps: int = 0
    winding_prior: bool = False
    anchor_points: bool = False
    use_sampling: bool = False
    mise_rule: str = "occrecon"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "generation") -> "GenerationDefaults":
        data = _known(cls, data)
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name in ("winding_prior", "anchor_points", "use_sampling"):
                if not isinstance(value, bool):
                    raise _problem(where, f"{name} must be true or false, got {_shown(value)}")
                values[name] = value
            elif name == "simplify_faces" and value is None:
                values[name] = None
            elif name == "mise_rule":
                values[name] = _check_choice(where, name, value, MISE_RULES)
            else:
                values[name] = check_generation_value(where, name, value)
        made = cls(**values)
        check_lattice(where, made.resolution, made.upsampling_steps)
        return made

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not self.use_sampling:
            data.pop("use_sampling")
        return data


def check_generation_value(where: str, name: str, value: Any) -> float | int:
    """One generation setting (a config's or an option's) checked against its limit."""
    if name == "threshold":
        return check_number(where, name, value, low=0.0, high=1.0, open_low=True, open_high=True)
    if name == "padding":
        return check_number(where, name, value, low=0.0, high=1.0)
    limits = {
        "resolution": (2, MAX_MISE_RESOLUTION),
        "upsampling_steps": (0, MAX_UPSAMPLING_STEPS),
        "refinement_steps": (0, MAX_STEPS),
        "simplify_faces": (4, 1 << 31),
        "rotations": (1, MAX_ROTATIONS),
        "fit_steps": (0, MAX_STEPS),
    }
    low, high = limits[name]
    return check_number(where, name, value, low=low, high=high, integer=True)


def check_lattice(where: str, resolution: int, upsampling_steps: int) -> None:
    """MISE's finest lattice, ``resolution · 2^steps`` per axis, must stay within :data:`MAX_FINAL_RESOLUTION`."""
    final = resolution * 2**upsampling_steps
    if final > MAX_FINAL_RESOLUTION:
        raise _problem(
            where,
            f"resolution {resolution} with {upsampling_steps} upsampling steps asks for a {final}³ lattice; "
            f"at most {MAX_FINAL_RESOLUTION}³ ({4 * MAX_FINAL_RESOLUTION**3 / 2**30:.0f} GiB of values) is allowed",
        )


@dataclass(frozen=True)
class InputSpec:
    """What the network takes and how an input is prepared for it (``input`` block).

    Attributes:
        kind: ``image``, ``points``, ``voxels`` or ``none`` (unconditional models).
        n_points: points fed to the encoder (None: all of them).
        noise: Gaussian std (canonical units) added to a cloud before encoding.
        normalize: ``centre`` (bounding-box centre, longest side 1) for object clouds.
        image_size: network input side in pixels.
        margin: blank border around the object's box, as a share of the crop side.
        background: ``auto``, or how a photo's background is found.
        render_size: side in pixels the object is rendered at before resizing (None: as given).
        resolution: voxel grid side.
        convention: ``cell_centre`` (ONet) or ``linspace`` (ConvONet): where a voxel's centre lies.
        frame: an image model's output frame, one of :data:`OUTPUT_FRAMES`.
    """

    kind: str
    n_points: int | None = None
    noise: float = 0.0
    normalize: str = "centre"
    image_size: int = 224
    margin: float = DEFAULT_MARGIN
    background: str = "auto"
    render_size: int | None = None
    resolution: int = 32
    convention: str = "cell_centre"
    frame: str = "canonical"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "input") -> "InputSpec":
        data = _known(cls, data)
        values: dict[str, Any] = {"kind": _check_choice(where, "kind", data.get("kind", "none"), INPUT_KINDS)}
        if data.get("n_points") is not None:
            values["n_points"] = check_number(where, "n_points", data["n_points"], low=1, high=MAX_POINTS, integer=True)
        if "noise" in data:
            values["noise"] = check_number(where, "noise", data["noise"], low=0.0, high=1.0)
        if "normalize" in data:
            values["normalize"] = _check_text(where, "normalize", data["normalize"])
        if "image_size" in data:
            values["image_size"] = check_number(where, "image_size", data["image_size"], low=8, high=MAX_IMAGE_SIZE, integer=True)
        if "margin" in data:
            values["margin"] = check_number(where, "margin", data["margin"], low=0.0, high=0.9)
        if "background" in data:
            values["background"] = _check_text(where, "background", data["background"])
        if data.get("render_size") is not None:
            values["render_size"] = check_number(where, "render_size", data["render_size"], low=8, high=MAX_IMAGE_SIZE, integer=True)
        if "resolution" in data:
            values["resolution"] = check_number(where, "resolution", data["resolution"], low=2, high=MAX_GRID_RESOLUTION, integer=True)
        if "convention" in data:
            values["convention"] = _check_choice(where, "convention", data["convention"], ("cell_centre", "linspace"))
        if "frame" in data:
            values["frame"] = _check_choice(where, "frame", data["frame"], OUTPUT_FRAMES)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The keys that matter for this kind of input, as config files have always held them."""
        keys = {
            "image": ("image_size", "margin", "background", "render_size", "frame"),
            "points": ("n_points", "noise", "normalize"),
            "voxels": ("resolution", "convention"),
        }.get(self.kind, ())
        defaults = InputSpec(kind=self.kind)
        data: dict[str, Any] = {"kind": self.kind}
        for key in keys:
            value = getattr(self, key)
            # Keys a config never held stay out unless set, so files round-trip unchanged.
            if key in ("n_points", "noise", "image_size", "resolution", "convention") or value != getattr(defaults, key):
                data[key] = value
        return data


@dataclass(frozen=True)
class SceneSpec:
    """How a crop model runs over a scene (``scene`` block; see :mod:`occrecon.scene`).

    Attributes:
        unit_size: the model's voxel edge in its own frame (when the architecture states none).
        voxel_size_m: that edge in metres for a scan in metres.
        query_vol_size: query-crop edge in voxels (upstream's demo: 90).
        mise_resolution: coarse MISE cells per query crop.
        mise_upsampling_steps: MISE levels per crop.
        max_points_per_crop: input points per crop above which a crop is subsampled.
        extra: the block's other keys (upstream's settings, kept as records).
    """

    unit_size: float = 0.02
    voxel_size_m: float | None = None
    query_vol_size: int = 90
    mise_resolution: int = 32
    mise_upsampling_steps: int = 2
    max_points_per_crop: int = 200_000
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "scene") -> "SceneSpec":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values: dict[str, Any] = {"extra": {k: v for k, v in data.items() if k not in names}}
        if "unit_size" in data:
            values["unit_size"] = check_number(where, "unit_size", data["unit_size"], low=0.0, high=1e6, open_low=True)
        if data.get("voxel_size_m") is not None:
            values["voxel_size_m"] = check_number(where, "voxel_size_m", data["voxel_size_m"], low=0.0, high=1e6, open_low=True)
        if "query_vol_size" in data:
            values["query_vol_size"] = check_number(where, "query_vol_size", data["query_vol_size"], low=1, high=MAX_GRID_RESOLUTION, integer=True)
        if "mise_resolution" in data:
            values["mise_resolution"] = check_number(where, "mise_resolution", data["mise_resolution"], low=2, high=MAX_MISE_RESOLUTION, integer=True)
        if "mise_upsampling_steps" in data:
            values["mise_upsampling_steps"] = check_number(where, "mise_upsampling_steps", data["mise_upsampling_steps"], low=0, high=MAX_UPSAMPLING_STEPS, integer=True)
        if "max_points_per_crop" in data:
            values["max_points_per_crop"] = check_number(where, "max_points_per_crop", data["max_points_per_crop"], low=1, high=MAX_POINTS, integer=True)
        made = cls(**values)
        check_lattice(where, made.mise_resolution, made.mise_upsampling_steps)
        return made

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        if self.voxel_size_m is None:
            data.pop("voxel_size_m")
        return {**data, **self.extra}


# ---------------------------------------------------------------------------------------
# The architecture block: checked for shape and size before any network is built.
# ---------------------------------------------------------------------------------------
_METHODS = ("onet", "convonet")
_SIZE_LIMITS = {
    "c_dim": MAX_WIDTH,
    "z_dim": MAX_WIDTH,
    "hidden_dim": MAX_WIDTH,
    "hidden_size": MAX_WIDTH,
    "start_filts": MAX_WIDTH,
    "f_maps": MAX_WIDTH,
    "in_channels": MAX_WIDTH,
    "out_channels": MAX_WIDTH,
    "plane_resolution": MAX_PLANE_RESOLUTION,
    "grid_resolution": MAX_GRID_RESOLUTION,
    "depth": 8,
    "num_levels": 8,
    "n_blocks": 64,
}
"""Integer architecture settings and their largest allowed value (the rest must be small too: see ``_check_architecture``)."""


def check_architecture(data: Any, where: str = "architecture") -> dict[str, Any]:
    """A plain, bounded architecture block: the method is known, names are strings, every size is a small positive integer.

    The network builder then validates names and combinations; parameter counts are
    checked on the meta device before any weight is allocated (``occrecon.loading``).
    """
    block = _check_mapping(where, "architecture", data)
    assert block is not None
    if block.get("method") == "depthfirst":
        return _check_depthfirst(block, where)
    if block.get("method") == "shape":
        return _check_shape(block, where)
    _check_choice(where, "architecture.method", block.get("method"), _METHODS)
    for key in ("encoder", "decoder", "encoder_latent"):
        _check_text(where, f"architecture.{key}", block.get(key), optional=True)
    for key in ("encoder_kwargs", "decoder_kwargs"):
        _check_mapping(where, f"architecture.{key}", block.get(key, {}))
    _check_sizes(where, "architecture", block)
    if "padding" in block:
        check_number(where, "architecture.padding", block["padding"], low=0.0, high=1.0)
    return block


def _check_depthfirst(block: dict[str, Any], where: str) -> dict[str, Any]:
    """The two-stage image model's block: a point-map network's widths and a completion architecture (not itself two-stage)."""
    pointmap = _check_mapping(where, "architecture.pointmap", block.get("pointmap", {})) or {}
    widths = pointmap.get("widths", [128, 96, 64, 48, 32])
    if not isinstance(widths, list) or len(widths) != 5:
        raise InvalidModelFolderError(f"{where}: architecture.pointmap.widths must list 5 channel counts")
    for width in widths:
        check_number(where, "architecture.pointmap.widths", width, low=1, high=MAX_WIDTH, integer=True)
    if "n_points" in block:
        check_number(where, "architecture.n_points", block["n_points"], low=16, high=MAX_POINTS, integer=True)
    if "dilate" in block:
        check_number(where, "architecture.dilate", block["dilate"], low=0, high=32, integer=True)
    completion = _check_mapping(where, "architecture.completion", block.get("completion"))
    if completion is None or completion.get("method") == "depthfirst":
        raise InvalidModelFolderError(f"{where}: architecture.completion must be an ONet or ConvONet architecture")
    check_architecture(completion, f"{where}: completion")
    return block


SHAPE_ACTIVATIONS = ("relu", "sine")
"""The activations of a fitted shape's network (``occrecon.nets.shape``); no other is ever built in their place."""


def _check_shape(block: dict[str, Any], where: str) -> dict[str, Any]:
    """One fitted shape's block (``occrecon fit``): its activation, its size, and the frame its meshes go back to."""
    _check_choice(where, "architecture.activation", block.get("activation"), SHAPE_ACTIVATIONS)
    check_number(where, "architecture.hidden_size", block.get("hidden_size"), low=1, high=MAX_WIDTH, integer=True)
    check_number(where, "architecture.n_layers", block.get("n_layers"), low=1, high=64, integer=True)
    if "fourier_features" in block:
        check_number(where, "architecture.fourier_features", block["fourier_features"], low=1, high=MAX_WIDTH, integer=True)
    for key in ("fourier_scale", "omega_0"):
        if key in block:
            check_number(where, f"architecture.{key}", block[key], low=0.0, high=1e4, open_low=True)
    frame = _check_mapping(where, "architecture.frame", block.get("frame")) or {}
    center = frame.get("center")
    if not isinstance(center, list) or len(center) != 3:
        raise _problem(where, "architecture.frame.center must list 3 numbers")
    for value in center:
        check_number(where, "architecture.frame.center", value, low=-1e12, high=1e12)
    check_number(where, "architecture.frame.scale", frame.get("scale"), low=0.0, high=1e12, open_low=True)
    half = frame.get("half_extent", [0.5, 0.5, 0.5])
    if not isinstance(half, list) or len(half) != 3:
        raise _problem(where, "architecture.frame.half_extent must list 3 numbers")
    for value in half:
        check_number(where, "architecture.frame.half_extent", value, low=0.0, high=0.5)
    return block


def _check_sizes(where: str, path: str, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{path}.{key}"
            if key in _SIZE_LIMITS:
                check_number(where, name, item, low=0, high=_SIZE_LIMITS[key], integer=True)
            else:
                _check_sizes(where, name, item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_sizes(where, path, item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        # Any other number (unit sizes, paddings, flags written as numbers) is bounded too.
        check_number(where, path, value, low=-1e6, high=1e6)


# ---------------------------------------------------------------------------------------
# The whole config
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """Everything a model folder's ``config.json`` says: what the network is, what it takes, how to extract, where it came from.

    Attributes:
        name: registry name of the model.
        task: one of :data:`TASKS`.
        architecture: what :func:`occrecon.nets.build_network` consumes (upstream's layout, checked by :func:`check_architecture`).
        input: how inputs are prepared.
        generation: extraction and object-cloud defaults.
        scene: sliding-window settings of a crop model (None for object models).
        description: one line for ``occrecon models``.
        upstream: for converted upstream checkpoints: file, URL, licence, citation.
        source: conversion record (the checkpoint's file, hash, iteration).
        training: training record (data, steps, wall time, validation figures).
        base_model: the model a training run started from.
        extra: any other top-level keys, kept so that a file round-trips.
    """

    name: str
    task: str
    architecture: dict[str, Any]
    input: InputSpec
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)
    scene: SceneSpec | None = None
    description: str = ""
    upstream: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    base_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str = "config.json") -> "ModelConfig":
        """Validate a parsed ``config.json`` (untrusted) and type it; raises :class:`InvalidModelFolderError` naming the problem."""
        if not isinstance(data, Mapping):
            raise _problem(where, f"must hold a JSON object, got {type(data).__name__}")
        _check_json_tree(where, "config", data, depth=0)
        for key in ("task", "architecture"):
            if key not in data:
                raise _problem(where, f"missing {key!r}")
        task = _check_choice(where, "task", data["task"], TASKS)
        architecture = check_architecture(data["architecture"], where)
        input_block = _check_mapping(where, "input", data.get("input", {}))
        generation = _check_mapping(where, "generation", data.get("generation", {})) or {}
        if "padding" not in generation and "padding" in architecture:
            generation["padding"] = architecture["padding"]  # older configs state it only there
        scene = _check_mapping(where, "scene", data.get("scene"), optional=True)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(
            name=_check_text(where, "name", data.get("name", "")) or "",
            task=task,
            architecture=architecture,
            input=InputSpec.from_dict(input_block or {}, f"{where}: input"),
            generation=GenerationDefaults.from_dict(generation, f"{where}: generation"),
            scene=None if scene is None else SceneSpec.from_dict(scene, f"{where}: scene"),
            description=_check_text(where, "description", data.get("description", "")) or "",
            upstream=_check_mapping(where, "upstream", data.get("upstream"), optional=True),
            source=_check_mapping(where, "source", data.get("source"), optional=True),
            training=_check_mapping(where, "training", data.get("training"), optional=True),
            base_model=_check_text(where, "base_model", data.get("base_model"), optional=True),
            extra={k: v for k, v in data.items() if k not in known and k not in ("format", "format_version")},
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` layout (format version 1)."""
        data: dict[str, Any] = {"format": "occrecon", "format_version": FORMAT_VERSION, "name": self.name, "task": self.task}
        if self.description:
            data["description"] = self.description
        data["architecture"] = self.architecture
        data["input"] = self.input.to_dict()
        data["generation"] = self.generation.to_dict()
        if self.scene is not None:
            data["scene"] = self.scene.to_dict()
        for key in ("upstream", "source", "training", "base_model"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        data.update(self.extra)
        return data

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (``generation=...``, ``training=...``)."""
        return dataclasses.replace(self, **changes)

    def with_generation(self, **changes: Any) -> "ModelConfig":
        """A copy whose generation defaults have some fields changed."""
        return self.replace(generation=dataclasses.replace(self.generation, **changes))

    @property
    def padding(self) -> float:
        """The canonical box's padding: the generation block's, else the architecture's."""
        return self.generation.padding

    @property
    def takes(self) -> str:
        """The kind of input the network takes (``points`` for a scene model, ``none`` for unconditional ones)."""
        return {"scene": "points", "unconditional": "none", "shape": "none"}.get(self.task, self.task)


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that ``cls`` has fields for (a config's unknown keys are ignored, as before)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}
