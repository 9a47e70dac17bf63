"""Did fine-tuning help? Base and fine-tuned model compared without parasite labels.

The held-back marked cells are healthy; the fields' other (unmarked) cells are mostly healthy
with some infected ones among them, the same cells for both models. Two label-free numbers per
model, on those cells:

- ``flagged``: flag the top ``q`` of the fields' cells by score (q = 5%, 10%, 20%, i.e. a
  threshold the field sets itself); the share of held-back healthy cells above that threshold,
  divided by ``q`` and averaged over the three q. If the held-back cells look like the field's
  healthy cells, it equals ``(1 - pi * TPR(q) / q) / (1 - pi)``: the more infected cells a model
  puts in the field's top, the lower it is. Lower is better, for any parasitemia ``pi``.
- ``u``: the chance that a field cell scores above a held-back cell (Mann-Whitney AUC). For
  held-back cells like the field's healthy ones it is ``0.5 + pi * (AUROC - 0.5)``, so it can lie
  only in ``[0.5, 0.5 + pi_max / 2]`` give or take sampling noise. Outside, the model finds the
  marked cells unlike the field's cells (marks around debris, background or noise; a model that
  learnt only the marked cells) and its ``flagged`` means nothing.

Before either, a check without any model: each marked cell's mean and spread of intensity (per
channel) and its area are compared with the fields' cells; when most marked cells lie far outside
them (more than ``UNLIKE_Z`` robust standard deviations on some measure), the marks are not around
red cells like the field's (noise, background, debris) and the base is kept.

Fine-tuning must be *shown* better to be kept: the base is kept when the fine-tuned model's ``u``
leaves that band, or when a paired bootstrap over the cells does not put its ``flagged`` below the
base's with 95% confidence (the comparison says which). Looking "as good" is not enough: on
MalariaNet such fine-tuned models were worse on the slides left out and on their own slide. A
base that itself finds the marked cells unlike the field (``u`` outside the band: e.g. a
fluorescence model on bright-field cells) loses to a fine-tuned model inside it. Every cell is mapped (``models.data_range``), rescaled and scored exactly as detection
would with each model's default scorer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..cells import standardise_crops
from ..cells.field_crops import field_scale
from ..cells.measure import median_cell_diameter
from ..models import AnomalyModel
from ..models.data_range import apply_match, plan_match
from ..scoring import resolve
from .regions import TrainingCells, cells_from_labels

MAX_FIELD_CELLS = 1500    # enough for a rank statistic; bounds the time of the check
MIN_FIELD_CELLS = 20      # fewer and the comparison says nothing
MAX_INFECTED_SHARE = 0.5  # the highest parasitemia the band allows for (cultures reach 30-40%)
NOISE_WIDTH = 3.0         # the band of u widens by this many standard errors


@dataclass
class ModelCheck:
    """One model on the check's cells: ``u`` and ``flagged`` (see the module's docstring)."""

    name: str
    u: float
    flagged: float


@dataclass
class Comparison:
    verdict: str                   # "fine-tuned", "base" or "not compared"
    reason: str
    n_held_back: int = 0
    n_field_cells: int = 0
    base: ModelCheck | None = None
    tuned: ModelCheck | None = None
    band: list[float] = field(default_factory=list)        # where u can be trusted
    flagged_difference: list[float] = field(default_factory=list)  # fine-tuned - base: estimate, 95% interval

    @property
    def kept_base(self) -> bool:
        return self.verdict == "base"

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for a person."""
        if self.base is None or self.tuned is None:
            return f"not compared with the base model: {self.reason}"
        scores = (f"held-back healthy cells flagged at the fields' own thresholds (relative, lower is better): "
                  f"fine-tuned {self.tuned.flagged:.2f}, base {self.base.flagged:.2f}, on {self.n_held_back} "
                  f"held-back and {self.n_field_cells} other cells of the fields")
        if self.kept_base:
            return f"fine-tuning did not help, the base model is kept: {self.reason}; {scores}"
        return f"fine-tuned model kept: {self.reason}; {scores}"


UNLIKE_Z = 6.0            # robust z beyond which a marked cell is unlike all the fields' cells
TOP_SHARES = (0.05, 0.1, 0.2)
N_BOOTSTRAP = 200


def flagged_share(held: np.ndarray, others: np.ndarray) -> float:
    """Held-back cells above the fields' top-q thresholds, relative to q, averaged over TOP_SHARES."""
    return float(np.mean([np.mean(held > np.quantile(others, 1 - q)) / q for q in TOP_SHARES]))


