"""Reconstruction settings: one typed object, validated once, resolved against a model once.

:class:`ReconstructOptions` holds every setting a user can give a reconstruction
(the CLI's flags map one to one onto its fields; a test keeps them in step).
``None`` means "the model's default": :meth:`ReconstructOptions.resolve` fills those
from the model's :class:`~occrecon.config.GenerationDefaults` and checks every
value and every combination in one place, returning a :class:`ResolvedOptions`
with nothing left open. That object is what travels down the pipeline, in the
way faster-whisper builds its ``TranscriptionOptions`` once.

:class:`ExtractionOptions` and :class:`SceneOptions` are the two groups that the
Python API took before; they still work and are folded into one object.

This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from occrecon.config import (
    MAX_ROTATIONS,
    MAX_STEPS,
    MISE_RULES,
    GenerationDefaults,
    ModelConfig,
    check_generation_value,
    check_lattice,
)
from occrecon.errors import InvalidModelFolderError, OptionError

if TYPE_CHECKING:
    from occrecon.loading import OccupancyModel

UNITS = ("m", "cm", "mm", "ft", "us-ft")
"""Names ``--units`` takes (see :data:`occrecon.io.crs.UNITS_PER_METRE`)."""

UP_AXES = ("y", "z", "x", "-y", "-z", "-x", "auto")
"""Names ``--up`` takes: an axis (see :func:`occrecon.frames.up_rotation`), or ``auto``, found from a cloud's points (:mod:`occrecon.orientation`)."""

MAX_INPUT_NOISE = 1.0
"""Canonical units: the object's longest side is 1, so more noise than this erases it."""

MAX_QUERY_ROWS = 10_000_000
UPSTREAM_QUERY_ROWS = 100_000
"""Upstream's Generator3D evaluates its queries in batches of this many (``points_batch_size``)."""
MAX_SEED = 2**63 - 1

OBJECT_CLOUD_FIELDS = ("input_noise", "rotations", "fit_steps", "winding", "anchor_points", "normalize")
"""Settings that apply to object clouds only (not to images, voxels or the sliding window)."""

SCENE_FIELDS = ("scene", "units", "voxel_size", "up", "trim")
"""Settings of point clouds as scenes (``up`` applies to object clouds too)."""

VOXEL_FIELDS = ("fill_rule",)
"""Settings that apply to voxel grids only."""

FILL_RULES = ("any", "centre", "auto")
"""Names ``--fill-rule`` takes: how a grid's cells were filled (see :mod:`occrecon.preprocess.voxels`)."""

_FLAGS = {
    "input_noise": "--input-noise",
    "rotations": "--rotations",
    "fit_steps": "--fit-steps",
    "winding": "--winding-prior",
    "anchor_points": "--anchor-points",
    "points_batch_size": "--points-batch-size",
    "upsampling_steps": "--upsampling-steps",
    "voxel_size": "--voxel-size",
    "mise_rule": "--mise",
    "normalize": "--no-normalize",
    "colour": "--no-colour",
}


