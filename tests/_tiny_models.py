"""Tiny models trained on synthetic healthy cells in seconds, once per test session."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def tiny_model(modality: str = "fluorescence"):
    import torch

    from napari_supn_anomaly.synthetic import train_synthetic_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network on 2 shared cores: more threads only contend
    try:
        return train_synthetic_model(modality, n_cells=40, crop_size=32, iterations=(40, 25),
                                     widths=(8, 8, 16, 16), latent_dim=8, batch_size=16, seed=0,
                                     name=f"tiny-{modality}")
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def tiny_model_file(modality: str = "fluorescence") -> str:
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="supn-tiny-"))
    return str(tiny_model(modality).save(folder / f"tiny-{modality}.safetensors"))
