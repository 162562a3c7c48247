"""Tuning the C library's memory allocator for CPU inference.

Kept apart from :mod:`occrecon.device` so that the CLI can call it before anything
imports torch (``occrecon --help`` stays fast).
"""

from __future__ import annotations

import ctypes
import platform

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
