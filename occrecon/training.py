"""Training occupancy networks on procedural shapes (or a folder of the user's meshes).

The loop is deliberately plain: Adam, binary cross-entropy on occupancy
samples, periodic validation IoU on held-out shapes, and checkpoints that make
a resumed run continue bit for bit. Batches are a function of the step number
and the seed alone (``_batch_plan``), so a resumed run draws the same batches as
one that never stopped, whatever the number of loader workers.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from occrecon.config import GenerationDefaults
from occrecon.errors import OccreconError

CHECKPOINT_NAME = "checkpoint.pt"
STATE_NAME = "training_state.json"

# Sizes chosen for 2 CPU cores and a 40 MB weights budget: the point and voxel
# models keep upstream's ConvONet 3-plane layout (so the converted upstream
# weights can be fine-tuned with --from), the image model keeps ONet's ResNet-18
# encoder and CBN decoder but sees 128-pixel images (a third of the cost of 224).
MODEL_TEMPLATES: dict[str, dict[str, Any]] = {
    "points": {
        "name": "convonet-points-synthetic",
        "task": "points",
        "base": "convonet-shapenet-3plane",
        "input": {"kind": "points", "n_points": 3000, "noise": 0.005},
    },
    "voxels": {
        "name": "convonet-voxels-synthetic",
        "task": "voxels",
        "base": "convonet-voxels-3plane",
        "input": {"kind": "voxels", "resolution": 32, "convention": "cell_centre"},
    },
    "image": {
        "name": "onet-img-synthetic",
        "task": "image",
        "base": "onet-img",
        "input": {"kind": "image", "image_size": 128},
        # ONet's decoder costs ~1.4 MFLOP per query: 64³ keeps a CPU run to seconds
        # (--upsampling-steps 2 gives upstream's 128³).
        "generation": {"upsampling_steps": 1},
    },
    # Completion of one-sided clouds (a depth map unprojected, or a single-view scan),
    # in the viewer-centred frame: the points model's architecture and input, trained
    # (usually fine-tuned --from convonet-points-synthetic) on the visible surface of
    # one view; the hidden back is learnt from the shape families. Its model task is
    # "points": it reconstructs any cloud, and is the image model's completion stage.
    "partial": {
        "name": "convonet-partial-synthetic",
        "task": "points",
        "base": "convonet-shapenet-3plane",
        "input": {"kind": "points", "n_points": 3000, "noise": 0.0},
        # The viewer frame is not symmetric (the hidden side is -z) and one view does not
        # enclose a volume: no rotation ensemble, no winding-number prior.
        "generation": {"rotations": 1, "winding_prior": False, "fit_steps": 0},
    },
    # The crop model of upstream's sliding window, made trainable on 2 CPU cores:
    # 4 cm voxels (upstream: 2 cm), 0.8 m query crops inside 1.6 m input crops
    # (10 voxels of context each side), a 3-level U-Net with 16 base channels. At
    # 2 cm the same 1.6 m crop costs 5x more per training step. Meshes come from a
    # 2 cm lattice (half a voxel); --upsampling-steps 2 gives 1 cm and 4x the faces.
    "scene": {
        "name": "convonet-scene-synthetic",
        "task": "scene",
        "base": "convonet-scene",
        "input": {"kind": "points", "n_points": 16000, "noise": 0.005},
        "encoder_kwargs": {"grid_resolution": 40, "unit_size": 0.04, "unet3d_kwargs": {"num_levels": 3, "f_maps": 16, "in_channels": 32, "out_channels": 32}},
        "decoder_kwargs": {"unit_size": 0.04},
        "scene": {"unit_size": 0.04, "voxel_size_m": 0.04, "query_vol_size": 20, "mise_resolution": 20, "mise_upsampling_steps": 1, "max_points_per_crop": 100_000, "units": "meters"},
    },
}


VAL_CROPS_PER_ROOM = 4
"""Validation crops drawn from each held-out room (each at its own seed)."""


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved next to its checkpoints).

    Attributes:
        task: ``image``, ``points``, ``voxels``, ``scene`` or ``partial`` (completion of
            one-view partial clouds, :mod:`occrecon.data.partial`).
        out: run folder: checkpoints while training, the model folder at the end.
        steps: optimisation steps.
        batch_size: shapes per step.
        lr: Adam learning rate (cosine-decayed to 5% over ``steps``).
        n_query: occupancy samples per shape and step (upstream: 2048).
        near_fraction: share of those drawn near the surface.
        n_shapes: procedural shapes to generate (ignored with ``data``).
        val_shapes: shapes held out for validation IoU.
        data: folder of the user's meshes to train on instead.
        cache: dataset folder (generated on first use, reused after).
        seed: seeds data generation, batches and initialisation.
        val_every: validation period in steps.
        checkpoint_every: checkpoint period in steps.
        workers: data-loader (and data-generation) processes.
        from_model: model to start from (a name, Hub id or folder).
        augment: map training items of the ``points`` and ``voxels`` tasks by a random
            symmetry of the canonical frame (y rotations by 90°, mirror); see
            :func:`occrecon.data.cache.box_symmetry`.
        any_up: augment with all 48 axis symmetries (objects lying on any side), not
            only the 8 that keep y up.
        half: store the final weights as float16.
        max_time_s: training-time budget in seconds (validation excluded, resumed runs
            included): the run stops at ``steps`` or when the budget is spent, whichever
            comes first, and the learning rate decays over whichever is nearer to its end.
            For a fixed slot (a cluster job's wall time, a lent GPU) without guessing steps.
        shard_size: shapes per dataset shard; shards are generated in parallel, so a
            smaller one keeps many workers busy on a small dataset.
        views: ``partial`` task: views (partial clouds) per shape.
    """

    task: str
    out: str
    steps: int = 20_000
    batch_size: int = 16
    lr: float = 5e-4
    n_query: int = 2048
    near_fraction: float = 0.5
    n_shapes: int = 4000
    val_shapes: int = 64
    data: str | None = None
    cache: str | None = None
    seed: int = 0
    val_every: int = 500
    checkpoint_every: int = 250
    workers: int = 1
    from_model: str | None = None
    augment: bool = True
    any_up: bool = False
    half: bool = True
    device: str = "auto"
    max_time_s: float | None = None
    shard_size: int = 256
    prepare_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"n_uniform": 20_000, "n_near": 20_000, "n_surface": 20_000, "n_views": 6, "image_size": 137}
    )
    room_prepare_kwargs: dict[str, Any] | None = None
    views: int = 2


