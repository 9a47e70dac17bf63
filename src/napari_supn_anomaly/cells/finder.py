"""One red-cell finder for fluorescence, unstained and stained bright-field fields.

1. Contrast against the field's own local background (``background.py``), cells positive in
   every modality; foreground above a fraction of its Otsu level, plus cells too dim for it
   that stand out of the noise on an average over a fifteenth of a cell (``dim_cells``).
2. Holes smaller than a cell are filled, so a pale centre, a dark parasite or a ring inside a
   cell neither splits nor hides it (a hole as large as a cell is background between cells).
3. The field's cell size is measured (``measure_field_diameter``) unless given.
4. One seed per cell from the maxima of the smoothed distance transform at that size, and a
   seeded watershed on the distance, inside the foreground: touching and overlapping cells split
   along their neck. In a clump (several cells, not convex) the distance map peaks where cells
   meet, so its seeds come from the cells' rims on its outline (a circular Hough transform at
   the cell's radius, ``rim_centres``) when these find more cells, and such a clump is shared
   out by distance from those centres (plus the image's edges, ``clump_edge_weight``, off by
   default). On stained fields each white cell's nucleus (``kinds.white_nuclei``) is one seed,
   and pieces of its cytoplasm cut off are joined back (``absorb_cytoplasm``): a white cell is
   one object, never red-cell pieces.
5. Objects still too large for one cell are cut from seeds on their rims (or k-means centres) by
   a watershed on their distance map and the image's edges, so cuts follow the cells. A large
   object's wedges of neighbouring cells, joined to its round body by narrower necks, go back to
   the neighbour they complete (``appendages.py``), and what is still too large is cut again.
6. A cell the threshold cut to a crescent (an unevenly lit fluorescence cell) takes back the
   part of its hull that stands out of the noise (``fill_notches``).
7. Every object is kept, cells cut by the field's edge included; ``kinds.py`` says which are red
   cells.

Every setting is one number in :class:`FinderSettings`, chosen once for all sources
(docs/benchmarks/cells.md: chosen with each source left out in turn).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, segmentation
from skimage.feature import peak_local_max

from ..errors import NoCellsFound
from .appendages import give_back_appendages
from .background import foreground_contrast, main_peak, robust_sigma
from .disc_morphology import disc_dilation, disc_erosion, disc_opening, fill_holes
from .hull import convex_image, solid_objects, solidity
from .kinds import join_close_parts, purple_mask, white_nuclei
from .measure import MIN_CELL_DIAMETER_PX
from .modality import dark_cells


@dataclass(frozen=True)
class FinderSettings:
    threshold_fraction: float = 0.45  # foreground: contrast above this fraction of its Otsu level
    measure_fraction: float = 0.6     # the cell size is measured above this fraction (or the one above, if higher)
    seed_spacing: float = 0.35       # seeds at least this many cell diameters apart
    seed_height: float = 0.15        # a seed's distance to the background, in cell diameters
    hole_fraction: float = 0.6       # holes smaller than this share of a cell's area are filled
    blob_weight: float = 0.0         # weight of the smoothed contrast against the distance for seeds
    split_area: float = 1.4          # an object of this many cell areas is cut if elongated ...
    split_elongation: float = 1.2    # ... this much (long / short axis) and notched (solidity below
    split_solidity: float = 0.975    # this; a big convex cell is not a pair), or if twice as large
    faint_sigmas: float = 2.5        # cell-sized objects this many noise sigmas (of a 1/15-cell average)
                                     # above background are added below the main threshold (dim cells;
                                     # 5.0 until 2026-11-30, see docs/benchmarks/cells.md)
    valley_depth: float = 0.15       # a line this much (x Otsu level) below its surroundings parts two cells
    split_seed: float = 0.15         # cutting a large object: seed discs of this many diameters ...
    split_edge_weight: float = 1.0   # ... and the weight of the contrast's edges against the distance map
    clump_edge_weight: float = 0.0   # a clump's cells: edges against the distance from their centres, in radii
                                     # (1.0 tried 2026-11-30: fewer composed split pieces, Chula tuning -0.7%; off)
    split_rim_votes: float = 0.2     # a cell's centre in a clump: this share of its rim on the clump's outline
    nucleus_reach: float = 0.0       # no red-cell seed on a white cell's nucleus or within this many cell diameters of it
    white_margin: float = 0.3        # a white cell's cytoplasm around its nucleus, in cell diameters
    white_solidity: float = 0.9      # a piece next to a white cell is its cytoplasm when the two make a round cell
    white_reach: float = 0.5         # ... and it lies within this many cell diameters of the nucleus
    give_back_pieces: bool = True    # a large object gives back the pieces of its neighbours it took in, and
                                     # is cut again (``appendages.py``, ``SPLIT_ROUNDS``; added 2026-12-01)
    fill_notches: bool = True        # a notched cell takes the pixels of its hull above the noise (``fill_notches``)
    work_diameter: float = 64.0      # cells over 1.25x this many pixels wide are found on a copy of the field
                                     # shrunk until they are this wide (0: always at full size); ``working_scale.py``


DEFAULT_SETTINGS = FinderSettings()


@dataclass
class FoundObjects:
    labels: np.ndarray        # (Y, X) int32, every object found, 0 = background
    diameter_px: float        # the field's red-cell diameter (given, or measured)
    contrast: np.ndarray      # (Y, X) the contrast the objects were found in
    background: np.ndarray    # (C, Y, X) local background estimate
    nuclei: np.ndarray | None = None  # (Y, X) white cells' nuclei (``kinds.white_nuclei``), stained fields


SPLIT_ROUNDS = 3    # large objects are cut and their neighbours' pieces given back until none changes, at most this often
NUCLEUS_INSET = 0.15  # a white cell's seed: its nucleus shrunk by this many cell diameters
COMPACT_COVER = 0.15  # compact objects must cover this share of the foreground to set the size (``crowded``)
PALE_CENTRE = 1.0     # a crowded field's holes up to this many (first-guess) cell areas are pale centres


OPENING_TOLERANCE = 0.25  # px of radius: the bisection stops there (12 steps, 0.02 px, until 2026-11-30)


def opening_diameter(foreground: np.ndarray, share: float = 0.5) -> float:
    """Twice the largest radius r such that opening ``foreground`` with a disc of radius r keeps at
    least ``share`` of it: the typical width of its cells, weighted by area, whether they touch or
    overlap (a disc of a cell's size still fits inside each cell of a crowded field)."""
    distance = ndi.distance_transform_edt(foreground)
    total = foreground.sum()

    def kept(r: float) -> float:
        # the opening by a disc of radius r: every pixel within r of a pixel at least r deep
        return (ndi.distance_transform_edt(distance < r) <= r).sum() / total

    lo, hi = 1.0, max(1.0, float(distance.max()))
    while hi - lo > OPENING_TOLERANCE:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if kept(mid) >= share else (lo, mid)
    return 2.0 * lo


def compact_areas(foreground: np.ndarray) -> np.ndarray:
    """Areas of the compact, single-cell objects of a mask (solidity >= 0.9)."""
    labels = measure.label(foreground)
    area = np.bincount(labels.ravel())
    compact = solid_objects(labels, area >= MIN_CELL_DIAMETER_PX ** 2, 0.9)
    return area[compact].astype(float)


def crowded(foreground: np.ndarray, areas: np.ndarray) -> bool:
    """Whether the compact objects (``areas``) are fewer than 3 or cover less than
    ``COMPACT_COVER`` of the mask: a crowded field, where nearly every cell touches another and
    the few compact objects are specks."""
    return len(areas) < 3 or areas.sum() < COMPACT_COVER * foreground.sum()


def measure_field_diameter(foreground: np.ndarray, crowd: np.ndarray | None = None,
                           areas: np.ndarray | None = None) -> float:
    """The typical cell diameter of a foreground mask: the equivalent diameter of its compact,
    single-cell objects (their area-weighted median, so specks weigh little); on a ``crowded``
    field the width a disc-shaped opening keeps (``opening_diameter``), of the mask ``crowd``
    when given. ``areas``: the mask's ``compact_areas``, when known."""
    if not foreground.any():
        raise NoCellsFound("no cells were found: the image has no objects brighter (or darker) than its background")
    sizes = compact_areas(foreground) if areas is None else areas
    if crowded(foreground, sizes):
        diameter = opening_diameter(foreground if crowd is None else crowd)
        if MIN_CELL_DIAMETER_PX <= diameter <= min(foreground.shape) / 4:
            return diameter
        # a quarter of the field wide: the foreground is one merged sheet, not crowded cells
        if len(sizes) < 3:
            if diameter < MIN_CELL_DIAMETER_PX:
                raise NoCellsFound("no cells were found: every object is only a few pixels wide")
            return diameter
    sizes = np.sort(sizes)
    weights = np.cumsum(sizes) / sizes.sum()
    return float(2.0 * np.sqrt(sizes[np.searchsorted(weights, 0.5)] / np.pi))


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """``mask`` with every hole (background not connected to the field's edge) under ``max_area`` filled."""
    holes, n = ndi.label(~mask)
    if n == 0:
        return mask
    area = np.bincount(holes.ravel())
    small = area < max_area
    small[0] = False
    for side in (holes[0], holes[-1], holes[:, 0], holes[:, -1]):
        small[side] = False
    return mask | small[holes]


def fill_pale_centres(mask: np.ndarray, max_area: float) -> np.ndarray:
    """``mask`` with its small, convex holes filled: a cell's pale centre is round, while the gap
    between touching cells is a concave triangle (and a gap between distant cells is large)."""
    holes, n = ndi.label(~mask)
    fill = np.zeros(n + 1, bool)
    edge = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    for region in measure.regionprops(holes):
        if region.area < max_area and region.label not in edge and solidity(region.image) >= 0.85:
            fill[region.label] = True
    return mask | fill[holes]


def remove_small_objects(mask: np.ndarray, min_area: float) -> np.ndarray:
    objects, n = ndi.label(mask)
    if n == 0:
        return mask
    keep = np.bincount(objects.ravel()) >= min_area
    keep[0] = False
    return keep[objects]


def clump_seeds(components: np.ndarray, peaks: np.ndarray, diameter: float,
                settings: FinderSettings) -> tuple[np.ndarray, list[int]]:
    """``peaks`` [N, 2] with the seeds of every clump (a component of more than ``split_area``
    cells) replaced by its ``rim_centres`` where these find more cells: in a clump the distance
    map peaks between cells, where three of them meet, not at their centres. Also the labels of
    the components so seeded."""
    area = np.pi * (diameter / 2.0) ** 2
    owner = components[tuple(peaks.T)]
    count = np.bincount(owner, minlength=int(components.max()) + 1)
    keep = np.ones(len(peaks), bool)
    extra, seeded = [], []
    for region in measure.regionprops(components):
        if region.area < settings.split_area * area:
            continue
        if region.area < 2 * settings.split_area * area and solidity(region.image) >= settings.split_solidity:
            continue  # convex: one large or oval cell (both ends of an oval fit a circle), not a clump
        k = int(count[region.label])
        rim = rim_centres(region.image, diameter, settings.split_rim_votes, max_count=2 * max(2, round(region.area / area)))
        if len(rim) > max(k, 1):
            keep &= owner != region.label
            extra.append(np.rint(rim).astype(int) + np.array(region.bbox[:2]))
            seeded.append(region.label)
    if not extra:
        return peaks, seeded
    return np.concatenate([peaks[keep]] + extra).astype(int), seeded


def split_objects(core: np.ndarray, foreground: np.ndarray, diameter: float, settings: FinderSettings,
                  blob: np.ndarray | None = None, nuclei: np.ndarray | None = None,
                  edges: np.ndarray | None = None) -> np.ndarray:
    """Seeded watershed on the smoothed distance transform of the cells' cores, one seed per cell,
    grown over the whole foreground. A white cell's ``nuclei`` (labels) are seeds of their own,
    each whole, with no other seed near them: a white cell is larger than a red cell and its lobed
    nucleus and granular cytoplasm give the distance map and the rims several peaks, which would
    cut it into pieces of red-cell size (Chula field 100)."""
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(core), max(1.0, diameter / 20.0))
    if blob is not None:
        # the cell's body at its own scale: one bump per cell even where cores touch
        distance = distance + settings.blob_weight * (diameter / 2.0) * blob
    components = measure.label(foreground)
    peaks = peak_local_max(distance, min_distance=max(2, int(settings.seed_spacing * diameter)),
                           threshold_abs=settings.seed_height * diameter, labels=components, exclude_border=False)
    elevation = -distance
    clumps = []
    if settings.split_rim_votes > 0 and len(peaks):
        peaks, clumps = clump_seeds(components, peaks, diameter, settings)
        if clumps:
            # a clump seeded at its cells' centres is shared out by distance from them (its own
            # distance map would hand the middle, where cells meet, to whichever seed came first),
            # plus the image's ``edges``, so cuts follow the rims one sees, not straight lines
            flat = 0.0
            if edges is not None and settings.clump_edge_weight > 0:
                to_seed = ndi.distance_transform_edt(~_points_mask(peaks, foreground.shape)) / (diameter / 2.0)
                flat = to_seed + settings.clump_edge_weight * edges
            elevation = np.where(np.isin(components, clumps), flat, elevation)
    markers = np.zeros(foreground.shape, np.int32)
    n_seeds = 0
    if nuclei is not None and nuclei.any():
        to_nucleus = ndi.distance_transform_edt(nuclei == 0)
        if len(peaks):
            peaks = peaks[to_nucleus[tuple(peaks.T)] > settings.nucleus_reach * diameter]
        clumped = np.isin(components, np.unique(components[nuclei > 0])) & np.isin(components, clumps)
        if clumped.any():
            # a clump around a white cell: a pixel goes to the nearest red cell's centre, in cell
            # radii, or to the nucleus, in widths of a white cell's cytoplasm (a white cell is
            # larger than a red cell; a flat share-out would hand the big nucleus everything)
            to_seed = ndi.distance_transform_edt(~_points_mask(peaks, foreground.shape)) / (diameter / 2.0)
            share = np.minimum(to_seed, to_nucleus / (settings.white_margin * diameter))
            if edges is not None:
                share = share + settings.clump_edge_weight * edges
            elevation = np.where(clumped, share, elevation)
        # each nucleus one seed, kept a little inside its outline: where a nucleus reaches the
        # white cell's edge, a seed there would flood a touching red cell past the neck between them
        inner = disc_erosion(nuclei > 0, max(1, round(NUCLEUS_INSET * diameter)))
        inner |= (nuclei > 0) & ~np.isin(nuclei, nuclei[inner])  # a nucleus too thin for that: all of it
        inner &= foreground
        markers[inner] = nuclei[inner]
        n_seeds = int(nuclei.max())
    markers[tuple(peaks.T)] = n_seeds + np.arange(1, len(peaks) + 1)
    n_seeds += len(peaks)
    # objects too small or thin for a seed (platelets, specks) keep one marker each
    seeded = np.zeros(int(components.max()) + 1, bool)
    seeded[components[markers > 0]] = True
    seeded[0] = True
    if not seeded.all():
        ys, xs = np.nonzero(~seeded[components])
        owner = components[ys, xs]
        # each one's highest pixel (the first in raster order on a tie): ``ndi.maximum_position``
        # sorted the whole field for it
        first = np.lexsort((-distance[ys, xs], owner))
        top = first[np.r_[True, owner[first][1:] != owner[first][:-1]]]
        markers[ys[top], xs[top]] = n_seeds + 1 + np.arange(len(top))
    labels = segmentation.watershed(elevation, markers, mask=foreground).astype(np.int32)
    if nuclei is not None and nuclei.any():
        # a white cell reaches ``white_reach`` cell diameters beyond its nucleus at most; what its
        # seed flooded further (a crowd with few red-cell seeds) goes to the objects around it
        white = (labels > 0) & (labels <= int(nuclei.max()))
        far = white & (to_nucleus > settings.white_reach * diameter)
        if far.any():
            others = np.where(white, 0, labels)
            refill = segmentation.watershed(elevation, others, mask=far | (others > 0))
            labels[far & (refill > 0)] = refill[far & (refill > 0)]
    return labels


