"""Evaluate mesh files: one prediction against one ground truth, or two folders matched by file stem.

Per-item problems never stop a batch. A prediction that is missing, unreadable, empty or degenerate is
scored with the worst values (see :func:`occrecon.metrics.worst_pointcloud_metrics`) and so counts in the
mean; an unusable ground truth makes the item fail, because there is nothing to score against.

A prediction that is a point cloud (vertices without faces: a scan, a PLY of points) is scored as a
cloud (:func:`cloud_metrics`): accuracy, completeness, Chamfer and F-scores from its points, and no normal
consistency or IoU, which need a surface; its status is ``point cloud``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from occrecon.errors import InputError
from occrecon.metrics import DEFAULT_F_THRESHOLDS, STATUS_DEGENERATE, STATUS_EMPTY, STATUS_OK, MeshMetrics
from occrecon.metrics import evaluate_meshes

__all__ = [
    "MESH_SUFFIXES",
    "STATUS_MISSING",
    "STATUS_UNREADABLE",
    "STATUS_FAILED",
    "STATUS_CLOUD",
    "cloud_metrics",
    "EvalResult",
    "FolderEvaluation",
    "load_mesh",
    "evaluate_pair",
    "evaluate_folders",
    "match_folders",
    "FolderItem",
    "FolderMatch",
    "mean_metrics",
]

MESH_SUFFIXES: tuple[str, ...] = (".obj", ".ply", ".off", ".stl", ".glb")

STATUS_MISSING = "missing prediction"
STATUS_UNREADABLE = "unreadable prediction"
STATUS_FAILED = "failed"
STATUS_CLOUD = "point cloud"
# Statuses that mean "the evaluation ran as asked"; the others make the CLI exit with 1.
_EVALUATED = (STATUS_OK, STATUS_EMPTY, STATUS_DEGENERATE, STATUS_CLOUD)


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """Read a mesh file (scenes are concatenated into one mesh).

    Args:
        path: .obj, .ply, .off, .stl or .glb file.

    Returns:
        The mesh; it may be empty (an empty file or a point cloud without faces).

    Raises:
        InputError: the file does not exist, is not a regular file (a FIFO, a device, a folder), has an
            unsupported suffix, is over the memory budget, cannot be parsed, or has NaN/inf vertices.
    """
    from occrecon.io.paths import check_regular_file
    from occrecon.io.readers import check_mesh_file_budget, guarded_parse

    path = Path(path)
    # The inputs' one check: a FIFO, a device or a folder is refused without being opened for reading.
    check_regular_file(path, allow_empty=True)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(path, f"unsupported mesh format {path.suffix!r} (supported: {', '.join(MESH_SUFFIXES)})")
    check_mesh_file_budget(path)

    def load() -> trimesh.Trimesh:
        # process=False first: trimesh's processing silently drops NaN vertices and the faces using
        # them, which would score a broken mesh as a good one.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            mesh = trimesh.load(path, force="mesh", process=False)
            if isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) == 0:
                # A file of points: forced into a mesh it loses them; keep them, as a mesh without faces.
                loaded = trimesh.load(path, process=False)
                if isinstance(loaded, trimesh.PointCloud) and len(loaded.vertices):
                    mesh = trimesh.Trimesh(vertices=np.asarray(loaded.vertices), faces=np.zeros((0, 3), dtype=np.int64), process=False)
            return mesh

    try:
        mesh = guarded_parse(str(path), path.suffix.lstrip(".").upper(), load)
    except InputError as error:
        raise InputError(path, f"cannot read mesh: {error.problem}") from error.__cause__
    if not isinstance(mesh, trimesh.Trimesh):
        raise InputError(path, f"cannot read mesh (got {type(mesh).__name__})")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if len(vertices):
        finite = np.isfinite(vertices).all(axis=1)
        if not finite.all():
            bad = int(len(finite) - np.count_nonzero(finite))
            raise InputError(path, f"{bad} of {len(finite)} vertices are not finite (NaN/inf): a broken mesh is not scored")
    mesh.process()
    return mesh


@dataclass
class EvalResult:
    """Outcome of one prediction/ground-truth pair.

    Attributes:
        name: item name (the file stem in folder mode).
        pred_path: prediction file, None when no file with this stem exists.
        gt_path: ground-truth file.
        status: the metrics' status (``ok``, ``empty prediction``, ``degenerate prediction``), or
            ``missing prediction`` / ``unreadable prediction`` (scored as worst) or ``failed`` (not scored).
        metrics: the scores, None only for ``failed``.
        error: one line ``<file>: <problem>`` when something went wrong, else None.
        seconds: wall time of the item.
        exception: the exception behind ``error`` (for ``--debug`` tracebacks; not serialised).
    """

    name: str
    pred_path: Path | None
    gt_path: Path | None
    status: str
    metrics: MeshMetrics | None
    error: str | None = None
    seconds: float = 0.0
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def evaluated(self) -> bool:
        """True when the pair was evaluated as asked (an empty prediction is a valid, if bad, result)."""
        return self.status in _EVALUATED

    @classmethod
    def failed(cls, name: str, pred_path: Path | None, gt_path: Path | None, error: BaseException) -> EvalResult:
        return cls(name, pred_path, gt_path, STATUS_FAILED, None, _one_line(error), 0.0, error)

    def as_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready dict: name, paths, status, error, then every metric (absent for ``failed`` items)."""
        result: dict[str, Any] = {
            "name": self.name,
            "pred": None if self.pred_path is None else str(self.pred_path),
            "gt": None if self.gt_path is None else str(self.gt_path),
            "status": self.status,
            "error": self.error,
        }
        if self.metrics is not None:
            metrics = self.metrics.as_dict()
            metrics.pop("status")
            result.update(metrics)
        result["seconds"] = round(self.seconds, 4)
        return result


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _gt_error(gt_path: Path, error: InputError) -> InputError:
    """Attach the ground-truth path to an error raised on the in-memory mesh."""
    if error.source is not None:
        return error
    return InputError(gt_path, error.problem)


