"""Short model names → where their weights live and what they do.

One table, plain data (in the spirit of timm's registry and faster-whisper's
``_MODELS``): a name maps to a Hub repo and pinned revision, or to a folder of
weights bundled with occrecon, plus the architecture preset and the task. Each
upstream model also names the original ``.pt`` file it was converted from (and
the SHA-256 prefix its file name carries, where it has one): when the Hub repo
does not exist, that file is downloaded and converted instead (``occrecon.upstream``).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

HUB_ORG = "occrecon"
"""Hub organisation that hosts the converted upstream checkpoints."""

HUB_REVISION = "main"
"""Revision used for hosted models until a release pins commit hashes per model."""

TASKS = ("image", "points", "voxels", "scene", "unconditional")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: short name users type (``onet-img``).
        task: one of ``TASKS``.
        source: ``"bundled"`` (ships in ``weights/``) or ``"hub"``.
        repo_id: Hub repository for hub models.
        revision: pinned Hub revision for hub models.
        description: one line for ``occrecon models``.
        url: the original upstream checkpoint (``.pt``) the model converts from;
            downloaded when the Hub repo does not exist.
        sha256_prefix: the hex prefix of the file's SHA-256 that its name carries
            (``onet_img2mesh_3-f786b04a.pt``), or ``None`` where the name has none.
        n_parameters: parameters of the network (its float32 weights take 4 bytes each).
    """

    name: str
    task: str
    source: str
    repo_id: str | None = None
    revision: str | None = None
    description: str = ""
    url: str | None = None
    sha256_prefix: str | None = None
    n_parameters: int | None = None


def bundled_weights_dir() -> Path:
    """The folder of weights that ship with occrecon.

    Installed from a wheel it is ``occrecon/_weights`` (see pyproject.toml); in a
    source checkout or an editable install it is the repository's ``weights/``.
    """
    package = Path(__file__).resolve().parent
    installed = package / "_weights"
    return installed if installed.is_dir() else package.parent / "weights"


def _bundled_entries() -> dict[str, ModelEntry]:
    entries = {}
    root = bundled_weights_dir()
    if not root.is_dir():
        return entries
    for config_path in sorted(root.glob("*/config.json")):
        config = json.loads(config_path.read_text(encoding="utf-8"))
        name = config.get("name", config_path.parent.name)
        entries[name] = ModelEntry(
            name=name,
            task=config["task"],
            source="bundled",
            description=config.get("description", ""),
        )
    return entries


_UPSTREAM_DESCRIPTIONS = {
    "onet-img": "ONet single-image model, ShapeNet 13 classes (updated, no augmentation)",
    "onet-img-legacy": "ONet single-image model of the paper (legacy CBN decoder)",
    "onet-points": "ONet point-cloud completion, 300 noisy points",
    "onet-voxels": "ONet voxel super-resolution from 32³",
    "onet-uncond-airplanes": "ONet unconditional generative model, airplanes",
    "onet-uncond-cars": "ONet unconditional generative model, cars",
    "onet-uncond-chairs": "ONet unconditional generative model, chairs",
    "onet-uncond-sofas": "ONet unconditional generative model, sofas",
    "convonet-shapenet-1plane": "ConvONet objects, 3000 noisy points, 1 plane 64²",
    "convonet-shapenet-3plane": "ConvONet objects, 3000 noisy points, 3 planes 64²",
    "convonet-shapenet-grid32": "ConvONet objects, 3000 noisy points, 32³ grid",
    "convonet-shapenet-3plane-partial": "ConvONet objects from partial clouds, 3 planes 64²",
    "convonet-room-1plane": "ConvONet synthetic rooms (unit cube), 1 plane 128²",
    "convonet-room-3plane": "ConvONet synthetic rooms (unit cube), 3 planes 128²",
    "convonet-room-grid32": "ConvONet synthetic rooms (unit cube), 32³ grid",
    "convonet-room-grid64": "ConvONet synthetic rooms (unit cube), 64³ grid",
    "convonet-room-combine": "ConvONet synthetic rooms (unit cube), 3 planes 128² + 32³ grid",
    "convonet-voxels-1plane": "ConvONet voxel super-resolution, 1 plane 64²",
    "convonet-voxels-3plane": "ConvONet voxel super-resolution, 3 planes 64²",
    "convonet-voxels-grid32": "ConvONet voxel super-resolution, 32³ grid",
    "convonet-scene": "ConvONet sliding-window scene model (metric scans, 2 cm voxels)",
}


