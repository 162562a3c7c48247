"""A model folder on disk: ``config.json`` (a :class:`~occrecon.config.ModelConfig`), ``model.safetensors`` and a card.

Reading and writing the folder needs no network code and builds no network, so both
:mod:`occrecon.loading` (which builds models from folders) and :mod:`occrecon.convert`
(which writes folders from upstream checkpoints) sit above it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from occrecon.config import ModelConfig
from occrecon.errors import InvalidModelFolderError
from occrecon.io.atomic import write_bytes_atomic

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"

MAX_CONFIG_BYTES = 1 << 20


def read_config(folder: Path) -> ModelConfig:
    """Parse and validate a folder's ``config.json`` (untrusted: see :meth:`ModelConfig.from_dict`)."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise InvalidModelFolderError(f"{folder}: no {CONFIG_NAME} (a model folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidModelFolderError(f"{path}: over {MAX_CONFIG_BYTES >> 20} MiB, too large for a config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidModelFolderError(f"{path}: not valid JSON ({reason})") from None
    return ModelConfig.from_dict(data, str(path))


def save_model_folder(
    net: torch.nn.Module,
    config: ModelConfig | dict[str, Any],
    folder: str | Path,
    *,
    card: str | None = None,
    half: bool = False,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` (optionally fp16) and a model card.

    Args:
        net: network whose state dict is saved (integer buffers keep their dtype).
        config: the model's config (a dict is validated as :class:`ModelConfig` first).
        folder: destination, created when missing.
        card: Markdown model card.
        half: store floating-point tensors as float16 (loading upcasts them).
    """
    from safetensors.torch import save

    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config, "the config to save")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, tensor in net.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[key] = tensor
    # Atomic, so that a run folder being loaded while training saves a new best is never torn.
    write_bytes_atomic(folder / WEIGHTS_NAME, save(state, metadata={"format": "pt", "occrecon_task": config.task}))
    text = json.dumps(config.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    write_bytes_atomic(folder / CONFIG_NAME, text.encode("utf-8"))
    if card is not None:
        write_bytes_atomic(folder / CARD_NAME, card.encode("utf-8"))
    return folder
