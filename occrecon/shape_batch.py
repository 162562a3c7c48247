"""Many meshes, one network each: ``occrecon fit`` and ``occrecon extract`` as batches.

The same rules as the reconstruction commands' batches (:mod:`occrecon.batch`): a finished
output is skipped unless ``overwrite``; each input is claimed beside its output while it
runs, so two processes share the work; files are written atomically; a bad input ends as
one ``failed`` line and the others go on. With ``--save-model`` the model folder is written
before the mesh, so a mesh never stands without the model it came from.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from occrecon.batch import BatchPlan, ItemResult, run_claimed
from occrecon.errors import InputError, OccreconError
from occrecon.modelfolder import CONFIG_NAME, WEIGHTS_NAME
from occrecon.shape_fit import FitOptions

__all__ = ["ShapeBatch", "extract_batch", "fit_batch", "model_folder_for"]


@dataclass(frozen=True)
class ShapeBatch:
    """How a batch of fits treats its outputs.

    Attributes:
        file_format: mesh format of every output.
        save_model: where model folders go (None: not saved); see :func:`model_folder_for`.
        single: the batch has one input, so ``save_model`` is that input's folder itself.
        overwrite: redo inputs whose outputs exist.
        debug: keep each failure's traceback.
    """

    file_format: str = "obj"
    save_model: Path | None = None
    single: bool = True
    overwrite: bool = False
    debug: bool = False


def model_folder_for(batch: ShapeBatch, mesh_path: Path) -> Path | None:
    """``--save-model DIR``: DIR itself for one input, ``DIR/<stem>/`` for each of several."""
    if batch.save_model is None:
        return None
    return batch.save_model if batch.single else batch.save_model / mesh_path.stem


def _finished(target: Path, folder: Path | None) -> bool:
    """The mesh exists and so does the model folder it needs (a mesh alone is refitted when a model is asked for)."""
    return target.is_file() and (folder is None or ((folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()))


def _failure(exc: BaseException, path: Path) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # Every line names its file.
    return message if (isinstance(exc, InputError) and exc.source) or str(path) in message else f"{path}: {message}"


def fit_batch(
    plan: BatchPlan,
    options: FitOptions,
    batch: ShapeBatch,
    *,
    on_stage: Callable[[str], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Iterator[ItemResult]:
    """Fit each planned mesh in turn, yielding one result per input (options checked once, first)."""
    options.validate()
    for item, target, problem in plan.items:
        common: dict[str, Any] = dict(input=str(item.path), output=str(target) if target else None, model=f"fit:{options.activation}", model_revision=None)
        if problem:
            yield ItemResult(status="failed", error=f"{item.path}: {problem}", **common)
            continue
        assert target is not None
        folder = model_folder_for(batch, item.path)
        if target.exists() and not target.is_file():
            yield ItemResult(status="failed", error=f"{item.path}: the output {target} is a folder or another non-file; rename it or choose another --output-dir", **common)
        elif _finished(target, folder) and not batch.overwrite:
            yield ItemResult(status="skipped", notes=[f"{target} exists (use --overwrite to redo)"], **common)
        else:
            yield run_claimed(target, common, lambda held: _fit_one(item.path, target, folder, options, batch, on_stage, on_step, common))


def _fit_one(path: Path, target: Path, folder: Path | None, options: FitOptions, batch: ShapeBatch,
             on_stage: Callable[[str], None] | None, on_step: Callable[[int], None] | None, common: dict[str, Any]) -> ItemResult:
    from occrecon.io.mesh import write_mesh
    from occrecon.shape_fit import fit_shape, save_shape_model

    start = time.perf_counter()
    try:
        fitted = fit_shape(path, options, on_stage=on_stage, on_step=on_step)
        if folder is not None:  # the model first: a mesh that exists is a finished item, model included
            save_shape_model(fitted, folder)
        write_mesh(fitted.mesh, target, file_format=batch.file_format, overwrite=True)
    except Exception as exc:  # one bad input must not stop the batch; --debug keeps the traceback
        return ItemResult(status="failed", error=_failure(exc, path), seconds=round(time.perf_counter() - start, 3),
                          traceback=traceback.format_exc() if batch.debug else None, **common)
    notes = list(fitted.notes) + [f"{100 * fitted.label_accuracy:.2f}% of the labelled points right"]
    if folder is not None:
        notes.append(f"model saved to {folder}")
    return ItemResult(status="ok", vertices=len(fitted.mesh.vertices), faces=len(fitted.mesh.faces), seconds=round(time.perf_counter() - start, 3),
                      timings={k: round(v, 4) for k, v in fitted.timings.items()}, notes=notes, **common)


def extract_batch(folders: list[Path], targets: list[Path], settings: dict[str, Any], *, device: str = "auto",
                  overwrite: bool = False, file_format: str = "obj", debug: bool = False) -> Iterator[ItemResult]:
    """Mesh each saved shape model (``occrecon fit --save-model``) again; ``settings``: resolution, upsampling_steps, threshold (None: the model's)."""
    for folder, target in zip(folders, targets):
        common: dict[str, Any] = dict(input=str(folder), output=str(target), model=str(folder), model_revision=None)
        if target.is_file() and not overwrite:
            yield ItemResult(status="skipped", notes=[f"{target} exists (use --overwrite to redo)"], **common)
            continue
        yield run_claimed(target, common, lambda held: _extract_one(folder, target, settings, device, file_format, debug, common))


def _extract_one(folder: Path, target: Path, settings: dict[str, Any], device: str, file_format: str, debug: bool, common: dict[str, Any]) -> ItemResult:
    from occrecon.io.mesh import write_mesh
    from occrecon.loading import load_model
    from occrecon.shape_fit import extract_shape

    start = time.perf_counter()
    try:
        model = load_model(folder, device)
        mesh = extract_shape(model, source=str(folder), **settings)
        write_mesh(mesh, target, file_format=file_format, overwrite=True)
    except (OccreconError, OSError, ValueError) as exc:  # a folder that is no shape model fails alone
        return ItemResult(status="failed", error=_failure(exc, folder), seconds=round(time.perf_counter() - start, 3),
                          traceback=traceback.format_exc() if debug else None, **common)
    return ItemResult(status="ok", vertices=len(mesh.vertices), faces=len(mesh.faces), seconds=round(time.perf_counter() - start, 3), **common)
