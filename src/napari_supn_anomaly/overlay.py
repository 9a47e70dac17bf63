"""Pictures of a detection result for people, one PNG per plane.

Left, the image as it is (bright stays bright, an RGB field keeps its colours) with thin outlines:
the cells, the candidate regions (a ring a few pixels outside each region, so the spot it marks
stays visible) and, for the built-in samples, the truth. Right, the heatmap on its own
colour scale, whose colour changes at the threshold. A legend names the outlines and a bar gives
the scale in pixels. napari's heatmap layer (``widgets/layers.py``) uses the same colours.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_outputs

# The heatmap's colours at multiples of the threshold T: nothing up to T/2, a faint blue up to T,
# then orange to red at 2T (the top of the scale), apart from the yellow candidate rings. Alpha
# is used over the image in napari.
HEATMAP_STOPS = (
    (0.0, (0.0, 0.0, 0.0, 0.0)),
    (0.5, (0.2, 0.3, 0.9, 0.0)),
    (0.999, (0.35, 0.55, 1.0, 0.55)),
    (1.0, (1.0, 0.55, 0.0, 0.9)),
    (2.0, (1.0, 0.05, 0.15, 1.0)),
)
SCALE_TOP = HEATMAP_STOPS[-1][0]
CELL_COLOUR = (0.3, 0.85, 1.0)      # cyan
CANDIDATE_COLOUR = (1.0, 0.85, 0.0)  # yellow
TRUTH_COLOUR = (0.2, 1.0, 0.2)       # green
TRUTH_RING_PX = 1  # how far outside a true parasite its outline runs


def candidate_ring_px(cell_diameter_px: float) -> int:
    """How far outside a candidate region its outline runs: clear of the spot, inside the cell."""
    return max(3, round(0.15 * cell_diameter_px))


def _wrapped(text: str, ax, fontsize: float) -> str:
    """``text`` broken into lines no wider than ``ax`` (a long score rule ran over the colour bar)."""
    import textwrap

    width_pt = ax.get_position().width * ax.figure.get_figwidth() * 72
    return textwrap.fill(text, max(20, int(width_pt / (0.55 * fontsize))))


def heatmap_limits(threshold: float, heatmap: np.ndarray) -> tuple[float, float]:
    """The value range the heatmap's colours span: 0 to twice the threshold (the colour changes at
    the threshold); without a positive threshold, the heatmap's own range."""
    if threshold > 0:
        return 0.0, SCALE_TOP * threshold
    finite = heatmap[np.isfinite(heatmap)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return lo, max(hi, lo + 1e-6)


def display_plane(image, axes: str, plane_axes: str, plane_index: tuple[int, ...], channel=None) -> np.ndarray:
    """One plane of ``image`` as it is shown: [Y, X] grey or [Y, X, 3] RGB, values in 0-1.

    An 8-bit image is shown as it is (0 black, 255 white); others from their 0.5th to their
    99.95th percentile, so that a few bright parasite pixels stay the brightest. ``channel``: the
    channel analysed, shown for a multi-channel image (default the first).
    """
    planes = iter(plane_index)
    if isinstance(channel, (list, tuple)):
        channel = channel[0]
    index = tuple(next(planes) if a in plane_axes else (channel or 0) if a == "C" else slice(None) for a in axes)
    raw = np.asarray(image[index])
    img = raw.astype(np.float32)
    if img.ndim == 3:  # RGB(A)
        img = img[..., :3]
    if raw.dtype == np.uint8:
        return img / 255.0
    lo, hi = np.percentile(img, (0.5, 99.95))
    return np.clip((img - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def _ring(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` grown by ``px`` pixels in every direction (its outline is then a round ring)."""
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    return ndi.binary_dilation(mask, structure=disk(px)) if px > 0 and mask.any() else mask


def _colour_map(opaque: bool):
    from matplotlib.colors import LinearSegmentedColormap

    colours = []
    for value, (r, g, b, a) in HEATMAP_STOPS:
        colours.append((value / SCALE_TOP, (r * a, g * a, b * a) if opaque else (r, g, b, a)))
    return LinearSegmentedColormap.from_list("supn_heatmap", colours)


def _scale_bar_px(width: int) -> int:
    for size in (1000, 500, 200, 100, 50, 20, 10, 5):
        if size <= width / 5:
            return size
    return 1


def overlay_figure(image_plane: np.ndarray, heatmap: np.ndarray, cells: np.ndarray, regions: np.ndarray,
                   threshold: float, *, units: str = "score", title: str = "", truth: np.ndarray | None = None,
                   truth_label: str = "true parasite", ring_px: int = 4):
    """The figure of one plane (``image_plane`` as from :func:`display_plane`); ``truth_label``: the
    legend's word for one ``truth`` region; ``ring_px``: how far outside each candidate region its
    outline runs."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
    from skimage.segmentation import find_boundaries

    h, w = cells.shape
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2 * h / w + 1.0), dpi=110, layout="constrained")
    left.imshow(image_plane, cmap=None if image_plane.ndim == 3 else "gray", vmin=0, vmax=1,
                interpolation="nearest")
    edges = np.zeros((h, w, 4), np.float32)
    edges[find_boundaries(cells, mode="inner")] = (*CELL_COLOUR, 0.45)
    left.imshow(edges, interpolation="nearest")
    handles = [Line2D([], [], color=CELL_COLOUR, lw=1, label="cell analysed")]
    if truth is not None and truth.any():
        left.contour(_ring(truth > 0, TRUTH_RING_PX), levels=[0.5], colors=[TRUTH_COLOUR], linewidths=0.8)
        handles.append(Line2D([], [], color=TRUTH_COLOUR, lw=1, label=truth_label))
    if regions.any():
        for ax in (left, right):
            ax.contour(_ring(regions > 0, ring_px), levels=[0.5], colors=[CANDIDATE_COLOUR],
                       linewidths=0.9)
    handles.append(Line2D([], [], color=CANDIDATE_COLOUR, lw=1, label=f"candidate (score >= {threshold:.3g})"))
    size = _scale_bar_px(w)
    corner = image_plane[int(0.85 * h):, int(0.7 * w):]
    bar_colour = "black" if corner.size and float(corner.mean()) > 0.5 else "white"  # seen on a light field too
    left.add_artist(AnchoredSizeBar(left.transData, size, f"{size} px", "lower right", color=bar_colour,
                                    frameon=False, size_vertical=max(1, h // 150), pad=0.4))
    left.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=len(handles),
                frameon=False, fontsize=8)
    left.set_title("image", fontsize=9)

    vmin, vmax = heatmap_limits(threshold, heatmap)
    shown = right.imshow(heatmap, cmap=_colour_map(opaque=True) if threshold > 0 else "magma",
                         vmin=vmin, vmax=vmax, interpolation="nearest")
    right.imshow(np.where(edges[..., 3:] > 0, (0.5, 0.5, 0.5, 0.35), 0.0), interpolation="nearest")
    bar = fig.colorbar(shown, ax=right, fraction=0.046, pad=0.02, extend="both")
    if threshold > 0:
        bar.set_ticks([0, threshold / 2, threshold, vmax])
        bar.set_ticklabels(["0", f"{threshold / 2:.3g}", f"threshold {threshold:.3g}", f"{vmax:.3g}"])
    bar.ax.tick_params(labelsize=8)
    right.set_title(_wrapped(f"heatmap: {units}", right, fontsize=9), fontsize=9)
    for ax in (left, right):
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_overlays(result, image, axes: str, out_dir: str | Path, stem: str, *, channel=None,
                   title: str | Sequence[str] = "", truth: np.ndarray | None = None,
                   truth_label: str = "true parasite") -> list[Path]:
    """``<stem>_overlay.png``, or ``<stem>_plane<k>_overlay.png`` for each plane of a stack, in ``out_dir``.

    ``image`` and ``axes``: the image the result was found in (as given to the pipeline);
    ``channel``: the channel analysed (default: as recorded in the result); ``title``: one for
    all planes or one per plane; ``truth``: true parasite labels shaped like ``result.cells`` (or
    infected cells', named by ``truth_label`` in the legend).
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if channel is None:
        channel = result.provenance.get("channel")
    regions = result.candidate_mask()
    units = result.provenance.get("heatmap_units", "score")
    diameters = np.atleast_1d(result.provenance.get("cell_diameter_px", 20.0)).astype(float)
    titles = [title] * result.n_planes if isinstance(title, str) else list(title)
    paths = []
    for flat in range(result.n_planes):
        idx = result.plane_index(flat)
        fig = overlay_figure(display_plane(image, axes, result.plane_axes, idx, channel), result.heatmap[idx],
                             result.cells[idx], regions[idx], result.threshold, units=units, title=titles[flat],
                             truth=None if truth is None else truth[idx], truth_label=truth_label,
                             ring_px=candidate_ring_px(diameters[min(flat, len(diameters) - 1)]))
        path = out / (f"{stem}_plane{flat}_overlay.png" if result.is_stack else f"{stem}_overlay.png")
        try:
            with atomic_outputs([path]) as (tmp,):  # a picture under its name is always whole
                fig.savefig(tmp, format="png")
        finally:
            plt.close(fig)
        paths.append(path)
    return paths
