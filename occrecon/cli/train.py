"""`occrecon train`: train an image, points or voxels model on procedural shapes or your meshes."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, NoReturn, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from occrecon.cli import _output as out
from occrecon.cli._options import DeviceOpt, JsonOpt, QuietOpt

if TYPE_CHECKING:
    from occrecon.training import StepReport, TrainConfig


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit s, m or h (``90m``, ``1.5h``, ``600``)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    value = text.strip().lower()
    scale = units.get(value[-1:], None)
    number = value[:-1] if scale is not None else value
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration such as 600, 45m or 2h", param_hint="--max-time") from None
    if not seconds > 0 or seconds == float("inf"):
        raise typer.BadParameter(f"{text!r}: the duration must be positive", param_hint="--max-time")
    return seconds


class LogLines:
    """Progress as plain lines for a log file (nohup, a cluster job), where a live bar shows nothing until the end.

    A line at most every ``interval_s`` seconds (default ``LOG_INTERVAL_S``), plus one at every
    validation and at the end of data generation and of training.
    """

    def __init__(self, print_line: Callable[[str], None], steps: int, budget_s: float | None, interval_s: float | None = None) -> None:
        self.print_line, self.steps, self.budget_s = print_line, steps, budget_s
        self.interval_s = out.LOG_INTERVAL_S if interval_s is None else interval_s
        self.start = time.monotonic()
        self.last_line = -float("inf")
        self.first_step: tuple[int, float] | None = None

    def _due(self, final: bool) -> bool:
        now = time.monotonic()
        if final or now - self.last_line >= self.interval_s:
            self.last_line = now
            return True
        return False

    def data(self, done: int, total: int) -> None:
        if self._due(done >= total):
            self.print_line(f"data: {done}/{total} shapes ready ({out.clock(time.monotonic() - self.start)})")

    def step(self, report: "StepReport") -> None:
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = (report.step, now)
        validated = report.val_iou is not None
        if not self._due(validated or report.step >= self.steps):
            return
        line = f"step {report.step}/{self.steps}: loss {report.loss:.1f}, {report.shapes_per_second:.1f} shapes/s, {out.clock(now - self.start)}"
        first, since = self.first_step
        if self.budget_s is None and report.step > first and report.step < self.steps:
            seconds_per_step = (now - since) / (report.step - first)
            line += f", about {out.clock(seconds_per_step * (self.steps - report.step))} left"
        if validated:
            line += f", val IoU {report.val_iou:.3f} (best {report.best_iou:.3f})"
        self.print_line(line)


def _fail(message: str) -> NoReturn:
    """One escaped error line, exit 2 (where to write is a setup problem)."""
    out.error(message)
    raise typer.Exit(2)


def _folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be a folder to write in (it is a file, a file is on its way, ...); None when it can."""
    if folder.exists():
        return None if folder.is_dir() else f"{folder}: exists and is not a folder"
    if folder.is_symlink():
        return f"{folder}: a broken symbolic link"
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        return f"{folder}: {parent} is a file, not a folder"
    return None


class Task(str, Enum):
    image = "image"
    points = "points"
    voxels = "voxels"
    scene = "scene"
    partial = "partial"
    pointmap = "pointmap"


