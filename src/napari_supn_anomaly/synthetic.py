"""Synthetic red-cell fields with known parasites, for sample data, tests and benchmarks.

Three looks, calibrated by eye and by simple statistics against the real data in
``../shared/data`` (see ``docs/user-guide.md``):

* ``fluorescence``: bright cells (about 130 grey levels, varying from cell to cell, some with a
  dimmer centre, a few small bright specks that are not parasites) on a dark background (about
  25), Poisson-like noise (sd about 8 on cells, 6 on background, as measured on
  ``supn_fl_cells``); parasites are 1-3 small sharp bright spots per infected cell. Matched to
  ``supn_fl_cells/validation`` (rescaled to 40 px cells) on the quantiles of the per-cell maximum
  of ``gaussian(x, 1) - gaussian(x, 4)`` (``benchmarks/match_synthetic_fluorescence.py``): healthy
  10/25/50/75/90% about 28/33/41/47/52 (real 23/34/40/48/57); infected 54/61/75/88/97, against
  the real infected cells that show a spot (29 of 50: 67/71/87/98/106). The other real infected
  cells look healthy (no visible spot), and a truth mask can only hold what can be seen.
* ``brightfield``: unstained, nearly black cells with soft edges on white, as the Remoscope
  fields in ``remoscope_pf_unstained``; parasites are lighter rings with a dark pigment dot.
* ``brightfield-stained``: Giemsa-stained RGB, pale lilac cells (about (200, 200, 230)) on white,
  as in ``plymouth_pf_giemsa_cells``; parasites are purple rings with a dark chromatin dot.

Every field comes with the true cell labels and a label image of the parasites, so that the
detection pipeline can be scored (:func:`match_parasites`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage import measure

from .cells import check_modality
from .supn import ArchConfig
from .training import TrainConfig, fit_anomaly_model, run_to_end


@dataclass
class SyntheticField:
    image: np.ndarray          # (Y, X) uint8, or (Y, X, 3) uint8 for stained fields
    cells: np.ndarray          # (Y, X) int32 true cell labels
    parasites: np.ndarray      # (Y, X) int32, one label per parasite (connected spot or ring)
    infected: np.ndarray       # ids of the cells that hold a parasite
    modality: str
    cell_diameter_px: float
    meta: dict = field(default_factory=dict)

    @property
    def healthy(self) -> np.ndarray:
        ids = np.arange(1, int(self.cells.max()) + 1)
        return np.setdiff1d(ids, self.infected)


def _place_centres(rng, shape, diameter, n_cells, touching):
    """Random centres at least ~one diameter apart; a fraction may touch (to test splitting)."""
    h, w = shape
    margin = -0.25 * diameter  # cells may be cut by the field edge, as on a real slide
    centres = []
    attempts = 0
    while len(centres) < n_cells and attempts < 200 * n_cells:
        attempts += 1
        y = rng.uniform(margin, h - margin)
        x = rng.uniform(margin, w - margin)
        min_gap = diameter * (0.82 if rng.random() < touching else 1.08)
        if all((y - cy) ** 2 + (x - cx) ** 2 >= min_gap ** 2 for cy, cx in centres):
            centres.append((y, x))
    return centres


def _cell_geometry(rng, diameter):
    r = diameter / 2.0 * rng.uniform(0.9, 1.1)
    ecc = rng.uniform(0.0, 0.12)
    return r * (1 + ecc), r * (1 - ecc), rng.uniform(0, np.pi)


def _rho(yy, xx, cy, cx, a, b, theta):
    """Normalised elliptic radius: 1 on the cell boundary."""
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u = dx * c + dy * s
    v = -dx * s + dy * c
    return np.sqrt((u / a) ** 2 + (v / b) ** 2)


def _smooth_noise(rng, shape, sigma):
    n = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-9)


def make_field(shape=(512, 512), modality: str = "fluorescence", cell_diameter: float = 40.0,
               n_cells: int | None = None, infected_fraction: float = 0.15, touching: float = 0.15,
               seed: int = 0) -> SyntheticField:
    """One synthetic field of view. ``n_cells`` defaults to about 30% coverage of the field."""
    check_modality(modality)
    rng = np.random.default_rng(seed)
    h, w = shape
    if n_cells is None:
        n_cells = int(0.30 * h * w / (np.pi * (cell_diameter / 2) ** 2))
    centres = _place_centres(rng, shape, cell_diameter, n_cells, touching)

    body = np.zeros(shape, np.float32)       # 0..1 cell occupancy (soft edge)
    pallor = np.zeros(shape, np.float32)     # 0..1 central pallor strength
    gain = np.zeros(shape, np.float32)       # per-cell brightness factor
    best_rho = np.full(shape, np.inf, np.float32)
    cells = np.zeros(shape, np.int32)
    parasite_alpha = np.zeros(shape, np.float32)
    chromatin_alpha = np.zeros(shape, np.float32)
    parasites_raw = np.zeros(shape, bool)
    infected = []
    edge = 0.9 * cell_diameter / 40.0
    for i, (cy, cx) in enumerate(centres, start=1):
        a, b, theta = _cell_geometry(rng, cell_diameter)
        pad = int(np.ceil(max(a, b) + 4 * edge + 2))
        y0, y1 = max(0, int(cy) - pad), min(h, int(cy) + pad + 1)
        x0, x1 = max(0, int(cx) - pad), min(w, int(cx) + pad + 1)
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rho = _rho(yy, xx, cy, cx, a, b, theta)
        r_mean = 0.5 * (a + b)
        occ = 1.0 / (1.0 + np.exp(-(1.0 - rho) * r_mean / edge))
        closer = rho < best_rho[y0:y1, x0:x1]
        inside = closer & (rho < 1.0)
        cells[y0:y1, x0:x1][inside] = i
        best_rho[y0:y1, x0:x1] = np.minimum(best_rho[y0:y1, x0:x1], rho)
        body[y0:y1, x0:x1] = np.maximum(body[y0:y1, x0:x1], occ)
        p = rng.uniform(0.0, 0.35) * np.exp(-(rho / 0.45) ** 2)
        pallor[y0:y1, x0:x1] = np.where(closer, p, pallor[y0:y1, x0:x1])
        gain[y0:y1, x0:x1] = np.where(closer, rng.uniform(0.85, 1.2), gain[y0:y1, x0:x1])
        whole = (y0 > 0 and x0 > 0 and y1 < h and x1 < w)  # parasites only in cells not cut by the edge
        if whole and rng.random() < infected_fraction:
            infected.append(i)
            _add_parasites(rng, modality, yy, xx, cy, cx, a, b, theta, cell_diameter,
                           parasite_alpha[y0:y1, x0:x1], chromatin_alpha[y0:y1, x0:x1],
                           parasites_raw[y0:y1, x0:x1])
    image = _render(rng, modality, body, pallor, gain, parasite_alpha, chromatin_alpha, cell_diameter)
    # keep the parasite masks inside their cells (a spot on the edge belongs to its cell)
    parasites = measure.label(parasites_raw & (cells > 0)).astype(np.int32)
    # cells entirely cut off the field by the edge are dropped from the truth
    cells = _relabel_small(cells, 0.1 * np.pi * (cell_diameter / 2) ** 2)
    infected_ids = np.unique(cells[parasites > 0])
    infected_ids = infected_ids[infected_ids > 0].astype(np.int32)
    return SyntheticField(image, cells, parasites, infected_ids, modality, float(cell_diameter),
                          {"seed": seed, "generator": "napari_supn_anomaly.synthetic.make_field"})


def _relabel_small(cells, min_area):
    areas = np.bincount(cells.ravel())
    keep = areas >= min_area
    keep[0] = False
    mapping = np.zeros(len(areas), np.int32)
    mapping[keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
    return mapping[cells]


def _add_parasites(rng, modality, yy, xx, cy, cx, a, b, theta, diameter, alpha, chromatin, mask):
    scale = diameter / 40.0
    if modality == "fluorescence":
        for _ in range(rng.integers(1, 4)):
            rr, ang = rng.uniform(0, 0.7), rng.uniform(0, 2 * np.pi)
            py = cy + rr * b * np.sin(ang)
            px = cx + rr * a * np.cos(ang)
            sigma = rng.uniform(0.8, 1.4) * scale
            amp = np.exp(rng.uniform(np.log(1.6), np.log(6.0)))  # fraction of the cell brightness added
            d2 = (yy - py) ** 2 + (xx - px) ** 2
            spot = amp * np.exp(-d2 / (2 * sigma ** 2))
            alpha += spot.astype(np.float32)
            mask |= spot > 0.3 * min(amp, 1.0)  # where it adds 30% of the cell: saturated halos included
        return
    # bright-field: a ring (cytoplasm) with one or two chromatin dots
    rr, ang = rng.uniform(0, 0.55), rng.uniform(0, 2 * np.pi)
    py = cy + rr * b * np.sin(ang)
    px = cx + rr * a * np.cos(ang)
    ring_r = rng.uniform(0.1, 0.16) * diameter
    width = rng.uniform(1.0, 1.6) * scale
    d = np.sqrt((yy - py) ** 2 + (xx - px) ** 2)
    ring = np.exp(-((d - ring_r) ** 2) / (2 * width ** 2)) * rng.uniform(0.6, 0.9)
    alpha += ring.astype(np.float32)
    dot_ang = rng.uniform(0, 2 * np.pi)
    dy, dx = py + ring_r * np.sin(dot_ang), px + ring_r * np.cos(dot_ang)
    dot = np.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / (2 * (1.3 * scale) ** 2))
    chromatin += dot.astype(np.float32)
    mask |= (ring > 0.25) | (dot > 0.3)
    mask |= d < ring_r  # the ring's inside belongs to the parasite


def _render(rng, modality, body, pallor, gain, alpha, chromatin, diameter):
    shape = body.shape
    texture = 1.0 + 0.05 * _smooth_noise(rng, shape, diameter / 8)
    illumination = 1.0 + 0.06 * _smooth_noise(rng, shape, max(shape) / 4)
    if modality == "fluorescence":
        # real fluorescent cells vary more in brightness and texture than the bright-field looks,
        # and carry a few small bright specks that are not parasites (matched to supn_fl_cells
        # by the quantiles of a difference-of-Gaussians spot statistic inside healthy cells)
        fl_gain = 1.0 + 2.2 * (gain - 1.025) * (gain > 0)
        fine = 1.0 + 0.07 * _smooth_noise(rng, shape, diameter / 14)
        cell = 130.0 * fl_gain * texture * fine * (1.0 - pallor) * body
        spots = 130.0 * fl_gain * alpha
        specks = np.zeros(shape, np.float32)
        n_specks = rng.poisson(0.6 * max(1, int((body > 0.5).sum() / (np.pi * (diameter / 2) ** 2))))
        cand = np.flatnonzero(body.ravel() > 0.5)
        if len(cand) and n_specks:
            specks.ravel()[rng.choice(cand, n_specks)] = rng.uniform(150, 450, n_specks)
            specks = ndi.gaussian_filter(specks, 0.7 * diameter / 40.0)
        background = 25.0 * illumination
        signal = ndi.gaussian_filter(background + cell + spots + specks, 0.8)
        noise_sd = np.sqrt(16.0 + 0.35 * signal)
        img = signal + noise_sd * rng.standard_normal(shape)
        return np.clip(np.round(img), 0, 255).astype(np.uint8)
    if modality == "brightfield":
        # unstained, as the Remoscope fields: nearly black cells on white, blurred edges; the
        # parasite's ring is lighter than the cell, its pigment dot darker
        background = 232.0 * (1.0 + 0.3 * (illumination - 1.0))
        cell_depth = 175.0 * np.clip(gain, 0.9, 1.1) * (1.0 + 0.3 * (texture - 1.0)) * (1.0 - 0.4 * pallor) * body
        ring = 60.0 * np.clip(alpha, 0, 1) - 25.0 * np.clip(chromatin, 0, 1)
        signal = ndi.gaussian_filter(background - cell_depth + ring * body, 1.2 * diameter / 40.0)
        img = signal + 2.5 * rng.standard_normal(shape)
        return np.clip(np.round(img), 0, 255).astype(np.uint8)
    # Giemsa: mix white, lilac cell, purple parasite cytoplasm and dark chromatin
    white = np.array([246.0, 247.0, 251.0])
    lilac = np.array([196.0, 196.0, 228.0])
    cytoplasm = np.array([150.0, 110.0, 190.0])
    chrom = np.array([95.0, 35.0, 125.0])
    occ = (body * gain * texture * (1.0 - 0.6 * pallor))[..., None].clip(0, 1.2)
    img = white * (1.0 + 0.4 * (illumination[..., None] - 1.0)) + (lilac - white) * occ
    a = np.clip(alpha, 0, 1)[..., None]
    c = np.clip(chromatin, 0, 1)[..., None]
    img = img * (1 - a) + cytoplasm * a
    img = img * (1 - c) + chrom * c
    img = np.stack([ndi.gaussian_filter(img[..., k], 0.8) for k in range(3)], -1)
    img = img + 3.0 * rng.standard_normal(img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_stack(n_planes: int = 3, shape=(512, 512), modality: str = "fluorescence", seed: int = 0,
               **kwargs) -> list[SyntheticField]:
    """Independent fields, one per plane (a time-lapse of a moving smear, or tiles)."""
    return [make_field(shape, modality, seed=seed + 1000 * k, **kwargs) for k in range(n_planes)]


@dataclass
class ParasiteMatch:
    n_parasites: int
    n_found: int
    n_candidates: int
    n_false: int            # candidate regions touching no parasite
    n_healthy_cells: int
    n_infected_cells: int
    n_false_cells: int      # healthy cells holding a false candidate region (what the sensitivity counts)

    @property
    def recall(self) -> float:
        return self.n_found / self.n_parasites if self.n_parasites else float("nan")

    @property
    def false_per_healthy_cell(self) -> float:
        """The share of healthy cells flagged: the rate the sensitivity setting asks for."""
        return self.n_false_cells / self.n_healthy_cells if self.n_healthy_cells else float("nan")

    def summary(self, truth_kind: str = "parasites") -> str:
        """One line; ``truth_kind``: what the truth marks ("parasites", or "infected cells" for a sample
        whose dataset marks whole cells). False candidates are counted as cells, as the sensitivity
        setting and the expected false candidates count them; the regions too when they differ."""
        found = f"found {self.n_found} of {self.n_parasites} true {truth_kind} ({100 * self.recall:.0f}%); "
        if not self.n_false:
            return found + f"no false candidates on {self.n_healthy_cells} healthy cells"
        cells = self.n_false_cells
        text = found + f"{cells} healthy cell{'s' if cells != 1 else ''} of {self.n_healthy_cells} with a false candidate"
        if self.n_healthy_cells:
            per_100 = 100 * self.false_per_healthy_cell
            text += f" ({per_100:.0f} per 100 healthy cells)" if per_100 >= 10 else f" ({per_100:.2g} per 100 healthy cells)"
        if self.n_false != cells:
            text += f"; {self.n_false} false candidate region{'s' if self.n_false != 1 else ''}"
        return text

    def __add__(self, other: "ParasiteMatch") -> "ParasiteMatch":
        return ParasiteMatch(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


def match_parasites(candidate_mask: np.ndarray, truth: SyntheticField, tolerance_px: int = 2) -> ParasiteMatch:
    """Compare candidate regions (a label or boolean image) with the true parasites.

    A parasite is found when a candidate region touches it (within ``tolerance_px``); a candidate
    region that touches no parasite is a false candidate, and a healthy cell holding one is a false
    candidate cell. Healthy cells are counted without those cut by the field's edge (the generator
    never infects them).
    """
    cand = measure.label(np.asarray(candidate_mask) > 0)
    near = ndi.binary_dilation(truth.parasites > 0, iterations=tolerance_px) if tolerance_px else truth.parasites > 0
    grown = ndi.grey_dilation(truth.parasites, size=2 * tolerance_px + 1) if tolerance_px else truth.parasites
    found = np.unique(grown[cand > 0])
    n_found = int((found > 0).sum())
    true_cands = np.unique(cand[near & (cand > 0)])
    n_cand = int(cand.max())
    edge_cells = np.unique(np.concatenate([truth.cells[0], truth.cells[-1], truth.cells[:, 0], truth.cells[:, -1]]))
    healthy = np.setdiff1d(truth.healthy, edge_cells)
    false_pixels = (cand > 0) & ~np.isin(cand, true_cands)
    false_cells = np.intersect1d(np.unique(truth.cells[false_pixels]), healthy)
    return ParasiteMatch(int(truth.parasites.max()), n_found, n_cand, n_cand - len(true_cands),
                         len(healthy), len(truth.infected), len(false_cells))


def healthy_cell_crops(modality: str = "fluorescence", n_cells: int = 200, cell_diameter: float = 40.0,
                       seed: int = 0, field_shape=(384, 384)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw crops [C, H, W] (2 cell diameters wide) and masks of healthy synthetic cells."""
    crops, masks = [], []
    half = int(cell_diameter)
    k = 0
    while len(crops) < n_cells:
        f = make_field(field_shape, modality, cell_diameter, infected_fraction=0.0, seed=seed + 7919 * k)
        k += 1
        img = f.image[None] if f.image.ndim == 2 else np.moveaxis(f.image, -1, 0)
        for cid, (cy, cx) in zip(range(1, f.cells.max() + 1),
                                 ndi.center_of_mass(np.ones_like(f.cells), f.cells, range(1, f.cells.max() + 1))):
            cy, cx = int(round(cy)), int(round(cx))
            if not (half <= cy < f.cells.shape[0] - half and half <= cx < f.cells.shape[1] - half):
                continue  # keep whole cells only
            crops.append(img[:, cy - half:cy + half, cx - half:cx + half].astype(np.float32))
            masks.append(f.cells[cy - half:cy + half, cx - half:cx + half] == cid)
            if len(crops) == n_cells:
                break
    return crops, masks


