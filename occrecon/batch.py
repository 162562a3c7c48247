"""Many inputs, one model: planning, skipping finished work, atomic writes.

One bad input never stops the others: each item ends as ``ok``, ``skipped``
(the output there was made from the same input with the same model and settings)
or ``failed`` with a one-line reason. What made each output is recorded beside it
(:mod:`occrecon.io.provenance`), and :func:`triage` decides, before any model is
loaded, which inputs need one at all: this module imports neither torch nor trimesh
until an input is reconstructed.
"""

from __future__ import annotations

import io
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from occrecon.errors import InputError, InvalidModelFolderError, ModelUnavailableError, NoSurfaceError, UnknownModelError
from occrecon.io.atomic import write_bytes_atomic
from occrecon.io.claims import ClaimedElsewhere, claim
from occrecon.io.paths import InputItem, check_regular_file, plan_output
from occrecon.io.provenance import Request, compare, describe_file, read_record, write_record
from occrecon.options import ReconstructOptions, ResolvedOptions

if TYPE_CHECKING:
    from occrecon.loading import OccupancyModel
    from occrecon.pipeline import Events, SceneModel


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
    preview: str | None = None  # the preview picture written beside the mesh (--preview)

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

    from occrecon.io.mesh import write_mesh

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
        preview: also write a preview picture beside each mesh, ``<stem>.png`` (:mod:`occrecon.preview`).
    """

    file_format: str = "obj"
    overwrite: bool = False
    save_input: bool = False
    mask: Path | None = None
    debug: bool = False
    preview: bool = False


def triage(plan: BatchPlan, request: Request, overwrite: bool = False) -> list[ItemResult | None]:
    """Per planned input, its result where no model is needed to give it, else None (it must be reconstructed).

    Decided here, before any model loads: an input with a problem (missing, not a file) and an
    output that is a folder fail; an existing output is skipped when its record says it was made
    from the same input (same bytes) with the same model and settings, and otherwise fails with
    what made it, unless ``overwrite``. Costs a ``stat`` and a small JSON read per existing
    output, and a hash only of an input whose size and time do not settle it.
    """
    return [_decided(item, target, problem, request, overwrite) for item, target, problem in plan.items]


def _common(item: InputItem, target: Path | None, model: str | None, revision: str | None) -> dict[str, Any]:
    return dict(input=str(item.path), output=str(target) if target else None, model=model, model_revision=revision)


def _decided(item: InputItem, target: Path | None, problem: str | None, request: Request, overwrite: bool) -> ItemResult | None:
    common = _common(item, target, request.model, request.revision)
    if problem:
        return ItemResult(status="failed", error=f"{item.path}: {problem}", **common)
    try:
        check_regular_file(item.path)  # missing, empty, a FIFO: said now, not after the model has loaded
    except InputError as exc:
        return ItemResult(status="failed", error=str(exc), **common)
    assert target is not None
    if target.is_dir() or (target.exists() and not target.is_file()):
        return ItemResult(status="failed", error=f"{item.path}: the output {target} is a folder or another non-file; rename it or choose another --output-dir", **common)
    if overwrite or not target.exists():
        return None
    return existing_output(item.path, target, request, common)


def existing_output(path: Path, target: Path, request: Request, common: dict[str, Any]) -> ItemResult:
    """The result for an output that exists (no --overwrite): skipped when it is this input's, else failed, saying what made it."""
    verdict = compare(target, path, request)
    if verdict.same:
        made = (read_record(target) or {}).get("model") or {}
        common = {**common, "model": made.get("made_by") or common["model"], "model_revision": made.get("made_by_revision")}
        return ItemResult(status="skipped", error=None, notes=[f"{target} exists, made from this input with the same model and settings (--overwrite redoes it)"], **common)
    what = verdict.reason + (": " + "; ".join(verdict.differences) if verdict.differences else "")
    error = f"{path}: {target} exists and was {what}; it is left as it is: --overwrite replaces it, or choose another -o/--output-dir"
    return ItemResult(status="failed", error=error, **common)


