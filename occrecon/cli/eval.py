"""``occrecon eval``: score reconstructions against ground truth with the ONet/ConvONet metrics.

Usage:
    occrecon eval pred.obj gt.obj
    occrecon eval preds/ gts/ --json > scores.json
    occrecon eval preds/ gts/ --csv scores.csv --quiet
    occrecon eval scan_pred.ply scan_gt.ply --units m --f-thresholds 0.01,0.02,0.05

The command only parses options and renders; the work is done by ``occrecon.evaluation``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from occrecon.cli import _output as out
from occrecon.errors import InputError

if TYPE_CHECKING:
    from occrecon.evaluation import EvalResult, FolderEvaluation

# occrecon.metrics.DEFAULT_F_THRESHOLDS written out: the metrics import trimesh (0.8 s), which
# `occrecon --help` need not pay; a test checks that the two agree.
DEFAULT_F_THRESHOLDS_TEXT = "0.01,0.015,0.02"

__all__ = ["eval_command"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
_X10_EXPLANATION = (
    "chamfer_l1_x10 is Chamfer-L1 x 10 in unit-cube units, the convention of the ONet/ConvONet papers' tables"
)


class OpenMeshes(str, Enum):
    """The ``open_meshes`` modes of :func:`occrecon.metrics.evaluate_meshes`."""

    fill = "fill"
    skip = "skip"


class _UsageError(Exception):
    """A bad combination of arguments; reported as one line with exit code 2."""


def _parse_thresholds(text: str) -> tuple[float, ...]:
    values: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise _UsageError(f"--f-thresholds: {part!r} is not a number (expected e.g. 0.01,0.015,0.02)") from None
        if not (value > 0 and math.isfinite(value)):
            raise _UsageError(f"--f-thresholds: {part!r} must be a positive distance")
        if value not in values:
            values.append(value)
    if not values:
        raise _UsageError("--f-thresholds: give at least one threshold")
    return tuple(values)


def _short_unit(normalized: bool, units: str | None) -> str:
    return "uc" if normalized else (units or "u")


def _threshold_label(tau: float, normalized: bool, short: str) -> str:
    # In the unit frame a threshold is a share of the GT's longest side, which is how the papers name it.
    return f"{tau * 100:g}%" if normalized else f"{tau:g} {short}"


def _fmt(value: Any, digits: str = ".4f") -> str:
    if value is None:
        return "—"
    return format(value, digits)


def _columns(normalized: bool, units: str | None, thresholds: tuple[float, ...]) -> list[tuple[str, str, str]]:
    """(key, header, number format) of the table's metric columns."""
    from occrecon.metrics import threshold_key

    short = _short_unit(normalized, units)
    columns = [
        ("accuracy", f"accuracy\n[{short}]", ".4g"),
        ("completeness", f"completeness\n[{short}]", ".4g"),
        ("chamfer_l1", f"Chamfer-L1\n[{short}]", ".4g"),
        ("chamfer_l2", f"Chamfer-L2\n[{short}²]", ".4g"),
        ("normal_consistency", "normal cons.\n[0-1]", ".4f"),
    ]
    columns += [
        (threshold_key("f_score", tau), f"F@{_threshold_label(tau, normalized, short)}\n[0-1]", ".4f")
        for tau in thresholds
    ]
    columns.append(("iou", "IoU\n[0-1]", ".4f"))
    if normalized:
        columns.append(("chamfer_l1_x10", "Chamfer-L1 ×10\n[papers' conv.]", ".4f"))
    return columns


def _unit_legend(normalized: bool, units: str | None) -> str:
    from occrecon.metrics import UNIT_FRAME_LABEL

    if normalized:
        return f"uc = {UNIT_FRAME_LABEL}: both meshes placed in the GT's unit frame"
    if units:
        return f"distances in {units} (input coordinates, not normalised)"
    return "u = input units (input coordinates, not normalised)"


def _render_table(
    console: Console, evaluation: FolderEvaluation, mean: dict[str, Any], options: dict[str, Any]
) -> None:
    normalized, units, thresholds = options["normalize"], options["units"], options["f_thresholds"]
    columns = _columns(normalized, units, thresholds)
    table = Table(title="occrecon eval", caption=out.styled(_unit_legend(normalized, units)), caption_justify="left")
    table.add_column("item", overflow="fold")
    table.add_column("status")
    for _, header, _ in columns:
        # Text, not str: rich would read "[uc]" as a markup tag and drop the unit.
        table.add_column(Text("\n".join(out.safe_text(line) for line in header.split("\n"))), justify="right")
    for result in evaluation.results:
        values = result.as_dict()
        # Text, not str: a file named scan[final].obj must show as itself, not as markup.
        table.add_row(out.styled(result.name), out.styled(result.status), *(_fmt(values.get(key), fmt) for key, _, fmt in columns))
    label = f"mean (n={mean['count']})"
    table.add_section()
    table.add_row(label, "", *(_fmt(mean.get(key), fmt) for key, _, fmt in columns), style="bold")
    console.print(table)

    lines = []
    if mean["count"] and mean.get("iou_count", 0) != mean["count"]:
        lines.append(f"IoU mean over {mean.get('iou_count', 0)} of {mean['count']} items (the others have no inside: see their notes)")
    if mean["count"] and mean.get("normal_consistency_count", mean["count"]) != mean["count"]:
        lines.append(f"normal consistency mean over {mean['normal_consistency_count']} of {mean['count']} items (point clouds have no normals)")
    if mean["failed"]:
        lines.append(f"{mean['failed']} item(s) failed and are not in the mean")
    for result in evaluation.results:
        notes = result.metrics.notes if result.metrics is not None else []
        lines += [f"{result.name}: {note}" for note in notes]
    lines += evaluation.skipped
    if normalized:
        lines.append(_X10_EXPLANATION)
    out.lines(lines, console=console)


