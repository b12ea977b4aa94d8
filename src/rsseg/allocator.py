"""Keep freed memory in the process while predicting or training (glibc only; else a no-op).

Why: glibc's malloc serves blocks above its mmap threshold (dynamic, at most 32 MB) with
fresh pages from the kernel and unmaps them when they are freed. A ``fast`` window's
activations are such blocks (1008 x 944 px x 16 channels x 4 bytes = 61 MB for the demo
U-Net), so each forward pass page-faults and zeroes every one of them again. Measured on the
2-core bench machine, 7200 x 6800 scene, torch, 2 threads: ``fast`` 43.1 s by default,
32.4 s with freed memory kept (36.6 s with transparent huge pages instead); the seed's
256 px windows stay under the threshold and were not affected. onnxruntime keeps its own
arena, so the ONNX engine did not have the problem. Training (batch 8 of 224 px) gained
7-12 % images/s for unet, smp-unet and segformer (``benchmarks/models.py``).

``warm_allocator()`` raises the mmap and trim thresholds for its duration, then sets the
mmap threshold to glibc's dynamic maximum (32 MB: glibc stops adjusting it once set) and
returns the freed memory to the kernel with ``malloc_trim``. Peak memory is the same: the
kept blocks are reused by the next window, not added to.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import platform
import threading
from collections.abc import Iterator
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP = 1 << 30  # blocks up to 1 GiB from the heap, and no trimming below 1 GiB free
AFTER_MMAP = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
AFTER_TRIM = 2 * AFTER_MMAP  # what glibc's dynamic adjustment sets beside it

_lock = threading.Lock()
_depth = 0


@functools.cache
def _libc() -> Any:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both must exist
    except (OSError, AttributeError):
        return None
    return libc


def available() -> bool:
    return _libc() is not None


@contextlib.contextmanager
def warm_allocator() -> Iterator[None]:
    """Freed blocks stay in the process inside the block (re-entrant, thread-safe)."""
    global _depth
    libc = _libc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(M_MMAP_THRESHOLD, KEEP)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_THRESHOLD, AFTER_MMAP)
                libc.mallopt(M_TRIM_THRESHOLD, AFTER_TRIM)
                libc.malloc_trim(0)
