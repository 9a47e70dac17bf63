"""Between napari layers and the pipeline: what a layer's axes are, and a result as layers.

No science here: only array bookkeeping, display settings and layer replacement.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..pipeline.result import DetectionResult
from ..pipeline.axes import default_axes

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


def output_geometry(layer, axes: str) -> tuple[list[float], list[float]]:
    """Scale and translate of the outputs: the image's, without its channel and RGB axes."""
    scale = list(np.asarray(layer.scale, float))
    translate = list(np.asarray(layer.translate, float))
    spatial = [a for a in axes if a != "S"]  # napari has no scale entry for RGB samples
    keep = [i for i, a in enumerate(spatial) if a != "C"]
    return [scale[i] for i in keep], [translate[i] for i in keep]


def candidate_points(result: DetectionResult) -> np.ndarray:
    table = result.candidate_table
    cols = [a.lower() for a in result.plane_axes] + ["y", "x"]
    if len(table) == 0:
        return np.zeros((0, len(cols)), float)
    return table[cols].to_numpy(float)


def candidate_features(result: DetectionResult) -> pd.DataFrame:
    table = result.candidate_table
    cols = ["score", "area", "cell_id", "status", "mean_score", "candidate_id"]
    if result.is_stack:
        cols.append("plane")
    return table[cols].reset_index(drop=True)


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
    diameter = result.provenance.get("cell_diameter_px", 20)
    if isinstance(diameter, list):
        diameter = float(np.median(diameter))
    return max(4.0, 0.45 * float(diameter))


def heatmap_limits(result: DetectionResult) -> tuple[float, float]:
    top = float(np.nanmax(result.heatmap)) if result.heatmap.size else 1.0
    low = 0.5 * result.threshold if result.threshold > 0 else 0.0
    return (low, max(top, low + 1e-6))


def result_layer_data(result: DetectionResult, image_layer, axes: str) -> dict[str, tuple]:
    """role -> (data, kwargs, layer type) for the three output layers of one result."""
    scale, translate = output_geometry(image_layer, axes)
    source = image_layer.name
    provenance = dict(result.provenance)

    def meta(role):
        return {OUTPUT_KEY: {"role": role, "source": source}, "provenance": provenance}

    return {
        "heatmap": (result.heatmap, dict(name=f"{source} anomaly", colormap="inferno", blending="additive",
                                         contrast_limits=heatmap_limits(result), scale=scale,
                                         translate=translate, metadata=meta("heatmap")), "image"),
        "cells": (result.cells, dict(name=f"{source} cells", opacity=0.5, scale=scale, translate=translate,
                                     metadata=meta("cells"), features=cell_features(result)), "labels"),
        "candidates": (candidate_points(result), dict(
            name=f"{source} candidates", features=candidate_features(result), size=point_size(result),
            symbol="ring", face_color="yellow", border_width=0, scale=scale, translate=translate,
            metadata=meta("candidates"), ndim=len(result.plane_axes) + 2), "points"),
    }


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
                layer.contour = 2  # outlines keep the image and the heatmap visible
                layer.opacity = 0.8
        layers[role] = layer
    return layers


def _update_layer(layer, role, data, kwargs):
    layer.metadata = kwargs["metadata"]
    layer.scale = kwargs["scale"]
    layer.translate = kwargs["translate"]
    if role == "candidates":
        update_candidates(layer, data, kwargs["features"])
        return
    layer.data = data
    if role == "heatmap":
        layer.contrast_limits = kwargs["contrast_limits"]
    elif kwargs.get("features") is not None:
        layer.features = kwargs["features"]


def show_threshold(viewer, layers: dict, result: DetectionResult) -> None:
    """Show ``result`` re-thresholded in the output ``layers`` made for it (role -> layer): new
    candidates, cell features and provenance. Layers the user closed are left alone."""
    layers = {role: layer for role, layer in layers.items() if layer in viewer.layers}
    points = layers.get("candidates")
    if points is None:
        return
    update_candidates(points, candidate_points(result), candidate_features(result))
    features = cell_features(result)
    if "cells" in layers and features is not None:
        layers["cells"].features = features
    for layer in layers.values():
        layer.metadata = {**layer.metadata, "provenance": dict(result.provenance)}


def update_candidates(layer, points: np.ndarray, features: pd.DataFrame) -> None:
    """Replace a Points layer's points and features together (re-thresholding)."""
    layer.selected_data = set()
    layer.data = points
    layer.features = features
    layer.refresh()
