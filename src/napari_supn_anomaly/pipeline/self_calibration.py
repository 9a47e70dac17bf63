"""Self-calibration: the candidate threshold from a slide's own cell scores, without labels.

On any smear most red cells are healthy, and infected cells only ever push scores *up*. So the
healthy score distribution of *this* slide is read from the side the infected cells cannot reach:
its lower and central part. On a log scale (logit for probabilities, ``score_scale``) the healthy
scores are taken to follow ``HEALTHY_SHAPE`` (a Student t: real slides' healthy scores have a longer
upper tail than a normal's); its centre and spread are fitted on the slide by matching that shape's
quantiles ``p`` in ``LOW``-``HIGH`` to the slide's quantiles ``p * h`` (least squares): when a share
``1 - h`` of the cells are infected and sit above the healthy ones, the healthy quantile ``p`` is
the slide's quantile ``p * h``. ``h`` (the healthy share) is estimated with the fit, counting up
from ``MIN_HEALTHY``: the cells below ``centre + CUT * spread`` are the healthy cells the fit puts
there (a cut far out in the tail, so that a healthy tail longer than the normal's does not pass for
infected cells). The threshold is the fitted healthy ``1 - fpr`` quantile: the score that the
requested share of this slide's healthy cells exceeds.

Infected cells whose scores overlap the healthy ones barely enter the quantiles fitted, so they
cannot widen the fit (an earlier fit of the median and the 95th percentile was widened by them:
at 20% parasitemia it flagged 0.02% of healthy cells when 1% was asked). A stain or a microscope
that shifts and stretches every score moves the threshold with it. Taking the shape from the
model's own healthy cells instead of a normal was tried and left out: the training slide's upper
tail is longer than other slides', so it flagged 0.1% of healthy cells when 1% was asked.

When the slide's healthy cells score like the model's own held-back healthy cells (the same fit on
the model's stored healthy scores, all healthy, at least ``MIN_CELLS`` of them: centres within ``CENTRE_TOLERANCE`` of the model's spreads,
spreads within a factor ``SPREAD_FACTOR``), the model's calibration is right for this slide and is
used: it reads the healthy tail from real healthy cells rather than extrapolating a normal, and
infected cells that overlap the healthy scores cannot widen it (on the demo, synthetic slides like
the model's training data, the slide fit alone found 17 of 45 parasites at 5% and the model's 37).

With fewer than ``MIN_CELLS`` cells the estimate is too loose and the model's stored calibration
is used instead, placed on the slide's healthy cells: the model's threshold, counted in the model's
spreads above its healthy centre, is counted as many spreads above the slide's healthy centre. The
spread there pools the slide's own (noisy with few cells) with the model's (which another lab's
stain may widen or narrow), each cell of the slide weighing as much as ``1 / SPREAD_PRIOR_CELLS`` of
the model's; :class:`ThresholdChoice` says which one was used and how many false candidates to expect. docs/benchmarks/self_calibration.md measures it.

Everything here is a pure function of per-cell scores, so it works on a stack (all planes of one
slide pooled), on several fields of one slide (:func:`calibrate_pooled`) and on score tables that
come back from a distributed run.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import binom
from scipy.stats import t as student_t

if TYPE_CHECKING:
    import pandas as pd

CALIBRATIONS = ("slide", "model")  # where the healthy score distribution comes from
DEFAULT_CALIBRATION = "slide"

# Settings chosen on synthetic slides and 4 MalariaNet development slides; Chula and the other 5
# MalariaNet slides held out (docs/benchmarks/self_calibration.md).
MIN_CELLS = 50          # fewer cells: the model's calibration
LOW, HIGH = 0.25, 0.65  # the healthy quantiles that centre and spread are fitted on
CUT = 3.0               # cells below centre + CUT * spread are counted as healthy
MIN_HEALTHY = 0.5       # the fit never assumes fewer healthy cells than this share
FIT_POINTS = 15
# The shape of healthy log scores. With a normal, 5% asked flagged 6.8-7.1 healthy cells in 100 on the
# MalariaNet selection and training slides (1% asked: 1.7-2.9); with 6 degrees of freedom 5.1-5.2 (0.8-1.6).
# Chosen there among 3, 4, 6, 10, 30 degrees of freedom, a normal and a logistic
# (docs/benchmarks/self_calibration.md, section "The tail's shape").
HEALTHY_DOF = 6
HEALTHY_SHAPE = student_t(df=HEALTHY_DOF)
# the slide scores like the model's own healthy cells when both hold (chosen on the synthetic slides, the
# demo and the 4 MalariaNet development slides only): the demo's slide fit sits 0.08 model spreads from the
# model's centre with 2.0 times its spread (its overlapping infected cells widen it); the development
# slides sit 1.4-2.9 model spreads away
CENTRE_TOLERANCE = 1.0  # |slide centre - model centre| in units of the model's spread
SPREAD_FACTOR = 2.5     # the larger spread over the smaller
# A slide of n cells, too few for a fit of its own, is given the spread exp((n log s_slide + k log s_model) / (n + k)),
# k this. Chosen 2026-12-04 among 0 (the model's spread alone, before), 40, 60, 80, 120, 160 and 240 on the MalariaNet
# slides Trip_038/062/083/064/065 (fields cut to 10-45 cells, 1% asked: flagged healthy share nearest 1%);
# the test slides and Chula held out (docs/benchmarks/generalisation.md, "Fields with few cells").
SPREAD_PRIOR_CELLS = 80
LIKE_MODEL = "this slide's healthy cells score like the model's own"


@dataclass(frozen=True)
class HealthyFit:
    """The healthy score distribution estimated on a slide: (f(score) - centre) / spread ~ HEALTHY_SHAPE,
    f the ``scale``'s transform (``to_scale``)."""

    centre: float
    spread: float
    n_cells: int
    healthy_share: float
    scale: str = "log"

    @property
    def n_healthy(self) -> float:
        """Estimated healthy cells among the cells of the slide."""
        return self.healthy_share * self.n_cells

    def threshold(self, fpr: float) -> float:
        """The score that a share ``fpr`` of this slide's healthy cells exceeds."""
        return from_scale(self.centre + self.spread * float(HEALTHY_SHAPE.isf(fpr)), self.scale)

    def healthy_fpr(self, threshold: float) -> float:
        """The share of this slide's healthy cells at or above ``threshold``."""
        if self.scale != "linear" and threshold <= 0:
            return 1.0
        if self.scale == "logit" and threshold >= 1:
            return 0.0
        return float(HEALTHY_SHAPE.sf((float(to_scale(np.float64(threshold), self.scale)) - self.centre) / self.spread))


