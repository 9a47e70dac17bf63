"""Write docs/benchmarks/finetune.md from the JSON lines of remoscope_finetune.py --splits and malarianet_finetune.py.

    python benchmarks/finetune_report.py --remoscope rs.jsonl --malarianet mn.jsonl --out docs/benchmarks/finetune.md

Each JSON line is one fine-tuning run (split, seed, settings, load average, the check's numbers and the
test AUROC). Earlier results kept on the page below the marker line are carried over unchanged.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

MARKER = "<!-- earlier results below are kept by benchmarks/finetune_report.py -->"


def read(path: Path | None) -> list[dict]:
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mean_sd(values) -> str:
    v = np.asarray([x for x in values if x is not None], float)
    if not len(v):
        return "-"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f} (n={len(v)})" if len(v) > 1 else f"{v[0]:.3f} (n=1)"


def remoscope_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    out = ["## Remoscope: fine-tuned from all healthy boxes of some fields, tested on the others", "",
           ("| split (training fields) | seed | lr | cells (regions skipped) | training s | iterations | CPU s | load | "
            "check verdict | u base / tuned | flagged base / tuned | AUROC test fields (infected / healthy / unmatched) |"),
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r['split']} | {r['seed']} | {r.get('lr_mean', '-')} | {r['n_cells']} ({r['n_skipped']} of "
                   f"{r['n_regions']}) | {r['train_s']} | {r.get('iterations', '-')} | {r.get('cpu_s', '-')} | {r['load']} | {r['verdict']} | {r['u_base']} / "
                   f"{r['u_tuned']} | {r['flagged_base']} / {r['flagged_tuned']} | {r['auroc_tuned']:.3f} "
                   f"({' / '.join(map(str, r['n_tuned']))}) |")
    out += ["", "| lr | AUROC of the shipped model on the test fields, mean ± sd over runs |", "| --- | --- |"]
    for lr in sorted({r.get("lr_mean") for r in rows}, key=str):
        sel = [r for r in rows if r.get("lr_mean") == lr]
        out.append(f"| {lr} | fine-tuned {mean_sd([r['auroc_tuned'] for r in sel])} |")
    return out + [""]


def verdict_now(r: dict) -> str:
    """The current check's verdict (training.guard) from a run's recorded check: runs made before the rule
    "must be shown better" recorded the reason, which says whether the difference was significant."""
    reason = r.get("reason", "")
    if r["verdict"] == "not compared":
        return r["verdict"]
    shown = ("95% sure" in reason and "fewer" in reason) or "base model finds" in reason or "opposite contrast" in reason
    return "fine-tuned" if r["verdict"] == "fine-tuned" and shown else "base"


def shipped_now(r: dict) -> float:
    return r["zero_shot"] if verdict_now(r) == "base" else r["fine_tuned"]


def malarianet_section(rows: list[dict], title: str = "## MalariaNet: fine-tuned on healthy cells of some slides, "
                                                       "tested on the others") -> list[str]:
    if not rows:
        return []
    out = [title, "",
           ("| training slides | test slides | seed | lr | marked cells | training s | iterations | CPU s | load | "
            "check verdict (run time / current rule) | u base / tuned | flagged base / tuned | AUROC zero-shot | "
            "AUROC fine-tuned | AUROC shipped (current rule) | "
            "training slides: base / tuned |"),
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        stages = " (colour jitter)" if r.get("colour_augment") else ""
        stages += "" if r.get("mean_iters", 1) and r.get("precision_iters", 1) else \
            (" (no training)" if not r.get("mean_iters") and not r.get("precision_iters") else
             " (noise model only)" if not r.get("mean_iters") else " (image model only)")
        out.append(f"| {' '.join(r['train'])} | {' '.join(r['test'])} | {r['seed']} | {r['lr_mean']}{stages} | "
                   f"{r['n_marked']} | {r['train_s']} | {r.get('iterations', '-')} | {r.get('cpu_s', '-')} | {r['load']} | "
                   f"{r['verdict']} / {verdict_now(r)} | {r['u_base']} / "
                   f"{r['u_tuned']} | {r.get('flagged_base', '-')} / {r.get('flagged_tuned', '-')} | "
                   f"{r['zero_shot']:.3f} | {r['fine_tuned']:.3f} | {shipped_now(r):.3f} | "
                   f"{r['train_fields_auroc_base']:.3f} / {r['train_fields_auroc_tuned']:.3f} |")
    out += ["", "| split | lr | zero-shot | fine-tuned | shipped (after the current check) |", "| --- | --- | --- | --- | --- |"]
    full = [r for r in rows if r.get("mean_iters", 1) and r.get("precision_iters", 1)]
    keys = sorted({(" ".join(r["train"]), r["lr_mean"]) for r in full}, key=str)
    for split, lr in keys:
        sel = [r for r in full if " ".join(r["train"]) == split and r["lr_mean"] == lr]
        out.append(f"| train {split} | {lr} | {mean_sd([r['zero_shot'] for r in sel])} | "
                   f"{mean_sd([r['fine_tuned'] for r in sel])} | {mean_sd([shipped_now(r) for r in sel])} |")
    return out + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--remoscope", type=Path)
    ap.add_argument("--malarianet", type=Path)
    ap.add_argument("--malarianet-before", type=Path, help="runs before the fixes, shown as diagnostics")
    ap.add_argument("--intro", type=Path, help="markdown written above the tables (findings, commands)")
    ap.add_argument("--archive", metavar="TITLE",
                    help="move the page's current results (above the marker) down to the earlier results, under TITLE")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    earlier = ""
    if args.out.exists() and MARKER in args.out.read_text():
        earlier = args.out.read_text().split(MARKER, 1)[1]
    elif args.out.exists():
        earlier = "\n# Earlier results (before the fine-tuning check and the data range)\n\n" + \
            args.out.read_text().replace("# Fine-tuning for a new microscope", "## Fine-tuning for a new microscope", 1)
    if args.archive and args.out.exists() and MARKER in args.out.read_text():
        current = args.out.read_text().split(MARKER, 1)[0].split("\n", 1)[1]  # without the page title
        earlier = f"\n# {args.archive}\n" + current.replace("\n## ", "\n### ") + earlier
    text = ["# Fine-tuning that helps and never hurts", "",
            f"Written {date.today().isoformat()} by `benchmarks/finetune_report.py`. Machine: 2-core x86_64 CPU, no GPU "
            f"({platform.processor() or 'x86_64'}, torch {torch.__version__}); shared with other jobs (load average "
            "per run in the tables: wall-clock times are upper bounds).", ""]
    if args.intro and args.intro.exists():
        text += [args.intro.read_text().rstrip(), ""]
    text += remoscope_section(read(args.remoscope)) + malarianet_section(read(args.malarianet))
    text += malarianet_section(read(args.malarianet_before), "## MalariaNet before the fix: why fine-tuning hurt "
                               "(contrast guessed from the crops: Giemsa intensities inverted)")
    args.out.write_text("\n".join(text) + "\n" + MARKER + "\n" + earlier)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
