"""Column alignment for kubectl's output: `tabwrite`, the `get` table layout, safe cells.

Why it looks like this: kubectl aligns everything through Go's text/tabwriter, whose
rule is not "pad each column to its widest cell" but "align a column across the run of
consecutive lines that have it". Describe's nested sections only line up the way users
know them under that rule, so `tabwrite` ports it instead of using a simpler padder.
Everything else in `printers` produces tab-separated lines and leaves the spacing here.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence


def tabwrite(lines: Sequence[str], *, minwidth: int, padding: int) -> str:
    """Align tab-separated cells like Go's text/tabwriter (flags 0, space padding).

    A column block is a run of consecutive lines that all have a cell in that
    column; its width is the widest cell plus `padding` (at least `minwidth`).
    The text after a line's last tab belongs to no column and is not padded.
    """
    rows = [line.split("\t") for line in lines]
    widths: list[int] = []
    out: list[str] = []

    def write(line0: int, line1: int) -> None:
        for row in rows[line0:line1]:
            parts = []
            for j, cell in enumerate(row):
                parts.append(cell.ljust(widths[j]) if j < len(widths) and j < len(row) - 1 else cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(rows[this]) - 1:
                this += 1
                continue
            write(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(rows[this]) - 1:
                width = max(width, len(rows[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write(line0, line1)

    fmt(0, len(rows))
    return "\n".join(out) + ("\n" if out else "")


_MINWIDTH, _PADDING = 6, 3  # kubectl get's tabwriter settings


def table(*, headers: Sequence[str], rows: Iterable[Sequence[str]], no_headers: bool = False) -> str:
    """kubectl get's layout: minimum width 6, three spaces between columns.

    With `no_headers` the header line is left out before the columns are sized, as
    kubectl's --no-headers does (scripts `awk` the rows; a header's width is no business of theirs).
    """
    lines = ([] if no_headers else ["\t".join(headers)]) + ["\t".join(cell(c) for c in row) for row in rows]
    return tabwrite(lines, minwidth=_MINWIDTH, padding=_PADDING)


class StreamedTable:
    """`get -w`'s layout: rows printed one at a time, lined up under the first table.

    A watch cannot wait for every row before sizing the columns, so the widths are fixed
    by the first table printed (headers and the objects that existed); a later cell that
    is wider pushes the rest of its own line right, as kubectl's watch output does.
    """

    def __init__(self, *, headers: Sequence[str], rows: Sequence[Sequence[str]], no_headers: bool = False) -> None:
        lines = ([] if no_headers else [list(headers)]) + [[cell(c) for c in row] for row in rows]
        columns = max((len(line) for line in lines), default=0)
        self._widths = [
            max([_MINWIDTH] + [len(line[j]) + _PADDING for line in lines if j < len(line)]) for j in range(columns)
        ]
        self._first = lines

    def first(self) -> str:
        """The first table: the header (unless --no-headers) and the rows that existed."""
        return "".join(self.row(line) for line in self._first)

    def row(self, cells: Sequence[str]) -> str:
        parts = [cell(c) for c in cells]
        padded = [
            text.ljust(max(self._widths[j] if j < len(self._widths) else 0, len(text) + _PADDING))
            for j, text in enumerate(parts[:-1])
        ]
        return "".join(padded) + (parts[-1] if parts else "") + "\n"


def cell(value: object) -> str:
    """A value on one line, for a table cell or a describe field."""
    # A tab or newline inside a cell would break the columns.
    return str(value).replace("\t", " ").replace("\n", " ")
