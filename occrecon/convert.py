"""Upstream ONet/ConvONet checkpoints (``.pt``) → occrecon model folders."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import torch

from occrecon.checkpoint import compare_state_dicts, extract_state_dict, load_upstream_checkpoint
from occrecon.errors import CheckpointMismatchError, UnknownModelError
from occrecon.modelfolder import save_model_folder


def _presets() -> dict[str, dict[str, Any]]:
    from occrecon.nets import ARCHITECTURE_PRESETS

    return ARCHITECTURE_PRESETS


def _expected_shapes(preset: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state-dict layout of a preset, built on the meta device (no memory, no init cost)."""
    from occrecon.nets import build_network

    with torch.device("meta"):
        net = build_network(preset["architecture"])
    return net.state_dict()


def _is_legacy_cbn(state: dict[str, torch.Tensor]) -> bool:
    return any(".fc_gamma." in k for k in state)


def _adapt_cbn(state: dict[str, torch.Tensor], preset: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Legacy (Linear) and current (Conv1d) CBN weights are one reshape apart; match the target's."""
    from occrecon.nets import current_cbn_to_legacy, legacy_cbn_to_current

    target_legacy = bool(preset["architecture"].get("decoder_kwargs", {}).get("legacy", False))
    if _is_legacy_cbn(state) and not target_legacy:
        return legacy_cbn_to_current(state)
    if not _is_legacy_cbn(state) and target_legacy and any(".conv_gamma." in k for k in state):
        return current_cbn_to_legacy(state)
    return state


def guess_architecture(state: dict[str, torch.Tensor], filename: str | None = None) -> str:
    """The preset whose keys and shapes fit ``state``; the file name breaks ties.

    A preset that fits the keys as stored wins over one that fits only after the
    legacy/current CBN reshape.

    Raises:
        CheckpointMismatchError: nothing fits, or several presets fit and the
            file name does not say which (e.g. 1-plane vs 3-plane share a layout).
    """
    presets = _presets()
    layouts = {name: _expected_shapes(preset) for name, preset in presets.items()}
    fits = [name for name in presets if not compare_state_dicts(state, layouts[name])]
    if not fits:
        fits = [name for name in presets if not compare_state_dicts(_adapt_cbn(state, presets[name]), layouts[name])]
    if len(fits) == 1:
        return fits[0]
    if not fits:
        raise CheckpointMismatchError("no known architecture has this checkpoint's keys and shapes; pass --arch NAME to see what differs")
    if filename:
        by_file = [n for n in fits if Path(presets[n].get("upstream", {}).get("file", "")).name == Path(filename).name]
        if len(by_file) == 1:
            return by_file[0]
    raise CheckpointMismatchError(f"several architectures fit this checkpoint ({', '.join(fits)}); pass --arch NAME")


def upstream_card(config: dict[str, Any]) -> str:
    """Model card for a converted upstream checkpoint."""
    up = config.get("upstream", {})
    source = config.get("source", {})
    return f"""---
library_name: occrecon
license: {up.get('license', 'mit').lower()}
pipeline_tag: {'image-to-3d' if config['task'] == 'image' else 'other'}
tags: [occupancy-networks, 3d-reconstruction, occrecon]
---
# {config['name']}

{config.get('description', '')}

- Task: `{config['task']}`; input: `{config.get('input', {})}`
- Architecture: `{config['architecture'].get('method')}` encoder `{config['architecture'].get('encoder')}`, decoder `{config['architecture'].get('decoder')}`
- Source: `{up.get('file', '?')}` from {up.get('repo', 'upstream')} ({up.get('url', '')}), converted by occrecon from a file with sha256 `{source.get('sha256', '?')}`; weights unchanged.
- Licence: {up.get('license', 'MIT')} (the upstream code and weights).
- Intended input: objects in ShapeNet's canonical pose (y up), normalised to the unit cube; scene models take metric scans.

Usage: `occrecon {'points' if config['task'] in ('points', 'scene') else config['task']} INPUT --model {config['name']}`

Citation: {up.get('citation', '')}
"""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_checkpoint(path: str | Path, out_dir: str | Path, *, arch: str = "auto", half: bool = False) -> Path:
    """Convert an upstream checkpoint into a model folder loadable with ``load_model``.

    The file is read with ``torch.load(weights_only=True)`` (numpy scalars
    allowed, nothing else), its ``model`` entry is checked key by key and shape
    by shape against the architecture, and written as safetensors.

    Args:
        path: upstream ``.pt`` file (e.g. ``shapenet_3plane.pt``).
        out_dir: folder to create.
        arch: registry name of the architecture, or ``auto`` to infer it.
        half: store fp16 weights.

    Returns:
        The model folder.
    """
    from occrecon.nets import build_network

    path = Path(path)
    checkpoint = load_upstream_checkpoint(path)
    state = extract_state_dict(checkpoint, path)
    presets = _presets()
    if arch == "auto":
        arch = guess_architecture(state, path.name)
    if arch not in presets:
        raise UnknownModelError(f"unknown architecture {arch!r}; choose one of: {', '.join(sorted(presets))}")
    preset = copy.deepcopy(presets[arch])
    state = _adapt_cbn(state, preset)
    net = build_network(preset["architecture"])
    problems = compare_state_dicts(state, net.state_dict())
    if problems:
        raise CheckpointMismatchError(f"{path}: does not fit architecture {arch}: " + "; ".join(problems))
    net.load_state_dict(state, strict=True)
    preset["source"] = {"converted_from": path.name, "sha256": _sha256(path), "iteration": _scalar(checkpoint, "it")}
    return save_model_folder(net, preset, out_dir, card=upstream_card(preset), half=half)


def _scalar(checkpoint: Any, key: str) -> float | int | None:
    value = checkpoint.get(key) if isinstance(checkpoint, dict) else None
    try:
        return value.item() if hasattr(value, "item") else value if isinstance(value, (int, float)) else None
    except (TypeError, ValueError):
        return None
