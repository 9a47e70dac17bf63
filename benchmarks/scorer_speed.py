"""In-process scoring speed of the default scorer of the built-in models, before and after the
fast path (issue 14, part 5): crops per second at several batch sizes, a whole 2048x2048 field
stage by stage, the profiles' top lines, and whether the scores stayed the same.

    python benchmarks/scorer_speed.py [--before-ref b8d9176] [--write docs/benchmarks/scorer_speed.md]

"Before" is the package as it was at ``--before-ref``, unpacked with ``git archive`` into a
temporary folder and imported under another name, so both run in this one process on the same
crops, interleaved repetition by repetition (the machine's load hits both alike). Both load the
same model files (this tree's). Crops are real (../shared/data: supn_fl_cells and the Plymouth
Giemsa cells), brought to each model's size; fields are synthetic (``synthetic.make_field``)
with their true cell labels, so segmentation is not timed.
"""
from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.cells import standardise_crops
from napari_supn_anomaly.evaluation.datasets import load_fl_cells, load_giemsa_cells
from napari_supn_anomaly.models import AnomalyModel, load_model
from napari_supn_anomaly.models.builtin import builtin_model_path
from napari_supn_anomaly.process_memory import reuse_freed_memory
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.synthetic import make_field

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BEFORE = "napari_supn_anomaly_before"
ACCURACY_PAGE = {"fluorescence-rbc": "docs/benchmarks/generalisation.md",
                 "giemsa-rbc": "docs/benchmarks/giemsa_arch.md"}  # where a changed built-in file was compared
FIELDS = {"fluorescence-rbc": ("fluorescence", 64.0, 300), "giemsa-rbc": ("brightfield-stained", 48.0, 500)}