def _json_document(evaluation: FolderEvaluation, mean: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    from occrecon.metrics import UNIT_FRAME_LABEL

    normalized, units = options["normalize"], options["units"]
    distance = UNIT_FRAME_LABEL if normalized else (units or "input units")
    metric_units = {
        "accuracy": distance,
        "completeness": distance,
        "chamfer_l1": distance,
        "chamfer_l2": "unit-cube units squared" if normalized else f"({distance})^2",
        "normal_consistency": "fraction [0, 1]",
        "f_score": "fraction [0, 1]",
        "precision": "fraction [0, 1]",
        "recall": "fraction [0, 1]",
        "f_thresholds": distance,
        "iou": "fraction [0, 1]",
    }
    if normalized:
        metric_units["chamfer_l1_x10"] = "unit-cube units x 10 (papers' convention)"
    return {
        "unit": distance,
        "normalized": normalized,
        "units": metric_units,
        "f_thresholds": list(options["f_thresholds"]),
        "n_samples": options["n_samples"],
        "seed": options["seed"],
        "open_meshes": options["open_meshes"],
        "items": [result.as_dict() for result in evaluation.results],
        "mean": mean,
        "skipped": evaluation.skipped,
    }


def _csv_problem(path: Path) -> str | None:
    """Why ``--csv PATH`` cannot be written, found before any mesh is evaluated; None when it can."""
    folder = path.parent
    if not folder.is_dir():
        return f"{path}: folder {folder} does not exist"
    if path.is_dir():
        return f"{path}: is a folder, not a file"
    if path.exists() and not path.is_file():
        return f"{path}: not a regular file"
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{path}: cannot write there (permission denied or a read-only place)"
    return None


def _write_csv(path: Path, results: list[EvalResult]) -> None:
    """Write the CSV atomically: a full disk or a kill leaves the old file (or none), never half a table."""
    from occrecon.io.atomic import write_bytes_atomic

    rows = [result.as_dict() for result in results]
    fieldnames: list[str] = []
    for row in rows:
        fieldnames += [key for key in row if key not in fieldnames]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fieldnames)
    writer.writeheader()
    for row in rows:
        row["notes"] = "; ".join(row.get("notes") or [])
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))


def _stdout_console() -> Console:
    # Piped output gets a wide table instead of rich's 80-column fallback, which would fold every header.
    return Console(width=None if sys.stdout.isatty() else 220, emoji=False, highlight=False)


def eval_command(
    pred: Annotated[Path, typer.Argument(help="Predicted mesh or point cloud (.obj/.ply/.off/.stl/.glb), or a folder of them.")],
    gt: Annotated[Path, typer.Argument(help="Ground-truth mesh, or a folder matched to PRED by file stem.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (items, mean, units) instead of the table.")
    ] = False,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Also write one CSV row per item to this file.", dir_okay=False)
    ] = None,
    no_normalize: Annotated[
        bool,
        typer.Option(
            "--no-normalize",
            help="Keep the input coordinates (distances and thresholds in input units) instead of the GT's "
            "unit frame (bbox centre, longest side 1).",
        ),
    ] = False,
    units: Annotated[
        str | None,
        typer.Option("--units", help="Name of the input units, e.g. m; implies --no-normalize.", show_default=False),
    ] = None,
    f_thresholds: Annotated[
        str,
        typer.Option(
            "--f-thresholds",
            help="Comma-separated F-score thresholds: shares of the GT's longest side (0.01 = 1%), or input "
            "units with --no-normalize/--units.",
        ),
    ] = DEFAULT_F_THRESHOLDS_TEXT,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Surface samples per mesh.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the surface and IoU sampling.")] = 0,
    iou_points: Annotated[
        int, typer.Option("--iou-points", min=0, help="Uniform points for the volumetric IoU; 0 skips it.")
    ] = 100_000,
    open_meshes: Annotated[
        OpenMeshes,
        typer.Option(
            "--open-meshes",
            help="IoU of a mesh that is not closed: fill (the inside of its voxelisation, 256³ cells over the "
            "IoU box, with holes up to about two cells sealed) or skip (no IoU).",
        ),
    ] = OpenMeshes.fill,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table and no progress; errors only.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    """Score predicted meshes against ground truth: accuracy, completeness, Chamfer-L1/L2, normal
    consistency, F-scores and volumetric IoU, with the unit of every number stated. A prediction
    that is a point cloud (a PLY of points, vertices without faces) is scored as a cloud: accuracy,
    completeness, Chamfer and F-scores from its points, no normal consistency or IoU.

    Exit status: 0 when every pair was evaluated, 1 when some failed (missing or unreadable files),
    2 for usage errors.
    """
    thresholds, folder_mode = _usage(pred, gt, f_thresholds, csv_path)
    options: dict[str, Any] = dict(
        n_samples=samples,
        seed=seed,
        normalize=not (no_normalize or units is not None),
        f_thresholds=thresholds,
        iou_points=iou_points,
        units=units,
        open_meshes=open_meshes.value,
    )
    if not folder_mode:
        _missing_files(pred, gt, debug)
    evaluation = _evaluate(pred, gt, folder_mode, options, quiet=quiet, debug=debug)
    raise typer.Exit(_report(evaluation, options, json_output=json_output, quiet=quiet, csv_path=csv_path, debug=debug))


