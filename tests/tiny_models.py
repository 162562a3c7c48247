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


def _example_input(kind: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if kind == "points":
        p = torch.randn(1, 256, 3, generator=generator)
        return 0.4 * p / p.norm(dim=-1, keepdim=True)
    if kind == "voxels":
        grid = torch.zeros(1, 32, 32, 32)
        grid[:, 8:24, 8:24, 8:24] = 1
        return grid
    return torch.rand(1, 3, 224, 224, generator=generator)


@torch.no_grad()
def _calibrate(net: torch.nn.Module, kind: str) -> None:
    """Random weights give a field far from the 0.2 threshold almost everywhere;
    shifting the output bias so the median logit sits at the threshold makes the
    surface cross the box, which keeps these models useful for pipeline tests."""
    queries = (torch.rand(1, 2000, 3, generator=torch.Generator().manual_seed(1)) - 0.5) * 1.1
    logits = net.decode(queries, net.encode(_example_input(kind)))
    net.decoder.fc_out.bias -= logits.median() + 1.386


def tiny_network(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_network(TINY_CONFIGS[kind]["architecture"]).eval()
    _calibrate(net, kind)
    return net


def save_tiny_model(kind: str, folder: Path, seed: int = 0) -> Path:
    config = copy.deepcopy(TINY_CONFIGS[kind])
    return save_model_folder(tiny_network(kind, seed), config, folder, card=f"# {config['name']}\nTest model.\n")
