"""`occrecon image|points|voxels`: many inputs, one model, one mesh per input.

Each command only declares its flags; they are gathered into the library's own
settings objects (:class:`~occrecon.options.ReconstructOptions` for the
reconstruction, :class:`~occrecon.batch.BatchOptions` for the outputs, and
:class:`CommandLine` for what only a command line has) and handed to
:func:`run_reconstruction`, which checks usage, plans the outputs, loads the model
and shows the batch's progress.

The library is imported inside the functions, not at the top: ``occrecon --help``
builds these commands without paying for torch (2-3 s).
"""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from occrecon.cli import _output as out
from occrecon.cli._options import (
    AnchorOpt,
    BatchSizeOpt,
    DebugOpt,
    DeviceOpt,
    FillRuleOpt,
    FitStepsOpt,
    FormatOpt,
    InputNoiseOpt,
    InputsArg,
    JsonOpt,
    MaskOpt,
    MiseOpt,
    ModelOpt,
    NormalizeOpt,
    OutputDirOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    RecursiveOpt,
    RefineOpt,
    ResolutionOpt,
    RevisionOpt,
    RotationsOpt,
    SaveInputOpt,
    SceneOpt,
    SeedOpt,
    ShardOpt,
    SimplifyOpt,
    ThreadsOpt,
    ThresholdOpt,
    TrimOpt,
    UnitsOpt,
    UpOpt,
    VoxelUpOpt,
    UpsamplingOpt,
    VoxelSizeOpt,
    WindingOpt,
)


@dataclass(frozen=True)
class CommandLine:
    """What only the command line has: which model, where outputs go, which inputs, how to report."""

    inputs: list[str]
    model: str | None = None
    revision: str | None = None
    device: str = "auto"
    threads: int | None = None
    output: str | None = None
    output_dir: Path | None = None
    shard: str | None = None
    recursive: bool = False
    quiet: bool = False
    json_output: bool = False


def split_parameters(parameters: dict[str, Any]) -> tuple[Any, Any, CommandLine]:
    """A command's parameters as (:class:`ReconstructOptions`, :class:`BatchOptions`, :class:`CommandLine`); each belongs to exactly one."""
    from occrecon.batch import BatchOptions
    from occrecon.options import ReconstructOptions

    groups = [ReconstructOptions, BatchOptions, CommandLine]
    names = [{f.name for f in dataclasses.fields(group)} for group in groups]
    stray = set(parameters) - set().union(*names)
    if stray:  # a flag added to a command but to none of the settings objects: a bug, caught by the tests
        raise TypeError(f"command parameters {sorted(stray)} belong to no settings object")
    made = [group(**{k: v for k, v in parameters.items() if k in fields}) for group, fields in zip(groups, names)]
    return made[0], made[1], made[2]


