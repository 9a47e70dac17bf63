"""The Review widget: go through the candidate cells of a detection with the keys, see the counts
and the parasitemia live, save the review beside the results and write the HTML report.

The view only: the queue, decisions, undo, counts and re-ranking are a ``review.session.ReviewSession``;
tables, files and the report are ``review``'s. Every decision is kept in the candidates layer (its
``status`` feature and the cell table in its metadata), and in the results folder once there is one,
so closing the widget or re-running detection loses nothing.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import USER_ERRORS, InputError
from ..overlay import display_plane
from ..pipeline.axes import normalise_axes
from ..pipeline.result import DetectionResult
from ..review.features import review_measurements
from ..review.layer_tables import cells_from_arrays
from ..review.results_folder import (
    keep_old_review,
    read_reviewed,
    summarize,
    write_statuses,
)
from ..review.session import ReviewSession
from ..review.statuses import (
    ACCEPTED,
    DECISIONS,
    REJECTED,
    UNSURE,
    cell_keys,
    statuses_for_candidates,
)
from ..review.tiles import GAP_PX, TILE_PX, cell_tile
from . import layers as layer_tools
from .review_gallery import STATUS_COLOURS, Gallery, TileModel

if TYPE_CHECKING:
    import napari

# key -> action; the same letters work on the canvas (viewer key bindings) and in the gallery
KEYS = {"a": ACCEPTED, "r": REJECTED, "u": UNSURE, "n": "next", "b": "previous", "z": "undo"}
QT_KEYS = {Qt.Key.Key_A: ACCEPTED, Qt.Key.Key_R: REJECTED, Qt.Key.Key_U: UNSURE, Qt.Key.Key_N: "next",
           Qt.Key.Key_Right: "next", Qt.Key.Key_Down: "next", Qt.Key.Key_B: "previous", Qt.Key.Key_Left: "previous",
           Qt.Key.Key_Up: "previous", Qt.Key.Key_Z: "undo", Qt.Key.Key_Backspace: "undo"}
KEY_HELP = "A accept · R reject · U unsure · N/→ next · B/← back · Z undo"
FOLDER_KEY = "review_folder"
CELLS_ACROSS = 6   # the current cell fills about 1/6 of the canvas


class ReviewWidget(QWidget):
    """Review parasite candidates, best first; count them; report the parasitemia."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = viewer
        self.session: ReviewSession | None = None
        self._source = None          # the image layer under review
        self._outputs: dict = {}     # role -> output layer
        self._planes: dict[int, np.ndarray] = {}
        self.key_latency_s: list[float] = []

        self._image = QComboBox()
        self._start = QPushButton("Review candidates")
        self._keys = QLabel(KEY_HELP)
        self._keys.setWordWrap(True)
        self._counts = QLabel("Run detection (or open a results folder), then Review candidates.")
        self._counts.setWordWrap(True)
        self._parasitemia = QLabel("")
        self._parasitemia.setWordWrap(True)
        self._rbc = QDoubleSpinBox()
        self._rbc.setRange(0, 1e8)
        self._rbc.setDecimals(0)
        self._rbc.setSingleStep(1e5)
        self._rbc.setSpecialValueText("not given")
        self._rbc.setToolTip("red cells per µL of blood (from a cell counter): adds parasites per µL")
        self._model = TileModel(self._draw_tile, self._caption)
        self.gallery = Gallery(QT_KEYS, QSize(2 * TILE_PX + GAP_PX, TILE_PX))
        self.gallery.setModel(self._model)
        self._save = QPushButton("Save review…")
        self._open = QPushButton("Open results folder…")
        self._report = QPushButton("HTML report…")

        form = QFormLayout()
        form.addRow("image", self._image)
        form.addRow("red cells per µL", self._rbc)
        buttons = QHBoxLayout()
        for b in (self._save, self._open, self._report):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self._start)
        layout.addWidget(self._keys)
        layout.addWidget(self._counts)
        layout.addWidget(self._parasitemia)
        layout.addWidget(self.gallery, stretch=1)
        layout.addLayout(buttons)
        self.setMaximumWidth(480)

        self._start.clicked.connect(lambda: self.start())
        self._save.clicked.connect(lambda: self._on_save_clicked())
        self._open.clicked.connect(lambda: self._on_open_clicked())
        self._report.clicked.connect(lambda: self._on_report_clicked())
        self._rbc.valueChanged.connect(lambda _: self._show_counts())
        self.gallery.key_pressed.connect(self.press)
        self.gallery.clicked.connect(lambda index: self._go(index.row()))
        viewer.layers.events.inserted.connect(self._refresh_images)
        viewer.layers.events.removed.connect(self._refresh_images)
        for key, action in KEYS.items():
            viewer.bind_key(key, lambda _v, _a=action: self.press(_a), overwrite=True)
        self.destroyed.connect(lambda *_: self._unbind())
        self._refresh_images()

    # -- what a person sees ------------------------------------------------------------------------
    @property
    def counts_text(self) -> str:
        return self._counts.text()

    @property
    def parasitemia_text(self) -> str:
        return self._parasitemia.text()

    @property
    def tiles_drawn(self) -> int:
        return self._model.drawn

    @property
    def folder(self) -> Path | None:
        points = self._outputs.get("candidates")
        folder = (points.metadata or {}).get(FOLDER_KEY) if points is not None else None
        return Path(folder) if folder else None

    # -- starting ----------------------------------------------------------------------------------
    def _refresh_images(self, *_):
        names = []
        for layer in self.viewer.layers:
            tag = (layer.metadata or {}).get(layer_tools.OUTPUT_KEY) or {}
            if tag.get("role") == "candidates" and tag.get("source") in self.viewer.layers:
                names.append(tag["source"])
        current = self._image.currentText()
        self._image.clear()
        self._image.addItems(names)
        if current in names:
            self._image.setCurrentText(current)

    def start(self, image_layer=None) -> bool:
        """Review the candidates found in ``image_layer`` (default: the one chosen). False and a
        notification when it has no results."""
        self._refresh_images()
        name = image_layer.name if image_layer is not None else self._image.currentText()
        if not name or name not in self.viewer.layers:
            show_error("No candidates to review: run detection on an image first, or open its results folder.")
            return False
        outputs = layer_tools.find_outputs(self.viewer, name)
        if not {"heatmap", "cells", "candidates"} <= set(outputs):
            show_error(f"{name}: its heatmap, cells and candidates layers are needed; run detection again.")
            return False
        self._watch(outputs["candidates"])
        self._source, self._outputs, self._planes = self.viewer.layers[name], outputs, {}
        self._image.setCurrentText(name)
        cells = self._cell_table()
        heatmap, labels = np.asarray(outputs["heatmap"].data), np.asarray(outputs["cells"].data)
        measurements = review_measurements(cells, self._plane, heatmap, labels)
        self.session = ReviewSession(cells, measurements=measurements)
        self._model.set_queue(self.session.queue)
        self._after_change()
        self.gallery.setFocus()
        return True

    def _watch(self, points) -> None:
        """Follow the candidates layer: new points (the sensitivity moved, detection ran again)
        restart the review from the layer, whose cell table keeps the decisions."""
        old = self._outputs.get("candidates")
        if old is points:
            return
        if old is not None:
            old.events.data.disconnect(self._on_points_replaced)
        points.events.data.connect(self._on_points_replaced)

    def _on_points_replaced(self, _event=None) -> None:
        # after the change is complete: the layer's features and cell table follow its points
        QTimer.singleShot(0, self._restart)

    def _restart(self) -> None:
        if self.session is not None and self._source in self.viewer.layers:
            self.start(self._source)

    def _cell_table(self) -> pd.DataFrame:
        """The cell table with statuses: the one kept in the candidates layer, with any status
        edited by hand in the layer's feature table taken over."""
        points = self._outputs["candidates"]
        features = points.features
        table = (points.metadata or {}).get("cell_table")
        heatmap, labels = np.asarray(self._outputs["heatmap"].data), np.asarray(self._outputs["cells"].data)
        if not isinstance(table, pd.DataFrame) or ("plane" in table.columns) != (labels.ndim > 2):
            return cells_from_arrays(heatmap, labels, features)
        table = table.copy()
        if "status" in features.columns and len(features):
            edited = {k: s for k, s in zip(cell_keys(features if labels.ndim > 2 else features.drop(
                columns=["plane"], errors="ignore")), features["status"].astype(str)) if s in DECISIONS}
            status = table["status"].to_numpy(object) if "status" in table.columns else np.full(len(table), "")
            for i, key in enumerate(cell_keys(table)):
                if key in edited and status[i] not in DECISIONS:
                    status[i] = edited[key]
            table["status"] = status
        return table

    # -- the keys ----------------------------------------------------------------------------------
    def press(self, action: str) -> None:
        """One key: accepted / rejected / unsure (decide and move on), next, previous or undo."""
        if self.session is None or self._source not in self.viewer.layers:
            return
        started = time.perf_counter()
        before = list(self.session.queue)
        if action in DECISIONS:
            self.session.decide(action)
        elif action == "next":
            self.session.next()
        elif action == "previous":
            self.session.previous()
        elif action == "undo" and not self.session.undo():
            show_info("Nothing to undo.")
        if self.session.queue != before:
            self._model.set_queue(self.session.queue)   # re-ranked; drawn tiles are kept
        self._after_change(decided=action in DECISIONS or action == "undo")
        self.key_latency_s.append(time.perf_counter() - started)

    def _go(self, position: int) -> None:
        if self.session is not None:
            self.session.go_to(position)
            self._after_change()

    def _after_change(self, decided: bool = False) -> None:
        session = self.session
        if decided:
            self._keep_decisions()
        self._colour_candidates()
        if session.queue:
            index = self._model.index(session.position)
            self._model.status_changed(session.position)
            self.gallery.setCurrentIndex(index)
            self.gallery.scrollTo(index)
            self._show_current()
        self._show_counts()

    def _show_counts(self) -> None:
        if self.session is None:
            return
        self._counts.setText(self.session.progress_text())
        counts = self.session.counts()
        lines = [counts.describe()]
        rbc = self._rbc.value()
        if rbc > 0 and counts.cells:
            low, high = counts.interval
            lines.append(f"parasites per µL: {counts.parasitemia * rbc:.0f} ({low * rbc:.0f} – {high * rbc:.0f})")
        if "plane" in self.session.cells.columns:
            per_plane = self.session.cells.groupby("plane")
            from ..review.parasitemia import count

            for plane, group in per_plane:
                c = count(group)
                lines.append(f"field {plane}: {c.accepted}/{c.cells} accepted, {c.unreviewed} undecided")
        self._parasitemia.setText("\n".join(lines))

    # -- the viewer --------------------------------------------------------------------------------
    def _show_current(self) -> None:
        """Centre and zoom on the current cell, on its plane; select its candidate points."""
        cell = self.session.current_cell()
        labels = self._outputs["cells"]
        plane = int(cell["plane"]) if "plane" in cell.index else 0
        index = tuple(int(i) for i in np.unravel_index(plane, labels.data.shape[:-2])) if labels.ndim > 2 else ()
        world = np.asarray(labels.data_to_world([*index, float(cell["y"]), float(cell["x"])]), float)
        offset = self.viewer.dims.ndim - labels.ndim
        for axis, value in enumerate(world[:-2]):
            self.viewer.dims.set_point(offset + axis, value)
        self.viewer.camera.center = tuple(world[-2:])
        diameter = 2.0 * np.sqrt(max(float(cell.get("area", 400)), 1.0) / np.pi) * float(labels.scale[-1])
        self.viewer.camera.zoom = float(min(self.viewer.canvas.size)) / (CELLS_ACROSS * diameter)
        points = self._outputs["candidates"]
        key = (plane, int(cell["cell_id"]))
        points.selected_data = {i for i, k in enumerate(self._point_keys(points)) if k == key}

    def _point_keys(self, points) -> list[tuple[int, int]]:
        """(plane, cell id) of each candidate point, cached until the layer's points change."""
        cached = getattr(self, "_keys_cache", None)
        if cached is not None and cached[0] is points and cached[1] == len(points.data):
            return cached[2]
        features = points.features
        if "cell_id" not in features.columns:
            keys = []
        elif "plane" not in features.columns:
            keys = [(0, int(c)) for c in features["cell_id"]]
        else:
            keys = cell_keys(features)
        self._keys_cache = (points, len(points.data), keys)
        self._coloured = None
        return keys

    def _colour_candidates(self) -> None:
        """Each candidate point in its cell's status colour; only the points that changed are redrawn."""
        points = self._outputs["candidates"]
        if len(points.data) == 0:
            return
        keys = self._point_keys(points)
        lookup = dict(zip(cell_keys(self.session.cells), self.session.status))
        status = np.array([lookup.get(k, "candidate") or "candidate" for k in keys], object)
        before = getattr(self, "_coloured", None)
        if before is None or len(before) != len(status) or "status" not in points.features.columns:
            features = points.features.copy()
            features["status"] = status
            points.features = features
            points.border_color = [STATUS_COLOURS.get(s, STATUS_COLOURS["candidate"]) for s in status]
        else:
            changed = np.flatnonzero(before != status)
            if len(changed) == 0:
                return
            table = points.features   # the layer's own table: changed in place
            table.iloc[changed, table.columns.get_loc("status")] = status[changed]
            colours = points.border_color   # the layer's own array: change the rows, then tell napari
            colours[changed] = [to_rgba(STATUS_COLOURS.get(s, STATUS_COLOURS["candidate"])) for s in status[changed]]
            points.events.border_color()
        self._coloured = status

    def _keep_decisions(self) -> None:
        """The decisions into the candidates layer's metadata, and into the results folder when known."""
        points = self._outputs["candidates"]
        points.metadata = {**points.metadata, "cell_table": self.session.cells.copy()}
        folder = self.folder
        if folder is not None:
            try:
                write_statuses(self.session.cells, self._candidate_table(), folder, self._source.name)
            except USER_ERRORS as exc:
                show_error(f"The review could not be saved in {folder}: {exc}")

    # -- tiles -------------------------------------------------------------------------------------
    def _plane(self, flat: int) -> np.ndarray | None:
        if flat not in self._planes:
            layer = self._source
            axes = normalise_axes(layer_tools.layer_axes(layer), layer.data.ndim)
            plane_axes = "".join(a for a in axes if a not in "CYXS")
            shape = tuple(layer.data.shape[axes.index(a)] for a in plane_axes)
            index = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()
            channel = (self._outputs["candidates"].metadata.get("provenance") or {}).get("channel")
            self._planes[flat] = display_plane(layer.data, axes, plane_axes, index, channel)
        return self._planes[flat]

    def _draw_tile(self, row: int) -> np.ndarray:
        cell = self.session.cells.iloc[row]
        plane = int(cell["plane"]) if "plane" in cell.index else 0
        heatmap = np.asarray(self._outputs["heatmap"].data).reshape(-1, *self._outputs["heatmap"].data.shape[-2:])
        labels = np.asarray(self._outputs["cells"].data).reshape(-1, *self._outputs["cells"].data.shape[-2:])
        threshold = float(self._outputs["candidates"].metadata.get("threshold", 0.0))
        return cell_tile(self._plane(plane), heatmap[plane], labels[plane], int(cell["cell_id"]),
                         (float(cell["y"]), float(cell["x"])), float(cell.get("area", 400)), threshold)

    def _caption(self, row: int) -> tuple[str, str]:
        cell = self.session.cells.iloc[row]
        status = str(cell["status"])
        where = f"field {int(cell['plane'])} · " if "plane" in cell.index else ""
        second = f" · review {cell['review_score']:.2f}" if "review_score" in cell.index else ""
        return f"{where}cell {int(cell['cell_id'])}\nscore {float(cell['score']):.3g}{second}\n{status}", status

    # -- files -------------------------------------------------------------------------------------
    def _candidate_table(self) -> pd.DataFrame:
        points = self._outputs["candidates"]
        table = (points.metadata or {}).get("candidate_table")
        if not isinstance(table, pd.DataFrame) or len(table) != len(points.data):
            table = points.features.copy()
            plane_axes = (points.metadata or {}).get("plane_axes", "")
            names = [a.lower() for a in plane_axes] + ["y", "x"]
            for k, name in enumerate(names[-points.data.shape[1]:] if len(points.data) else []):
                table[name] = np.asarray(points.data)[:, k]
        table = table.copy()
        if len(table):
            table["status"] = statuses_for_candidates(self.session.cells, table if "plane" in self.session.cells.columns
                                                      else table.drop(columns=["plane"], errors="ignore"))
        return table

    def save(self, folder: str | Path) -> list[Path]:
        """Write the result with its review into ``folder``: <stem>_heatmap.tif, _cells.tif,
        _cells.csv and _candidates.csv (with statuses); later decisions are saved there as they come."""
        from ..io import write_result

        if self.session is None:
            raise InputError("nothing to save: start a review first")
        points = self._outputs["candidates"]
        meta = points.metadata or {}
        result = DetectionResult(np.asarray(self._outputs["heatmap"].data), np.asarray(self._outputs["cells"].data),
                                 self.session.cells, self._candidate_table(), float(meta.get("threshold", 0.0)),
                                 dict(meta.get("provenance") or {}), meta.get("plane_axes", ""))
        Path(folder).mkdir(parents=True, exist_ok=True)
        paths = write_result(result, folder, self._source.name)
        points.metadata = {**points.metadata, FOLDER_KEY: str(folder)}
        return paths

    def open_results(self, folder: str | Path, image_layer=None) -> bool:
        """Show the results of ``image_layer`` (default: the selected image) saved in ``folder``,
        with their review, and start reviewing. False and a notification when they are not there."""
        import tifffile

        layer = image_layer or self.viewer.layers.selection.active
        if layer is None or layer.__class__.__name__ != "Image":
            show_error("Select the image layer whose results you want to open.")
            return False
        try:
            image = read_reviewed(folder, layer.name)
            heatmap = tifffile.imread(image.paths[0])
            labels = tifffile.imread(image.paths[1])
        except USER_ERRORS as exc:
            show_error(f"Cannot open the results of {layer.name}: {exc}")
            return False
        axes = normalise_axes(layer_tools.layer_axes(layer), layer.data.ndim)
        plane_axes = "".join(a for a in axes if a not in "CYXS")
        if heatmap.shape[-2:] != labels.shape[-2:] or heatmap.ndim != len(plane_axes) + 2:
            show_error(f"The results in {folder} do not fit {layer.name} (heatmap {heatmap.shape}, image axes {axes}).")
            return False
        result = DetectionResult(heatmap, labels, image.cells, image.candidates,
                                 float(image.provenance.get("threshold", 0.0)), image.provenance, plane_axes)
        shown = layer_tools.show_result(self.viewer, result, layer, axes)
        shown["candidates"].metadata = {**shown["candidates"].metadata, FOLDER_KEY: str(folder)}
        return self.start(layer)

    def write_report(self, path: str | Path) -> Path:
        """The HTML report of this image's review (saved first, beside the report if never saved)."""
        from ..review.report import build_html, write_html

        if self.session is None:
            raise InputError("start a review first")
        folder = self.folder or Path(path).parent
        if self.folder is None:
            self.save(folder)
        image = read_reviewed(folder, self._source.name)
        table = summarize([image], rbc_per_ul=self._rbc.value() or None)
        return write_html(build_html([image], table, planes=lambda _image: self._plane), path)

    def _on_save_clicked(self):
        folder = QFileDialog.getExistingDirectory(self, "Save the review in a results folder", str(self.folder or ""))
        if folder:
            try:
                paths = self.save(folder)
                show_info(f"Saved {paths[2].name} with the review in {folder}")
            except USER_ERRORS as exc:
                show_error(f"Could not save: {exc}")

    def _on_open_clicked(self):
        folder = QFileDialog.getExistingDirectory(self, "Open a results folder")
        if folder:
            self.open_results(folder)

    def _on_report_clicked(self):
        path, _ = QFileDialog.getSaveFileName(self, "Write the HTML report", "report.html", "HTML (*.html)")
        if path:
            try:
                show_info(f"Report written: {self.write_report(path)}")
            except USER_ERRORS as exc:
                show_error(f"Could not write the report: {exc}")

    def _unbind(self):
        for key in KEYS:
            self.viewer.bind_key(key, None)  # None unbinds


