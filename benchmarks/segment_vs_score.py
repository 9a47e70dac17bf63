"""Is finding cells faster than scoring them? Issue 11's speed target, per source, with today's models.

Runs the whole detection as `detect` does (cells found by the package's finder, then scored) on the
fields of each source and reads the pipeline's own timings: segmentation against rescaling, scoring
and pasting the maps back, in seconds per megapixel of the field. The model is the one a user would
run on that source: ``giemsa-rbc`` on the stained fields (Chula, MalariaNet), ``fluorescence-rbc`` on
the fields composed from real fluorescence crops, and on Remoscope a model fine-tuned here for at
most 2 minutes from ``fluorescence-rbc`` on the healthy boxes of fields 0-3 (the recipe of
``remoscope_finetune.py``), timed on all 7 fields. One field at a time, torch's default threads.
The segmenter from before issue 11 (``cells_old_segmenter.py``: one threshold and a watershed on the
distance transform) is timed on the same fields too: a floor for what finding cells costs.
Writes its block into docs/benchmarks/cells.md (between the segment-vs-score markers).

    nice -n 10 .venv/bin/python benchmarks/segment_vs_score.py [--data-root ../shared/data] [--every 8] [--write]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from cells_benchmark import run_old  # noqa: E402
from cells_sources import chula, composed_fluorescence, malarianet, remoscope  # noqa: E402
from page_block import replace_block  # noqa: E402

from napari_supn_anomaly.models import load_model  # noqa: E402
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect  # noqa: E402
from napari_supn_anomaly.scoring import resolve  # noqa: E402

START, END = "<!-- segment-vs-score -->", "<!-- /segment-vs-score -->"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "cells.md"
SCORING_STEPS = ("rescale_s", "score_s", "paste_s")


def remoscope_model(root: Path):
    """``fluorescence-rbc`` fine-tuned on the healthy boxes of Remoscope fields 0-3 (2 minutes at most)."""
    from remoscope_finetune import finetune_on_fields

    from napari_supn_anomaly.evaluation.datasets import load_remoscope_fields
    from napari_supn_anomaly.training.finetune import FinetuneSettings

    fields = load_remoscope_fields(root)[:4]
    return finetune_on_fields(load_model("fluorescence-rbc"), fields, FinetuneSettings(minutes=2.0, device="cpu"),
                              "fluorescence-rbc")[0]


def time_source(fields, scorer) -> dict:
    """Seconds per megapixel: segmentation, rescale + scoring + paste-back, and the old segmenter,
    over all ``fields``."""
    megapixels = segmentation = scoring = old = 0.0
    cells = 0
    for f in fields:
        old += run_old(f).seconds  # timed also where it refuses the field, after doing its work
        result = detect(f.plane, "CYX", scorer, settings=DetectSettings(device="cpu"))
        timings = result.provenance["timings_s"]
        megapixels += f.megapixels
        segmentation += timings["segmentation_s"]
        scoring += sum(timings[k] for k in SCORING_STEPS)
        cells += len(result.cell_table)
    return {"fields": len(fields), "cells": cells, "megapixels": megapixels,
            "segmentation": segmentation / megapixels, "scoring": scoring / megapixels, "old": old / megapixels}


def block(rows: dict, args, started: float, load: str) -> str:
    lines = [START, "## Finding cells against scoring them, per source", "",
             f"`python benchmarks/segment_vs_score.py --every {args.every}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{platform.machine()} ({os.cpu_count()} CPUs, no GPU), torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; load average {load} at the end, {time.time() - started:.0f} s. "
             "The whole detection as `detect` runs it; the pipeline's own timings, one field at a time, wall clock. "
             f"Chula and MalariaNet: every {args.every}th field; all Remoscope and composed fluorescence fields.",
             "", "| source | model | fields | cells | segmentation, s / MP | scoring (rescale, model, paste), s / MP | "
             "segmentation / scoring | old segmenter (threshold and watershed), s / MP | old segmenter / scoring |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for source, (model, r) in rows.items():
        lines.append(f"| {source} | {model} | {r['fields']} | {r['cells']} | {r['segmentation']:.2f} | "
                     f"{r['scoring']:.2f} | {r['segmentation'] / r['scoring']:.1f}x | {r['old']:.2f} | "
                     f"{r['old'] / r['scoring']:.1f}x |")
    return "\n".join(lines + ["", END])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--every", type=int, default=8, help="every Nth Chula and MalariaNet field")
    p.add_argument("--write", action="store_true", help=f"write the block into {PAGE}")
    args = p.parse_args(argv)
    started = time.time()
    giemsa = resolve(load_model("giemsa-rbc"))
    sources = {
        "chula_rbc_fields": ("giemsa-rbc", lambda: chula(args.data_root, args.every), giemsa),
        "malarianet_giemsa_fields": ("giemsa-rbc", lambda: malarianet(args.data_root, args.every), giemsa),
        "composed_fluorescence": ("fluorescence-rbc", lambda: composed_fluorescence(args.data_root),
                                  resolve(load_model("fluorescence-rbc"))),
        "remoscope_pf_unstained": ("fine-tuned from fluorescence-rbc on fields 0-3", lambda: remoscope(args.data_root),
                                   None),
    }
    rows = {}
    for source, (model_name, load_fields, scorer) in sources.items():
        if scorer is None:
            scorer = resolve(remoscope_model(args.data_root))
        rows[source] = (model_name, time_source(load_fields(), scorer))
        r = rows[source][1]
        print(f"{source}: segmentation {r['segmentation']:.2f} s/MP, scoring {r['scoring']:.2f} s/MP, "
              f"old segmenter {r['old']:.2f} s/MP", flush=True)
    text = block(rows, args, started, open("/proc/loadavg").read().split()[0])
    print(text)
    if args.write:
        replace_block(PAGE, START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