# Scores are fitted on a log scale when most are positive; the few at or below 0 (specks of debris)
# sit at the bottom, where only their rank matters. Scores that all lie in [0, 1] are probabilities
# (the self-supervised scorers' sigmoid): on the logit scale, so that no threshold lies beyond 1
# (on the log scale a slide whose healthy cells score 0.9 put it at 1.2, and nothing was flagged).
# A scorer with signed scores is fitted as it is.
PROBABILITY_CLIP = 1e-6


SCALES = ("logit", "log", "linear")


def score_scale(scores: np.ndarray) -> str:
    """"logit", "log" or "linear": the scale a slide's finite ``scores`` are fitted on, when the scorer
    does not say (``ScorerInfo.score_scale``)."""
    if scores.min() >= 0 and scores.max() <= 1:
        return "logit"
    return "log" if (scores > 0).sum() > 0.9 * len(scores) else "linear"


def to_scale(scores: np.ndarray, scale: str, floor: float | None = None) -> np.ndarray:
    """``scores`` on the fitting ``scale``; ``floor``: the smallest positive score, for the log scale."""
    if scale == "logit":
        p = np.clip(scores, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
        return np.log(p) - np.log1p(-p)
    if scale == "log":
        return np.log(np.maximum(scores, floor if floor is not None else np.finfo(np.float64).tiny))
    return scores


def from_scale(value: float, scale: str) -> float:
    if scale == "logit":
        return float(1.0 / (1.0 + np.exp(-value)))
    return float(np.exp(value)) if scale == "log" else float(value)


def fit_healthy(scores, healthy_share: float | None = None, scale: str | None = None,
                spread: float | None = None) -> HealthyFit:
    """Estimate the healthy score distribution of one slide from all its cell scores; ``healthy_share``:
    the share of healthy cells when it is known (1 for a model's held-back healthy cells), else estimated;
    ``scale``: the scale to fit on (one of ``SCALES``), else read from the scores (``score_scale``);
    ``spread``: the spread when it is known, and then only the centre is fitted.

    Raises ValueError when the scores cannot be fitted (fewer than 3 finite scores, or no spread).
    """
    s = np.asarray(scores, np.float64).ravel()
    s = s[np.isfinite(s)]
    if len(s) < 3:
        raise ValueError(f"{len(s)} cell scores are too few to calibrate on")
    if scale is None:
        scale = score_scale(s)
    elif scale not in SCALES:
        raise ValueError(f"unknown score scale {scale!r}; choose one of {', '.join(SCALES)}")
    if scale == "log" and not (s > 0).any():
        raise ValueError("no cell score is above 0, so none can be calibrated on a log scale")
    y = np.sort(to_scale(s, scale, floor=s[s > 0].min() if scale == "log" else None))
    healthy_p = np.linspace(LOW, HIGH, FIT_POINTS)
    z = HEALTHY_SHAPE.ppf(healthy_p)
    inside = float(HEALTHY_SHAPE.cdf(CUT))
    # from the lowest healthy share up: the first fixed point keeps the anomalous tail out of the fit
    share = MIN_HEALTHY if healthy_share is None else float(healthy_share)
    known_spread = spread
    for _ in range(200):
        observed = np.quantile(y, share * healthy_p)
        if known_spread is None:
            spread = float(np.sum((z - z.mean()) * (observed - observed.mean())) / np.sum((z - z.mean()) ** 2))
        if not spread > 0:
            raise ValueError("the cell scores have no spread to calibrate on")
        centre = float(observed.mean() - spread * z.mean())
        if healthy_share is not None:
            break
        below = np.searchsorted(y, centre + CUT * spread, side="right") / len(y)
        new = float(np.clip(below / inside, MIN_HEALTHY, 1.0))
        if abs(new - share) < 1e-4:
            share = new
            break
        share = new
    return HealthyFit(centre, spread, len(y), share, scale)


def scores_like_model(slide: HealthyFit, model: HealthyFit) -> bool:
    """Whether a slide's healthy fit agrees with the fit on the model's own healthy cells: centres within
    ``CENTRE_TOLERANCE`` model spreads, spreads within a factor ``SPREAD_FACTOR``, the same scale."""
    if slide.scale != model.scale:
        return False
    ratio = slide.spread / model.spread
    return abs(slide.centre - model.centre) <= CENTRE_TOLERANCE * model.spread and \
        1.0 / SPREAD_FACTOR <= ratio <= SPREAD_FACTOR


@dataclass(frozen=True)
class ThresholdChoice:
    """A candidate threshold and where it came from.

    ``method``: "slide" (self-calibrated on the run's own cells), "model" (the model's stored
    healthy calibration) or "user" (a threshold given by hand). ``requested``: the calibration
    asked for; it differs from ``method`` when a slide had too few cells or scores like the model's
    own healthy cells (``reason`` says which).
    """

    threshold: float
    fpr: float | None
    method: str
    requested: str
    n_cells: int
    n_healthy: float | None = None
    reason: str = ""
    fit: dict | None = None
    model_cells: int | None = None  # how many held-back healthy cells the model's calibration rests on

    @property
    def expected_false_candidates(self) -> float | None:
        """fpr x the (estimated) healthy cells: the false candidates to expect at this threshold."""
        if self.fpr is None or self.n_healthy is None:
            return None
        return float(self.fpr * self.n_healthy)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["expected_false_candidates"] = self.expected_false_candidates
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ThresholdChoice:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe_source(self) -> str:
        """Where the threshold came from, e.g. "calibrated on this slide's 812 cells"."""
        if self.method == "slide":
            return f"calibrated on this slide's {self.n_cells} cells"
        if self.method == "model":
            return f"calibrated on {self._model_cells_text()}" + (f": {self.reason}" if self.reason else "")
        return "threshold given by hand"

    def _model_cells_text(self) -> str:
        """The model's healthy cells in words; with their number and a note when the rate asked for is
        beyond what they can tell: the threshold then lies between the highest two of their scores,
        whatever the rate (a model fine-tuned on a few dozen marked cells keeps 7-9 of them)."""
        n = self.model_cells
        if n is None or n < 2 or self.fpr is None or self.fpr * (n - 1) >= 1:
            return "the model's healthy cells"
        return (f"the model's {n} held-back healthy cells (too few for {100 * self.fpr:.2g}%: any rate under "
                f"{100 / (n - 1):.2g}% gives about the same threshold)")

    def describe_expected(self) -> str:
        """The false candidates to expect, in words ("" when unknown)."""
        expected = self.expected_false_candidates
        if expected is None:
            return ""
        if expected < 1:
            return "fewer than 1 false candidate expected"
        return f"about {expected:.0f} false candidate{'' if round(expected) == 1 else 's'} expected"

    def describe(self) -> str:
        """One clause for a summary line: where the threshold came from and the false candidates to expect."""
        expected = self.describe_expected()
        return self.describe_source() + (f"; {expected}" if expected else "")


def choose_threshold(scores, fpr: float, calibration: str = DEFAULT_CALIBRATION, *,
                     model_threshold: Callable[[float], float] | None = None,
                     model_healthy=None, min_cells: int = MIN_CELLS, scale: str | None = None) -> ThresholdChoice:
    """The threshold flagging a share ``fpr`` of healthy cells, from the cell ``scores`` of one slide.

    ``calibration`` "slide" self-calibrates when there are at least ``min_cells`` cells and falls
    back to ``model_threshold(fpr)`` (the model's stored calibration) otherwise, moved to the slide's
    healthy centre when the model's stored healthy scores (``model_healthy``) are given; with them it
    uses the model's calibration also when the slide's healthy cells score like them
    (:func:`scores_like_model`). "model" uses it always. ``scale``:
    the scorer's fitting scale (``ScorerInfo.score_scale``; None: read from the scores). Raises
    ValueError when neither can be used.
    """
    if calibration not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}")
    s = np.asarray(scores, np.float64).ravel()
    s = s[np.isfinite(s)]
    n = len(s)
    reason = ""
    if calibration == "slide":
        if n >= min_cells:
            try:
                fit = fit_healthy(s, scale=scale)
            except ValueError as exc:
                reason = str(exc)
            else:
                model = _model_fit(model_healthy, scale) if model_threshold is not None else None
                if model is not None and scores_like_model(fit, model):
                    return ThresholdChoice(recentred(float(model_threshold(fpr)), fit, model), float(fpr), "model",
                                           calibration, n, fit.n_healthy, LIKE_MODEL, asdict(fit),
                                           len(model_healthy))
                return ThresholdChoice(fit.threshold(fpr), float(fpr), "slide", calibration, n, fit.n_healthy,
                                       fit=asdict(fit))
        else:
            reason = f"{n} cells are too few to calibrate on the slide itself (at least {min_cells} are needed)"
    if model_threshold is None:
        raise ValueError(reason or "the model has no healthy-cell calibration")
    try:
        threshold = float(model_threshold(fpr))
    except ValueError as exc:
        raise ValueError(f"{reason}, and {exc}" if reason else str(exc)) from exc
    model_cells = None if model_healthy is None else len(model_healthy)
    if calibration == "slide" and n < min_cells:
        moved = _moved_to_slide(threshold, s, _model_fit(model_healthy, scale))
        if moved is not None:
            threshold, fit = moved
            return ThresholdChoice(threshold, float(fpr), "model", calibration, n, fit.n_healthy,
                                   f"{reason}; moved to where this slide's cells score", asdict(fit), model_cells)
    return ThresholdChoice(threshold, float(fpr), "model", calibration, n, float(n), reason, model_cells=model_cells)


