"""Fuzz the command line and the Python API with bad input (issue 16) and write
docs/benchmarks/bad_input.md.

    python benchmarks/fuzz_bad_input.py [--seed 0] [--jobs 2] [--write docs/benchmarks/bad_input.md]

POSIX only (it forks, makes named pipes and sends Ctrl-C as a terminal does); as root it also
fills a 64 KiB tmpfs for the full-disk cases.

Every case is generated from the seed: damaged images, option values, model headers and files,
crop folders, regions CSVs, arrays and settings handed to the API, a full disk (a 64 KiB tmpfs,
when this user may mount one), and Ctrl-C at random moments of ``train`` and ``detect``. Each
command line runs as its own ``supn-anomaly`` process with a time limit; each API call runs in a
forked child with a time limit, so a hang is counted, not waited for. Every outcome is one of:

* clean refusal: exit 2 and one line ``supn-anomaly CMD: error: ...`` naming the cause (API: an
  error of ``napari_supn_anomaly.errors``);
* correct result: exit 0 and outputs that read back complete (a field of noise must carry the
  "does not look like red cells" warning, or be refused for having no cells);
* interrupt handled: Ctrl-C ends with exit 130 and one line, leaving no half-written file;
* traceback (API: any other exception), hang, silent wrong result (a bad input accepted, an
  output incomplete, a noise field not flagged), refusal of a valid input, unclear refusal (the
  line does not name the cause).

Every input file is hashed before and after its case: "inputs changed" counts those that differ.
The page also measures the "does not look like red cells" rule (``cells.plausibility``) on every
real field of ``--data-root`` (none may be flagged) and on noise (all must be).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import multiprocessing
import os
import pickle
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
import tifffile
from PIL import Image

OUTCOMES = ("clean refusal", "correct result", "interrupt handled", "traceback", "hang", "silent wrong result",
            "refused a valid input", "unclear refusal")
FAILURES = OUTCOMES[3:]


@dataclass
class Case:
    id: str
    family: str
    expect: str                                # "refuse", "result" or "either"
    argv: list[str] | None = None              # supn-anomaly arguments
    api: Callable[[], object] | None = None    # run in a forked child
    check: Callable[["Case", str], str | None] | None = None  # a result's problem, or None
    words: tuple[str, ...] = ()                # a refusal names one of these
    inputs: list[Path] = field(default_factory=list)
    interrupt: str | None = None               # "train" or "detect": Ctrl-C at a random moment
    outcome: str = ""
    detail: str = ""
    changed: list[str] = field(default_factory=list)


# -- fixtures -------------------------------------------------------------------------------------------

def sha(path: Path) -> str:
    if path.is_dir():
        return "|".join(f"{p.relative_to(path)}:{sha(p)}" for p in sorted(path.rglob("*")) if p.is_file())
    if not path.is_file():
        return "not a regular file" if path.exists() or path.is_symlink() else "absent"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def crop_image(rng, size=40, spot=False):
    yy, xx = np.mgrid[:size, :size]
    r = rng.uniform(10, 13)
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r
    img = 25 + 110 * mask + rng.normal(0, 4, (size, size))
    if spot:
        img += 90 * np.exp(-((yy - size / 2 - 3) ** 2 + (xx - size / 2 + 2) ** 2) / 2.0)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def write_crops(folder: Path, n: int, seed: int, masks: Path | None = None) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, mask = crop_image(rng, spot=i % 3 == 2)
        Image.fromarray(img).save(folder / f"cell_{i:02d}.png")
        if masks is not None:
            masks.mkdir(parents=True, exist_ok=True)
            Image.fromarray((mask * 255).astype(np.uint8)).save(masks / f"cell_{i:02d}.png")
    return folder


def build_fixtures(root: Path) -> dict:
    """The good inputs every case starts from; the tiny model is trained in a child process so
    that this (forking) process never starts torch's threads."""
    from napari_supn_anomaly.synthetic import make_field

    fx = root / "fixtures"
    fx.mkdir()
    model = fx / "tiny.safetensors"
    subprocess.run([sys.executable, "-c", (
        "import torch; torch.set_num_threads(1)\n"
        "from napari_supn_anomaly.synthetic import train_synthetic_model\n"
        "m = train_synthetic_model('fluorescence', n_cells=40, crop_size=32, iterations=(40, 25), "
        "widths=(8, 8, 16, 16), latent_dim=8, batch_size=16, seed=0, name='tiny-fluorescence')\n"
        f"m.save({str(model)!r})\n")], check=True)
    f = make_field((192, 192), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=9)
    tifffile.imwrite(fx / "field.tif", f.image)
    tifffile.imwrite(fx / "labels.tif", f.cells.astype(np.uint16))
    big = make_field((384, 384), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=4)
    tifffile.imwrite(fx / "stack.tif", np.stack([big.image] * 8), imagej=True, metadata={"axes": "ZYX"})
    np.save(fx / "big_image.npy", big.image)
    np.save(fx / "big_cells.npy", big.cells)
    write_crops(fx / "cells", 12, seed=0, masks=fx / "masks")
    with open(fx / "regions.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["image", "y0", "x0", "y1", "x1"], ["field.tif", 0, 0, 192, 192]])
    return {"root": fx, "model": model, "field": fx / "field.tif", "image": f.image, "cells": f.cells,
            "labels": fx / "labels.tif", "stack": fx / "stack.tif", "crops": fx / "cells", "masks": fx / "masks",
            "regions": fx / "regions.csv"}


# -- checks of a result ----------------------------------------------------------------------------------

def detect_outputs(out: Path, stem: str, warned: bool = False):
    def check(case: Case, stdout: str) -> str | None:
        import pandas as pd

        paths = [out / f"{stem}{s}" for s in ("_heatmap.tif", "_cells.tif", "_cells.csv", "_candidates.csv")]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            return f"missing {missing[0]}"
        heat, cells = tifffile.imread(paths[0]), tifffile.imread(paths[1])
        if heat.shape != cells.shape or heat.size == 0:
            return f"heatmap {heat.shape} and cells {cells.shape} do not match"
        table = pd.read_csv(paths[2])
        planes = cells.reshape(-1, *cells.shape[-2:])
        if len(table) != sum(len(np.unique(p[p > 0])) for p in planes):  # ids restart in every plane
            return "the cell table does not list the cells"
        pd.read_csv(paths[3])
        if warned and "does not look like red cells" not in stdout:
            return "a field of noise was reported without the warning"
        return None
    return check


def csv_rows(path: Path, n: int):
    def check(case: Case, stdout: str) -> str | None:
        if not path.is_file():
            return f"{path.name} is missing"
        rows = list(csv.DictReader(open(path)))
        return None if len(rows) == n else f"{len(rows)} rows, not {n}"
    return check


def model_saved(path: Path):
    def check(case: Case, stdout: str) -> str | None:
        from napari_supn_anomaly.models.model_file import read_metadata

        if not path.is_file():
            return f"{path.name} is missing"
        meta = read_metadata(path)
        minutes = meta.get("training", {}).get("settings", {}).get("max_minutes")
        if minutes is not None and not np.isfinite(minutes):
            return "a time budget that is not a number was stored"
        return None
    return check


# -- generated cases -----------------------------------------------------------------------------------

def image_cases(fx: dict, work: Path, rng: random.Random) -> list[Case]:
    """Damaged images, odd dtypes and shapes, corrupted files: supn-anomaly detect."""
    image = fx["image"]
    cases = []

    def add(name, write, expect, words=(), warned=False, stem=None):
        folder = work / "images" / name
        folder.mkdir(parents=True)
        path = write(folder)
        out = folder / "out"
        stem = stem or path.name.split(".")[0]
        cases.append(Case(f"image/{name}", "images (detect)", expect,
                          argv=["detect", str(path), "--model", str(fx["model"]), "--out", str(out)],
                          check=detect_outputs(out, stem, warned), words=words or (path.name,), inputs=[path]))

    def tif(data, name="img.tif", **kw):
        def write(folder):
            tifffile.imwrite(folder / name, data, **kw)
            return folder / name
        return write

    for dtype in ("uint16", "int16", "int32", "float32", "float64", "float16", "int8", "uint32"):
        scaled = image.astype(np.float64) * (100 if dtype in ("uint16", "int32", "uint32", "float64") else 1)
        add(f"dtype-{dtype}", tif((scaled - (60 if dtype == "int8" else 0)).astype(dtype)), "result")
    add("dtype-bool", tif(image > 100), "refuse", ("boolean",))
    add("dtype-complex", tif(image.astype(np.complex64)), "refuse", ("complex",))
    add("float64-beyond-float32", tif(image.astype(np.float64) * 1e300), "refuse", ("values reach",))
    for k in range(3):
        bad = image.astype(np.float32)
        bad[rng.randrange(192), rng.randrange(192)] = [np.nan, np.inf, -np.inf][k]
        add(f"non-finite-{k}", tif(bad), "refuse", ("NaN",))
    add("constant", tif(np.full((192, 192), 7, np.uint8)), "refuse", ("constant",))
    add("zeros-float", tif(np.zeros((64, 64), np.float32)), "refuse", ("constant",))
    for shape in ((1, 1), (3, 3), (2, 500), (12, 12)):
        add(f"tiny-{shape[0]}x{shape[1]}", tif(np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)),
            "refuse")
    add("negative-values", tif(image.astype(np.int16) - 1000), "result")
    for kind in ("uniform", "gauss", "salt-pepper"):
        g = np.random.default_rng(rng.randrange(10**6))
        data = {"uniform": g.integers(0, 256, (256, 256)).astype(np.uint8),
                "gauss": g.normal(100, 30, (256, 256)).astype(np.float32),
                "salt-pepper": (g.random((256, 256)) > 0.5).astype(np.uint8) * 255}[kind]
        # since 2026-11-30 the cell finder finds nothing in noise and says so (``SIGNIFICANT_SIGMAS``);
        # a field it does find cells in must carry the "does not look like red cells" warning
        add(f"noise-{kind}", tif(data), "either", words=("no cells",), warned=True)
    add("stack-2", tif(np.stack([image, image])), "either")
    add("rgb-like-3", tif(np.stack([image] * 3)), "either")
    add("4-planes", tif(np.stack([image] * 4)), "either")
    add("4d", tif(np.stack([np.stack([image] * 2)] * 2)), "either")
    add("rgb-png", lambda f: (Image.fromarray(np.dstack([image] * 3)).save(f / "c.png"), f / "c.png")[1], "result")
    add("rgba-png", lambda f: (Image.fromarray(np.dstack([image] * 3 + [np.full_like(image, 255)]), "RGBA")
                               .save(f / "c.png"), f / "c.png")[1], "result")

    def zlib_bytes():
        buf = io.BytesIO()
        tifffile.imwrite(buf, image, compression="zlib")
        return buf.getvalue()

    data = zlib_bytes()
    for k in range(6):
        cut = rng.randrange(8, len(data) - 1)
        add(f"truncated-{k}", lambda f, c=cut: (f.joinpath("t.tif").write_bytes(data[:c]), f / "t.tif")[1], "refuse")
    plain = io.BytesIO()
    tifffile.imwrite(plain, image)
    plain = plain.getvalue()
    for k in range(6):
        source = data if k % 2 else plain
        flipped = bytearray(source)
        for _ in range(rng.randrange(1, 20)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        add(f"bytes-flipped-{k}", lambda f, b=bytes(flipped): (f.joinpath("b.tif").write_bytes(b), f / "b.tif")[1],
            "either")
    add("empty-file", lambda f: (f.joinpath("e.tif").write_bytes(b""), f / "e.tif")[1], "refuse")
    add("random-bytes", lambda f: (f.joinpath("r.tif").write_bytes(os.urandom(5000)), f / "r.tif")[1], "refuse")
    add("text-as-tif", lambda f: (f.joinpath("notes.tif").write_text("not an image"), f / "notes.tif")[1], "refuse")
    add("png-garbage", lambda f: (f.joinpath("g.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300)),
                                  f / "g.png")[1], "refuse")
    add("folder-as-image", lambda f: (f.joinpath("dir.tif").mkdir(), f / "dir.tif")[1], "refuse")
    add("fifo", lambda f: (os.mkfifo(f / "pipe.tif"), f / "pipe.tif")[1], "refuse", ("pipe.tif",))
    add("link-to-dev-zero", lambda f: (f.joinpath("z.tif").symlink_to("/dev/zero"), f / "z.tif")[1], "refuse")
    add("symlink-loop", lambda f: (f.joinpath("loop.tif").symlink_to(f / "loop.tif"), f / "loop.tif")[1], "refuse")
    add("missing", lambda f: f / "nope.tif", "refuse")
    return cases


def option_cases(fx: dict, work: Path, rng: random.Random) -> list[Case]:
    """Option values and output places for supn-anomaly detect, score-cells, train and demo."""
    cases = []
    model, fieldp = str(fx["model"]), str(fx["field"])

    def detect(name, extra, expect, words=(), inputs=(), out=None):
        folder = work / "options" / name
        folder.mkdir(parents=True, exist_ok=True)
        out = out or folder / "out"
        cases.append(Case(f"detect/{name}", "options (detect)", expect,
                          argv=["detect", fieldp, "--model", model, "--out", str(out), "--quiet", *extra],
                          check=detect_outputs(out, "field"), words=words, inputs=list(inputs)))

    values = {"--cell-diameter": ["nan", "inf", "-inf", "-1", "0", "1e-9", "2", "3.99", "1e9", "3000", "193"],
              "--fpr": ["nan", "inf", "-1", "0", "1", "5"],
              "--threshold": ["nan", "inf", "-inf"],
              "--channel": ["-1", "1", "5"],
              "--min-area": ["0", "-3"],
              "--batch-size": ["0", "-1"],
              "--axes": ["YXZ", "QQ", "ZX", "yy", "CYX"]}
    for option, bad in values.items():
        for v in bad:
            detect(f"{option[2:]}={v}", [option, v], "refuse", (option, "channel", "axes", "diameter"))
    for option, good in (("--cell-diameter", "30"), ("--fpr", "0.5"), ("--fpr", "1e-300"), ("--threshold", "-5"),
                         ("--threshold", "1e30"),
                         ("--channel", "0"), ("--min-area", "1000000000000"), ("--batch-size", "100000"),
                         ("--axes", "XY"), ("--intensity", "off")):
        detect(f"{option[2:]}={good}", [option, good], "result")
    folder = work / "options" / "outs"
    folder.mkdir(parents=True)
    (folder / "a-file").write_text("my notes")
    detect("out-is-a-file", [], "refuse", ("--out",), [folder / "a-file"], folder / "a-file")
    detect("out-in-proc", [], "refuse", ("--out",), out=Path("/proc/supn-results"))
    detect("out-is-dev-null", [], "refuse", ("--out",), out=Path("/dev/null"))
    detect("out-nested-new", [], "result", out=folder / "a" / "b" / "c")
    collide = work / "options" / "collide"
    collide.mkdir()
    shutil.copy(fx["labels"], collide / "field_cells.tif")
    detect("out-over-the-labels", ["--cells", str(collide / "field_cells.tif")], "refuse", ("field_cells.tif",),
           [collide / "field_cells.tif"], collide)
    labels = work / "options" / "labels"
    labels.mkdir()
    cells = fx["cells"]
    huge = cells.astype(np.int64)
    huge[huge == huge.max()] = 2**31 - 1
    for name, data, expect in (("float", cells.astype(np.float32), "refuse"),
                               ("negative", -cells.astype(np.int16), "refuse"),
                               ("bool", cells > 0, "refuse"),
                               ("wrong-shape", cells[:100], "refuse"),
                               ("all-zero", np.zeros_like(cells), "refuse"),
                               ("huge-ids", huge.astype(np.int32), "result"),
                               ("uint64-ids", (cells.astype(np.uint64) * (2**40)), "result"),
                               ("3d", np.stack([cells] * 3), "either")):
        path = labels / f"{name}.tif"
        tifffile.imwrite(path, data)
        detect(f"cells-{name}", ["--cells", str(path)], expect, (path.name, "labels"), [path])
    detect("same-input-twice", [fieldp], "refuse", ("field",))

    crops, masks = str(fx["crops"]), str(fx["masks"])

    def score(name, extra, expect, words=(), inputs=(), out=None, n=12):
        folder = work / "score" / name
        folder.mkdir(parents=True, exist_ok=True)
        out = out or folder / "s.csv"
        cases.append(Case(f"score-cells/{name}", "options (score-cells)", expect,
                          argv=["score-cells", "--model", model, "--out", str(out), *extra],
                          check=csv_rows(out, n), words=words, inputs=list(inputs)))

    score("good", ["--images", crops, "--masks", masks], "result")
    for v in ("nan", "inf", "0", "2", "1e9"):
        score(f"cell-diameter={v}", ["--images", crops, "--cell-diameter", v], "refuse", ("--cell-diameter", "scale"))
    score("fpr=nan", ["--images", crops, "--fpr", "nan"], "refuse", ("--fpr",))
    zero = work / "score" / "zero-masks"
    zero.mkdir(parents=True)
    for p in fx["crops"].iterdir():
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(zero / p.name)
    score("all-zero-masks", ["--images", crops, "--masks", str(zero)], "refuse", ("mask",), [zero])
    small = work / "score" / "small-masks"
    small.mkdir(parents=True)
    Image.fromarray(np.ones((10, 10), np.uint8)).save(small / "cell_00.png")
    score("mask-of-wrong-size", ["--images", crops, "--masks", str(small)], "refuse", ("mask",), [small])
    score("masks-are-the-images", ["--images", crops, "--masks", crops], "refuse", ("mask",))
    odd = work / "score" / "odd-crops"
    write_crops(odd, 3, seed=5)
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(odd / "tiny.png")
    score("a-2x2-crop", ["--images", str(odd)], "refuse", ("tiny.png",), [odd])
    broken = work / "score" / "broken-crops"
    write_crops(broken, 3, seed=6)
    (broken / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    score("a-broken-crop", ["--images", str(broken)], "refuse", ("zz.png",), [broken])
    score("out-is-a-folder", ["--images", crops], "refuse", ("--out",), out=work / "score")
    score("out-in-proc", ["--images", crops], "refuse", ("--out",), out=Path("/proc/s.csv"))
    score("out-is-the-model", ["--images", crops], "refuse", ("--out",), out=fx["model"])

    def train(name, extra, expect, words=(), inputs=(), out=None):
        folder = work / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        out = out or folder / "m.safetensors"
        cases.append(Case(f"train/{name}", "options (train)", expect,
                          argv=["train", "--out", str(out), "--iterations", "2", *extra],
                          check=model_saved(out), words=words, inputs=list(inputs)))

    train("from-scratch", ["--images", crops], "result")
    mine = work / "train" / "mine.safetensors"
    shutil.copy(fx["model"], mine)
    train("out-exists", ["--images", crops], "refuse", ("--out", "--overwrite"), [mine], mine)
    for extra in ((), ("--overwrite",)):
        base = work / "train" / f"base{len(extra)}.safetensors"
        shutil.copy(fx["model"], base)
        train(f"init-is-out{'-overwrite' if extra else ''}", ["--images", crops, "--init", str(base), *extra],
              "refuse", ("--out",), [base], base)
    train("out-in-proc", ["--images", crops], "refuse", ("--out",), out=Path("/proc/m.safetensors"))
    for v in ("nan", "inf", "-1", "0"):
        train(f"minutes={v}", ["--images", crops, "--minutes", v], "refuse", ("--minutes",))
    train("all-zero-masks", ["--images", crops, "--masks", str(zero)], "refuse", ("mask",))
    regions = work / "train" / "regions"
    regions.mkdir(parents=True)
    head = b"image,y0,x0,y1,x1\n"
    bad_csvs = {"binary": bytes(range(256)) * 8, "no-columns": b"a,b\n1,2\n", "nan": head + b"field.tif,nan,0,9,9\n",
                "outside": head + b"field.tif,5000,5000,6000,6000\n", "empty": b"",
                "nul": head + b"field.tif,0,0\x00,9,9\n", "other-image": head + b"x.tif,0,0,9,9\n",
                "inverted": head + b"field.tif,90,90,10,10\n", "random": bytes(rng.randrange(256) for _ in range(600))}
    for name, content in bad_csvs.items():
        path = regions / f"{name}.csv"
        path.write_bytes(content)
        train(f"regions-{name}", ["--init", model, "--fields", fieldp, "--regions", str(path)], "refuse",
              (path.name, "regions"), [path])
    os.mkfifo(regions / "pipe.csv")
    train("regions-fifo", ["--init", model, "--fields", fieldp, "--regions", str(regions / "pipe.csv")], "refuse",
          ("pipe.csv",))
    demo_file = work / "demo-out"
    demo_file.write_text("my notes")
    cases.append(Case("demo/out-is-a-file", "options (demo)", "refuse",
                      argv=["demo", "--model", model, "--out", str(demo_file)], words=("--out",), inputs=[demo_file]))
    return cases


def header_damages(rng: random.Random) -> dict[str, Callable]:
    """name -> change(meta, tensors) returning a replacement header or None."""
    def drop(key):
        return lambda m, t: m.pop(key) and None

    def setv(path, value):
        def change(m, t):
            target = m
            for k in path[:-1]:
                target = target[k]
            target[path[-1]] = value
        return change

    def nan_weight(m, t):
        name = rng.choice(sorted(k for k, v in t.items() if v.is_floating_point()))
        t[name].view(-1)[0] = float("nan")

    damages = {"meta-list": lambda m, t: [m], "meta-string": lambda m, t: "a model", "meta-number": lambda m, t: 7,
               "meta-empty": lambda m, t: m.clear(), "nan-weight": nan_weight,
               "calibration-empty": setv(["calibration"], {}),
               "calibration-no-scores": setv(["calibration", "supn", "healthy_scores"], []),
               "calibration-nan": setv(["calibration", "supn", "healthy_scores"], [0.1, float("nan")]),
               "calibration-text": setv(["calibration", "supn", "healthy_scores"], ["a", "b"]),
               "calibration-flat": setv(["calibration", "supn", "healthy_scores"], [2.0] * 30),
               "calibration-list": setv(["calibration"], [1, 2]),
               "score-rules-missing": drop("score_rules"), "score-rules-empty": setv(["score_rules"], {}),
               "score-rule-unknown": setv(["score_rules", "supn"], "sharpest"),
               "score-rule-number": setv(["score_rules", "supn"], 3),
               "score-rules-list": setv(["score_rules"], ["supn"]),
               "intensity-missing": drop("intensity"),
               "intensity-equal": setv(["intensity"], {"low": [5.0], "high": [5.0]}),
               "intensity-nan": setv(["intensity", "low"], [float("nan")]),
               "intensity-short": setv(["intensity", "low"], []), "intensity-text": setv(["intensity", "high"], ["x"]),
               "diameter-missing": drop("cell_diameter_px"), "diameter-zero": setv(["cell_diameter_px"], 0),
               "diameter-negative": setv(["cell_diameter_px"], -5),
               "diameter-nan": setv(["cell_diameter_px"], float("nan")),
               "diameter-text": setv(["cell_diameter_px"], "30"), "diameter-huge": setv(["cell_diameter_px"], 1e9),
               "architecture-missing": drop("architecture"), "architecture-list": setv(["architecture"], [1]),
               "latent-200000": setv(["architecture", "latent_dim"], 200000),
               "latent-4000": setv(["architecture", "latent_dim"], 4000),
               "widths-huge": setv(["architecture", "widths"], [10**9] * 4),
               "widths-many": setv(["architecture", "widths"], [8] * 1000),
               "crop-size-zero": setv(["architecture", "crop_size"], 0),
               "crop-size-odd": setv(["architecture", "crop_size"], 33),
               "channels-100": setv(["architecture", "channels"], 100),
               "radius-text": setv(["architecture", "radius"], "one"),
               "log-diag-nan": setv(["architecture", "log_diag_low"], float("nan")),
               "architecture-unknown-key": setv(["architecture", "wings"], 3),
               "modality-unknown": setv(["modality"], "xray"),
               "channel-names-wrong": setv(["channel_names"], ["a", "b", "c"]),
               "name-not-text": setv(["name"], ["x"]),
               "format-version-text": setv(["format_version"], "one"),
               "format-version-newer": setv(["format_version"], 99),
               "format-foreign": setv(["format"], "another-tool")}
    return damages


def model_file_cases(fx: dict, work: Path, rng: random.Random) -> tuple[list[Case], list[Path]]:
    """Damaged model headers and files: detect on the command line for some, load_model in the API for all."""
    from safetensors.torch import load_file, save_file

    from napari_supn_anomaly.models.model_file import METADATA_KEY

    folder = work / "models"
    folder.mkdir()
    source = fx["model"]
    with open(source, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        meta0 = json.loads(json.loads(fh.read(size))["__metadata__"][METADATA_KEY])
    files: list[tuple[Path, str]] = []
    for name, change in header_damages(rng).items():
        meta, tensors = json.loads(json.dumps(meta0)), load_file(str(source))
        header = change(meta, tensors)
        path = folder / f"{name}.safetensors"
        save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta if header is None else header)})
        files.append((path, "refuse"))
    data = source.read_bytes()
    for k in range(6):
        path = folder / f"truncated-{k}.safetensors"
        path.write_bytes(data[: rng.randrange(0, len(data) - 1)])
        files.append((path, "refuse"))
    for k in range(6):
        flipped = bytearray(data)
        where = rng.randrange(8, size + 8) if k < 3 else rng.randrange(size + 8, len(data))
        flipped[where] = (flipped[where] + rng.randrange(1, 256)) % 256
        path = folder / f"byte-flipped-{'header' if k < 3 else 'weights'}-{k}.safetensors"
        path.write_bytes(bytes(flipped))
        files.append((path, "either"))  # a flipped weight is another model, not always a damaged one
    marker = work / "pickle-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "pickle.safetensors").write_bytes(pickle.dumps(Payload()))
    files.append((folder / "pickle.safetensors", "refuse"))
    (folder / "empty.safetensors").write_bytes(b"")
    files.append((folder / "empty.safetensors", "refuse"))
    (folder / "text.safetensors").write_text("my notes")
    files.append((folder / "text.safetensors", "refuse"))
    os.mkfifo(folder / "pipe.safetensors")
    files.append((folder / "pipe.safetensors", "refuse"))
    (folder / "dir.safetensors").mkdir()
    files.append((folder / "dir.safetensors", "refuse"))

    cases = []
    cli = rng.sample(files, k=min(24, len(files)))
    for path, expect in cli:
        out = work / "models-out" / path.stem
        cases.append(Case(f"model-file/{path.stem}", "model files (detect)", expect,
                          argv=["detect", str(fx["field"]), "--model", str(path), "--out", str(out), "--quiet"],
                          check=detect_outputs(out, "field"), words=(path.name,), inputs=[path]))
    for path, expect in files:
        cases.append(Case(f"load_model/{path.stem}", "model files (API)", expect,
                          api=lambda p=path: load_model_api(p), words=(path.name,), inputs=[path]))
    return cases, [marker]


def load_model_api(path):
    from napari_supn_anomaly.models import load_model

    model = load_model(path)
    return f"loaded {model.name}"


def api_cases(fx: dict, work: Path, rng: random.Random) -> list[Case]:
    """Arrays, settings, labels, crops and CSVs handed to the Python API."""
    image, cells = fx["image"], fx["cells"]
    model_path = fx["model"]
    cases = []

    def scorer():
        from napari_supn_anomaly.models import load_model
        from napari_supn_anomaly.scoring import resolve

        return resolve(load_model(model_path))

    def run_detect(data, axes="YX", settings=None, labels=None):
        from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect

        result = detect(data, axes, scorer(), settings=DetectSettings(**(settings or {})), labels=labels)
        return result.summary()

    def add(name, fn, expect, family="arrays (API detect)"):
        cases.append(Case(f"api/{name}", family, expect, api=fn))

    arrays = {"nested-list": (lambda: image.tolist(), "result"), "ragged-list": (lambda: [[1, 2], [3]], "refuse"),
              "object-array": (lambda: image.astype(object), "refuse"),
              "strings": (lambda: np.full((64, 64), "a"), "refuse"), "none": (lambda: None, "refuse"),
              "dict": (lambda: {"a": 1}, "refuse"), "scalar": (lambda: np.float64(3), "refuse"),
              "1d": (lambda: image[0], "refuse"), "5d": (lambda: image[None, None, None], "either"),
              "bool": (lambda: image > 100, "refuse"), "complex": (lambda: image.astype(np.complex128), "refuse"),
              "float64-1e300": (lambda: image * 1e300, "refuse"),
              "nan": (lambda: np.where(cells == 3, np.nan, image), "refuse"),
              "empty": (lambda: np.zeros((0, 0)), "refuse"), "one-pixel": (lambda: np.ones((1, 1)), "refuse"),
              "zero-stride-100000": (lambda: np.broadcast_to(np.uint8(3), (100000, 100000)), "refuse"),
              "int64-extremes": (lambda: np.where(cells > 0, np.iinfo(np.int64).max, np.iinfo(np.int64).min), "either"),
              "dask": (lambda: __import__("dask.array").array.from_array(image, chunks=64), "result")}
    for name, (make, expect) in arrays.items():
        add(f"data-{name}", lambda m=make: run_detect(m()), expect)
    add("axes-ZYX-for-2d", lambda: run_detect(image, "ZYX"), "refuse")
    add("axes-number", lambda: run_detect(image, 5), "refuse")
    add("axes-XY", lambda: run_detect(image, "XY"), "refuse")
    bad = {"fpr": [5, -1, 0, 1, float("nan"), float("inf"), "0.1", None, True],
           "threshold": [float("nan"), float("inf"), "x", -float("inf")],
           "cell_diameter": [float("nan"), -1, 0, 1e12, "30", True, 2],
           "batch_size": [0, -1, 1.5, "8", True], "min_area": [0, -5, 2.5],
           "intensity": ["maybe", None, 3], "device": ["gpu9", None, 7]}
    for k in range(24):
        key = rng.choice(sorted(bad))
        value = rng.choice(bad[key])
        add(f"settings-{key}={value!r}-{k}", lambda s={key: value}: run_detect(image, settings=s), "refuse",
            "settings (API detect)")
    huge = np.where(cells > 0, cells.astype(np.int64) + 2**40, 0)
    for name, labels, expect in (("float", cells.astype(float), "refuse"), ("negative", -cells, "refuse"),
                                 ("wrong-shape", cells[:10], "refuse"), ("huge-ids", huge, "result"),
                                 ("all-zero", np.zeros_like(cells), "refuse"), ("list", cells.tolist(), "either")):
        add(f"labels-{name}", lambda lab=labels: run_detect(image, labels=lab), expect, "labels (API detect)")

    def score_crops(crops, masks):
        return f"{len(scorer().score(crops, masks).scores)} scores"

    s = 32
    good = np.full((3, 1, s, s), 100, np.float32), np.ones((3, s, s), bool)
    for name, crops, masks, expect in (("good", *good, "result"),
                                       ("wrong-size", np.ones((3, 1, 8, 8)), np.ones((3, 8, 8)), "refuse"),
                                       ("wrong-masks", good[0], np.ones((2, s, s)), "refuse"),
                                       ("nan", np.full((3, 1, s, s), np.nan), good[1], "refuse"),
                                       ("2d", np.ones((s, s)), np.ones((s, s)), "refuse")):
        add(f"score-{name}", lambda c=crops, m=masks: score_crops(c, m), expect, "crops (API score)")

    def regions(content: bytes):
        from napari_supn_anomaly.training.regions import read_regions_csv

        path = work / "api-regions" / f"r{rng.randrange(10**9)}.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        return f"{len(read_regions_csv(path))} regions"

    head = b"image,y0,x0,y1,x1\n"
    for k, content in enumerate([bytes(range(256)), head + b"f.tif,1,2,3\n", head + b"f.tif,a,b,c,d\n",
                                 b"\xff\xfe" + "image".encode("utf-16-le"), head + b"\x00\x00\n",
                                 head + b"f.tif,1e999,0,2e999,5\n", bytes(rng.randrange(256) for _ in range(300))]):
        add(f"regions-{k}", lambda c=content: regions(c), "refuse", "regions CSV (API)")
    add("regions-good", lambda: regions(b"image,y0,x0,y1,x1\nf.tif,0,0,10,10\n"), "result", "regions CSV (API)")

    # interrupts inside the API: the generator closed, or should_stop, at a random event
    def close_detect_after(k):
        from napari_supn_anomaly.pipeline.stacks import iter_detect

        events = iter_detect(np.stack([image] * 3), "ZYX", scorer())
        for done in range(k):
            if next(events, None) is None:
                return f"finished after {done} events"
        events.close()
        return f"closed after {k} events"

    def stop_detect_after(k):
        from napari_supn_anomaly.pipeline.stacks import detect

        calls = iter(range(10**6))
        detect(np.stack([image] * 3), "ZYX", scorer(), should_stop=lambda: next(calls) >= k)

    def stop_training_after(k):
        from napari_supn_anomaly.models import load_model
        from napari_supn_anomaly.training.finetune import FinetuneSettings, finetune
        from napari_supn_anomaly.training.regions import cells_from_labels

        plane = np.load(fx["root"] / "big_image.npy")[None].astype(np.float32)
        marked = cells_from_labels(plane, np.load(fx["root"] / "big_cells.npy"), "big.tif")
        calls = iter(range(10**6))
        for _ in finetune(load_model(model_path), marked, FinetuneSettings(minutes=0.2, mean_iters=50,
                                                                           precision_iters=50),
                          should_stop=lambda: next(calls) >= k):
            pass

    for k in sorted(rng.sample(range(1, 5), 3)):
        add(f"close-detect-after-{k}", lambda k=k: close_detect_after(k), "result", "interrupts (API)")
        add(f"stop-detect-after-{k}", lambda k=k: stop_detect_after(k), "refuse", "interrupts (API)")
    for k in sorted(rng.sample(range(0, 40), 3)):
        add(f"stop-finetune-after-{k}", lambda k=k: stop_training_after(k), "refuse", "interrupts (API)")
    return cases


def interrupt_cases(fx: dict, work: Path, rng: random.Random, n: int) -> list[Case]:
    cases = []
    for k in range(n):
        folder = work / "interrupts" / str(k)
        folder.mkdir(parents=True)
        if k % 2:
            out = folder / "m.safetensors"
            argv = ["train", "--images", str(fx["crops"]), "--out", str(out), "--iterations", "150"]
            check = model_saved(out)
        else:
            out = folder / "out"
            argv = ["detect", str(fx["stack"]), str(fx["field"]), "--model", str(fx["model"]), "--out", str(out)]
            check = None
        cases.append(Case(f"interrupt/{argv[0]}-{k}", "Ctrl-C at a random moment", "either", argv=argv, check=check,
                          interrupt=argv[0]))
    return cases


def disk_full_cases(fx: dict, work: Path) -> tuple[list[Case], Path | None]:
    disk = work / "full-disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                                           capture_output=True).returncode:
        return [], None
    with contextlib.suppress(OSError), open(disk / "filler", "wb") as fh:
        while True:
            fh.write(bytes(4096))
            fh.flush()
    model = str(fx["model"])
    cases = [Case("disk-full/detect", "full disk", "refuse", words=("disk full",),
                  argv=["detect", str(fx["field"]), "--model", model, "--out", str(disk / "out"), "--quiet"]),
             Case("disk-full/score-cells", "full disk", "refuse", words=("disk full",),
                  argv=["score-cells", "--model", model, "--images", str(fx["crops"]), "--out", str(disk / "s.csv")]),
             Case("disk-full/train", "full disk", "refuse", words=("disk full",),
                  argv=["train", "--images", str(fx["crops"]), "--out", str(disk / "m"), "--iterations", "2"])]
    return cases, disk


# -- running and judging -------------------------------------------------------------------------------

def command() -> list[str]:
    script = Path(sys.executable).with_name("supn-anomaly")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from napari_supn_anomaly.cli import main; sys.exit(main())"]


def leftovers(paths: list[Path]) -> list[str]:
    found = []
    for p in paths:
        folder = p if p.is_dir() else p.parent
        if folder.is_dir():
            found += [q.name for q in folder.rglob("*") if ".partial" in q.name]
    return found


def judge_cli(case: Case, code: int | None, out: str, err: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if code is None:
        case.outcome, case.detail = "hang", "no answer within the time limit"
    elif "Traceback" in err or code not in (0, 2, 130):
        case.outcome, case.detail = "traceback", (last or f"exit {code}")[:200]
    elif code == 130:
        case.outcome = "interrupt handled" if last == "supn-anomaly: cancelled" else "traceback"
        case.detail = last[:200]
    elif code == 2:
        if not (last.startswith("supn-anomaly") and ": error: " in last):
            case.outcome, case.detail = "traceback", last[:200]
        elif case.expect == "result":
            case.outcome, case.detail = "refused a valid input", last[:200]
        elif case.words and not any(w.lower() in last.lower() for w in case.words):
            case.outcome, case.detail = "unclear refusal", last[:200]
        else:
            case.outcome, case.detail = "clean refusal", last[:200]
    elif case.expect == "refuse":
        case.outcome, case.detail = "silent wrong result", f"accepted: {(out.strip().splitlines() or [''])[-1][:160]}"
    else:
        problem = case.check(case, out) if case.check else None
        case.outcome = "silent wrong result" if problem else "correct result"
        case.detail = problem or ""
    stray = leftovers([Path(a) for a in (case.argv or []) if a.startswith("/") and "proc" not in a and "dev" not in a])
    if stray and case.outcome not in FAILURES:
        case.outcome, case.detail = "silent wrong result", f"half-written file left: {stray[0]}"


def run_cli(case: Case, timeout: float) -> Case:
    before = {p: sha(p) for p in case.inputs}
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(command() + case.argv, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
        judge_cli(case, proc.returncode, proc.stdout, proc.stderr)
    except subprocess.TimeoutExpired as exc:
        judge_cli(case, None, exc.stdout or "", exc.stderr or "")
    case.changed = [p.name for p in case.inputs if sha(p) != before[p]]
    return case


def run_interrupt(case: Case, timeout: float, rng: random.Random) -> Case:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) at a random moment after
    the command said it started working."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(command() + case.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    first = proc.stderr.readline()
    time.sleep(rng.uniform(0.0, 6.0))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
        judge_cli(case, proc.returncode, out, first + err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        judge_cli(case, None, out, first + err)
    if case.outcome == "correct result" and case.interrupt == "detect":
        folder = Path(case.argv[case.argv.index("--out") + 1])
        for stem in ("stack", "field"):
            have = [p for p in folder.glob(f"{stem}_*")] if folder.exists() else []
            if have and len(have) != 4:
                case.outcome, case.detail = "silent wrong result", f"{len(have)} of the 4 files of {stem}"
    return case


def _child(fn, conn):
    import torch

    torch.set_num_threads(1)
    from napari_supn_anomaly import errors

    try:
        value = fn()
        conn.send(("returned", str(value)[:200]))
    except (errors.InputError, errors.Cancelled) as exc:
        conn.send(("refused", f"{type(exc).__name__}: {str(exc)[:300]}", "\n" in str(exc)))
    except BaseException as exc:  # noqa: BLE001 - anything else is what the fuzz looks for
        conn.send(("raised", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                   traceback.format_exc(limit=3)[-600:]))
    conn.close()


def run_api(case: Case, timeout: float) -> Case:
    before = {p: sha(p) for p in case.inputs}
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(case.api, child))
    proc.start()
    child.close()
    answer = parent.recv() if parent.poll(timeout) else None
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if answer is None:
        case.outcome, case.detail = ("hang", "no answer within the time limit") if proc.exitcode in (None, -9) else \
            ("traceback", f"the child died (exit {proc.exitcode})")
    elif answer[0] == "raised":
        case.outcome, case.detail = "traceback", answer[1]
    elif answer[0] == "refused":
        multi_line = answer[2]
        case.outcome = ("refused a valid input" if case.expect == "result" else
                        "unclear refusal" if multi_line or (case.words and not any(w in answer[1] for w in case.words))
                        else "clean refusal")
        case.detail = answer[1][:200]
    else:
        case.outcome = "silent wrong result" if case.expect == "refuse" else "correct result"
        case.detail = answer[1] if case.expect == "refuse" else ""
    if case.family == "interrupts (API)" and answer is not None and (
            (answer[0] == "returned" and case.id.startswith("api/close-"))
            or (answer[0] == "refused" and answer[1].startswith("Cancelled"))):
        case.outcome = "interrupt handled"
    case.changed = [p.name for p in case.inputs if sha(p) != before[p]]
    return case


# -- the "does not look like red cells" rule on real data ---------------------------------------------

def cell_shapes(plane: np.ndarray, modality: str) -> tuple[float, float, float] | None:
    """What the segmentation finds: median cell diameter (px), size spread (CV of the areas) and the
    10th percentile of the cells' solidity; None when it finds nothing."""
    from skimage import measure

    from napari_supn_anomaly.cells import segment_cells
    from napari_supn_anomaly.errors import NoCellsFound

    try:
        seg = segment_cells(plane, modality)
    except NoCellsFound:
        return None
    props = measure.regionprops(seg.labels)
    areas = np.array([p.area for p in props], float)
    return seg.diameter_px, float(areas.std() / areas.mean()), float(np.percentile([p.solidity for p in props], 10))


def plausibility_tables(data_root: Path, seed: int) -> tuple[list[dict], list[dict]]:
    """(the rule on every real field, crop and sample and on noise; the cell shapes segmentation finds
    on the real fields and on noise)."""
    from scipy import ndimage as ndi

    from napari_supn_anomaly.cells.plausibility import NOISE_CORRELATION, neighbour_correlation
    from napari_supn_anomaly.sample_data import SAMPLES, load_sample

    def rgb(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), np.float32).transpose(2, 0, 1)

    def gray(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("L"), np.float32)[None]

    def row(name, planes, modality=None):
        """``planes``: an iterable, read one at a time (a source does not fit in memory at once)."""
        r, found = [], []
        for plane in planes:
            r.append(neighbour_correlation(plane))
            shapes = cell_shapes(plane, modality) if modality else None
            if shapes is not None:
                found.append(shapes)
        r = np.array(r)
        out = {"source": name, "n": len(r), "min": r.min(), "max": r.max(), "median": float(np.median(r)),
               "flagged": int((r < NOISE_CORRELATION).sum())}
        if modality:
            out["shapes"] = np.array(found) if found else np.zeros((0, 3))
        return out

    fields = [("Chula RBC-12 fields (stained, RGB)", "chula_rbc_fields/images", "*.jpg", rgb, "brightfield-stained"),
              ("MalariaNet fields (Giemsa, RGB)", "malarianet_giemsa_fields/images", "*.jpg", rgb,
               "brightfield-stained"),
              ("Remoscope fields (unstained, grey)", "remoscope_pf_unstained/images", "*.png", gray, "brightfield"),
              ("supn_fl_cells crops (fluorescence, 128 px)", "supn_fl_cells", "*/raw/*.png", gray, None),
              ("Plymouth crops (Giemsa, ~80 px)", "plymouth_pf_giemsa_cells", "*/*.jpg", rgb, None)]
    rows = []
    for name, folder, pattern, read, modality in fields:
        paths = sorted((data_root / folder).glob(pattern)) or sorted((data_root / folder).rglob(pattern.split("/")[-1]))
        if paths:
            rows.append(row(name, (read(p) for p in paths), modality))
    for sample in SAMPLES:
        s = load_sample(sample)
        img = np.asarray(s.image, np.float32)
        planes = np.moveaxis(img, -1, -3) if s.axes.endswith("S") else img[..., None, :, :]
        rows.append(row(f"built-in sample {sample} (synthetic)", list(planes.reshape(-1, *planes.shape[-3:])),
                        s.modality))
    g = np.random.default_rng(seed)
    noise = {"uniform": lambda c: g.integers(0, 256, (c, 512, 512)),
             "Gaussian": lambda c: g.normal(100, 30, (c, 512, 512)),
             "salt and pepper": lambda c: (g.random((c, 512, 512)) > 0.5) * 255.0,
             "JPEG-compressed uniform": lambda c: np.stack([_jpeg(g.integers(0, 256, (512, 512), np.uint8))] * c)}
    for name, make in noise.items():
        for modality, channels in (("fluorescence", 1), ("brightfield", 1), ("brightfield-stained", 3)):
            rows.append(row(f"noise: {name}, {channels} channel(s), as {modality} (x5)",
                            (np.asarray(make(channels), np.float32) for _ in range(5)), modality))
    smooth = [ndi.gaussian_filter(g.normal(0, 1, (1, 512, 512)), (0, 1, 1)).astype(np.float32) for _ in range(5)]
    rows.append(row("not flagged by design: noise blurred by 1 px (x5)", smooth))
    return rows


def _jpeg(a: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=75)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im, np.float32)


