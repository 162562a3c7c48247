"""Model folders (``config.json`` + ``model.safetensors``) and ``load_model``.

A model folder is occrecon's only runtime weight format: safetensors cannot
execute code, and the config carries everything needed to rebuild the network
and to preprocess inputs the way it was trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from occrecon.device import resolve_device
from occrecon.errors import InvalidModelFolderError, UnknownModelError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1


def decoder_rows(net: torch.nn.Module, device: torch.device) -> int:
    """Decoder rows (query points × networks decoding them) per pass that suit ``net`` on ``device``.

    A CPU decoder is bound by memory traffic, not arithmetic: every layer reads
    and writes a (rows, width) activation, and once that outgrows the cache the
    same work takes about twice as long (``benchmarks/query_batch.py``; training's
    backward as well). So on a CPU one activation is kept near 4 MiB: 2²⁰ / width
    rows, within 4,096-65,536. A GPU wants large batches: 100,000.
    """
    if device.type != "cpu":
        return 100_000
    decoder = getattr(net, "decoder", net)
    widths = [m.out_features for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    widths += [m.out_channels for m in decoder.modules() if isinstance(m, torch.nn.Conv1d)]
    return int(min(65_536, max(4_096, (1 << 20) // max(widths, default=256))))


@dataclass
class OccupancyModel:
    """A loaded network with its config: the object every reconstruction uses.

    Attributes:
        net: the ``torch.nn.Module`` with upstream's state-dict layout, in eval mode.
        config: the parsed ``config.json``.
        name: registry name, Hub id or folder the model came from.
        source: ``bundled``, ``hub`` or ``local``.
        revision: Hub revision (commit) or ``None``.
        path: the model folder on disk.
        device: where ``net`` lives.
    """

    net: torch.nn.Module
    config: dict[str, Any]
    name: str
    source: str
    revision: str | None
    path: Path | None
    device: torch.device
    notes: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def input_spec(self) -> dict[str, Any]:
        return self.config.get("input", {})

    @property
    def generation(self) -> dict[str, Any]:
        return self.config.get("generation", {})

    @property
    def padding(self) -> float:
        return float(self.generation.get("padding", self.config["architecture"].get("padding", 0.1)))

    @property
    def query_rows(self) -> int:
        """Decoder rows (query points × networks decoding them) per forward pass that suit this model on its device (:func:`decoder_rows`)."""
        return decoder_rows(self.net, self.device)

    @torch.inference_mode()
    def encode(self, inputs: torch.Tensor | None, batch_size: int = 1) -> Any:
        """Conditioning from network inputs: image (B,3,224,224) in [0,1], points (B,N,3), voxels (B,32,32,32), or None."""
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.to(self.device, torch.float32)
        return self.net.encode(inputs, batch_size=batch_size)

    @torch.inference_mode()
    def decode(self, points: torch.Tensor, c: Any) -> torch.Tensor:
        """Logits (B, M) at points (B, M, 3) in the model's frame."""
        return self.net.decode(points.to(self.device, torch.float32), c)

    @torch.inference_mode()
    def eval_points(self, inputs: torch.Tensor | None, points: torch.Tensor) -> torch.Tensor:
        """``decode(points, encode(inputs))``."""
        return self.decode(points, self.encode(inputs, batch_size=points.shape[0]))

    def to(self, device: str | torch.device) -> "OccupancyModel":
        self.device = torch.device(device)
        self.net.to(self.device)
        return self