def _moved_to_slide(model_threshold: float, scores: np.ndarray, model: HealthyFit | None) -> tuple[float, HealthyFit] | None:
    """The model's threshold placed on a slide too small for a fit of its own: the slide's healthy centre
    is fitted with a spread pooled between the slide's and the model's (``pooled_spread``), and the
    threshold lies as many of those spreads above it as the model's lies above the model's centre (None:
    the model stores too few healthy scores, or the slide has fewer than 3 cells). Unmoved, another lab's
    stain made the model's 1% flag 63-88 of 100 healthy cells on MalariaNet fields cut down to 10-45 cells
    (SUPN, supn+saturation), and 16-43 on Chula's (docs/benchmarks/generalisation.md, "Fields with few
    cells")."""
    if model is None:
        return None
    try:
        fit = fit_healthy(scores, scale=model.scale, spread=pooled_spread(scores, model))
    except ValueError:
        return None
    return recentred(model_threshold, fit, model, stretch=True), fit


def pooled_spread(scores: np.ndarray, model: HealthyFit) -> float:
    """The healthy spread of a slide of n cells, too few for a fit of its own: the geometric mean of its
    own fitted spread and the model's, weighted n to ``SPREAD_PRIOR_CELLS`` (the model's alone when the
    slide's cannot be fitted)."""
    try:
        own = fit_healthy(scores, scale=model.scale).spread
    except ValueError:
        return model.spread
    n = len(scores)
    return float(np.exp((n * np.log(own) + SPREAD_PRIOR_CELLS * np.log(model.spread)) / (n + SPREAD_PRIOR_CELLS)))