def flag_of(name: str) -> str:
    """The command-line flag of an option field (``fit_steps`` → ``--fit-steps``)."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _named(name: str) -> str:
    return f"{name} ({flag_of(name)})"


def _number(name: str, value: Any, *, low: float, high: float, integer: bool = False, open_low: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (not integer or float(value).is_integer())
    if ok and math.isfinite(value) and low <= value <= high and not (open_low and value == low):
        return
    what = "an integer" if integer else "a finite number"
    bound = f"{'(' if open_low else '['}{low:g}, {high:g}]"
    raise OptionError(f"{_named(name)} must be {what} in {bound}, got {value!r}")


@dataclass(frozen=True)
class ReconstructOptions:
    """Every setting of a reconstruction; ``None`` takes the model's default.

    Extraction (all inputs):
        threshold: occupancy probability of the surface.
        resolution: coarse MISE cells per axis.
        upsampling_steps: MISE subdivision levels (final lattice: resolution · 2^steps).
        refine: gradient refinement steps of the vertices after marching cubes.
        simplify: decimate to about this many faces.
        points_batch_size: decoder rows (query points × ensemble members) per forward
            pass (None: what suits the model's device, ``OccupancyModel.query_rows``).
        seed: seeds subsampling, input noise, rotations, fitting and refinement.
        mise_rule: ``occrecon`` or ``upstream``: whose MISE refines the lattice (upstream's also
            evaluates the network with upstream's arithmetic, so its mesh is upstream's exactly).

    Object clouds (``points`` only):
        input_noise: Gaussian std (canonical units) added before encoding (0 for scans
            that carry that much noise already).
        rotations: encode under this many rotations and average (:class:`~occrecon.field.RotationEnsemble`).
        fit_steps: fit the encoding to the points for this many steps (:mod:`occrecon.fitting`).
        winding: add the winding-number prior of the points (:mod:`occrecon.winding`).
        anchor_points: MISE also subdivides every coarse cell near an input point.
        normalize: move and scale the cloud's box into the canonical frame (False: use the
            coordinates as given, e.g. data already in ShapeNet's frame).

    Point clouds as scenes (``points`` only):
        scene: True forces the sliding window, False the object path, None decides per
            cloud from its size (when a scene model is on offer).
        units: ``m``, ``cm``, ``mm``, ``ft`` or ``us-ft`` (None: a LAS/LAZ header's, else guessed).
        voxel_size: scene voxel edge in metres (None: the model's).
        up: the cloud's up axis (objects too; voxel grids take it as well); ``auto`` finds it from
            the points; None takes what the format says (LAS/LAZ: z), else ``auto`` (y where
            the points do not say clearly).
        trim: drop scene surface farther than the model's trim distance from every point.

    Colours (all inputs):
        colour: give the mesh vertex colours where the input has them: a coloured cloud's
            (nearest points) or a photo's (seen through the model's camera, hidden sides
            filled from the seen ones); False leaves the mesh plain (:mod:`occrecon.colour`).

    Voxel grids (``voxels`` only):
        fill_rule: how the grid's cells were filled: ``any`` (a cell filled when any part of
            it is inside: binvox's rule, ShapeNet's, the models'), ``centre`` (when its centre
            is inside: turned into the models' rule before encoding) or ``auto`` (a binvox
            file's is binvox's; an array's is looked for in the grid, see
            :func:`~occrecon.preprocess.voxels.detect_fill_rule`).
    """

    threshold: float | None = None
    resolution: int | None = None
    upsampling_steps: int | None = None
    refine: int | None = None
    simplify: int | None = None
    points_batch_size: int | None = None
    seed: int = 0
    mise_rule: str | None = None
    input_noise: float | None = None
    rotations: int | None = None
    fit_steps: int | None = None
    winding: bool | None = None
    anchor_points: bool | None = None
    normalize: bool = True
    scene: bool | None = None
    units: str | None = None
    voxel_size: float | None = None
    up: str | None = None
    trim: bool = True
    fill_rule: str = "auto"
    colour: bool = True

    def replace(self, **changes: Any) -> "ReconstructOptions":
        return dataclasses.replace(self, **changes)

    def validate(self, kind: str) -> None:
        """Check every value given and every combination for an input ``kind``; raise :class:`OptionError` naming the first problem.

        ``kind`` is ``image``, ``points`` or ``voxels``. Nothing here needs the model.
        """
        for name in ("threshold", "resolution", "upsampling_steps"):
            value = getattr(self, name)
            if value is not None:
                _checked_generation(name, value)
        if self.refine is not None:
            _number("refine", self.refine, low=0, high=MAX_STEPS, integer=True)
        if self.simplify is not None:
            _number("simplify", self.simplify, low=4, high=2**31, integer=True)
        if self.points_batch_size is not None:
            _number("points_batch_size", self.points_batch_size, low=1, high=MAX_QUERY_ROWS, integer=True)
        _number("seed", self.seed, low=0, high=MAX_SEED, integer=True)
        if self.resolution is not None and self.upsampling_steps is not None:
            _checked_lattice(self.resolution, self.upsampling_steps)
        if kind != "points":
            # Values that would change nothing (one rotation, no fitting, off) are let through, as before.
            idle = {"rotations": (None, 1), "fit_steps": (None, 0), "winding": (None, False), "anchor_points": (None, False), "input_noise": (None,), "normalize": (True,)}
            refused = [name for name in OBJECT_CLOUD_FIELDS if getattr(self, name) not in idle[name]]
            if refused:
                raise OptionError(f"{_named(refused[0])} applies to point clouds, not to {kind} input")
        if self.input_noise is not None:
            _number("input_noise", self.input_noise, low=0.0, high=MAX_INPUT_NOISE)
        if self.rotations is not None:
            _number("rotations", self.rotations, low=1, high=MAX_ROTATIONS, integer=True)
        if self.fit_steps is not None:
            _number("fit_steps", self.fit_steps, low=0, high=MAX_STEPS, integer=True)
        for name in ("winding", "anchor_points", "scene"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise OptionError(f"{_named(name)} is true, false or None, got {value!r}")
        for name in ("normalize", "colour"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{_named(name)} is true or false, got {getattr(self, name)!r}")
        if self.mise_rule is not None and self.mise_rule not in MISE_RULES:
            raise OptionError(f"--mise must be one of {', '.join(MISE_RULES)}, got {self.mise_rule!r}")
        if self.units is not None and (not isinstance(self.units, str) or self.units.lower() not in UNITS):
            raise OptionError(f"--units must be one of {', '.join(UNITS)}, got {self.units!r}")
        if self.up is not None and self.up not in UP_AXES:
            raise OptionError(f"--up must be one of {', '.join(UP_AXES)}, got {self.up!r}")
        if self.up is not None and kind == "image":
            raise OptionError("--up applies to point clouds and voxel grids, not to image input (a photo has no 3-D frame)")
        if self.up == "auto" and kind == "voxels":
            raise OptionError("--up auto applies to point clouds; give a voxel grid's up axis (y, z, x, -y, -z or -x)")
        if self.voxel_size is not None:
            _number("voxel_size", self.voxel_size, low=0.001, high=100.0)
        _check_fill_rule(self.fill_rule, kind)

    def resolve(self, model: "OccupancyModel", kind: str) -> "ResolvedOptions":
        """Validate, then fill every ``None`` from ``model``'s config: the one place where model defaults meet user settings."""
        self.validate(kind)
        return self.resolve_config(model.config, kind, model.query_rows)

    def resolve_config(self, config: ModelConfig, kind: str, query_rows: int) -> "ResolvedOptions":
        """:meth:`resolve` from a config and the decoder rows that suit the device (no network needed)."""
        defaults: GenerationDefaults = config.generation
        objects = kind == "points" and config.task != "scene"

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        resolution = int(pick(self.resolution, defaults.resolution))
        upsampling_steps = int(pick(self.upsampling_steps, defaults.upsampling_steps))
        _checked_lattice(resolution, upsampling_steps)
        mise_rule = str(pick(self.mise_rule, defaults.mise_rule))
        idle = {"rotations": 1, "fit_steps": 0, "winding": False, "anchor_points": False, "normalize": True}
        asked = [name for name, off in idle.items() if getattr(self, name) not in (None, off)]
        return ResolvedOptions(
            threshold=float(pick(self.threshold, defaults.threshold)),
            resolution=resolution,
            upsampling_steps=upsampling_steps,
            refine=int(pick(self.refine, defaults.refinement_steps)),
            simplify=pick(self.simplify, defaults.simplify_faces),
            # Upstream's rule comes with upstream's 100,000 queries per pass: ONet's logits differ in the
            # last bit between batch sizes, and the mesh is to be upstream's exactly.
            points_batch_size=int(pick(self.points_batch_size, UPSTREAM_QUERY_ROWS if mise_rule == "upstream" else query_rows)),
            seed=int(self.seed),
            mise_rule=mise_rule,
            input_noise=float(pick(self.input_noise, config.input.noise)),
            rotations=int(pick(self.rotations, defaults.rotations)) if objects else 1,
            fit_steps=int(pick(self.fit_steps, defaults.fit_steps)) if objects else 0,
            winding=bool(pick(self.winding, defaults.winding_prior)) and objects,
            anchor_points=bool(pick(self.anchor_points, defaults.anchor_points)) and objects,
            normalize=bool(self.normalize) or not objects,
            object_flags_asked=tuple(flag_of(name) for name in asked),
            scene=self.scene,
            units=self.units,
            voxel_size=self.voxel_size,
            up=self.up,
            trim=self.trim,
            fill_rule=self.fill_rule,
            user=self,
            colour=self.colour,
        )

    @classmethod
    def combine(cls, options: "ReconstructOptions | ExtractionOptions | None" = None, scene: "SceneOptions | None" = None, **fields: Any) -> "ReconstructOptions":
        """One options object from the API's older groups (:class:`ExtractionOptions`, :class:`SceneOptions`) and keyword fields."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown reconstruction option {unknown[0]!r}; the options are the fields of ReconstructOptions")
        values: dict[str, Any] = {}
        if isinstance(options, ReconstructOptions):
            values.update(dataclasses.asdict(options))
        elif isinstance(options, ExtractionOptions):
            values.update({k: v for k, v in dataclasses.asdict(options).items() if v is not None})
        elif options is not None:
            raise TypeError(f"options must be ReconstructOptions or ExtractionOptions, not {type(options).__name__}")
        if scene is not None:
            values.update(scene=scene.scene, units=scene.units, voxel_size=scene.voxel_size, up=scene.up, trim=scene.trim)
        values.update(fields)
        return cls(**values)


@dataclass(frozen=True)
class ResolvedOptions:
    """:class:`ReconstructOptions` with every default filled from one model (made by :meth:`ReconstructOptions.resolve`).

    ``object_flags_asked`` names the object-cloud flags the user set, which a scene's
    sliding window ignores (and says so). ``user`` keeps what the user gave, so that a
    scene model loaded later resolves the same settings against its own defaults.
    """

    threshold: float
    resolution: int
    upsampling_steps: int
    refine: int
    simplify: int | None
    points_batch_size: int
    seed: int
    mise_rule: str
    input_noise: float
    rotations: int
    fit_steps: int
    winding: bool
    anchor_points: bool
    normalize: bool
    object_flags_asked: tuple[str, ...]
    scene: bool | None
    units: str | None
    voxel_size: float | None
    up: str | None
    trim: bool
    fill_rule: str
    user: ReconstructOptions
    colour: bool = True


def _check_fill_rule(fill_rule: Any, kind: str) -> None:
    if fill_rule not in FILL_RULES:
        raise OptionError(f"--fill-rule must be one of {', '.join(FILL_RULES)}, got {fill_rule!r}")
    if kind != "voxels" and fill_rule != "auto":  # auto, the default, changes nothing elsewhere
        raise OptionError(f"--fill-rule applies to voxel grids, not to {kind} input")


def _checked_generation(name: str, value: Any) -> None:
    try:
        check_generation_value("options", name, value)
    except InvalidModelFolderError as exc:
        raise OptionError(str(exc).replace("options: ", "").replace(name, _named(name), 1)) from None


def _checked_lattice(resolution: int, upsampling_steps: int) -> None:
    try:
        check_lattice("options", resolution, upsampling_steps)
    except InvalidModelFolderError as exc:
        raise OptionError(str(exc).replace("options: ", "") + "; lower --resolution or --upsampling-steps") from None


# ---------------------------------------------------------------------------------------
# The groups the Python API took before ReconstructOptions (still accepted).
# ---------------------------------------------------------------------------------------
@dataclass
class ExtractionOptions:
    """How the field becomes a mesh; ``None`` means the model's default (a part of :class:`ReconstructOptions`)."""

    threshold: float | None = None
    resolution: int | None = None
    upsampling_steps: int | None = None
    refine: int | None = None
    simplify: int | None = None
    points_batch_size: int | None = None

    def resolved(self, model: "OccupancyModel") -> ResolvedOptions:
        """These settings with the model's defaults filled in (for any input kind)."""
        return ReconstructOptions.combine(self).resolve(model, model.config.takes if model.config.takes != "none" else "points")


@dataclass
class SceneOptions:
    """How point clouds are treated as scenes (a part of :class:`ReconstructOptions`).

    ``scene_model``: the crop model for clouds that turn out to be scenes, or a function
    that loads it, called once, when the first scene turns up (it is kept as a
    :class:`~occrecon.loading.ModelOnDemand`).
    """

    scene: bool | None = None
    scene_model: Any = None
    units: str | None = None
    voxel_size: float | None = None
    trim: bool = True
    up: str | None = None

    def __post_init__(self) -> None:
        from occrecon.loading import ModelOnDemand, OccupancyModel  # here: building options needs no torch otherwise

        if callable(self.scene_model) and not isinstance(self.scene_model, (OccupancyModel, ModelOnDemand)):
            self.scene_model = ModelOnDemand(self.scene_model)


OptionsLike = Union[ReconstructOptions, ExtractionOptions, None]
