"""Layers > Segment > Find red cells: the cell finder on the plane on screen.

Gives two Labels layers: "<image> cells" (the red cells, the ones a model scores; paint or erase
corrections there, then pick it as "cell labels" in the Detect widget) and "<image> not red cells"
(platelets, white cells, debris and clumps, kept apart and never scored). The widget shows how
many red cells were found and their diameter, measured on the field unless given.
"""

import napari
from magicgui import magic_factory
from magicgui.widgets import Label
from napari.types import LayerDataTuple

from ..cells import MODALITIES, segment_cells


def _add_summary(widget) -> None:
    summary = Label(value="")
    widget.append(summary)

    def show(result) -> None:
        if not result:
            summary.value = ""
            return
        meta = result[0][1]["metadata"]
        names = {"platelet": "platelet(s)", "white_cell": "white cell(s)", "debris": "debris", "clump": "clump(s)"}
        others = ", ".join(f"{n} {names.get(k, k)}" for k, n in meta["kinds"].items() if k != "red_cell")
        summary.value = (f"{meta['n_cells']} red cells ({meta['n_edge']} cut by the edge), "
                         f"diameter {meta['cell_diameter_px']:.1f} px ({meta['diameter_source']})"
                         + (f"\nkept apart: {others}" if others else ""))

    widget.called.connect(show)


@magic_factory(
    modality={"choices": list(MODALITIES),
              "tooltip": "fluorescence: bright cells on dark; bright-field: dark cells on light; "
                         "stained: Giemsa cells on white"},
    cell_diameter={"label": "cell diameter (px, 0 = measure)", "min": 0.0, "max": 2000.0},
    exclude_edges={"label": "leave out cells cut by the edge",
                   "tooltip": "Off: cells cut by the field's edge are found, scored with the outside masked, "
                              "and marked in the 'edge' column"},
    call_button="Find cells",
    widget_init=_add_summary,
)
def segment_cells_widget(viewer: napari.Viewer, image: napari.layers.Image, modality: str = "fluorescence",
                         cell_diameter: float = 0.0, exclude_edges: bool = False) -> list[LayerDataTuple]:
    """Red cells of the plane on screen (stacks: the current plane; multi-channel: the current channel)."""
    import numpy as np
    from napari.utils.notifications import show_error

    from .layers import layer_axes

    if image is None:
        show_error("Choose an image layer first.")
        return None
    axes = layer_axes(image)
    spatial = [a for a in axes if a != "S"]
    position = np.round(np.asarray(image.world_to_data(viewer.dims.point))).astype(int)
    index = tuple(int(np.clip(p, 0, n - 1)) for p, n in zip(position[:-2], image.data.shape[:len(spatial) - 2]))
    plane = np.asarray(image.data[index], np.float32)
    if axes.endswith("S"):
        plane = np.moveaxis(plane, -1, 0)
    try:
        seg = segment_cells(plane, modality, cell_diameter or None, exclude_edges=exclude_edges)
    except ValueError as exc:
        show_error(f"Cannot find cells: {exc}")
        return None
    where = {"scale": list(image.scale[-2:]), "translate": list(image.translate[-2:])}
    meta = {"cell_diameter_px": seg.diameter_px, "modality": modality, "n_cells": seg.n_cells,
            "n_edge": int(seg.edge.sum()), "kinds": seg.kind_counts(),
            "diameter_source": "measured" if seg.measured else "given"}
    return [(seg.labels, dict(where, name=f"{image.name} cells", metadata=meta), "labels"),
            (seg.others, dict(where, name=f"{image.name} not red cells", opacity=0.4,
                              metadata={"kinds": list(seg.other_kinds)}), "labels")]