def evaluate_pair(
    pred_path: str | Path,
    gt_path: str | Path,
    *,
    n_samples: int = 100_000,
    seed: int = 0,
    normalize: bool = True,
    f_thresholds: Sequence[float] = DEFAULT_F_THRESHOLDS,
    iou_points: int = 100_000,
    units: str | None = None,
    open_meshes: str = "fill",
    name: str | None = None,
) -> EvalResult:
    """Evaluate one prediction file against one ground-truth file.

    Options are those of :func:`occrecon.metrics.evaluate_meshes`.

    Returns:
        The result. A missing or unreadable prediction gives status ``missing prediction`` /
        ``unreadable prediction`` with the worst values and ``error`` set.

    Raises:
        InputError: the ground truth is missing, unreadable, empty or degenerate.
    """
    options = dict(
        n_samples=n_samples,
        seed=seed,
        normalize=normalize,
        f_thresholds=f_thresholds,
        iou_points=iou_points,
        units=units,
        open_meshes=open_meshes,
    )
    pred_path = Path(pred_path)
    return _evaluate(name or pred_path.stem, pred_path, Path(gt_path), options)


def _evaluate(name: str, pred_path: Path | None, gt_path: Path, options: dict[str, Any]) -> EvalResult:
    """:func:`evaluate_pair`, where ``pred_path=None`` means "no prediction was produced"."""
    start = time.perf_counter()
    gt = load_mesh(gt_path)
    status, error, exception = None, None, None
    if pred_path is None:
        status, error = STATUS_MISSING, f"{gt_path}: no prediction with stem {name!r}"
        pred = trimesh.Trimesh()
    else:
        try:
            pred = load_mesh(pred_path)
        except InputError as load_error:
            status = STATUS_MISSING if not pred_path.exists() else STATUS_UNREADABLE
            error, exception = str(load_error), load_error
            pred = trimesh.Trimesh()
    try:
        if status is None and len(pred.vertices) and not len(pred.faces):
            metrics = cloud_metrics(np.asarray(pred.vertices), gt, **options)
        else:
            metrics = evaluate_meshes(pred, gt, **options)
    except InputError as metric_error:
        raise _gt_error(gt_path, metric_error) from metric_error
    if status is not None:
        # The worst values were filled in because the mesh is absent, not because it is empty: say so.
        metrics.status = status
        metrics.notes = [f"{status}: scored with the worst values"] + [
            note for note in metrics.notes if not note.startswith("prediction is empty")
        ]
    return EvalResult(
        name=name,
        pred_path=pred_path,
        gt_path=gt_path,
        status=metrics.status,
        metrics=metrics,
        error=error,
        seconds=time.perf_counter() - start,
        exception=exception,
    )


