"""The exit codes scripts rely on, and the two exceptions a command raises to reach them.

Why it is its own module: the codes are the CLI's contract with shell scripts and CI
(0 ok; 1 the thing asked about failed or differs; 2 usage; 3 daemon not reachable),
so they are written once. Commands either return a code or raise `UsageError` /
`Failed` with a user-facing sentence, and `cli.main` turns that into stderr and the
code; both the commands and `cli` import this module, which imports neither.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class UsageError(Exception):
    """The command line asks for something that cannot be done as asked (exit 2)."""


class Failed(Exception):
    """The thing asked about failed (exit 1); the message is already user-facing."""