def train_command(
    task: Annotated[Task, typer.Argument(help="What the model reconstructs from.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, then the model folder.")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimisation steps.")] = 20_000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Shapes per step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Peak Adam learning rate.")] = 5e-4,
    queries: Annotated[int, typer.Option("--queries", min=1, help="Occupancy samples per shape and step.")] = 2048,
    max_time: Annotated[
        Optional[str],
        typer.Option("--max-time", help="Training-time budget (600, 45m, 2h): stop at --steps or when it is spent; the learning rate decays over whichever ends first."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out exactly where it stopped.")] = False,
    device: DeviceOpt = "auto",
    data: Annotated[Optional[Path], typer.Option("--data", help="Train on this folder of watertight meshes instead of procedural shapes.")] = None,
    from_model: Annotated[Optional[str], typer.Option("--from", help="Start from this model (name, Hub id or folder) and fine-tune.")] = None,
    shapes: Annotated[int, typer.Option("--shapes", min=2, help="Procedural shapes (rooms for scene) to generate.")] = 4000,
    val_shapes: Annotated[int, typer.Option("--val-shapes", min=1, help="Held-out shapes for validation IoU.")] = 64,
    val_every: Annotated[int, typer.Option("--val-every", min=1, help="Validate every N steps.")] = 500,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Dataset folder. [default: ~/.cache/occrecon/datasets/...]")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Data processes.")] = 1,
    views: Annotated[int, typer.Option("--views", min=1, max=64, help="partial: views (one-sided clouds) per shape.")] = 2,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Turn and mirror points/voxels training items about y (objects face any way).")] = True,
    any_up: Annotated[bool, typer.Option("--any-up/--upright", help="Augment with all 48 axis symmetries (inputs with any axis up), not only the 8 that keep y up.")] = False,
    full_precision: Annotated[bool, typer.Option("--fp32", help="Store float32 weights (default float16).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the training data (the procedural shapes and their samples), the batches and the initial weights: the same seed and flags give the same run.")] = 0,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Train a model on procedural shapes (scene: rooms) or your meshes; the run folder becomes a model folder."""
    from occrecon.training import TrainConfig

    if data is not None and not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder of meshes", param_hint="--data")
    for option, folder in (("--out", out_dir), ("--cache", cache)):
        problem = None if folder is None else _folder_problem(folder)
        if problem:
            _fail(f"{option} {problem}")
    config = TrainConfig(
        task=task.value,
        out=str(out_dir),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        n_query=queries,
        n_shapes=shapes,
        val_shapes=val_shapes,
        data=str(data) if data else None,
        cache=str(cache) if cache else None,
        seed=seed,
        val_every=val_every,
        workers=workers,
        views=views,
        from_model=from_model,
        augment=augment,
        any_up=any_up,
        half=not full_precision,
        device=device,
        max_time_s=None if max_time is None else parse_duration(max_time),
    )
    if task is Task.pointmap:
        folder = _train_pointmap(config, resume=resume, quiet=quiet, json_output=json_output)
    else:
        folder = _run_with_progress(config, resume=resume, quiet=quiet, json_output=json_output)
    if task is Task.pointmap:
        weights = str(folder / "pointmap.safetensors")
        if json_output:
            out.print_json({"pointmap_weights": weights})
        elif not quiet:
            out.result_line("point-map weights: ", weights, " (occrecon.pointmap_training.assemble_image_model joins them to a completion model)")
    elif json_output:
        out.print_json({"model": str(folder)})
    elif not quiet:
        out.result_line("model folder: ", str(folder), " (load it with --model ", str(folder), ")")


def _train_pointmap(config: "TrainConfig", *, resume: bool, quiet: bool, json_output: bool) -> Path:
    """The image model's point-map network, on the partial-cloud dataset of the same shapes (generated when missing)."""
    import dataclasses

    from occrecon.data.cache import build_partial_dataset
    from occrecon.pointmap_training import PointMapTrainConfig, train_pointmap
    from occrecon.training import default_cache_dir

    dataset = config.cache or str(default_cache_dir(dataclasses.replace(config, task="partial")))
    log = LogLines(out.plain, config.steps, config.max_time_s, interval_s=0.0) if not quiet else None
    build_partial_dataset(
        dataset, config.n_shapes + config.val_shapes, config.seed, views=config.views, workers=max(1, config.workers),
        progress=(lambda done, total: log.data(done, total)) if log else None,
    )
    run = PointMapTrainConfig(
        dataset=dataset, out=config.out, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
        val_shapes=config.val_shapes, val_every=config.val_every, seed=config.seed,
        from_model=config.from_model or "onet-img-synthetic", workers=config.workers, max_time_s=config.max_time_s,
    )

    def on_line(line: str) -> None:
        if json_output:
            out.print_json({"line": line})
        elif not quiet:
            out.plain(line)

    try:
        train_pointmap(run, resume=resume, on_line=on_line)
    except OSError as error:
        _fail(out.os_error_message(error, error.filename if error.filename is not None else config.out, "cannot write") + "; the run stopped")
    return Path(config.out)


def _run_with_progress(config: "TrainConfig", *, resume: bool, quiet: bool, json_output: bool) -> Path:
    """Train with a live bar (or plain log lines in a log file); a write error ends the run with one line."""
    from occrecon.training import train

    steps, out_dir = config.steps, config.out
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}", style="dim"),
        console=out.stderr,
        # In a log file (nohup, a cluster job) the bar would show nothing until its last frame, cut off
        # at 80 columns: the log gets plain lines instead (LogLines).
        disable=quiet or not out.stderr.is_terminal,
    )
    log = LogLines(out.plain, steps, config.max_time_s) if out.logs_plainly(quiet) else None
    with progress:
        data_bar = progress.add_task("data", total=None, info="")
        train_bar = progress.add_task("train", total=steps, info="", visible=False)

        def on_data(done: int, total: int) -> None:
            progress.update(data_bar, completed=done, total=total, info="generating shapes")
            if log:
                log.data(done, total)

        last_step = [0]

        def on_step(report) -> None:
            last_step[0] = report.step
            if log:
                log.step(report)
            info = f"loss {report.loss:.1f}, {report.shapes_per_second:.1f} shapes/s"
            if report.best_iou is not None:
                info += f", val IoU {report.val_iou:.3f} (best {report.best_iou:.3f})"
            progress.update(train_bar, completed=report.step, info=info, visible=True)
            if json_output and report.val_iou is not None:
                out.print_json({"step": report.step, "loss": report.loss, "val_iou": report.val_iou})

        try:
            folder = train(config, resume=resume, on_step=on_step, on_data=on_data)
        except OSError as error:
            # A full disk, a read-only or vanished folder: one line and exit 2, as for any setup problem.
            # Checkpoints and training_state.json are written atomically, so what is on disk is still whole.
            progress.stop()
            where = error.filename if error.filename is not None else out_dir
            _fail(out.os_error_message(error, where, "cannot write") + "; the run stopped")
        if last_step[0]:  # a --max-time budget can end the run before --steps
            progress.update(train_bar, total=last_step[0], completed=last_step[0])
    return folder
