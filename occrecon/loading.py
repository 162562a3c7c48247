"""Model folders (``config.json`` + ``model.safetensors``) and ``load_model``.

A model folder is occrecon's only runtime weight format: safetensors cannot
execute code, and the config carries everything needed to rebuild the network
and to preprocess inputs the way it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from occrecon.config import GenerationDefaults, InputSpec, ModelConfig
from occrecon.modelfolder import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, read_config, save_model_folder

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "ModelOnDemand",
    "OccupancyModel",
    "load_model",
    "locate_model",
    "read_config",
    "save_model_folder",
]
from occrecon.device import resolve_device
from occrecon.errors import InvalidModelFolderError, UnknownModelError



GPU_QUERY_ROWS = 100_000
"""Decoder rows per pass on a GPU, which wants large batches."""


def decoder_rows(net: torch.nn.Module, device: torch.device) -> int:
    """Decoder rows (query points × networks decoding them) per pass that suit ``net`` on ``device``.

    A CPU decoder is bound by memory traffic, not arithmetic: every layer reads
    and writes a (rows, width) activation, and once that outgrows the cache the
    same work takes about twice as long (``benchmarks/query_batch.py``; training's
    backward as well). So on a CPU one activation is kept near 4 MiB: 2²⁰ / width
    rows, within 4,096-65,536. A GPU wants large batches: 100,000.
    """
    if device.type != "cpu":
        return GPU_QUERY_ROWS
    decoder = getattr(net, "decoder", net)
    widths = [m.out_features for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    widths += [m.out_channels for m in decoder.modules() if isinstance(m, torch.nn.Conv1d)]
    return int(min(65_536, max(4_096, (1 << 20) // max(widths, default=256))))


@dataclass
class OccupancyModel:
    """A loaded network with its config: the object every reconstruction uses.

    Attributes:
        net: the ``torch.nn.Module`` with upstream's state-dict layout, in eval mode.
        config: the model's :class:`~occrecon.config.ModelConfig` (a plain ``config.json``
            dict is validated and typed on construction).
        name: registry name, Hub id or folder the model came from.
        source: ``bundled``, ``hub``, ``upstream`` or ``local``.
        revision: Hub revision (commit) or ``None``.
        path: the model folder on disk.
        device: where ``net`` lives.
        notes: what loading had to say (e.g. no GPU found), for the caller to show once.
    """

    net: torch.nn.Module
    config: ModelConfig
    name: str
    source: str
    revision: str | None
    path: Path | None
    device: torch.device
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.config, ModelConfig):
            self.config = ModelConfig.from_dict(self.config, f"model {self.name}")

    def __repr__(self) -> str:
        parameters = sum(p.numel() for p in self.net.parameters())
        architecture = f"{self.config.architecture.get('method')}/{self.config.architecture.get('encoder')}"
        return f"OccupancyModel(name={self.name!r}, task={self.task!r}, architecture={architecture!r}, parameters={parameters:,}, device={str(self.device)!r})"

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def input_spec(self) -> InputSpec:
        return self.config.input

    @property
    def generation(self) -> GenerationDefaults:
        return self.config.generation

    @property
    def padding(self) -> float:
        return self.config.padding

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


class ModelOnDemand:
    """A model loaded the first time it is needed, then kept (the scene model of a batch of object clouds)."""

    def __init__(self, load: Callable[[], OccupancyModel]):
        self._load = load
        self._model: OccupancyModel | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> OccupancyModel:
        if self._model is None:
            self._model = self._load()
        return self._model


MAX_PARAMETERS = 500_000_000
"""Networks larger than this are refused before their weights are allocated (the largest published model has 13 M)."""

def build_from_config(config: ModelConfig) -> torch.nn.Module:
    """The network a config describes, its size checked on the meta device (no memory) before it is built for real."""
    from occrecon.nets import build_network

    try:
        with torch.device("meta"):
            skeleton = build_network(config.architecture)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, NotImplementedError, RuntimeError) as exc:
        raise InvalidModelFolderError(f"model {config.name or '(unnamed)'}: cannot build the architecture ({exc})") from None
    parameters = sum(p.numel() for p in skeleton.parameters())
    if parameters > MAX_PARAMETERS:
        raise InvalidModelFolderError(
            f"model {config.name or '(unnamed)'}: the architecture has {parameters:,} parameters, over the {MAX_PARAMETERS:,} occrecon builds"
        )
    return build_network(config.architecture)


def _stored_shapes(weights_path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, without reading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise InvalidModelFolderError(f"{weights_path}: unreadable safetensors file ({exc})") from None


def load_weights(net: torch.nn.Module, weights_path: Path) -> None:
    """Load safetensors into ``net`` strictly, upcasting fp16 storage to the module's dtypes.

    Names and shapes are compared from the file's header first, so a file that does not
    fit is refused before any of its tensors is read.
    """
    from safetensors.torch import load_file

    if not weights_path.is_file():
        raise InvalidModelFolderError(f"{weights_path.parent}: no {WEIGHTS_NAME}")
    expected = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    stored = _stored_shapes(weights_path)
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong_shape = sorted(k for k in set(stored) & set(expected) if stored[k] != expected[k])
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            k = wrong_shape[0]
            parts.append(f"{len(wrong_shape)} with wrong shapes (e.g. {k}: {stored[k]} vs {expected[k]})")
        raise InvalidModelFolderError(f"{weights_path}: weights do not fit the configured architecture: {'; '.join(parts)}")
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:
        raise InvalidModelFolderError(f"{weights_path}: unreadable safetensors file ({exc})") from None
    state = net.state_dict()
    net.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()}, strict=True)


def load_folder(folder: Path, *, device: torch.device, name: str, source: str, revision: str | None = None) -> OccupancyModel:
    """Build the network a folder describes and load its weights (config and weight names/shapes are checked first)."""
    config = read_config(folder)
    net = build_from_config(config)
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
    weights, else its Hub repo, else its original checkpoint converted into the
    cache, see ``occrecon.upstream``); an ``org/name[@revision]`` Hub id.

    Returns:
        (folder, display name, source, revision)
    """
    from occrecon import hub, registry

    text = str(name_or_dir)
    if not text.strip():
        raise UnknownModelError("an empty model name; give a registered name (see `occrecon models`), an org/name Hub id or a model folder")
    if len(text) > 1024:
        raise UnknownModelError(f"a model name of {len(text):,} characters ({text[:40]!r}...): not a folder, a registered name or a Hub id")
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise InvalidModelFolderError(f"{text}: a folder without {CONFIG_NAME}, so not a model folder ({CONFIG_NAME} + {WEIGHTS_NAME})")
        return path, text, "local", None
    entry = registry.get_entry(text)
    if entry is not None:
        if entry.source == "bundled":
            return registry.bundled_weights_dir() / entry.name, entry.name, "bundled", None
        from occrecon.upstream import locate_registered  # the Hub repo, else the original checkpoint, converted

        folder, source, rev = locate_registered(entry, revision=revision, local_files_only=local_files_only, progress=progress)
        return folder, entry.name, source, rev
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
