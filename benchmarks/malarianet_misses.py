"""MalariaNet parasites not inside a found red cell, on every field, one line each (issue 11).

    nice -n 10 .venv/bin/python benchmarks/malarianet_misses.py [--data-root ../shared/data] [--every 1] \
        [--gallery docs/images/malarianet_misses.png]

The same matching as ``cells_benchmark.py`` (a parasite is inside when one red-cell object of at
most two cell areas holds half of its pixels), at the package's default settings. Each miss says
why: in an object too large for one cell (with its size), split between red cells, or in no red
cell (and the kind of the object kept apart that holds most of it, if any). Prints the total at
the end; the hand-written notes in docs/benchmarks/cells.md quote it. ``--gallery`` also writes one
picture with a tile per miss (``cells_benchmark.overlay_rgb``: red cells green, objects kept apart
blue, the parasite's mask magenta), its field and reason written under it, to look at each one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cells_benchmark import Outcome, overlay_rgb, parasite_homes  # noqa: E402
from cells_sources import SOURCE_DIAMETER, load_source  # noqa: E402

from napari_supn_anomaly.cells.segmentation import segment_cells  # noqa: E402

SOURCE = "malarianet_giemsa_fields"
TILE_DIAMETERS = 2.5  # a gallery tile spans this many cell diameters (the yardstick) around the parasite
TILE_PX = 280
COLUMNS = 4


def kept_apart_kind(seg, where: np.ndarray) -> str:
    held = seg.others[where] if seg.others is not None else np.zeros(0, int)
    held = held[held > 0]
    return str(seg.other_kinds[np.bincount(held).argmax()]) if len(held) else "background"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--gallery", type=Path, help="write a picture of every miss here (PNG)")
    args = parser.parse_args(argv)
    if not (args.data_root / SOURCE).exists():
        print(f"no data under {args.data_root / SOURCE}", file=sys.stderr)
        return 2
    total = inside = 0
    tiles = []
    for f in load_source(SOURCE, args.data_root, args.every):
        seg = segment_cells(f.plane, f.modality)
        rgb = None
        for home in parasite_homes(seg.labels, f.parasites, SOURCE_DIAMETER[SOURCE]):
            total += 1
            inside += home.inside
            if home.inside:
                continue
            name = f"{f.name} parasite {home.parasite} at ({home.centre[0]:.0f}, {home.centre[1]:.0f})"
            pixels = f.parasites == home.parasite
            if home.object:
                reason = f"in an object of {home.areas:.2f} cell areas"
            elif (seg.labels[pixels] > 0).mean() >= 0.5:
                reason = "split between red cells, none holds half of it"
            else:
                reason = f"in no red cell ({kept_apart_kind(seg, pixels)})"
            print(f"{name}: {reason}", flush=True)
            if args.gallery:
                if rgb is None:
                    rgb = overlay_rgb(f, Outcome(seg.labels, seg.others, 0.0))
                tiles.append((gallery_tile(rgb, home.centre), f"{f.name.replace('_Day', ' Day')} #{home.parasite}", reason))
    print(f"parasites inside a found red cell: {inside} of {total} ({100 * inside / max(total, 1):.1f}%)")
    if args.gallery and tiles:
        write_gallery(tiles, args.gallery)
        print(f"wrote {args.gallery}")
    return 0


def gallery_tile(rgb: np.ndarray, centre) -> np.ndarray:
    """A square of ``TILE_DIAMETERS`` cell diameters around ``centre`` (dark grey past the field's
    edge, so the edge shows), resized to ``TILE_PX``."""
    from skimage.transform import resize

    from napari_supn_anomaly.review.tiles import cut_window

    half = int(TILE_DIAMETERS * SOURCE_DIAMETER[SOURCE] / 2)
    y, x = (int(round(c)) for c in centre)
    tile = cut_window(rgb, slice(y - half, y + half), slice(x - half, x + half), fill=40)
    return (resize(tile, (TILE_PX, TILE_PX), order=1, anti_aliasing=True) * 255).astype(np.uint8)


def write_gallery(tiles: list[tuple[np.ndarray, str, str]], path: Path) -> None:
    from PIL import Image, ImageDraw

    caption = 34
    rows = -(-len(tiles) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * TILE_PX, rows * (TILE_PX + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, name, reason) in enumerate(tiles):
        x, y = (i % COLUMNS) * TILE_PX, (i // COLUMNS) * (TILE_PX + caption)
        sheet.paste(Image.fromarray(tile), (x, y))
        draw.text((x + 4, y + TILE_PX + 2), name[:46], fill="black")
        draw.text((x + 4, y + TILE_PX + 17), reason[:46], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


if __name__ == "__main__":
    raise SystemExit(main())
