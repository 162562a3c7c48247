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
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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
    RayActorsOpt,
    RayAddressOpt,
    RayOpt,
    RecursiveOpt,
    RefineOpt,
    ResolutionOpt,
    RevisionOpt,
    RotationsOpt,
    SaveInputOpt,
    PreviewOpt,
    ColourOpt,
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
    ray: bool = False
    ray_address: str | None = None
    ray_actors: int | None = None


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
    preview: PreviewOpt = False,
    colour: ColourOpt = True,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
    recursive: RecursiveOpt = False,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
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
    preview: PreviewOpt = False,
    colour: ColourOpt = True,
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
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
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
    preview: PreviewOpt = False,
    colour: ColourOpt = True,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
    recursive: RecursiveOpt = False,
    fill_rule: FillRuleOpt = "auto",
    up: VoxelUpOpt = None,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
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


def _check_task_early(name: str, kind: str, scene: bool | None) -> None:
    """A registered model that takes another input than the command's is a usage error before anything loads."""
    from occrecon import registry

    entry = registry.get_entry(name)
    if entry is None:
        return  # a folder or Hub id: its config says, once loaded
    takes = {"scene": "points", "unconditional": "none"}.get(entry.task, entry.task)
    if takes != kind:
        raise _usage(f"model {name} takes {takes} input ({entry.task} model), not {kind}; pick another --model (see `occrecon models`)")
    if scene and entry.task != "scene":
        raise _usage(f"--scene needs a scene model; {name} is a {entry.task} model")


def _load(name: str, kind: str, options: Any, cli: CommandLine) -> tuple[Any, Any]:
    """The model (a spinner while it loads from disk), and the scene model a cloud may switch to, loaded on first need."""
    from occrecon import registry
    from occrecon.loading import load_model
    from occrecon.pipeline import ModelOnDemand

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
    return loaded, scene_model


def run_reconstruction(kind: str, options: Any, batch: Any, cli: CommandLine) -> int:
    """The body of the three commands; returns the exit code.

    Everything that needs no model comes first: the flags, the inputs, the outputs, and which
    outputs are already there from the same input (skipped) or from something else (refused);
    a model is loaded only when some input is left to reconstruct.
    """
    from occrecon import registry
    from occrecon.batch import BatchPlan, run_batch, triage
    from occrecon.device import resolve_device
    from occrecon.io.provenance import Request
    from occrecon.options import OptionError

    try:
        options.validate(kind)
        resolve_device(cli.device)
    except OptionError as exc:
        raise _usage(str(exc)) from None
    if not cli.ray and (cli.ray_address or cli.ray_actors):
        raise _usage("--ray-address and --ray-actors apply with --ray")
    plan, batch = _plan(kind, batch, cli)
    name = cli.model or registry.default_model("scene" if options.scene else kind)
    _check_task_early(name, kind, options.scene)
    request = Request.of(kind, name, cli.revision, options, batch.mask)
    decided = triage(plan, request, batch.overwrite)
    todo = BatchPlan([entry for entry, result in zip(plan.items, decided) if result is None])
    display = BatchDisplay(kind, todo, cli, said=[])
    for result in decided:  # skipped, missing, refused: said at once, before any model loads
        if result is not None:
            display.show(_on_driver(result) if cli.ray else result, batch.debug, decided=True)
    loaded = None
    if todo.items and cli.ray:
        loaded = _run_on_ray(kind, name, todo, (options, batch, request), cli, display)
    elif todo.items:
        loaded, scene_model = _load(name, kind, options, cli)
        for message in loaded.notes:  # e.g. "no GPU found", said once for the batch
            out.note(message, cli.quiet)
        display.said = list(loaded.notes)
        with display:
            results = run_batch(loaded, kind, todo, options, batch, request=request, scene_model=scene_model, on_stage=display.stage, on_note=display.note)
            for result in results:
                display.show(result, batch.debug)
    display.summary(loaded)
    return 1 if display.counts["failed"] else 0


def _on_driver(result: Any) -> Any:
    from occrecon.cluster import on_driver

    return on_driver(result)


