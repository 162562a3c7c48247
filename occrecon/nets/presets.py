"""Registry of the published ONet / ConvONet checkpoints as complete, JSON-serialisable configs.

Each preset has the top-level keys ``name``, ``task``, ``architecture``,
``input``, ``generation``, ``scene`` and ``upstream``. ``architecture`` is what
:func:`occrecon.nets.build_network` consumes; the values come from the
upstream pretrained YAML configs (with upstream's ``get_model`` defaults made
explicit) and reproduce the checkpoints' state-dict shapes exactly.
"""

from __future__ import annotations

import copy
from typing import Any

from occrecon.config import GenerationDefaults, ModelConfig

ONET_REPO = "autonomousvision/occupancy_networks"
CONVONET_REPO = "autonomousvision/convolutional_occupancy_networks"
ONET_URL = "https://s3.eu-central-1.amazonaws.com/avg-projects/occupancy_networks/models/"
CONVONET_URL = "https://s3.eu-central-1.amazonaws.com/avg-projects/convolutional_occupancy_networks/models/"
ONET_CITATION = (
    "@inproceedings{mescheder2019occupancy, title={Occupancy Networks: Learning 3D Reconstruction in Function Space}, "
    "author={Mescheder, Lars and Oechsle, Michael and Niemeyer, Michael and Nowozin, Sebastian and Geiger, Andreas}, "
    "booktitle={CVPR}, year={2019}}"
)
CONVONET_CITATION = (
    "@inproceedings{peng2020convolutional, title={Convolutional Occupancy Networks}, "
    "author={Peng, Songyou and Niemeyer, Michael and Mescheder, Lars and Pollefeys, Marc and Geiger, Andreas}, "
    "booktitle={ECCV}, year={2020}}"
)

def _mise(**changes: Any) -> dict[str, Any]:
    """A generation block: upstream's MISE defaults (written once, in :class:`~occrecon.config.GenerationDefaults`), with changes."""
    return GenerationDefaults(**changes).to_dict()

_UNET_SHAPENET = {"depth": 4, "merge_mode": "concat", "start_filts": 32}
_UNET_ROOM = {"depth": 5, "merge_mode": "concat", "start_filts": 32}


def _unet3d(levels: int) -> dict[str, int]:
    return {"num_levels": levels, "f_maps": 32, "in_channels": 32, "out_channels": 32}


def _onet(name: str, task: str, files: tuple[str, str], encoder: str | None, decoder: str, c_dim: int,
          z_dim: int, input_block: dict[str, Any], generation: dict[str, Any] | None = None, **layers: Any) -> dict[str, Any]:
    """An ONet preset; ``files`` is (checkpoint file, upstream config), ``layers`` the optional
    ``encoder_kwargs``, ``decoder_kwargs`` and ``encoder_latent``."""
    file, config = files
    encoder_kwargs, decoder_kwargs = layers.get("encoder_kwargs"), layers.get("decoder_kwargs")
    encoder_latent = layers.get("encoder_latent")
    return {
        "name": name,
        "task": task,
        "architecture": {
            "method": "onet",
            "encoder": encoder,
            "encoder_kwargs": encoder_kwargs or {},
            "decoder": decoder,
            "decoder_kwargs": decoder_kwargs or {},
            "encoder_latent": encoder_latent,
            "c_dim": c_dim,
            "z_dim": z_dim,
            "padding": 0.1,
        },
        "input": input_block,
        "generation": generation or _mise(),
        "scene": None,
        "upstream": {"file": file, "url": ONET_URL + file, "config": config, "repo": ONET_REPO,
                     "license": "MIT", "citation": ONET_CITATION},
    }


def _convonet(name: str, task: str, files: tuple[str, str], encoder: str, encoder_kwargs: dict[str, Any],
              input_block: dict[str, Any], decoder: str = "simple_local",
              decoder_kwargs: dict[str, Any] | None = None, generation: dict[str, Any] | None = None,
              scene: dict[str, Any] | None = None) -> dict[str, Any]:
    path, config = files  # (checkpoint path under the models URL, upstream config)
    return {
        "name": name,
        "task": task,
        "architecture": {
            "method": "convonet",
            "encoder": encoder,
            "encoder_kwargs": encoder_kwargs,
            "decoder": decoder,
            "decoder_kwargs": decoder_kwargs or {"sample_mode": "bilinear", "hidden_size": 32},
            "encoder_latent": None,
            "c_dim": 32,
            "z_dim": 0,
            "padding": 0.1,
        },
        "input": input_block,
        "generation": generation or _mise(),
        "scene": scene,
        "upstream": {"file": path.rsplit("/", 1)[-1], "url": CONVONET_URL + path, "config": config,
                     "repo": CONVONET_REPO, "license": "MIT", "citation": CONVONET_CITATION},
    }


