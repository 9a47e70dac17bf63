"""How fast `supn-anomaly --help` answers, as a ratio to starting Python itself (`python -c pass`),
and which heavy libraries answering it loads (none should: torch and napari load only in `run`).

    python benchmarks/cli_startup.py [--repeats 15]

Each command (the installed `supn-anomaly` beside this Python) is started afresh `--repeats`
times, alternating with `python -c pass`; the median wall times are compared. Results go into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HEAVY = ("torch", "napari", "qtpy", "scipy", "skimage", "pandas", "matplotlib", "tifffile", "bioio")
COMMANDS = ("", "models", "detect", "demo", "train", "score-cells", "evaluate", "train-scorer")
# the installed command beside this Python, as a person runs it
SCRIPT = Path(sys.executable).with_name("supn-anomaly")


def seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_modules_loaded() -> list[str]:
    code = ("import sys; from napari_supn_anomaly.cli import build_parser; build_parser(); "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    bare, times = [], {c: [] for c in COMMANDS}
    for _ in range(args.repeats):
        for command in COMMANDS:
            bare.append(seconds([sys.executable, "-c", "pass"]))
            times[command].append(seconds([str(SCRIPT), *([command] if command else []), "--help"]))
    base = statistics.median(bare)
    print(f"Date {date.today()}; {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"median of {args.repeats} starts; `python -c pass`: {1000 * base:.0f} ms; load average "
          f"{os.getloadavg()[0]:.2f}")
    print()
    print("| command | median | ratio to `python -c pass` |")
    print("| --- | ---: | ---: |")
    for command, values in times.items():
        median = statistics.median(values)
        print(f"| `supn-anomaly {command + ' ' if command else ''}--help` | {1000 * median:.0f} ms | {median / base:.1f} |")
    print()
    print(f"heavy libraries loaded by building the parser: {', '.join(heavy_modules_loaded()) or 'none'}")


if __name__ == "__main__":
    main()
