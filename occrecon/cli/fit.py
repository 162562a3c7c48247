"""`occrecon fit`: one occupancy network per mesh, and `occrecon extract`: mesh a saved one again.

The commands only declare flags, gather them into :class:`~occrecon.shape_fit.FitOptions`
and :class:`~occrecon.shape_batch.ShapeBatch`, and show the batch (:mod:`occrecon.shape_batch`
does the work). The library is imported inside the functions: ``occrecon --help`` pays no torch.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any, Iterable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from occrecon.cli import _output as out
from occrecon.cli._options import (
    DebugOpt,
    DeviceOpt,
    FormatOpt,
    InputsArg,
    JsonOpt,
    OutputDirOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    RecursiveOpt,
    ShardOpt,
    ThreadsOpt,
)

__all__ = ["extract_command", "fit_command"]

ActivationOpt = Annotated[str, typer.Option("--activation", help="relu (ReLU layers on random Fourier features) or sine (SIREN's sine layers and initialisation).")]
WidthOpt = Annotated[Optional[int], typer.Option("--width", min=1, max=2048, help="Channels of each hidden layer. [default: 128]", show_default=False)]
DepthOpt = Annotated[Optional[int], typer.Option("--depth", min=1, max=32, help="Hidden layers. [default: 4]", show_default=False)]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", min=0, max=1_000_000, help="Adam steps. [default: 2000]", show_default=False)]
FitBatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Labelled points per step. [default: 8192]", show_default=False)]
FitResolutionOpt = Annotated[Optional[int], typer.Option("--resolution", min=2, max=512, help="Coarse MISE cells per axis. [default: 64]", show_default=False)]
FitUpsamplingOpt = Annotated[Optional[int], typer.Option("--upsampling-steps", min=0, max=6, help="MISE subdivisions; final lattice resolution·2^steps. [default: 2, i.e. 256³]", show_default=False)]
FitThresholdOpt = Annotated[Optional[float], typer.Option("--threshold", "-t", help="Occupancy probability of the surface. [default: 0.5]", show_default=False)]
SaveModelOpt = Annotated[Optional[Path], typer.Option("--save-model", help="Also save the fitted network as a model folder (config.json, model.safetensors, README.md): this folder for one input, DIR/<stem>/ for each of several. It loads with load_model and meshes again with `occrecon extract`.")]
FitSeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seeds the labelled points, the initial weights and the batches.")]


def fit_command(
    inputs: InputsArg,
    output: OutputOpt = None,
    output_dir: OutputDirOpt = None,
    file_format: FormatOpt = None,
    save_model: SaveModelOpt = None,
    activation: ActivationOpt = "sine",
    width: WidthOpt = None,
    depth: DepthOpt = None,
    steps: StepsOpt = None,
    batch_size: FitBatchOpt = None,
    resolution: FitResolutionOpt = None,
    upsampling_steps: FitUpsamplingOpt = None,
    threshold: FitThresholdOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    seed: FitSeedOpt = 0,
    shard: ShardOpt = None,
    recursive: RecursiveOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fit an occupancy network to each closed mesh (.obj, .ply, .off, .stl, .glb) and write its surface, in the mesh's own frame and units.

    A mesh that is not closed is filled as `occrecon eval` fills one, with a note; one that encloses no volume fails with one line.
    """
    from occrecon.cli.reconstruct import apply_threads

    apply_threads(threads)  # before torch loads: OpenMP reads its thread count once
    chosen = dict(activation=activation, width=width, depth=depth, steps=steps, batch_size=batch_size, resolution=resolution,
                  upsampling_steps=upsampling_steps, threshold=threshold, device=device, seed=seed)
    options = _fit_options({k: v for k, v in chosen.items() if v is not None})
    plan, batch = _plan(inputs, output, output_dir, file_format, shard, recursive)
    batch = dataclasses.replace(batch, save_model=save_model, single=len(plan.items) == 1, overwrite=overwrite, debug=debug)
    raise typer.Exit(_show(_fit_results(plan, options, batch, quiet), len(plan.items), quiet, json_output, debug, f"fit ({options.activation})"))


def _fit_options(values: dict[str, Any]) -> Any:
    from occrecon.device import resolve_device
    from occrecon.errors import OptionError
    from occrecon.shape_fit import FitOptions

    try:
        resolve_device(values.get("device", "auto"))
        return FitOptions(**values).validate()
    except OptionError as exc:
        raise typer.BadParameter(str(exc)) from None