def cloud_metrics(
    points: np.ndarray,
    gt: trimesh.Trimesh,
    *,
    n_samples: int = 100_000,
    seed: int = 0,
    normalize: bool = True,
    f_thresholds: Sequence[float] = DEFAULT_F_THRESHOLDS,
    units: str | None = None,
    **_ignored: Any,
) -> MeshMetrics:
    """Score a predicted point cloud against a ground-truth mesh: a cloud is scored as a cloud.

    Accuracy, completeness, Chamfer-L1/L2 and F-scores come from the cloud's own points (a seeded
    subset of ``n_samples`` where it has more) against ``n_samples`` points sampled on the ground
    truth, in the same frame and units as :func:`occrecon.metrics.evaluate_meshes`. Normal
    consistency and IoU need a surface with an inside: they are None, and the notes say so.

    Args:
        points: (n, 3) the cloud, n >= 1, in the ground truth's coordinates.
        gt: the ground-truth mesh.
        n_samples, seed, normalize, f_thresholds, units: as for ``evaluate_meshes``; ``iou_points`` and
            ``open_meshes`` are accepted and ignored.

    Raises:
        InputError: (without a path) the ground truth has no surface.
    """
    from occrecon.metrics import _STREAM_GT, UNIT_FRAME_LABEL, normalization_transform, pointcloud_metrics, sample_surface, threshold_key

    if normalize and units is not None:
        raise ValueError("units name the input frame, so they only apply with normalize=False")
    thresholds = tuple(float(t) for t in f_thresholds)
    center, scale = normalization_transform(gt)
    gt_unit = trimesh.Trimesh((np.asarray(gt.vertices, dtype=np.float64) - center) / scale, gt.faces, process=False)
    if len(gt_unit.faces) == 0 or float(gt_unit.area) <= 0.0:
        raise InputError(None, "ground truth has no surface (a point cloud or a mesh of zero area): the reference must be a mesh")
    cloud = (np.asarray(points, dtype=np.float64).reshape(-1, 3) - center) / scale
    rng = np.random.default_rng([seed, 0xC10D])
    if len(cloud) > n_samples:
        cloud = cloud[np.sort(rng.choice(len(cloud), n_samples, replace=False))]
    gt_points, _ = sample_surface(gt_unit, n_samples, np.random.SeedSequence([seed, _STREAM_GT]))  # the same GT samples as a mesh's scoring
    length = 1.0 if normalize else scale
    unit_thresholds = [t / length for t in thresholds]
    values = pointcloud_metrics(cloud, None, gt_points, None, unit_thresholds)
    chamfer_l1 = float(values["chamfer_l1"]) * length  # type: ignore[arg-type]
    notes = [
        f"prediction is a point cloud ({len(points):,} points, no faces): scored as a cloud; "
        "no normal consistency or IoU, which need a surface"
    ]
    return MeshMetrics(
        status=STATUS_CLOUD,
        unit=UNIT_FRAME_LABEL if normalize else (units or "input units"),
        normalized=normalize,
        accuracy=float(values["accuracy"]) * length,  # type: ignore[arg-type]
        completeness=float(values["completeness"]) * length,  # type: ignore[arg-type]
        chamfer_l1=chamfer_l1,
        chamfer_l2=float(values["chamfer_l2"]) * length**2,  # type: ignore[arg-type]
        normal_consistency=None,  # type: ignore[arg-type]
        f_score={t: float(values[threshold_key("f_score", u)]) for t, u in zip(thresholds, unit_thresholds)},  # type: ignore[arg-type]
        precision={t: float(values[threshold_key("precision", u)]) for t, u in zip(thresholds, unit_thresholds)},  # type: ignore[arg-type]
        recall={t: float(values[threshold_key("recall", u)]) for t, u in zip(thresholds, unit_thresholds)},  # type: ignore[arg-type]
        iou=None,
        chamfer_l1_x10=10.0 * chamfer_l1 if normalize else None,
        notes=notes,
        n_samples=n_samples,
        seed=seed,
        gt_scale=scale,
    )


@dataclass
class FolderItem:
    """One ground-truth stem of a folder evaluation.

    Attributes:
        stem: the shared file stem.
        pred_path: the prediction, None when there is none.
        gt_path: the ground truth, None when the stem is ambiguous in the ground-truth folder.
        problem: why the item cannot be evaluated (several files share the stem), else None.
    """

    stem: str
    pred_path: Path | None
    gt_path: Path | None
    problem: str | None = None


@dataclass
class FolderMatch:
    """Files of two folders paired by stem.

    Attributes:
        items: one item per ground-truth stem, sorted by stem.
        unmatched_predictions: predictions whose stem has no ground truth (skipped).
    """

    items: list[FolderItem]
    unmatched_predictions: list[Path]


