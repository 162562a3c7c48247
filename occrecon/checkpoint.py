"""Reading upstream ``.pt`` checkpoints without executing their pickles."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occrecon.errors import CheckpointMismatchError, InputError, UnsafeCheckpointError


def _numpy_globals() -> list:
    """The few numpy globals upstream checkpoints contain (``loss_val_best`` is a numpy scalar).

    Files written with numpy 1.x name ``numpy.core.multiarray.scalar``; numpy 2
    moved it to ``numpy._core``, so the old name is mapped explicitly.
    """
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed: list = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in ("Float32DType", "Float64DType", "Int64DType", "Int32DType", "BoolDType"):
            if hasattr(dtypes, name):
                allowed.append(getattr(dtypes, name))
    return allowed


def load_upstream_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` plus numpy scalars, on the CPU.

    Raises:
        InputError: missing or not a torch checkpoint.
        UnsafeCheckpointError: the pickle references anything beyond tensors,
            plain containers and numpy scalars (it could run code; it is not loaded).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the file needs code beyond tensors and numpy scalars to unpickle ({detail.strip()})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise InputError(path, f"not a readable PyTorch checkpoint ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def extract_state_dict(checkpoint: Any, source: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """The network weights inside an upstream checkpoint: its ``model`` entry, ``module.`` stripped."""
    if isinstance(checkpoint, dict) and "model" in checkpoint and isinstance(checkpoint["model"], dict):
        state = checkpoint["model"]
    elif isinstance(checkpoint, dict) and "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], dict):
        state = checkpoint["state_dict"]
    elif isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        keys = list(checkpoint)[:6] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointMismatchError(f"{source}: no 'model' state dict in the checkpoint (found {keys})")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def compare_state_dicts(
    found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> list[str]:
    """Human-readable differences between two state dicts' keys and shapes (empty when they fit)."""
    problems = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    if missing:
        problems.append(f"{len(missing)} keys missing: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}")
    for key in shapes[:5]:
        problems.append(f"{key}: shape {tuple(found[key].shape)}, expected {tuple(expected[key].shape)}")
    if len(shapes) > 5:
        problems.append(f"… and {len(shapes) - 5} more shape mismatches")
    return problems
