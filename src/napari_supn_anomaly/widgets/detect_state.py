"""What the Detect widget has chosen and found, without Qt: the models loaded so far, the scorer
networks loaded in this session, the chosen model, scorer and sensitivity, and the last result.

The widget (``detect_widget``) shows this state and changes it; tests drive it without a display.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ..errors import InputError
from ..models import AnomalyModel, builtin_model_names, load_model
from ..pipeline.result import DetectionResult
from ..pipeline.self_calibration import DEFAULT_CALIBRATION
from ..pipeline.sensitivity import DEFAULT_FPR, default_fpr, describe_fpr
from ..pipeline.stacks import calibration_inputs
from ..scoring import REGISTRY as SCORERS
from ..scoring import (Scorer, ScorerNetworks, available_scorers, default_scorer_name, describe_cost, resolve,
                       scorer_info)
from .model_registry import REGISTRY, ModelRegistry


class DetectState:
    """One Detect widget's session: ``fpr`` (share of healthy cells flagged, 0-1) and ``min_area``
    (smallest candidate region, px) are the sensitivity; ``calibration`` says whose healthy cells
    set the threshold ("slide": the image's own cells, "model": the model's); ``result`` is the
    last result, cut at them."""

    def __init__(self, registry: ModelRegistry = REGISTRY):
        self.registry = registry
        self.networks = ScorerNetworks()
        self._models: dict[str, AnomalyModel] = {}   # choice -> model, loaded on first choice
        self.model_choice: str | None = None
        self.scorer_name: str | None = None
        self.fpr = DEFAULT_FPR
        self.min_area = 1
        self.calibration = DEFAULT_CALIBRATION
        self.result: DetectionResult | None = None
        self._result_scorer: Scorer | None = None    # the scorer that made ``result``; re-thresholds it

    # -- models ----------------------------------------------------------------------------------
    def model_choices(self) -> list[str]:
        """Built-in models, models registered in this session, then files loaded here."""
        names = builtin_model_names() + [n for n in self.registry.names() if n not in builtin_model_names()]
        return names + [c for c in self._models if c not in names]

    @property
    def model(self) -> AnomalyModel | None:
        """The chosen model; None when none is chosen or it could not be loaded."""
        return self._models.get(self.model_choice)

    def choose_model(self, choice: str | None) -> AnomalyModel | None:
        """Choose a model (loading it the first time), its default scorer and, unless the person
        changed it, its default sensitivity.

        Raises ModelFileError, OSError or ValueError when it cannot be loaded; it stays chosen,
        with no model.
        """
        untouched = math.isclose(self.fpr, self.default_fpr(), rel_tol=1e-6)
        self.model_choice, self.scorer_name = choice, None
        if choice is None:
            return None
        if choice not in self._models:
            self._models[choice] = self.registry.get(choice) if choice in self.registry else load_model(choice)
        model = self._models[choice]
        self.scorer_name = default_scorer_name(model)
        if untouched:  # a sensitivity the person chose stays; the last model's default becomes this one's
            self.fpr = self.default_fpr()
        return model

    def default_fpr(self) -> float:
        """The sensitivity the chosen model starts at (``DEFAULT_FPR`` with none chosen)."""
        return DEFAULT_FPR if self.model is None else default_fpr(self.model.modality)

    def load_model_file(self, path: str | Path) -> str:
        """Load a model file, list it (under its name, or with the file's name if that is taken) and
        choose it; the name it is listed under. Raises like :meth:`choose_model`."""
        model = load_model(Path(path))
        name = model.name if model.name not in self.model_choices() else f"{model.name} ({Path(path).name})"
        self._models[name] = model
        self.choose_model(name)
        return name

    def forget_model(self, name: str) -> None:
        """A registered name was added, replaced or removed: load it afresh when next chosen."""
        self._models.pop(name, None)

    # -- scorers ---------------------------------------------------------------------------------
    def scorer_choices(self) -> list[str]:
        model = self.model
        return available_scorers(model, self.networks) if model is not None else []

    def describe_scorer(self) -> str:
        """The chosen scorer's cost in words and, for an ssl-* scorer, where its network came from."""
        model, name = self.model, self.scorer_name
        if model is None or name not in SCORERS:
            return ""
        source = self.networks.source(model, name) if scorer_info(name).needs_network else None
        return describe_cost(name) + (f" (network: {source})" if source else "")

    def load_scorer_network(self, path: str | Path) -> str:
        """Attach an ssl-* network file to the chosen model and choose its scorer; the scorer's name.

        Raises ModelFileError for a missing, foreign or damaged file, one made for another model
        or one without a healthy calibration; nothing changes then.
        """
        if self.model is None:
            raise InputError("choose a model first: a scorer network belongs to one model")
        self.scorer_name = self.networks.attach_file(self.model, path, require_calibration=True)
        return self.scorer_name

    def scorer(self) -> Scorer:
        """The chosen scorer, ready to run; raises InputError (ScorerUnavailable) when it cannot."""
        model = self.model
        if model is None:
            raise InputError("choose a model first")
        return resolve(model, self.scorer_name, self.networks.get(model, self.scorer_name))

    # -- sensitivity and results -----------------------------------------------------------------
    def threshold(self) -> float | None:
        """The chosen scorer's score threshold at ``fpr``; None without a healthy calibration."""
        model = self.model
        if model is None or self.scorer_name is None:
            return None
        try:
            return model.threshold_for_fpr(self.fpr, self.scorer_name)
        except ValueError:
            return None

    def describe_threshold(self) -> str:
        """The line under the sensitivity slider: the threshold of the result shown (else of the
        chosen scorer), how it was calibrated and what the sensitivity means in false candidates."""
        if self.result is not None:
            choice = self.result.calibration
            if choice is None:
                return f"score threshold {self.result.threshold:.3g}: {describe_fpr(self.fpr)}"
            expected = choice.describe_expected()  # the status line's words, so the two agree
            here = f"; {expected} on these cells" if expected else ""
            return (f"score threshold {self.result.threshold:.3g} ({choice.describe_source()}): "
                    f"{describe_fpr(self.fpr)}{here}")
        if self.calibration == "slide":
            return f"the threshold is set on the image's own cells when it runs: {describe_fpr(self.fpr)}"
        threshold = self.threshold()
        if threshold is None:
            return "this model has no healthy-cell calibration"
        return f"score threshold {threshold:.3g}: {describe_fpr(self.fpr)}"

    def keep_result(self, result: DetectionResult, scorer: Scorer) -> None:
        """``result`` is the one shown now; ``scorer`` (which made it) re-thresholds it."""
        self.result, self._result_scorer = result, scorer

    def rethreshold(self) -> DetectionResult | None:
        """The last result cut again at ``fpr``, ``min_area`` and ``calibration``, without running the
        model (the slide's calibration is redone on the result's own cell scores); None when there
        is no result or no calibration can be used (too few cells and no model calibration)."""
        if self.result is None:
            return None
        scorer = self._result_scorer
        base = dataclasses.replace(self.result, min_area=int(self.min_area))
        try:
            self.result = base.recalibrated(self.fpr, self.calibration,
                                            **(calibration_inputs(scorer) if scorer is not None else {}))
        except ValueError:
            return None
        return self.result