def _points_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(np.asarray(points, int).reshape(-1, 2).T)] = True
    return mask


def _kmeans_centres(points: np.ndarray, k: int, iterations: int = 10) -> np.ndarray:
    """k centres of ``points`` [N, 2] (a sample of 2000 at most), started evenly along the long axis."""
    points = points[:: max(1, len(points) // 2000)]
    mean = points.mean(0)
    _, _, axes = np.linalg.svd(points - mean, full_matrices=False)
    along = (points - mean) @ axes[0]
    order = np.argsort(along)
    centres = points[order[((np.arange(k) + 0.5) / k * len(points)).astype(int)]].astype(float)
    for _ in range(iterations):
        nearest = ((points[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        count = np.bincount(nearest, minlength=k)
        sums = np.stack([np.bincount(nearest, weights=points[:, a], minlength=k) for a in (0, 1)], 1)
        centres = np.where(count[:, None] > 0, sums / np.maximum(count, 1)[:, None], centres)
    return centres


def rim_centres(mask: np.ndarray, diameter: float, min_votes: float, max_count: int) -> np.ndarray:
    """Centres [N, 2] of the cells of a clump ``mask``: the circles of about a cell's radius that
    its outline supports (circular Hough transform of the outline). Each cell of a clump shows
    part of its rim on the outline, while the middle of three touching cells, where the distance
    map peaks, shows none. A centre needs ``min_votes`` of its circle on the outline and lies
    inside the mask, 0.7 radius from any other."""
    from skimage.transform import hough_circle

    radius = diameter / 2.0
    step = max(1, int(radius // 12))  # a radius of about 12 px on the grid the votes are taken on
    small = mask[::step, ::step]
    outline = small & ~ndi.binary_erosion(small, iterations=2, border_value=0)  # 2 px: robust to the grid
    r = radius / step
    radii = np.unique(np.round(np.linspace(0.8 * r, 1.1 * r, 4)).astype(int))
    radii = radii[radii >= 2]
    if len(radii) == 0 or not outline.any():
        return np.zeros((0, 2))
    pad = int(radii.max()) + 1
    votes = hough_circle(np.pad(outline, pad), radii, normalize=True, full_output=False).max(0)[pad:-pad, pad:-pad]
    votes = ndi.gaussian_filter(votes, 1.0)
    peaks = peak_local_max(votes, min_distance=max(1, int(0.7 * r)), threshold_abs=min_votes,
                           labels=small.astype(int), num_peaks=max_count, exclude_border=False)
    return np.minimum(peaks.astype(float) * step + (step - 1) / 2.0, np.array(mask.shape) - 1)


def split_large_objects(labels: np.ndarray, diameter: float, settings: FinderSettings,
                        nuclei: np.ndarray | None = None, edges: np.ndarray | None = None) -> np.ndarray:
    """Objects that hold more than one cell's area and are elongated or too large for one cell
    (overlapping pairs whose distance map has one peak, clumps) are cut into cells: one seed per
    cell where the object's outline shows a cell's rim (``rim_centres``; without two of them, the
    k-means centres of ``round(area / cell)`` cells), then a seeded
    watershed inside the object on its inverted distance map plus ``edges`` (the contrast's
    gradient, 0..1), so the cuts follow the necks between cells and the rims and overlap arcs one
    sees, not straight lines through a cell. An object holding one of the white cells' ``nuclei``
    is left whole."""
    area = np.pi * (diameter / 2.0) ** 2
    out = labels.copy()
    next_id = int(labels.max()) + 1
    seed_radius = max(1, int(settings.split_seed * diameter))
    for region in measure.regionprops(labels):
        ratio = region.area / area
        if ratio < settings.split_area:
            continue
        elongation = region.axis_major_length / max(region.axis_minor_length, 1.0)
        pair = elongation >= settings.split_elongation and solidity(region.image) < settings.split_solidity
        if not pair and ratio < 2 * settings.split_area:
            continue
        sl = region.slice
        if nuclei is not None and nuclei[sl][region.image].any():
            continue
        k = max(2, round(ratio))
        mask = region.image
        centres = rim_centres(mask, diameter, settings.split_rim_votes, max_count=2 * k)
        if len(centres) < 2:
            centres = _kmeans_centres(np.argwhere(mask).astype(float), k)
        k = len(centres)
        markers = np.zeros(mask.shape, np.int32)
        yy, xx = np.ogrid[:mask.shape[0], :mask.shape[1]]
        for i, (cy, cx) in enumerate(centres):
            markers[((yy - cy) ** 2 + (xx - cx) ** 2 <= seed_radius ** 2) & mask] = i + 1
        distance = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1] / (diameter / 2.0)
        elevation = -distance if edges is None else settings.split_edge_weight * edges[sl] - distance
        pieces = segmentation.watershed(elevation, markers, mask=mask)
        window = out[sl]
        window[mask] = np.where(pieces[mask] <= 1, region.label, pieces[mask] - 2 + next_id)
        next_id += k - 1
    return out


FINE_TO_SMOOTH = 0.32  # white noise: sigma after a one-pixel Gaussian over sigma of the residual to it
DIM_MAX_AREAS = 4.0  # a dim region of more cell areas than this is background, not dim cells
DIM_BAND = 1.5      # dim cells are looked for this many smoothing widths away from bright objects (2.0 until 2026-11-30)
DIM_PART = 0.15      # the dim part of a cell beside a bright object: this many cell areas at least
DIM_SPECK = 0.03     # compact bright spots of this many cell areas or more (below 0.4) inside a dim object ...
DIM_SPOTS = 0.3      # ... covering this share of it make it a pale white cell, not a dim red cell
DIM_FLOOR = 0.1      # in bright-field a dim cell stands this share of the Otsu level above background at
                     # least: its contrast is haemoglobin's absorbance, which varies little from cell to
                     # cell, and the background is so smooth that a few sigmas take in a white cell's halo
                     # and pale specks around dark dots (Remoscope). A fluorescent cell's light is its
                     # dye's and varies widely: there the noise decides, above a floor that only keeps a
                     # noise-free field's rounding errors out (0.0-0.03 find the same composed cells)
DIM_FLOOR_FLUORESCENCE = 0.02
SIGNIFICANT_SIGMAS = 5.0  # an object's mean contrast stands this many pixel-noise sigmas above background; a dim
                          # cell, already found on the averaged contrast, ``faint_sigmas`` (with every object
                          # at 4, 2 of 72 fields of pure noise came out with a cell; at 5, none)


def dim_cells(contrast: np.ndarray, bright: np.ndarray, diameter: float, sigmas: float,
              floor: float) -> tuple[np.ndarray, float, float, float]:
    """Cells too dim for the main threshold (fluorescence cells of a few grey levels over a noisy
    background), the level an object's mean contrast must reach to count as more than noise
    (``SIGNIFICANT_SIGMAS``; a dim cell's: ``sigmas``), and the level a dim cell's averaged
    contrast reaches (inf when the field shows no background).

    The contrast is averaged over a fifteenth of a cell, where the pixel noise drops several times
    while a cell keeps its level, and thresholded ``sigmas`` noise sigmas above the background
    (and ``floor`` above it at least).
    A band of ``DIM_BAND`` smoothing widths around the ``bright`` objects is left out: there the
    average carries the bright cells' own light into the gaps between them. Objects of at least 0.4 cell
    areas are kept (``DIM_PART`` where they border that band: the dim side of a cell whose bright
    side crossed the main threshold), grown back into that band up to the bright cells."""
    width = max(1.0, diameter / 15.0)
    area = np.pi * (diameter / 2.0) ** 2
    soft = filters.gaussian(contrast, width)
    # the grain or parasite spot of a dim cell that crossed the main threshold is no bright cell
    opened = disc_opening(bright, max(1, int(diameter / 15)))
    bright = remove_small_objects(opened, 0.4 * area)
    spots = remove_small_objects(opened, DIM_SPECK * area) & ~bright
    away = ndi.distance_transform_edt(~bright) > DIM_BAND * width
    # an object's mean contrast (one-pixel smoothing) must stand a few sigmas of that contrast's
    # pixel noise (from its finest detail, whatever covers the field) above the background
    fine = (contrast - filters.gaussian(contrast, 1.0))[::2, ::2]
    noise = robust_sigma(fine, float(np.median(fine))) * FINE_TO_SMOOTH
    sample = soft[::2, ::2][away[::2, ::2]]
    if sample.size < 16:  # no background to see: the field is one sheet, or nothing but noise
        return np.zeros_like(bright), SIGNIFICANT_SIGMAS * noise, sigmas * noise, np.inf
    sample = sample[main_peak(sample)]
    centre = float(np.median(sample))
    level = centre + sigmas * robust_sigma(sample, centre)
    level = max(level, centre + floor)
    significant = max(centre, 0.0) + SIGNIFICANT_SIGMAS * noise
    dim_significant = max(centre, 0.0) + sigmas * noise
    above = soft > level
    dim = remove_small_objects(disc_opening(above & away, max(1, int(diameter / 8))),
                               DIM_PART * area)
    # a few dim cells at most: a larger dim region is the background's own slope (a vignetted
    # corner of a bright-field image) that the block-wise background did not follow. And a pale
    # object around several compact dark spots is a white cell's halo and lobes (unstained
    # bright-field), not a dim red cell with a parasite spot or two
    objects, n = ndi.label(dim)
    if n:
        size = np.bincount(objects.ravel(), minlength=n + 1)
        lit = np.bincount(objects[spots], minlength=n + 1)
        # a dim cell stands alone (0.4 cell areas at least); a smaller dim part borders the band
        # around a bright object: the dim side of an unevenly lit cell whose bright side crossed
        # the main threshold (composed fluorescence: 13 of 33 misses were such half cells)
        beside = np.bincount(objects[ndi.binary_dilation(~away) & away], minlength=n + 1) > 0
        whole = (size >= 0.4 * area) | beside
        dim = (whole & (size <= DIM_MAX_AREAS * area) & (lit < DIM_SPOTS * size) & (np.arange(n + 1) > 0))[objects]
    if dim.any():
        dim = disc_dilation(dim, int(np.ceil(DIM_BAND * width))) & above & ~bright
    return dim, significant, dim_significant, level


def absorb_cytoplasm(labels: np.ndarray, nuclei: np.ndarray, bluer: np.ndarray, diameter: float,
                     settings: FinderSettings) -> np.ndarray:
    """``labels`` with each white cell (the object holding most of a nucleus) joined by the pieces of
    its cytoplasm cut off as separate objects. A neighbour is taken in when the two together are
    round (solidity ``white_solidity``) and rounder than the white cell alone: a crescent of cytoplasm
    completes the round cell, a red cell touching it adds a neck. A neighbour mostly ``bluer`` than
    the red cells, as a white cell's cytoplasm is, is taken in unless it has a red cell's shape
    (round) and would make the white cell less round. First, the ``bluer`` part of a neighbour that
    joins the white cell (cytoplasm a touching red cell's seed had flooded) is handed back to it.
    Only what lies within ``white_reach`` cell diameters of the nucleus is taken (on a pale field,
    whatever is nearly white is bluer than the pink cells: MalariaNet Trip_022 Image_10_add_6)."""
    min_solidity = settings.white_solidity
    out = labels.copy()
    reach = ndi.distance_transform_edt(nuclei == 0) <= settings.white_reach * diameter
    blue_parts, _ = ndi.label(disc_opening(bluer & (labels > 0) & reach, 2))
    whites = set()
    for nucleus in range(1, int(nuclei.max()) + 1):
        inside = out[nuclei == nucleus]
        inside = inside[inside > 0]
        if inside.size == 0:
            continue
        white = int(np.bincount(inside).argmax())
        whites.add(white)
        cell = out == white
        joined = np.unique(blue_parts[ndi.binary_dilation(cell) & (blue_parts > 0)])
        if len(joined):
            out[np.isin(blue_parts, joined) & ~np.isin(out, list(whites))] = white
        while True:
            ys, xs = np.nonzero(out == white)
            pad = 2
            y0, x0 = max(ys.min() - pad, 0), max(xs.min() - pad, 0)
            window = out[y0:ys.max() + pad + 1, x0:xs.max() + pad + 1]
            cell = window == white
            ring = ndi.binary_dilation(cell, iterations=1) & ~cell
            contact = np.bincount(window[ring])
            contact[[0, white] if white < len(contact) else 0] = 0
            if not contact.any():
                break
            base = solidity(cell)
            taken = False
            for other in np.argsort(contact)[::-1]:
                if contact[other] == 0:
                    break
                # the neighbour whole, not just the part inside this window
                oy, ox = np.nonzero(out == other)
                top, left = min(y0, oy.min()), min(x0, ox.min())
                bottom, right = max(y0 + window.shape[0], oy.max() + 1), max(x0 + window.shape[1], ox.max() + 1)
                both = np.isin(out[top:bottom, left:right], (white, other))
                union = solidity(both)
                piece = out[top:bottom, left:right] == other
                if reach[top:bottom, left:right][piece].mean() < 0.9:
                    continue
                blue = bluer[top:bottom, left:right][piece].mean() >= 0.5
                if (union >= max(base, min_solidity)
                        or blue and (union >= base or solidity(piece) < min_solidity)):
                    out[out == other] = white
                    taken = True
                    break
            if not taken:
                break
    return out


NOTCHED = 0.9     # an object of at most one cell's area (NOTCH_MAX) with a solidity below this ...
NOTCH_MAX = 1.0   # ... is a cell partly left out, and takes its hull's pixels above the noise, when
NOTCH_SHARE = 0.15  # these make at least this share of the filled cell (not a wedge of background
FILLED_MAX = 1.3    # between two cells) and it stays under this many cell areas (not two overlapping cells)


def fill_notches(labels: np.ndarray, above: np.ndarray, diameter: float) -> np.ndarray:
    """``labels`` where each notched object of at most one cell's size takes the unlabelled pixels
    of its convex hull that stand out of the background's noise (``above``): the dim side or
    darker centre of an unevenly lit cell that the main threshold cut to a crescent (composed
    fluorescence: 5 of 20 missed cells). Only a notch of at least ``NOTCH_SHARE`` of the filled
    cell is filled: a thin wedge is the background between two overlapping cells (Chula: 32 of 33
    cells so filled on 8 fields without this limit). And only up to ``FILLED_MAX`` cell areas: the
    hull of two overlapping cells spans background too (MalariaNet: 2 parasites' cells joined
    into clumps without this limit)."""
    area = np.pi * (diameter / 2.0) ** 2
    out = labels.copy()
    for region in measure.regionprops(labels):
        if not 0.2 * area <= region.area <= NOTCH_MAX * area:
            continue
        hull = convex_image(region.image)
        if region.area >= NOTCHED * hull.sum():  # solidity, from the hull drawn once
            continue
        window = out[region.slice]
        add = hull & (window == 0) & above[region.slice]
        filled = region.area + add.sum()
        if NOTCH_SHARE * filled <= add.sum() and filled <= FILLED_MAX * area:
            window[add] = region.label
    return out


ONE_CELL = 1.6    # pieces joined by a parasite that make at most this many cell areas ...
ONE_CELL_SOLIDITY = 0.9  # ... and a convex whole (two overlapping cells make a notched one) are one cell


def keep_blobs_whole(labels: np.ndarray, blobs: np.ndarray, diameter: float | None = None) -> np.ndarray:
    """``labels`` where no cut runs through a parasite's stained chromatin (``blobs``).

    With ``diameter``, a schizont's separate dots are first joined into one blob, and pieces that a
    blob spans and that together make at most ``ONE_CELL`` cell areas and a convex whole are one
    cell cut through its parasite, and are joined (MalariaNet Trip_083 Image_2_2: a schizont's
    cell cut in two). Otherwise the blob goes wholly to the object that holds most of it: a cut
    between two cells never runs through a parasite (Trip_065 Image_1_10: two schizonts were cut
    in two)."""
    if diameter is not None:
        blobs = join_close_parts(blobs, diameter)
    parts, n = ndi.label(blobs & (labels > 0))
    if n == 0:
        return labels
    inside = parts > 0
    pairs = np.unique(np.stack([parts[inside], labels[inside]]), axis=1)
    if pairs.shape[1] == n:  # every blob lies in one object already
        return labels
    out = labels.copy()
    areas = np.bincount(labels.ravel())
    for part in np.nonzero(np.bincount(pairs[0], minlength=n + 1) > 1)[0]:
        where = parts == part
        main = np.bincount(out[where]).argmax()
        pieces = np.unique(out[where])
        if diameter is not None and areas[pieces].sum() <= ONE_CELL * np.pi * (diameter / 2.0) ** 2:
            joined = np.isin(out, pieces)
            if solidity(joined) >= ONE_CELL_SOLIDITY:
                out[joined] = main
                continue
        out[where] = main
    return out


def drop_insignificant(labels: np.ndarray, contrast: np.ndarray, level: float,
                       dim: np.ndarray | None = None, dim_level: float | None = None) -> np.ndarray:
    """``labels`` without the objects whose mean contrast is below ``level`` (noise, not cells); an
    object mostly of ``dim`` pixels (dim cells, already tested on the averaged contrast) needs only
    ``dim_level``."""
    n = int(labels.max())
    if n == 0:
        return labels
    size = np.bincount(labels.ravel(), minlength=n + 1)
    total = np.bincount(labels.ravel(), weights=contrast.ravel(), minlength=n + 1)
    if dim is not None:
        level = np.where(2 * np.bincount(labels[dim], minlength=n + 1) > size, dim_level, level)
    keep = (size > 0) & (total >= level * size)  # a label a cut left empty is dropped too
    keep[0] = False
    mapping = np.zeros(n + 1, np.int32)
    mapping[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return mapping[labels]


def valley_lines(contrast: np.ndarray, width: float, level: float) -> np.ndarray:
    """Thin lines of lower contrast than their surroundings: the bright halo or the gap between two
    touching cells (a pale cell centre is one too, and is filled back as a hole)."""
    smooth = filters.gaussian(contrast, 1.0)
    return (filters.gaussian(smooth, width) - smooth) > level


def measure_cell_diameter(raw: np.ndarray, contrast: np.ndarray, otsu: float,
                          settings: FinderSettings = DEFAULT_SETTINGS) -> float:
    """The field's red-cell diameter from its foreground ``raw``: a first guess on the whole
    foreground, refined on the cells' cores (valleys between touching cells cut, holes filled)."""
    opened = ndi.binary_opening(raw)
    # holes are filled for the compact objects (pale centres) but not for the opening of a crowded
    # field, where the background between the cells would become one huge object
    filled = fill_holes(opened)
    areas = compact_areas(filled)
    first = measure_field_diameter(filled, opened, areas)
    if crowded(filled, areas):
        # crowded: filling the gaps between cells as holes would merge the field into one object,
        # but a cell's pale centre is a hole of its own, and on a field of ringed cells the opening
        # measures the ring (MalariaNet Trip_065 Image_1_10: 69 px, cells about 110): holes of a
        # pale centre's size are filled and the field measured again, if it stays a crowd of cells
        centres = fill_pale_centres(opened, PALE_CENTRE * np.pi * (first / 2) ** 2)
        second = opening_diameter(centres)
        return second if first <= second <= min(3.0 * first, min(raw.shape) / 4) else first
    core = raw & ~valley_lines(contrast, max(1.5, first / 25), settings.valley_depth * otsu)
    core = fill_small_holes(core, settings.hole_fraction * np.pi * (first / 2) ** 2)
    return measure_field_diameter(disc_opening(core, max(1, int(first / 30))))


@dataclass
class Foreground:
    contrast: np.ndarray  # (Y, X) cells positive (``background.foreground_contrast``)
    background: np.ndarray  # (C, Y, X)
    smooth: np.ndarray    # the contrast after a one-pixel Gaussian
    otsu: float           # Otsu level of ``smooth``
    raw: np.ndarray       # (Y, X) bool, ``smooth`` above ``threshold_fraction`` of ``otsu``


def field_foreground(plane: np.ndarray, modality: str, settings: FinderSettings = DEFAULT_SETTINGS) -> Foreground:
    """The plane's contrast and background, its smoothed contrast, Otsu level and foreground."""
    contrast, background = foreground_contrast(plane, modality)
    smooth = filters.gaussian(contrast, 1.0)
    try:
        otsu = filters.threshold_otsu(smooth[::2, ::2])
    except ValueError as exc:
        raise NoCellsFound("the image has no contrast between cells and background") from exc
    raw = smooth > settings.threshold_fraction * otsu
    if not raw.any():
        raise NoCellsFound("no cells were found: the image has no objects brighter (or darker) than its background")
    return Foreground(contrast, background, smooth, otsu, raw)


def _measure(fg: Foreground, settings: FinderSettings) -> float:
    # the size is measured on the cells' brighter cores, where crowded cells still part; the
    # looser outline of a low threshold joins a crowd into one sheet of no measurable size
    level = max(settings.threshold_fraction, settings.measure_fraction) * fg.otsu
    return measure_cell_diameter(fg.smooth > level, fg.contrast, fg.otsu, settings)


def field_cell_diameter(plane: np.ndarray, modality: str, settings: FinderSettings = DEFAULT_SETTINGS,
                        foreground: Foreground | None = None) -> float:
    """The red-cell diameter of a plane [C, Y, X], as ``find_objects`` measures it; ``foreground``:
    the plane's ``field_foreground``, when known."""
    return _measure(foreground or field_foreground(plane, modality, settings), settings)


def find_objects(plane: np.ndarray, modality: str, cell_diameter: float | None = None,
                 settings: FinderSettings = DEFAULT_SETTINGS, foreground: Foreground | None = None) -> FoundObjects:
    """Every object of a plane [C, Y, X] that stands out from its background, split into cells;
    ``foreground``: the plane's ``field_foreground``, when known."""
    ground = foreground or field_foreground(plane, modality, settings)
    contrast, background, smooth, otsu, raw = ground.contrast, ground.background, ground.smooth, ground.otsu, ground.raw
    if cell_diameter is None:
        cell_diameter = _measure(ground, settings)
    area = np.pi * (cell_diameter / 2.0) ** 2
    floor = (DIM_FLOOR if dark_cells(modality) else DIM_FLOOR_FLUORESCENCE) * otsu
    dim, faint_level, dim_faint_level, dim_level = dim_cells(contrast, raw, cell_diameter, settings.faint_sigmas, floor)
    if settings.faint_sigmas > 0:
        raw = raw | dim
    core = raw & ~valley_lines(contrast, max(1.5, cell_diameter / 25), settings.valley_depth * otsu)
    core = fill_small_holes(core, settings.hole_fraction * area)
    core = disc_opening(core, max(1, int(cell_diameter / 15)))
    core = remove_small_objects(core, max(2.0, 0.02 * area))
    fg = fill_small_holes(raw, settings.hole_fraction * area)
    fg = remove_small_objects(disc_opening(fg, max(1, int(cell_diameter / 15))),
                              max(2.0, 0.02 * area))
    if not core.any():
        raise NoCellsFound(f"no cells of about {cell_diameter:.0f} px were found; "
                           "check the cell diameter or the modality of the model")
    blob = None
    if settings.blob_weight > 0:
        blob = filters.gaussian(np.minimum(contrast, 2 * otsu), cell_diameter / 5.0) / max(float(otsu), 1e-6)
    stained = nuclei = None
    if modality == "brightfield-stained" and plane.shape[0] >= 3:
        nuclei = white_nuclei(plane, background, fg | core, cell_diameter)
    gradient = filters.sobel(filters.gaussian(contrast, max(1.0, cell_diameter / 30)))
    edges = np.clip(gradient / max(float(np.percentile(gradient[fg | core], 99)), 1e-6), 0, 1)
    labels = split_objects(core, fg | core, cell_diameter, settings, blob, nuclei, edges)
    if nuclei is not None:
        labels = absorb_cytoplasm(labels, nuclei, purple_mask(plane, background, labels > 0, dark=False),
                                  cell_diameter, settings)
        stained = purple_mask(plane, background, labels > 0)
    for _ in range(SPLIT_ROUNDS if settings.give_back_pieces else 1):
        before = labels
        labels = split_large_objects(labels, cell_diameter, settings, nuclei, edges)
        if settings.give_back_pieces:
            labels = give_back_appendages(labels, cell_diameter)
        if np.array_equal(before, labels):
            break
    if stained is not None:
        labels = keep_blobs_whole(labels, stained, cell_diameter)
    if settings.fill_notches:
        # on the lightly smoothed contrast: the averaged one carries cells' light into the background
        # wedge between two overlapping cells (Chula), which is no part of either
        labels = fill_notches(labels, smooth > dim_level, cell_diameter)
    labels = drop_insignificant(labels, smooth, faint_level, dim if settings.faint_sigmas > 0 else None,
                                dim_faint_level)
    if not labels.any():
        raise NoCellsFound("no cells were found: nothing stands out from the background's noise")
    return FoundObjects(labels, float(cell_diameter), contrast, background, nuclei)
