"""`occrecon image|points|voxels`: many inputs, one model, one mesh per input."""

from __future__ import annotations

import inspect
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from occrecon.cli import _output as out
from occrecon.io.crs import UNITS_PER_METRE
from occrecon.cli._options import (
    DebugOpt,
    DeviceOpt,
    FormatOpt,
    JsonOpt,
    ModelOpt,
    OutputDirOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    RevisionOpt,
    SeedOpt,
)

def _suffixes(kind: str) -> set[str]:
    from occrecon.io import readers

    table = {"image": readers.IMAGE_SUFFIXES, "points": readers.POINT_SUFFIXES, "voxels": readers.VOXEL_SUFFIXES}
    return set(table[kind])


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


def run_reconstruction(
    kind: str,
    inputs: list[str],
    *,
    model: str | None,
    revision: str | None,
    device: str,
    output: str | None,
    output_dir: Path | None,
    file_format: str | None,
    threshold: float | None,
    resolution: int | None,
    upsampling_steps: int | None,
    refine: int,
    simplify: int | None,
    points_batch_size: int | None,
    overwrite: bool,
    save_input: bool,
    mask: Path | None,
    seed: int,
    shard: str | None,
    recursive: bool,
    scene: bool | None,
    units: str | None,
    voxel_size: float | None,
    trim: bool,
    up: str | None,
    input_noise: float | None,
    rotations: int | None,
    fit_steps: int | None,
    winding: bool | None,
    anchor_points: bool | None,
    quiet: bool,
    json_output: bool,
    debug: bool,
) -> int:
    """Shared body of the three commands; returns the exit code."""
    from occrecon import registry
    from occrecon.batch import plan_batch, run_batch
    from occrecon.io.paths import expand_inputs, parse_shard, select_shard
    from occrecon.loading import load_model
    from occrecon.pipeline import ExtractionOptions, SceneOptions, check_task

    if output is not None and output_dir is not None:
        raise _usage("use either -o/--output or --output-dir, not both")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise _usage(f"--threshold is a probability strictly between 0 and 1, got {threshold}")
    try:
        output_file, output_dir = _output_target(output, output_dir)
        fmt = _output_format(output_file, file_format)
        shard_spec = parse_shard(shard)
    except ValueError as exc:
        raise _usage(str(exc)) from None

    items = select_shard(expand_inputs(inputs, _suffixes(kind), recursive=recursive), shard_spec)
    if output_file is not None and len(items) > 1:
        raise _usage(f"-o/--output names one file but {len(items)} inputs were given; use --output-dir (or -o DIR/)")
    if mask is not None and len(items) > 1:
        raise _usage("--mask applies to one image; give one input")

    if units is not None and units.lower() not in UNITS_PER_METRE:
        raise _usage(f"--units must be one of {', '.join(UNITS_PER_METRE)}, got {units!r}")
    from occrecon.frames import UP_AXES  # here: occrecon.frames imports numpy, which --help does not need

    if up is not None and up not in UP_AXES:
        raise _usage(f"--up must be one of {', '.join(UP_AXES)}, got {up!r}")
    name = model or registry.default_model("scene" if scene else kind)
    with out.stderr.status(f"loading model {name}", spinner="dots") if not quiet else nullcontext():
        loaded = load_model(name, device, revision=revision, progress=not quiet)
    check_task(loaded, kind)
    if scene and loaded.task != "scene":
        raise _usage(f"--scene needs a scene model; {loaded.name} is a {loaded.task} model")
    scene_options = SceneOptions(scene=scene, units=units, voxel_size=voxel_size, trim=trim, up=up)
    if kind == "points" and model is None and scene is None:
        # Clouds far larger than an object switch to the scene model, loaded on first need.
        scene_name = registry.default_model("scene")
        scene_options.scene_model = lambda: load_model(scene_name, device, revision=revision, progress=not quiet)
    said_at_start = list(loaded.notes)  # e.g. "no GPU found": a scene model loaded later would say it again
    for message in said_at_start:
        out.note(message, quiet)
    loaded.notes.clear()

    options = ExtractionOptions(
        threshold=threshold,
        resolution=resolution,
        upsampling_steps=upsampling_steps,
        refine=refine,
        simplify=simplify,
        points_batch_size=points_batch_size,
    )
    plan = plan_batch(items, file_format=fmt, output=output_file, output_dir=output_dir)
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    started = time.perf_counter()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stage]}", style="dim"),
        console=out.stderr,
        disable=quiet,
        transient=False,
    )
    with progress:
        task = progress.add_task(f"{kind} → mesh", total=len(plan.items), stage="")

        plain = out.logs_plainly(quiet)
        item_clock = {"start": 0.0, "last": 0.0}

        def on_stage(stage: str) -> None:
            progress.update(task, stage=stage)
            if not plain:
                return
            # In a log file, an input that runs for minutes (a scene's crops) says where it is once a minute.
            now = time.monotonic()
            if stage == "reading input":  # the first stage of every input
                item_clock.update(start=now, last=now)
            elif now - item_clock["last"] >= out.LOG_INTERVAL_S:
                item_clock["last"] = now
                current = plan.items[sum(counts.values())][0].path
                progress.console.print(f"  {current}: {stage} ({out.clock(now - item_clock['start'])})", highlight=False, markup=False)

        told: list[str] = []  # notes printed while their input ran (a scene's units, sparse points)

        def on_note(name: str, message: str) -> None:
            told.append(message)
            if not quiet:
                progress.console.print(f"[dim]  {name}: {message}[/dim]", highlight=False)

        for result in run_batch(
            loaded,
            kind,
            plan,
            options=options,
            file_format=fmt,
            overwrite=overwrite,
            save_input=save_input,
            mask=mask,
            seed=seed,
            on_stage=on_stage,
            on_note=on_note,
            keep_traceback=debug,
            scene=scene_options,
            input_noise=input_noise,
            rotations=rotations,
            fit_steps=fit_steps,
            winding=winding,
            anchor_points=anchor_points,
        ):
            counts[result.status] += 1
            told_now, told[:] = list(told), []
            progress.advance(task)
            progress.update(task, stage="")
            if json_output:
                out.print_json(result.as_json())
            if result.status == "failed":
                if debug and result.traceback:
                    out.stderr.print(result.traceback, markup=False, highlight=False)
                out.error(result.error or f"{result.input}: failed")
            elif not quiet and result.status == "ok":
                details = f"{result.vertices} vertices, {result.faces} faces, {result.seconds:.2f} s"
                progress.console.print(f"[green]✓[/green] {result.input} → {result.output} ({details})", highlight=False)
                for message in result.notes:
                    if message not in told_now and message not in said_at_start:
                        progress.console.print(f"  [dim]{message}[/dim]", highlight=False)
            elif not quiet and result.status == "skipped":
                progress.console.print(f"[yellow]↷[/yellow] {result.input}: {result.notes[0]}", highlight=False)
    if not quiet:
        elapsed = time.perf_counter() - started
        out.stderr.print(
            f"{counts['ok']} done, {counts['skipped']} skipped, {counts['failed']} failed in {elapsed:.1f} s "
            f"with {loaded.name} on {loaded.device}",
            highlight=False,
        )
    return 1 if counts["failed"] else 0


