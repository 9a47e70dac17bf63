"""supn-anomaly summarize: parasitemia per image and pooled, from a results folder's reviewed tables."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub, name):
    p = sub.add_parser(name, help="parasitemia per image and pooled from a reviewed results folder",
                       description="Count red cells, candidates and decisions (the status column of each "
                                   "<stem>_cells.csv, edited in napari or by hand) and write summary.csv: one row "
                                   "per image and a pooled row ALL, with the parasitemia and its 95% interval, "
                                   "which counts undecided candidates as none or all infected. A folder written "
                                   "before reviews existed summarises with every candidate unreviewed.")
    p.add_argument("results", metavar="RESULTS_DIR", help="the --out folder of supn-anomaly detect")
    p.add_argument("--out", default=None, metavar="FILE", help="where to write the table (default RESULTS_DIR/summary.csv)")
    p.add_argument("--html", default=None, metavar="REPORT.html",
                   help="also write a self-contained report: parasitemia per image with intervals, pictures of the "
                        "accepted cells with their heatmaps, the model and settings")
    p.add_argument("--rbc-per-ul", type=float, default=None, metavar="N",
                   help="red cells per microlitre of blood (from a cell counter): adds parasites per uL")
    p.add_argument("--per-field", action="store_true", help="also one row per field of each stack")
    return p


def run(args) -> int:
    import math

    from ..errors import InputError
    from ..files import check_output_file
    from ..review.results_folder import (
        SUMMARY_NAME,
        read_folder,
        summarize,
        write_summary,
    )

    if args.rbc_per_ul is not None and not (math.isfinite(args.rbc_per_ul) and args.rbc_per_ul > 0):
        raise InputError(f"--rbc-per-ul {args.rbc_per_ul:g}: give a positive number of red cells per microlitre")
    out = Path(args.out) if args.out else Path(args.results) / SUMMARY_NAME
    images = read_folder(args.results)
    check_output_file(out, option="--out", overwrite=True)
    if args.html:
        check_output_file(args.html, option="--html", overwrite=True)
    table = summarize(images, rbc_per_ul=args.rbc_per_ul, per_field=args.per_field)
    write_summary(table, out)
    pooled = table.iloc[-1]
    print(f"{len(images)} image(s): {int(pooled['accepted'])} accepted of {int(pooled['cells'])} red cells, "
          f"{int(pooled['unreviewed'])} candidates undecided -> {out}")
    if args.html:
        from ..review.report import build_html, planes_from_input, write_html

        write_html(build_html(images, table, planes=planes_from_input), args.html)
        print(f"report -> {args.html}")
    return 0