def _usage(pred: Path, gt: Path, f_thresholds: str, csv_path: Path | None) -> tuple[list[float], bool]:
    """(F-score thresholds, whether both are folders), or exit 2 with one line."""
    try:
        thresholds = _parse_thresholds(f_thresholds)
        folder_mode = gt.is_dir()
        if folder_mode and not pred.is_dir():
            raise _UsageError(f"{pred}: GT is a folder, so PRED must be a folder too")
        if not folder_mode and pred.is_dir():
            raise _UsageError(f"{gt}: PRED is a folder, so GT must be a folder too")
        problem = None if csv_path is None else _csv_problem(csv_path)
        if problem is not None:
            raise _UsageError(problem)
    except _UsageError as error:
        out.error(str(error))
        raise typer.Exit(EXIT_USAGE) from None
    return thresholds, folder_mode


def _evaluate(pred: Path, gt: Path, folder_mode: bool, options: dict[str, Any], *, quiet: bool, debug: bool) -> Any:
    """Every pair scored; a folder-level problem exits 2, a bug exits 1 with one line (the traceback with --debug)."""
    from occrecon.evaluation import EvalResult, FolderEvaluation, evaluate_pair

    try:
        if folder_mode:
            return _run_folders(pred, gt, options, show_progress=not quiet, err=out.stderr)
        try:
            results = [evaluate_pair(pred, gt, **options)]
        except InputError as error:
            results = [EvalResult.failed(pred.stem, pred, gt, error)]
        return FolderEvaluation(results, [])
    except InputError as error:
        # Only folder-level problems get here (a folder missing or without meshes): a setup error.
        out.error(str(error))
        if debug:
            out.print_traceback(error)
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as error:  # noqa: BLE001 - a bug must still end in one readable line without --debug
        if debug:
            raise
        out.error(f"unexpected {type(error).__name__}: {error} (rerun with --debug for the traceback)")
        raise typer.Exit(EXIT_SOME_FAILED) from None


def _missing_files(pred: Path, gt: Path, debug: bool) -> None:
    """One pair where a file does not exist: every missing one named, no table of worst values, exit 1."""
    from occrecon.io.paths import check_regular_file

    missing = []
    for path in (pred, gt):
        try:
            check_regular_file(path, allow_empty=True)
        except InputError as error:
            if not os.path.lexists(path):
                missing.append(error)
    if not missing:
        return
    for error in missing:
        out.error(str(error))
        if debug:
            out.print_traceback(error)
    raise typer.Exit(EXIT_SOME_FAILED)


def _report(evaluation: Any, options: dict[str, Any], *, json_output: bool, quiet: bool, csv_path: Path | None, debug: bool) -> int:
    """Print the scores (table or JSON), write the CSV, name every failure; the exit code."""
    from occrecon.evaluation import mean_metrics

    mean = mean_metrics(evaluation.results)
    if json_output:
        print(json.dumps(_json_document(evaluation, mean, options), indent=2))
    elif not quiet:
        _render_table(_stdout_console(), evaluation, mean, options)
    csv_failed = False
    if csv_path is not None:
        try:
            _write_csv(csv_path, evaluation.results)
        except OSError as error:  # read-only, full disk: the scores are shown, the file is not written
            out.error(out.os_error_message(error, csv_path, "cannot write the CSV"))
            if debug:
                out.print_traceback(error)
            csv_failed = True
    for result in evaluation.results:
        if result.error is not None:
            out.error(result.error)
            if debug and result.exception is not None:
                out.print_traceback(result.exception)
    if csv_failed:
        return EXIT_USAGE
    return EXIT_OK if evaluation.all_evaluated else EXIT_SOME_FAILED


def _run_folders(pred: Path, gt: Path, options: dict[str, Any], show_progress: bool, err: Console) -> FolderEvaluation:
    from occrecon.evaluation import evaluate_folders

    if not show_progress:
        return evaluate_folders(pred, gt, **options)
    with Progress(
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("eval", total=None)

        def advance(result: EvalResult, index: int, total: int) -> None:
            progress.update(task, completed=index, total=total)

        return evaluate_folders(pred, gt, on_result=advance, **options)
