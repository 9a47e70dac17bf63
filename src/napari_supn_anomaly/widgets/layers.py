"""Between napari layers and the pipeline: what a layer's axes are, and a result as layers.

No science here: only array bookkeeping, display settings and layer replacement.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..overlay import CANDIDATE_COLOUR, CELL_COLOUR, HEATMAP_STOPS, SCALE_TOP, heatmap_limits
from ..pipeline.candidates import strongest_region_per_cell
from ..pipeline.result import DetectionResult
from ..pipeline.axes import default_axes
from ..review.statuses import carry_decisions, statuses_for_candidates

OUTPUT_KEY = "supn_anomaly_output"   # layer.metadata[OUTPUT_KEY] = {"role": ..., "source": image layer name}
ROLES = ("heatmap", "cells", "candidates")
GREY_FROM_RGB = "grey (mean of R, G, B)"


def layer_axes(layer) -> str:
    """Axes of an image layer: as recorded when the plugin opened it, else a guess."""
    axes = (layer.metadata or {}).get("axes")
    if axes and len(axes) == layer.data.ndim:
        return axes
    return default_axes(layer.data.shape, rgb=bool(getattr(layer, "rgb", False)))


def layer_channel_names(layer) -> list[str]:
    axes = layer_axes(layer)
    if "C" not in axes:
        return []
    n = layer.data.shape[axes.index("C")]
    names = list((layer.metadata or {}).get("channel_names") or [])
    return names if len(names) == n else [f"channel {i}" for i in range(n)]


def channel_choices(layer, model) -> list[tuple[str, int]]:
    """(name, index) of the channels a one-channel model can read in ``layer``; index -1: grey from RGB.
    Empty when there is nothing to choose."""
    if layer is None or model is None or model.channels != 1:
        return []
    axes = layer_axes(layer)
    if "C" in axes:
        return [(name, i) for i, name in enumerate(layer_channel_names(layer))]
    if "S" in axes:
        return [(GREY_FROM_RGB, -1), ("red", 0), ("green", 1), ("blue", 2)]
    return []


def output_geometry(layer, axes: str) -> dict:
    """Scale, translate and axis labels of the outputs: the image's, without its channel and RGB axes."""
    spatial = [a for a in axes if a != "S"]  # napari has no scale entry for RGB samples
    keep = [i for i, a in enumerate(spatial) if a != "C"]
    return {"scale": [float(layer.scale[i]) for i in keep], "translate": [float(layer.translate[i]) for i in keep],
            "axis_labels": [layer.axis_labels[i] for i in keep]}


def candidate_markers(result: DetectionResult) -> pd.DataFrame:
    """The candidates layer's rows: one circle per candidate cell, at its strongest region (a cell with
    a parasite's many small regions would otherwise carry a pile of overlapping circles)."""
    return strongest_region_per_cell(result.candidate_table)


def candidate_points(result: DetectionResult, markers: pd.DataFrame) -> np.ndarray:
    cols = [a.lower() for a in result.plane_axes] + ["y", "x"]
    if len(markers) == 0:
        return np.zeros((0, len(cols)), float)
    return markers[cols].to_numpy(float)


def candidate_features(result: DetectionResult, markers: pd.DataFrame) -> pd.DataFrame:
    cols = ["score", "area", "cell_id", "status", "mean_score", "candidate_id"]
    if result.is_stack:
        cols.append("plane")
    return markers[cols].reset_index(drop=True)


def cell_features(result: DetectionResult) -> pd.DataFrame | None:
    """Features of the cells layer (napari's Labels features need an ``index`` column); 2D only,
    since cell ids restart in every plane of a stack."""
    if result.is_stack:
        return None
    table = result.cell_table
    zero = pd.DataFrame({"index": [0], "cell_id": [0], "y": [np.nan], "x": [np.nan], "area": [0],
                         "score": [np.nan], "candidate": [False]})
    return pd.concat([zero, table.assign(index=table["cell_id"])[zero.columns]], ignore_index=True)


def point_size(result: DetectionResult) -> float:
    """The diameter of a candidate's circle: well outside a parasite-sized spot, inside its cell."""
    diameter = result.provenance.get("cell_diameter_px", 20)
    if isinstance(diameter, list):
        diameter = float(np.median(diameter))
    return max(8.0, 0.6 * float(diameter))


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def heatmap_colormap():
    """The heatmap's colours (as in the overlay pictures), transparent where the model explains the
    cell, so that it shows over bright and dark pixels alike; the colour changes at the threshold."""
    from napari.utils import Colormap

    controls = [value / SCALE_TOP for value, _ in HEATMAP_STOPS]
    return Colormap([rgba for _, rgba in HEATMAP_STOPS], controls=controls, name="supn anomaly")


def cell_colormap():
    """Every cell in one colour (as in the overlay pictures), apart from the yellow candidates."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: (*CELL_COLOUR, 1.0), 0: (0.0, 0.0, 0.0, 0.0)})


def heatmap_metadata(result: DetectionResult) -> dict:
    """What the heatmap's values are and where its colour scale puts the threshold."""
    return {"units": result.provenance.get("heatmap_units", "score"), "threshold": float(result.threshold),
            "colour_scale": f"0 to {SCALE_TOP:g} x threshold; transparent below half the threshold, blue up to "
                            "it, orange to red above it"}


