"""Small example images with their truth, for File > Open Sample and the demo.

The files are made by ``benchmarks/build/sample_data.py``: the fluorescence and unstained
bright-field samples with :mod:`napari_supn_anomaly.synthetic` (their truth: each parasite), the
Giemsa sample from real cells of ``plymouth_pf_giemsa_cells`` (its truth: each infected cell, as
the dataset marks cells, not parasites).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..synthetic import SyntheticField

SAMPLES = {
    # key: (file stem, axes, modality, display name, what its truth marks)
    "fluorescence": ("synthetic_fluorescence_stack", "TYX", "fluorescence",
                     "Synthetic fluorescence stack (4 fields, with true parasites)", "parasites"),
    "giemsa": ("giemsa_real_cells_fields", "TYXS", "brightfield-stained",
               "Giemsa fields of real cells (2 fields of one slide, RGB, with the true infected cells)",
               "infected cells"),
    "brightfield": ("synthetic_brightfield_field", "YX", "brightfield",
                    "Synthetic unstained bright-field field (with true parasites)", "parasites"),
}
# The fluorescence and Giemsa samples' planes are separate fields of one slide, stacked along the first axis.
PLANE_AXIS_LABEL = "field"


@dataclass
class Sample:
    key: str
    image: np.ndarray
    axes: str
    modality: str
    cells: np.ndarray       # true cell labels, plane axes + (Y, X)
    parasites: np.ndarray   # true parasite labels (or infected cells': see truth_kind), plane axes + (Y, X)
    path: Path
    cell_diameter_px: float
    truth_kind: str = "parasites"  # what ``parasites`` marks: "parasites" or "infected cells"

    @property
    def truth_name(self) -> str:
        """The truth layer's name in napari."""
        return f"{self.name} true {self.truth_kind}"

    @property
    def truth_one(self) -> str:
        """One region of the truth, in words: "true parasite" or "true infected cell"."""
        return f"true {self.truth_kind.removesuffix('s')}"

    @property
    def name(self) -> str:
        """The name of its layer in napari and the stem of the demo's output files."""
        return self.path.stem

    @property
    def axis_labels(self) -> tuple[str, ...]:
        """napari's name of each axis but the RGB one: the plane axis is called 'field'."""
        return tuple(a.lower() if a in "YX" else PLANE_AXIS_LABEL for a in self.axes if a != "S")

    def truth(self, plane: int = 0) -> SyntheticField:
        """The truth of one plane, for :func:`napari_supn_anomaly.synthetic.match_parasites`."""
        from ..synthetic import SyntheticField

        cells = self.cells if self.cells.ndim == 2 else self.cells[plane]
        parasites = self.parasites if self.parasites.ndim == 2 else self.parasites[plane]
        image = self.image if self.cells.ndim == 2 else self.image[plane]
        infected = np.unique(cells[parasites > 0])
        return SyntheticField(image, cells, parasites, infected[infected > 0], self.modality, self.cell_diameter_px)

    @property
    def n_planes(self) -> int:
        return 1 if self.cells.ndim == 2 else self.cells.shape[0]


def sample_folder() -> Path:
    return Path(str(resources.files(__name__)))


def truth_path(folder: Path, key: str) -> Path:
    stem, *_, truth_kind = SAMPLES[key]
    return folder / f"{stem}_{truth_kind.replace(' ', '_')}.tif"


def load_sample(key: str = "fluorescence") -> Sample:
    import tifffile

    if key not in SAMPLES:
        raise ValueError(f"unknown sample {key!r}; choose one of {', '.join(SAMPLES)}")
    stem, axes, modality, _, truth_kind = SAMPLES[key]
    folder = sample_folder()
    path = folder / f"{stem}.tif"
    for part in (path, folder / f"{stem}_cells.tif", truth_path(folder, key)):
        if not part.exists():
            raise FileNotFoundError(f"the sample file {part.name} is missing from the installation; "
                                    "reinstall the package or run benchmarks/build/sample_data.py")
    with tifffile.TiffFile(path) as tif:
        image = tif.asarray()
        found = re.search(r"cell_diameter_px=([0-9.]+)", tif.pages[0].description or "")
    diameter = float(found.group(1)) if found else 40.0
    cells = tifffile.imread(folder / f"{stem}_cells.tif")
    truth = tifffile.imread(truth_path(folder, key))
    return Sample(key, image, axes, modality, cells.astype(np.int32), truth.astype(np.int32), path, diameter,
                  truth_kind)


def _layers(key: str):
    sample = load_sample(key)
    meta = {"axes": sample.axes, "modality": sample.modality, "source_path": str(sample.path),
            "channel_names": []}
    labels = sample.axis_labels
    return [
        (sample.image, {"name": sample.name, "rgb": sample.axes.endswith("S"), "metadata": meta,
                        "axis_labels": labels}, "image"),
        (sample.parasites, {"name": sample.truth_name, "opacity": 0.6, "visible": False,
                            "metadata": {"truth": True}, "axis_labels": labels}, "labels"),
    ]


def fluorescence_sample():
    return _layers("fluorescence")


def giemsa_sample():
    return _layers("giemsa")


def brightfield_sample():
    return _layers("brightfield")