# -- the page ----------------------------------------------------------------------------------------

def write_page(path: Path, cases: list[Case], changed_fixtures: list[str], pickle_ran: bool, rows: list[dict],
               args, seconds: float, tmpfs: bool) -> str:
    families = list(dict.fromkeys(c.family for c in cases))
    head = "| family | cases | " + " | ".join(OUTCOMES) + " | inputs changed |"
    lines = [head, "|" + " --- |" * (len(OUTCOMES) + 3)]
    total = Counter()
    for fam in families:
        group = [c for c in cases if c.family == fam]
        count = Counter(c.outcome for c in group)
        changed = sum(bool(c.changed) for c in group)
        total.update(count)
        total["changed"] += changed
        lines.append(f"| {fam} | {len(group)} | " + " | ".join(str(count[o]) for o in OUTCOMES) + f" | {changed} |")
    lines.append(f"| **all** | **{len(cases)}** | " + " | ".join(f"**{total[o]}**" for o in OUTCOMES)
                 + f" | **{total['changed'] + len(changed_fixtures)}** |")
    bad = [c for c in cases if c.outcome in FAILURES or c.changed]
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    cpu = platform.processor() or platform.machine()
    text = [
        "# Bad input and faults (issue 16)",
        "",
        f"Measured on {date.today().isoformat()} on {os.cpu_count()} x {cpu} CPU cores, "
        f"{_memory_gb():.0f} GB of memory, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}; load average afterwards {' '.join(load)}. Command:",
        "",
        "```",
        f"python benchmarks/fuzz_bad_input.py --seed {args.seed} --jobs {args.jobs} --timeout {args.timeout:g} "
        f"--write {args.write}",
        "```",
        "",
        f"{len(cases)} cases in {seconds / 60:.1f} minutes. Each command line ran as its own `supn-anomaly` process "
        f"and each API call in a forked child, both with a {args.timeout:g} s limit (a hang is counted, never "
        "waited for). The cases are generated from the seed by `benchmarks/fuzz_bad_input.py`; its docstring "
        "says how each outcome is judged. A clean refusal is exit code 2 with one line `supn-anomaly CMD: "
        "error: ...` that names the file or option at fault (API: an error of `napari_supn_anomaly.errors` whose "
        "one-line message names it); a correct result reads back complete; Ctrl-C was sent at a random moment "
        "(0-6 s after the command's first line) to `train` and `detect`. "
        + ("The full-disk cases wrote to a 64 KiB tmpfs." if tmpfs else
           "The full-disk cases were skipped: this user cannot mount a tmpfs (tests/test_bad_input.py covers them)."),
        "",
        "Targets: no tracebacks, no hangs, no input changed, no silent wrong result.",
        "",
        *lines,
        "",
        f"- Shared input files changed by any case: {len(changed_fixtures)}"
        + (f" ({', '.join(changed_fixtures)})" if changed_fixtures else "") + ".",
        f"- A pickle posing as a model file ran code: {'YES' if pickle_ran else 'no'}.",
        "",
    ]
    if bad:
        text += ["Cases that missed the targets:", "", "| case | outcome | what happened |", "| --- | --- | --- |"]
        text += [f"| `{c.id}` | {c.outcome}{' (input changed)' if c.changed else ''} | {c.detail.replace('|', '/')} |"
                 for c in bad]
        text.append("")
    else:
        text += ["Every case ended as a clean refusal, a correct result or a handled interrupt.", ""]
    if rows:
        shaped = [r for r in rows if "shapes" in r]
        real = [r for r in shaped if not r["source"].startswith(("noise", "built-in"))]
        noise_rows = [r for r in shaped if r["source"].startswith("noise")]
        noise_images = sum(r["n"] for r in rows if r["source"].startswith("noise"))
        noisy = np.concatenate([r["shapes"] for r in noise_rows] + [np.zeros((0, 3))])
        box = (noisy.max(0)[0], noisy.min(0)[1], noisy.max(0)[2]) if len(noisy) else (np.nan,) * 3  # noise's ranges

        def inside(widen: float) -> int:
            return sum(int(((r["shapes"][:, 0] <= box[0] * widen) & (r["shapes"][:, 1] >= box[1] / widen)
                            & (r["shapes"][:, 2] <= box[2] * widen)).sum()) for r in real)

        near = np.concatenate([r["shapes"] for r in real])
        near = near[(near[:, 1] >= box[1]) & (near[:, 2] <= box[2])]  # like noise in spread and solidity
        gap = float((near[:, 0] - box[0]).min()) if len(near) else float("nan")
        lowest = min(r["min"] for r in rows if not r["source"].startswith(("noise", "not flagged")))
        loudest = max(r["max"] for r in rows if r["source"].startswith("noise"))
        text += [
            "## \"This field does not look like red cells\"",
            "",
            "`cells/plausibility.py` flags a field whose neighbouring pixels are unrelated: the smaller of its "
            "horizontal and vertical lag-1 pixel correlations (mean over channels, central 2048 x 2048 pixels at "
            "most) is below 0.3. Detection still runs; the warning goes into `DetectionResult.summary()`, the "
            "provenance (`warnings`), the command line's summary line and a notification in napari. Every field "
            f"(or crop) of `{args.data_root}`, the built-in samples and generated noise:",
            "",
            "| source | images | lowest correlation | median | flagged |",
            "| --- | --- | --- | --- | --- |",
            *[f"| {r['source']} | {r['n']} | {r['min']:.3f} | {r['median']:.3f} | {r['flagged']} |" for r in rows],
            "",
            "What the cells found look like was measured first and rejected as the rule: the segmentation "
            "(with the modality the matching built-in model uses) on every field:",
            "",
            "| source | fields with cells | median cell diameter (px) | size spread (CV of areas) | "
            "10th-percentile solidity |",
            "| --- | --- | --- | --- | --- |",
            *[f"| {r['source']} | {len(r['shapes'])} | {_span(r['shapes'][:, 0], '.1f')} | "
              f"{_span(r['shapes'][:, 1])} | "
              f"{_span(r['shapes'][:, 2])} |" for r in shaped],
            "",
            f"The finder found cells on {sum(len(r['shapes']) for r in noise_rows)} of the "
            f"{noise_images} noise images (it refuses a field where nothing stands out from the noise). "
            + (f"A rule on the cells, flagging the range those cells cover on all three (diameter <= {box[0]:.1f} "
               f"px, spread >= {box[1]:.2f}, solidity <= {box[2]:.2f}), flags {inside(1.0)} real fields; "
               f"a real field as spread and as irregular has cells {gap:.2f} px wider, and a range 10% wider on "
               f"each measure flags {inside(1.1)} real fields. " if len(noisy) else "")
            + f"The pixel correlation keeps real images and noise far apart: {lowest:.3f} for the least "
            f"correlated real image against at most {loudest:.3f} for noise, with the threshold at 0.3.",
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))
    return "\n".join(text)