def _plan(inputs: list[str], output: str | None, output_dir: Path | None, file_format: str | None, shard: str | None, recursive: bool) -> tuple[Any, Any]:
    """The flags that need no network checked, the meshes found and each one's output planned (exit 2 on a usage problem)."""
    from occrecon.batch import plan_batch
    from occrecon.cli.reconstruct import _output_format, _output_target
    from occrecon.evaluation import MESH_SUFFIXES
    from occrecon.io.paths import expand_inputs, parse_shard, select_shard
    from occrecon.shape_batch import ShapeBatch

    if output is not None and output_dir is not None:
        raise typer.BadParameter("use either -o/--output or --output-dir, not both")
    try:
        output_file, folder = _output_target(output, output_dir)
        fmt = _output_format(output_file, file_format)
        items = select_shard(expand_inputs(inputs, set(MESH_SUFFIXES), recursive=recursive), parse_shard(shard))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if output_file is not None and len(items) > 1:
        raise typer.BadParameter(f"-o/--output names one file but {len(items)} inputs were given; use --output-dir (or -o DIR/)")
    return plan_batch(items, file_format=fmt, output=output_file, output_dir=folder), ShapeBatch(file_format=fmt)


def _fit_results(plan: Any, options: Any, batch: Any, quiet: bool) -> Iterable[Any]:
    """The batch's results, with a bar of the fit's steps while each input runs."""
    from occrecon.shape_batch import fit_batch

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=out.stderr, disable=quiet, transient=True)
    with progress:
        task = progress.add_task("", total=None)

        def stage(name: str) -> None:
            progress.update(task, description=out.safe_text(name), completed=0, total=options.steps if name.startswith("fitting") else None)

        def step(index: int) -> None:
            progress.update(task, completed=index + 1)

        yield from fit_batch(plan, options, batch, on_stage=stage, on_step=step)


def _show(results: Iterable[Any], total: int, quiet: bool, json_output: bool, debug: bool, what: str) -> int:
    """Print each result as it comes (one line, or one JSON object), then a summary; the exit code (1 when some failed)."""
    import torch

    counts = {"ok": 0, "skipped": 0, "failed": 0}
    started = time.perf_counter()
    for result in results:
        counts[result.status] += 1
        if json_output:
            out.print_json(result.as_json())
        if result.status == "failed":
            if debug and result.traceback:
                out.print_traceback(result.traceback)
            out.error(result.error or f"{result.input}: failed")
        elif result.status == "ok" and not quiet:
            out.ok_line(result.input, result.output, f"{result.vertices} vertices, {result.faces} faces, {result.seconds:.1f} s")
            for message in result.notes:
                out.detail(message)
        elif result.status == "skipped":
            out.skipped_line(result.input, result.notes[0], quiet=quiet)
    threads = torch.get_num_threads()
    out.plain(f"{counts['ok']} done, {counts['skipped']} skipped, {counts['failed']} failed of {total} in {time.perf_counter() - started:.1f} s: {what}, {threads} CPU thread{'s' if threads != 1 else ''}", quiet=quiet)
    return 1 if counts["failed"] else 0


def extract_command(
    models: Annotated[list[Path], typer.Argument(help="Model folders saved by `occrecon fit --save-model`.", show_default=False)],
    output: OutputOpt = None,
    output_dir: OutputDirOpt = None,
    file_format: FormatOpt = None,
    resolution: Annotated[Optional[int], typer.Option("--resolution", min=2, max=512, help="Coarse MISE cells per axis. [default: the fit's]", show_default=False)] = None,
    upsampling_steps: Annotated[Optional[int], typer.Option("--upsampling-steps", min=0, max=6, help="MISE subdivisions. [default: the fit's]", show_default=False)] = None,
    threshold: FitThresholdOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Mesh fitted shapes (`occrecon fit --save-model`) again, at any resolution, in the fitted mesh's own frame and units."""
    from occrecon.cli.reconstruct import _output_format, _output_target, apply_threads
    from occrecon.shape_batch import extract_batch

    apply_threads(threads)
    if output is not None and output_dir is not None:
        raise typer.BadParameter("use either -o/--output or --output-dir, not both")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise typer.BadParameter(f"--threshold is a probability strictly between 0 and 1, got {threshold}")
    try:
        output_file, folder = _output_target(output, output_dir)
        fmt = _output_format(output_file, file_format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if output_file is not None and len(models) > 1:
        raise typer.BadParameter(f"-o/--output names one file but {len(models)} models were given; use --output-dir")
    targets = [output_file or (folder or Path(".")) / f"{Path(str(m).rstrip('/')).name}.{fmt}" for m in models]
    settings = dict(resolution=resolution, upsampling_steps=upsampling_steps, threshold=threshold)
    results = extract_batch(list(models), targets, settings, device=device, overwrite=overwrite, file_format=fmt, debug=debug)
    raise typer.Exit(_show(results, len(models), quiet, json_output, debug, "extract"))
