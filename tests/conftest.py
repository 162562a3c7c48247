from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import save_tiny_model  # noqa: E402  (needs the path above)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _isolated_hub(tmp_path_factory, monkeypatch):
    """No test may reach the real Hub or a user's cache."""
    cache = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refuses at once
    monkeypatch.setenv("OCCRECON_UPSTREAM_ENDPOINT", "http://127.0.0.1:9")  # the original checkpoints' host, likewise
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT", raising=False)
    monkeypatch.setenv("OCCRECON_CACHE", str(tmp_path_factory.mktemp("occrecon_cache")))


@pytest.fixture
def eval_dir() -> Path:
    """The shared evaluation data beside the checkout; tests using it skip cleanly when it is absent."""
    path = SHARED / "eval"
    if not path.is_dir():
        pytest.skip("../shared/eval is not present")
    return path


# Tiny randomly initialised models of the real architectures, one folder per test module.
@pytest.fixture(scope="module")
def points_model(tmp_path_factory) -> Path:
    return save_tiny_model("points", tmp_path_factory.mktemp("models") / "points")


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    return save_tiny_model("image", tmp_path_factory.mktemp("models") / "image")


@pytest.fixture(scope="module")
def voxels_model(tmp_path_factory) -> Path:
    return save_tiny_model("voxels", tmp_path_factory.mktemp("models") / "voxels")
