"""GPU figures (issue 14, part 6): the built-in models on a CUDA device.

* crops per second of each built-in model's default scorer at several batch sizes, end to end
  (``Scorer.score``: numpy crops in, numpy maps and scores out) and for the network and score rule
  alone on crops already on the GPU (what the transfers and the host-side work cost);
* every scorer of each model on CUDA against the same machine's CPU, with TF32 convolutions allowed
  (torch's default) and not;
* a whole synthetic 2048x2048 field, and a real MalariaNet field for ``giemsa-rbc``, through
  ``pipeline.detect`` with the model's default scorer (cell finding included) on CUDA and on the CPU,
  cell by cell and candidate by candidate;
* a short fine-tune on CUDA, kept or not by the comparison with its base.

The GPU machine has no ../shared/data, so it runs in two steps:

    python benchmarks/gpu_speed.py pack                      # here: real crops -> runs/gpu/crops.npz
    python benchmarks/gpu_speed.py run --out gpu.json        # on the GPU machine (carry runs/gpu)
    python benchmarks/gpu_speed.py write gpu.json --write docs/benchmarks/gpu.md

``run`` needs only numpy, scipy, scikit-image, pandas, safetensors, tifffile, pillow and torch
(no napari, Dask or bioio), with ``PYTHONPATH=src``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "runs" / "gpu" / "crops.npz"
MODELS = ("fluorescence-rbc", "giemsa-rbc")
FIELDS = {"fluorescence-rbc": ("fluorescence", 64.0, 300), "giemsa-rbc": ("brightfield-stained", 48.0, 500)}


def pack(out: Path) -> None:
    """Real crops of each built-in model, standardised to its crop size (as benchmarks/scorer_speed.py)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from scorer_speed import real_crops

    from napari_supn_anomaly.models import load_model

    arrays = {}
    for name in MODELS:
        crops, masks, what = real_crops(load_model(name), 256)
        arrays[f"{name}/crops"], arrays[f"{name}/masks"] = crops.astype(np.float32), masks
        arrays[f"{name}/what"] = np.array(what)
    field = real_field()
    arrays["giemsa-rbc/field"], arrays["giemsa-rbc/field_name"] = field.image, np.array(field.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def real_field():
    """The first field of a MalariaNet test slide (another lab's Giemsa smear, [3, Y, X] uint8)."""
    from napari_supn_anomaly.evaluation.builtin_splits import MALARIANET_TEST_SLIDES
    from napari_supn_anomaly.evaluation.field_sets import load_malarianet_fields

    return load_malarianet_fields(REPO.parent / "shared" / "data", MALARIANET_TEST_SLIDES[1:2])[0]


DEVICE = "cuda"  # --device cpu tries the script on a machine without a GPU


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _timed(fn):
    _sync()
    t = time.perf_counter()
    out = fn()
    _sync()
    return out, time.perf_counter() - t


def _diff(a, b) -> dict:
    return {"max_abs_score": float(np.abs(a.scores - b.scores).max()),
            "max_rel_score": float((np.abs(a.scores - b.scores) / np.maximum(1.0, np.abs(b.scores))).max()),
            "max_abs_map": float(np.abs(a.maps - b.maps).max()), "largest_score": float(np.abs(b.scores).max())}


def _guarded(results: dict, key: str, fn) -> None:
    """Run one check; a failure is recorded with its traceback and the run goes on."""
    started = time.perf_counter()
    try:
        results[key] = fn()
    except Exception:  # noqa: BLE001 - the point is to record what breaks on CUDA
        results[key] = {"error": traceback.format_exc()}
    print(f"[{time.perf_counter() - started:6.1f} s] {key}: "
          f"{'ERROR' if 'error' in results[key] else 'ok'}", flush=True)


def crop_rates(name: str, crops: np.ndarray, masks: np.ndarray, batch_sizes, n: int, repeats: int) -> dict:
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.scoring import resolve
    from napari_supn_anomaly.scoring.cell_terms import CELL_TERMS
    from napari_supn_anomaly.supn import SCORE_RULES
    from napari_supn_anomaly.supn.devices import exact_float32
    from napari_supn_anomaly.supn.scoring import anomaly_maps

    model = load_model(name).to(DEVICE)
    scorer = resolve(model)
    reps = int(np.ceil(n / len(crops)))
    big_c, big_m = np.tile(crops, (reps, 1, 1, 1))[:n], np.tile(masks, (reps, 1, 1))[:n]
    out = {"scorer": scorer.name, "rule": scorer.score_rule, "crop_size": model.crop_size,
           "channels": model.channels, "n": n, "end_to_end": {}, "on_gpu": {}}
    scorer.score(big_c[:512], big_m[:512], batch_size=128)  # warm-up: cuDNN picks its kernels
    for bs in batch_sizes:
        walls = [_timed(lambda b=bs: scorer.score(big_c, big_m, batch_size=b))[1] for _ in range(repeats)]
        out["end_to_end"][bs] = {"median_s": statistics.median(walls), "best_s": min(walls),
                                 "cells_per_s_median": n / statistics.median(walls), "cells_per_s_best": n / min(walls)}
    # the network and the rule alone, the crops already normalised on the GPU: in full float32 as the
    # package scores, and in TF32 (torch's default for convolutions) to show what exactness costs. A
    # scorer with a cell term (supn+saturation) runs the SUPN head there; its term is measured on the host
    head = "supn" if scorer.name in CELL_TERMS else scorer.name
    out["network_head"] = head
    x = torch.from_numpy(model.normalise(big_c)).to(DEVICE)
    rule = SCORE_RULES[model.score_rule(head)]
    for key, precision in (("on_gpu", exact_float32), ("on_gpu_tf32", contextlib.nullcontext)):
        out[key] = {}
        with torch.inference_mode(), precision():
            for bs in batch_sizes:
                def run(b=bs):
                    for s in range(0, n, b):
                        anomaly_maps(model.net, x[s:s + b], head, rule, 0, None)
                run()
                walls = [_timed(run)[1] for _ in range(repeats)]
                out[key][bs] = {"median_s": statistics.median(walls),
                                "cells_per_s_median": n / statistics.median(walls)}
    if DEVICE == "cuda":
        out["max_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
        torch.cuda.reset_peak_memory_stats()
    return out


def scorer_agreement(name: str, crops: np.ndarray, masks: np.ndarray) -> dict:
    """Every scorer of the model on the GPU against the CPU, the same crops, as the package scores."""
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.scoring import resolve

    out = {}
    cpu_model, gpu_model = load_model(name), load_model(name).to(DEVICE)
    names = [*cpu_model.scorers, resolve(cpu_model).name, "ensemble", "ssl-ppii"]  # the default included
    for scorer_name in dict.fromkeys(names):
        try:
            ref = resolve(cpu_model, scorer_name).score(crops, masks, batch_size=64)
        except Exception as exc:  # noqa: BLE001 - not every model has every scorer
            out[scorer_name] = {"cpu_error": f"{type(exc).__name__}: {exc}"}
            continue
        try:
            out[scorer_name] = _diff(resolve(gpu_model, scorer_name).score(crops, masks, batch_size=64), ref)
        except Exception:  # noqa: BLE001
            out[scorer_name] = {"error": traceback.format_exc()}
    return out


def synthetic_field(name: str) -> tuple[np.ndarray, str]:
    from napari_supn_anomaly.synthetic import make_field

    modality, diameter, n_cells = FIELDS[name]
    field = make_field((2048, 2048), modality, cell_diameter=diameter, n_cells=n_cells, infected_fraction=0.15,
                       seed=2048)
    return field.image, "YX" if field.image.ndim == 2 else "YXS"


def whole_field(name: str, image: np.ndarray, axes: str) -> dict:
    """``pipeline.detect`` with the model's default settings on the GPU and on the CPU, twice each."""
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
    from napari_supn_anomaly.scoring import resolve

    out, tables = {}, {}
    for run_on, device in (("gpu", DEVICE), ("cpu", "cpu")):
        for repeat in range(2):  # the first CUDA run includes cuDNN's kernel choice
            scorer = resolve(load_model(name))
            result, wall = _timed(lambda s=scorer, d=device: detect(
                image, axes, s, settings=DetectSettings(device=d, batch_size=128)))
            out[f"{run_on}_{repeat}"] = {"wall_s": wall, "n_cells": len(result.cell_table),
                                         "timings": result.provenance.get("timings_s", {}),
                                         "device": result.provenance.get("device")}
            tables[run_on] = result.cell_table
    a, b = tables["gpu"], tables["cpu"]
    out["scorer"] = scorer.name
    out["same_cells"] = bool(len(a) == len(b))
    if out["same_cells"]:
        sa, sb = a["score"].to_numpy(), b["score"].to_numpy()
        out["max_rel_score_diff"] = float((np.abs(sa - sb) / np.maximum(1.0, np.abs(sb))).max())
        out["candidates"] = [int(a["candidate"].sum()), int(b["candidate"].sum())]
        out["same_candidates"] = bool((a["candidate"].to_numpy() == b["candidate"].to_numpy()).all())
    return out


def finetune_on_cuda() -> dict:
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.synthetic import healthy_cell_crops
    from napari_supn_anomaly.training.finetune import FinetuneSettings, finetune
    from napari_supn_anomaly.training.regions import TrainingCells

    base = load_model("fluorescence-rbc")
    images, masks = healthy_cell_crops("fluorescence", n_cells=300, cell_diameter=40.0, seed=3)
    cells = TrainingCells(images, masks, [{"image": "synthetic", "y": i, "x": 0} for i in range(len(images))])
    out = {}
    for device in (DEVICE, "cpu"):
        settings = FinetuneSettings(minutes=0.5, device=device, mean_iters=150, precision_iters=150)
        events, model = [], None
        started = time.perf_counter()
        for event in finetune(base, cells, settings):
            if hasattr(event, "stage"):
                events.append((event.stage, event.done, event.total))
            else:
                model = event
        out[device] = {"wall_s": time.perf_counter() - started, "iterations": model.metadata["training"]["iterations"],
                       "train_seconds": model.metadata["training"]["seconds"],
                       "kept_base": bool(model.metadata.get("finetune_check", {}).get("kept_base", False)),
                       "device_recorded": model.metadata["training"]["finetune"]["device"],
                       "weights_on": str(next(model.net.parameters()).device)}
    return out


def run(args) -> dict:
    from napari_supn_anomaly.process_memory import reuse_freed_memory

    global DEVICE
    DEVICE = args.device
    reuse_freed_memory()  # as the command line and its Dask workers do
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run this on the GPU machine")
    data = np.load(args.crops)
    props = torch.cuda.get_device_properties(0) if DEVICE == "cuda" else None
    results = {"date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "torch": torch.__version__,
               "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
               "gpu": props.name if props else "no GPU (--device cpu)",
               "gpu_memory_gb": props.total_memory / 1e9 if props else 0.0, "python": platform.python_version(),
               "cpu_count": os.cpu_count(), "cpu_threads": torch.get_num_threads(), "batch_sizes": args.batch_sizes,
               "n": args.n, "repeats": args.repeats,
               "crops": {name: str(data[f"{name}/what"]) for name in MODELS}}
    for name in MODELS:
        crops, masks = data[f"{name}/crops"], data[f"{name}/masks"]
        _guarded(results, f"{name}/rates", lambda n=name, c=crops, m=masks: crop_rates(
            n, c, m, args.batch_sizes, args.n, args.repeats))
        _guarded(results, f"{name}/agreement", lambda n=name, c=crops, m=masks: scorer_agreement(n, c, m))
        _guarded(results, f"{name}/field", lambda n=name: whole_field(n, *synthetic_field(n)))
    if "giemsa-rbc/field" in data:
        results["real_field_name"] = str(data["giemsa-rbc/field_name"])
        _guarded(results, "giemsa-rbc/real_field", lambda: whole_field("giemsa-rbc", data["giemsa-rbc/field"], "CYX"))
    _guarded(results, "finetune", finetune_on_cuda)
    return results


def write(results: dict, out: Path | None) -> str:
    lines = ["# GPU figures", "",
             (f"Date {results['date']}. Machine: one {results['gpu']} ({results['gpu_memory_gb']:.0f} GB), "
              f"{results['cpu_count']} CPU cores; torch {results['torch']} (CUDA {results['cuda']}, cuDNN "
              f"{results['cudnn']}), Python {results['python']}; {results['cpu_threads']} torch CPU threads. "
              "CI has no GPU; this machine was lent for one session."), "",
             "Command (crops packed on the development machine, where ../shared/data is):", "", "```bash",
             "python benchmarks/gpu_speed.py pack",
             (f"PYTHONPATH=src python benchmarks/gpu_speed.py run --n {results['n']} --repeats {results['repeats']} "
              f"--batch-sizes {' '.join(map(str, results['batch_sizes']))} --out gpu.json   # on the GPU machine"),
             "python benchmarks/gpu_speed.py write gpu.json --write docs/benchmarks/gpu.md", "```", ""]
    for name in MODELS:
        rates = results.get(f"{name}/rates", {})
        lines += [f"## `{name}`", "", f"Crops: {results['crops'][name].rsplit(', repeated', 1)[0]}, repeated to {results['n']}.", ""]
        if "error" in rates:
            lines += ["Crop rates failed:", "", "```", rates["error"], "```", ""]
        else:
            exact = "on_gpu_tf32" in rates  # runs before supn.devices.exact_float32 scored in TF32 throughout
            rule = f" (rule `{rates['rule']}`)" if rates["rule"] else ""
            lines += [(f"Default scorer `{rates['scorer']}`{rule}, {rates['crop_size']} px crops, "
                       f"{rates['channels']} channel(s). Cells per second, median of {results['repeats']} runs "
                       "(best in brackets). End to end: `Scorer.score`, numpy crops in and numpy maps and scores out "
                       "(normalising on the CPU, copies both ways included). On the GPU alone: the network and the "
                       "score rule on crops already normalised on the GPU"
                       + (f" (the `{rates['network_head']}` head; the cell term is measured on the host)"
                          if rates.get("network_head", rates["scorer"]) != rates["scorer"] else "") + ". "
                       + ("End to end and the first GPU-alone column in full float32, as the package scores; the last "
                          "column in TF32 (torch's default for convolutions)." if exact else
                          "This run predates `exact_float32`: every column is in TF32, torch's default for "
                          "convolutions.")
                       + f" Peak GPU memory: {rates.get('max_memory_gb', 0.0):.2f} GB."), ""]
            if exact:
                lines += ["| batch | end to end | on the GPU alone | on the GPU alone, TF32 |",
                          "| ---: | ---: | ---: | ---: |"]
            else:
                lines += ["| batch | end to end (TF32) | on the GPU alone (TF32) |", "| ---: | ---: | ---: |"]
            for bs in results["batch_sizes"]:
                e, g = rates["end_to_end"][str(bs)], rates["on_gpu"][str(bs)]
                lines.append(f"| {bs} | {e['cells_per_s_median']:,.0f} ({e['cells_per_s_best']:,.0f}) | "
                             f"{g['cells_per_s_median']:,.0f} |"
                             + (f" {rates['on_gpu_tf32'][str(bs)]['cells_per_s_median']:,.0f} |" if exact else ""))
            lines.append("")
        agreement = results.get(f"{name}/agreement", {})
        two = any("tf32" in d for d in agreement.values() if isinstance(d, dict))
        lines += [("Every scorer on the GPU against this machine's CPU, the same crops: max relative score "
                   "difference (to max(1, abs(score))) / max absolute map difference. "
                   + ("TF32: torch's default (convolutions in TF32); FP32: TF32 off, as "
                      "`supn.devices.exact_float32` now scores." if two else
                      "As the package scores (full float32: `supn.devices.exact_float32`).")), "",
                  "| scorer | TF32 | FP32 |" if two else "| scorer | GPU against CPU |",
                  "| --- | --- | --- |" if two else "| --- | --- |"]
        if "error" in agreement:
            lines += ["", "```", agreement["error"], "```"]
        for scorer, row in agreement.items() if "error" not in agreement else ():
            if "cpu_error" in row:
                lines.append(f"| {scorer} | not available ({row['cpu_error'][:80]}) |" + (" |" if two else ""))
                continue
            cells = []
            for d in ((row["tf32"], row["fp32"]) if two else (row,)):
                cells.append("ERROR: " + d["error"].strip().splitlines()[-1][:120] if "error" in d else
                             f"{d['max_rel_score']:.1e} / {d['max_abs_map']:.1e}")
            lines.append(f"| {scorer} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += field_lines(results.get(f"{name}/field", {}),
                             f"A synthetic 2048x2048 field ({FIELDS[name][0]}, seed 2048)")
        if name == "giemsa-rbc" and "giemsa-rbc/real_field" in results:
            lines += field_lines(results["giemsa-rbc/real_field"],
                                 f"A real field of another lab (MalariaNet `{results['real_field_name']}`, 1382x1030)")
    ft = results.get("finetune", {})
    lines += ["## Fine-tuning on CUDA", ""]
    if "error" in ft:
        lines += ["```", ft["error"], "```", ""]
    else:
        lines += [("`fluorescence-rbc` fine-tuned on 300 synthetic healthy cells (`training.finetune`, 30 s budget, "
                   "at most 150 + 150 iterations), then compared with its base:"), "",
                  "| device | iterations | training s | whole s | kept the base | weights after |",
                  "| --- | ---: | ---: | ---: | --- | --- |"]
        for r in ft.values():
            lines.append(f"| {r['device_recorded']} | {r['iterations']} | {r['train_seconds']:.1f} | {r['wall_s']:.1f} | "
                         f"{r['kept_base']} | {r['weights_on']} |")
        lines.append("")
    text = "\n".join(lines) + "\n"
    if out:
        out.write_text(text)
    return text


def field_lines(field: dict, what: str) -> list[str]:
    """The table of one whole field detected on the GPU and on the CPU."""
    if "error" in field:
        return [f"{what}: detection failed:", "", "```", field["error"], "```", ""]
    lines = [f"{what} through `pipeline.detect` with the model's default scorer (`{field.get('scorer', '?')}`; "
             "cells found, then scored; batch 128), seconds:", "",
             "| run | whole | finding cells | rescale | cut + score | paste back | cells |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key in [k for k in field if k.endswith(("_0", "_1"))]:
        r, t = field[key], field[key]["timings"]
        lines.append(f"| {r['device']}, {'first' if key.endswith('_0') else 'second'} | {r['wall_s']:.2f} | "
                     f"{t.get('segmentation_s', float('nan')):.2f} | {t.get('rescale_s', float('nan')):.2f} | "
                     f"{t.get('score_s', float('nan')):.2f} | {t.get('paste_s', float('nan')):.2f} | {r['n_cells']} |")
    same = (f"Same cells on both: {field['same_cells']}; max relative score difference "
            f"{field.get('max_rel_score_diff', float('nan')):.1e}")
    if "candidates" in field:
        same += (f"; candidates at the default setting {field['candidates'][0]} on the GPU, {field['candidates'][1]} "
                 f"on the CPU, the same cells: {field['same_candidates']}")
    return lines + ["", same + ".", ""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    sub.add_parser("pack").add_argument("--out", type=Path, default=PACK)
    r = sub.add_parser("run")
    r.add_argument("--crops", type=Path, default=PACK)
    r.add_argument("--n", type=int, default=8192)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512, 2048])
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: try the script without a GPU")
    w = sub.add_parser("write")
    w.add_argument("results", type=Path)
    w.add_argument("--write", type=Path, default=None)
    args = p.parse_args(argv)
    if args.step == "pack":
        pack(args.out)
    elif args.step == "run":
        results = run(args)
        args.out.write_text(json.dumps(results, indent=1, default=str))
        print(write(json.loads(args.out.read_text()), None))
    else:
        print(write(json.loads(args.results.read_text()), args.write))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