def _meshes_by_stem(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in MESH_SUFFIXES:
            found.setdefault(path.stem, []).append(path)
    return found


def match_folders(pred_dir: str | Path, gt_dir: str | Path) -> FolderMatch:
    """Pair the mesh files (top level only) of two folders by file stem.

    Raises:
        InputError: a folder does not exist, or the ground-truth folder holds no mesh.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for folder in (pred_dir, gt_dir):
        if not folder.is_dir():
            raise InputError(folder, "not a folder")
    preds = _meshes_by_stem(pred_dir)
    gts = _meshes_by_stem(gt_dir)
    if not gts:
        raise InputError(gt_dir, f"no mesh files ({', '.join(MESH_SUFFIXES)}) in the ground-truth folder")
    items = []
    for stem in sorted(gts):
        pred_files = preds.get(stem, [])
        # Picking one of several same-stem files silently would score an arbitrary file.
        for files in (gts[stem], pred_files):
            if len(files) > 1:
                names = ", ".join(path.name for path in files)
                problem = f"{files[0].parent / stem}.*: several meshes share this stem ({names})"
                items.append(FolderItem(stem, None, None, problem))
                break
        else:
            items.append(FolderItem(stem, pred_files[0] if pred_files else None, gts[stem][0]))
    unmatched = [path for stem in sorted(preds) if stem not in gts for path in preds[stem]]
    return FolderMatch(items, unmatched)


@dataclass
class FolderEvaluation:
    """Results of :func:`evaluate_folders`.

    Attributes:
        results: one result per ground-truth stem, sorted by stem.
        skipped: one note per prediction without a ground truth.
    """

    results: list[EvalResult]
    skipped: list[str]

    @property
    def all_evaluated(self) -> bool:
        return all(result.evaluated for result in self.results)


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    on_result: Callable[[EvalResult, int, int], None] | None = None,
    **options: Any,
) -> FolderEvaluation:
    """Evaluate every ground-truth mesh of ``gt_dir`` against the prediction with the same stem in ``pred_dir``.

    A ground-truth stem without a prediction is reported as ``missing prediction`` and scored with the
    worst values; a prediction without a ground truth is skipped with a note. A bad file fails its item
    (one-line ``error``) and the others go on.

    Args:
        pred_dir: folder of predicted meshes.
        gt_dir: folder of ground-truth meshes.
        on_result: called as ``on_result(result, index, total)`` after each item, e.g. for a progress bar.
        **options: keyword options of :func:`evaluate_pair` (``n_samples``, ``seed``, ``normalize``, ...).

    Raises:
        InputError: a folder does not exist or the ground-truth folder holds no mesh.
    """
    match = match_folders(pred_dir, gt_dir)
    results = []
    for index, item in enumerate(match.items):
        start = time.perf_counter()
        try:
            if item.problem is not None:
                raise InputError(None, item.problem)
            assert item.gt_path is not None
            result = _evaluate(item.stem, item.pred_path, item.gt_path, options)
            if item.pred_path is None:
                result.error = f"{item.gt_path}: no prediction with stem {item.stem!r} in {pred_dir}"
        except InputError as error:
            result = EvalResult.failed(item.stem, item.pred_path, item.gt_path, error)
            result.seconds = time.perf_counter() - start
        results.append(result)
        if on_result is not None:
            on_result(result, index + 1, len(match.items))
    skipped = [f"{path}: no ground truth with this stem, skipped" for path in match.unmatched_predictions]
    return FolderEvaluation(results, skipped)


def mean_metrics(results: Sequence[EvalResult]) -> dict[str, Any]:
    """Mean of every metric over the scored items.

    Items with worst-value scores (empty, degenerate, missing, unreadable predictions) are included; items
    that could not be scored (``failed``) are not, and are counted in ``failed``. IoU is averaged over the
    items that have one (``iou_count``).

    Returns:
        Flat dict with the metric keys of :meth:`EvalResult.as_dict` plus ``count`` (items averaged),
        ``failed``, ``iou_count``, ``unit`` and ``normalized``; metrics are None when nothing was scored.
    """
    scored = [result.metrics.as_dict() for result in results if result.metrics is not None]
    summary: dict[str, Any] = {
        "count": len(scored),
        "failed": sum(result.metrics is None for result in results),
        "unit": scored[0]["unit"] if scored else None,
        "normalized": scored[0]["normalized"] if scored else None,
    }
    if not scored:
        return summary
    skip = {"status", "unit", "normalized", "notes", "n_samples", "seed", "gt_scale", "iou", "chamfer_l1_x10"}
    for key in scored[0]:
        if key in skip:
            continue
        # A point cloud has no normal consistency: the mean is over the items that have one.
        present = [item[key] for item in scored if item.get(key) is not None]
        summary[key] = float(np.mean(present)) if present else None
    summary["normal_consistency_count"] = sum(item.get("normal_consistency") is not None for item in scored)
    ious = [item["iou"] for item in scored if item["iou"] is not None]
    summary["iou"] = float(np.mean(ious)) if ious else None
    summary["iou_count"] = len(ious)
    x10 = [item["chamfer_l1_x10"] for item in scored]
    summary["chamfer_l1_x10"] = None if any(v is None for v in x10) else float(np.mean(x10))
    # Means of finite values stay finite; this guards the JSON output against a silent NaN.
    for key, value in summary.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"non-finite mean for {key}")
    return summary
