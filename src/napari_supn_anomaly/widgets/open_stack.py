"""Opening a TIFF or OME-TIFF as an image layer, after the user has confirmed its axes."""
from __future__ import annotations

from pathlib import Path

from ..io import ImageData


def ask_axes(parent, image: ImageData) -> str | None:
    """The axes the user confirms for ``image`` (one letter per axis); None if they cancel."""
    from qtpy.QtWidgets import QInputDialog

    text, ok = QInputDialog.getText(
        parent, "Confirm the axes",
        f"{Path(image.path).name}: {image.describe()}\n\n"
        "One letter per axis: T time, Z focus, C channel, Y, X, S RGB colour.\n"
        "A plain 3-plane TIFF is read as RGB (S); type C if it holds three channels, Z if three planes.",
        text=image.axes)
    return text.strip().upper() if ok and text.strip() else None


def add_image_layer(viewer, image: ImageData, path: str | Path):
    """Add ``image`` with its axes, channel names and pixel size recorded in the layer's metadata."""
    rgb = image.axes.endswith("S")
    spatial = [a for a in image.axes if a != "S"]
    scale = [1.0] * len(spatial)
    if image.pixel_size:
        scale[-2:] = list(image.pixel_size)
    kwargs = dict(name=Path(path).name, rgb=rgb, scale=scale,
                  metadata={"axes": image.axes, "channel_names": image.channel_names,
                            "source_path": str(path), "pixel_size_um": image.pixel_size})
    try:
        return viewer.add_image(image.data, axis_labels=[a.lower() for a in spatial], **kwargs)
    except TypeError:  # older napari without axis_labels
        return viewer.add_image(image.data, **kwargs)