def image_command(
    inputs: InputsArg,
    model: ModelOpt = None,
    output: OutputOpt = None,
    output_dir: OutputDirOpt = None,
    file_format: FormatOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    revision: RevisionOpt = None,
    threshold: ThresholdOpt = None,
    resolution: ResolutionOpt = None,
    upsampling_steps: UpsamplingOpt = None,
    refine: RefineOpt = None,
    simplify: SimplifyOpt = None,
    points_batch_size: BatchSizeOpt = None,
    mise_rule: MiseOpt = None,
    mask: MaskOpt = None,
    save_input: SaveInputOpt = False,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
    recursive: RecursiveOpt = False,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Reconstruct meshes from photos or renders (PNG, JPEG, WebP, BMP, TIFF)."""
    raise typer.Exit(run_command("image", dict(locals())))


def points_command(
    inputs: InputsArg,
    model: ModelOpt = None,
    output: OutputOpt = None,
    output_dir: OutputDirOpt = None,
    file_format: FormatOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    revision: RevisionOpt = None,
    threshold: ThresholdOpt = None,
    resolution: ResolutionOpt = None,
    upsampling_steps: UpsamplingOpt = None,
    refine: RefineOpt = None,
    simplify: SimplifyOpt = None,
    points_batch_size: BatchSizeOpt = None,
    mise_rule: MiseOpt = None,
    save_input: SaveInputOpt = False,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
    recursive: RecursiveOpt = False,
    scene: SceneOpt = None,
    units: UnitsOpt = None,
    voxel_size: VoxelSizeOpt = None,
    up: UpOpt = None,
    trim: TrimOpt = True,
    input_noise: InputNoiseOpt = None,
    rotations: RotationsOpt = None,
    fit_steps: FitStepsOpt = None,
    winding: WindingOpt = None,
    anchor_points: AnchorOpt = None,
    normalize: NormalizeOpt = True,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Reconstruct meshes from point clouds (PLY, PCD, XYZ/PTS/TXT, NPY, NPZ, OBJ/OFF/STL vertices, LAS/LAZ); whole rooms with --scene."""
    raise typer.Exit(run_command("points", dict(locals())))


def voxels_command(
    inputs: InputsArg,
    model: ModelOpt = None,
    output: OutputOpt = None,
    output_dir: OutputDirOpt = None,
    file_format: FormatOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    revision: RevisionOpt = None,
    threshold: ThresholdOpt = None,
    resolution: ResolutionOpt = None,
    upsampling_steps: UpsamplingOpt = None,
    refine: RefineOpt = None,
    simplify: SimplifyOpt = None,
    points_batch_size: BatchSizeOpt = None,
    mise_rule: MiseOpt = None,
    save_input: SaveInputOpt = False,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
    recursive: RecursiveOpt = False,
    fill_rule: FillRuleOpt = "auto",
    up: VoxelUpOpt = None,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Reconstruct meshes from voxel grids (binvox, NPY/NPZ 3-D arrays)."""
    raise typer.Exit(run_command("voxels", dict(locals())))


# ---------------------------------------------------------------------------------------
# The shared run
# ---------------------------------------------------------------------------------------
def _usage(message: str) -> typer.BadParameter:
    return typer.BadParameter(message)


def _output_target(output: str | None, output_dir: Path | None) -> tuple[Path | None, Path | None]:
    """``-o`` as (file, folder): an existing folder, or a path written with a trailing slash, is a folder."""
    if output is None:
        return None, output_dir
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        return None, Path(output)
    return Path(output), output_dir


def _output_format(output: Path | None, file_format: str | None) -> str:
    """The mesh format: ``--format``, else ``-o``'s suffix, else OBJ; a suffix that names no format, or another one, is refused."""
    from occrecon.io.mesh import MESH_FORMATS, check_format

    chosen = check_format(file_format) if file_format else None
    if output is None:
        return chosen or "obj"
    suffix = output.suffix.lower().lstrip(".")
    if suffix in MESH_FORMATS:
        if chosen is not None and chosen != suffix:
            raise ValueError(f"-o {output} says .{suffix} but --format says {chosen}; give one of them")
        return suffix
    if chosen is None:
        named = f"its suffix '.{suffix}'" if suffix else "it has no suffix"
        raise ValueError(f"-o {output}: {named} names no mesh format; use {', '.join('.' + f for f in MESH_FORMATS)} or add --format")
    return chosen


def _plan(kind: str, batch: Any, cli: CommandLine) -> tuple[Any, Any]:
    """Check the flags that need no model, expand the inputs and plan each one's output: (plan, batch options with the format)."""
    from occrecon.batch import plan_batch
    from occrecon.io.paths import expand_inputs, parse_shard, select_shard
    from occrecon.io.readers import IMAGE_SUFFIXES, POINT_SUFFIXES, VOXEL_SUFFIXES

    if cli.output is not None and cli.output_dir is not None:
        raise _usage("use either -o/--output or --output-dir, not both")
    try:
        output_file, output_dir = _output_target(cli.output, cli.output_dir)
        file_format = _output_format(output_file, batch.file_format)
        shard = parse_shard(cli.shard)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    suffixes = {"image": IMAGE_SUFFIXES, "points": POINT_SUFFIXES, "voxels": VOXEL_SUFFIXES}[kind]
    items = select_shard(expand_inputs(cli.inputs, set(suffixes), recursive=cli.recursive), shard)
    if output_file is not None and len(items) > 1:
        raise _usage(f"-o/--output names one file but {len(items)} inputs were given; use --output-dir (or -o DIR/)")
    if batch.mask is not None and len(items) > 1:
        raise _usage("--mask applies to one image; give one input")
    plan = plan_batch(items, file_format=file_format, output=output_file, output_dir=output_dir)
    return plan, dataclasses.replace(batch, file_format=file_format)


def _on_disk(name: str) -> bool:
    """Whether loading ``name`` needs no download: a folder, a bundled model, or an upstream model converted before."""
    from occrecon import hub, registry, upstream

    entry = registry.get_entry(name)
    if entry is None:
        try:
            return Path(name).expanduser().is_dir()
        except OSError:  # a name too long for a path: load_model says what is wrong with it
            return False
    if entry.source == "bundled" or upstream.cached_model(name) is not None:
        return True
    return entry.repo_id is not None and hub.is_cached(entry.repo_id, entry.revision)


def run_command(kind: str, parameters: dict[str, Any]) -> int:
    """A command's parameters → its exit code: the CPU threads first, then :func:`run_reconstruction`.

    First, because OpenMP reads the thread count and its wait policy once, when torch loads
    it, and gathering the parameters into the library's settings objects imports torch.
    """
    apply_threads(parameters.get("threads"))
    return run_reconstruction(kind, *split_parameters(parameters))


def apply_threads(threads: int | None) -> Any:
    """``--threads`` (None: ``OMP_NUM_THREADS``, else the cores free to this process) for this process (:func:`occrecon.threads.set_threads`)."""
    from occrecon.threads import set_threads

    try:
        return set_threads(threads)
    except ValueError as exc:
        raise _usage(str(exc)) from None


def run_reconstruction(kind: str, options: Any, batch: Any, cli: CommandLine) -> int:
    """The body of the three commands; returns the exit code."""
    from occrecon import registry
    from occrecon.batch import run_batch
    from occrecon.device import resolve_device
    from occrecon.loading import load_model
    from occrecon.options import OptionError
    from occrecon.pipeline import ModelOnDemand

    try:
        options.validate(kind)
        resolve_device(cli.device)
    except OptionError as exc:
        raise _usage(str(exc)) from None
    plan, batch = _plan(kind, batch, cli)
    name = cli.model or registry.default_model("scene" if options.scene else kind)
    # A spinner for a model on disk; a download draws its own bar, which a spinner would garble.
    with out.status(f"loading model {name}") if not cli.quiet and _on_disk(name) else nullcontext():
        loaded = load_model(name, cli.device, revision=cli.revision, progress=not cli.quiet)
    if options.scene and loaded.task != "scene":
        raise _usage(f"--scene needs a scene model; {loaded.name} is a {loaded.task} model")
    scene_model = None
    if kind == "points" and cli.model is None and options.scene is None:
        # Clouds far larger than an object switch to the scene model, loaded on first need.
        scene_name = registry.default_model("scene")
        scene_model = ModelOnDemand(lambda: load_model(scene_name, cli.device, revision=cli.revision, progress=not cli.quiet))
    for message in loaded.notes:  # e.g. "no GPU found", said once for the batch
        out.note(message, cli.quiet)
    display = BatchDisplay(kind, plan, cli, said=list(loaded.notes))
    with display:
        results = run_batch(loaded, kind, plan, options, batch, scene_model=scene_model, on_stage=display.stage, on_note=display.note)
        for result in results:
            display.show(result, batch.debug)
    display.summary(loaded)
    return 1 if display.counts["failed"] else 0


class BatchDisplay:
    """What a batch shows while it runs: a live bar in a terminal, plain lines in a log file, one JSON object per input with ``--json``."""

    def __init__(self, kind: str, plan: Any, cli: CommandLine, said: list[str]):
        self.plan = plan
        self.cli = cli
        self.said = said  # notes printed at the start, not repeated per input
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.started = time.perf_counter()
        self.plain = out.logs_plainly(cli.quiet)
        self.item_start = self.last_line = 0.0
        self.told: list[str] = []  # notes printed while their input ran (a scene's units, sparse points)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stage]}", style="dim", markup=False),
            console=out.stderr,
            disable=cli.quiet,
            transient=False,
        )
        self.task = self.progress.add_task(f"{kind} → mesh", total=len(plan.items), stage="")

    def __enter__(self) -> "BatchDisplay":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def _current(self) -> Any:
        return self.plan.items[min(sum(self.counts.values()), len(self.plan.items) - 1)][0].path

    def stage(self, stage: str) -> None:
        self.progress.update(self.task, stage=out.safe_text(stage))
        if not self.plain:
            return
        # In a log file, an input that runs for minutes (a scene's crops) says where it is once a minute.
        now = time.monotonic()
        if stage == "reading input":  # the first stage of every input
            self.item_start = self.last_line = now
        elif now - self.last_line >= out.LOG_INTERVAL_S:
            self.last_line = now
            out.plain(f"  {self._current()}: {stage} ({out.clock(now - self.item_start)})")

    def note(self, name: str, message: str) -> None:
        self.told.append(message)
        out.item_note(name, message, self.cli.quiet)

    def show(self, result: Any, debug: bool) -> None:
        self.counts[result.status] += 1
        told_now, self.told = self.told, []
        self.progress.advance(self.task)
        self.progress.update(self.task, stage="")
        if self.cli.json_output:
            out.print_json(result.as_json())
        if result.status == "failed":
            if debug and result.traceback:
                out.print_traceback(result.traceback)
            out.error(result.error or f"{result.input}: failed")
        elif result.status == "ok" and not self.cli.quiet:
            out.ok_line(result.input, result.output, f"{result.vertices} vertices, {result.faces} faces, {result.seconds:.2f} s")
            for message in result.notes:
                if message not in told_now and message not in self.said:
                    out.detail(message)
        elif result.status == "skipped":
            out.skipped_line(result.input, result.notes[0], quiet=self.cli.quiet)

    def summary(self, model: Any) -> None:
        import torch

        elapsed = time.perf_counter() - self.started
        counts = self.counts
        count = torch.get_num_threads()
        threads = f", {count} CPU thread{'s' if count != 1 else ''}" if str(model.device) == "cpu" else ""
        out.plain(
            f"{counts['ok']} done, {counts['skipped']} skipped, {counts['failed']} failed in {elapsed:.1f} s with {model.name} on {model.device}{threads}",
            quiet=self.cli.quiet,
        )


def iter_commands() -> Iterator[tuple[str, Any]]:
    """The three reconstruction commands, by name."""
    yield "image", image_command
    yield "points", points_command
    yield "voxels", voxels_command
