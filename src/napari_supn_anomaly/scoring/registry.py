"""Every anomaly scorer, by name, in one registry: the SUPN-VAE's own likelihoods and the seed
papers' alternatives, with their cost class and what each needs before it can run.

* ``likelihood`` scorers (supn, diag, l2) are heads of the model's own network, scored with the
  model's per-cell rule (``DEFAULT_SCORE_RULES`` chooses it per modality at training time);
* ``needs_calibration`` scorers combine several maps and need a healthy calibration first;
* ``network`` scorers (ssl-*) need a segmentation network of their own, trained on healthy cells.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cells.modality import MODALITIES
from ..errors import ScorerUnavailable

if TYPE_CHECKING:
    from ..supn.self_supervised import SegmentationConfig

INSTANT, SLOW, NEEDS_TRAINING = "instant", "slow", "needs training"
COST_WORDS = {INSTANT: "instant: one pass of the network per batch of cells",
              SLOW: "slow: an optimisation per cell (tens of times slower than instant scorers)",
              NEEDS_TRAINING: "needs training: a segmentation network of its own, trained on healthy cells"}

# "spot" (matched filter for a small bright spot under the learned Gaussian) beat the window
# rules on the fluorescence cells for SUPN (docs/benchmarks/fluorescence.md); the other
# modalities keep the rules their benchmarks chose.
DEFAULT_SCORE_RULES = dict(zip(MODALITIES, ("spot", "bright", "dark-channel")))
ENSEMBLE_MEMBERS = ("supn", "diag", "recon", "grad-elbo")
SUPN_SATURATION = "supn+saturation"
SUPN_SPOTS = "supn+spots"
# The default scorer of a model fine-tuned onto another modality than its base's (the base's own
# default otherwise). Unstained bright-field: fine-tunes of fluorescence-rbc on Remoscope ranked
# cells of other fields at AUROC 0.909 +- 0.064 with supn, 0.947 +- 0.011 with supn+spots (9 runs,
# docs/benchmarks/finetune.md; the only unstained source, so chosen on the fields it is measured on).
FINETUNED_DEFAULT_SCORERS = {"brightfield": SUPN_SPOTS}
LIKELIHOOD_FAMILY = "SUPN-VAE"


@dataclass(frozen=True)
class ScorerInfo:
    name: str
    cost: str
    family: str
    description: str
    needs_calibration: bool = False
    # how a "needs training" scorer's network is trained: SegmentationConfig options, as (name, value)
    # pairs so that the registry loads without torch (the command line's --help lists its names)
    network_options: tuple[tuple[str, object], ...] | None = None
    rgb_only: bool = False  # reads the stain's colour: models of stained (RGB) cells only
    modalities: tuple[str, ...] | None = None  # the modalities whose parasites it is made for (None: any)
    # the scale the slide's self-calibration fits its scores on (pipeline.self_calibration.score_scale);
    # None: read from the scores. A score that is already a sum of log scores is fitted as it is
    score_scale: str | None = None

    def made_for(self, channels: int, modality: str) -> bool:
        """Whether it is made for a model of these cells: a stain's colour needs RGB cells, bright spots
        fluorescence or unstained bright-field (``modalities``)."""
        return ((channels == 3 or not self.rgb_only)
                and (self.modalities is None or modality in self.modalities))

    @property
    def likelihood(self) -> bool:
        """One of the heads of the model's own network (supn.LIKELIHOODS)."""
        return self.family == LIKELIHOOD_FAMILY

    @property
    def needs_network(self) -> bool:
        return self.network_options is not None

    @property
    def network(self) -> SegmentationConfig | None:
        if self.network_options is None:
            return None
        from ..supn.self_supervised import SegmentationConfig

        return SegmentationConfig(**dict(self.network_options))


def _ssl(name: str, description: str, **config) -> ScorerInfo:
    return ScorerInfo(name, NEEDS_TRAINING, "self-supervised", description, network_options=tuple(config.items()))


REGISTRY: dict[str, ScorerInfo] = {s.name: s for s in [
    ScorerInfo("supn", INSTANT, LIKELIHOOD_FAMILY, "whitened residual of the sparse-precision Gaussian (MIDL 2022)"),
    ScorerInfo("diag", INSTANT, LIKELIHOOD_FAMILY, "whitened residual of the learned diagonal Gaussian (paper baseline)"),
    ScorerInfo("l2", INSTANT, LIKELIHOOD_FAMILY, "residual over one fixed standard deviation (paper baseline)"),
    ScorerInfo("recon", INSTANT, "VAE", "squared reconstruction error (Zhou et al. 2020)"),
    ScorerInfo("grad-kl", INSTANT, "VAE gradient", "|d KL / d x|, smoothed (Zimmerer et al. 2019)"),
    ScorerInfo("grad-rec", INSTANT, "VAE gradient", "|d Rec / d x|, smoothed (Zhou et al. 2020)"),
    ScorerInfo("grad-elbo", INSTANT, "VAE gradient", "|d (Rec + KL) / d x|, smoothed (Zhou et al. 2020)"),
    ScorerInfo("combi", INSTANT, "VAE gradient", "healthy-normalised |d KL / d x| times reconstruction error "
               "(Zimmerer et al. 2019)", needs_calibration=True),
    ScorerInfo("combi-add", INSTANT, "VAE gradient", "healthy-normalised |d KL / d x| plus healthy-normalised "
               "reconstruction error", needs_calibration=True),
    ScorerInfo("projection", SLOW, "VAE projection", "energy-based projection, squared change of the input "
               "(Dehaene et al. 2020)"),
    _ssl("ssl-fpi", "segmentation net trained with Foreign Patch Interpolation (Tan et al.)", generator="fpi"),
    _ssl("ssl-pii", "segmentation net trained with Poisson Image Interpolation (Tan et al. 2021)", generator="pii"),
    _ssl("ssl-ppii", "segmentation net trained with probabilistic PII (Mueller et al. 2023)", generator="ppii"),
    _ssl("ssl-ppii-he", "probabilistic PII on histogram-equalised cells (Mueller et al. 2023)",
         generator="ppii", equalise=True),
    ScorerInfo("ensemble", INSTANT, "ensemble", "mean of supn, diag, recon and grad-elbo maps, each calibrated "
               "on healthy cells", needs_calibration=True),
    ScorerInfo(SUPN_SATURATION, INSTANT, "ensemble", "supn plus the stain's HSV saturation (the hand-made "
               "detector), each on the log scale of healthy cells (stained smears, RGB)", needs_calibration=True,
               rgb_only=True, score_scale="linear"),
    ScorerInfo(SUPN_SPOTS, INSTANT, "ensemble", "supn plus the cell's brightest small spot (the hand-made "
               "detector's difference of Gaussians), each on the scale of healthy cells (unstained bright-field "
               "and fluorescence)", needs_calibration=True, modalities=("fluorescence", "brightfield"),
               score_scale="linear"),
]}


def scorer_names() -> list[str]:
    return list(REGISTRY)


def network_scorer_names() -> list[str]:
    return [n for n, info in REGISTRY.items() if info.needs_network]


def scorer_info(name: str) -> ScorerInfo:
    if name not in REGISTRY:
        raise ScorerUnavailable(f"unknown scorer {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def describe_cost(name: str) -> str:
    """The cost class of a scorer in words, for a label beside a scorer menu."""
    return COST_WORDS[scorer_info(name).cost]
