"""Choosing where torch runs, with a name a person can read.

torch is imported by the functions, not by the module: the command line lists DEVICE_CHOICES
in its help without loading torch.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(choice: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU. Asking for one that is absent is an error."""
    import torch

    choice = (choice or "auto").lower()
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {choice!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but this PyTorch has no usable NVIDIA GPU; use --device cpu")
    if choice == "mps" and not _mps_available():
        raise ValueError("MPS was asked for but this machine has no Apple GPU available; use --device cpu")
    return torch.device(choice)


def describe_device(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


def release_memory(device: torch.device) -> None:
    """Give cached accelerator memory back after a job."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


@contextmanager
def exact_float32() -> Iterator[None]:
    """Full float32 convolutions and matrix products on NVIDIA GPUs while scoring.

    torch lets cuDNN run float32 convolutions in TF32 (10-bit mantissa) by default. On an H200 that
    moved the built-in models' cell scores by up to 5e-3 (relative) and their maps by up to 0.1 from
    the CPU's, so one cell could be a candidate on one machine and not on the other; in full float32
    they agree to 1e-5 (docs/benchmarks/gpu.md). The flags are process-wide: they are restored on exit.
    """
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
