"""Training the point-map network, the first stage of the depth-first image model.

Items come from a partial-cloud dataset (:class:`occrecon.data.pointmap.PointMapDataset`);
the last ``val_shapes`` shapes are held out, as in :mod:`occrecon.training`, whose
batch plan this loop shares: batches are a function of the seed and the step alone,
so a resumed run continues exactly where it stopped. The trunk starts from a trained
image model's ResNet-18 (``--from``), which already knows the renders' shapes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from occrecon.errors import OccreconError

WEIGHTS_NAME = "pointmap.safetensors"
STATE_NAME = "pointmap_state.json"
CHECKPOINT_NAME = "pointmap_checkpoint.pt"


@dataclass
class PointMapTrainConfig:
    """A point-map training run.

    Attributes:
        dataset: a partial-cloud dataset folder (version 2: renders and depth kept).
        out: run folder (checkpoint, state, best weights).
        steps: optimisation steps (the learning rate decays over ``steps`` or ``max_time_s``).
        batch_size: images per step.
        lr: peak Adam learning rate.
        size: image side the network sees (a multiple of 32).
        val_shapes: last shapes of the dataset held out for validation.
        val_every: validation period in steps.
        seed: batches, augmentation and initialisation.
        from_model: image model whose ResNet-18 trunk starts the network (None: random).
        workers: data-loader processes.
        max_time_s: training-time budget in seconds (validation excluded).
        threads: torch threads (0: torch's default).
    """

    dataset: str
    out: str
    steps: int = 20_000
    batch_size: int = 16
    lr: float = 3e-4
    size: int = 128
    val_shapes: int = 64
    val_every: int = 250
    seed: int = 0
    from_model: str | None = "onet-img-synthetic"
    workers: int = 1
    max_time_s: float | None = None
    threads: int = 0


def _lr(step: int, config: PointMapTrainConfig, elapsed: float) -> float:
    warmup = min(100, config.steps // 10)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    if config.max_time_s:
        progress = max(progress, elapsed / config.max_time_s)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def initial_network(from_model: str | None, seed: int) -> torch.nn.Module:
    """A :class:`~occrecon.nets.pointmap.PointMapNet`, its trunk from ``from_model``'s image encoder when given."""
    from occrecon.nets.pointmap import PointMapNet

    torch.manual_seed(seed)
    net = PointMapNet()
    if from_model:
        from occrecon.loading import load_model

        base = load_model(from_model, device="cpu")
        trunk = getattr(getattr(base.net, "encoder", None), "features", None)
        if trunk is None:
            raise OccreconError(f"--from {from_model}: not an image model with a ResNet-18 encoder")
        net.features.load_state_dict({k: v.float() for k, v in trunk.state_dict().items()})
    return net


@torch.no_grad()
def validate(net: torch.nn.Module, dataset, batch_size: int = 16) -> dict[str, float]:
    """Held-out figures: aligned L1 of the point map (output-frame units) and mask IoU at probability 0.5."""
    from occrecon.nets.pointmap import aligned_l1

    net.eval()
    l1, iou = [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        image = torch.stack([it["image"] for it in items])
        target, mask = torch.stack([it["target"] for it in items]), torch.stack([it["mask"] for it in items])
        pred, logits = net(image)
        for k in range(len(items)):
            l1.append(float(aligned_l1(pred[k : k + 1], target[k : k + 1], mask[k : k + 1])))
            guess, truth = logits[k] > 0, mask[k] > 0.5
            iou.append(float((guess & truth).sum() / (guess | truth).sum().clamp_min(1)))
    net.train()
    return {"aligned_l1": float(np.mean(l1)), "mask_iou": float(np.mean(iou))}


def _save_weights(net: torch.nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
    tmp.replace(path)


def train_pointmap(config: PointMapTrainConfig, *, resume: bool = False, on_line: Callable[[str], None] = print) -> Path:
    """Train (or resume) a point-map network; the best held-out weights are ``out/pointmap.safetensors``."""
    from occrecon.data.pointmap import PointMapDataset
    from occrecon.nets.pointmap import pointmap_loss
    from occrecon.training import _BatchPlan, _collate, _load_checkpoint, _save_checkpoint, _SeededItems

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    probe = PointMapDataset(config.dataset, size=config.size)
    n_shapes = int(probe.manifest["n_shapes"])
    train_set = PointMapDataset(config.dataset, size=config.size, shapes=np.arange(n_shapes - config.val_shapes), augment=True)
    val_set = PointMapDataset(config.dataset, size=config.size, shapes=np.arange(n_shapes - config.val_shapes, n_shapes))
    net = initial_network(config.from_model, config.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    start, elapsed, best, history = 0, 0.0, math.inf, []
    if resume and (out / CHECKPOINT_NAME).is_file():
        state = _load_checkpoint(out / CHECKPOINT_NAME)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, elapsed, best = int(state["step"]), float(state["elapsed"]), float(state["best"])
        history = json.loads((out / STATE_NAME).read_text(encoding="utf-8"))["history"]
    elif (out / CHECKPOINT_NAME).exists():
        raise OccreconError(f"{out}: holds a point-map run already; resume it or choose another folder")
    loader = torch.utils.data.DataLoader(
        _SeededItems(train_set),
        batch_sampler=_BatchPlan(len(train_set), config.batch_size, config.seed, start, config.steps),
        num_workers=config.workers,
        collate_fn=_collate,
        prefetch_factor=4 if config.workers else None,
    )

    def save(step: int) -> None:
        _save_checkpoint(out / CHECKPOINT_NAME, {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "elapsed": elapsed, "best": best})
        (out / STATE_NAME).write_text(json.dumps({"config": asdict(config), "history": history}, indent=1), encoding="utf-8")

    net.train()
    tick = time.perf_counter()
    for step, batch in enumerate(loader, start=start):
        if config.max_time_s is not None and elapsed >= config.max_time_s:
            break
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, config, elapsed)
        optimizer.zero_grad(set_to_none=True)
        pred, logits = net(batch["image"])
        losses = pointmap_loss(pred, logits, batch["target"], batch["mask"])
        losses["loss"].backward()
        optimizer.step()
        now = time.perf_counter()
        elapsed += now - tick
        tick = now
        done = step + 1
        last = done == config.steps or (config.max_time_s is not None and elapsed >= config.max_time_s)
        if done % config.val_every == 0 or last:
            figures = validate(net, val_set)
            history.append({"step": done, "elapsed_s": round(elapsed, 1), "loss": round(losses["loss"].item(), 4), **{k: round(v, 4) for k, v in figures.items()}})
            if figures["aligned_l1"] < best:
                best = figures["aligned_l1"]
                meta = {"step": done, "elapsed_s": round(elapsed, 1), "size": config.size, "validation": figures, "dataset": str(config.dataset), "from_model": config.from_model}
                _save_weights(net, out / WEIGHTS_NAME, meta)
            save(done)
            on_line(f"step {done}: loss {losses['loss'].item():.4f}, val aligned L1 {figures['aligned_l1']:.4f}, mask IoU {figures['mask_iou']:.4f}, {elapsed / 60:.1f} min")
            tick = time.perf_counter()
        elif done % 50 == 0:
            save(done)
        if last:
            break
    return out / WEIGHTS_NAME


def image_model_config(pointmap_meta: dict[str, Any], completion: Any, name: str = "pointmap-img-synthetic") -> dict[str, Any]:
    """The config of the depth-first image model made of a point-map run and a completion model.

    Args:
        pointmap_meta: the point-map weights' metadata (``size``, validation, steps, time).
        completion: the completion model (an :class:`~occrecon.loading.OccupancyModel` for clouds).
        name: the model's name.
    """
    completion_cfg = completion.config.to_dict()
    generation = dict(completion_cfg.get("generation", {}))
    generation.update(rotations=1, winding_prior=False, fit_steps=0, anchor_points=False)
    return {
        "name": name,
        "task": "image",
        "description": "depth-first image model trained by occrecon on procedural shapes: point map, partial cloud, completion, carving",
        "architecture": {
            "method": "depthfirst",
            "pointmap": {"widths": [128, 96, 64, 48, 32]},
            "completion": completion_cfg["architecture"],
            "n_points": int(completion_cfg["input"].get("n_points", 3000)),
            "dilate": 2,
        },
        "input": {"kind": "image", "image_size": int(pointmap_meta["size"]), "frame": "viewer"},
        "generation": generation,
        "training": {
            "pointmap": pointmap_meta,
            "completion": {"model": completion.name, **(completion_cfg.get("training") or {})},
        },
    }


def image_model_card(config: dict[str, Any], benchmark: str | None = None) -> str:
    """The model card of an assembled depth-first image model: what it does, its frame, its data and training."""
    pm = config["training"]["pointmap"]
    comp = config["training"]["completion"]
    lines = [
        f"# {config['name']}",
        "",
        "Single-image reconstruction, depth first: a point-map network predicts the surface seen through every pixel",
        "(and the object's mask), the masked points become a partial cloud, a ConvONet fine-tuned on one-view partial",
        "clouds completes it, and the silhouette carves away whatever falls outside it, through a camera fitted to the",
        "point map itself (no focal length needed).",
        "",
        "**Output frame: the camera's.** x right, y up in the picture, z towards the viewer; the mesh is centred on its",
        "bounding box with its longest side 1. It is not turned into an object frame: a photo does not say where the",
        "object's front or its up is beyond what the picture shows.",
        "",
        "## Training",
        "",
        f"- Data: occrecon procedural shapes, renders with true depth ({comp.get('data', 'partial clouds')}); "
        f"data seed {comp.get('data_seed')}, {comp.get('n_shapes')} shapes, the last {comp.get('validation_shapes')} held out.",
        f"- Point map: {pm.get('step')} steps at {pm.get('size')} px from {pm.get('from_model') or 'random weights'}, "
        f"{pm.get('elapsed_s', 0) / 60:.0f} min; held-out aligned L1 {pm.get('validation', {}).get('aligned_l1', float('nan')):.4f}, "
        f"mask IoU {pm.get('validation', {}).get('mask_iou', float('nan')):.3f}.",
        f"- Completion: {comp.get('model')} fine-tuned from {comp.get('base', {}).get('data', 'the points model')} "
        f"for {comp.get('steps')} steps ({(comp.get('wall_time_s') or 0) / 60:.0f} min, {comp.get('hardware')}); "
        f"held-out IoU {comp.get('validation_iou')}.",
    ]
    if benchmark:
        lines += ["", "## Measured", "", benchmark.strip()]
    return "\n".join(lines) + "\n"


def assemble_image_model(pointmap_weights: str | Path, completion_model: str, out: str | Path, *, half: bool = True, benchmark: str | None = None) -> Path:
    """Write the depth-first image model folder from a point-map run's weights and a completion model."""
    from occrecon.loading import load_model, load_weights
    from occrecon.modelfolder import save_model_folder
    from occrecon.nets import build_network

    meta = weights_metadata(pointmap_weights)
    completion = load_model(completion_model, device="cpu")
    config = image_model_config(meta, completion)
    net = build_network(config["architecture"])
    load_weights(net.pointmap, Path(pointmap_weights))
    net.completion.load_state_dict(completion.net.float().state_dict())
    return save_model_folder(net, config, out, half=half, card=image_model_card(config, benchmark))


def build_predicted_partial_dataset(source: str | Path, pointmap_weights: str | Path, out: str | Path, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Stage 2 data: ``source``'s partial-cloud items, their inputs replaced by a point-map network's predicted clouds.

    Each item's render goes through the network as the image model sends a photo; the
    predicted cloud (its inner mask pixels, box centred, longest side 1) becomes the
    input, and the labelled queries are carried into its frame (:mod:`occrecon.data.predicted`).
    Where the network sees nothing (under 16 mask pixels) the item keeps its true-depth
    input (``predicted`` False). Train on the folder with ``occrecon train partial --cache OUT``.
    Resumable shard by shard; the manifest records the weights' SHA-256, so predictions of
    other weights are refused rather than mixed.

    Returns:
        the manifest (also ``out/manifest.json``).
    """
    import hashlib

    from occrecon.data.cache import _write_json, _write_shard, open_npz_memmap, read_manifest, shard_is_complete, shard_path
    from occrecon.errors import InputError
    from occrecon.loading import load_weights
    from occrecon.nets.pointmap import PointMapNet

    source, out = Path(source), Path(out)
    manifest = read_manifest(source)
    if manifest.get("kind") != "partial" or int(manifest.get("partial_version", "1")) < 2:
        raise InputError(source, "not a partial-cloud dataset with renders (version 2 or later)")
    size = int(weights_metadata(pointmap_weights).get("size", 128))
    digest = hashlib.sha256(Path(pointmap_weights).read_bytes()).hexdigest()
    manifest = {k: v for k, v in manifest.items() if k != "complete"}
    manifest["inputs"] = {"predicted_by": digest, "size": size, "source": str(source.resolve())}
    out.mkdir(parents=True, exist_ok=True)
    recorded = out / "manifest.json"
    if recorded.is_file():
        old = {k: v for k, v in json.loads(recorded.read_text(encoding="utf-8")).items() if k != "complete"}
        if old != manifest:
            raise InputError(out, "holds predictions of other weights or another dataset; choose another folder")
    _write_json(recorded, {**manifest, "complete": False})
    net = PointMapNet()
    load_weights(net, Path(pointmap_weights))
    net.eval()
    n_items, shard_size = int(manifest["n_items"]), int(manifest["shard_size"])
    n_points = int(manifest["spec"]["n_points"])
    for k in range(int(manifest["n_shards"])):
        start, stop = k * shard_size, min((k + 1) * shard_size, n_items)
        if not shard_is_complete(shard_path(out, k), stop - start):
            arrays = open_npz_memmap(shard_path(source, k))
            items = [_predicted_item(net, arrays, j, size, n_points) for j in range(stop - start)]
            _write_shard(out, k, {key: np.stack([item[key] for item in items]) for key in items[0]})
        if progress:
            progress(stop, n_items)
    manifest["complete"] = True
    _write_json(recorded, manifest)
    return manifest


def weights_metadata(path: str | Path) -> dict[str, Any]:
    """A point-map weights file's metadata (step, size, validation...), JSON values decoded."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}


@torch.inference_mode()
def _predicted_item(net: torch.nn.Module, arrays: dict[str, np.ndarray], j: int, size: int, n_points: int) -> dict[str, np.ndarray]:
    """Item ``j`` of a partial shard with the network's predicted cloud as input and its queries in that cloud's frame."""
    from occrecon import camera as cam
    from occrecon.data.pointmap import pointmap_target, resized_image
    from occrecon.data.predicted import align_to_prediction, clean_frame, even_pick, queries_in_prediction
    from occrecon.nets.pointmap import visible_surface

    kept = {key: np.asarray(arrays[key][j]) for key in ("inputs", "points", "occ", "index", "view", "family")}
    depth, K = np.asarray(arrays["depth"][j], dtype=np.float32), np.asarray(arrays["camera_K"][j])
    image = resized_image(np.asarray(arrays["image"][j]), size)
    try:
        points, pixels, _ = visible_surface(net, torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.0)[None])
        target, target_mask = pointmap_target(depth, K, size)
        cols, rows = (pixels.numpy() - 0.5).astype(np.int64).T
        shared = target_mask[rows, cols]
        alignment = align_to_prediction(points.numpy()[shared], target[:, rows[shared], cols[shared]].T)
    except ValueError:
        return {**kept, "predicted": np.bool_(False), "alignment_residual": np.float32(np.nan)}
    item_frame = cam.ViewerFrame(tuple(float(v) for v in arrays["frame_centre"][j]), float(arrays["frame_scale"][j]))
    kept["points"] = queries_in_prediction(kept["points"], item_frame, clean_frame(depth, K), alignment)
    kept["inputs"] = points.numpy()[even_pick(len(points), n_points)].astype(np.float32)
    return {**kept, "predicted": np.bool_(True), "alignment_residual": np.float32(alignment.residual)}


def main(argv: list[str] | None = None) -> None:
    """``python -m occrecon.pointmap_training DATASET OUT [--steps N] [--max-time-min M] [--resume]``."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("dataset")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--max-time-min", type=float, default=None)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    config = PointMapTrainConfig(
        dataset=args.dataset, out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        max_time_s=None if args.max_time_min is None else args.max_time_min * 60, threads=args.threads,
        workers=args.workers, val_every=args.val_every,
    )
    if args.resume and (Path(args.out) / STATE_NAME).is_file():
        saved = json.loads((Path(args.out) / STATE_NAME).read_text(encoding="utf-8"))["config"]
        saved.update(steps=config.steps, threads=config.threads, workers=config.workers)
        if config.max_time_s is not None:
            saved["max_time_s"] = config.max_time_s
        config = PointMapTrainConfig(**saved)
    train_pointmap(config, resume=args.resume, on_line=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