def _model_fit(model_healthy, scale: str | None = None) -> HealthyFit | None:
    """The slide fit on the model's stored healthy scores (None: too few or constant, nothing to compare with)."""
    if model_healthy is None or len(model_healthy) < MIN_CELLS:
        return None
    try:
        return fit_healthy(model_healthy, healthy_share=1.0, scale=scale)
    except ValueError:
        return None


def recentred(model_threshold: float, slide: HealthyFit, model: HealthyFit, stretch: bool = False) -> float:
    """The model's threshold moved by as much as the slide's healthy centre lies from the model's; with
    ``stretch``, its distance above the model's centre also scaled by the slide's spread over the model's.

    The model's threshold reads the healthy tail from real healthy cells; the slide's centre is
    measured where infected cells barely reach. A slide "like the model" may still sit up to
    ``CENTRE_TOLERANCE`` spreads off, and the model's threshold unmoved flagged 11-29 of 100 healthy
    cells when 5 were asked on the 6 of 40 Chula fields that passed as like it (centres 0.6-0.9
    model spreads above the model's)."""
    above = to_scale(np.float64(model_threshold), slide.scale) - model.centre
    return from_scale(slide.centre + above * (slide.spread / model.spread if stretch else 1.0), slide.scale)


def user_threshold(threshold: float, n_cells: int, healthy_fpr: float | None = None) -> ThresholdChoice:
    """A threshold given by hand; ``healthy_fpr``: its rate on the model's healthy cells, if known."""
    return ThresholdChoice(float(threshold), healthy_fpr, "user", "user", int(n_cells),
                           float(n_cells) if healthy_fpr is not None else None)


