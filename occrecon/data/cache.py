"""Sharded on-disk datasets: parallel, deterministic, resumable generation and lazy loading.

Layout of ``out_dir``::

    manifest.json          settings (seed, counts, generator version, families, sizes)
    shard_00000.npz        shapes 0 .. shard_size-1, every key stacked on axis 0
    shard_00001.npz        ...

Shape ``i`` is generated from ``np.random.default_rng([seed, i])`` alone, so the
data do not depend on the number of workers or the order they finish in. A shard
is written to a temporary file and renamed when complete; an interrupted run
resumes by generating only the missing shards. Shards are uncompressed ``.npz``
so that :class:`ShardDataset` can memory-map every array instead of reading it.

Procedural rooms for the scene model use the same layout and machinery
(:func:`build_room_dataset`), with variable-size point sets concatenated per
shard, and are read as training crops by :class:`CropDataset`. So do partial
clouds unprojected from degraded depth, for completion in the viewer-centred
frame (:func:`build_partial_dataset`, read by :class:`PartialDataset`).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from occrecon.data import rooms
from occrecon.data.prepare import prepare_sample, unpack_occupancies
from occrecon.data.shapes import FAMILIES, random_shape
from occrecon.errors import InputError

GENERATOR_VERSION = "2"  # 2: organic families (animal, figure, blob, tube)
MANIFEST = "manifest.json"


def shard_path(out_dir: str | Path, k: int) -> Path:
    """Path of shard ``k``."""
    return Path(out_dir) / f"shard_{k:05d}.npz"


def generate_item(
    seed: int,
    i: int,
    families: list[str] | None = None,
    source_files: list[str] | None = None,
    prepare_kwargs: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Arrays of shape ``i`` of the dataset ``seed`` (procedural, or ``source_files[i % n]``)."""
    rng = np.random.default_rng([seed, i])
    kw = dict(prepare_kwargs or {})
    if source_files:
        from occrecon.data.mesh_source import prepare_mesh  # open3d scene per file

        path = source_files[i % len(source_files)]
        out = prepare_mesh(path, rng, **kw)
        name = Path(path).stem
    else:
        shape, name = random_shape(rng, families)
        out = prepare_sample(shape, rng, **kw)
    out["index"] = np.int64(i)
    out["family"] = np.array(name)
    return out


def _build_shard(job: tuple) -> tuple[int, int, str | None, str | None]:
    """Worker entry point: generate and atomically write one shard.

    Returns ``(k, n_items, error_source, error_problem)``; input errors are returned,
    not raised, because :class:`InputError` does not survive pickling with its fields.
    """
    out_dir, k, start, stop, seed, families, source_files, prepare_kwargs = job
    try:
        items = [generate_item(seed, i, families, source_files, prepare_kwargs) for i in range(start, stop)]
    except InputError as exc:
        return k, 0, exc.source, exc.problem
    arrays = {key: np.stack([it[key] for it in items]) for key in items[0]}
    _write_shard(out_dir, k, arrays)
    return k, stop - start, None, None


def _write_shard(out_dir: str | Path, k: int, arrays: dict[str, np.ndarray]) -> None:
    """Write shard ``k`` atomically (temporary file, then rename), uncompressed for memory-mapping."""
    final = shard_path(out_dir, k)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, final)


