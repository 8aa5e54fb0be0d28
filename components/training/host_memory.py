"""Freed tensors back to the operating system at once, instead of parked in glibc's heap.

glibc serves a request from its own mapping (returned to the OS on free) only above a threshold
that it raises, up to 32 MB, each time such a mapping is freed. After the first training step
of a full-size model, the step's 1-32 MB tensors therefore come from the heap, whose freed
holes stay resident: the platform's process peaked 0.3 GB above the same steps with a fixed
threshold (3.88-3.97 against 3.61 GB for conv_vae on the demo corpus). Each new mapping is
faulted in again, which may cost time: no slowdown beyond noise in
benchmarks/io_and_allocator.py, 8% more wall time in the full-scale run. train.lean_host_memory
fixes the threshold at 1 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h


def map_large_allocations(threshold_bytes: int = 1 << 20) -> bool:
    """Serve every allocation of threshold_bytes or more from its own mapping, for the rest of
    this process (glibc's mallopt; fixing the threshold also stops its growth). False where the
    C library has no mallopt (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