@dataclass
class StepReport:
    step: int
    loss: float
    shapes_per_second: float
    val_iou: float | None = None
    best_iou: float | None = None


def default_cache_dir(config: TrainConfig) -> Path:
    """Where the generated dataset lives: ``$OCCRECON_CACHE`` or ``~/.cache/occrecon``."""
    root = Path(os.environ.get("OCCRECON_CACHE", Path.home() / ".cache" / "occrecon"))
    if config.data:
        # Named after the folder's content, so editing the folder gives a fresh dataset.
        folder = Path(config.data).resolve()
        listing = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
        digest = hashlib.sha1(repr((str(folder), listing, config.prepare_kwargs)).encode()).hexdigest()[:10]
        return root / "datasets" / f"meshes-{folder.name}-{digest}-seed{config.seed}"
    if config.task == "partial":
        return root / "datasets" / f"partial-seed{config.seed}-n{config.n_shapes + config.val_shapes}-v{config.views}"
    return root / "datasets" / f"procedural-seed{config.seed}-n{config.n_shapes + config.val_shapes}"


def model_config(task: str) -> dict[str, Any]:
    """The config of a fresh model for ``task`` (architecture from the upstream preset it is based on)."""
    from occrecon.nets import ARCHITECTURE_PRESETS

    if task not in MODEL_TEMPLATES:
        raise OccreconError(f"cannot train task {task!r}; choose one of {', '.join(MODEL_TEMPLATES)}")
    template = MODEL_TEMPLATES[task]
    base = ARCHITECTURE_PRESETS[template["base"]]
    architecture = copy.deepcopy(base["architecture"])
    for key in ("encoder_kwargs", "decoder_kwargs"):
        _merge(architecture[key], template.get(key, {}))
    config = {
        "name": template["name"],
        "task": template["task"],
        "description": f"{base['name']} architecture trained by occrecon on procedural {'rooms' if task == 'scene' else 'shapes'}",
        "architecture": architecture,
        "input": copy.deepcopy(template["input"]),
        "generation": GenerationDefaults(**template.get("generation", {})).to_dict(),
    }
    if "scene" in template:
        config["scene"] = copy.deepcopy(template["scene"])
    return config