def _pointnet_planes(planes: list[str], resolution: int, unet: dict[str, Any]) -> dict[str, Any]:
    return {"hidden_dim": 32, "plane_type": planes, "plane_resolution": resolution, "unet": True,
            "unet_kwargs": dict(unet)}


def _pointnet_grid(resolution: int, levels: int) -> dict[str, Any]:
    return {"hidden_dim": 32, "plane_type": ["grid"], "grid_resolution": resolution, "unet3d": True,
            "unet3d_kwargs": _unet3d(levels)}


def _voxel_planes(planes: list[str]) -> dict[str, Any]:
    return {"plane_type": planes, "plane_resolution": 64, "unet": True, "unet_kwargs": dict(_UNET_SHAPENET)}


def _build_presets() -> dict[str, dict[str, Any]]:
    presets: list[dict[str, Any]] = []
    image = {"kind": "image", "image_size": 224}
    presets.append(_onet("onet-img", "image", ("onet_img2mesh_3-f786b04a.pt", "configs/img/onet_pretrained.yaml"),
                         "resnet18", "cbatchnorm", 256, 0, image))
    presets.append(_onet("onet-img-legacy", "image", ("onet_img2mesh-0c7780d1.pt", "configs/img/onet_legacy_pretrained.yaml"), "resnet18", "cbatchnorm", 256, 0, image,
                         decoder_kwargs={"legacy": True}))
    presets.append(_onet("onet-points", "points", ("onet_pcl2mesh-5c0be168.pt", "configs/pointcloud/onet_pretrained.yaml"),
                         "pointnet_resnet", "cbatchnorm", 512, 0, {"kind": "points", "n_points": 300, "noise": 0.005},
                         encoder_kwargs={"hidden_dim": 512}))
    presets.append(_onet("onet-voxels", "voxels", ("onet_voxel2mesh-52ee34d4.pt", "configs/voxels/onet_pretrained.yaml"),
                         "voxel_simple", "cbatchnorm", 256, 0,
                         {"kind": "voxels", "resolution": 32, "convention": "cell_centre"}))
    for category, file in (("airplanes", "onet_uncond_airplanes-26c9d089.pt"), ("cars", "onet_uncond_cars-59320701.pt"),
                           ("chairs", "onet_uncond_chairs-800ea1f3.pt"), ("sofas", "onet_uncond_sofas-bf6c039d.pt")):
        # Upstream samples z at generation (use_sampling: true); occrecon decodes
        # the prior mean unless a z is passed, so that results are reproducible.
        generation = _mise(use_sampling=True)
        presets.append(_onet(f"onet-uncond-{category}", "unconditional", (file, f"configs/unconditional/onet_{category}_pretrained.yaml"), None, "simple", 0, 128,
                             {"kind": "none"}, generation=generation, encoder_latent="simple"))

    shapenet_points = {"kind": "points", "n_points": 3000, "noise": 0.005}
    room_points = {"kind": "points", "n_points": 10000, "noise": 0.005}
    for suffix, kwargs in (("1plane", _pointnet_planes(["xz"], 64, _UNET_SHAPENET)),
                           ("3plane", _pointnet_planes(["xz", "xy", "yz"], 64, _UNET_SHAPENET)),
                           ("grid32", _pointnet_grid(32, 3)),
                           ("3plane-partial", _pointnet_planes(["xz", "xy", "yz"], 64, _UNET_SHAPENET))):
        stem = "shapenet_" + suffix.replace("-", "_")
        presets.append(_convonet(f"convonet-shapenet-{suffix}", "points", (f"pointcloud/{stem}.pt", f"configs/pointcloud/pretrained/{stem}.yaml"), "pointnet_local_pool", kwargs,
                                 dict(shapenet_points)))
    combine = _pointnet_planes(["xz", "xy", "yz", "grid"], 128, _UNET_ROOM)
    combine.update(grid_resolution=32, unet3d=True, unet3d_kwargs=_unet3d(3))
    for suffix, kwargs in (("1plane", _pointnet_planes(["xz"], 128, _UNET_ROOM)),
                           ("3plane", _pointnet_planes(["xz", "xy", "yz"], 128, _UNET_ROOM)),
                           ("grid32", _pointnet_grid(32, 3)), ("grid64", _pointnet_grid(64, 4)),
                           ("combine", combine)):
        presets.append(_convonet(f"convonet-room-{suffix}", "points", (f"pointcloud/room_{suffix}.pt", f"configs/pointcloud/pretrained/room_{suffix}.yaml"), "pointnet_local_pool", kwargs,
                                 dict(room_points)))
    voxels = {"kind": "voxels", "resolution": 32, "convention": "linspace"}
    for suffix, kwargs in (("1plane", _voxel_planes(["xz"])), ("3plane", _voxel_planes(["xz", "xy", "yz"])),
                           ("grid32", {"plane_type": ["grid"], "grid_resolution": 32, "unet3d": True,
                                       "unet3d_kwargs": _unet3d(3)})):
        presets.append(_convonet(f"convonet-voxels-{suffix}", "voxels", (f"voxel/voxel_shapenet_{suffix}.pt", f"configs/voxel/pretrained/shapenet_{suffix}.yaml"), "voxel_simple_local", kwargs,
                                 dict(voxels)))

    # Sliding-window model: the architecture carries the Matterport demo's
    # metric settings (unit_size 0.02 m feeds the local coordinates); the
    # synthetic-room training values are recorded under scene["training"].
    demo_unit, demo_query, levels = 0.02, 90, 4
    receptive_field = 2 ** (levels + 2)
    demo_reso = _round_up(demo_query + receptive_field - 1, 2 ** (levels - 1))
    train_unit, train_query = 0.005, 25
    train_reso = _round_up(train_query + receptive_field - 1, 2 ** (levels - 1))
    crop_encoder = {"hidden_dim": 32, "plane_type": ["grid"], "grid_resolution": demo_reso, "unet3d": True,
                    "unet3d_kwargs": _unet3d(levels), "unit_size": demo_unit, "local_coord": True}
    crop_decoder = {"sample_mode": "bilinear", "hidden_size": 32, "unit_size": demo_unit, "local_coord": True}
    scene = {
        "unit_size": demo_unit,
        "voxel_size_m": demo_unit,
        "query_vol_size": demo_query,
        "query_crop_size": round(demo_query * demo_unit, 10),
        "input_resolution": demo_reso,
        "input_crop_size": round(demo_reso * demo_unit, 10),
        "receptive_field": receptive_field,
        "unet_depth": levels,
        "feature_types": ["grid"],
        "bounds_margin": 0.01,
        "resolution_per_crop": 128,
        "upsampling_steps": 0,
        "n_points": 200000,
        "noise": 0.0,
        "units": "meters",
        "demo_config": "configs/pointcloud_crop/demo_matterport.yaml",
        "training": {
            "config": "configs/pointcloud_crop/room_grid64.yaml",
            "unit_size": train_unit,
            "query_vol_size": train_query,
            "input_resolution": train_reso,
            "resolution_per_crop": 32,
            "upsampling_steps": 0,
            "n_points": 10000,
            "noise": 0.005,
            "units": "normalized",
        },
    }
    presets.append(_convonet("convonet-scene", "scene", ("pointcloud_crop/room_grid64.pt", "configs/pointcloud_crop/pretrained/room_grid64.yaml"), "pointnet_crop_local_pool",
                             crop_encoder, {"kind": "points", "n_points": 200000, "noise": 0.0},
                             decoder="simple_local_crop", decoder_kwargs=crop_decoder,
                             generation=_mise(resolution=128, upsampling_steps=0),
                             scene=scene))
    return {p["name"]: p for p in presets}


def _round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value`` (upstream ``update_reso``)."""
    return -(-value // multiple) * multiple


_PRESETS = _build_presets()
ARCHITECTURE_PRESETS: dict[str, dict[str, Any]] = _PRESETS
"""Preset name -> complete model config (treat as read-only; use :func:`get_preset` for a copy)."""


def get_preset(name: str) -> dict[str, Any]:
    """A deep copy of one preset.

    Args:
        name: registry name, e.g. ``"convonet-shapenet-3plane"``.

    Returns:
        The preset dict.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in ARCHITECTURE_PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(ARCHITECTURE_PRESETS))}")
    return copy.deepcopy(ARCHITECTURE_PRESETS[name])


def preset_config(name: str) -> ModelConfig:
    """One preset as a validated :class:`~occrecon.config.ModelConfig`."""
    return ModelConfig.from_dict(get_preset(name), f"preset {name}")