# Parameter counts of the upstream networks (../shared/spec/upstream.md §1.3 and §4.2,
# checked against the built networks by tests/test_upstream_download.py); the float32 weights take 4 bytes each.
_UPSTREAM_PARAMETERS = {
    "onet-img": 13_414_465,
    "onet-img-legacy": 13_414_465,
    "onet-points": 10_373_889,
    "onet-voxels": 7_857_473,
    "onet-uncond-airplanes": 298_369,
    "onet-uncond-cars": 298_369,
    "onet-uncond-chairs": 298_369,
    "onet-uncond-sofas": 298_369,
    "convonet-shapenet-1plane": 1_978_209,
    "convonet-shapenet-3plane": 1_978_209,
    "convonet-shapenet-grid32": 1_068_545,
    "convonet-shapenet-3plane-partial": 1_978_209,
    "convonet-room-1plane": 7_812_705,
    "convonet-room-3plane": 7_812_705,
    "convonet-room-grid32": 1_068_545,
    "convonet-room-grid64": 4_166_657,
    "convonet-room-combine": 8_838_017,
    "convonet-voxels-1plane": 1_951_873,
    "convonet-voxels-3plane": 1_951_873,
    "convonet-voxels-grid32": 1_042_209,
    "convonet-scene": 4_166_657,
}

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pt$")


def sha256_prefix_of(url: str) -> str | None:
    """The SHA-256 prefix a model-zoo file name carries (``name-f786b04a.pt`` → ``f786b04a``), else ``None``."""
    match = _HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def _hub_entries() -> dict[str, ModelEntry]:
    from occrecon.nets import ARCHITECTURE_PRESETS

    entries = {}
    for name, preset in ARCHITECTURE_PRESETS.items():
        url = preset.get("upstream", {}).get("url")
        entries[name] = ModelEntry(
            name=name,
            task=preset["task"],
            source="hub",
            repo_id=f"{HUB_ORG}/{name}",
            revision=HUB_REVISION,
            description=_UPSTREAM_DESCRIPTIONS.get(name, ""),
            url=url,
            sha256_prefix=sha256_prefix_of(url) if url else None,
            n_parameters=_UPSTREAM_PARAMETERS.get(name),
        )
    return entries


@functools.lru_cache(maxsize=1)
def _all_entries() -> dict[str, ModelEntry]:
    # Read once per process: the presets are constants and the bundled folder ships with the package.
    return {**_hub_entries(), **_bundled_entries()}


def registry() -> dict[str, ModelEntry]:
    """All registered models, bundled first (a bundled name shadows a hub one)."""
    return dict(_all_entries())


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Registered names matching a shell pattern and, optionally, a task."""
    return sorted(
        name for name, entry in registry().items() if fnmatch(name, pattern) and (task is None or entry.task == task)
    )


def get_entry(name: str) -> ModelEntry | None:
    return registry().get(name)


DEFAULT_MODELS = {
    "image": "onet-img-synthetic",
    "points": "convonet-points-synthetic",
    "voxels": "convonet-voxels-synthetic",
    "scene": "convonet-scene-synthetic",
}
"""The model each command uses without ``--model``: the bundled ones, so a fresh install works offline."""

_UPSTREAM_DEFAULTS = {
    "image": "onet-img",
    "points": "convonet-shapenet-3plane",
    "voxels": "convonet-voxels-3plane",
    "scene": "convonet-scene",
}


def default_model(task: str) -> str:
    """The bundled default for ``task``; the upstream Hub model where none is bundled."""
    bundled = {name for name, entry in _all_entries().items() if entry.source == "bundled"}
    name = DEFAULT_MODELS.get(task)
    if name in bundled:
        return name
    return _UPSTREAM_DEFAULTS[task]