WHAT_CHANGED = [
    "## What the fast path changes (float32 throughout)", "",
    ("- The decoders run channels-last when scoring on a CPU (`supn.networks.inference_layout`): oneDNN's "
    "transposed convolutions, most of the network's time, run 2-3x faster in that layout. Training and GPUs keep "
    "the default layout."),
    "- Scoring runs under `torch.inference_mode` (no autograd bookkeeping).",
    ("- The spot statistic (`supn.scoring.matched_spot_map`, the fluorescence model's rule): its 1-D kernels are "
    "built once per setting and cached (they were rebuilt, about 60 small tensors, for every batch); the numerator "
    "is one more channel of the separable depthwise passes instead of a 2-D 7x7 convolution; the factor 2 of the "
    "off-diagonal products sits in their kernels; the shifted stencil terms of z = U e and of U^T z are views of "
    "one zero-padded copy instead of one zeroed copy per offset."),
    ("- Cutting crops and pasting maps back (`cells.field_crops`) stay a loop over cells: each cell is one block "
    "copy, about 9 us to cut and 16 us to paste per cell. A vectorised version (one numpy gather and one "
    "`np.maximum.at` per batch, equal to the loop) was 4x slower on a 960x960 field with 300 cells (cut 11 ms and "
    "paste 18 ms against 2.6 ms and 4.8 ms, one core), so it was not kept; `tests/test_scorer_speed.py` checks the "
    "loop against a pixel-by-pixel reference, crops over the field's edge included."),
    ("- Issue 14, second round: the spot statistic writes its 16 product planes in one buffer (five broadcast "
    "products instead of fifteen products and a stack), sums them into the energy and the numerator with one small "
    "matrix product instead of two strided sums, and runs 16 crops per pass so that its planes stay in a core's "
    "cache (about 2x cheaper than before on this machine, loaded). `ArchConfig(direct_output=True)` gives decoders "
    "that stop at half resolution with one sub-pixel convolution to the outputs; with widths 8-16-32-64 / 4-8-16-24 "
    "(`benchmarks/build/fluorescence_model.py --arch fast`) the whole scoring path costs about half as much CPU per "
    "crop and held-out accuracy holds over 3 seeds (docs/benchmarks/generalisation.md); it is the shipped "
    "`fluorescence-rbc` since 2026-11-29 (seed 0). Files without the setting build the full-resolution network "
    "and keep their scores (table above)."),
    ("- Issue 14, third round (whole fields and crop folders): rescaling a field to the model's cell size, the "
    "heatmap back to the field and single-cell crops to the model's scale (`cells.resize`, used by "
    "`cells.field_crops.rescale_plane`, `pipeline.fields` and `cells.crops.standardise_crop`) no longer go through "
    "`skimage.transform.resize`, which smoothed the whole plane with a Gaussian (anti-aliasing) and then "
    "interpolated it, two passes over every input pixel. Both steps are linear and act on each axis alone, so per "
    "axis they make one banded matrix (6 taps per output pixel at a scale of 0.47); a plane is resized with one "
    "sparse product per axis. CPU time on a 2048x2048 field, one core, machine shared: rescale 92-130 -> 19-28 ms "
    "(float64 sums, as scipy's: flat 8-bit regions stay exact integers, which the histogram-equalising "
    "`ssl-ppii-he` scorer needs), heatmap back 88-108 -> 10 ms (float32 sums), labels 8 -> 3 ms; standardising "
    "crops 1.6-2.7 -> 0.5-0.9 ms per crop. Intensities equal skimage's to float32 rounding, masks (which often "
    "interpolate to exactly 0.5) and labels exactly (tests/test_cell_crops.py); a field's scores and heatmap equal "
    "those of the skimage path within 1e-4 (tests/test_pipeline_fields.py). The cell ids come from a bincount "
    "instead of `np.unique` (8 -> 3 ms) and the background median gathers only the sampled pixels (13 -> 6 ms), "
    "with the same results."),
    "- Issue 14, fourth round (2026-11-30): on the CPU the scorer scores one batch per torch thread, each batch's operations on one core (`supn.batch_threads`), instead of splitting every operation of one batch across the cores: torch's threads meet after each of the network's small operations, which costs about as much as the split gains and collapses when another program takes a core. On this machine, 1,024 crops, 4 interleaved runs each: `fluorescence-rbc` quiet (load average under 1) 1,465-1,612 crops/s against 1,080-1,574 with torch's split, while the two helpers of this session ran 1,381-1,553 against 521-566; `giemsa-rbc` quiet 1,106-1,333 against 1,167-1,236. A whole field cuts as many batches at once as are scored side by side (`pipeline.fields`). On a GPU, and in Dask workers (one torch thread each), batches stay one after another. Scores equal the sequential ones to 4e-7. Crops are normalised in one in-place pass (the same numbers bit for bit). On stained fields the rescale stage now also finds annotation marks (`cells.overlay_marks`, about 0.1-0.15 s on a 2048x2048 field).",
    ("- Issue 14, fifth round (2026-11-30): (1) the spot statistic's separable passes are products with banded "
    "matrices instead of depthwise convolutions (`supn.scoring._spot_passes`): its product planes are laid out "
    "[plane, row, crop, column], so the row pass is one batched matrix product of 16 planes of all crops, the "
    "15 energy planes are then summed into the 3 groups that share a column kernel, and the column pass runs on "
    "4 planes instead of 16; the copy of all planes into channels-last memory is gone. In one process on one "
    "thread, the old and new statistic interleaved on the same 512 crops: 0.41-0.65 -> 0.17-0.37 ms per crop "
    "(the machine's speed drifted between runs; the new one was 1.8-2.6x faster in every pair). (2) The "
    "precision head of the half-resolution network joined its channels-last features with the plain "
    "(pixel-unshuffled) mean image, and torch's concatenation returned a plain tensor: its last two "
    "convolutions ran in the slow layout (91 against 44 us per crop for the 8->20 one). The joined tensor is now "
    "channels-last (`inference_layout`). (3) `giemsa-rbc` is the fast network since 2026-11-30 (seed 1 of 3, "
    "chosen on the MalariaNet selection slides; docs/benchmarks/giemsa_arch.md: 1,285 +- 36 against 880 +- 15 "
    "crops per CPU second on one thread over 3 seeds, accuracy held on every source). The rows above compare "
    "each version's own shipped model file; the score table below uses the file at the 'before' commit for both "
    "and shows the code alone does not move the scores. Tried and left: a channels-last pixel shuffle of the "
    "precision head's 72 outputs (the convolution's outputs reordered so that the shuffle copies runs of 2 x 18 "
    "values; 16 against 102 us per crop for the shuffle alone) left `giemsa-rbc` no faster end to end (1,347 "
    "against 1,368 crops per CPU second, 9 interleaved runs): the copy moved to the factor's slicing. How steady "
    "the rates are: this virtual machine's speed drifts between runs, nothing else running; the same tree scored "
    "1,565-1,669 `fluorescence-rbc` crops per second (batch 32, 2 threads, 9 runs) 15 minutes after this page's "
    "run."),
    ("- Looked at and left (third round, measured on one core in one process): `torch.jit.trace` + `freeze` + "
    "`optimize_for_inference` of the network: no faster (0.50-0.53 ms per crop either way) and 2.6 s to build; "
    "channels-last for the precision head's last two convolutions: 3% of the head; building the spot statistic's "
    "product planes straight into channels-last memory or grouping its 15 energy planes by their column kernels "
    "before the second pass: no faster (the passes are already about 0.2 ms per crop). Under memory pressure "
    "glibc returns freed buffers to the system and takes them back as page faults: up to 100,000 minor faults and "
    "0.15-0.25 s of system time per 512 crops. The processes the package starts (`supn-anomaly` and its Dask "
    "workers) now raise glibc's trim and mmap thresholds (`process_memory.reuse_freed_memory`): on 512 "
    "fluorescence crops, one thread, minor faults 35,000-105,000 -> 0-5,000 and CPU time 0.65-0.88 -> 0.44-0.69 s "
    "(lead, machine shared, nice 19). The napari process is left as it is: a plugin does not change its host's "
    "memory allocator."),
    ("- Looked at and left: no float64 is left in the scoring path (intensities, crops, network and maps are float32; "
    "only the resize above sums in float64, on purpose); "
    "one latent pass per crop (no sampling) is already the default; only the asked likelihood head runs; "
    "batch size matters little (16-64 within the noise above); `torch.compile` was not used (it needs a C++ "
    "compiler at run time and tens of seconds to start)."), "",
    "## Where the time goes now", "",
    ("`fluorescence-rbc`, torch's profiler over 512 crops on one thread, batch 32, after the fifth round (own "
    "time per operation): the spot statistic's row pass (one batched matrix product) 18%, the transposed "
    "convolutions of both decoders 15% together, the 3x3 convolutions 13%, the product planes 10%, GroupNorm and "
    "SiLU 10%, the sub-pixel shuffle of the precision head's output 4%. The row pass runs at about 25 GMAC/s: "
    "a band of 9 in a 64 x 64 matrix wastes 7 of every 8 multiplications, but one matrix product still beats 16 "
    "depthwise convolutions. The small output convolutions (4-20 channels) and GroupNorm on channels-last "
    "tensors are the least efficient layers. bfloat16 (autocast) was tried on this CPU, which has AVX-512 BF16: "
    "the network ran 1.3-2.2x slower. On a whole field, "
    "scoring the crops is now most of the time; the rest is cell centres, the background median and cutting and "
    "pasting (about 5-10 ms each)."), ""]


