"""Choosing where the network runs."""

from __future__ import annotations

import re

import torch

from occrecon.errors import OptionError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(spec: str | torch.device | None = "auto") -> tuple[torch.device, str | None]:
    """Turn ``auto|cpu|cuda[:i]|mps`` into a device, plus a note when ``auto`` fell back to the CPU.

    Raises:
        OptionError: not one of those names, or a GPU was asked for explicitly and is not there.
    """
    if isinstance(spec, torch.device):
        return spec, None
    text = (spec or "auto").lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", text):
        raise OptionError(f"--device must be one of {', '.join(DEVICE_CHOICES)} or cuda:N, got {spec!r}")
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), None
        if _mps_available():
            return torch.device("mps"), None
        return torch.device("cpu"), "no GPU found; running on the CPU"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError(f"--device {spec}: CUDA is not available on this machine (use --device auto or cpu)")
        index = int(text.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise OptionError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if text == "mps" and not _mps_available():
        raise OptionError("--device mps: the MPS backend is not available on this machine (use --device auto or cpu)")
    return torch.device(text), None
