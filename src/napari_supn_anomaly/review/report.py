"""The review report: one self-contained HTML page (pictures inlined as base64 PNG).

Per image the parasitemia with its 95% interval (a chart and a table), thumbnails of the accepted
cells beside their heatmaps, how the counts and intervals are made, and the model and settings.
"""
from __future__ import annotations

import base64
import datetime
import html
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import USER_ERRORS
from ..files import atomic_outputs
from .parasitemia import POOLED
from .results_folder import ReviewedImage
from .statuses import ACCEPTED
from .tiles import cell_tile, png_bytes

MAX_TILES_PER_IMAGE = 24
SETTINGS_SHOWN = ("software", "created", "model", "model_description", "base_model", "scorer", "score_rule",
                  "heatmap_units", "threshold", "target_fpr", "cell_diameter_px", "cells_from", "device")
METHOD = ("Only red cells are counted (once the cell table tells red cells from platelets, white cells and "
          "debris); cells cut by the image edge are counted like the others (unless detection left them out, then in "
          "neither count). Parasitemia = accepted cells / red "
          "cells. The 95% interval is exact (Clopper-Pearson): its low end counts none of the undecided candidates "
          "(never reviewed, or unsure) as infected, its high end counts all of them. Infected cells the detector "
          "never flagged are not counted.")

# plane index -> display image [Y, X] or [Y, X, 3] in 0-1, or None when the image cannot be read
PlaneSource = Callable[[int], "np.ndarray | None"]


