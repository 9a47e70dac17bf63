"""Refuse a plane that would not fit in memory, before anything is read or allocated.

Segmentation works on the whole plane at full resolution (smoothing, distance transform,
watershed), so its peak memory grows with the plane's pixel count: about 80 bytes per pixel was
measured on a 4096x4096 fluorescence field (1.3 GB). Planes above ``tiles.AUTO_TILE_PIXELS`` are processed
in tiles, so only a tile's working memory and the results (8 bytes per pixel) count for them.
Running out of memory would kill napari with the user's unsaved layers, so what needs more than
most of the free memory is refused with a message that says what to do.
"""
from __future__ import annotations

import os

from ..errors import PlaneTooLarge

BYTES_PER_PIXEL = 100        # measured peak ~80, plus room
BYTES_PER_CHANNEL_PIXEL = 8  # the plane as float32, and its rescaled copy
# A plane enlarged to the model's cell size (small cells) holds, per enlarged pixel, the plane
# (float32, and float64 while resizing), its labels, the heatmap and the centroid sums.
BYTES_PER_RESCALED_PIXEL = 32
BYTES_PER_RESCALED_CHANNEL_PIXEL = 12
USABLE_SHARE = 0.8


def available_memory_bytes() -> int | None:
    """Free physical memory (Linux and macOS through sysconf); None where it cannot be read."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def plane_memory_bytes(height: int, width: int, channels: int = 1) -> int:
    return int(height) * int(width) * (BYTES_PER_PIXEL + BYTES_PER_CHANNEL_PIXEL * max(1, int(channels)))


def rescaled_memory_bytes(height: int, width: int, channels: int, scale: float) -> int:
    """What enlarging a ``height`` x ``width`` window by ``scale`` adds (nothing when it shrinks)."""
    if scale <= 1.0:
        return 0
    pixels = int(height) * int(width) * float(scale) ** 2
    return int(pixels * (BYTES_PER_RESCALED_PIXEL + BYTES_PER_RESCALED_CHANNEL_PIXEL * max(1, int(channels))))


def check_rescale_fits(height: int, width: int, channels: int, scale: float, available: int | None = None) -> None:
    """Refuse, before it is allocated, a plane enlarged by ``scale`` that would not fit in the free memory
    (cells measured much smaller than the model's)."""
    check_plane_fits(0, 0, channels, available, extra_bytes=rescaled_memory_bytes(height, width, channels, scale),
                     plane_shape=(height, width))


def check_plane_fits(height: int, width: int, channels: int = 1, available: int | None = None,
                     extra_bytes: int = 0, plane_shape: tuple[int, int] | None = None, scale: float = 1.0) -> None:
    """Refuse when processing a ``height`` x ``width`` window (a whole plane, or one tile of a very
    large plane), enlarged by ``scale`` when its cells are smaller than the model's, plus
    ``extra_bytes`` of results would not fit in the free memory."""
    available = available_memory_bytes() if available is None else available
    if available is None:
        return
    need = (plane_memory_bytes(height, width, channels) + rescaled_memory_bytes(height, width, channels, scale)
            + int(extra_bytes))
    if need > USABLE_SHARE * available:
        ph, pw = plane_shape or (height, width)
        raise PlaneTooLarge(
            f"a plane of {ph} x {pw} pixels needs about {need / 2**30:.1f} GB of memory to analyse and "
            f"only {available / 2**30:.1f} GB is free: crop the image into smaller fields (or bin it 2x2 and "
            "halve the cell diameter) and run each one")
