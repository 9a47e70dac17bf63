"""Readers for the three real datasets in ../shared/data (see its README).

Each reader returns a CellSet: raw single-cell crops [C, H, W] (sizes may differ), masks where
the dataset has them, labels (1 = infected) and the field each cell came from.
"""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REMOSCOPE_CLASSES = ("healthy", "ring", "trophozoite", "schizont", "gametocyte", "wbc", "misc")
REMOSCOPE_INFECTED = ("ring", "trophozoite", "schizont", "gametocyte")


@dataclass
class CellSet:
    images: list[np.ndarray]
    masks: list[np.ndarray | None]
    labels: np.ndarray
    names: list[str]
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> "CellSet":
        index = list(index)
        return CellSet([self.images[i] for i in index], [self.masks[i] for i in index], self.labels[index],
                       [self.names[i] for i in index], [self.groups[i] for i in index] if self.groups else [])


def read_image(path: Path, rgb: bool = False) -> np.ndarray:
    """[C, H, W] float32 from an 8-bit image file."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB" if rgb else "L"), np.float32)
    return arr.transpose(2, 0, 1) if rgb else arr[None]


def _fl_folder(root: Path, sub: str, label: int, images, masks, labels, names):
    for f in sorted((root / sub / "raw").glob("*.png")):
        images.append(read_image(f))
        mpath = root / sub / "mask" / f.name
        masks.append(read_image(mpath)[0] > 0 if mpath.exists() else None)
        labels.append(label)
        names.append(f"{sub}/raw/{f.name}")


def load_fl_cells(data_root: Path, split: str) -> CellSet:
    """supn_fl_cells: split 'train' (healthy only) or 'validation' (50 healthy, 50 infected)."""
    root = Path(data_root) / "supn_fl_cells"
    images, masks, labels, names = [], [], [], []
    if split == "train":
        _fl_folder(root, "healthy_train", 0, images, masks, labels, names)
    elif split == "validation":
        _fl_folder(root / "validation", "healthy_test", 0, images, masks, labels, names)
        _fl_folder(root / "validation", "infected", 1, images, masks, labels, names)
    else:
        raise ValueError("split must be 'train' or 'validation'")
    if not images:
        raise FileNotFoundError(f"no fluorescence crops under {root}")
    return CellSet(images, masks, np.asarray(labels), names, ["fl"] * len(images))


def giemsa_table(data_root: Path) -> list[dict]:
    with open(Path(data_root) / "plymouth_pf_giemsa_cells" / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def giemsa_fields(data_root: Path) -> list[str]:
    return sorted({row["field_id"] for row in giemsa_table(data_root)})


def load_giemsa_cells(data_root: Path, fields: list[str] | None = None, infected: bool | None = None,
                      max_healthy: int | None = None, seed: int = 5) -> CellSet:
    """Giemsa crops (RGB), optionally only some fields, only one class, or a random healthy subset."""
    root = Path(data_root) / "plymouth_pf_giemsa_cells"
    rows = giemsa_table(data_root)
    if fields is not None:
        keep = set(fields)
        rows = [r for r in rows if r["field_id"] in keep]
    if infected is not None:
        rows = [r for r in rows if int(r["infected"]) == int(infected)]
    if max_healthy is not None:
        healthy = [r for r in rows if r["infected"] == "0"]
        random.Random(seed).shuffle(healthy)
        chosen = {r["file"] for r in healthy[:max_healthy]}
        rows = [r for r in rows if r["infected"] == "1" or r["file"] in chosen]
    images = [read_image(root / r["file"], rgb=True) for r in rows]
    return CellSet(images, [None] * len(images), np.asarray([int(r["infected"]) for r in rows]),
                   [r["file"] for r in rows], [r["field_id"] for r in rows])


@dataclass
class Box:
    cls: str
    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def infected(self) -> bool:
        return self.cls in REMOSCOPE_INFECTED


@dataclass
class LabelledField:
    name: str
    image: np.ndarray  # [H, W] float32
    boxes: list[Box]


def load_remoscope_fields(data_root: Path) -> list[LabelledField]:
    """The 7 unstained bright-field fields with their YOLO boxes in pixel coordinates."""
    root = Path(data_root) / "remoscope_pf_unstained"
    fields = []
    for img_path in sorted((root / "images").glob("*.png")):
        image = read_image(img_path)[0]
        h, w = image.shape
        boxes = []
        label_path = root / "labels" / (img_path.stem + ".txt")
        for line in label_path.read_text().split("\n") if label_path.exists() else []:
            parts = line.split()
            if len(parts) != 5:
                continue
            cls = REMOSCOPE_CLASSES[int(parts[0])]
            cx, cy, bw, bh = (float(v) for v in parts[1:])
            # boxes of cells cut by the field's edge are clipped to the image
            boxes.append(Box(cls, max(0, int(round((cy - bh / 2) * h))), max(0, int(round((cx - bw / 2) * w))),
                             min(h, int(round((cy + bh / 2) * h))), min(w, int(round((cx + bw / 2) * w)))))
        fields.append(LabelledField(img_path.name, image, boxes))
    if not fields:
        raise FileNotFoundError(f"no Remoscope fields under {root}")
    return fields
