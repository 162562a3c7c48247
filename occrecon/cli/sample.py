"""`occrecon sample`: shapes drawn from an unconditional model's prior, or a walk between two of them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from occrecon.cli import _output as out
from occrecon.cli._options import DebugOpt, DeviceOpt, JsonOpt, OverwriteOpt, PreviewOpt, QuietOpt, RevisionOpt

if TYPE_CHECKING:
    from occrecon.loading import OccupancyModel


def _file_stem(model_name: str, seed: int, interpolate: int | None, prefix: str | None) -> str:
    if prefix:
        return prefix
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(model_name).rstrip("/")).name) or "sample"
    return f"{base}-seed{seed}" + (f"-interp{interpolate}" if interpolate else "")


def sample_command(
    model: Annotated[str, typer.Argument(help="An unconditional model: onet-uncond-airplanes, -cars, -chairs or -sofas, a Hub id or a model folder.", show_default=False)],
    n: Annotated[Optional[int], typer.Option("-n", "--num-samples", min=1, max=100_000, help="Shapes to draw from the prior z ~ N(0, I) (default: 1).")] = None,
    interpolate: Annotated[Optional[int], typer.Option("--interpolate", min=2, max=100_000, help="Instead: K meshes along the straight line between the first two latent codes of --seed (its ends are the two samples of that seed).")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-d", help="Folder for the meshes, created when missing (default: the current folder).")] = None,
    prefix: Annotated[Optional[str], typer.Option("--prefix", help="File names PREFIX-000.obj, PREFIX-001.obj... (default: MODEL-seedS, or MODEL-seedS-interpK for --interpolate).")] = None,
    file_format: Annotated[Optional[str], typer.Option("--format", "-f", help="obj, ply, off, glb or stl (default: obj).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the latent codes: a seed gives the same shapes on any machine, and -n 8 begins with the shapes of -n 2.")] = 0,
    device: DeviceOpt = "auto",
    revision: RevisionOpt = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", "-t", help="Occupancy probability of the surface (default: the model's, 0.2 for upstream models).")] = None,
    resolution: Annotated[Optional[int], typer.Option("--resolution", min=2, max=512, help="Coarse MISE grid cells per axis (default: the model's, 32 for upstream models).")] = None,
    upsampling_steps: Annotated[Optional[int], typer.Option("--upsampling-steps", min=0, max=6, help="MISE subdivision levels; final grid = resolution·2^steps (default: the model's, 2 for upstream models).")] = None,
    refine: Annotated[int, typer.Option("--refine", min=0, help="Gradient refinement steps after marching cubes.")] = 0,
    simplify: Annotated[Optional[int], typer.Option("--simplify", min=4, help="Decimate to about this many faces.")] = None,
    points_batch_size: Annotated[Optional[int], typer.Option("--points-batch-size", min=1, help="Decoder rows per forward pass (default: what suits the device).")] = None,
    overwrite: OverwriteOpt = False,
    preview: PreviewOpt = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Draw shapes from an unconditional model (ONet's generative models), one mesh each.

    `occrecon sample onet-uncond-chairs -n 8 -d out/ --seed 0` writes eight chairs; `--interpolate 10` writes ten meshes morphing from one shape of the seed to another. Meshes are in the model's canonical frame (y up, about the unit cube).
    """
    from occrecon.loading import load_model
    from occrecon.sampling import SampleSettings, check_unconditional, draw_latents, interpolate_latents

    fmt = _check_usage(n, interpolate, threshold, file_format, prefix)
    # No spinner: these models load in a blink, and a first use's download shows its own progress bar.
    loaded = load_model(model, device, revision=revision, progress=not quiet)
    z_dim = check_unconditional(loaded)
    for message in loaded.notes:
        out.note(message, quiet)

    if interpolate is not None:
        ends = draw_latents(z_dim, 2, seed)
        latents, positions = interpolate_latents(ends[0], ends[1], interpolate)
    else:
        latents, positions = draw_latents(z_dim, n or 1, seed), None
    folder = Path(output_dir) if output_dir is not None else Path(".")
    stem = _file_stem(loaded.name, seed, interpolate, prefix)
    digits = max(3, len(str(len(latents) - 1)))
    run = _Run(
        model=loaded,
        targets=[folder / f"{stem}-{i:0{digits}d}.{fmt}" for i in range(len(latents))],
        positions=positions,
        file_format=fmt,
        overwrite=overwrite,
        quiet=quiet,
        json_output=json_output,
        seed=seed,
        preview=preview,
    )
    settings = SampleSettings(threshold, resolution, upsampling_steps, refine, simplify, points_batch_size)
    raise typer.Exit(_write_shapes(run, latents, settings))


