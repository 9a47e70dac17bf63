"""The gallery of candidate cells: a list view whose tiles are drawn only when Qt shows them.

Qt asks a model for an item's picture (DecorationRole) only for the rows on screen, so a gallery
of thousands of candidates opens at once; a drawn tile is kept until the queue changes.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qtpy.QtCore import QAbstractListModel, QSize, Qt, Signal
from qtpy.QtGui import QColor, QIcon, QImage, QPixmap
from qtpy.QtWidgets import QListView

STATUS_COLOURS = {"candidate": "#ffd800", "accepted": "#e8112d", "rejected": "#8c8c8c", "unsure": "#c040ff"}


def pixmap(rgb: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(rgb, np.uint8)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class TileModel(QAbstractListModel):
    """Rows: the review queue. ``draw(row) -> RGB``; ``caption(row) -> (text, status)``."""

    def __init__(self, draw: Callable[[int], np.ndarray], caption: Callable[[int], tuple[str, str]]):
        super().__init__()
        self._draw, self._caption = draw, caption
        self._queue: list[int] = []
        self._cache: dict[int, QIcon] = {}
        self.drawn = 0   # tiles drawn so far (the gallery draws lazily)

    def set_queue(self, queue: list[int]) -> None:
        self.beginResetModel()
        self._queue = list(queue)
        self.endResetModel()

    def rowCount(self, parent=None):
        return 0 if parent is not None and parent.isValid() else len(self._queue)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self._queue[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            if row not in self._cache:
                icon = QIcon()
                for mode in (QIcon.Mode.Normal, QIcon.Mode.Selected, QIcon.Mode.Active):
                    icon.addPixmap(pixmap(self._draw(row)) if mode == QIcon.Mode.Normal else icon.pixmap(
                        icon.availableSizes()[0]), mode)   # the selected tile keeps its true colours
                self._cache[row] = icon
                self.drawn += 1
            return self._cache[row]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._caption(row)[0]
        if role == Qt.ItemDataRole.ForegroundRole:
            return QColor(STATUS_COLOURS.get(self._caption(row)[1], "#ffffff"))
        return None

    def status_changed(self, position: int) -> None:
        index = self.index(position)
        self.dataChanged.emit(index, index)


class Gallery(QListView):
    """Tiles in a column; the keys of the review act on it when it has the focus."""

    key_pressed = Signal(str)

    def __init__(self, keys: dict[int, str], tile_size: QSize):
        super().__init__()
        self._keys = keys
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setIconSize(tile_size)
        self.setUniformItemSizes(True)
        self.setSpacing(2)
        self.setMinimumHeight(260)

    def keyPressEvent(self, event):
        action = self._keys.get(event.key())
        if action is None:
            super().keyPressEvent(event)
            return
        self.key_pressed.emit(action)
        event.accept()
