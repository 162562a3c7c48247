"""Many inputs, one model: planning, skipping finished work, atomic writes.

One bad input never stops the others: each item ends as ``ok``, ``skipped``
(output already there) or ``failed`` with a one-line reason.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from occrecon.errors import InputError, InvalidModelFolderError, ModelUnavailableError, NoSurfaceError, UnknownModelError
from occrecon.io.mesh import write_mesh
from occrecon.io.paths import InputItem, plan_output
from occrecon.loading import OccupancyModel
from occrecon.pipeline import ExtractionOptions, Reconstruction, SceneOptions, reconstruct


@dataclass
class ItemResult:
    """What happened to one input (the CLI prints it as one JSON object)."""

    input: str
    output: str | None
    status: str  # ok | skipped | failed
    error: str | None = None
    vertices: int | None = None
    faces: int | None = None
    seconds: float | None = None
    model: str | None = None
    model_revision: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    traceback: str | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("traceback")
        return data


@dataclass
class BatchPlan:
    """Where each input's mesh goes; collisions are reported per input."""

    items: list[tuple[InputItem, Path | None, str | None]]


def plan_batch(
    items: list[InputItem], *, file_format: str, output: Path | None, output_dir: Path | None
) -> BatchPlan:
    """Attach an output path to each input; a second input with the same output name is refused."""
    planned: list[tuple[InputItem, Path | None, str | None]] = []
    claimed: dict[Path, Path] = {}
    for item in items:
        if item.problem:
            planned.append((item, None, item.problem))
            continue
        target = plan_output(item.path, file_format=file_format, output=output, output_dir=output_dir)
        key = target.resolve()
        if key in claimed:
            planned.append((item, target, f"output {target} is already the output of {claimed[key]}; use distinct names or --output-dir per folder"))
            continue
        claimed[key] = item.path
        planned.append((item, target, None))
    return BatchPlan(planned)


def save_preview(preview: Any, mesh_path: Path, overwrite: bool) -> Path | None:
    """Write what the network saw next to the mesh (``<stem>.input.png|ply``)."""
    import numpy as np
    import trimesh

    if preview is None:
        return None
    mesh_path.parent.mkdir(parents=True, exist_ok=True)  # the mesh may not have been written (no surface)
    if hasattr(preview, "save"):  # a PIL image
        path = mesh_path.with_name(f"{mesh_path.stem}.input.png")
        if path.exists() and not overwrite:
            return path
        tmp = path.with_name(f".{path.name}.tmp")
        preview.save(tmp, format="PNG")
        tmp.replace(path)
        return path
    array = np.asarray(preview)
    path = mesh_path.with_name(f"{mesh_path.stem}.input.ply")
    if array.ndim == 2 and array.shape[1] == 3:
        geometry = trimesh.PointCloud(array)
    elif array.ndim == 3:
        geometry = trimesh.voxel.VoxelGrid(array.astype(bool)).as_boxes()
    else:
        return None
    write_mesh(geometry, path, file_format="ply", overwrite=True)  # type: ignore[arg-type]
    return path


def run_batch(
    model: OccupancyModel,
    kind: str,
    plan: BatchPlan,
    *,
    options: ExtractionOptions,
    file_format: str,
    overwrite: bool = False,
    save_input: bool = False,
    mask: Path | None = None,
    seed: int = 0,
    on_stage: Callable[[str], None] | None = None,
    on_note: Callable[[str, str], None] | None = None,
    keep_traceback: bool = False,
    scene: SceneOptions | None = None,
    input_noise: float | None = None,
    rotations: int | None = None,
    fit_steps: int | None = None,
    winding: bool | None = None,
    anchor_points: bool | None = None,
) -> Iterator[ItemResult]:
    """Reconstruct each planned input in turn, yielding one result per input.

    ``on_note(input, message)`` hears the notes that matter before an input's long run ends
    (see :func:`occrecon.reconstruct`); they are in its result's notes too.
    """
    for item, target, problem in plan.items:
        common = dict(input=str(item.path), output=str(target) if target else None, model=model.name, model_revision=model.revision)
        if problem:
            yield ItemResult(status="failed", error=f"{item.path}: {problem}", **common)
            continue
        assert target is not None
        if target.exists() and not overwrite:
            yield ItemResult(status="skipped", error=None, notes=[f"{target} exists (use --overwrite to redo)"], **common)
            continue
        start = time.perf_counter()
        try:
            result: Reconstruction = reconstruct(
                model,
                kind,
                item.path,
                options=options,
                mask=mask,
                seed=seed,
                on_stage=on_stage,
                on_note=None if on_note is None else (lambda message, name=str(item.path): on_note(name, message)),
                scene=scene,
                input_noise=input_noise,
                rotations=rotations,
                fit_steps=fit_steps,
                winding=winding,
                anchor_points=anchor_points,
            )
            write_mesh(result.mesh, target, file_format=file_format, overwrite=overwrite)
            if save_input:
                save_preview(result.preview, target, overwrite)
        except (ModelUnavailableError, UnknownModelError, InvalidModelFolderError):
            raise  # a model that cannot be loaded (e.g. the scene model on first need) is a setup problem
        except Exception as exc:  # one bad input must not stop the batch; --debug keeps the traceback
            message = str(exc)
            # Every line names its file, also where the problem was found after the file was read.
            if (not isinstance(exc, InputError) or exc.source is None) and str(item.path) not in message:
                message = f"{item.path}: {message or type(exc).__name__}"
            # What the network saw is the first thing to look at when it found nothing in it.
            if save_input and isinstance(exc, NoSurfaceError) and exc.preview is not None:
                try:
                    seen = save_preview(exc.preview, target, overwrite)
                except OSError as save_error:
                    message += f"; what the network saw could not be saved: {save_error}"
                else:
                    if seen is not None:
                        message += f"; what the network saw: {seen}"
            yield ItemResult(
                status="failed",
                error=message,
                seconds=round(time.perf_counter() - start, 3),
                traceback=traceback.format_exc() if keep_traceback else None,
                **common,
            )
            continue
        yield ItemResult(
            status="ok",
            vertices=len(result.mesh.vertices),
            faces=len(result.mesh.faces),
            seconds=round(time.perf_counter() - start, 3),
            timings={k: round(v, 4) for k, v in result.timings.items()},
            notes=result.notes,
            **common,
        )
