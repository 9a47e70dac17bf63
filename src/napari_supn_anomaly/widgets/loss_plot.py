"""A small live training-loss plot for a widget (matplotlib's Qt canvas; no pyqtgraph needed)."""
from __future__ import annotations

import math

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy

STAGE_COLOURS = {"mean": "#4c9be8", "precision": "#f0a030", "joint": "#6cc070"}
STAGE_LABELS = {"mean": "mean (image model)", "precision": "precision (noise model)", "joint": "joint"}


class LossPlot(FigureCanvasQTAgg):
    """Loss against iteration, one colour per training stage; redraws at most every ``every`` points."""

    def __init__(self, parent=None, height_px: int = 170, every: int = 1):
        self.figure = Figure(figsize=(3.2, 1.8), dpi=90, facecolor="#262930")
        super().__init__(self.figure)
        self.setParent(parent)
        self.setMinimumHeight(height_px)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.axes = self.figure.add_subplot(111)
        self.figure.subplots_adjust(left=0.17, right=0.97, top=0.88, bottom=0.2)
        self.every = max(1, every)
        self.points: dict[str, tuple[list[int], list[float]]] = {}
        self._lines = {}
        self._pending = 0
        self._style()
        self.draw_idle()

    def _style(self):
        ax = self.axes
        ax.set_facecolor("#262930")
        for side in ax.spines.values():
            side.set_color("#8a8f99")
        ax.tick_params(colors="#c8cbd0", labelsize=7)
        ax.set_xlabel("iteration", color="#c8cbd0", fontsize=7)
        ax.set_ylabel("loss", color="#c8cbd0", fontsize=7)
        ax.set_title("training loss", color="#e0e2e5", fontsize=8)

    def clear(self) -> None:
        self.points.clear()
        self._lines.clear()
        self.axes.clear()
        self._style()
        self.draw_idle()

    def add_point(self, stage: str, iteration: int, loss: float | None) -> None:
        if stage not in STAGE_COLOURS or loss is None or not math.isfinite(loss):
            return
        xs, ys = self.points.setdefault(stage, ([], []))
        xs.append(int(iteration))
        ys.append(float(loss))
        self._pending += 1
        if self._pending >= self.every:
            self.refresh()

    def refresh(self) -> None:
        self._pending = 0
        for stage, (xs, ys) in self.points.items():
            if stage not in self._lines:
                (self._lines[stage],) = self.axes.plot([], [], color=STAGE_COLOURS[stage], lw=1.3, marker=".",
                                                       ms=4, label=STAGE_LABELS[stage])
                self.axes.legend(fontsize=6, facecolor="#262930", labelcolor="#c8cbd0", edgecolor="#8a8f99",
                                 loc="upper right")
            self._lines[stage].set_data(xs, ys)
        self.axes.relim()
        self.axes.autoscale_view()
        self.draw_idle()

    def n_points(self) -> int:
        return sum(len(xs) for xs, _ in self.points.values())
