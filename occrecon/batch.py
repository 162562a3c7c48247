"""Many inputs, one model: planning, skipping finished work, atomic writes.

One bad input never stops the others: each item ends as ``ok``, ``skipped``
(output already there) or ``failed`` with a one-line reason.
"""

from __future__ import annotations

import io
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from occrecon.errors import InputError, InvalidModelFolderError, ModelUnavailableError, NoSurfaceError, UnknownModelError
from occrecon.io.atomic import write_bytes_atomic
from occrecon.io.claims import ClaimedElsewhere, claim
from occrecon.io.mesh import write_mesh
from occrecon.io.paths import InputItem, plan_output
from occrecon.loading import OccupancyModel
from occrecon.options import ReconstructOptions, ResolvedOptions
from occrecon.pipeline import Events, SceneModel, check_task, reconstruct_resolved


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
        encoded = io.BytesIO()
        preview.save(encoded, format="PNG")
        write_bytes_atomic(path, encoded.getvalue())
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


@dataclass(frozen=True)
class BatchOptions:
    """How a batch treats its outputs (the reconstruction itself takes :class:`~occrecon.options.ReconstructOptions`).

    Attributes:
        file_format: mesh format of every output (``obj``, ``ply``, ``off``, ``glb``, ``stl``).
        overwrite: redo inputs whose output exists (default: skip them).
        save_input: also write what the network saw beside each mesh.
        mask: object mask for the one photo of a batch.
        debug: keep each failure's traceback in its result.
    """

    file_format: str = "obj"
    overwrite: bool = False
    save_input: bool = False
    mask: Path | None = None
    debug: bool = False


def run_batch(
    model: OccupancyModel,
    kind: str,
    plan: BatchPlan,
    options: ReconstructOptions,
    batch: BatchOptions = BatchOptions(),
    *,
    scene_model: SceneModel = None,
    on_stage: Callable[[str], None] | None = None,
    on_note: Callable[[str, str], None] | None = None,
) -> Iterator[ItemResult]:
    """Reconstruct each planned input in turn, yielding one result per input.

    The options are validated and resolved against ``model`` once, before the first input.
    ``on_note(input, message)`` hears the notes that matter before an input's long run ends
    (see :func:`occrecon.reconstruct`); they are in its result's notes too.
    """
    check_task(model, kind)
    runner = _Runner(model, kind, options.resolve(model, kind), batch, scene_model, on_stage, on_note)
    for item, target, problem in plan.items:
        common = dict(input=str(item.path), output=str(target) if target else None, model=model.name, model_revision=model.revision)
        if problem:
            yield ItemResult(status="failed", error=f"{item.path}: {problem}", **common)
            continue
        assert target is not None
        if target.is_dir() or (target.exists() and not target.is_file()):
            yield ItemResult(status="failed", error=f"{item.path}: the output {target} is a folder or another non-file; rename it or choose another --output-dir", **common)
            continue
        if target.exists() and not batch.overwrite:
            yield ItemResult(status="skipped", error=None, notes=[f"{target} exists (use --overwrite to redo)"], **common)
            continue
        yield runner.run(item.path, target, common)


@dataclass
class _Runner:
    """What every input of a batch shares: the model, the resolved settings, where progress goes."""

    model: OccupancyModel
    kind: str
    options: ResolvedOptions
    batch: BatchOptions
    scene_model: SceneModel
    on_stage: Callable[[str], None] | None
    on_note: Callable[[str, str], None] | None

    def run(self, path: Path, target: Path, common: dict[str, Any]) -> ItemResult:
        """One input, under a claim on its output so that a second process on the same outputs skips it."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # the write reports it
        held = claim(target)
        if isinstance(held, ClaimedElsewhere):
            return ItemResult(status="skipped", error=None, notes=[f"{target} is {held}"], **common)
        try:
            if target.exists() and not self.batch.overwrite:  # finished by another process while this one planned
                return ItemResult(status="skipped", error=None, notes=[f"{target} exists (use --overwrite to redo)"], **common)

            def stage(name: str) -> None:
                held.refresh()
                if self.on_stage:
                    self.on_stage(name)

            on_note = self.on_note
            events = Events(stage, None if on_note is None else (lambda message: on_note(str(path), message)))
            return self._reconstruct(path, target, events, common)
        finally:
            held.release()

    def _reconstruct(self, path: Path, target: Path, events: Events, common: dict[str, Any]) -> ItemResult:
        start = time.perf_counter()
        batch = self.batch
        try:
            result = reconstruct_resolved(self.model, self.kind, path, self.options, mask=batch.mask, scene_model=self.scene_model, events=events)
            # What the network saw goes first: an output that exists is a finished item, preview included.
            if batch.save_input:
                save_preview(result.preview, target, batch.overwrite)
            write_mesh(result.mesh, target, file_format=batch.file_format, overwrite=batch.overwrite)
        except (ModelUnavailableError, UnknownModelError, InvalidModelFolderError):
            raise  # a model that cannot be loaded (e.g. the scene model on first need) is a setup problem
        except Exception as exc:  # one bad input must not stop the batch; --debug keeps the traceback
            return ItemResult(
                status="failed",
                error=_failure_message(exc, path, target, batch),
                seconds=round(time.perf_counter() - start, 3),
                traceback=traceback.format_exc() if batch.debug else None,
                **common,
            )
        # The model that made the mesh: the scene model, where a cloud turned out to be a scene.
        common = {**common, "model": result.model_name, "model_revision": result.model_revision}
        return ItemResult(
            status="ok",
            vertices=len(result.mesh.vertices),
            faces=len(result.mesh.faces),
            seconds=round(time.perf_counter() - start, 3),
            timings={k: round(v, 4) for k, v in result.timings.items()},
            notes=result.notes,
            **common,
        )


def _failure_message(exc: Exception, path: Path, target: Path, batch: BatchOptions) -> str:
    """One line naming the file and the problem; with --save-input, where what the network saw was written."""
    message = str(exc)
    # Every line names its file, also where the problem was found after the file was read.
    if (not isinstance(exc, InputError) or exc.source is None) and str(path) not in message:
        message = f"{path}: {message or type(exc).__name__}"
    # What the network saw is the first thing to look at when it found nothing in it.
    if batch.save_input and isinstance(exc, NoSurfaceError) and exc.preview is not None:
        try:
            seen = save_preview(exc.preview, target, batch.overwrite)
        except OSError as save_error:
            message += f"; what the network saw could not be saved: {save_error}"
        else:
            if seen is not None:
                message += f"; what the network saw: {seen}"
    return message
