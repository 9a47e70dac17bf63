"""Exploration harness for the fluorescence recipe: train one configuration, score every rule.

    python benchmarks/fl_explore.py NAME "dict(widths=(16, 32, 64, 96), head_widths=(8, 16, 24, 32))" \
        "dict(batch_size=32, stage1_iters=1500, stage2_iters=800)" [--runs DIR]
    python benchmarks/fl_explore.py NAME --evaluate-only [--symmetrise] [--samples N] [--runs DIR]

One thread (compare configurations by iterations, not minutes, on a shared CPU). 100 healthy
training crops (seeded) are held out; the network is trained on the other 1215 and scored on
supn_fl_cells/validation and on the held-out cells with and without a synthetic spot (amplitude 40
and 20 grey levels in the 64 px crops, sigma 0.7-1.3 px) for the supn, diag and l2 likelihoods and
the score rules spot (sigma 1), spot07, spot15, bright and paper. Scratch output goes to --runs
(default /tmp/fl_explore): NAME.pt (torch checkpoint, never shipped), NAME.json, printed table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from sklearn.metrics import average_precision_score, roc_auc_score

from napari_supn_anomaly.evaluation.datasets import load_fl_cells
from napari_supn_anomaly.pipeline.cell_crops import loss_weight, standardise_crops
from napari_supn_anomaly.supn import SCORE_RULES, ArchConfig, IntensityStats, SupnVAE, cell_scores
from napari_supn_anomaly.supn.scoring import ScoreRule, anomaly_maps
from napari_supn_anomaly.training.trainer import Progress, TrainConfig, train_supn_vae

REPO = Path(__file__).resolve().parents[1]
RULES = dict(SCORE_RULES, spot07=ScoreRule("spot07", 0, "matched", "", spot_sigma=0.7),
             spot15=ScoreRule("spot15", 0, "matched", "", spot_sigma=1.5))


def load(data_root: Path, crop=64, diameter=30.0):
    tr, va = load_fl_cells(data_root, "train"), load_fl_cells(data_root, "validation")
    xtr, mtr, scale = standardise_crops(tr.images, tr.masks, crop, diameter, "fluorescence")
    xva, mva, _ = standardise_crops(va.images, va.masks, crop, diameter, "fluorescence", scale=scale)
    perm = np.random.default_rng(0).permutation(len(xtr))
    return dict(xtr=xtr, mtr=mtr, xva=xva, mva=mva, yva=va.labels, hold=np.sort(perm[:100]), train=np.sort(perm[100:]))


def synthetic(d, seed, amp):
    g = np.random.default_rng(seed)
    x, m = d["xtr"][d["hold"]].copy(), d["mtr"][d["hold"]]
    yy, xx = np.mgrid[:x.shape[-2], :x.shape[-1]]
    for i in range(len(x)):
        inner = ndi.binary_erosion(m[i], iterations=3)
        ys, xs = np.nonzero(inner if inner.any() else m[i])
        k = g.integers(len(ys))
        s = g.uniform(0.7, 1.3)
        x[i, 0] += amp * np.exp(-((yy - ys[k]) ** 2 + (xx - xs[k]) ** 2) / (2 * s * s))
    return x


def scores(net, stats, x, m, lik, rule, samples=0, symmetrise=False):
    out = []
    xt = torch.from_numpy(stats.apply(x))
    for s in range(0, len(xt), 50):
        xb = xt[s:s + 50]
        gen = (lambda: torch.Generator().manual_seed(0)) if samples else (lambda: None)
        maps = anomaly_maps(net, xb, lik, RULES[rule], samples, gen())
        if symmetrise:  # the stencil is one-sided: also score the 180-degree rotated crop
            rot = anomaly_maps(net, torch.rot90(xb, 2, (2, 3)), lik, RULES[rule], samples, gen())
            maps = 0.5 * (maps + torch.rot90(rot, 2, (1, 2)))
        out.append(cell_scores(maps, torch.from_numpy(m[s:s + 50])).numpy())
    return np.concatenate(out)


def evaluate(net, d, stats, rules=("spot", "spot07", "spot15", "bright", "paper"), liks=("supn", "diag", "l2"),
             samples=0, symmetrise=False):
    res = {}
    s40, s20 = synthetic(d, 1, 40.0), synthetic(d, 2, 20.0)
    mh = d["mtr"][d["hold"]]
    yy = np.r_[np.zeros(len(mh)), np.ones(len(mh))]
    for lik in liks:
        for rule in rules:
            kw = dict(samples=samples, symmetrise=symmetrise)
            sv = scores(net, stats, d["xva"], d["mva"], lik, rule, **kw)
            h = scores(net, stats, d["xtr"][d["hold"]], mh, lik, rule, **kw)
            r = dict(auc=roc_auc_score(d["yva"], sv), ap=average_precision_score(d["yva"], sv),
                     syn40=roc_auc_score(yy, np.r_[h, scores(net, stats, s40, mh, lik, rule, **kw)]),
                     syn20=roc_auc_score(yy, np.r_[h, scores(net, stats, s20, mh, lik, rule, **kw)]))
            res[f"{lik}/{rule}"] = r
            print(f"  {lik:5s} {rule:7s} AUC {r['auc']:.3f} AP {r['ap']:.3f} syn40 {r['syn40']:.3f} "
                  f"syn20 {r['syn20']:.3f}", flush=True)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name")
    p.add_argument("arch", nargs="?", default="dict()")
    p.add_argument("train", nargs="?", default="dict()")
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--runs", type=Path, default=Path("/tmp/fl_explore"))
    p.add_argument("--evaluate-only", action="store_true")
    p.add_argument("--symmetrise", action="store_true")
    p.add_argument("--samples", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.runs.mkdir(parents=True, exist_ok=True)
    d = load(args.data_root)
    stats = IntensityStats.from_images(d["xtr"][d["train"]])
    ckpt = args.runs / f"{args.name}.pt"
    info = {}
    if args.evaluate_only:
        saved = torch.load(ckpt)
        net = SupnVAE(ArchConfig.from_dict(saved["arch"]))
        net.load_state_dict(saved["state"])
        net.eval()
    else:
        arch, cfg = ArchConfig(**eval(args.arch)), TrainConfig(**eval(args.train))
        x, w = stats.apply(d["xtr"][d["train"]]), loss_weight(d["mtr"][d["train"]])
        c0, w0 = time.process_time(), time.time()
        for ev in train_supn_vae(x, w, arch, cfg, report_every=250):
            if isinstance(ev, Progress):
                print(f"{ev.stage} {ev.iteration}/{ev.total} loss {ev.loss:.4f} {ev.message}", flush=True)
            else:
                net = ev
        info = dict(arch=args.arch, train=args.train, cpu_s=time.process_time() - c0, wall_s=time.time() - w0)
        print(f"train cpu {info['cpu_s']:.0f} s, wall {info['wall_s']:.0f} s", flush=True)
        torch.save({"arch": net.cfg.to_dict(), "state": net.state_dict()}, ckpt)
    info["results"] = evaluate(net, d, stats, samples=args.samples, symmetrise=args.symmetrise)
    (args.runs / f"{args.name}{'-sym' if args.symmetrise else ''}.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
