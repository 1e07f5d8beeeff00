"""`validate`: check manifests locally, without a daemon, the way the daemon would parse them.

Why it imports lazily: only this verb parses manifests in the CLI process, and the
manifest package is not needed to start any other verb.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.kubectl.commands.output import err, out
from reconciler.kubectl.exit_codes import EXIT_FAILED, EXIT_OK, UsageError


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    from reconciler.manifests import parse_path  # lazily: only validate parses manifests here

    result = parse_path(path)
    problems = list(result.problems)
    for problem in problems:
        out(str(problem) if problem.severity == "error" else f"{problem} (warning)")
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    err(f"{len(result.objects)} objects, {errors} error{'s' if errors != 1 else ''}, "
         f"{warnings} warning{'s' if warnings != 1 else ''}")
    return EXIT_FAILED if errors else EXIT_OK