def _run_on_ray(kind: str, name: str, todo: Any, settings: tuple[Any, Any, Any], cli: CommandLine, display: BatchDisplay) -> Any:
    """``--ray``: the inputs left to do on a Ray cluster (:mod:`occrecon.cluster`); returns what ran them, for the summary."""
    from occrecon.cluster import ClusterJob, ClusterOptions, ClusterRun

    options, batch, request = settings
    # A cloud far larger than an object switches to the scene model, as on one machine.
    scene_model = _default_scene() if kind == "points" and cli.model is None and options.scene is None else None
    job = ClusterJob(kind, name, cli.revision, cli.device, options, batch, request, scene_model)
    with ClusterRun(job, ClusterOptions(cli.ray_address, cli.ray_actors)) as run:
        with out.status("starting Ray actors") if not cli.quiet else nullcontext():
            run.start()
        out.note(f"running on {run.device}", cli.quiet)
        with display:
            for result in run.results(todo):
                display.show(result, batch.debug)
    return run


def _default_scene() -> str:
    from occrecon import registry

    return registry.default_model("scene")


_STEPS = re.compile(r"^(?P<name>.*?)\s*(?P<done>\d+)/(?P<total>\d+)$")


@dataclass
class StageClock:
    """Where one input is: its stage, and for a stage counted in steps (``fitting step 12/60``,
    ``MISE level 2/3``, ``crop 88/144``) the steps and the time left, from the pace since the
    stage's first step was heard."""

    name: str = ""
    done: int | None = None
    total: int | None = None
    first: tuple[int, float] | None = None

    def update(self, stage: str, now: float) -> None:
        match = _STEPS.match(stage)
        if match is None:
            self.name, self.done, self.total, self.first = stage, None, None, None
            return
        name, done, total = match["name"], int(match["done"]), int(match["total"])
        if name != self.name or total != self.total or self.done is None or done < self.done:
            self.first = (done, now)  # a new stage (or a new round of it): its pace starts here
        self.name, self.done, self.total = name, done, total

    def seconds_left(self, now: float) -> float | None:
        if self.first is None or self.done is None or self.total is None or self.done <= self.first[0]:
            return None
        pace = (now - self.first[1]) / (self.done - self.first[0])
        return pace * (self.total - self.done)

    def text(self, now: float) -> str:
        """``fitting step 12/60, about 0m20s left``."""
        if self.done is None:
            return self.name
        left = self.seconds_left(now)
        return f"{self.name} {self.done}/{self.total}" + (f", about {out.clock(left)} left" if left is not None else "")