def _missing_shards(out: Path, n_items: int, shard_size: int) -> tuple[list[tuple[int, int, int]], int]:
    """Shards still to generate as ``(k, start, stop)``, and how many items the complete ones hold."""
    missing, done = [], 0
    for k in range(-(-n_items // shard_size)):
        start, stop = k * shard_size, min((k + 1) * shard_size, n_items)
        if shard_is_complete(shard_path(out, k), stop - start):
            done += stop - start
        else:
            missing.append((k, start, stop))
    return missing, done


def shard_is_complete(path: Path, expected: int) -> bool:
    """True if the shard exists, is a readable archive and holds ``expected`` shapes."""
    if not path.is_file():
        return False
    try:
        with np.load(path) as z:
            return len(z["index"]) == expected
    except Exception:  # a truncated or foreign file is simply regenerated
        return False


def build_dataset(
    out_dir: str | Path,
    n_shapes: int | None,
    seed: int,
    *,
    shard_size: int = 256,
    workers: int = 2,
    families: list[str] | None = None,
    source: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    prepare_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate (or complete) a sharded dataset in ``out_dir``.

    Args:
        out_dir: dataset folder (created).
        n_shapes: number of shapes; with ``source`` None means one per mesh file.
        seed: dataset seed; shape i uses ``np.random.default_rng([seed, i])``.
        shard_size: shapes per shard.
        workers: processes (spawned); 0 or 1 generates in this process.
        families: procedural families to draw from (default: all); ignored with ``source``.
        source: folder of the user's mesh files instead of procedural shapes.
        progress: called as ``progress(shapes_done, n_shapes)`` after each shard.
        prepare_kwargs: keyword arguments for :func:`prepare_sample` (sizes).

    Returns:
        the manifest (also written to ``out_dir/manifest.json``).

    Raises:
        InputError: the folder holds a dataset with other settings, or a source mesh is unusable.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source_files = None
    if source is not None:
        from occrecon.data.mesh_source import list_mesh_files

        source_files = [str(p) for p in list_mesh_files(source)]
        if n_shapes is None:
            n_shapes = len(source_files)
        families = None
    elif families is not None:
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown:
            raise InputError(None, f"unknown shape families {unknown}; known: {sorted(FAMILIES)}")
    if n_shapes is None or n_shapes <= 0:
        raise InputError(None, "n_shapes must be a positive number")
    n_shards = (n_shapes + shard_size - 1) // shard_size
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_shapes": int(n_shapes),
        "shard_size": int(shard_size),
        "n_shards": n_shards,
        "families": sorted(FAMILIES) if families is None and source is None else families,
        "source": None if source is None else str(Path(source).resolve()),
        "source_files": source_files,
        "prepare": dict(prepare_kwargs or {}),
    }
    return _build_missing_shards(
        out, manifest, n_shapes, _build_shard, lambda k, start, stop, _: (str(out), k, start, stop, int(seed), families, source_files, prepare_kwargs), workers, progress
    )


def _build_missing_shards(
    out: Path,
    manifest: dict[str, Any],
    total: int,
    worker: Callable[[tuple], tuple],
    job: Callable[[int, int, int, dict[str, Any]], tuple],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    """Check or start ``out``'s manifest, build the shards it lacks and mark it complete.

    ``job(k, start, stop, manifest)`` is shard ``k``'s argument for ``worker``, given the
    manifest as it is recorded (JSON types); ``worker`` returns
    ``(k, items built, ...)`` and, for shapes, ``(..., source, problem)``: a problem
    (a user's mesh that cannot be prepared) stops the run with that message.
    """
    manifest = json.loads(json.dumps(manifest))  # compare like with like (tuples become lists)
    was_complete = _open_manifest(out, manifest)
    ranges, done = _missing_shards(out, total, int(manifest["shard_size"]))
    jobs = [job(k, start, stop, manifest) for k, start, stop in ranges]
    if progress is not None:
        progress(done, total)

    def handle(result: tuple) -> None:
        nonlocal done
        _, n, *problem = result
        if problem and problem[1] is not None:
            raise InputError(problem[0], problem[1])
        done += n
        if progress is not None:
            progress(done, total)

    _run_jobs(worker, jobs, workers, handle)
    if jobs or not was_complete:
        _write_json(out / MANIFEST, {**manifest, "complete": True})
    return manifest


def _open_manifest(out: Path, manifest: dict[str, Any]) -> bool:
    """Check ``out``'s manifest against ``manifest`` (or start one); return whether it was complete.

    Raises:
        InputError: the folder holds a dataset with other settings.
    """
    mpath = out / MANIFEST
    was_complete = False
    if mpath.is_file():
        old = json.loads(mpath.read_text(encoding="utf-8"))
        was_complete = bool(old.pop("complete", False))
        if old != manifest:
            raise InputError(
                out, "holds a dataset generated with other settings; use another folder or delete it"
            )
    if not was_complete:
        _write_json(mpath, {**manifest, "complete": False})
    return was_complete


def _run_jobs(worker: Callable[[tuple], Any], jobs: list[tuple], workers: int, handle: Callable[[Any], None]) -> None:
    """Run shard jobs in this process or a spawned pool, calling ``handle`` on each result as it arrives."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            handle(worker(job))
        return
    # BLAS/OpenMP pools inside each worker would only fight the other workers for cores.
    saved = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({v: "1" for v in saved})
    try:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap_unordered(worker, jobs):
                handle(result)
    finally:
        for v, val in saved.items():
            if val is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = val


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace a JSON file atomically: several training runs may read the manifest while one writes it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
def open_npz_memmap(path: str | Path) -> dict[str, np.ndarray]:
    """Memory-map every array of an uncompressed ``.npz`` (as written by ``np.savez``).

    Returns:
        key -> read-only ``np.memmap`` (0-d arrays are read into memory).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            if info.compress_type != zipfile.ZIP_STORED:
                arrays[key] = np.load(zf.open(info))
                continue
            # Local header: 30 bytes, then name and extra field whose lengths may differ
            # from the central directory's copy (zip64 extras), so read them here.
            fh.seek(info.header_offset)
            header = fh.read(30)
            name_len = int.from_bytes(header[26:28], "little")
            extra_len = int.from_bytes(header[28:30], "little")
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
            if dtype.hasobject:
                raise InputError(path, f"array {key} holds Python objects; refusing to load")
            if len(shape) == 0:
                arrays[key] = np.fromfile(fh, dtype=dtype, count=1).reshape(())
            else:
                arrays[key] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                        order="F" if fortran else "C")
    return arrays


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The dataset's manifest; raises :class:`InputError` if missing or incomplete."""
    mpath = Path(root) / MANIFEST
    if not mpath.is_file():
        raise InputError(root, "no manifest.json: not a dataset folder (run build_dataset first)")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    if not manifest.get("complete"):
        raise InputError(root, "dataset is incomplete; rerun build_dataset to finish it")
    return manifest


def _checked_indices(indices: list[int] | np.ndarray | None, n: int) -> np.ndarray:
    """The item indices a dataset serves: all ``n`` by default, else the given subset, range-checked."""
    out = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(out) and (out.min() < 0 or out.max() >= n):
        raise IndexError("indices out of range")
    return out


UPRIGHT_SYMMETRIES = 8
"""Symmetries 0-7 of :func:`box_symmetry` keep y up."""
BOX_SYMMETRIES = 48
"""All signed axis permutations: every axis up, every turn and mirror."""


def _signed_permutations() -> np.ndarray:
    """The 48 symmetries of the cube, the 8 that keep y up first (in :func:`box_symmetry`'s order)."""
    upright = []
    for k in range(UPRIGHT_SYMMETRIES):
        c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k % 4]
        rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float32)
        upright.append(rot @ np.diag([-1.0, 1.0, 1.0]).astype(np.float32) if k >= 4 else rot)
    others = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3), np.float32)
            m[np.arange(3), perm] = signs
            if not any(np.array_equal(m, u) for u in upright):
                others.append(m)
    return np.stack(upright + others)