def load_before(ref: str, folder: Path):
    """The package at git ref ``ref`` as module ``napari_supn_anomaly_before`` (the tree is not touched)."""
    blob = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src/napari_supn_anomaly"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(folder, filter="data")
    shutil.move(folder / "src" / "napari_supn_anomaly", folder / BEFORE)
    sys.path.insert(0, str(folder))
    return importlib.import_module(BEFORE)


def real_crops(model, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    if model.modality == "fluorescence":
        cells = load_fl_cells(DATA, "validation")
        what = "supn_fl_cells validation crops (50 healthy, 50 infected)"
    else:
        cells = load_giemsa_cells(DATA, max_healthy=200, seed=5)
        keep = np.r_[np.flatnonzero(cells.labels == 0), np.flatnonzero(cells.labels == 1)[:56]]
        cells = cells.subset(keep)
        what = f"Plymouth Giemsa crops ({int((cells.labels == 0).sum())} healthy, {int(cells.labels.sum())} infected)"
    crops, masks, _ = standardise_crops(cells.images, cells.masks, model.geometry)
    reps = int(np.ceil(n / len(crops)))
    return np.tile(crops, (reps, 1, 1, 1))[:n], np.tile(masks, (reps, 1, 1))[:n], f"{what}, repeated to {n}"


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def crop_rates(scorers, crops, masks, batch_sizes, repeats):
    """{(variant, batch): [(wall s, cpu s), ...]} with the variants interleaved per repetition."""
    times = {}
    for variant, scorer in scorers.items():  # warm-up (first-call allocations, oneDNN kernels)
        scorer.score(crops[:64], masks[:64], batch_size=32)
    for _ in range(repeats):
        for bs in batch_sizes:
            for variant, scorer in scorers.items():
                _, wall, cpu = timed(lambda s=scorer, b=bs: s.score(crops, masks, batch_size=b))
                times.setdefault((variant, bs), []).append((wall, cpu))
    return times


def run_field(fields_module, plane, labels, scorer, diameter, batch_size):
    events = fields_module.iter_score_field(plane, labels, scorer, diameter, batch_size=batch_size)
    while True:
        try:
            next(events)
        except StopIteration as done:
            return done.value


def profile_lines(fn, n: int = 14) -> list[str]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(n)
    text = out.getvalue().replace(str(REPO) + "/", "").replace(str(Path(torch.__file__).parents[1]) + "/", "")
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return [lines[0].strip()] + lines[start:start + n + 1]


def cli_start(repeats: int) -> tuple[float, float, float]:
    """Median wall seconds of `python -c pass` and of `supn-anomaly --help`, and the CPU seconds of the latter
    (user + system: what it costs on an idle machine, whatever the load now)."""
    script = Path(sys.executable).with_name("supn-anomaly")
    bare, cli, cpu = [], [], []
    for _ in range(repeats):
        bare.append(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=False))[1])
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli.append(timed(lambda: subprocess.run([str(script), "--help"], capture_output=True, check=True))[1])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(bare), statistics.median(cli), statistics.median(cpu)


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def rate_cell(n, values, pick=statistics.median, column=0):
    return f"{n / pick([v[column] for v in values]):.0f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before-ref", default="b8d9176", help="git commit of the 'before' code")
    p.add_argument("--models", nargs="+", default=list(FIELDS))
    p.add_argument("--cells", type=int, default=512, help="crops per timed run")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--field-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--write", default=None, help="write the Markdown page here")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's memory thresholds as they are (as in napari's process); by default they "
                        "are raised as the command line and its Dask workers do (process_memory)")
    args = p.parse_args(argv)
    args.freed_memory_kept = False if args.default_malloc else reuse_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        sys.exit(f"the real crops are read from {DATA}, which is absent")
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="scorer_speed_"))
    try:
        before = load_before(args.before_ref, tmp)
        before_fields = importlib.import_module(f"{BEFORE}.pipeline.fields")
        before_models = importlib.import_module(f"{BEFORE}.models")
        before_scoring = importlib.import_module(f"{BEFORE}.scoring")
        lines = run_all(args, before, before_fields, before_models, before_scoring)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines.append(f"The whole run took {time.perf_counter() - started:.0f} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(args.write).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write).write_text(text)


def run_all(args, before, before_fields, before_models, before_scoring) -> list[str]:
    import napari_supn_anomaly.pipeline.fields as after_fields

    load_start = load_average()
    cmd = (f"python benchmarks/scorer_speed.py --before-ref {args.before_ref} --cells {args.cells} "
           f"--batch-sizes {' '.join(map(str, args.batch_sizes))} --repeats {args.repeats} "
           f"--field-repeats {args.field_repeats}" + (f" --threads {args.threads}" if args.threads else "")
           + (" --default-malloc" if args.default_malloc else "")
           + (f" --write {args.write}" if args.write else ""))
    lines = ["# Scoring speed: before and after the fast path", "",
             (f"Date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: 2-core x86_64 CPU "
             f"({platform.processor() or platform.machine()}), no GPU; torch {torch.__version__}, "
             f"{torch.get_num_threads()} torch threads; one process."),
             (f"Load average (1, 5, 15 min) at the start: {load_start}. Absolute rates vary from run to run "
             "on this virtual 2-core machine, even when nothing else runs (a load average near 1 or above means "
             "other jobs shared it); before and after ran interleaved in one process, so their ratio is the "
             "fairer figure."), "",
             ("Command (from the repository root). On a quiet machine, with the defaults: "
             "`python benchmarks/scorer_speed.py --write docs/benchmarks/scorer_speed.md` (torch's own thread count, "
             "512 crops, batches 16-128, 5 repeats, 3 field repeats, both built-in models: about 2 minutes on a quiet 2-core machine). This page:"), "", "```bash",
             cmd, "```", "",
             (f"'Before' is commit `{args.before_ref}` imported from a `git archive` of it; 'after' is this tree. "
             "Each loads its own built-in model file (the one in that version of the package) and scores with the "
             "model's default scorer. This page is CPU only; GPU figures: docs/benchmarks/gpu.md."), "",
             ("Freed memory: " + ("kept for reuse (`process_memory.reuse_freed_memory`, as `supn-anomaly` and its "
              "Dask workers do; both 'before' and 'after' run in this process, so both have it)."
              if args.freed_memory_kept else "glibc's defaults, as in the napari process "
              "(`--default-malloc`, or not a glibc system).")), ""]
    equal_rows, median_rates = [], {}
    for name in args.models:
        after_model = load_model(name)
        # each version with its own built-in model file; this tree's code also scores the older file, to
        # show that files written before keep their scores
        before_file = Path(before.__file__).parent / "models" / "weights" / f"{name}.safetensors"
        before_model = before_models.AnomalyModel.from_file(before_file)
        old_file_now = AnomalyModel.from_file(before_file)
        same_file = before_file.read_bytes() == builtin_model_path(name).read_bytes()
        scorers = {"before": before_scoring.resolve(before_model), "after": resolve(after_model)}
        crops, masks, what = real_crops(after_model, args.cells)
        times = crop_rates(scorers, crops, masks, args.batch_sizes, args.repeats)
        n = len(crops)
        lines += [(f"## `{name}`, scorer `{scorers['after'].name}` (rule `{scorers['after'].score_rule}`), "
                  f"{after_model.crop_size} px crops"), "",
                  (f"Crops: {what}. Cells per second scoring the standardised crops (`Scorer.score`), median and "
                  f"best of {args.repeats} interleaved runs by the wall clock, and per second of this process's CPU "
                  f"time (all its threads; with one thread it is the rate of one core whatever the machine's load); "
                  f"load average now {load_average()}."), "",
                  ("| batch | before median | after median | before best | after best | before per CPU s | "
                  "after per CPU s | after / before (wall medians) |"),
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for bs in args.batch_sizes:
            b, a = times["before", bs], times["after", bs]
            ratio = statistics.median(w for w, _ in b) / statistics.median(w for w, _ in a)
            lines.append(f"| {bs} | {rate_cell(n, b)} | {rate_cell(n, a)} | {rate_cell(n, b, min)} | "
                         f"{rate_cell(n, a, min)} | {rate_cell(n, b, min, 1)} | {rate_cell(n, a, min, 1)} | "
                         f"{ratio:.2f}x |")
        median_rates[name] = [(bs, n / statistics.median(v[0] for v in times["after", bs]),
                               n / statistics.median(v[1] for v in times["after", bs])) for bs in args.batch_sizes]
        old = scorers["before"].score(crops, masks, batch_size=32)
        new = resolve(old_file_now).score(crops, masks, batch_size=32)
        diff = np.abs(new.scores - old.scores)
        equal_rows.append(f"| `{name}` crops ({n}){'' if same_file else ', the file at ' + args.before_ref} | "
                          f"{diff.max():.2e} | "
                          f"{(diff / np.maximum(1.0, np.abs(old.scores))).max():.2e} | "
                          f"{np.abs(new.maps - old.maps).max():.2e} | {np.abs(old.scores).max():.1f} |")
        if not same_file:
            lines += ["", (f"The model file changed: 'before' is the file at `{args.before_ref}` "
                           f"({before_model.net.cfg.to_dict()['widths']} widths, "
                           f"{sum(p.numel() for p in before_model.net.parameters()) / 1e6:.2f} M parameters) with "
                           f"that commit's code, 'after' this tree's file ({after_model.net.cfg.to_dict()['widths']} "
                           f"widths, direct outputs: {after_model.net.cfg.direct_output}, "
                           f"{sum(p.numel() for p in after_model.net.parameters()) / 1e6:.2f} M parameters) with "
                           f"this tree's code; their accuracy is compared in {ACCURACY_PAGE[name]}.")]
        lines += [""] + field_lines(name, after_model, scorers, before_fields, after_fields, args, equal_rows,
                                    resolve(old_file_now))
    lines += ["## Are the scores the same?", "",
              ("Scores of the same crops (and of the same field's cells) with the same model file, the one at "
              f"`{args.before_ref}`, by the code before and by this tree: files written before keep their scores. "
              "Tolerance: 1e-4 relative to max(1, |score|); float32 sums in another order differ in the last "
              "digits."), "",
              "| what | max abs score diff | max rel score diff | max abs map diff | largest score |",
              "| --- | ---: | ---: | ---: | ---: |"] + equal_rows + [""]
    threads = torch.get_num_threads()
    lines += ["## The target: 2,000 cells per second in one process on 2 CPU cores", "",
              f"Median 'after' rates above, with {threads} torch thread(s), cells per second by the wall clock "
              "(per CPU second) at each batch size: "
              + "; ".join(f"`{name}` " + ", ".join(f"{wall:.0f} ({rate:.0f}) at {bs}" for bs, wall, rate in rates)
                          for name, rates in median_rates.items())
              + (f". With {threads} threads on this 2-core machine the wall-clock rate is the target's measure; it "
                 "is only as good as the machine was quiet (load average above)." if threads >= 2 else
                 ". With one thread, two cores used perfectly would at most double the rate per CPU second."), ""]
    lines += WHAT_CHANGED
    bare, cli, cpu = cli_start(7)
    lines += ["## Command-line start", "",
              (f"`supn-anomaly --help`: median {1000 * cli:.0f} ms wall and {1000 * cpu:.0f} ms of CPU over 7 starts "
               f"(`python -c pass`: {1000 * bare:.0f} ms; load average now {load_average()}; target under 500 ms). "
               "Building the parser loads numpy (through the scorer registry and the modality names), not torch or "
               "napari. See also `benchmarks/cli_startup.py`."), ""]
    return lines


def field_lines(name, model, scorers, before_fields, after_fields, args, equal_rows, old_file_now) -> list[str]:
    modality, diameter, n_cells = FIELDS[name]
    field = make_field((2048, 2048), modality, cell_diameter=diameter, n_cells=n_cells, infected_fraction=0.15,
                       seed=2048)
    image = field.image.astype(np.float32)
    plane = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    runs = {"before": (before_fields, scorers["before"]), "after": (after_fields, scorers["after"])}
    results = {}
    for _ in range(args.field_repeats):
        for variant, (module, scorer) in runs.items():
            res, wall, cpu = timed(lambda m=module, s=scorer: run_field(m, plane, field.cells, s, diameter, 32))
            results.setdefault(variant, []).append((res, wall, cpu))
    lines = [(f"### A 2048x2048 synthetic field ({modality}, cells of {diameter:g} px, seed 2048), true cell labels, "
             f"batch 32"), "",
             f"Seconds per stage, best of {args.field_repeats} interleaved runs; load average now {load_average()}.", "",
             "| stage | before | after |", "| --- | ---: | ---: |"]
    best = {v: min(rs, key=lambda r: r[1]) for v, rs in results.items()}
    for key, label in (("rescale_s", "rescale to the model's cell size"), ("score_s", "cut crops + score"),
                       ("paste_s", "paste maps back + resize")):
        lines.append(f"| {label} | {best['before'][0].timings[key]:.3f} | {best['after'][0].timings[key]:.3f} |")
    lines.append(f"| whole field | {best['before'][1]:.3f} | {best['after'][1]:.3f} |")
    lines.append(f"| whole field, CPU seconds | {best['before'][2]:.3f} | {best['after'][2]:.3f} |")
    n = len(best["after"][0].cell_ids)
    lines += ["", (f"{n} cells: {n / best['before'][0].timings['score_s']:.0f} -> "
              f"{n / best['after'][0].timings['score_s']:.0f} cells/s in cutting and scoring, "
              f"{n / best['before'][1]:.0f} -> {n / best['after'][1]:.0f} cells/s for the whole field "
              f"({n / best['before'][2]:.0f} -> {n / best['after'][2]:.0f} per CPU second)."), ""]
    old = best["before"][0]
    new = run_field(after_fields, plane, field.cells, old_file_now, diameter, 32)  # same file, this tree's code
    diff = np.abs(new.model_scores - old.model_scores)
    equal_rows.append(f"| `{name}` field ({n} cells) | {diff.max():.2e} | "
                      f"{(diff / np.maximum(1.0, np.abs(old.model_scores))).max():.2e} | "
                      f"{np.abs(new.heatmap - old.heatmap).max():.2e} (heatmap) | {np.abs(old.model_scores).max():.1f} |")
    if name == args.models[0]:
        for variant, (module, scorer) in runs.items():
            lines += [f"Profile of scoring this field, {variant} (cProfile, top lines by own time):", "", "```"]
            lines += profile_lines(lambda m=module, s=scorer: run_field(m, plane, field.cells, s, diameter, 32))
            lines += ["```", ""]
    return lines


if __name__ == "__main__":
    main()
