"""Tiny randomly initialised models (real architectures, small widths) for fast tests."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from occrecon.loading import save_model_folder
from occrecon.nets import ARCHITECTURE_PRESETS, build_network

_GENERATION = {"threshold": 0.2, "resolution": 8, "upsampling_steps": 1, "padding": 0.1, "refinement_steps": 0, "simplify_faces": None}

TINY_CONFIGS = {
    "points": {
        "name": "tiny-convonet-points",
        "task": "points",
        "architecture": {
            "method": "convonet",
            "encoder": "pointnet_local_pool",
            "encoder_kwargs": {
                "hidden_dim": 8,
                "plane_type": ["xz", "xy", "yz"],
                "plane_resolution": 16,
                "unet": True,
                "unet_kwargs": {"depth": 2, "merge_mode": "concat", "start_filts": 8},
            },
            "decoder": "simple_local",
            "decoder_kwargs": {"sample_mode": "bilinear", "hidden_size": 8},
            "encoder_latent": None,
            "c_dim": 8,
            "z_dim": 0,
            "padding": 0.1,
        },
        "input": {"kind": "points", "n_points": 256, "noise": 0.0},
        "generation": _GENERATION,
    },
    "voxels": {
        "name": "tiny-onet-voxels",
        "task": "voxels",
        "architecture": copy.deepcopy(ARCHITECTURE_PRESETS["onet-voxels"]["architecture"]),
        "input": {"kind": "voxels", "resolution": 32, "convention": "cell_centre"},
        "generation": _GENERATION,
    },
    "image": {
        "name": "tiny-onet-image",
        "task": "image",
        "architecture": copy.deepcopy(ARCHITECTURE_PRESETS["onet-img"]["architecture"]),
        "input": {"kind": "image", "image_size": 224},
        "generation": _GENERATION,
    },
}


def tiny_network(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_network(TINY_CONFIGS[kind]["architecture"]).eval()
    _bias_towards_a_surface(net)
    return net


def _bias_towards_a_surface(net: torch.nn.Module) -> None:
    """Random weights give a field that is nearly constant; a bias on the output
    logit keeps part of the box above and part below the 0.2 threshold."""
    decoder = net.decoder
    with torch.no_grad():
        decoder.fc_out.bias.fill_(-1.386)
        decoder.fc_out.weight.mul_(20.0)


def save_tiny_model(kind: str, folder: Path, seed: int = 0) -> Path:
    config = copy.deepcopy(TINY_CONFIGS[kind])
    return save_model_folder(tiny_network(kind, seed), config, folder, card=f"# {config['name']}\nTest model.\n")