def _img(png: bytes, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _percent(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def accepted_tiles(image: ReviewedImage, planes: PlaneSource, limit: int = MAX_TILES_PER_IMAGE) -> list[tuple[str, bytes]]:
    """(caption, PNG) of the accepted cells of ``image``, highest score first."""
    import tifffile

    cells = image.cells[image.cells["status"] == ACCEPTED]
    if "score" in cells.columns:
        cells = cells.sort_values("score", ascending=False)
    cells = cells.head(limit)
    if not len(cells):
        return []
    heatmap_path, labels_path = image.paths[0], image.paths[1]
    heatmap = tifffile.imread(heatmap_path)
    labels = tifffile.imread(labels_path)
    heatmap = heatmap.reshape(-1, *heatmap.shape[-2:])
    labels = labels.reshape(-1, *labels.shape[-2:])
    threshold = float(image.provenance.get("threshold") or 0.0)
    out, shown = [], {}
    for _, row in cells.iterrows():
        plane = int(row["plane"]) if "plane" in row else 0
        if plane not in shown:
            pixels = planes(plane)
            shown[plane] = pixels if pixels is not None else np.zeros(labels.shape[1:], np.float32)
        tile = cell_tile(shown[plane], heatmap[plane], labels[plane], int(row["cell_id"]),
                         (float(row["y"]), float(row["x"])), float(row.get("area", 400)), threshold)
        where = f"field {plane}, " if labels.shape[0] > 1 else ""
        out.append((f"{where}cell {int(row['cell_id'])}, score {float(row.get('score', math.nan)):.3g}",
                    png_bytes(tile)))
    return out


def planes_from_input(image: ReviewedImage) -> PlaneSource:
    """Display planes read from the input image named in the result's settings (None if it moved)."""
    from ..io import open_image, with_axes
    from ..overlay import display_plane

    source = image.provenance.get("input")
    try:
        data = open_image(source) if source else None
        if data is not None and image.provenance.get("input_axes"):
            data = with_axes(data, image.provenance["input_axes"])
    except USER_ERRORS:  # the report still shows the heatmaps
        data = None
    if data is None:
        return lambda plane: None
    plane_axes = "".join(a for a in data.axes if a not in "CYXS")
    shape = tuple(data.shape[data.axes.index(a)] for a in plane_axes)
    channel = image.provenance.get("channel")

    def plane(flat: int):
        index = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()
        try:
            return display_plane(data.data, data.axes, plane_axes, index, channel)
        except USER_ERRORS:
            return None

    return plane


def parasitemia_chart(summary: pd.DataFrame) -> bytes:
    """Parasitemia per image with its interval, the pooled value as a band."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = summary[summary["image"] != POOLED]
    pooled = summary[summary["image"] == POOLED].iloc[0]
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(rows) + 1.4), dpi=100, layout="constrained")
    y = np.arange(len(rows))[::-1]
    est = 100 * rows["parasitemia"].to_numpy(float)
    low, high = 100 * rows["parasitemia_low"].to_numpy(float), 100 * rows["parasitemia_high"].to_numpy(float)
    ax.axvspan(100 * pooled["parasitemia_low"], 100 * pooled["parasitemia_high"], color="0.9", label="all images: 95% interval")
    ax.axvline(100 * pooled["parasitemia"], color="0.5", lw=1, label="all images")
    ax.errorbar(est, y, xerr=[np.nan_to_num(est - low), np.nan_to_num(high - est)], fmt="o", color="#c0392b",
                ecolor="#c0392b", capsize=3, label="image: accepted / red cells, 95% interval")
    ax.set_yticks(y, [str(s)[-38:] for s in rows["image"]], fontsize=7)
    ax.set_xlabel("parasitemia (% of red cells)")
    ax.set_xlim(left=0)
    fig.legend(fontsize=7, loc="outside lower center", ncol=3, frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def build_html(images: list[ReviewedImage], summary: pd.DataFrame, *, planes: Callable[[ReviewedImage], PlaneSource],
               title: str = "Parasitemia report") -> str:
    pooled = summary[summary["image"] == POOLED].iloc[0]
    per_ul = "parasites_per_ul" in summary.columns
    head = ["image", "red cells", "candidates", "accepted", "rejected", "undecided", "parasitemia", "95% interval"]
    if per_ul:
        head.append("parasites/µL (95% interval)")
    body = []
    for _, row in summary.iterrows():
        cells = [html.escape(str(row["image"])), row["cells"], row["candidate_cells"], row["accepted"], row["rejected"],
                 row["unreviewed"], _percent(row["parasitemia"]),
                 f"{_percent(row['parasitemia_low'])} – {_percent(row['parasitemia_high'])}"]
        if per_ul:
            cells.append(f"{row['parasites_per_ul']:.0f} ({row['parasites_per_ul_low']:.0f} – "
                         f"{row['parasites_per_ul_high']:.0f})" if not math.isnan(row["parasites_per_ul"]) else "–")
        strong = ' class="pooled"' if row["image"] == POOLED else ""
        body.append(f"<tr{strong}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    galleries = []
    for image in images:
        tiles = accepted_tiles(image, planes(image))
        n = image.counts.accepted
        more = f" (the {len(tiles)} highest-scoring shown)" if n > len(tiles) else ""
        figures = "".join(f'<figure>{_img(png, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>'
                          for caption, png in tiles) or "<p class='note'>no accepted cells</p>"
        galleries.append(f"<h3>{html.escape(image.stem)}: {n} accepted{more}</h3><div class='tiles'>{figures}</div>")
    provenance = images[0].provenance if images else {}
    first = images[0].stem if images else ""
    settings = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(provenance[k]))}</td></tr>"
                       for k in SETTINGS_SHOWN if provenance.get(k) not in (None, ""))
    models = sorted({str(i.provenance.get("model")) for i in images if i.provenance.get("model")})
    if len(models) > 1:
        settings += f"<tr><th>models (differ between images)</th><td>{html.escape(', '.join(models))}</td></tr>"
    low, high = pooled["parasitemia_low"], pooled["parasitemia_high"]
    headline = (f"<p class='big'>{_percent(pooled['parasitemia'])} <span>of {int(pooled['cells'])} red cells "
                f"(95% interval {_percent(low)} – {_percent(high)}); {int(pooled['accepted'])} accepted, "
                f"{int(pooled['unreviewed'])} candidates undecided</span></p>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}table{border-collapse:collapse;"
             "font-size:13px}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}td:first-child,"
             "th{text-align:left}tr.pooled{font-weight:bold;background:#f4f4f4}.big{font-size:28px;margin:.2em 0}"
             ".big span{font-size:15px;color:#555}.tiles{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;"
             "font-size:11px;color:#555}.note{color:#666;font-size:13px}table.settings td{text-align:left}")
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{headline}"
            f"<p class='note'>{len(images)} image(s); made {made}.</p>"
            f"<h2>Parasitemia per image</h2>{_img(parasitemia_chart(summary), 'parasitemia per image')}"
            f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(body)}</table>"
            f"<p class='note'>{html.escape(METHOD)}</p>"
            f"<h2>Accepted cells</h2><p class='note'>Each picture: the cell (left) and its anomaly heatmap (right); "
            f"the cell's outline in cyan.</p>{''.join(galleries)}"
            f"<h2>Model and settings</h2><p class='note'>As recorded with the results of {html.escape(first)}.</p>"
            f"<table class='settings'>{settings}</table></body></html>")


def write_html(text: str, path: str | Path) -> Path:
    path = Path(path)
    with atomic_outputs([path]) as tmp:
        tmp[0].write_text(text, encoding="utf-8")
    return path