def train_synthetic_model(modality: str = "fluorescence", *, n_cells: int = 300, crop_size: int = 64,
                          cell_diameter_px: float | None = None, iterations: tuple[int, int] = (600, 400),
                          widths=(16, 32, 48, 64), latent_dim: int = 16, batch_size: int = 32, seed: int = 0,
                          name: str | None = None):
    """A small model of healthy synthetic cells, trained in seconds to minutes on a CPU.

    For tests, demos without the built-in models, and checking the pipeline end to end.
    """
    channels = 3 if modality == "brightfield-stained" else 1
    images, masks = healthy_cell_crops(modality, n_cells, seed=seed)
    arch = ArchConfig(crop_size=crop_size, channels=channels, latent_dim=latent_dim, widths=tuple(widths),
                      head_widths=tuple(max(8, w // 2) for w in widths))
    cfg = TrainConfig(seed=seed, batch_size=batch_size, stage1_iters=iterations[0], stage2_iters=iterations[1])
    events = fit_anomaly_model(images, masks, name=name or f"synthetic-{modality}", modality=modality,
                               channel_names=["red", "green", "blue"] if channels == 3 else [modality],
                               arch=arch, cfg=cfg, cell_diameter_px=cell_diameter_px or 0.55 * crop_size,
                               holdout_fraction=0.3, description=f"trained on synthetic healthy {modality} cells",
                               training_data={"source": "napari_supn_anomaly.synthetic", "seed": seed})
    return run_to_end(events)