def run_batch(
    model: OccupancyModel,
    kind: str,
    plan: BatchPlan,
    options: ReconstructOptions,
    batch: BatchOptions = BatchOptions(),
    *,
    request: Request | None = None,
    scene_model: SceneModel = None,
    on_stage: Callable[[str], None] | None = None,
    on_note: Callable[[str, str], None] | None = None,
) -> Iterator[ItemResult]:
    """Reconstruct each planned input in turn, yielding one result per input.

    The options are validated and resolved against ``model`` once, before the first input.
    ``request`` is what each output's record says was asked for (default: ``model`` by its
    name and revision, ``options``); an output that exists is skipped only when its record
    matches (:func:`triage`). ``on_note(input, message)`` hears the notes that matter before an
    input's long run ends (see :func:`occrecon.reconstruct`); they are in its result's notes too.
    """
    from occrecon.pipeline import check_task

    check_task(model, kind)
    request = request or Request.of(kind, model.name, model.revision, options, batch.mask)
    runner = _Runner(model, kind, options.resolve(model, kind), batch, request, scene_model, on_stage, on_note)
    for (item, target, _), decided in zip(plan.items, triage(plan, request, batch.overwrite)):
        if decided is not None:
            yield decided
            continue
        assert target is not None
        yield runner.run(item.path, target, _common(item, target, model.name, model.revision))


def run_claimed(target: Path, common: dict[str, Any], work: Callable[[Any], ItemResult]) -> ItemResult:
    """``work(held)`` under a claim on ``target`` (``held`` can be refreshed during long work); skipped when another process holds it.

    Every command's batch goes through here, so a second process on the same outputs skips
    what the first has claimed instead of doing it again.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the write reports it
    held = claim(target)
    if isinstance(held, ClaimedElsewhere):
        return ItemResult(status="skipped", error=None, notes=[f"{target} is {held}"], **common)
    try:
        return work(held)
    finally:
        held.release()


@dataclass
class _Runner:
    """What every input of a batch shares: the model, the resolved settings, where progress goes."""

    model: OccupancyModel
    kind: str
    options: ResolvedOptions
    batch: BatchOptions
    request: Request
    scene_model: SceneModel
    on_stage: Callable[[str], None] | None
    on_note: Callable[[str, str], None] | None

    def run(self, path: Path, target: Path, common: dict[str, Any]) -> ItemResult:
        """One input, under a claim on its output so that a second process on the same outputs skips it."""
        from occrecon.pipeline import Events

        def work(held: Any) -> ItemResult:
            if target.exists() and not self.batch.overwrite:  # finished by another process while this one planned
                return existing_output(path, target, self.request, common)

            def stage(name: str) -> None:
                held.refresh()
                if self.on_stage:
                    self.on_stage(name)

            on_note = self.on_note
            events = Events(stage, None if on_note is None else (lambda message: on_note(str(path), message)))
            return self._reconstruct(path, target, events, common)

        return run_claimed(target, common, work)

    def _reconstruct(self, path: Path, target: Path, events: Events, common: dict[str, Any]) -> ItemResult:
        from occrecon.io.mesh import write_mesh
        from occrecon.preview import write_result_preview

        start = time.perf_counter()
        batch = self.batch
        try:
            try:
                described = describe_file(path)  # what is read now: an input changed meanwhile is not taken for this one
            except OSError:
                described = None  # gone since it was planned: the reader says so in its own words
            result = reconstruct_resolved(self.model, self.kind, path, self.options, mask=batch.mask, scene_model=self.scene_model, events=events)
            # What the network saw goes first: an output that exists is a finished item, preview and record included.
            if batch.save_input:
                save_preview(result.preview, target, batch.overwrite)
            # The preview picture too, before the mesh: a failed one leaves no mesh to be taken for done.
            picture = write_result_preview(result, target, inputs=(path,)) if batch.preview else None
            write_record(target, path, self.request, (result.model_name, result.model_revision), described)
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
            preview=None if picture is None else str(picture),
            **common,
        )


def reconstruct_resolved(*args: Any, **kwargs: Any) -> Any:
    """:func:`occrecon.pipeline.reconstruct_resolved`, imported when the first input runs (planning and skipping need no torch)."""
    from occrecon.pipeline import reconstruct_resolved as run

    return run(*args, **kwargs)


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
