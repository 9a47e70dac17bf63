"""CPU seconds of a whole in-process detection (`pipeline.detect`: find the cells, score them, cut the
candidates) on real fields of other labs, with the built-in Giemsa model: what one process (the
napari plugin, or `supn-anomaly detect` without --workers) spends per field.

    python benchmarks/detect_cpu.py [--every 11] [--label NAME]

To compare two versions, run it with each one's source first on the path, in turn, e.g.
`git worktree add /tmp/before REF` and `PYTHONPATH=/tmp/before/src python benchmarks/detect_cpu.py
--label before`. Prints one markdown row per run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import imageio.v3 as iio

DATA = Path(os.environ.get("SUPN_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
SOURCES = {"malarianet_giemsa_fields": "images/*.jpg", "chula_rbc_fields": "images/*.jpg"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", type=int, default=11, help="every n-th field of each source")
    p.add_argument("--fields", type=int, default=6, help="fields per source at most")
    p.add_argument("--model", default="giemsa-rbc")
    p.add_argument("--label", default="this tree")
    args = p.parse_args(argv)

    import napari_supn_anomaly
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.pipeline.stacks import detect
    from napari_supn_anomaly.scoring import resolve

    scorer = resolve(load_model(args.model))
    for source, pattern in SOURCES.items():
        files = sorted((DATA / source).glob(pattern))[:: args.every][: args.fields]
        if not files:
            print(f"{source}: no fields under {DATA / source}", file=sys.stderr)
            continue
        images = [iio.imread(f)[..., :3] for f in files]
        detect(images[0], "YXS", scorer)  # imports and first-call costs out of the timing
        seconds, cells = [], 0
        for image in images:
            t0 = time.process_time()
            result = detect(image, "YXS", scorer)
            seconds.append(time.process_time() - t0)
            cells += len(result.cell_table)
        print(f"| {args.label} ({Path(napari_supn_anomaly.__file__).parent.parent}) | {source} | {len(files)} | "
              f"{cells} | {sum(seconds) / len(seconds):.2f} | {min(seconds):.2f}-{max(seconds):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
