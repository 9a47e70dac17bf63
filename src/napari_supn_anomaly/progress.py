"""The one progress event of every long job: detection, training, fine-tuning, scoring.

Jobs are generators that yield :class:`Progress` and return (or yield last) their result; the
widgets wrap them in a napari ``thread_worker``, the command line in a progress line.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Progress:
    stage: str                    # what is being done: "segmenting", "scoring", "mean", "precision", ...
    done: int = 0                 # steps done in this stage (cells, iterations, tiles)
    total: int = 0                # steps planned in this stage (0: unknown)
    message: str = ""             # a line for people; empty for routine steps
    loss: float | None = None     # training only: the running loss
    elapsed_s: float = 0.0
    held_back_loss: float | None = None
    overall: float | None = None  # share of the whole job done, when the job knows it
    plane: int | None = None      # detection: flat index of the plane being processed

    @property
    def fraction(self) -> float:
        if self.overall is not None:
            return float(self.overall)
        return self.done / self.total if self.total else 0.0