class BatchDisplay:
    """What a batch shows while it runs: in a terminal, a live bar of the inputs (for several) and of
    the current input's stage, in steps with the time left; in a log file, plain lines, one a minute
    for an input that runs longer; with ``--json``, one JSON object per input on stdout."""

    def __init__(self, kind: str, plan: Any, cli: CommandLine, said: list[str]):
        import threading

        self.plan = plan
        self.cli = cli
        self.said = said  # notes printed at the start, not repeated per input
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.decided = 0  # results shown before the batch ran (skipped, refused): not items of the plan
        self.started = time.perf_counter()
        self.plain = out.logs_plainly(cli.quiet)
        self.live = not cli.quiet and out.stderr.is_terminal
        self.interval_s = out.LOG_INTERVAL_S
        self.clock = StageClock()
        self.item_start: float | None = None
        self.next_line = 0.0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.ticker: Any = None
        self.told: list[str] = []  # notes printed while their input ran (a scene's units, sparse points)
        # In a log file a live bar shows nothing until it ends, and then a cut-off line: plain lines there instead.
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[steps]}", markup=False),
            TimeElapsedColumn(),
            TextColumn("{task.fields[left]}", style="dim", markup=False),
            console=out.stderr,
            disable=not self.live,
            transient=True,
        )
        many = len(plan.items) > 1
        self.task = self.progress.add_task(f"{kind} → mesh", total=len(plan.items), steps=f"0/{len(plan.items)}", left="", visible=many)
        self.stage_task = self.progress.add_task("", total=None, steps="", left="", visible=False)

    def __enter__(self) -> "BatchDisplay":
        import threading

        self.progress.__enter__()
        if self.plain:
            self.ticker = threading.Thread(target=self._tick, name="occrecon-log-lines", daemon=True)
            self.ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join(timeout=1.0)
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def _current(self) -> Any:
        done = sum(self.counts.values()) - self.decided
        return self.plan.items[max(0, min(done, len(self.plan.items) - 1))][0].path

    def stage(self, stage: str) -> None:
        now = time.monotonic()
        line = None
        with self.lock:
            first = stage == "reading input"  # the first stage of every input starts its clock
            if first:
                self.item_start, self.next_line = now, now + self.interval_s
            self.clock.update(stage, now)
            clock = self.clock
            left = clock.seconds_left(now)
            if self.plain and not first and self.item_start is not None and now >= self.next_line:  # a minute since the last line
                self.next_line = now + self.interval_s
                line = self._where(now)
        if line is not None:
            out.plain(line)
        if self.live:
            steps = f"{clock.done}/{clock.total}" if clock.done is not None else ""
            self.progress.update(
                self.stage_task, description=out.safe_text(f"  {clock.name}"), total=clock.total, completed=clock.done or 0,
                steps=steps, left="" if left is None else f"about {out.clock(left)} left", visible=True,
            )

    def _where(self, now: float) -> str:
        """``  chair.ply: fitting step 40/60, about 0m25s left (1m00s)``."""
        return f"  {self._current()}: {self.clock.text(now)} ({out.clock(now - (self.item_start or now))})"

    def _tick(self) -> None:
        """In a log file: for an input that runs over a minute, where it is, once a minute, also while a
        stage says nothing (a thread that sleeps in between, at least half a second)."""
        while True:
            with self.lock:
                wait = self.interval_s if self.item_start is None else self.next_line - time.monotonic()
            if self.stopped.wait(max(0.5, wait)):
                return
            with self.lock:
                now = time.monotonic()
                if self.item_start is None or now < self.next_line:
                    continue
                self.next_line = now + self.interval_s
                line = self._where(now)
            out.plain(line)

    def note(self, name: str, message: str) -> None:
        self.told.append(message)
        out.item_note(name, message, self.cli.quiet)

    def show(self, result: Any, debug: bool, decided: bool = False) -> None:
        self.counts[result.status] += 1
        self.decided += decided
        told_now, self.told = self.told, []
        with self.lock:
            self.item_start = None
            self.clock = StageClock()
        if not decided:
            done = sum(self.counts.values()) - self.decided
            self.progress.update(self.task, completed=done, steps=f"{done}/{len(self.plan.items)}", left=self._batch_left(done))
            self.progress.update(self.stage_task, visible=False)
        if self.cli.json_output:
            out.print_json(result.as_json())
        if result.status == "failed":
            if debug and result.traceback:
                out.print_traceback(result.traceback)
            out.error(result.error or f"{result.input}: failed")
        elif result.status == "ok" and not self.cli.quiet:
            out.ok_line(result.input, result.output, f"{result.vertices} vertices, {result.faces} faces, {result.seconds:.2f} s")
            if result.preview:
                out.detail(f"preview: {result.preview}")
            for message in result.notes:
                if message not in told_now and message not in self.said:
                    out.detail(message)
        elif result.status == "skipped":
            out.skipped_line(result.input, result.notes[0], quiet=self.cli.quiet)

    def _batch_left(self, done: int) -> str:
        remaining = len(self.plan.items) - done
        if not done or not remaining:
            return ""
        return f"about {out.clock((time.perf_counter() - self.started) / done * remaining)} left"

    def summary(self, model: Any) -> None:
        elapsed = time.perf_counter() - self.started
        counts = self.counts
        text = f"{counts['ok']} done, {counts['skipped']} skipped, {counts['failed']} failed in {elapsed:.1f} s"
        if model is None:
            text += " (no model loaded: nothing was left to reconstruct)"
        else:
            import torch

            count = torch.get_num_threads()
            threads = f", {count} CPU thread{'s' if count != 1 else ''}" if str(model.device) == "cpu" else ""
            text += f" with {model.name} on {model.device}{threads}"
        out.plain(text, quiet=self.cli.quiet)


def iter_commands() -> Iterator[tuple[str, Any]]:
    """The three reconstruction commands, by name."""
    yield "image", image_command
    yield "points", points_command
    yield "voxels", voxels_command
