"""Progress lines on stderr: redrawn in place on a terminal, a line every few seconds otherwise."""
from __future__ import annotations

import sys
import time


class ProgressLine:
    def __init__(self, label: str, every_s: float | None = None):
        self.label = label
        self.tty = sys.stderr.isatty()
        self.every_s = every_s if every_s is not None else (0.3 if self.tty else 10.0)
        self.last = time.monotonic()
        self.open = False

    def __call__(self, done: int, total: int, extra: str = "") -> None:
        now = time.monotonic()
        final = done >= total
        if not final and now - self.last < self.every_s:
            return
        self.last = now
        text = f"{self.label}: {done}/{total}{('  ' + extra) if extra else ''}"
        if self.tty:
            print("\r" + text + " " * 4, end="\n" if final else "", file=sys.stderr, flush=True)
            self.open = not final
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False
