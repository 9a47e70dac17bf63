"""A trained SUPN-VAE with what is needed to use it: intensities, cell size, calibration."""
from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..cells import CropGeometry
from ..errors import Cancelled, InputError
from ..supn import SCORE_RULES, IntensityStats, SupnVAE, cell_scores, whitened_residual
from ..supn.batch_threads import batch_threads, in_order
from ..supn.devices import exact_float32, resolve_device
from ..supn.scoring import anomaly_maps
from .data_range import DataRange, model_data_range
from .model_check import check_model
from .model_file import load_model_file, save_model_file


@dataclass
class CropScores:
    """maps: [N, S, S] per-pixel anomaly map; scores: [N] per-cell score (max of the map in the cell)."""

    maps: np.ndarray
    scores: np.ndarray


class AnomalyModel:
    """The network plus its JSON metadata (see DESIGN.md, 'Models on disk')."""

    def __init__(self, net: SupnVAE, metadata: dict):
        self.net = net.eval()
        self.metadata = metadata
        self.intensity = IntensityStats.from_dict(metadata["intensity"])
        self.device = torch.device("cpu")

    # -- what the model is -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.metadata.get("name", "unnamed model")

    @property
    def crop_size(self) -> int:
        return self.net.cfg.crop_size

    @property
    def channels(self) -> int:
        return self.net.cfg.channels

    @property
    def channel_names(self) -> list[str]:
        return list(self.metadata.get("channel_names", [f"channel {i}" for i in range(self.channels)]))

    @property
    def cell_diameter_px(self) -> float:
        """Typical cell diameter inside the model's crops, in crop pixels."""
        return float(self.metadata["cell_diameter_px"])

    @property
    def rotations(self) -> int:
        """Turns of each crop whose maps are averaged (``supn.scoring.anomaly_maps``); 1 in files before it."""
        return int(self.metadata.get("rotations", 1))

    @property
    def geometry(self) -> CropGeometry:
        """How this model's crops are cut: what ``cells.standardise_crops`` needs."""
        return CropGeometry(self.crop_size, self.cell_diameter_px, self.modality)

    @property
    def modality(self) -> str:
        return self.metadata.get("modality", "fluorescence")

    @property
    def data_range(self) -> DataRange:
        """Raw intensities of the cells the model was trained on: what a field must fit to be used unmapped."""
        return model_data_range(self.metadata, self.intensity)

    @property
    def scorers(self) -> list[str]:
        return list(self.metadata.get("score_rules", {"supn": "paper"}))

    def score_rule(self, scorer: str) -> str:
        return self.metadata.get("score_rules", {}).get(scorer, "paper")

    # -- calibration -----------------------------------------------------------------
    def healthy_scores(self, scorer: str = "supn") -> np.ndarray:
        cal = self.metadata.get("calibration", {}).get(scorer)
        if not cal:
            raise InputError(f"model {self.name!r} has no healthy-score calibration for scorer {scorer!r}")
        return np.asarray(cal["healthy_scores"], dtype=np.float64)

    def threshold_for_fpr(self, fpr: float, scorer: str = "supn") -> float:
        """Score above which a fraction ``fpr`` of held-out healthy cells would be flagged."""
        healthy = self.healthy_scores(scorer)
        return float(np.quantile(healthy, 1.0 - float(np.clip(fpr, 0.0, 1.0))))

    def healthy_fpr(self, score: float, scorer: str = "supn") -> float:
        """Fraction of held-out healthy cells scoring at least ``score``."""
        healthy = np.sort(self.healthy_scores(scorer))
        return float(len(healthy) - bisect.bisect_left(healthy.tolist(), score)) / len(healthy)

    # -- running -------------------------------------------------------------------------
    def to(self, device: str | torch.device = "auto") -> "AnomalyModel":
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.net.to(self.device)
        return self

    def normalise(self, crops: np.ndarray) -> np.ndarray:
        return self.intensity.apply(crops)

    def check_crops(self, crops: np.ndarray) -> None:
        if crops.ndim != 4 or crops.shape[1:] != (self.channels, self.crop_size, self.crop_size):
            raise InputError(f"crops must be [N, {self.channels}, {self.crop_size}, {self.crop_size}], got {crops.shape}")

    def iter_score_batches(self, crops: np.ndarray, masks: np.ndarray, scorer: str = "supn",
                           batch_size: int = 64, n_samples: int = 0, seed: int = 0) -> Iterator[tuple[int, CropScores]]:
        """Yield (start index, scores of the batch) so callers can report progress and stop between batches."""
        self.check_crops(crops)
        if scorer not in self.scorers:
            raise InputError(f"model {self.name!r} has no scorer {scorer!r}; it has {', '.join(self.scorers)}")
        rule = SCORE_RULES[self.score_rule(scorer)]
        generator = torch.Generator(device=self.device).manual_seed(seed) if n_samples else None

        def score_batch(start: int) -> CropScores:
            x = torch.from_numpy(self.normalise(crops[start:start + batch_size])).to(self.device)
            m = torch.from_numpy(np.asarray(masks[start:start + batch_size], bool)).to(self.device)
            with exact_float32():
                maps = anomaly_maps(self.net, x, scorer, rule, n_samples, generator, self.rotations)
                return CropScores(maps.cpu().numpy(), cell_scores(maps, m).cpu().numpy())

        # samples are drawn from one generator in batch order: those runs stay one batch at a time
        threads = 1 if n_samples else batch_threads(self.device)
        yield from in_order(score_batch, range(0, len(crops), batch_size), threads)

    def score_crops(self, crops: np.ndarray, masks: np.ndarray, scorer: str = "supn", batch_size: int = 64,
                    n_samples: int = 0, seed: int = 0, should_stop: Callable[[], bool] | None = None) -> CropScores:
        parts = []
        for _, part in self.iter_score_batches(crops, masks, scorer, batch_size, n_samples, seed):
            parts.append(part)
            if should_stop is not None and should_stop():
                raise Cancelled("scoring was cancelled")
        if not parts:
            s = self.crop_size
            return CropScores(np.zeros((0, s, s), np.float32), np.zeros(0, np.float32))
        return CropScores(np.concatenate([p.maps for p in parts]), np.concatenate([p.scores for p in parts]))

    @torch.no_grad()
    def reconstruct(self, crops: np.ndarray, scorer: str = "supn", seed: int = 0):
        """Normalised input, decoded mean, whitened residual and one sample from the learned Gaussian."""
        x = torch.from_numpy(self.normalise(crops)).to(self.device)
        with exact_float32():
            z, mean = whitened_residual(self.net, x, scorer)
            mu_z, _ = self.net.encode(x)
            factor = self.net.factor(scorer, mu_z, mean)
        g = torch.Generator(device="cpu").manual_seed(seed)
        eps = torch.randn(x.shape, generator=g, dtype=torch.float64).to(self.device)
        cpu64 = type(factor)(factor.log_diag.double().cpu(), factor.off_diag.double().cpu(),
                             None if factor.cross is None else factor.cross.double().cpu(), factor.radius)
        sample = mean.double().cpu() + cpu64.solve(eps.cpu())
        return x.cpu().numpy(), mean.cpu().numpy(), z[0].cpu().numpy(), sample.float().numpy()

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        meta = copy.deepcopy(self.metadata)
        meta["architecture"] = self.net.cfg.to_dict()
        meta["intensity"] = self.intensity.to_dict()
        return save_model_file(path, self.net.state_dict(), meta)

    @classmethod
    def from_file(cls, path: str | Path) -> "AnomalyModel":
        tensors, meta = load_model_file(path)
        cfg = check_model(tensors, meta, Path(path).name)
        net = SupnVAE(cfg)
        net.load_state_dict(tensors, strict=True)
        return cls(net, meta)

    def copy(self) -> "AnomalyModel":
        net = SupnVAE(self.net.cfg)
        net.load_state_dict(self.net.state_dict())
        return AnomalyModel(net, copy.deepcopy(self.metadata))
