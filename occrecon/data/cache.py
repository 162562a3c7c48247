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
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from occrecon.data.prepare import prepare_sample, unpack_occupancies
from occrecon.data.shapes import FAMILIES, random_shape
from occrecon.errors import InputError

GENERATOR_VERSION = "1"
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
    final = shard_path(out_dir, k)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, final)
    return k, stop - start, None, None


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
    manifest = json.loads(json.dumps(manifest))  # compare like with like (tuples become lists)
    mpath = out / MANIFEST
    was_complete = False
    if mpath.is_file():
        old = json.loads(mpath.read_text())
        was_complete = bool(old.pop("complete", False))
        if old != manifest:
            raise InputError(
                out, "holds a dataset generated with other settings; use another folder or delete it"
            )
    if not was_complete:
        _write_json(mpath, {**manifest, "complete": False})

    jobs = []
    done = 0
    for k in range(n_shards):
        start, stop = k * shard_size, min((k + 1) * shard_size, n_shapes)
        if shard_is_complete(shard_path(out, k), stop - start):
            done += stop - start
            continue
        jobs.append((str(out), k, start, stop, int(seed), families, source_files, prepare_kwargs))
    if progress is not None:
        progress(done, n_shapes)

    def handle(result: tuple[int, int, str | None, str | None]) -> None:
        nonlocal done
        _, n, src, problem = result
        if problem is not None:
            raise InputError(src, problem)
        done += n
        if progress is not None:
            progress(done, n_shapes)

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            handle(_build_shard(job))
    else:
        # BLAS/OpenMP pools inside each worker would only fight the other workers for cores.
        saved = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        os.environ.update({v: "1" for v in saved})
        try:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(jobs))) as pool:
                for result in pool.imap_unordered(_build_shard, jobs):
                    handle(result)
        finally:
            for v, val in saved.items():
                if val is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = val
    if jobs or not was_complete:
        _write_json(mpath, {**manifest, "complete": True})
    return manifest


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace a JSON file atomically: several training runs may read the manifest while one writes it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
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
    manifest = json.loads(mpath.read_text())
    if not manifest.get("complete"):
        raise InputError(root, "dataset is incomplete; rerun build_dataset to finish it")
    return manifest


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
        n = self.manifest["n_shapes"]
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError("indices out of range")
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
            item["inputs"] = torch.from_numpy(x)
        elif self.task == "voxels":
            item["inputs"] = torch.from_numpy(np.array(sh["voxels"][j], dtype=np.float32))
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
