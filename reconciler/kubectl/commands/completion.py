"""`completion bash|zsh|fish`: a shell completion script for `reconciler`, on stdout.

    source <(reconciler completion bash)                       # this shell
    reconciler completion bash > /etc/bash_completion.d/reconciler
    reconciler completion zsh > "${fpath[1]}/_reconciler"
    reconciler completion fish > ~/.config/fish/completions/reconciler.fish

Why shtab: it writes a static script from the argparse parser itself, so every verb and
flag is completed as `build_parser` defines it, with nothing to keep in step by hand and
no Python started at each Tab (argcomplete's way: it calls the program back on every key
press). On top of what the parser says, KIND words (`pods`, `deploy`, `svc`...) and get's
-o formats are completed from the same tables the CLI reads them with (`core.kinds`).
"""
from __future__ import annotations

import argparse

from reconciler.core.kinds import KINDS
from reconciler.kubectl.commands.output import GET_FORMATS, out
from reconciler.kubectl.exit_codes import EXIT_OK

SHELLS = ("bash", "zsh", "fish")
_KINDS_FN = "_shtab_reconciler_kinds"
_FORMATS_FN = "_shtab_reconciler_output_formats"


def _words(words: list[str], bash_fn: str) -> dict[str, object]:
    """shtab's `complete` for a fixed list of words, in each shell's spelling."""
    joined = " ".join(words)
    return {
        "bash": bash_fn,  # a function shtab calls with the word being completed (defined in the preamble)
        "zsh": f"({joined})",
        "fish": joined,
    }


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab  # lazily: only this verb needs it

    kinds = sorted(set(KINDS) | {"all"})
    formats = [*GET_FORMATS, "jsonpath="]
    for action in _actions(parser):
        if action.dest == "kind" and not action.option_strings:
            action.complete = _words(kinds, _KINDS_FN)  # type: ignore[attr-defined]  # shtab reads this attribute
        elif action.dest == "output" and action.choices is None:
            action.complete = _words(formats, _FORMATS_FN)  # type: ignore[attr-defined]
    preamble = {
        "bash": (f'{_KINDS_FN}() {{ compgen -W "{" ".join(kinds)}" -- "$1"; }}\n'
                 f'{_FORMATS_FN}() {{ compgen -W "{" ".join(formats)}" -- "$1"; }}\n'),
    }
    return str(shtab.complete(parser, shell=shell, preamble=preamble.get(shell, "")))


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every argument of the parser and of its subcommands, depth first."""
    found: list[argparse.Action] = []
    for action in parser._actions:  # argparse keeps no public list of them
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found.extend(_actions(child))
    return found


def cmd_completion(args: argparse.Namespace) -> int:
    from reconciler.kubectl.cli import build_parser  # lazily: cli imports this module

    out(script(build_parser(), args.shell), end="")
    return EXIT_OK
