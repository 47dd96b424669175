"""Go's tabwriter as Docker's tables use it, apart from the template engine, so a verb's
default table (`isobox ps` without --format) costs no template import."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def tabwrite(texts: Iterable[str], minwidth: int = 10, padding: int = 3) -> list[str]:
    """Go's tabwriter as Docker sets it up (minwidth 10, padding 3): tab-ended cells aligned."""
    lines = [line for text in texts for line in text.split("\n")]
    cells = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in cells:
        for i, cell in enumerate(row[:-1]):  # the text after the last tab is not a column
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + row[-1:]
        out.append("".join(padded).rstrip() if len(row) > 1 else row[0])
    return out
