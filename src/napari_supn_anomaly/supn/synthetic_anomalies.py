"""Synthetic anomalies for self-supervised training, placed inside healthy cells.

Reimplemented from the method descriptions (no code copied):

* FPI, Foreign Patch Interpolation (Tan et al.): a square patch of another cell blended in
  linearly, x' = (1 - a) x + a s; label a where the image changed.
* PII, Poisson Image Interpolation (Tan et al. 2021): the same patch blended by solving a
  Poisson equation whose guidance field takes, per pixel pair, the stronger of the weighted
  target gradient (1 - a) g_t and the weighted source gradient a g_s; label a where it changed.
* P-PII, probabilistic PII (Mueller et al. 2023): for each of a few anomalies, several
  "raters" blend a small circle of an up-scaled (x strength) source patch with mixed gradients
  at one spot, circles jittered around the patch centre; the training image is the average of
  all single-blend images, the soft label ``|X - T| / label_scale`` clipped to [0, 1], and the
  per-pixel standard deviation over the blends is the "confidence" label.

Arrays are numpy [C, S, S] crops (normalised intensities) and [S, S] boolean cell masks. Patch
sizes are fractions of the cell diameter, because parasites are small relative to the cell.
The Poisson problems are solved exactly on the patch box with a type-I sine transform
(Dirichlet boundary = the target image), written as small dense matrix products.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GENERATORS = ("fpi", "pii", "ppii")


@dataclass
class SyntheticSample:
    image: np.ndarray          # [C, S, S] with the anomaly
    label: np.ndarray          # [S, S] soft label in [0, 1], 0 where nothing changed
    spread: np.ndarray | None  # [S, S] P-PII rater standard deviation (None for FPI/PII)


# -- Poisson solve ------------------------------------------------------------------------

def _dst1_matrix(n: int) -> np.ndarray:
    k = np.arange(1, n + 1)
    return np.sin(np.pi * np.outer(k, k) / (n + 1))


def solve_dirichlet_poisson(boundary: np.ndarray, divergence: np.ndarray) -> np.ndarray:
    """Solve 4 u(p) - sum_{q in N4(p)} u(q) = divergence(p) on the interior of a box.

    ``boundary`` [H, W]: the box; only its one-pixel frame is used (Dirichlet values).
    ``divergence`` [H-2, W-2]: right-hand side on the interior. Returns the box with the
    interior replaced by the solution.
    """
    h, w = boundary.shape[0] - 2, boundary.shape[1] - 2
    if h < 1 or w < 1:
        return boundary.copy()
    rhs = divergence.astype(np.float64).copy()
    rhs[0, :] += boundary[0, 1:-1]
    rhs[-1, :] += boundary[-1, 1:-1]
    rhs[:, 0] += boundary[1:-1, 0]
    rhs[:, -1] += boundary[1:-1, -1]
    sh, sw = _dst1_matrix(h), _dst1_matrix(w)
    eig = (4.0 - 2.0 * np.cos(np.pi * np.arange(1, h + 1) / (h + 1))[:, None]
           - 2.0 * np.cos(np.pi * np.arange(1, w + 1) / (w + 1))[None, :])
    coef = sh @ rhs @ sw / eig
    u = sh @ coef @ sw * (2.0 / (h + 1)) * (2.0 / (w + 1))
    out = boundary.astype(np.float64).copy()
    out[1:-1, 1:-1] = u
    return out


_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _pair_differences(img: np.ndarray) -> list[np.ndarray]:
    """img[p] - img[q] on the interior of a box for the four neighbours q of p."""
    h, w = img.shape
    centre = img[1:-1, 1:-1]
    return [centre - img[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] for dy, dx in _NEIGHBOURS]


def mixed_guidance_divergence(target: np.ndarray, source: np.ndarray, inside: np.ndarray,
                              target_weight: float, source_weight: float) -> np.ndarray:
    """Sum over the 4 neighbours of the guidance g(p, q) on the interior of a box.

    Inside the blend mask g is the stronger (in magnitude) of target_weight * dT and
    source_weight * dS; elsewhere it is dT, so the solution stays the target there.
    """
    div = np.zeros((target.shape[0] - 2, target.shape[1] - 2))
    m = inside[1:-1, 1:-1]
    for dt, ds in zip(_pair_differences(target), _pair_differences(source)):
        gt, gs = target_weight * dt, source_weight * ds
        g = np.where(np.abs(gt) > np.abs(gs), gt, gs)
        div += np.where(m, g, dt)
    return div


def poisson_blend(target: np.ndarray, source: np.ndarray, box: tuple[int, int, int, int],
                  inside: np.ndarray | None = None, target_weight: float = 1.0,
                  source_weight: float = 1.0) -> np.ndarray:
    """Blend ``source`` (same shape as the box) into one channel of ``target`` [H, W].

    box = (y0, x0, y1, x1), exclusive ends, at least 3 x 3; its frame keeps the target's values.
    ``inside`` [box shape] selects where the mixed guidance applies (default: all of it).
    """
    y0, x0, y1, x1 = box
    t = target[y0:y1, x0:x1].astype(np.float64)
    inside = np.ones(t.shape, bool) if inside is None else inside
    div = mixed_guidance_divergence(t, source.astype(np.float64), inside, target_weight, source_weight)
    out = target.astype(np.float64).copy()
    out[y0:y1, x0:x1] = solve_dirichlet_poisson(t, div)
    return out


# -- where patches go ---------------------------------------------------------------------

def _cell_diameter(mask: np.ndarray) -> float:
    return float(2.0 * np.sqrt(max(mask.sum(), 1) / np.pi))


def _random_centre(rng: np.random.Generator, mask: np.ndarray, half: int) -> tuple[int, int]:
    """A pixel of the cell at least ``half`` + 1 from the crop border (the crop centre if none)."""
    s0, s1 = mask.shape
    ok = mask.copy()
    ok[:half + 1] = False
    ok[s0 - half - 1:] = False
    ok[:, :half + 1] = False
    ok[:, s1 - half - 1:] = False
    ys, xs = np.nonzero(ok)
    if len(ys) == 0:
        return s0 // 2, s1 // 2
    k = rng.integers(len(ys))
    return int(ys[k]), int(xs[k])


def _box(centre: tuple[int, int], half: tuple[int, int]) -> tuple[int, int, int, int]:
    return centre[0] - half[0], centre[1] - half[1], centre[0] + half[0] + 1, centre[1] + half[1] + 1


def _half_widths(rng, diameter: float, lo: float, hi: float, limit: int) -> tuple[int, int]:
    """Independent half-widths per axis, fractions [lo, hi) of the cell diameter, >= 1 px."""
    a, b = rng.uniform(lo * diameter, hi * diameter, size=2)
    return (int(np.clip(round(a), 1, limit)), int(np.clip(round(b), 1, limit)))


# -- generators ---------------------------------------------------------------------------

def foreign_patch_interpolation(target: np.ndarray, target_mask: np.ndarray, source: np.ndarray,
                                source_mask: np.ndarray, rng: np.random.Generator,
                                size_range: tuple[float, float] = (0.08, 0.25), tol: float = 1e-3) -> SyntheticSample:
    """FPI: a square patch of the source cell interpolated linearly into the target cell."""
    s = target.shape[-1]
    d = _cell_diameter(target_mask)
    h = _half_widths(rng, d, *size_range, limit=s // 2 - 2)[0]
    ty0, tx0, ty1, tx1 = _box(_random_centre(rng, target_mask, h), (h, h))
    sy0, sx0, sy1, sx1 = _box(_random_centre(rng, source_mask, h), (h, h))
    alpha = float(rng.uniform(0.05, 0.95))
    out = target.astype(np.float64).copy()
    patch_t = out[:, ty0:ty1, tx0:tx1].copy()
    patch_s = source[:, sy0:sy1, sx0:sx1].astype(np.float64)
    out[:, ty0:ty1, tx0:tx1] = (1.0 - alpha) * patch_t + alpha * patch_s
    changed = np.abs(out - target).max(0) > tol
    label = np.where(changed, alpha, 0.0)
    return SyntheticSample(out.astype(np.float32), label.astype(np.float32), None)


def poisson_image_interpolation(target: np.ndarray, target_mask: np.ndarray, source: np.ndarray,
                                source_mask: np.ndarray, rng: np.random.Generator,
                                size_range: tuple[float, float] = (0.08, 0.25), tol: float = 1e-3) -> SyntheticSample:
    """PII: a rectangular source patch Poisson-blended with interpolated mixed gradients."""
    s = target.shape[-1]
    d = _cell_diameter(target_mask)
    half = _half_widths(rng, d, *size_range, limit=s // 2 - 2)
    half = (max(half[0], 1), max(half[1], 1))
    tb = _box(_random_centre(rng, target_mask, max(half)), half)
    sb = _box(_random_centre(rng, source_mask, max(half)), half)
    alpha = float(rng.uniform(0.05, 0.95))
    out = target.astype(np.float64).copy()
    for c in range(target.shape[0]):
        patch = source[c, sb[0]:sb[2], sb[1]:sb[3]]
        out[c] = poisson_blend(target[c], patch, tb, None, 1.0 - alpha, alpha)
    lo, hi = target.min(), target.max()
    out = np.clip(out, lo, hi)
    changed = np.abs(out - target).max(0) > tol
    label = np.where(changed, alpha, 0.0)
    return SyntheticSample(out.astype(np.float32), label.astype(np.float32), None)


def probabilistic_pii(target: np.ndarray, target_mask: np.ndarray, sources: list[tuple[np.ndarray, np.ndarray]],
                      rng: np.random.Generator, n_anomalies: tuple[int, int] = (1, 4),
                      n_raters: tuple[int, int] = (1, 9), strength: tuple[int, int] = (10, 19),
                      size_range: tuple[float, float] = (0.15, 0.45), label_scale: float = 0.2,
                      tol: float = 1e-3) -> SyntheticSample:
    """P-PII: the average of many small circular mixed-gradient blends of up-scaled source patches.

    ``sources``: (crop, mask) pairs of other healthy cells, one drawn per anomaly. Counts are
    inclusive ranges. Fewer anomalies per image than the paper's 10-19 because a cell is small.
    """
    c, s, _ = target.shape
    d = _cell_diameter(target_mask)
    total = np.zeros(target.shape, np.float64)
    total_sq = np.zeros(target.shape, np.float64)
    n_blends = 0
    for _ in range(int(rng.integers(n_anomalies[0], n_anomalies[1] + 1))):
        src, src_mask = sources[int(rng.integers(len(sources)))]
        half = _half_widths(rng, d, size_range[0] / 2, size_range[1] / 2, limit=s // 2 - 2)
        half = (max(half[0], 2), max(half[1], 2))
        sb = _box(_random_centre(rng, src_mask, max(half)), half)
        tb = _box(_random_centre(rng, target_mask, max(half)), half)
        bh, bw = sb[2] - sb[0], sb[3] - sb[1]
        yy, xx = np.mgrid[0:bh, 0:bw]
        for _ in range(int(rng.integers(n_raters[0], n_raters[1] + 1))):
            cy = rng.normal((bh - 1) / 2, bh / 12)
            cx = rng.normal((bw - 1) / 2, bw / 12)
            radius = max(1.0, rng.normal(min(bh, bw) / 2, 1.0) / 2)
            circle = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
            circle[0], circle[-1], circle[:, 0], circle[:, -1] = False, False, False, False
            k = float(rng.integers(strength[0], strength[1] + 1))
            delta = np.zeros(target.shape, np.float64)
            if circle.any():
                for ch in range(c):
                    patch = k * src[ch, sb[0]:sb[2], sb[1]:sb[3]]
                    blended = poisson_blend(target[ch], patch, tb, circle)
                    delta[ch] = blended - target[ch]
            total += delta
            total_sq += delta ** 2
            n_blends += 1
    mean_delta = total / max(n_blends, 1)
    image = target + mean_delta
    spread = np.sqrt(np.maximum(total_sq / max(n_blends, 1) - mean_delta ** 2, 0.0)).max(0)
    change = np.abs(mean_delta).max(0)
    label = np.where(change > tol, np.clip(change / label_scale, 0.0, 1.0), 0.0)
    return SyntheticSample(image.astype(np.float32), label.astype(np.float32), spread.astype(np.float32))


def make_synthetic(kind: str, target: np.ndarray, target_mask: np.ndarray,
                   sources: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> SyntheticSample:
    """One synthetic anomaly of ``kind`` in ``target``, sources drawn from other healthy cells."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown synthetic anomaly {kind!r}; choose from {GENERATORS}")
    if kind == "ppii":
        return probabilistic_pii(target, target_mask, sources, rng)
    src, src_mask = sources[int(rng.integers(len(sources)))]
    fn = foreign_patch_interpolation if kind == "fpi" else poisson_image_interpolation
    return fn(target, target_mask, src, src_mask, rng)


# -- histogram equalisation with dataset-level statistics ---------------------------------

@dataclass
class HistogramEqualiser:
    """Maps each channel through the cumulative histogram of healthy training pixels to [-1, 1].

    Fitted once on the training set (never per image, so a parasite cannot rescale its cell).
    """

    quantiles: list[list[float]]  # per channel, values at evenly spaced probabilities

    @classmethod
    def fit(cls, crops: np.ndarray, n: int = 257) -> HistogramEqualiser:
        probs = np.linspace(0.0, 1.0, n)
        return cls([np.quantile(crops[:, c], probs).tolist() for c in range(crops.shape[1])])

    def apply(self, crops: np.ndarray) -> np.ndarray:
        out = np.empty(crops.shape, np.float32)
        for c, q in enumerate(self.quantiles):
            q = np.maximum.accumulate(np.asarray(q))
            probs = np.linspace(0.0, 1.0, len(q))
            out[:, c] = 2.0 * np.interp(crops[:, c], q, probs) - 1.0
        return out
