"""Layers > Segment > Find red cells: the plugin's classical cell segmentation as a small widget."""
from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui import magic_factory

if TYPE_CHECKING:
    import napari


@magic_factory(
    modality={"choices": ["fluorescence", "brightfield", "brightfield-stained"],
              "tooltip": "fluorescence: bright cells on dark; bright-field: dark cells on light; "
                         "stained: Giemsa cells on white"},
    cell_diameter={"label": "cell diameter (px, 0 = measure)", "min": 0.0, "max": 2000.0},
    exclude_edges={"label": "leave out cells cut by the edge"},
    call_button="Find cells",
)
def segment_cells_widget(image: "napari.layers.Image", modality: str = "fluorescence", cell_diameter: float = 0.0,
                         exclude_edges: bool = True) -> "napari.types.LayerDataTuple | None":
    import numpy as np
    from napari.utils.notifications import show_error

    from ..pipeline.segmentation import segment_cells
    from .layers import layer_axes

    if image is None:
        show_error("Choose an image layer first.")
        return None
    axes = layer_axes(image)
    data = np.asarray(image.data)
    if axes not in ("YX", "YXS"):
        # stacks and multi-channel layers: the plane and channel on screen
        data = np.asarray(image._slice.image.raw) if hasattr(image, "_slice") else data
        axes = "YXS" if data.ndim == 3 else "YX"
    plane = np.moveaxis(data, -1, 0) if axes == "YXS" else data
    try:
        seg = segment_cells(plane, modality, cell_diameter or None, exclude_edges=exclude_edges)
    except ValueError as exc:
        show_error(f"Cannot find cells: {exc}")
        return None
    return (seg.labels, {"name": f"{image.name} cells", "metadata": {"cell_diameter_px": seg.diameter_px}}, "labels")
