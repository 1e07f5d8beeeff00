"""Text from input shown on a terminal: control characters escaped, so it cannot forge lines.

A file name in Git can hold a newline or an escape sequence; printed raw in `validate`
or `status` output it could add a fake "0 errors" line or recolour the terminal. Names
and lines that come from input go through `visible` before they are printed: printable
text is left as it is (the common case reads unchanged), anything else is shown the way
Python's repr shows it (\\n, \\x1b, \\u2028).
"""
from __future__ import annotations


def visible(text: str, *, keep_tabs: bool = False) -> str:
    """`text` with every non-printable character escaped (tabs kept with `keep_tabs`)."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or (keep_tabs and char == "\t") else _escape(char) for char in text)


def visible_name(name: str) -> str:
    """A file name for display: unchanged when printable, else its repr without the quotes,
    so its backslashes are escaped too and the escaped form cannot be mistaken for a name."""
    if name.isprintable():
        return name
    return repr(name)[1:-1]


def _escape(char: str) -> str:
    return repr(char)[1:-1]