def pooled_scores(tables: Iterable[pd.DataFrame], column: str = "score") -> np.ndarray:
    """The cell scores of several per-field (or per-block) cell tables, as one slide."""
    parts = [np.asarray(t[column], np.float64) for t in tables]
    return np.concatenate(parts) if parts else np.zeros(0)


# A field of a pooled run is pointed out when this many of its cells or more are candidates at the
# shared threshold, at least OUTLIER_RATIO times the other fields' share, and that excess would happen
# by chance less often than OUTLIER_P if its cells were like theirs.
OUTLIER_SHARE = 0.1
OUTLIER_RATIO = 2.0
OUTLIER_P = 1e-3


@dataclass(frozen=True)
class OutlyingField:
    index: int            # the field's position among the tables given
    candidates: int       # its cells at or above the shared threshold
    cells: int
    others_share: float   # the share of the other fields' cells at or above it

    def describe(self, name: str, others: str) -> str:
        """One sentence for a person, e.g. ``describe("a.tif", "inputs")``."""
        return (f"{name}: {self.candidates} of its {self.cells} cells are candidates at the threshold shared with the "
                f"other {others}, against {self.others_share:.0%} of their cells. It holds many parasites, or it "
                "comes from another slide or lab, and then the shared threshold is wrong for it: detect it on its own")


def outlying_fields(tables: Iterable[pd.DataFrame], threshold: float, column: str = "score") -> list[OutlyingField]:
    """The fields of a pooled run that have far more candidate cells at the shared ``threshold``
    than the run's other fields. Such a field holds many parasites, or comes from another slide or
    lab whose stain moved every score, and then the threshold pooled with it is right for neither."""
    scores = [np.asarray(t[column], np.float64) for t in tables]
    scores = [s[np.isfinite(s)] for s in scores]
    flagged = np.array([int((s >= threshold).sum()) for s in scores])
    cells = np.array([len(s) for s in scores])
    out = []
    for i in range(len(scores)):
        rest_cells = cells.sum() - cells[i]
        if cells[i] == 0 or rest_cells == 0:
            continue
        share, rest = flagged[i] / cells[i], (flagged.sum() - flagged[i]) / rest_cells
        # a rest with no candidate at all still allows one in its cells: the chance is never 0
        chance = binom.sf(flagged[i] - 1, cells[i], max(rest, 1.0 / rest_cells))
        if share >= OUTLIER_SHARE and share >= OUTLIER_RATIO * rest and chance < OUTLIER_P:
            out.append(OutlyingField(i, int(flagged[i]), int(cells[i]), float(rest)))
    return out


def calibrate_pooled(tables: Iterable[pd.DataFrame], fpr: float, calibration: str = DEFAULT_CALIBRATION, *,
                     model_threshold: Callable[[float], float] | None = None,
                     model_healthy=None, min_cells: int = MIN_CELLS, scale: str | None = None) -> ThresholdChoice:
    """One threshold for several fields of one slide, from their cell tables (a ``score`` column
    each, e.g. ``DetectionResult.cell_table`` or tables gathered after a distributed map).
    Apply it to each field's result with ``DetectionResult.with_choice``."""
    return choose_threshold(pooled_scores(tables), fpr, calibration, model_threshold=model_threshold,
                            model_healthy=model_healthy, min_cells=min_cells, scale=scale)
