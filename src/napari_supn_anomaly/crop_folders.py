"""Folders of single-cell crops (PNG, JPEG, TIFF; 8- or 16-bit; gray or colour) and their masks.

A crop is returned as float32 [C, H, W] in its file's own intensity units; a mask as bool
[H, W]. Masks are matched to crops by their path relative to the folder, or failing that by
file name without the extension (``cell_001.png`` matches ``cell_001.tif``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from .errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class CropFolder:
    """The crops of one folder: names relative to it, images [C, H, W], masks [H, W] or None."""

    root: Path
    names: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray | None]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def channels(self) -> int:
        return self.images[0].shape[0] if self.images else 0


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (subfolders included, hidden files skipped), sorted."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise InputError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder of images")
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _channels_first(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3:
        if arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 2, 3, 4):
            arr = np.moveaxis(arr, -1, 0)
        if arr.shape[0] == 4:  # RGBA: the alpha channel is not an intensity
            arr = arr[:3]
        return arr
    squeezed = np.squeeze(arr)
    if squeezed.ndim in (2, 3) and squeezed.ndim < arr.ndim:
        return _channels_first(squeezed)
    raise ValueError(f"expected a 2-D crop (optionally with channels), got an array of shape {arr.shape}")


def read_crop(path: str | Path) -> np.ndarray:
    """One crop as float32 [C, H, W]; raises InputError naming the file if it cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = tifffile.imread(path)
        else:
            with Image.open(path) as im:
                if im.mode in ("P", "PA", "LA", "CMYK", "YCbCr"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                arr = np.asarray(im)
        arr = _channels_first(np.asarray(arr))
    except (OSError, ValueError, UnidentifiedImageError, tifffile.TiffFileError) as exc:
        raise InputError(f"cannot read {path.name}: not a readable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    if arr.dtype.kind not in "uif" or min(arr.shape[1:]) < 4:
        raise InputError(f"cannot use {path.name}: it is not a 2-D intensity image (shape {arr.shape}, {arr.dtype})")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"cannot use {path.name}: it contains NaN or infinite values")
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise InputError(f"cannot use {path.name}: its values reach {float(np.abs(arr).max()):.3g}, beyond what can "
                         "be analysed; rescale it (e.g. to 0-65535)")
    return out


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file as bool [H, W]: every non-zero pixel is the cell."""
    return read_crop(path).max(0) > 0


def _mask_index(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    files = list_image_files(folder)
    by_path = {p.relative_to(folder).with_suffix("").as_posix(): p for p in files}
    by_stem: dict[str, Path] = {}
    for p in files:
        by_stem.setdefault(p.stem, p)
    return by_path, by_stem


def read_crop_folder(images: str | Path, masks: str | Path | None = None,
                     progress=None) -> CropFolder:
    """Every crop under ``images``, with the matching mask from ``masks`` where there is one.

    Raises InputError for a missing folder, a folder without images, an unreadable file, a
    mask of the wrong size, or a mask folder where no file matches any crop.
    """
    root = Path(images).expanduser()
    files = list_image_files(root)
    if not files:
        raise InputError(f"no images (PNG, JPEG or TIFF) found in {root}")
    mask_root = None if masks is None else Path(masks).expanduser()
    by_path, by_stem = _mask_index(mask_root) if mask_root is not None else ({}, {})
    if mask_root is not None and mask_root.resolve() == root.resolve():
        raise InputError("the mask folder is the image folder; give the masks their own folder")
    names, crops, cell_masks = [], [], []
    for i, f in enumerate(files):
        rel = f.relative_to(root)
        crop = read_crop(f)
        mask_file = by_path.get(rel.with_suffix("").as_posix()) or by_stem.get(f.stem)
        mask = None
        if mask_file is not None:
            mask = read_mask(mask_file)
            if mask.shape != crop.shape[1:]:
                raise InputError(f"mask {mask_file.name} is {mask.shape[1]}x{mask.shape[0]} pixels but crop "
                                 f"{rel.as_posix()} is {crop.shape[2]}x{crop.shape[1]}")
        names.append(rel.as_posix())
        crops.append(crop)
        cell_masks.append(mask)
        if progress is not None:
            progress(i + 1, len(files))
    if mask_root is not None and all(m is None for m in cell_masks):
        raise InputError(f"no file in {mask_root} matches a crop name in {root} (masks are matched by file name)")
    if mask_root is not None and not any(m is not None and m.any() for m in cell_masks):
        raise InputError(f"every mask in {mask_root} is empty (all its pixels are 0); a mask marks its cell with "
                         "non-zero pixels")
    channels = {c.shape[0] for c in crops}
    if len(channels) > 1:
        raise InputError(f"the crops in {root} mix gray and colour images ({sorted(channels)} channels)")
    return CropFolder(root, names, crops, cell_masks)


def match_channels(crops: list[np.ndarray], channels: int, channel_names: list[str], model_name: str) -> list[np.ndarray]:
    """Bring crops to the model's channel count where that loses nothing (a gray image saved as RGB).

    Raises InputError when the crops really have other channels than the model.
    """
    have = crops[0].shape[0] if crops else channels
    if have == channels:
        return crops
    if channels == 1 and have in (3, 4):
        if all(np.array_equal(c[0], c[k]) for c in crops for k in range(1, min(3, c.shape[0]))):
            return [c[:1] for c in crops]
        raise InputError(f"model {model_name!r} is for 1 channel ({', '.join(channel_names)}), "
                         f"but the crops are colour images")
    raise InputError(f"model {model_name!r} expects {channels} channel(s) ({', '.join(channel_names)}), "
                     f"but the crops have {have}")