def result_layer_data(result: DetectionResult, image_layer, axes: str) -> dict[str, tuple]:
    """role -> (data, kwargs, layer type) for the three output layers of one result."""
    geometry = output_geometry(image_layer, axes)
    source = image_layer.name
    markers = candidate_markers(result)
    provenance = dict(result.provenance)

    def meta(role):
        return {OUTPUT_KEY: {"role": role, "source": source}, "provenance": provenance}

    return {
        "heatmap": (result.heatmap, dict(name=f"{source} anomaly", colormap=heatmap_colormap(),
                                         blending="translucent", opacity=0.55,
                                         contrast_limits=heatmap_limits(result.threshold, result.heatmap),
                                         metadata={**meta("heatmap"), **heatmap_metadata(result)}, **geometry),
                    "image"),
        "cells": (result.cells, dict(name=f"{source} cells", opacity=0.6, colormap=cell_colormap(),
                                     metadata=meta("cells"), features=cell_features(result), **geometry), "labels"),
        "candidates": (candidate_points(result, markers), dict(
            name=f"{source} candidates", features=candidate_features(result, markers), size=point_size(result),
            symbol="disc", face_color="transparent", border_color=_hex(CANDIDATE_COLOUR), border_width=0.06,
            border_width_is_relative=True, metadata={**meta("candidates"), **review_tables(result)},
            ndim=len(result.plane_axes) + 2,
            **geometry), "points"),
    }


def review_tables(result: DetectionResult) -> dict:
    """What the Review widget reads from the candidates layer: the result's tables (with the
    ``status`` column) and how to cut them again."""
    return {"cell_table": result.cell_table, "candidate_table": result.candidate_table,
            "plane_axes": result.plane_axes, "threshold": float(result.threshold)}


def find_outputs(viewer, source: str) -> dict:
    """The output layers this plugin made earlier for the image layer called ``source``."""
    found = {}
    for layer in viewer.layers:
        tag = (layer.metadata or {}).get(OUTPUT_KEY)
        if isinstance(tag, dict) and tag.get("source") == source and tag.get("role") in ROLES:
            found[tag["role"]] = layer
    return found


def show_result(viewer, result: DetectionResult, image_layer, axes: str) -> dict:
    """Add the output layers, or update the ones from an earlier run on the same image in place
    (keeping the user's display settings). Other layers are never touched."""
    existing = find_outputs(viewer, image_layer.name)
    layers = {}
    for role, (data, kwargs, kind) in result_layer_data(result, image_layer, axes).items():
        layer = existing.get(role)
        ndim = kwargs["ndim"] if role == "candidates" else np.ndim(data)
        if layer is not None and layer.ndim == ndim:
            _update_layer(layer, role, data, kwargs)
        else:
            if layer is not None:
                viewer.layers.remove(layer)
            kwargs = {k: v for k, v in kwargs.items() if not (k == "features" and v is None)}
            layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
            if role == "cells":
                layer.contour = 1  # thin outlines keep the image and the heatmap visible
        layers[role] = layer
    return layers


def _update_layer(layer, role, data, kwargs):
    layer.metadata = kwargs["metadata"]
    layer.scale = kwargs["scale"]
    layer.translate = kwargs["translate"]
    layer.axis_labels = kwargs["axis_labels"]
    if role == "candidates":
        update_candidates(layer, data, kwargs["features"])
        return
    layer.data = data
    if role == "heatmap":
        layer.contrast_limits = kwargs["contrast_limits"]  # the colour still changes at the threshold
    elif kwargs.get("features") is not None:
        layer.features = kwargs["features"]


def show_threshold(viewer, layers: dict, result: DetectionResult) -> None:
    """Show ``result`` re-thresholded in the output ``layers`` made for it (role -> layer): new
    candidates, cell features and provenance. Layers the user closed are left alone."""
    layers = {role: layer for role, layer in layers.items() if layer in viewer.layers}
    points = layers.get("candidates")
    if points is None:
        return
    tables = review_tables(result)
    old = (points.metadata or {}).get("cell_table")
    markers = candidate_markers(result)
    features = candidate_features(result, markers)
    if isinstance(old, pd.DataFrame):  # a review in progress keeps its decisions at any threshold
        tables["cell_table"] = carry_decisions(old, tables["cell_table"])
        if len(features):
            features["status"] = statuses_for_candidates(tables["cell_table"], markers)
    update_candidates(points, candidate_points(result, markers), features)
    features = cell_features(result)
    if "cells" in layers and features is not None:
        layers["cells"].features = features
    for layer in layers.values():
        layer.metadata = {**layer.metadata, "provenance": dict(result.provenance)}
    points.metadata = {**points.metadata, **tables}
    if "heatmap" in layers:  # the colour change follows the threshold
        heatmap = layers["heatmap"]
        heatmap.contrast_limits = heatmap_limits(result.threshold, result.heatmap)
        heatmap.metadata = {**heatmap.metadata, **heatmap_metadata(result)}


def update_candidates(layer, points: np.ndarray, features: pd.DataFrame) -> None:
    """Replace a Points layer's points and features together (re-thresholding)."""
    layer.selected_data = set()
    layer.data = points
    layer.features = features
    layer.refresh()