def mann_whitney_u(above: np.ndarray, below: np.ndarray) -> float:
    """P(a value of ``above`` > one of ``below``), ties counting half."""
    above, below = np.asarray(above, np.float64), np.asarray(below, np.float64)
    ranks = _ranks(np.concatenate([above, below]))
    r_above = ranks[: len(above)].sum()
    return float((r_above - len(above) * (len(above) + 1) / 2) / (len(above) * len(below)))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):  # average ranks of ties
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def u_noise(n_field: int, n_held: int) -> float:
    """Standard error of ``u`` when the two sets come from one distribution."""
    return float(np.sqrt((n_field + n_held + 1) / (12.0 * n_field * n_held)))


def unmarked_cells(fields: dict[str, np.ndarray], labels: dict[str, np.ndarray], marked: TrainingCells,
                   seed: int = 0) -> TrainingCells:
    """The whole cells of the fields that hold no marked cell's centre (at most MAX_FIELD_CELLS, a seeded sample)."""
    out = TrainingCells()
    for name, plane in fields.items():
        lab = labels[name]
        centres = np.array([(s["y"], s["x"]) for s in marked.sources if s["image"] == _short(name)]).reshape(-1, 2)
        iy = np.clip(np.round(centres[:, 0]).astype(int), 0, lab.shape[0] - 1)
        ix = np.clip(np.round(centres[:, 1]).astype(int), 0, lab.shape[1] - 1)
        taken = set(np.unique(lab[iy, ix]).tolist()) - {0}
        ids = [int(i) for i in np.unique(lab) if i > 0 and int(i) not in taken]
        out.extend(cells_from_labels(plane, lab, _short(name), ids, how="field cell"))
    if len(out) > MAX_FIELD_CELLS:
        out = out.subset(np.sort(np.random.default_rng(seed).choice(len(out), MAX_FIELD_CELLS, replace=False)))
    return out


