"""Layers > Segment > Find red cells: the plugin's classical cell segmentation as a small widget."""

import napari
from magicgui import magic_factory
from napari.types import LayerDataTuple

from ..cells import MODALITIES, segment_cells


@magic_factory(
    modality={"choices": list(MODALITIES),
              "tooltip": "fluorescence: bright cells on dark; bright-field: dark cells on light; "
                         "stained: Giemsa cells on white"},
    cell_diameter={"label": "cell diameter (px, 0 = measure)", "min": 0.0, "max": 2000.0},
    exclude_edges={"label": "leave out cells cut by the edge"},
    call_button="Find cells",
)
def segment_cells_widget(viewer: napari.Viewer, image: napari.layers.Image, modality: str = "fluorescence",
                         cell_diameter: float = 0.0, exclude_edges: bool = True) -> LayerDataTuple:
    """Cells of the plane on screen (stacks: the current plane; multi-channel: the current channel)."""
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
    return (seg.labels, {"name": f"{image.name} cells", "scale": list(image.scale[-2:]),
                         "translate": list(image.translate[-2:]),
                         "metadata": {"cell_diameter_px": seg.diameter_px, "modality": modality}}, "labels")
