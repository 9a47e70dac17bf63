"""Render a self-contained HTML page to a PNG with Qt WebEngine (for the report's screenshot).

    QTWEBENGINE_CHROMIUM_FLAGS="--no-sandbox --disable-gpu" xvfb-run -a python benchmarks/screenshots/render_html.py \
        /tmp/review_report.html docs/images/review_report.png

Needs PyQt6 and PyQt6-WebEngine (not a dependency of the plugin: e.g. in a separate venv).
"""
from __future__ import annotations

import sys
from pathlib import Path

from PyQt6.QtCore import QSize, QTimer, QUrl
from PyQt6.QtWebEngineWidgets import QWebEngineView
from PyQt6.QtWidgets import QApplication

WIDTH, MAX_HEIGHT = 1200, 2400


def main(page: str, png: str) -> None:
    app = QApplication(sys.argv)
    view = QWebEngineView()
    view.resize(QSize(WIDTH, 900))

    def grab_when_laid_out(ok: bool):
        if not ok:
            sys.exit("the page did not load")

        def size(height):
            view.resize(QSize(WIDTH, min(int(height) + 20, MAX_HEIGHT)))
            QTimer.singleShot(1500, lambda: (view.grab().save(png), app.quit()))

        view.page().runJavaScript("document.documentElement.scrollHeight", size)

    view.loadFinished.connect(grab_when_laid_out)
    view.load(QUrl.fromLocalFile(str(Path(page).resolve())))
    view.show()
    app.exec()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