def _merge(target: dict[str, Any], updates: dict[str, Any]) -> None:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _lr_at(step: int, config: TrainConfig, elapsed: float = 0.0) -> float:
    warmup = min(200, config.steps // 10)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    if config.max_time_s:
        progress = max(progress, elapsed / config.max_time_s)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class _SeededItems(torch.utils.data.Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is drawn with that seed (exact resumes)."""

    def __init__(self, base: torch.utils.data.Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        torch.manual_seed(seed)
        return self.base[index]


class _BatchPlan(torch.utils.data.Sampler):
    """Batch ``s`` = shape indices and item seeds drawn from ``(seed, s)``; starts at ``start``."""

    def __init__(self, n_items: int, batch_size: int, seed: int, start: int, stop: int):
        self.n_items, self.batch_size, self.seed, self.start, self.stop = n_items, batch_size, seed, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, 7, step])
            indices = rng.choice(self.n_items, size=self.batch_size, replace=self.n_items < self.batch_size)
            seeds = rng.integers(0, 2**31 - 1, size=self.batch_size)
            yield [(int(i), int(s)) for i, s in zip(indices, seeds)]


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def _crop_sizes(model_cfg: dict[str, Any]) -> tuple[float, float, int]:
    """(input crop edge, query crop edge, input voxels) of a scene model, in metres."""
    kwargs = model_cfg["architecture"]["encoder_kwargs"]
    unit = float(kwargs["unit_size"])
    voxels = int(kwargs["grid_resolution"])
    return voxels * unit, int(model_cfg["scene"]["query_vol_size"]) * unit, voxels


def _crop_resolution(task: str, model_cfg: dict[str, Any]) -> int:
    """Cells per axis of a scene model's input-crop grid (0 for object tasks)."""
    return _crop_sizes(model_cfg)[2] if task == "scene" else 0


def _dataset(
    config: TrainConfig,
    indices: np.ndarray,
    model_cfg: dict[str, Any],
    *,
    n_query: int | None = None,
    near_fraction: float | None = None,
    augment: bool = False,
    any_up: bool = False,
):
    from occrecon.data.cache import CropDataset, PartialDataset, ShardDataset

    spec = model_cfg["input"]
    n_query = config.n_query if n_query is None else n_query
    near_fraction = config.near_fraction if near_fraction is None else near_fraction
    if config.task == "scene":
        input_size, query_size, _ = _crop_sizes(model_cfg)
        return CropDataset(
            config.cache,
            input_size=input_size,
            query_size=query_size,
            n_points=int(spec["n_points"]),
            n_query=n_query,
            near_fraction=near_fraction,
            noise_std=float(spec.get("noise", 0.005)),
            indices=indices,
        )
    if config.task == "partial":
        return PartialDataset(config.cache, n_query=n_query, near_fraction=near_fraction, shapes=indices)
    return ShardDataset(
        config.cache,
        config.task,
        n_query=n_query,
        near_fraction=near_fraction,
        n_input_points=int(spec.get("n_points", 3000)),
        noise_std=float(spec.get("noise", 0.005)),
        image_size=int(spec.get("image_size", 224)),
        indices=indices,
        augment=augment,
        any_up=any_up,
    )


def prepare_data(config: TrainConfig, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Generate (or complete) the dataset of a run; returns its manifest."""
    from occrecon.data.cache import build_dataset, build_partial_dataset, build_room_dataset

    if config.cache is None:
        config.cache = str(default_cache_dir(config))
    if config.task == "partial":
        if config.data:
            raise OccreconError("partial-cloud models train on procedural shapes; --data is for the image, points and voxels tasks")
        recorded = Path(config.cache) / "manifest.json"
        if recorded.is_file() and "inputs" in json.loads(recorded.read_text(encoding="utf-8")):
            # Stage 2: inputs predicted by a point-map network (pointmap_training.build_predicted_partial_dataset), made already.
            from occrecon.data.cache import read_manifest

            return read_manifest(config.cache)
        return build_partial_dataset(
            config.cache, config.n_shapes + config.val_shapes, config.seed, views=config.views,
            shard_size=config.shard_size, workers=max(1, config.workers), progress=progress,
        )
    if config.task == "scene":
        if config.data:
            raise OccreconError("scene models train on procedural rooms; --data is for object tasks")
        manifest = build_room_dataset(
            config.cache,
            config.n_shapes + config.val_shapes,
            config.seed,
            workers=max(1, config.workers),
            progress=progress,
            prepare_kwargs=config.room_prepare_kwargs,
        )
        return {**manifest, "n_shapes": manifest.get("n_rooms", manifest.get("n_shapes"))}
    return build_dataset(
        config.cache,
        None if config.data else config.n_shapes + config.val_shapes,
        config.seed,
        workers=max(1, config.workers),
        shard_size=config.shard_size,
        source=config.data,
        progress=progress,
        prepare_kwargs=config.prepare_kwargs,
    )


def _crop_batch(batch: dict[str, Any], resolution: int, device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """Encoder and decoder inputs of the crop model for a batch of crops (each with its own box)."""
    lower, upper = batch["lower"].to(device)[:, None], batch["upper"].to(device)[:, None]
    points, query = batch["points"].to(device), batch["query"].to(device)
    extent = upper - lower
    cell = torch.floor((points - lower) / extent * resolution).long().clamp_(0, resolution - 1)
    index = cell[..., 0] + resolution * (cell[..., 1] + resolution * cell[..., 2])
    encoder_inputs = {"points": points, "index": {"grid": index[:, None]}}
    decoder_inputs = {"p": query, "p_n": {"grid": (query - lower) / extent}}
    return encoder_inputs, decoder_inputs


def forward_batch(net: torch.nn.Module, batch: dict[str, Any], task: str, device: torch.device, crop_resolution: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and occupancy targets of a training batch, for every task."""
    if task == "scene":
        encoder_inputs, decoder_inputs = _crop_batch(batch, crop_resolution, device)
        return net.decode(decoder_inputs, net.encode(encoder_inputs)), batch["occ"].to(device)
    logits = net.decode(batch["points"].to(device), net.encode(batch["inputs"].to(device)))
    return logits, batch["occ"].to(device)


def _loss(logits: torch.Tensor, occ: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over a shape's queries, averaged over shapes (upstream's)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, occ, reduction="none").sum(-1).mean()


def _global_code(net: torch.nn.Module) -> bool:
    """True for ONet networks, whose encoding is one (B, c_dim) code rather than feature planes or grids."""
    return getattr(net, "method", None) == "onet"


def decoder_chunks(net: torch.nn.Module, batch: dict[str, Any], task: str, device: torch.device) -> int:
    """How many slices of each shape's queries a step decodes one after another (1: all at once).

    A global-code decoder (ONet) 256 wide reads and writes a 32 MB activation per
    layer for 16 shapes × 2048 queries; slices that keep it near 4 MiB
    (:func:`~occrecon.loading.decoder_rows`) halved a CPU step. Plane and grid
    encodings (ConvONet, the scene model included; 32 wide) fit as they are.
    """
    from occrecon.loading import decoder_rows

    if not _global_code(net) or device.type != "cpu":
        return 1
    points = batch["points"]
    rows = points.shape[0] * points.shape[1]
    return max(1, min(points.shape[1], math.ceil(rows / decoder_rows(net, device))))


@contextlib.contextmanager
def _momentum_per_slice(module: torch.nn.Module, slices: int) -> Iterator[None]:
    """Batch norms of ``module`` update their running statistics once per slice, with the per-step decay unchanged."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.momentum is not None]
    saved = [m.momentum for m in norms]
    for m, momentum in zip(norms, saved):
        m.momentum = 1.0 - (1.0 - momentum) ** (1.0 / slices)
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def backward_batch(
    net: torch.nn.Module, batch: dict[str, Any], task: str, device: torch.device, crop_resolution: int = 0, slices: int | None = None
) -> torch.Tensor:
    """Loss of a training batch, its gradients accumulated in ``net``.

    With a global code, each shape's queries are decoded in :func:`decoder_chunks`
    interleaved slices (every k-th query, so each slice keeps the uniform /
    near-surface mix): the decoder's gradients and the code's add up over the
    slices, and the encoder runs backward once. The loss and gradients are those
    of the whole batch, except that the decoder's batch norms see each slice's
    statistics (16 shapes × 256 queries) instead of the whole batch's. ``slices``
    overrides :func:`decoder_chunks` (1: the whole batch at once).
    """
    slices = decoder_chunks(net, batch, task, device) if slices is None else slices
    if slices == 1 or not _global_code(net):
        loss = _loss(*forward_batch(net, batch, task, device, crop_resolution))
        loss.backward()
        return loss.detach()
    code = net.encode(batch["inputs"].to(device))
    leaf = code.detach().requires_grad_(True)
    points, occ = batch["points"].to(device), batch["occ"].to(device)
    total = torch.zeros((), device=device)
    with _momentum_per_slice(net.decoder, slices):
        for k in range(slices):
            loss = _loss(net.decode(points[:, k::slices], leaf), occ[:, k::slices])
            loss.backward()
            total += loss.detach()
    code.backward(leaf.grad)
    return total


@torch.no_grad()
def validation_iou(net: torch.nn.Module, dataset, device: torch.device, *, threshold: float = 0.2, seed: int = 12345, task: str = "points", crop_resolution: int = 0) -> float:
    """Mean IoU of predicted occupancy (probability ≥ threshold) on held-out items' query samples."""
    sweep = threshold_sweep(net, dataset, device, task=task, crop_resolution=crop_resolution, candidates=(threshold,), seed=seed)
    return sweep[threshold] if len(dataset) else float("nan")


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or an interruption leaves the last whole checkpoint, and no partial one
        raise


def _write_state(out: Path, config: "TrainConfig", history: list[dict[str, Any]]) -> None:
    """Write ``training_state.json`` atomically: a full disk or a kill leaves the previous state (or none), never half a file."""
    from occrecon.io.atomic import write_bytes_atomic

    write_bytes_atomic(out / STATE_NAME, json.dumps({"config": asdict(config), "history": history}, indent=1).encode("utf-8"))


def _load_checkpoint(path: Path) -> dict[str, Any]:
    # Our own files, but still no arbitrary unpickling: tensors, numbers and strings only.
    return torch.load(path, map_location="cpu", weights_only=True)


def _initial_network(config: TrainConfig, model_cfg: dict[str, Any], device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    from occrecon.loading import load_model
    from occrecon.nets import build_network

    if config.from_model:
        base = load_model(config.from_model, device="cpu")
        wanted = MODEL_TEMPLATES[config.task]["task"]
        if base.task != wanted:
            raise OccreconError(f"--from {config.from_model} is a {base.task} model, not {wanted}")
        cfg = copy.deepcopy(base.config.to_dict())
        cfg.update({"name": model_cfg["name"], "description": f"{base.name} fine-tuned by occrecon"})
        cfg.pop("source", None)
        cfg.pop("upstream", None)
        if cfg.get("base_model") and isinstance(cfg.get("training"), dict):
            # The base's own origin; its training record becomes the new model's lineage.
            cfg["training"]["base_model"] = cfg["base_model"]
        cfg["base_model"] = base.name
        template = MODEL_TEMPLATES[config.task]
        if config.task == "partial":  # the input a completion model sees differs from its base's
            cfg["input"] = copy.deepcopy(template["input"])
        cfg["generation"] = {**cfg.get("generation", {}), **template.get("generation", {})}
        return base.net.to(device), cfg
    torch.manual_seed(config.seed)
    return build_network(model_cfg["architecture"]).to(device), model_cfg


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    on_step: Callable[[StepReport], None] | None = None,
    on_data: Callable[[int, int], None] | None = None,
) -> Path:
    """Train a model and write its model folder to ``config.out``.

    Args:
        config: run settings.
        resume: continue from ``out/checkpoint.pt`` (exactly where it stopped).
        on_step: called after every step with loss and throughput (and validation IoU when run).
        on_data: progress of dataset generation, ``(done, total)``.

    Returns:
        The model folder (``config.out``), loadable with ``occrecon.load_model``.
    """
    from occrecon.device import resolve_device
    from occrecon.loading import save_model_folder

    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT_NAME
    config = _run_config(config, resume)
    if config.from_model:
        from occrecon.loading import locate_model

        locate_model(config.from_model, progress=False)  # an unknown or unreachable base fails now, not after the data
    out.mkdir(parents=True, exist_ok=True)

    device, _ = resolve_device(config.device)
    manifest = prepare_data(config, on_data)
    train_indices, val_indices = _split(config, int(manifest["n_shapes"]))
    model_cfg = model_config(config.task)
    net, model_cfg = _initial_network(config, model_cfg, device)
    train_set = _dataset(config, train_indices, model_cfg, augment=config.augment, any_up=config.any_up)
    val_set = _dataset(config, val_indices, model_cfg)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    crop_resolution = _crop_resolution(config.task, model_cfg)

    start_step, best_iou, history, elapsed = 0, -1.0, [], 0.0
    if resume:
        state = _load_checkpoint(checkpoint_path)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, best_iou, elapsed = int(state["step"]), float(state["best_iou"]), float(state["elapsed"])
        history = json.loads((out / STATE_NAME).read_text(encoding="utf-8")).get("history", [])
    _write_state(out, config, history)

    loader = _loader(config, train_set, start_step)

    def save(step: int) -> None:
        _save_checkpoint(
            checkpoint_path,
            {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "best_iou": best_iou, "elapsed": elapsed},
        )
        _write_state(out, config, history)

    net.train()
    tick = time.perf_counter()
    step = start_step
    for step, batch in enumerate(loader, start=start_step):
        if config.max_time_s is not None and elapsed >= config.max_time_s:
            break  # resumed with the budget already spent
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config, elapsed)
        optimizer.zero_grad(set_to_none=True)
        loss = backward_batch(net, batch, config.task, device, crop_resolution)
        optimizer.step()

        now = time.perf_counter()
        elapsed += now - tick
        rate = config.batch_size / max(now - tick, 1e-9)
        tick = now
        done = step + 1
        report = StepReport(step=done, loss=loss.item(), shapes_per_second=rate)
        last = done == config.steps or (config.max_time_s is not None and elapsed >= config.max_time_s)
        if done % config.val_every == 0 or last:
            iou = validation_iou(net, val_set, device, task=config.task, crop_resolution=crop_resolution)
            net.train()
            history.append({"step": done, "val_iou": iou, "loss": report.loss, "elapsed_s": round(elapsed, 1)})
            if iou > best_iou:
                best_iou = iou
                save_model_folder(net, _final_config(model_cfg, config, done, elapsed, iou, manifest, device), out, half=config.half)
            report.val_iou, report.best_iou = iou, best_iou
            tick = time.perf_counter()  # validation time is not training throughput
        if done % config.checkpoint_every == 0 or last:
            save(done)
        if on_step:
            on_step(report)
        if last:
            break
    if best_iou < 0:  # no validation ran (resumed at the end)
        save_model_folder(net, _final_config(model_cfg, config, step, elapsed, None, manifest, device), out, half=config.half)
    calibrate_threshold(out, device=config.device)
    return out


def _loader(config: TrainConfig, train_set: Any, start_step: int) -> torch.utils.data.DataLoader:
    """Batches from ``start_step`` on, in the order an uninterrupted run would have drawn them."""
    return torch.utils.data.DataLoader(
        _SeededItems(train_set),
        batch_sampler=_BatchPlan(len(train_set), config.batch_size, config.seed, start_step, config.steps),
        num_workers=config.workers,
        collate_fn=_collate,
        persistent_workers=False,
        prefetch_factor=4 if config.workers else None,
    )


def _run_config(config: TrainConfig, resume: bool) -> TrainConfig:
    """The settings a run goes on with: a resumed run's saved ones (with this call's steps, workers, device and budget), else ``config``."""
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT_NAME
    if not resume:
        if checkpoint_path.exists():
            raise OccreconError(f"{out}: holds a training run already; pass --resume to continue it or choose another --out")
        return config
    if not checkpoint_path.is_file():
        raise OccreconError(f"{out}: nothing to resume (no {CHECKPOINT_NAME}); drop --resume to start")
    saved = json.loads((out / STATE_NAME).read_text(encoding="utf-8"))["config"]
    saved.update({"steps": config.steps, "workers": config.workers, "device": config.device})
    if config.max_time_s is not None:  # a new budget replaces the saved one; none keeps it
        saved["max_time_s"] = config.max_time_s
    saved.setdefault("augment", False)  # runs from before augmentation existed trained without it
    saved.setdefault("any_up", False)
    return TrainConfig(**saved)


def _split(config: TrainConfig, n_total: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation item indices: the last ``val_shapes`` shapes (rooms) are held out."""
    n_val = min(config.val_shapes, max(1, n_total // 10))
    if n_total - n_val < 1:
        raise OccreconError("the dataset is too small to hold out validation shapes")
    val = np.arange(n_total - n_val, n_total)
    if config.task == "scene":  # one crop per room is too few to rank checkpoints
        val = np.repeat(val, VAL_CROPS_PER_ROOM)
    return np.arange(n_total - n_val), val


THRESHOLD_CANDIDATES = tuple(round(0.05 * k, 2) for k in range(2, 15))
"""Occupancy probabilities tried by :func:`calibrate_threshold` (0.1 … 0.7)."""


@torch.no_grad()
def threshold_sweep(
    net: torch.nn.Module,
    dataset,
    device: torch.device,
    *,
    task: str,
    crop_resolution: int = 0,
    candidates: tuple[float, ...] = THRESHOLD_CANDIDATES,
    seed: int = 12345,
) -> dict[float, float]:
    """Mean IoU over a dataset's items at each candidate occupancy threshold."""
    from occrecon.metrics import iou_from_occupancy

    net.eval()
    ious: dict[float, list[float]] = {t: [] for t in candidates}
    for position in range(len(dataset)):
        torch.manual_seed(seed + position)
        logits, occ = forward_batch(net, _collate([dataset[position]]), task, device, crop_resolution)
        logits = logits[0].float().cpu().numpy()
        truth = occ[0].cpu().numpy() > 0.5
        for t in candidates:
            ious[t].append(float(iou_from_occupancy(logits >= math.log(t) - math.log1p(-t), truth)))
    return {t: float(np.mean(v)) for t, v in ious.items()}


def calibrate_threshold(run: str | Path, *, device: str = "auto", n_query: int = 10_000) -> tuple[float, dict[float, float]]:
    """Choose a trained model's occupancy threshold on its held-out shapes, as ONet chose its τ.

    The run's held-out shapes (rooms: crops) are scored on ``n_query`` uniform samples
    each (no near-surface oversampling, so the IoU is upstream's volumetric one) at
    every threshold in :data:`THRESHOLD_CANDIDATES`; the best becomes
    ``generation.threshold`` of the run's model folder, and the sweep goes into its
    config and model card.

    Args:
        run: a finished run folder of :func:`train` (model folder + ``training_state.json``).
        device: where to evaluate.
        n_query: uniform samples per held-out item.

    Returns:
        (chosen threshold, mean IoU per candidate).
    """
    from occrecon.loading import CONFIG_NAME, load_model, read_config

    folder = Path(run)
    config = TrainConfig(**json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))["config"])
    model = load_model(str(folder), device=device)
    model_cfg = read_config(folder)
    manifest = json.loads((Path(config.cache) / "manifest.json").read_text(encoding="utf-8"))
    n_total = int(manifest.get("n_rooms", manifest.get("n_shapes")))
    _, val_indices = _split(config, n_total)
    dataset = _dataset(config, val_indices, model_cfg.to_dict(), n_query=n_query, near_fraction=0.0)
    crop_resolution = _crop_resolution(config.task, model_cfg.to_dict())
    sweep = threshold_sweep(model.net.float(), dataset, model.device, task=config.task, crop_resolution=crop_resolution)
    best = max(sweep, key=lambda t: (sweep[t], -abs(t - 0.5)))
    record = dict(model_cfg.training or {})
    record["threshold_sweep"] = {
        "items": len(dataset),
        "uniform_samples_per_item": n_query,
        "iou": {f"{t:g}": round(v, 4) for t, v in sweep.items()},
    }
    model_cfg = model_cfg.with_generation(threshold=best).replace(training=record)
    tmp = folder / f".{CONFIG_NAME}.tmp"
    tmp.write_text(json.dumps(model_cfg.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, folder / CONFIG_NAME)
    _write_card(folder)
    return best, sweep


def _final_config(model_cfg: dict[str, Any], config: TrainConfig, step: int, elapsed: float, iou: float | None, manifest: dict[str, Any], device: torch.device) -> dict[str, Any]:
    cfg = copy.deepcopy(model_cfg)
    base = cfg.get("training") if config.from_model else None
    cfg["training"] = {
        "data": _data_description(config),
        "data_seed": config.seed,
        "n_shapes": int(manifest["n_shapes"]),
        "families": manifest.get("families"),
        "generator_version": manifest.get("generator_version"),
        "steps": step,
        "batch_size": config.batch_size,
        "learning_rate": config.lr,
        "n_query": config.n_query,
        "near_fraction": config.near_fraction,
        "wall_time_s": round(elapsed, 1),
        "hardware": _hardware(device),
        "validation_iou": None if iou is None else round(iou, 4),
        "validation_shapes": config.val_shapes,
        "augment": config.augment and config.task in ("points", "voxels"),
        "augment_any_up": config.augment and config.any_up and config.task in ("points", "voxels"),
        "storage": "float16" if config.half else "float32",
    }
    if base:  # what the fine-tuned model had learnt before, and where that came from, for the card
        record = {k: base.get(k) for k in ("data", "n_shapes", "generator_version", "steps", "batch_size", "wall_time_s", "hardware")}
        record.update({k: base[k] for k in ("base_model", "base") if base.get(k)})
        cfg["training"]["base"] = record
    return cfg


def _data_description(config: TrainConfig) -> str:
    if config.data:
        return "user meshes"
    if config.task == "partial":
        return f"partial clouds from degraded true depth, {config.views} views per occrecon procedural shape"
    return f"occrecon procedural {'rooms' if config.task == 'scene' else 'shapes'}"


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _write_card(folder: Path) -> None:
    from occrecon.loading import CARD_NAME, read_config

    config = read_config(folder).to_dict()
    folder.joinpath(CARD_NAME).write_text(model_card(config), encoding="utf-8")


def _ensemble_lines(config: dict[str, Any]) -> list[str]:
    generation = config.get("generation", {})
    rotations = int(generation.get("rotations", 1))
    fit_steps = int(generation.get("fit_steps", 0))
    lines = []
    if rotations > 1:
        lines.append(
            f"- Reconstruction: a rotation ensemble by default: the cloud is encoded unrotated and under {rotations - 1} random rotations, "
            "and the decoded logits are averaged with weight 1/2 on the unrotated pose (`--rotations 1`: a single pass)"
        )
    if fit_steps > 0:
        lines.append(
            f"- Test-time fitting by default: the unrotated encoding is fitted to the input points for {fit_steps} Adam steps, "
            "so the surface passes through them, while the field farther than about 0.01 from them keeps its prediction "
            "(`--fit-steps 0`: none)"
        )
    if generation.get("winding_prior"):
        lines.append(
            "- Winding-number prior by default: away from the input points, the generalized winding number of the points "
            "(normals from local plane fits, signed by the network's own outward direction) is added to the field in log-odds, "
            "so inside and outside follow the cloud where parts overlap in the model's plane projections (`--no-winding-prior`: none)"
        )
    if generation.get("anchor_points"):
        lines.append(
            "- MISE anchored at the input points by default: every coarse cell near a point is subdivided whatever its corners say, "
            "so parts thinner than a coarse cell (wings, panels) are not lost between the coarse lattice points (`--no-anchor-points`: plain MISE)"
        )
    return lines


def _threshold_lines(config: dict[str, Any]) -> list[str]:
    training = config.get("training", {})
    chosen = config.get("generation", {}).get("threshold")
    lines = []
    reconstruction = training.get("reconstruction_threshold_sweep")
    if reconstruction:
        figures = ", ".join(f"{t}: {v}" for t, v in reconstruction["iou"].items())
        lines.append(
            f"- Occupancy threshold {chosen}: the best mean IoU of the default reconstruction ({reconstruction['reconstruction']}) "
            f"on held-out generated shapes {reconstruction['shapes']} (`benchmarks/heldout.py --write-threshold`): {figures}"
        )
    sweep = training.get("threshold_sweep")
    if sweep:
        figures = ", ".join(f"{t}: {v}" for t, v in sweep["iou"].items())
        lead = (
            f"The network alone (one pass) has its best volumetric IoU at {max(sweep['iou'], key=sweep['iou'].get)}"
            if reconstruction
            else f"Occupancy threshold {chosen}: the best volumetric IoU"
        )
        lines.append(f"- {lead} on the held-out items ({sweep['items']} items, {sweep['uniform_samples_per_item']} uniform samples each): {figures}")
    return lines


def _lineage_lines(config: dict[str, Any]) -> list[str]:
    t = config.get("training", {})
    lines = []
    if t.get("augment_any_up"):
        lines.append("- Augmentation: each item mapped by one of the 48 signed axis permutations (any axis up, turned by multiples of 90°, possibly mirrored)")
    elif t.get("augment"):
        lines.append("- Augmentation: each item turned about y by a multiple of 90° and possibly mirrored")
    if config.get("base_model"):

        def stage(b: dict[str, Any]) -> str:
            return (
                f": {b.get('steps')} step{'' if b.get('steps') == 1 else 's'} at batch size {b.get('batch_size')} on {b.get('n_shapes')} {(b.get('data') or 'shapes').split()[-1]} "
                f"(generator v{b.get('generator_version')}), {b.get('wall_time_s')} s on {b.get('hardware')}"
                if b else ""
            )

        record = t.get("base") or {}
        parts = [f"Fine-tuned from `{config['base_model']}`{stage(record)}"]
        while record.get("base_model"):  # each stage's record names what it started from
            name, record = record["base_model"], record.get("base") or {}
            parts.append(f"which was fine-tuned from `{name}`{stage(record)}")
        lines.append(f"- {'; '.join(parts)}; the steps and wall time above are the fine-tuning's")
    return lines


def model_card(config: dict[str, Any], benchmark: str | None = None) -> str:
    """Markdown model card of a trained model (``benchmark`` adds measured quality figures)."""
    t = config.get("training", {})
    arch = config["architecture"]
    scene = config["task"] == "scene"
    things, item, items = ("rooms", "crop", "crops") if scene else ("shapes", "shape", "shapes")
    families = "" if scene else f"; families: {', '.join(t.get('families') or []) or 'n/a'}"
    lines = [
        "---",
        "library_name: occrecon",
        "license: mit",
        f"pipeline_tag: {'image-to-3d' if config['task'] == 'image' else 'other'}",
        "---",
        f"# {config['name']}",
        "",
        config.get("description", ""),
        "",
        "## Architecture",
        f"- `{arch['method']}`: encoder `{arch['encoder']}` {json.dumps(arch.get('encoder_kwargs', {}))}, decoder `{arch['decoder']}` {json.dumps(arch.get('decoder_kwargs', {}))}, c_dim {arch.get('c_dim')}",
        f"- Input: {json.dumps(config.get('input', {}))}",
        *_ensemble_lines(config),
        "",
        "## Training",
        f"- Data: {t.get('data')} ({t.get('n_shapes')} {things}, generator v{t.get('generator_version')}, seed {t.get('data_seed')}){families}",
        f"- Steps: {t.get('steps')}, batch size {t.get('batch_size')} {items}, Adam lr {t.get('learning_rate')} (cosine), {t.get('n_query')} occupancy samples per {item} ({int(100 * (t.get('near_fraction') or 0))}% near the surface)",
        f"- Wall time: {t.get('wall_time_s')} s on {t.get('hardware')}",
        *_lineage_lines(config),
        f"- Validation IoU during training ({t.get('validation_shapes')} held-out generated {'rooms' if config['task'] == 'scene' else 'shapes'}, the training sample mix, threshold 0.2; picks the checkpoint): {t.get('validation_iou')}",
        *_threshold_lines(config),
        f"- Weights stored as {t.get('storage')}",
        "",
        "## Speed, memory and quality" if config["task"] == "scene" else "## Quality on real meshes",
        benchmark or f"Not measured yet: run `python benchmarks/{'scene' if config['task'] == 'scene' else 'quality'}.py`.",
        "",
        "## Limits",
    ]
    if config["task"] == "scene":
        lines += [
            "- Metric scans with y up (the floor horizontal): --up turns others (LAS/LAZ are read z-up); other units via --units, other resolutions via --voxel-size.",
            "- Trained on procedural rooms only: real clutter and thin structures are beyond what it has seen.",
            f"- Features live on a {100 * float(arch['encoder_kwargs'].get('unit_size', 0.02)):g} cm voxel grid: parts thinner than a voxel come out thickened or lost. "
            "--voxel-size rescales the scan to the grid; the model has only seen its own voxel size.",
        ]
    else:
        lines += [
            "- Objects may lie with any axis up and be turned by multiples of 90° (trained on all 48); arbitrary rotations in between reconstruct worse."
            if t.get("augment_any_up")
            else "- Objects are expected in a canonical pose (y up), like ShapeNet; other orientations reconstruct worse.",
            "- Trained on procedural shapes only: fine detail and shapes unlike its families are beyond what it has seen."
            if "animal" in (t.get("families") or [])
            else "- Trained on procedural shapes only: fine detail and organic shapes are beyond what it has seen.",
        ]
    generation = config.get("generation", {})
    if int(generation.get("fit_steps", 0)) > 0:
        lines.append(
            "- The test-time fitting corrects surfaces that miss the points by about 0.01-0.02 (unit-cube units); "
            "parts the network gets wrong farther from the points (a hollow body, merged strands) "
            + ("are left to the winding-number prior." if generation.get("winding_prior") else "stay wrong.")
        )
    if generation.get("winding_prior"):
        lines.append(
            "- The winding-number prior cannot resolve walls thinner than the spacing of the points (shelves, the panels of open furniture) "
            "and erodes them; `--no-winding-prior` keeps them as the network predicts them."
        )
    if config["task"] == "image":
        lines.append("- Images: one object on a plain background, seen from a moderate elevation; the mesh is in the object's canonical frame, not the camera's.")
        lines.append(
            "- Which way the object faces is read off the image alone: objects whose geometry shows no front (boxes, plates, CAD parts) "
            "can come out turned about y by a quarter or half turn."
        )
    return "\n".join(lines) + "\n"