def _check_usage(n: int | None, interpolate: int | None, threshold: float | None, file_format: str | None, prefix: str | None) -> str:
    """The usage problems of ``occrecon sample`` (exit code 2); returns the mesh format."""
    from occrecon.io.mesh import check_format

    if n is not None and interpolate is not None:
        raise typer.BadParameter("give either -n (samples) or --interpolate (a walk between two samples), not both")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise typer.BadParameter(f"--threshold is a probability strictly between 0 and 1, got {threshold}")
    if prefix is not None and (not prefix or "/" in prefix or "\\" in prefix or prefix in (".", "..")):
        raise typer.BadParameter(f"--prefix is a file name prefix without folders, got {prefix!r} (use -d for the folder)")
    try:
        return check_format(file_format) if file_format else "obj"
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@dataclass
class _Run:
    """One `occrecon sample` run: the model, where each mesh goes, and how to report."""

    model: "OccupancyModel"
    targets: list[Path]
    positions: list[float] | None
    file_format: str
    overwrite: bool
    quiet: bool
    json_output: bool
    seed: int
    preview: bool = False

    def row(self, index: int) -> dict:
        t = None if self.positions is None else self.positions[index]
        return {"index": index, "t": t, "output": str(self.targets[index]), "model": self.model.name,
                "model_revision": self.model.revision, "seed": self.seed}


def _write_shapes(run: _Run, latents, settings) -> int:
    """Extract and write every mesh that is not there yet; returns the exit code (1 when some failed)."""
    from occrecon.sampling import generate

    todo = [i for i, target in enumerate(run.targets) if run.overwrite or not target.exists()]
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    started = time.perf_counter()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out.stderr,
        disable=run.quiet,
        transient=False,
    )
    with progress:
        task = progress.add_task(f"{run.model.name} {'interpolation' if run.positions is not None else 'samples'}", total=len(run.targets))
        for index in sorted(set(range(len(run.targets))) - set(todo)):
            counts["skipped"] += 1
            progress.advance(task)
            if run.json_output:
                out.print_json({**run.row(index), "status": "skipped"})
            if not run.quiet:
                progress.console.print(Text.assemble(("↷ ", "yellow"), f"{run.targets[index]} exists (use --overwrite to redo)"), highlight=False)
        positions = None if run.positions is None else [run.positions[i] for i in todo]
        for shape in generate(run.model, latents[todo] if todo else latents[:0], settings, positions=positions, seed=run.seed):
            status = _write_one(run, todo[shape.index], shape, progress.console)
            counts[status] += 1
            progress.advance(task)
    if not run.quiet:
        out.stderr.print(
            Text(f"{counts['ok']} done, {counts['skipped']} skipped, {counts['failed']} failed in {time.perf_counter() - started:.1f} s "
                 f"with {run.model.name} on {run.model.device}"),
            highlight=False,
        )
    return 1 if counts["failed"] else 0


def _write_one(run: _Run, index: int, shape, console) -> str:
    """Write one extracted shape and report it; returns ``ok`` or ``failed``."""
    from occrecon.io.mesh import write_mesh
    from occrecon.preview import PreviewError, write_result_preview

    target = run.targets[index]
    row = {**run.row(index), "seconds": round(shape.seconds, 3), "n_evaluations": shape.n_evaluations,
           "timings": {k: round(v, 4) for k, v in shape.timings.items()}}
    if shape.mesh is not None:
        try:
            if run.preview:  # before the mesh: a mesh never stands without its preview
                row["preview"] = str(write_result_preview(shape, target))
            write_mesh(shape.mesh, target, file_format=run.file_format, overwrite=run.overwrite)
        except OSError as exc:
            shape.error = f"cannot write {target} ({exc.strerror or exc})"
        except PreviewError as exc:
            shape.error = str(exc)
    if shape.mesh is None or shape.error:
        message = f"{run.model.name} {'step' if run.positions is not None else 'sample'} {index}: {shape.error}"
        if run.json_output:
            out.print_json({**row, "status": "failed", "error": message})
        out.error(message)
        return "failed"
    if run.json_output:
        out.print_json({**row, "status": "ok", "vertices": len(shape.mesh.vertices), "faces": len(shape.mesh.faces)})
    if not run.quiet:
        label = f"t={shape.t:.3g}" if shape.t is not None else f"sample {index}"
        details = f"{len(shape.mesh.vertices)} vertices, {len(shape.mesh.faces)} faces, {shape.seconds:.2f} s"
        console.print(Text.assemble(("✓ ", "green"), f"{label} → {target} ({details})"), highlight=False)
    return "ok"
