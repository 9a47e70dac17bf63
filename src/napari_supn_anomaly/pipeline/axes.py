"""Image axes: naming them, and reading one plane with the channels a model reads.

Axes are named with the letters T, Z (plane axes; any other letter is treated as a plane axis
too), C (channels), S (RGB samples), Y and X.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError, PlaneTooLarge
from ..models import AnomalyModel

SPATIAL = "YX"
CHANNEL_AXES = "CS"


def check_image_array(data):
    """``data`` as an array of intensities (numpy, dask and zarr arrays stay lazy; lists become
    numpy); InputError for what is not one: a ragged or nested list, objects, text, yes/no values
    (a mask), complex numbers."""
    if not (hasattr(data, "dtype") and hasattr(data, "shape") and hasattr(data, "__getitem__")):
        try:
            data = np.asarray(data)
        except (TypeError, ValueError) as exc:
            raise InputError(f"the image is not an array of numbers ({str(exc).splitlines()[0]})") from None
    dtype = np.dtype(data.dtype)
    if dtype.kind == "b":
        raise InputError("the image holds yes/no (boolean) values: that is a mask, not an image; choose the image")
    if dtype.kind == "c":
        raise InputError("the image holds complex numbers; give its magnitude (absolute value) instead")
    if dtype.kind not in "uif":
        raise InputError(f"the image does not hold numbers (its values are of type {dtype}); give an image")
    return data


def normalise_axes(axes: str, ndim: int) -> str:
    if axes is not None and not isinstance(axes, str):
        raise InputError(f"the axes must be letters such as 'YX' or 'ZYX', not {axes!r}")
    axes = (axes or "").upper()
    if len(axes) != ndim:
        raise InputError(f"the axes {axes!r} do not match an image with {ndim} dimensions")
    if len(set(axes)) != len(axes):
        raise InputError(f"the axes {axes!r} name one axis twice")
    if not axes.endswith("YX") and not axes.endswith("YXS"):
        raise InputError(f"the image must end with the axes Y, X (or Y, X, RGB); got {axes!r}")
    return axes


def default_axes(shape: Sequence[int], rgb: bool = False) -> str:
    """A guess for an array without axis names: (..., Y, X[, S])."""
    ndim = len(shape)
    if rgb:
        lead = "TZ"[-(ndim - 3):] if ndim > 3 else ""
        return ("Q" * max(0, ndim - 3 - len(lead)) + lead + "YXS")[-ndim:]
    lead = "TZ"[-(ndim - 2):] if ndim > 2 else ""
    return ("Q" * max(0, ndim - 2 - len(lead)) + lead + "YX")[-ndim:]


def plane_axes_of(axes: str) -> str:
    return "".join(a for a in axes if a not in SPATIAL + CHANNEL_AXES)


def select_channels(axes: str, shape: Sequence[int], model: AnomalyModel,
                    channel: int | Sequence[int] | None) -> tuple[str | None, list[int] | None]:
    """Which axis holds channels and which of its entries the model reads (None: grey from RGB)."""
    dims = dict(zip(axes, shape))
    want = model.channels
    chan_axis = "C" if "C" in dims else ("S" if "S" in dims else None)
    if chan_axis is None:
        if want != 1:
            raise InputError(f"the model {model.name!r} needs {want} channels but the image has one")
        if channel is not None and ([int(channel)] if np.isscalar(channel) else [int(c) for c in channel]) != [0]:
            raise InputError(f"channel {channel} does not exist; the image has one channel (leave out the channel)")
        return None, None
    n = dims[chan_axis]
    if channel is not None:
        picked = [int(channel)] if np.isscalar(channel) else [int(c) for c in channel]
        bad = [c for c in picked if not 0 <= c < n]
        if bad:
            raise InputError(f"channel {bad[0]} does not exist; the image has channels 0 to {n - 1}")
        if len(picked) != want:
            raise InputError(f"the model {model.name!r} reads {want} channel(s); {len(picked)} were chosen")
        return chan_axis, picked
    if n == want:
        return chan_axis, list(range(n))
    if want == 1 and chan_axis == "S":
        return chan_axis, None  # a grey-level model on an RGB image sees the mean of R, G, B
    if want == 3 and chan_axis == "S" and n == 4:
        return chan_axis, [0, 1, 2]  # RGBA: the alpha channel is not an intensity
    raise InputError(f"the image has {n} channels and the model {model.name!r} reads {want}; "
                     "choose the channel to analyse")


def read_plane(data, axes: str, plane_idx: tuple[int, ...], chan_axis: str | None,
               channels: list[int] | None) -> np.ndarray:
    """One plane as [C, Y, X] float32 (reads only that plane from a lazy array)."""
    plane_axes = plane_axes_of(axes)
    index = []
    it = iter(plane_idx)
    for a in axes:
        index.append(next(it) if a in plane_axes else slice(None))
    plane = _as_float32(_read(data, tuple(index)))
    rest = [a for a in axes if a not in plane_axes]
    if chan_axis is None:
        return plane[None]
    plane = np.moveaxis(plane, rest.index(chan_axis), 0)
    if channels is None:
        return plane[:3].mean(0, keepdims=True)  # grey from RGB; an alpha channel is not an intensity
    return plane[channels]


def _read(data, index: tuple) -> np.ndarray:
    """One plane of a (lazy) array; a file that cannot be decoded becomes an InputError."""
    try:
        return np.asarray(data[index])
    except MemoryError:
        raise PlaneTooLarge("the plane does not fit in the free memory; crop the image into smaller fields") from None
    except Exception as exc:  # lazy readers raise many types (DeflateError, TiffFileError, OSError ...)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"the image data could not be read: the file is damaged or cut short ({detail})") from None


def _as_float32(plane: np.ndarray) -> np.ndarray:
    """The plane as float32; InputError for values that are not numbers or too large for float32."""
    if plane.dtype.kind == "f" and not np.isfinite(plane).all():
        raise InputError("the image contains NaN or infinite values; fill or remove them first")
    with np.errstate(over="ignore", invalid="ignore"):
        out = plane.astype(np.float32)
    if plane.dtype.kind == "f" and plane.dtype.itemsize > 4 and not np.isfinite(out).all():
        peak = float(np.abs(plane).max())
        raise InputError(f"the image's values reach {peak:.3g}, beyond what can be analysed (about 3e38); rescale "
                         "the image (e.g. to 0-65535) first")
    return out
