"""`validate`: check manifests locally, without a daemon, the way the daemon would parse them.

Why it imports lazily: only this verb parses manifests in the CLI process, and the
manifest package is not needed to start any other verb. ``--age-key FILE`` decrypts
SOPS-encrypted files with the age identities in FILE, like the daemon's
``decryption.ageKeyFile``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.printable import visible
from reconciler.kubectl.commands.output import err, out
from reconciler.kubectl.exit_codes import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from reconciler.manifests.sops import AgeKeys


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    from reconciler.manifests import parse_path  # lazily: only validate parses manifests here

    # SOPS files are decrypted in memory only, as the daemon does: nothing decrypted is printed.
    age_key = getattr(args, "age_key", None)
    result = parse_path(path, age_keys=_age_keys(age_key)) if age_key else parse_path(path)
    problems = list(result.problems)
    for problem in problems:
        # visible: a file name (or value) with a newline or escape must not forge output lines.
        out(visible(str(problem)) if problem.severity == "error" else f"{visible(str(problem))} (warning)")
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    err(f"{len(result.objects)} objects, {errors} error{'s' if errors != 1 else ''}, "
         f"{warnings} warning{'s' if warnings != 1 else ''}")
    return EXIT_FAILED if errors else EXIT_OK


def _age_keys(path: str) -> AgeKeys:
    """The identities of ``--age-key FILE``; an unusable file is a usage error naming it."""
    from reconciler.manifests.sops import AgeKeyError, AgeKeys

    try:
        return AgeKeys.from_file(path)
    except AgeKeyError as exc:
        raise UsageError(str(exc)) from None