def make_command(kind: str, summary: str, exclude: tuple[str, ...] = ()) -> Callable[..., None]:
    """Build the Typer command for one input kind (the options are shared, a few kind-specific ones dropped)."""

    def command(
        inputs: Annotated[list[str], typer.Argument(help="Files, folders and glob patterns.", show_default=False)],
        model: ModelOpt = None,
        output: OutputOpt = None,
        output_dir: OutputDirOpt = None,
        file_format: FormatOpt = None,
        device: DeviceOpt = "auto",
        revision: RevisionOpt = None,
        threshold: Annotated[Optional[float], typer.Option("--threshold", "-t", help="Occupancy probability of the surface. [default: the model's; 0.2 for upstream models]")] = None,
        resolution: Annotated[Optional[int], typer.Option("--resolution", min=2, help="Coarse MISE grid cells per axis. [default: the model's; 32 for upstream models]")] = None,
        upsampling_steps: Annotated[Optional[int], typer.Option("--upsampling-steps", min=0, max=6, help="MISE subdivision levels (final grid = resolution·2^steps). [default: the model's; 2 for upstream models]")] = None,
        refine: Annotated[int, typer.Option("--refine", min=0, help="Gradient refinement steps after marching cubes (upstream demo: 30).")] = 0,
        simplify: Annotated[Optional[int], typer.Option("--simplify", min=4, help="Decimate to about this many faces.")] = None,
        points_batch_size: Annotated[
            Optional[int],
            typer.Option("--points-batch-size", min=1, help="Decoder rows (points × ensemble members) per forward pass. [default: 100000 on a GPU; on a CPU about 4 MiB of activations: 4096 for ONet, 32768 for ConvONet]"),
        ] = None,
        mask: Annotated[Optional[Path], typer.Option("--mask", help="Object mask image (white = object) for a photo without alpha.")] = None,
        save_input: Annotated[bool, typer.Option("--save-input", help="Also save what the network saw (<stem>.input.png/.ply).")] = False,
        overwrite: OverwriteOpt = False,
        shard: Annotated[Optional[str], typer.Option("--shard", help="K/N: process every N-th input starting at K. [default: from SLURM_ARRAY_TASK_ID/COUNT]")] = None,
        recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders of folder inputs.")] = False,
        scene: Annotated[Optional[bool], typer.Option("--scene/--no-scene", help="Treat clouds as scenes (sliding window) or objects. [default: scene when the cloud is over 4 m across and no --model is given]")] = None,
        units: Annotated[Optional[str], typer.Option("--units", help="Scene units: m, cm, mm, ft or us-ft. [default: what a LAS/LAZ header states, else guessed, with a note]")] = None,
        voxel_size: Annotated[Optional[float], typer.Option("--voxel-size", min=0.001, help="Scene voxel edge in metres. [default: the model's]")] = None,
        up: Annotated[Optional[str], typer.Option("--up", help="The cloud's up axis: y, z, x, -y, -z or -x; it is turned y-up for the network and back. [default: z for LAS/LAZ (elevation), else y]")] = None,
        trim: Annotated[bool, typer.Option("--trim/--no-trim", help="Scenes: drop surface farther than 1.5 voxels from every point (wall backs, floor undersides the scan cannot see).")] = True,
        input_noise: Annotated[Optional[float], typer.Option("--input-noise", min=0.0, help="Gaussian noise (std, canonical units) added to an object cloud before encoding, as upstream does at test time; 0 for scans that are as noisy already. [default: model's, 0.005]")] = None,
        rotations: Annotated[Optional[int], typer.Option("--rotations", min=1, help="Encode an object cloud under this many rotations (identity + random) and average: a few times slower, better where parts overlap in the model's plane projections; 1 for one pass. [default: the model's]")] = None,
        fit_steps: Annotated[Optional[int], typer.Option("--fit-steps", min=0, help="Fit the cloud's encoding to its points for this many steps, so the surface passes through them: about 2-3 s more per object on a CPU; 0 turns it off. [default: the model's]")] = None,
        winding: Annotated[Optional[bool], typer.Option("--winding-prior/--no-winding-prior", help="Add the winding number of the cloud's own points (normals signed by the network) to the network's field away from them: decides inside and outside where the network confuses overlapping parts. [default: the model's]")] = None,
        anchor_points: Annotated[Optional[bool], typer.Option("--anchor-points/--no-anchor-points", help="MISE: also subdivide every coarse cell near an input point, so parts thinner than a coarse cell are not lost between its corners. [default: the model's]")] = None,
        seed: SeedOpt = 0,
        quiet: QuietOpt = False,
        json_output: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        code = run_reconstruction(
            kind,
            inputs,
            model=model,
            revision=revision,
            device=device,
            output=output,
            output_dir=output_dir,
            file_format=file_format,
            threshold=threshold,
            resolution=resolution,
            upsampling_steps=upsampling_steps,
            refine=refine,
            simplify=simplify,
            points_batch_size=points_batch_size,
            overwrite=overwrite,
            save_input=save_input,
            mask=mask,
            seed=seed,
            shard=shard,
            recursive=recursive,
            scene=scene,
            units=units,
            up=up,
            voxel_size=voxel_size,
            trim=trim,
            input_noise=input_noise,
            rotations=rotations,
            fit_steps=fit_steps,
            winding=winding,
            anchor_points=anchor_points,
            quiet=quiet,
            json_output=json_output,
            debug=debug,
        )
        raise typer.Exit(code)

    signature = inspect.signature(command, eval_str=True)
    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name not in exclude]
    )
    command.__doc__ = summary
    command.__name__ = f"{kind}_command"
    return command


_SCENE_OPTIONS = ("scene", "units", "voxel_size", "trim", "up")
image_command = make_command(
    "image",
    "Reconstruct meshes from photos or renders (PNG, JPEG, WebP, BMP, TIFF).",
    exclude=(*_SCENE_OPTIONS, "input_noise", "rotations", "fit_steps", "winding", "anchor_points"),
)
points_command = make_command(
    "points",
    "Reconstruct meshes from point clouds (PLY, PCD, XYZ/PTS/TXT, NPY, NPZ, OBJ/OFF/STL vertices, LAS/LAZ); whole rooms with --scene.",
    exclude=("mask",),
)
voxels_command = make_command(
    "voxels",
    "Reconstruct meshes from voxel grids (binvox, NPY/NPZ 3-D arrays).",
    exclude=("mask", "input_noise", "rotations", "fit_steps", "winding", "anchor_points", *_SCENE_OPTIONS),
)
