"""Pages with a generated block between two markers and hand-written text around it."""
from __future__ import annotations

from pathlib import Path


def replace_block(path: Path, start: str, end: str, block: str) -> None:
    """Put ``block`` (which begins with ``start`` and ends with ``end``) in place of the page's old one,
    keeping the text around it; a page without the block gets it appended."""
    page = path.read_text() if path.exists() else ""
    if start in page:
        page = page[:page.index(start)] + block + page[page.index(end) + len(end):]
    else:
        page = page.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(page)


def replace_above(path: Path, marker: str, page: str) -> None:
    """Write ``page`` in place of the page's text above ``marker``, keeping the marker and all after it
    (blocks of other scripts, hand-written notes); a page without the marker becomes ``page``."""
    old = path.read_text() if path.exists() else ""
    if marker in old:
        page = page.rstrip("\n") + "\n\n" + old[old.index(marker):]
    path.write_text(page)