_SYMMETRIES = _signed_permutations()


def box_symmetry(k: int) -> np.ndarray:
    """Element ``k`` (0-47) of the symmetries of the canonical box: the signed axis permutations.

    They map the padded box ``[-0.55, 0.55]³`` and the voxel cell centres onto
    themselves, so labels stay exact. ``k`` < 8 keeps y up (y rotations by k·90°,
    mirrored for k >= 4): procedural objects all face +z, real ones face anywhere
    around y. ``k`` >= 8 lays the shape on another side, as scans and CAD files
    with z (or any other axis) up arrive.
    """
    return _SYMMETRIES[k].copy()


def transform_voxels(grid: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a signed axis permutation ``m`` (3, 3) to an (R, R, R) grid centred on the origin."""
    axes = [int(np.flatnonzero(row)[0]) for row in m]
    out = np.transpose(grid, axes)
    flip = tuple(r for r, row in enumerate(m) if row[axes[r]] < 0)
    return np.ascontiguousarray(np.flip(out, flip) if flip else out)


class ShardDataset(torch.utils.data.Dataset):
    """Per-shape training items from a sharded dataset, for one task.

    Shards are memory-mapped on first use in each process (DataLoader workers open
    their own maps), so memory stays at the pages actually touched.

    Every item is a dict:
        ``inputs``: ``points`` task: (n_input_points, 3) float32 surface samples plus
        Gaussian noise (``noise_std``, upstream 0.005); ``voxels`` task: (R, R, R)
        float32 0/1; ``image`` task: (3, image_size, image_size) float32 in [0, 1], one
        random view resized from the stored render (plus ``camera_K`` rescaled to that
        size and ``camera_Rt``, canonical-to-camera).
        ``points``: (n_query, 3) float32 query points from the stored samples (with
        1e-4 jitter, as upstream does for float16 points); ``occ``: (n_query,) float32.
        ``index``: int shape index; ``family``: str.

    Args:
        root: dataset folder.
        task: ``"points"``, ``"voxels"`` or ``"image"``.
        n_query: query points per item (upstream: 2048; 1024 for voxels).
        near_fraction: share of queries drawn from the near-surface samples
            (0 reproduces upstream's uniform-only sampling).
        n_input_points: input points for the ``points`` task (upstream: 300).
        noise_std: input noise for the ``points`` task.
        image_size: network input side for the ``image`` task (upstream: 224).
        indices: optional subset of shape indices (e.g. a validation split).
        augment: map each ``points``/``voxels`` item by a random :func:`box_symmetry`
            (inputs and queries alike); images keep their camera and are not augmented.
        any_up: draw the symmetry from all 48 (any axis up), not only the 8 that keep y up.
    """

    TASKS = ("points", "voxels", "image")

    def __init__(
        self,
        root: str | Path,
        task: str = "points",
        *,
        n_query: int = 2048,
        near_fraction: float = 0.0,
        n_input_points: int = 300,
        noise_std: float = 0.005,
        image_size: int = 224,
        indices: list[int] | np.ndarray | None = None,
        augment: bool = False,
        any_up: bool = False,
    ):
        if task not in self.TASKS:
            raise ValueError(f"task must be one of {self.TASKS}, got {task!r}")
        self.root = Path(root)
        self.manifest = read_manifest(root)
        self.task = task
        self.n_query = int(n_query)
        self.near_fraction = float(near_fraction)
        self.n_input_points = int(n_input_points)
        self.noise_std = float(noise_std)
        self.image_size = int(image_size)
        self.indices = _checked_indices(indices, self.manifest["n_shapes"])
        self.augment = bool(augment) and task != "image"
        self.n_symmetries = BOX_SYMMETRIES if any_up else UPRIGHT_SYMMETRIES
        self._shards: dict[int, dict[str, np.ndarray]] = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_shards"] = {}  # memory maps are reopened in each worker
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def _shard(self, k: int) -> dict[str, np.ndarray]:
        if k not in self._shards:
            self._shards[k] = open_npz_memmap(shard_path(self.root, k))
        return self._shards[k]

    def _rng(self) -> np.random.Generator:
        # Drawn from torch's generator, which DataLoader seeds per worker: items are
        # reproducible under torch.manual_seed and differ between workers and epochs.
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def __getitem__(self, idx: int) -> dict[str, Any]:
        i = int(self.indices[idx])
        size = self.manifest["shard_size"]
        sh = self._shard(i // size)
        j = i % size
        rng = self._rng()
        n_near = int(round(self.n_query * self.near_fraction)) if "near_points" in sh else 0
        n_uni = self.n_query - n_near
        pts_all = sh["points"][j]
        sel = rng.integers(0, len(pts_all), n_uni)
        occ_all = unpack_occupancies(sh["occupancies"][j], len(pts_all))
        points, occ = [pts_all[sel].astype(np.float32)], [occ_all[sel]]
        if n_near:
            near = sh["near_points"][j]
            sel = rng.integers(0, len(near), n_near)
            points.append(near[sel].astype(np.float32))
            occ.append(unpack_occupancies(sh["near_occupancies"][j], len(near))[sel])
        p = np.concatenate(points)
        p += rng.normal(scale=1e-4, size=p.shape).astype(np.float32)
        sym = box_symmetry(int(rng.integers(self.n_symmetries))) if self.augment else None
        if sym is not None:
            p = p @ sym.T
        item: dict[str, Any] = {
            "points": torch.from_numpy(p),
            "occ": torch.from_numpy(np.concatenate(occ).astype(np.float32)),
            "index": i,
            "family": str(sh["family"][j]),
        }
        if self.task == "points":
            surf = sh["surface_points"][j]
            sel = rng.integers(0, len(surf), self.n_input_points)
            x = surf[sel].astype(np.float32) + rng.normal(scale=self.noise_std, size=(self.n_input_points, 3)).astype(np.float32)
            item["inputs"] = torch.from_numpy(x if sym is None else x @ sym.T)
        elif self.task == "voxels":
            grid = np.array(sh["voxels"][j], dtype=np.float32)
            item["inputs"] = torch.from_numpy(grid if sym is None else transform_voxels(grid, sym))
        else:
            v = int(rng.integers(0, sh["images"].shape[1]))
            img = Image.fromarray(np.asarray(sh["images"][j, v]))
            src = img.size[0]
            img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
            item["inputs"] = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
            K = np.asarray(sh["camera_K"][j, v], dtype=np.float32).copy()
            K[:2] *= self.image_size / src  # pixel-edge convention: scales exactly
            item["camera_K"] = torch.from_numpy(K)
            item["camera_Rt"] = torch.from_numpy(np.array(sh["camera_Rt"][j, v], dtype=np.float32))
        return item


# --------------------------------------------------------------------------------------
# Partial clouds from depth (completion for a depth-first image model)
# --------------------------------------------------------------------------------------
def _build_partial_shard(job: tuple) -> tuple[int, int]:
    """Worker entry point: generate and atomically write one shard of partial-cloud items."""
    from occrecon.data import partial

    out_dir, k, start, stop, seed, views, families, spec = job
    spec = partial.partial_spec_from_dict(spec)
    items = []
    for shape in range(start // views, (stop - 1) // views + 1):
        wanted = [v for v in range(views) if start <= shape * views + v < stop]
        items += partial.generate_partial_items(seed, shape, wanted, families, spec)
    _write_shard(out_dir, k, {key: np.stack([it[key] for it in items]) for key in items[0]})
    return k, stop - start


def build_partial_dataset(
    out_dir: str | Path,
    n_shapes: int,
    seed: int,
    *,
    views: int = 4,
    shard_size: int = 256,
    workers: int = 2,
    families: list[str] | None = None,
    spec: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate (or complete) a sharded dataset of partial-cloud items (:func:`occrecon.data.partial.partial_item`).

    Item ``i`` is view ``i % views`` of shape ``i // views``, the shape
    :func:`build_dataset` draws for the same ``seed`` (so the last shapes can be held out
    as there), the view from its own seed alone: the data do not depend on the workers,
    and an interrupted run resumes by generating only the missing shards, identically.
    Read it with :class:`PartialDataset`.

    Args:
        out_dir: dataset folder (created).
        n_shapes: number of shapes; the dataset holds ``n_shapes * views`` items.
        seed: dataset seed (the shapes' and the views').
        views: views per shape.
        shard_size: items per shard.
        workers: processes (spawned); 0 or 1 generates in this process.
        families: procedural families to draw from (default: all).
        spec: a :class:`occrecon.data.partial.PartialSpec` (default: its defaults).
        progress: called as ``progress(items_done, n_items)`` after each shard.

    Returns:
        the manifest (also written to ``out_dir/manifest.json``).

    Raises:
        InputError: the folder holds a dataset with other settings, or the counts are not positive.
    """
    from occrecon.data import partial

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if n_shapes is None or n_shapes <= 0 or views <= 0:
        raise InputError(None, "n_shapes and views must be positive numbers")
    if families is not None:
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown:
            raise InputError(None, f"unknown shape families {unknown}; known: {sorted(FAMILIES)}")
    n_items = int(n_shapes) * int(views)
    manifest = {
        "kind": "partial",
        "partial_version": partial.PARTIAL_VERSION,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_shapes": int(n_shapes),
        "views": int(views),
        "n_items": n_items,
        "shard_size": int(shard_size),
        "n_shards": (n_items + shard_size - 1) // shard_size,
        "families": sorted(FAMILIES) if families is None else families,
        "spec": partial.partial_spec_to_dict(spec if spec is not None else partial.PartialSpec()),
    }
    return _build_missing_shards(
        out, manifest, n_items, _build_partial_shard,
        lambda k, start, stop, recorded: (str(out), k, start, stop, int(seed), int(views), families, recorded["spec"]), workers, progress,
    )


class PartialDataset(torch.utils.data.Dataset):
    """Training items of a partial-cloud dataset (:func:`build_partial_dataset`), memory-mapped as :class:`ShardDataset`.

    Every item is a dict: ``inputs`` (n_points, 3) float32, the stored partial cloud in
    its viewer-centred frame (the noise is the depth's own; nothing is added);
    ``points`` (n_query, 3) float32 and ``occ`` (n_query,) float32, queries drawn from
    the stored uniform and near-surface ones (``near_fraction`` of them near; 1e-4
    jitter is not needed: labels are exact at the stored float32 points); ``index``
    (shape), ``view``, ``family``.

    Args:
        root: dataset folder.
        n_query: query points per item.
        near_fraction: share of queries from the near-surface ones.
        shapes: optional subset of *shape* indices (e.g. a validation split): every view
            of those shapes.
    """

    def __init__(self, root: str | Path, *, n_query: int = 2048, near_fraction: float = 0.5, shapes: list[int] | np.ndarray | None = None):
        self.root = Path(root)
        self.manifest = read_manifest(root)
        if self.manifest.get("kind") != "partial":
            raise InputError(root, "not a partial-cloud dataset (build it with build_partial_dataset)")
        self.n_query = int(n_query)
        self.near_fraction = float(near_fraction)
        views = int(self.manifest["views"])
        shape_ids = _checked_indices(shapes, self.manifest["n_shapes"])
        self.indices = (shape_ids[:, None] * views + np.arange(views)[None]).reshape(-1)
        self.n_uniform = int(self.manifest["spec"]["n_uniform"])
        self._shards: dict[int, dict[str, np.ndarray]] = {}

    __getstate__ = ShardDataset.__getstate__
    _shard = ShardDataset._shard
    _rng = ShardDataset._rng

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        i = int(self.indices[idx])
        size = self.manifest["shard_size"]
        sh = self._shard(i // size)
        j = i % size
        rng = self._rng()
        pts, occ = sh["points"][j], sh["occ"][j]
        n_near = int(round(self.n_query * self.near_fraction)) if len(pts) > self.n_uniform else 0
        sel = np.concatenate([rng.integers(0, self.n_uniform, self.n_query - n_near), rng.integers(self.n_uniform, len(pts), n_near)])
        return {
            "inputs": torch.from_numpy(np.array(sh["inputs"][j], dtype=np.float32)),
            "points": torch.from_numpy(np.asarray(pts[sel], dtype=np.float32)),
            "occ": torch.from_numpy(np.asarray(occ[sel], dtype=np.float32)),
            "index": int(sh["index"][j]),
            "view": int(sh["view"][j]),
            "family": str(sh["family"][j]),
        }


# --------------------------------------------------------------------------------------
# Rooms (scene model)
# --------------------------------------------------------------------------------------
ROOM_GENERATOR_VERSION = "1"


def _build_room_shard(job: tuple) -> tuple[int, int]:
    """Worker entry point: generate and atomically write one shard of rooms (see :func:`rooms.stack_rooms`)."""
    out_dir, k, start, stop, seed, room_kwargs, prepare_kwargs = job
    items = [rooms.generate_room_item(seed, i, room_kwargs, prepare_kwargs) for i in range(start, stop)]
    _write_shard(out_dir, k, rooms.stack_rooms(items))
    return k, stop - start


def build_room_dataset(
    out_dir: str | Path,
    n_rooms: int,
    seed: int,
    *,
    shard_size: int = 8,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    room_kwargs: dict[str, Any] | None = None,
    prepare_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate (or complete) a sharded dataset of procedural rooms in ``out_dir``.

    Same layout, determinism and resume behaviour as :func:`build_dataset`: room ``i``
    comes from ``np.random.default_rng([seed, i])`` alone, shards are written
    atomically and only missing ones are regenerated. A shard holds its rooms'
    variable-size point sets concatenated (see :func:`occrecon.data.rooms.stack_rooms`);
    read it with :class:`CropDataset`.

    Args:
        out_dir: dataset folder (created).
        n_rooms: number of rooms.
        seed: dataset seed.
        shard_size: rooms per shard (a default room is ~20-55 MB of arrays).
        workers: processes (spawned); 0 or 1 generates in this process.
        progress: called as ``progress(rooms_done, n_rooms)`` after each shard.
        room_kwargs: keyword arguments for :func:`occrecon.data.rooms.random_room`.
        prepare_kwargs: keyword arguments for :func:`occrecon.data.rooms.prepare_room`.

    Returns:
        the manifest (also written to ``out_dir/manifest.json``).

    Raises:
        InputError: the folder holds a dataset with other settings, or ``n_rooms`` is not positive.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if n_rooms is None or n_rooms <= 0:
        raise InputError(None, "n_rooms must be a positive number")
    n_shards = (n_rooms + shard_size - 1) // shard_size
    manifest = {
        "kind": "rooms",
        "generator_version": ROOM_GENERATOR_VERSION,
        "seed": int(seed),
        "n_rooms": int(n_rooms),
        "shard_size": int(shard_size),
        "n_shards": n_shards,
        "room": dict(room_kwargs or {}),
        # A virtual scanner's settings are recorded in full (with its version), so no old cache is reused for them.
        "prepare": rooms.recorded_prepare(prepare_kwargs),
    }
    # The workers get the room and preparation settings as the manifest records them.
    return _build_missing_shards(
        out, manifest, n_rooms, _build_room_shard, lambda k, start, stop, recorded: (str(out), k, start, stop, int(seed), recorded["room"], recorded["prepare"]), workers, progress
    )


class CropDataset(torch.utils.data.Dataset):
    """Training crops of procedural rooms for ConvONet's sliding-window (crop) scene model.

    An item is one input crop, a cube of side ``input_size`` (m), with the query crop
    of side ``query_size`` at its centre. The crop is centred on a random scan-visible
    surface point moved by up to ``query_size / 2`` per axis, so that point lies in the
    query crop and every crop contains geometry. Everything is in the room's metric
    frame (y up, floor at 0); the model normalises by the crop corners.

    Items are dicts:
        ``points``: (n_points, 3) float32 input points inside ``[lower, upper)``: surface
        samples (only scan-visible ones if ``scan``) plus Gaussian noise ``noise_std``,
        drawn without replacement, or with replacement when the crop holds fewer.
        ``query``: (n_query, 3) float32 points inside the query crop
        ``[centre - query_size/2, centre + query_size/2)``, a ``near_fraction`` share
        from the near-surface samples, the rest uniform (with replacement).
        ``occ``: (n_query,) float32 exact 0/1 occupancy of ``query``.
        ``lower``, ``upper``: (3,) float32 input-crop corners.
        ``index``: int room index.

    Randomness comes from torch's global generator (as in :class:`ShardDataset`), so
    items are reproducible under ``torch.manual_seed``.

    Args:
        root: folder written by :func:`build_room_dataset`.
        input_size: input crop side (m).
        query_size: query crop side (m), at most ``input_size``.
        n_points: input points per item.
        n_query: query points per item.
        near_fraction: share of queries from the near-surface samples.
        noise_std: input noise sigma (m), added to the stored surface points; a dataset built
            with a virtual scanner (``prepare_kwargs={"scanner": ...}``) carries its own range
            noise, so none is added to it.
        scan: inputs from the scan-like subset (no ceiling, no exterior faces, holes);
            False uses every surface sample.
        indices: optional subset of room indices (e.g. a validation split).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        input_size: float = 2.0,
        query_size: float = 1.0,
        n_points: int = 10000,
        n_query: int = 2048,
        near_fraction: float = 0.5,
        noise_std: float = 0.005,
        scan: bool = True,
        indices: list[int] | np.ndarray | None = None,
    ):
        if not 0 < query_size <= input_size:
            raise ValueError("need 0 < query_size <= input_size")
        self.root = Path(root)
        self.manifest = read_manifest(root)
        if self.manifest.get("kind") != "rooms":
            raise InputError(root, "not a room dataset (build it with build_room_dataset)")
        self.input_size = float(input_size)
        self.query_size = float(query_size)
        self.n_points = int(n_points)
        self.n_query = int(n_query)
        self.near_fraction = float(near_fraction)
        scanned = bool((self.manifest.get("prepare") or {}).get("scanner"))
        self.noise_std = 0.0 if scanned else float(noise_std)
        self.scan = bool(scan)
        self.indices = _checked_indices(indices, self.manifest["n_rooms"])
        self._shards: dict[int, dict[str, np.ndarray]] = {}

    # Memory maps reopened per worker, torch-seeded generator: as in ShardDataset.
    __getstate__ = ShardDataset.__getstate__
    _shard = ShardDataset._shard
    _rng = ShardDataset._rng

    def __len__(self) -> int:
        return len(self.indices)

    def _anchor(self, sh: dict[str, np.ndarray], a: int, b: int, rng: np.random.Generator) -> np.ndarray:
        """A random (scan-visible) surface point among the room's points ``a:b``, float64 (3,)."""
        mask = sh["scan_mask"]
        k = int(rng.integers(a, b))
        for _ in range(64):  # most points are visible: rejection is cheaper than unpacking the room
            if not self.scan or (int(mask[k // 8]) >> (7 - k % 8)) & 1:
                break
            k = int(rng.integers(a, b))
        return np.asarray(sh["surface_points"][k], dtype=np.float64)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        i = int(self.indices[idx])
        size = self.manifest["shard_size"]
        sh = self._shard(i // size)
        j = i % size
        rng = self._rng()
        origin = np.asarray(sh["bin_origin"][j], dtype=np.float64)
        dims = np.asarray(sh["bin_dims"][j], dtype=np.int64)
        bin_size = float(sh["bin_size"][j])
        b0 = int(sh["bin_start"][j])
        offs = {s: np.asarray(sh[f"{s}_offsets"][b0 : b0 + int(np.prod(dims)) + 1]) for s in rooms.POINT_SETS}
        a, b = int(offs["surface"][0]), int(offs["surface"][-1])
        s, q = self.input_size, self.query_size
        for _ in range(16):  # a crop whose inputs or queries all fall out is drawn again
            centre = self._anchor(sh, a, b, rng) + rng.uniform(-q / 2, q / 2, 3)
            lower, upper = (centre - s / 2).astype(np.float32), (centre + s / 2).astype(np.float32)
            qlo, qhi = (centre - q / 2).astype(np.float32), (centre + q / 2).astype(np.float32)
            grow = 4 * self.noise_std  # noise can carry points from just outside into the crop
            ranges = rooms.box_ranges(offs["surface"], origin, dims, bin_size, lower - grow, upper + grow)
            pts = rooms.take_ranges(sh["surface_points"], ranges)
            if self.scan:
                pts = pts[rooms.unpack_ranges(sh["scan_mask"], ranges)]
            pts = pts + rng.normal(scale=self.noise_std, size=pts.shape).astype(np.float32)
            pts = pts[np.all((pts >= lower) & (pts < upper), axis=1)]
            sets = {}
            for name, flag in (("uniform", "uniform_occ"), ("near", "near_occ")):
                r = rooms.box_ranges(offs[name], origin, dims, bin_size, qlo, qhi)
                p = rooms.take_ranges(sh[f"{name}_points"], r)
                o = rooms.unpack_ranges(sh[flag], r)
                keep = np.all((p >= qlo) & (p < qhi), axis=1)
                sets[name] = (p[keep], o[keep])
            n_uni_avail, n_near_avail = len(sets["uniform"][0]), len(sets["near"][0])
            if len(pts) and (n_uni_avail or n_near_avail):
                break
        else:
            raise RuntimeError(f"room {i}: no crop with input points and queries in 16 draws")
        if len(pts) >= self.n_points:
            sel = rng.choice(len(pts), self.n_points, replace=False)
        else:
            sel = rng.integers(0, len(pts), self.n_points)
        n_near = int(round(self.n_query * self.near_fraction)) if n_near_avail else 0
        if not n_uni_avail:
            n_near = self.n_query
        query, occ = [], []
        for name, n in (("near", n_near), ("uniform", self.n_query - n_near)):
            if n:
                p, o = sets[name]
                k = rng.integers(0, len(p), n)
                query.append(p[k])
                occ.append(o[k])
        return {
            "points": torch.from_numpy(np.ascontiguousarray(pts[sel], dtype=np.float32)),
            "query": torch.from_numpy(np.concatenate(query).astype(np.float32)),
            "occ": torch.from_numpy(np.concatenate(occ).astype(np.float32)),
            "lower": torch.from_numpy(lower),
            "upper": torch.from_numpy(upper),
            "index": i,
        }