def read_config(folder: Path) -> dict[str, Any]:
    """Parse and sanity-check a folder's ``config.json``."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise InvalidModelFolderError(f"{folder}: no {CONFIG_NAME} (a model folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidModelFolderError(f"{path}: not valid JSON ({exc})") from None
    for key in ("task", "architecture"):
        if key not in config:
            raise InvalidModelFolderError(f"{path}: missing {key!r}")
    return config


def build_from_config(config: dict[str, Any]) -> torch.nn.Module:
    from occrecon.nets import build_network

    return build_network(config["architecture"])


def load_weights(net: torch.nn.Module, weights_path: Path) -> None:
    """Load safetensors into ``net`` strictly, upcasting fp16 storage to the module's dtypes."""
    from safetensors.torch import load_file

    if not weights_path.is_file():
        raise InvalidModelFolderError(f"{weights_path.parent}: no {WEIGHTS_NAME}")
    try:
        stored = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise InvalidModelFolderError(f"{weights_path}: unreadable safetensors file ({exc})") from None
    expected = net.state_dict()
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong_shape = sorted(k for k in set(stored) & set(expected) if tuple(stored[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            k = wrong_shape[0]
            parts.append(f"{len(wrong_shape)} with wrong shapes (e.g. {k}: {tuple(stored[k].shape)} vs {tuple(expected[k].shape)})")
        raise InvalidModelFolderError(f"{weights_path}: weights do not fit the configured architecture: {'; '.join(parts)}")
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in stored.items()}, strict=True)


def save_model_folder(
    net: torch.nn.Module,
    config: dict[str, Any],
    folder: str | Path,
    *,
    card: str | None = None,
    half: bool = False,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` (optionally fp16) and a model card.

    Args:
        net: network whose state dict is saved (integer buffers keep their dtype).
        config: JSON-serialisable config with at least ``task`` and ``architecture``.
        folder: destination, created when missing.
        card: Markdown model card.
        half: store floating-point tensors as float16 (loading upcasts them).
    """
    from safetensors.torch import save

    from occrecon.io.atomic import write_bytes_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, tensor in net.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[key] = tensor
    config = {"format": "occrecon", "format_version": FORMAT_VERSION, **config}
    # Atomic, so that a run folder being loaded while training saves a new best is never torn.
    write_bytes_atomic(folder / WEIGHTS_NAME, save(state, metadata={"format": "pt", "occrecon_task": str(config["task"])}))
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8")
    if card is not None:
        (folder / CARD_NAME).write_text(card, encoding="utf-8")
    return folder


def load_folder(folder: Path, *, device: torch.device, name: str, source: str, revision: str | None = None) -> OccupancyModel:
    """Build the network a folder describes and load its weights."""
    config = read_config(folder)
    try:
        net = build_from_config(config)
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidModelFolderError(f"{folder / CONFIG_NAME}: cannot build the architecture ({exc})") from None
    load_weights(net, Path(folder) / WEIGHTS_NAME)
    net.eval().to(device)
    return OccupancyModel(net=net, config=config, name=name, source=source, revision=revision, path=Path(folder), device=device)


def _looks_like_hub_id(text: str) -> bool:
    repo = text.split("@", 1)[0]
    parts = repo.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


def locate_model(
    name_or_dir: str | Path,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    progress: bool = True,
) -> tuple[Path, str, str, str | None]:
    """Find (downloading if needed) the folder of a model.

    Resolution order: an existing folder; a registered short name (bundled
    weights, else its Hub repo); an ``org/name[@revision]`` Hub id.

    Returns:
        (folder, display name, source, revision)
    """
    from occrecon import hub, registry

    text = str(name_or_dir)
    path = Path(text).expanduser()
    if path.is_dir():
        return path, text, "local", None
    entry = registry.get_entry(text)
    if entry is not None:
        if entry.source == "bundled":
            return registry.bundled_weights_dir() / entry.name, entry.name, "bundled", None
        rev = revision or entry.revision
        folder = hub.download_model(entry.repo_id, revision=rev, local_files_only=local_files_only, progress=progress, name=entry.name)
        return folder, entry.name, "hub", _snapshot_revision(folder) or rev
    if _looks_like_hub_id(text):
        repo_id, rev_in_name = hub.split_revision(text)
        rev = revision or rev_in_name
        folder = hub.download_model(repo_id, revision=rev, local_files_only=local_files_only, progress=progress)
        return folder, repo_id, "hub", _snapshot_revision(folder) or rev
    if path.exists():
        raise InvalidModelFolderError(f"{text}: is a file; --model takes a model folder ({CONFIG_NAME} + {WEIGHTS_NAME}), a short name or an org/name Hub id")
    known = ", ".join(registry.list_models())
    raise UnknownModelError(f"unknown model {text!r}: not a folder, a registered name or an org/name Hub id. Known names: {known}")


def _snapshot_revision(folder: Path) -> str | None:
    """The commit hash of a Hub cache snapshot folder (``.../snapshots/<sha>``)."""
    return folder.name if folder.parent.name == "snapshots" else None


def load_model(
    name_or_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    progress: bool = False,
) -> OccupancyModel:
    """Load a model by short name, Hub id (``org/name[@rev]``) or local folder.

    Args:
        name_or_dir: what to load (see ``occrecon.registry.list_models()``).
        device: ``auto`` (default: GPU when present), ``cpu``, ``cuda``, ``mps``.
        revision: Hub branch/tag/commit overriding the registry's pin.
        local_files_only: use the Hub cache only.
        progress: show download progress bars.

    Example:
        >>> model = load_model("convonet-points-synthetic")  # doctest: +SKIP
        >>> logits = model.eval_points(points[None], queries[None])  # doctest: +SKIP
    """
    resolved, note = resolve_device(device or "auto")
    folder, name, source, rev = locate_model(name_or_dir, revision=revision, local_files_only=local_files_only, progress=progress)
    model = load_folder(folder, device=resolved, name=name, source=source, revision=rev)
    if note:
        model.notes.append(note)
    return model
