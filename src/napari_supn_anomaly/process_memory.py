"""Keeping freed memory in the process for the next batch (Linux with glibc only).

Scoring allocates and frees the same large buffers batch after batch. By default glibc gives
freed memory back to the system and maps it in again for the next batch, one page fault per
page: on 512 fluorescence crops about 90,000 faults and a fifth of the CPU time
(docs/benchmarks/scorer_speed.md). Raising the trim and mmap thresholds keeps those buffers for
reuse. The setting is process-wide, so only processes this package starts apply it: the command
line and its Dask workers, never the napari process the plugin lives in.
"""
from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30   # keep up to 1 GiB of freed memory at the top of the heap
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the reusable heap

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Apply the thresholds once per process; whether they are in force (False off glibc)."""
    global _applied
    if _applied is None:
        _applied = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
                _applied = bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                                and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
            except (OSError, AttributeError):
                _applied = False
    return _applied