def reviewed_decisions(viewer, source: str) -> int:
    """How many decisions the candidates layer of ``source`` holds."""
    points = layer_tools.find_outputs(viewer, source).get("candidates")
    table = (points.metadata or {}).get("cell_table") if points is not None else None
    if not isinstance(table, pd.DataFrame) or "status" not in table.columns:
        return 0
    return int(table["status"].isin(DECISIONS).sum())


def confirm_replacing_review(viewer, source: str, parent=None, ask=None) -> bool:
    """Before new results replace reviewed layers: ask, and keep the review in a file first
    (``<stem>_review-<date-time>.csv`` in its results folder, else in the temporary folder)."""
    decided = reviewed_decisions(viewer, source)
    if not decided:
        return True
    question = (f"{source} has {decided} reviewed candidate(s). New results replace its layers; the review is kept "
                "in a file. Replace them?")
    if ask is None:
        def ask(text):
            answer = QMessageBox.question(parent, "Replace the reviewed layers?", text)
            return answer == QMessageBox.StandardButton.Yes
    if not ask(question):
        return False
    import tempfile

    points = layer_tools.find_outputs(viewer, source)["candidates"]
    folder = Path((points.metadata or {}).get(FOLDER_KEY) or Path(tempfile.gettempdir()) / "napari-supn-anomaly-reviews")
    folder.mkdir(parents=True, exist_ok=True)
    table = points.metadata["cell_table"]
    path = folder / f"{source}_cells.csv"
    if not path.exists() or keep_old_review(folder, source) is None:
        path = folder / f"{source}_review-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    table.to_csv(path, index=False, float_format="%.4f")
    show_info(f"The review of {source} is kept in {path}")
    return True
