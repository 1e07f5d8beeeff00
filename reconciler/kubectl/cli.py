"""The `reconciler` command: kubectl's verbs for the daemon, plus `daemon` and `validate`.

Why it looks like this:
- Every command except `daemon` and `validate` is a thin client of the daemon's
  REST API (found through the state dir), so the CLI holds no state and can never
  disagree with what the daemon serves. The verbs live in `commands/`, one module per
  group; this module is the argument parser and the dispatch.
- Exit codes are the contract scripts rely on (`exit_codes`): 0 ok; 1 the thing asked
  about failed or differs; 2 usage; 3 daemon not reachable. Each failure is one
  sentence on stderr; `main` catches everything, so a user never sees a traceback.
- `--state-dir` and `-n` are accepted before or after the subcommand (kubectl users
  type both); the subcommands' copies default to SUPPRESS so they never clobber
  a value given before the subcommand.
- The parser names each verb's function when it is built (`build_parser` reads this
  module's names at call time), so a test can replace a verb here.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from reconciler.core.kinds import UnknownKind
from reconciler.kubectl.client import ApiError, DaemonUnreachable
from reconciler.kubectl.commands.completion import cmd_completion
from reconciler.kubectl.commands.daemon import cmd_daemon, cmd_install_service
from reconciler.kubectl.commands.describe import cmd_describe
from reconciler.kubectl.commands.get import cmd_get
from reconciler.kubectl.commands.logs import cmd_logs
from reconciler.kubectl.commands.node import cmd_node
from reconciler.kubectl.commands.output import err, get_output
from reconciler.kubectl.commands.rollout import cmd_rollout_history, cmd_rollout_status, rollout_action
from reconciler.kubectl.commands.store import cmd_store_copy
from reconciler.kubectl.commands.suspend import cmd_resume, cmd_suspend
from reconciler.kubectl.commands.sync import cmd_diff, cmd_status, cmd_sync
from reconciler.kubectl.commands.tokens import cmd_join_command, cmd_token_create
from reconciler.kubectl.commands.validate import cmd_validate
from reconciler.kubectl.commands.wait import cmd_wait
from reconciler.kubectl.exit_codes import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Failed,
    UsageError,
)

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "build_parser", "main"]


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one sentence, the usage line, exit 2
        self.print_usage(sys.stderr)
        err(f"error: {message}")
        raise SystemExit(EXIT_USAGE)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("reconciler")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconciler", description="GitOps reconciler for podman nodes, with kubectl's verbs.")
    parser.add_argument("--state-dir", dest="state_dir", default=None,
                        help="the daemon's state dir (default: $RECONCILER_STATE_DIR, else the system default)")
    parser.add_argument("-n", "--namespace", dest="namespace", default=None, help="namespace (default: default)")
    parser.add_argument("--version", action="version", version=f"reconciler {_version()}")
    _client_flags(parser, default=None)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def sub(p: argparse._SubParsersAction[_Parser], name: str, help_text: str, *, namespaced: bool = True,
            client: bool = True) -> argparse.ArgumentParser:
        child = p.add_parser(name, help=help_text, description=help_text)
        # SUPPRESS: given after the subcommand it wins; absent, the global value stays.
        child.add_argument("--state-dir", dest="state_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if client:
            _client_flags(child, default=argparse.SUPPRESS)
        if namespaced:
            child.add_argument("-n", "--namespace", dest="namespace", default=argparse.SUPPRESS,
                               help="namespace (default: default)")
        return child

    p = sub(subs, "daemon", "run the reconciler daemon", namespaced=False, client=False)
    p.add_argument("--config", help="config file (YAML)")
    p.add_argument("--repo", help="Git repository: a path or a URL")
    p.add_argument("--branch", help="branch to follow (default: main)")
    p.add_argument("--path", help="folder inside the repository holding the manifests (default: .)")
    p.add_argument("--node", action="append", metavar="NAME=URL", help="a podman node (repeatable)")
    p.add_argument("--interval", metavar="DURATION", help="poll interval for a remote repository (default: 15s)")
    p.add_argument("--webhook-listen", metavar="HOST:PORT", help="listen for Git webhooks")
    p.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics")
    p.add_argument("--cleanup", action="store_true",
                   help="remove the Service data plane (the nftables table, which outlives the daemon) and exit")
    p.set_defaults(func=cmd_daemon)

    p = sub(subs, "install-service", "install the systemd unit, an example config and the launcher",
            namespaced=False, client=False)
    p.add_argument("--dest", default="/etc/systemd/system", metavar="DIR",
                   help="where to write reconciler.service (default: /etc/systemd/system)")
    p.add_argument("--config", default="/etc/reconciler/config.yaml", metavar="FILE",
                   help="the config file the unit uses; an example is written if it is absent")
    p.add_argument("--bin", default="/usr/local/bin/reconciler", metavar="FILE",
                   help="the launcher the unit runs; written if absent")
    p.set_defaults(func=cmd_install_service)

    p = sub(subs, "status", "show the Git source, applied commit, errors and nodes", namespaced=False)
    p.add_argument("-o", "--output", choices=["json"])
    p.set_defaults(func=cmd_status)

    p = sub(subs, "get", "list objects")
    p.add_argument("kind", metavar="KIND", help="e.g. pods, deploy, svc; or KIND/NAME")
    p.add_argument("names", nargs="*", default=[], metavar="NAME")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    p.add_argument("-o", "--output", type=get_output, metavar="FORMAT",
                   help="wide, json, yaml, name, or jsonpath=TEMPLATE (kubectl's, e.g. '{.items[*].metadata.name}')")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("--no-headers", dest="no_headers", action="store_true", help="leave out the header line of tables")
    p.add_argument("-w", "--watch", action="store_true",
                   help="after listing, print each change as it happens (until Ctrl-C)")
    p.add_argument("--watch-only", dest="watch_only", action="store_true",
                   help="print only the changes, not the objects that exist")
    p.set_defaults(func=cmd_get)

    p = sub(subs, "describe", "show an object in detail, with its events")
    p.add_argument("kind", metavar="KIND")
    p.add_argument("names", nargs="*", default=[], metavar="NAME")
    p.add_argument("-l", "--selector", help="label selector")
    p.set_defaults(func=cmd_describe)

    p = sub(subs, "rollout", "manage a deployment's rollout")
    rollout = p.add_subparsers(dest="rollout_command", metavar="SUBCOMMAND", parser_class=_Parser)
    rollout.required = True
    r = sub(rollout, "status", "wait for a rollout to finish")
    r.add_argument("target", metavar="deployment/NAME")
    r.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    r.add_argument("--timeout", default="0s", metavar="DURATION", help="give up after this long (0: never)")
    r.add_argument("-w", "--watch", type=_bool, default=True, metavar="BOOL",
                   help="keep watching until done (default true)")
    r.set_defaults(func=cmd_rollout_status)
    r = sub(rollout, "history", "list a deployment's revisions")
    r.add_argument("target", metavar="deployment/NAME")
    r.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    r.add_argument("-o", "--output", choices=["json"])
    r.set_defaults(func=cmd_rollout_history)
    r = sub(rollout, "undo", "roll back with a revert commit")
    r.add_argument("target", metavar="deployment/NAME")
    r.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    r.add_argument("--to-revision", type=_non_negative_int, default=0, metavar="N",
                   help="revision to return to (default: the previous one)")
    r.set_defaults(func=rollout_action("undo", "rolled back"))
    for action, past, help_text in (("restart", "restarted", "restart a deployment's pods"),
                                    ("pause", "paused", "pause a deployment's rollout"),
                                    ("resume", "resumed", "resume a paused rollout")):
        r = sub(rollout, action, help_text)
        r.add_argument("target", metavar="deployment/NAME")
        r.add_argument("name", nargs="?", help=argparse.SUPPRESS)
        r.set_defaults(func=rollout_action(action, past))

    p = sub(subs, "diff", "show what the daemon would change", namespaced=False)
    p.add_argument("-o", "--output", choices=["json"])
    p.add_argument("--revision", metavar="REF", help="plan this branch, tag or commit instead of the branch head")
    p.set_defaults(func=cmd_diff)

    p = sub(subs, "validate", "check manifests without a daemon", namespaced=False, client=False)
    p.add_argument("path", metavar="PATH")
    p.add_argument("--age-key", metavar="FILE", help="age identities that decrypt SOPS-encrypted files")
    p.set_defaults(func=cmd_validate)

    p = sub(subs, "sync", "fetch and reconcile now", namespaced=False)
    p.add_argument("--wait", action="store_true", help="then wait until the commit is healthy (exit 0) or fails (1)")
    p.add_argument("--timeout", metavar="DURATION", help="with --wait: give up after this long (default 5m; 0: never)")
    p.set_defaults(func=cmd_sync)

    p = sub(subs, "wait", "wait until a commit is applied and healthy (exit 0), or failed or rolled back (exit 1)",
            namespaced=False)
    p.add_argument("--commit", metavar="SHA", help="the commit (default: the branch head)")
    p.add_argument("--timeout", metavar="DURATION", help="give up after this long (default 5m; 0: never)")
    p.set_defaults(func=cmd_wait)

    p = sub(subs, "suspend", "stop applying new commits (Services and self-healing go on)", namespaced=False)
    p.add_argument("--reason", metavar="TEXT", help="why; `status` shows it")
    p.set_defaults(func=cmd_suspend)

    p = sub(subs, "resume", "apply new commits again, starting with the branch head", namespaced=False)
    p.set_defaults(func=cmd_resume)

    p = sub(subs, "logs", "print a pod's logs")
    p.add_argument("target", metavar="pod/NAME")
    p.add_argument("-c", "--container", help="container name")
    p.add_argument("-f", "--follow", action="store_true", help="keep streaming")
    p.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines")
    p.add_argument("--since", metavar="DURATION", help="only lines newer than this, e.g. 5s, 2m, 3h")
    p.add_argument("-p", "--previous", action="store_true",
                   help="the logs of the container's previous instance (the one before its last restart)")
    p.set_defaults(func=cmd_logs)

    p = sub(subs, "completion", "print a shell completion script (bash, zsh or fish)", namespaced=False,
            client=False)
    p.add_argument("shell", choices=["bash", "zsh", "fish"], metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(func=cmd_completion)

    p = sub(subs, "token", "make tokens for the HTTPS API", namespaced=False, client=False)
    tokens = p.add_subparsers(dest="token_command", metavar="SUBCOMMAND", parser_class=_Parser)
    tokens.required = True
    t = sub(tokens, "create", "make a token and print it (the daemon keeps only its hash)", namespaced=False)
    t.add_argument("--node", action="store_true", help="a node token (register a node, read what it runs, "
                                                       "write its pods' status), not an admin token")
    t.add_argument("--ttl", metavar="DURATION", help="expire after this long (default: never)")
    t.set_defaults(func=cmd_token_create)

    p = sub(subs, "node", "run this host's node agent against the control plane's API (or: node join-command)",
            namespaced=False, client=False)
    p.add_argument("--config", metavar="FILE", help="node config (YAML), e.g. /etc/reconciler/node.yaml")
    p.add_argument("--server", dest="servers", action="append", metavar="URL",
                   help="the control plane's API, https://HOST:6443 (repeatable: tried in turn)")
    p.add_argument("--token", metavar="T", help="the node token")
    p.add_argument("--token-file", dest="token_file", metavar="FILE", help="a file holding the node token")
    p.add_argument("--ca-hash", dest="ca_hash", metavar="sha256:HEX", help="pin the control plane's CA")
    p.add_argument("--name", help="node name (default: the host name)")
    p.add_argument("--node-ip", dest="node_ip", metavar="IP", help="this host's address for other nodes")
    p.add_argument("--pod-cidr", dest="pod_cidr", metavar="CIDR", help="pod CIDR (default: the control plane picks)")
    p.add_argument("--podman-url", dest="podman_url", metavar="URL", help="podman's API (default: the local one)")
    p.add_argument("--cleanup", action="store_true",
                   help="remove this host's Service rules, pod-CIDR routes and fallback route, then exit")
    p.set_defaults(func=cmd_node)
    nodes = p.add_subparsers(dest="node_command", metavar="SUBCOMMAND", parser_class=_Parser)
    t = sub(nodes, "join-command", "print the command a new host runs to join, with a new node token",
            namespaced=False)
    t.add_argument("--ttl", metavar="DURATION", help="the node token expires after this long (default: never)")
    t.set_defaults(func=cmd_join_command)

    p = sub(subs, "store", "work on the cluster store itself (the daemon stopped)", namespaced=False, client=False)
    stores = p.add_subparsers(dest="store_command", metavar="SUBCOMMAND", parser_class=_Parser)
    stores.required = True
    t = sub(stores, "copy", "copy a SQLite store into etcd: objects, history, events, sync record, keys",
            namespaced=False, client=False)
    t.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH",
                   help="the daemon's store file, e.g. sqlite:/var/lib/reconciler/store.db")
    t.add_argument("--to", dest="target", required=True, metavar="etcd://HOST:PORT[,HOST:PORT][/PREFIX]",
                   help="the etcd cluster and key prefix (default prefix /reconciler)")
    t.add_argument("--cacert", metavar="FILE", help="etcd's CA (then the endpoints are spoken to over https)")
    t.add_argument("--cert", metavar="FILE", help="a client certificate for etcd")
    t.add_argument("--key", metavar="FILE", help="its key")
    t.add_argument("--force", action="store_true", help="replace whatever the prefix already holds")
    t.set_defaults(func=cmd_store_copy)
    return parser


def _client_flags(parser: argparse.ArgumentParser, *, default: object) -> None:
    """How a client command reaches a daemon over HTTPS instead of the local socket."""
    parser.add_argument("--server", default=default, metavar="URL", action="append",
                        help="the daemon's HTTPS API, e.g. https://cp:6443; repeat it for several control-plane "
                             "daemons, tried in turn (default: $RECONCILER_SERVER, comma-separated, "
                             "else the local socket)")
    parser.add_argument("--token", default=default, metavar="T", help="bearer token (default: $RECONCILER_TOKEN)")
    parser.add_argument("--ca-hash", dest="ca_hash", default=default, metavar="sha256:HEX",
                        help="pin the server's CA by this hash (default: $RECONCILER_CA_HASH)")
    parser.add_argument("--ca-file", dest="ca_file", default=default, metavar="FILE",
                        help="trust the server's CA in this file (default: $RECONCILER_CA_FILE, else the state "
                             "dir's pki/ca.crt when readable)")
    parser.add_argument("--insecure-skip-tls-verify", dest="insecure", action="store_true", default=default,
                        help="do not check the server's certificate (the token goes to whoever answers)")


# --------------------------------------------------------------------------- main


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage error (2) or --help (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        err("error: a command is required")
        return EXIT_USAGE
    try:
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except DaemonUnreachable as exc:
        err(str(exc))
        return EXIT_UNREACHABLE
    except UnknownKind as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except UsageError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except Failed as exc:
        err(f"error: {exc}")
        return EXIT_FAILED
    except ApiError as exc:
        if exc.reason and exc.code < 500 and exc.code != 501:
            err(f"Error from server ({exc.reason}): {exc.message}")
        else:
            message = exc.message.rstrip(".")
            err(f"error: {message[:1].upper() + message[1:]}.")
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `reconciler get pods | head`: the reader left; that is not an error.
        try:
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115 (silence the flush at exit)
        except OSError:
            pass
        return EXIT_OK
    except Exception as exc:  # never a traceback: one sentence, exit 1
        err(f"error: {type(exc).__name__}: {exc}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
