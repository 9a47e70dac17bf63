"""The Giemsa heatmap before and after the 'purple-scaled' rule, on MalariaNet test slides.

    python benchmarks/giemsa_heatmap_rules.py [--out docs/images/giemsa_heatmap_rules.png] [--cells runs/gen/cells]

Three fields of the test slides (every 7th of those with parasites, the first three): the field
with the parasite masks outlined, then the heatmap of ``giemsa-rbc``'s SUPN scorer with the rule
'purple' (on the whitened residual z = U e, shipped until 2026-12-02) and with 'purple-scaled'
(on each pixel's own residual d e, shipped since), each inside the found cells, the same
detection as ``generalisation.py table``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from generalisation import DATA, REPO, field_source, with_rule  # noqa: E402
from napari_supn_anomaly.evaluation.generalisation import detect_field  # noqa: E402
from napari_supn_anomaly.models import load_model  # noqa: E402
from napari_supn_anomaly.scoring import resolve  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "giemsa_heatmap_rules.png")
    p.add_argument("--cells", type=Path, default=REPO / "runs" / "gen" / "cells")
    p.add_argument("--data-root", type=Path, default=DATA)
    args = p.parse_args(argv)
    source = field_source(args.data_root, "test", args.cells)
    shipped = load_model("giemsa-rbc")
    rules = [("purple", "'purple' (whitened z = U e), before"), ("purple-scaled", "'purple-scaled' (d e), now")]
    picks = [i for i, (f, _) in enumerate(source) if f.parasites is not None and f.parasites.any()][::7][:3]
    fig, axes = plt.subplots(len(picks), 3, figsize=(15, 4.2 * len(picks)), squeeze=False)
    for row, i in zip(axes, picks):
        field, cells = source[i]
        row[0].imshow(np.moveaxis(field.image, 0, -1).astype(np.uint8))
        row[0].set_title(f"{field.name} (parasite masks: green)", fontsize=8)
        for ax, (rule, title) in zip(row[1:], rules):
            run = detect_field(resolve(with_rule(shipped, "supn", rule), "supn"), field, cells)
            heat = np.where(cells.labels > 0, run.heatmap, np.nan)
            ax.imshow(heat, cmap="magma", vmin=0, vmax=np.nanpercentile(heat, 99.5))
            ax.set_title(title, fontsize=8)
        for ax in row:
            ax.contour(field.parasites > 0, [0.5], colors="lime", linewidths=0.8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=50)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
