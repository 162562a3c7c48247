"""Choosing where the network runs."""

from __future__ import annotations

import ctypes
import platform

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(spec: str | torch.device | None = "auto") -> tuple[torch.device, str | None]:
    """Turn ``auto|cpu|cuda[:i]|mps`` into a device, plus a note when ``auto`` fell back to the CPU.

    Raises:
        ValueError: a GPU was asked for explicitly and is not there.
    """
    if isinstance(spec, torch.device):
        return spec, None
    text = (spec or "auto").lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), None
        if _mps_available():
            return torch.device("mps"), None
        return torch.device("cpu"), "no GPU found; running on the CPU"
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: CUDA is not available on this machine (use --device auto or cpu)")
    if text == "mps" and not _mps_available():
        raise ValueError("--device mps: the MPS backend is not available on this machine (use --device auto or cpu)")
    try:
        return torch.device(text), None
    except RuntimeError:
        raise ValueError(f"--device must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N), got {spec!r}") from None


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap, not from a fresh mmap: the decoders' activations
#: (rows x width floats) and the scene U-Net's feature volumes are a few MiB to tens of MiB. 32 MiB
#: is the most glibc accepts through mallopt.
MMAP_THRESHOLD_BYTES = 32 << 20
#: Freed memory at the top of the heap is handed back to the system only beyond this much.
TRIM_THRESHOLD_BYTES = 1 << 30
_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Make glibc's malloc keep the memory that tensors free, for reuse (the CLI calls this).

    By default glibc serves every block over its (adaptive) mmap threshold with a
    fresh mmap and hands heap memory back as soon as a few MiB lie free, so each
    network pass on the CPU maps its large activations anew and the kernel zeroes
    every page on first touch: on 2 cores, decoding 100,000 queries in one pass
    spent more time in the kernel than in the network. With the thresholds above
    the same memory is reused, and up to 1 GiB of it stays with the process when freed.
    ``benchmarks/allocator.py`` measures the effect.

    Process-wide and irreversible (a fixed threshold also ends glibc's adaptive
    one), so the library leaves it to the program: call it once at start-up.

    Returns:
        True where glibc took both settings, False elsewhere (macOS, Windows, musl).
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    _allocator_tuned = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return _allocator_tuned