def _span(values: np.ndarray, fmt: str = ".2f") -> str:
    return f"{values.min():{fmt}}-{values.max():{fmt}}" if len(values) else "-"


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError):
        return float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="command lines run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    parser.add_argument("--interrupts", type=int, default=10, help="Ctrl-C cases (default 10)")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--write", type=Path, default=Path("docs/benchmarks/bad_input.md"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed) to look at the cases")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="supn-fuzz-"))
    disk = None
    try:
        fx = build_fixtures(work)
        fixtures_before = {p: sha(p) for p in fx["root"].rglob("*") if p.is_file()}
        cli = image_cases(fx, work, rng) + option_cases(fx, work, rng)
        model_cases, (marker,) = model_file_cases(fx, work, rng)
        cli += [c for c in model_cases if c.argv]
        full, disk = disk_full_cases(fx, work)
        cli += full
        api = [c for c in model_cases if c.api] + api_cases(fx, work, rng)
        interrupts = interrupt_cases(fx, work, rng, args.interrupts)
        print(f"{len(cli)} command lines, {len(api)} API calls, {len(interrupts)} interrupts; work folder {work}",
              file=sys.stderr)
        with ThreadPoolExecutor(args.jobs) as pool:
            for i, case in enumerate(pool.map(lambda c: run_cli(c, args.timeout), cli), 1):
                print(f"[{i}/{len(cli)}] {case.id}: {case.outcome} {case.detail[:100]}", file=sys.stderr)
        for i, case in enumerate(api, 1):
            run_api(case, args.timeout)
            print(f"[api {i}/{len(api)}] {case.id}: {case.outcome} {case.detail[:100]}", file=sys.stderr)
        for case in interrupts:
            run_interrupt(case, args.timeout, rng)
            print(f"[interrupt] {case.id}: {case.outcome} {case.detail[:100]}", file=sys.stderr)
        changed = [p.name for p, h in fixtures_before.items() if sha(p) != h]
        rows = plausibility_tables(args.data_root, args.seed) if args.data_root.is_dir() else []
        cases = cli + api + interrupts
        page = write_page(args.write, cases, changed, marker.exists(), rows, args, time.perf_counter() - started,
                          disk is not None)
        print(page)
        failures = sum(c.outcome in FAILURES or bool(c.changed) for c in cases) + len(changed) + marker.exists()
        return 1 if failures else 0
    finally:
        if disk is not None:
            subprocess.run(["umount", str(disk)], check=False)
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