def _short(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def score_as_detection(model: AnomalyModel, cells: TrainingCells, fields: dict[str, np.ndarray],
                       labels: dict[str, np.ndarray], intensity: str = "auto") -> np.ndarray:
    """Scores of crops cut from ``fields``: mapped as detection maps each field, then rescaled and scored
    with the model's default scorer (crops whose field is not given are scored unmapped)."""
    by_name = {_short(n): n for n in fields}
    plans = {}
    for short, name in by_name.items():
        diameter = median_cell_diameter(labels[name])
        window = model.crop_size / field_scale(model.geometry, diameter)
        plans[short] = plan_match(fields[name], labels[name], model.data_range, window, intensity)
    images = [apply_match(img, plans[s["image"]]) if s["image"] in plans else img
              for img, s in zip(cells.images, cells.sources)]
    crops, masks, _ = standardise_crops(images, cells.masks, model.geometry)
    return resolve(model).score(crops, masks).scores


def cell_measures(cells: TrainingCells) -> np.ndarray:
    """[N, 2C + 1]: per channel the mean and standard deviation of the intensity inside each cell, and its area."""
    rows = []
    for img, mask in zip(cells.images, cells.masks):
        inside = img[:, mask] if mask.any() else img.reshape(img.shape[0], -1)
        rows.append(np.concatenate([inside.mean(1), inside.std(1), [np.sqrt(mask.sum())]]))
    return np.asarray(rows, np.float64)


def share_unlike(marked: TrainingCells, others: TrainingCells) -> float:
    """Share of marked cells lying more than UNLIKE_Z robust standard deviations from the fields' cells on
    some measure (``cell_measures``)."""
    ref, got = cell_measures(others), cell_measures(marked)
    centre = np.median(ref, 0)
    spread = 1.4826 * np.median(np.abs(ref - centre), 0)
    spread = np.maximum(spread, 0.05 * np.abs(centre) + 1e-6)
    return float(np.mean((np.abs(got - centre) / spread > UNLIKE_Z).any(1)))


def _check(model: AnomalyModel, held: np.ndarray, others: np.ndarray) -> ModelCheck:
    return ModelCheck(model.name, round(mann_whitney_u(others, held), 4), round(flagged_share(held, others), 4))


def flagged_difference(base: tuple[np.ndarray, np.ndarray], tuned: tuple[np.ndarray, np.ndarray],
                       seed: int = 0) -> list[float]:
    """Fine-tuned minus base ``flagged`` on (held-back, field) scores: estimate and a 95% paired bootstrap interval."""
    rng = np.random.default_rng(seed)
    n_h, n_f = len(base[0]), len(base[1])
    diffs = []
    for _ in range(N_BOOTSTRAP):
        h, f = rng.integers(0, n_h, n_h), rng.integers(0, n_f, n_f)
        diffs.append(flagged_share(tuned[0][h], tuned[1][f]) - flagged_share(base[0][h], base[1][f]))
    estimate = flagged_share(*tuned) - flagged_share(*base)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return [round(float(estimate), 4), round(float(low), 4), round(float(high), 4)]


def compare_with_base(base: AnomalyModel, tuned: AnomalyModel, held_back: TrainingCells, marked: TrainingCells,
                      fields: dict[str, np.ndarray] | None, labels: dict[str, np.ndarray] | None,
                      seed: int = 0, base_usable: bool = True) -> Comparison:
    """Compare the two models on the held-back cells and the fields' unmarked cells (``marked``: all
    marked cells, left out of the fields' cells); the verdict says which model to keep.

    ``base_usable=False`` (a base made for the opposite contrast, which detection could not even use to
    find these cells): only the check without a model can keep the base; the numbers are recorded."""
    if not fields or not labels:
        return Comparison("not compared", "no whole fields were given (only single-cell crops)",
                          n_held_back=len(held_back))
    others = unmarked_cells(fields, labels, marked, seed)
    if len(others) < MIN_FIELD_CELLS or len(held_back) < 2:
        return Comparison("not compared", f"only {len(others)} unmarked cells on the fields (at least "
                          f"{MIN_FIELD_CELLS} are needed)", n_held_back=len(held_back), n_field_cells=len(others))
    both = TrainingCells(held_back.images + others.images, held_back.masks + others.masks,
                         held_back.sources + others.sources)
    unlike = share_unlike(marked, others)
    if unlike > 0.5:
        return Comparison("base", f"{unlike:.0%} of the marked cells are unlike every cell of the fields (in "
                          f"intensity, texture or size): are the marks around healthy red cells?",
                          n_held_back=len(held_back), n_field_cells=len(others))
    n = len(held_back)
    scores, checks = {}, {}
    for key, model in (("base", base), ("tuned", tuned)):
        both_scores = score_as_detection(model, both, fields, labels)
        scores[key] = (both_scores[:n], both_scores[n:])
        checks[key] = _check(model, *scores[key])
    noise = u_noise(len(others), n)
    band = [round(0.5 - NOISE_WIDTH * noise, 4), round(0.5 + MAX_INFECTED_SHARE / 2 + NOISE_WIDTH * noise, 4)]
    b, t = checks["base"], checks["tuned"]
    difference = flagged_difference(scores["base"], scores["tuned"], seed)
    if not base_usable:
        verdict, reason = "fine-tuned", ("the base model is made for the opposite contrast and cannot be used on "
                                         "these images")
    elif t.u > band[1]:
        verdict, reason = "base", (f"the fine-tuned model finds the marked cells unlike the fields' other cells "
                                   f"(u {t.u:.2f} > {band[1]:.2f}): are the marks around healthy red cells?")
    elif t.u < band[0]:
        verdict, reason = "base", (f"the fine-tuned model scores the held-back healthy cells above the fields' "
                                   f"other cells (u {t.u:.2f} < {band[0]:.2f})")
    elif not band[0] <= b.u <= band[1]:
        verdict, reason = "fine-tuned", "the base model finds the marked cells unlike the fields' other cells"
    elif difference[2] < 0:
        verdict, reason = "fine-tuned", "fewer held-back healthy cells reach the fields' own thresholds (95% sure)"
    elif t.flagged > b.flagged:
        sure = " (95% sure)" if difference[1] > 0 else ""
        verdict, reason = "base", (f"with it more held-back healthy cells reach the fields' own thresholds "
                                   f"({t.flagged:.2f} against {b.flagged:.2f} with the base{sure})")
    else:
        # "looks as good" is not enough: on MalariaNet fine-tuned models that looked as good were worse by
        # 0.07 AUROC on the training slide and the slide left out (docs/benchmarks/finetune.md)
        verdict, reason = "base", (f"it is not clearly better ({t.flagged:.2f} against {b.flagged:.2f} with the "
                                   f"base; the difference is not significant on {n} held-back cells)")
    return Comparison(verdict, reason, n, len(others), b, t, band, difference)
