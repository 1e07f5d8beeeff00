"""The `reconciler` command: kubectl's verbs for the daemon, plus `daemon` and `validate`.

Why it looks like this:
- Every command except `daemon` and `validate` is a thin client of the daemon's
  REST API (found through the state dir), so the CLI holds no state and can never
  disagree with what the daemon serves.
- Exit codes are the contract scripts rely on: 0 ok; 1 the thing asked about failed
  or differs; 2 usage; 3 daemon not reachable. Each failure is one sentence on
  stderr; `main` catches everything, so a user never sees a traceback.
- `--state-dir` and `-n` are accepted before or after the subcommand (kubectl users
  type both); the subcommands' copies default to SUPPRESS so they never clobber
  a value given before the subcommand.
- `rollout status` follows kubectl's status viewer message for message, because
  people (and CI scripts) grep for those lines.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from reconciler.apiserver import socket_path
from reconciler.core import selectors as labels
from reconciler.core.kinds import KINDS, KindInfo, UnknownKind, lookup
from reconciler.core.readiness import deployment_readiness
from reconciler.daemon.config import ConfigError, load_config, parse_duration, resolve_state_dir
from reconciler.kubectl import printers
from reconciler.kubectl.client import ApiClient, ApiError, DaemonUnreachable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

_POLL_SECONDS = 0.5
_DEPLOYMENT = KINDS["deployments"]
_POD = KINDS["pods"]
_ALL = [KINDS["pods"], KINDS["services"], KINDS["deployments"], KINDS["replicasets"]]


class UsageError(Exception):
    """The command line asks for something that cannot be done as asked (exit 2)."""


class Failed(Exception):
    """The thing asked about failed (exit 1); the message is already user-facing."""


def _out(text: str = "", *, end: str = "\n") -> None:
    sys.stdout.write(text + end)


def _err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


# --------------------------------------------------------------------------- helpers


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(socket_path=socket_path(resolve_state_dir(getattr(args, "state_dir", None))))


def _namespace(args: argparse.Namespace) -> str:
    return getattr(args, "namespace", None) or "default"


def _dump(doc: Any, fmt: str) -> None:
    if fmt == "json":
        _out(json.dumps(doc, indent=4))
    else:
        _out(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True), end="")


def _query(path: str, params: dict[str, str | None]) -> str:
    given = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(given)}" if given else path


def _split_target(text: str) -> tuple[KindInfo, str | None]:
    """`deploy/web` -> (Deployment, "web"); `deploy` -> (Deployment, None)."""
    word, sep, name = text.partition("/")
    if sep and not name:
        raise UsageError(f"{text!r} names no object: use KIND/NAME")
    return lookup(word), (name if sep else None)


def _deployment_name(args: argparse.Namespace) -> str:
    """`deployment/NAME` or `deployment NAME` for the rollout commands."""
    target = [args.target] + ([args.name] if args.name else [])
    if len(target) == 2 and "/" not in target[0]:
        info, name = lookup(target[0]), target[1]
    else:
        info, name = _split_target(target[0])
    if info.kind != "Deployment":
        raise UsageError(f"rollout works on deployments only, not {info.plural}")
    if not name:
        raise UsageError("expected deployment/NAME")
    return name


# --------------------------------------------------------------------------- daemon


def cmd_daemon(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {
        "source.repo": args.repo,
        "source.branch": args.branch,
        "source.path": args.path,
        "source.interval": args.interval,
        "stateDir": getattr(args, "state_dir", None),
        "nodes": args.node or None,
        "webhookListen": args.webhook_listen,
        "metricsListen": args.metrics_listen,
    }
    try:
        config = load_config(path=Path(args.config) if args.config else None, overrides=overrides)
    except ConfigError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    from reconciler.daemon.daemon import run_daemon  # lazily: the other commands never need it

    return int(run_daemon(config) or 0)


def cmd_install_service(args: argparse.Namespace) -> int:
    from reconciler.daemon.install import InstallError, install_service  # lazily, like the daemon

    try:
        report = install_service(unit_dir=Path(args.dest), config_path=Path(args.config), bin_path=Path(args.bin))
    except InstallError as exc:
        raise Failed(str(exc)) from None
    for line in report.lines():
        _out(line)
    return EXIT_OK


# --------------------------------------------------------------------------- status / sync


def cmd_status(args: argparse.Namespace) -> int:
    status = _client(args).get("/status")
    if args.output == "json":
        _dump(status, "json")
        return EXIT_OK
    source = status.get("source") or {}
    lines = [
        f"Source:\t{source.get('url') or printers.NONE}  (branch {source.get('branch') or '?'}, "
        f"path {source.get('path') or '.'})",
        f"Last seen commit:\t{status.get('lastSeenCommit') or printers.NONE}",
        f"Last applied commit:\t{status.get('lastAppliedCommit') or printers.NONE}",
    ]
    health = status.get("health") or {}
    if health.get("commit"):
        # lastAppliedCommit moves only once a commit's objects are ready: say where the newest one is.
        lines.append(f"Health of {str(health['commit'])[:12]}:\t{health.get('state')}: {health.get('message', '')}")
    known = {"source", "lastSeenCommit", "lastAppliedCommit", "health", "errors", "warnings", "nodes"}
    for key, value in status.items():
        # Fields the daemon adds later still show, as long as they are simple.
        if key not in known and isinstance(value, (str, int, float, bool)):
            lines.append(f"{_words(key)}:\t{value}")
    for key, title in (("errors", "Errors"), ("warnings", "Warnings")):
        problems = status.get(key) or []
        if problems:
            lines.append(f"{title}:")
            lines.extend("  " + _problem_line(p).replace("\t", " ") for p in problems)
        elif key == "errors":
            lines.append(f"{title}:\t{printers.NONE}")
    objects = status.get("objects") or []
    synced = sum(1 for x in objects if x.get("state") == "Synced")
    lines.append(f"Objects:\t{synced} of {len(objects)} synced")
    for x in objects:
        if x.get("state") != "Synced":
            lines.append(f"  {x.get('kind', '').lower()}/{x.get('name')} ({x.get('namespace') or 'cluster'}): "
                         f"{x.get('state')}" + (f": {x['message']}" if x.get("message") else ""))
    nodes = status.get("nodes") or []
    if nodes:
        lines.append("Nodes:")
        lines.append("  NAME\tREADY")
        for n in nodes:
            lines.append(f"  {n.get('name')}\t{'True' if n.get('ready') else 'False'}")
    else:
        lines.append(f"Nodes:\t{printers.NONE}")
    _out(printers.tabwrite(lines, minwidth=0, padding=2), end="")
    return EXIT_OK


def _words(key: str) -> str:
    """`lastAttemptedCommit` -> `Last attempted commit`."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).lower()
    return words[:1].upper() + words[1:]


def _problem_line(problem: Any) -> str:
    if not isinstance(problem, dict):
        return str(problem)
    where = str(problem.get("file") or "")
    if where and problem.get("line"):
        where = f"{where}:{problem['line']}"
    commit = f" (commit {str(problem['commit'])[:12]})" if problem.get("commit") else ""
    return f"{where + ': ' if where else ''}{problem.get('message', '')}{commit}"


def cmd_sync(args: argparse.Namespace) -> int:
    result = _client(args).post("/sync")
    if result.get("error"):
        _err(f"error: {result['error']}")
        return EXIT_FAILED
    commit = result.get("commit")
    _out(f"synced to commit {commit}" if commit else "sync requested; no commit has been fetched yet")
    return EXIT_OK


# --------------------------------------------------------------------------- get


def _check_selector(text: str | None) -> None:
    """A malformed -l is the user's typo (exit 2), caught before asking the daemon."""
    if text:
        try:
            labels.parse(text)
        except labels.SelectorError as exc:
            raise UsageError(f"-l: {exc}") from None


def _get_targets(args: argparse.Namespace) -> list[tuple[KindInfo, list[str]]]:
    """`get KIND [NAME...]`, `get KIND1,KIND2`, or `get KIND/NAME...` -> [(kind, names)]."""
    first, rest = args.kind, list(args.names)
    if "/" in first:
        groups: list[tuple[KindInfo, list[str]]] = []
        for target in (first, *rest):
            if "/" not in target:
                raise UsageError("there is no need to specify a resource type as a separate argument "
                                 "when passing arguments in resource/name form")
            info, name = _split_target(target)
            for group in groups:
                if group[0] == info:
                    group[1].append(name or "")
                    break
            else:
                groups.append((info, [name or ""]))
        return groups
    infos: list[KindInfo] = []
    for word in (w for w in first.split(",") if w):
        # kubectl's `all`: the workload kinds, in its order.
        for info in (_ALL if word.lower() == "all" else [lookup(word)]):
            if info not in infos:
                infos.append(info)
    if not infos:
        raise UsageError("expected a KIND")
    if len(infos) > 1 and rest:
        raise UsageError("names cannot be given with more than one KIND; use KIND/NAME")
    return [(info, list(rest)) for info in infos]


def cmd_get(args: argparse.Namespace) -> int:
    groups = _get_targets(args)
    named = any(names for _, names in groups)
    if named and args.all_namespaces:
        raise UsageError("a resource cannot be retrieved by name across all namespaces")
    if named and args.selector:
        raise UsageError("names cannot be given together with a label selector (-l)")
    _check_selector(args.selector)
    client = _client(args)
    namespace = None if args.all_namespaces else _namespace(args)
    now = time.time()
    failed = False
    collected: list[tuple[KindInfo, list[dict]]] = []
    for info, names in groups:
        items: list[dict] = []
        if names:
            for name in names:
                try:
                    items.append(client.get(info.object_path(namespace=_namespace(args), name=name)))
                except ApiError as exc:
                    if exc.code != 404:
                        raise
                    _err(f"Error from server (NotFound): {exc.message}")
                    failed = True
        else:
            path = _query(info.collection_path(namespace=namespace), {"labelSelector": args.selector})
            items = list(client.get(path).get("items") or [])
        collected.append((info, items))

    every = [obj for _, items in collected for obj in items]
    if args.output in ("json", "yaml"):
        single = len(groups) == 1 and len(every) == 1 and named and len(groups[0][1]) == 1
        if single:
            _dump(every[0], args.output)
        elif every or not named:
            _dump({"apiVersion": "v1", "kind": "List", "items": every}, args.output)
        return EXIT_FAILED if failed else EXIT_OK
    if args.output == "name":
        for info, items in collected:
            for obj in items:
                _out(f"{info.singular_resource}/{(obj.get('metadata') or {}).get('name')}")
        return EXIT_FAILED if failed else EXIT_OK

    if not every:
        if not named:
            if namespace is None or not all(info.namespaced for info, _ in groups):
                _err("No resources found")
            else:
                _err(f"No resources found in {namespace} namespace.")
        return EXIT_FAILED if failed else EXIT_OK
    printed = False
    for info, items in collected:
        if not items:
            continue
        context: dict[str, Any] = {}
        if info.kind == "Node" and args.output == "wide":
            counts: dict[str, int] = {}
            for pod in client.get(_POD.collection_path(namespace=None)).get("items") or []:
                node = (pod.get("spec") or {}).get("nodeName")
                if node:
                    counts[node] = counts.get(node, 0) + 1
            context["pods_per_node"] = counts
        if printed:
            _out()
        _out(printers.get_table(
            info=info,
            items=items,
            now=now,
            wide=args.output == "wide",
            all_namespaces=args.all_namespaces,
            show_labels=args.show_labels,
            name_prefix=f"{info.singular_resource}/" if len(groups) > 1 else "",
            context=context,
        ), end="")
        printed = True
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------- describe


def _related(client: ApiClient, info: KindInfo, obj: dict, namespace: str) -> dict[str, Any]:
    """What describe shows besides the object itself (owned ReplicaSets, pods, endpoints)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if info.kind == "Deployment":
        return {"replicasets": client.get(KINDS["rs"].collection_path(namespace=namespace)).get("items") or []}
    if info.kind == "ReplicaSet":
        selector = printers.format_selector(spec.get("selector"))
        path = _query(_POD.collection_path(namespace=namespace),
                      {"labelSelector": None if selector == printers.NONE else selector})
        pods = [
            p for p in client.get(path).get("items") or []
            if any(r.get("uid") == meta.get("uid") for r in (p.get("metadata") or {}).get("ownerReferences") or [])
        ]
        return {"pods": pods}
    if info.kind == "Service":
        try:
            return {"endpoints": client.get(KINDS["ep"].object_path(namespace=namespace, name=meta.get("name", "")))}
        except ApiError as exc:
            if exc.code != 404:
                raise
            return {}
    if info.kind == "Node":
        path = _query(_POD.collection_path(namespace=None), {"fieldSelector": f"spec.nodeName={meta.get('name')}"})
        return {"pods": client.get(path).get("items") or []}
    return {}


def _events_for(client: ApiClient, info: KindInfo, obj: dict) -> list[dict]:
    if info.kind == "Event":
        return []
    meta = obj.get("metadata") or {}
    fields = f"involvedObject.kind={info.kind},involvedObject.name={meta.get('name')}"
    path = KINDS["events"].collection_path(namespace=meta.get("namespace") if info.namespaced else None)
    return client.get(_query(path, {"fieldSelector": fields})).get("items") or []


def cmd_describe(args: argparse.Namespace) -> int:
    info, name = _split_target(args.kind)
    names = list(args.names)
    if name is not None:
        if names:
            raise UsageError("give either KIND/NAME or KIND NAME, not both")
        names = [name]
    client = _client(args)
    namespace = _namespace(args)
    objects: list[dict] = []
    failed = False
    if names:
        for n in names:
            try:
                objects.append(client.get(info.object_path(namespace=namespace, name=n)))
            except ApiError as exc:
                if exc.code != 404:
                    raise
                _err(f"Error from server (NotFound): {exc.message}")
                failed = True
    else:
        _check_selector(args.selector)
        path = _query(info.collection_path(namespace=namespace), {"labelSelector": args.selector})
        objects = list(client.get(path).get("items") or [])
        if not objects:
            _err(f"No resources found in {namespace} namespace." if info.namespaced else "No resources found")
    now = time.time()
    for index, obj in enumerate(objects):
        if index:
            _out()
            _out()
        obj_ns = (obj.get("metadata") or {}).get("namespace") or namespace
        _out(printers.describe(
            info=info, obj=obj, events=_events_for(client, info, obj), related=_related(client, info, obj, obj_ns), now=now,
        ), end="")
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------- rollout


def deployment_rollout_status(deployment: dict) -> tuple[str, bool]:
    """kubectl's deployment status viewer: (message, done); raises Failed past the deadline."""
    seen = deployment_readiness(deployment)
    if seen.failed:
        raise Failed(seen.message)
    return seen.message, seen.done


def cmd_rollout_status(args: argparse.Namespace) -> int:
    name = _deployment_name(args)
    try:
        timeout = parse_duration(args.timeout) if args.timeout else 0.0
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    client = _client(args)
    path = _DEPLOYMENT.object_path(namespace=_namespace(args), name=name)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    last = None
    while True:
        message, done = deployment_rollout_status(client.get(path))
        if message != last:
            _out(message)
            sys.stdout.flush()
            last = message
        if done or not args.watch:
            return EXIT_OK
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failed("timed out waiting for the condition")
            time.sleep(min(_POLL_SECONDS, remaining))
        else:
            time.sleep(_POLL_SECONDS)


def cmd_rollout_history(args: argparse.Namespace) -> int:
    name = _deployment_name(args)
    history = _client(args).get(f"{_DEPLOYMENT.object_path(namespace=_namespace(args), name=name)}/history")
    revisions = sorted(history.get("revisions") or [], key=lambda r: int(r.get("revision") or 0))
    if args.output == "json":
        _dump({"revisions": [
            {"revision": r.get("revision"), "commit": r.get("commit"), "subject": r.get("subject"),
             "images": list(r.get("images") or [])}
            for r in revisions
        ]}, "json")
        return EXIT_OK
    _out(f"deployment.apps/{name}")
    rows = [
        [str(r.get("revision")), str(r.get("commit") or "")[:12] or printers.NONE,
         r.get("subject") or printers.NONE, ",".join(r.get("images") or []) or printers.NONE]
        for r in revisions
    ]
    _out(printers.table(headers=["REVISION", "COMMIT", "SUBJECT", "IMAGES"], rows=rows), end="")
    return EXIT_OK


def _rollout_action(action: str, past: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        name = _deployment_name(args)
        body = {"toRevision": args.to_revision} if action == "undo" else None
        path = f"{_DEPLOYMENT.object_path(namespace=_namespace(args), name=name)}/{action}"
        result = _client(args).post(path, body)
        message = result.get("message") or f"deployment.apps/{name} {past}"
        if result.get("commit") and result["commit"] not in message:
            message += f" (commit {result['commit']})"
        _out(message)
        return EXIT_OK

    return run


# --------------------------------------------------------------------------- diff / logs / validate


def cmd_diff(args: argparse.Namespace) -> int:
    result = _client(args).get("/diff")
    changes = result.get("changes") or []
    if args.output == "json":
        _dump({"changes": changes, **{k: v for k, v in result.items() if k != "changes"}}, "json")
    else:
        for ch in changes:
            ns = f"{ch.get('namespace')}/" if ch.get("namespace") else ""
            _out(f"{ch.get('action')} {ch.get('kind')} {ns}{ch.get('name')}")
            diff = ch.get("diff")
            if isinstance(diff, str) and diff:
                _out(diff.rstrip("\n"))
            elif diff:
                _out(json.dumps(diff, indent=2, default=str))
    return EXIT_FAILED if changes else EXIT_OK


def _pick_pod(client: ApiClient, info: KindInfo, name: str, namespace: str) -> str:
    """`logs deploy/web`: one of its pods, ready ones first, as kubectl picks."""
    owner = client.get(info.object_path(namespace=namespace, name=name))
    selector = printers.format_selector((owner.get("spec") or {}).get("selector"))
    if selector == printers.NONE:
        raise Failed(f"{info.singular_resource}/{name} has no selector to find its pods")
    pods = client.get(_query(_POD.collection_path(namespace=namespace), {"labelSelector": selector})).get("items") or []
    if not pods:
        raise Failed(f"{info.singular_resource}/{name} has no pods")
    pods.sort(key=lambda p: (printers.pod_status_reason(p) != "Running", (p.get("metadata") or {}).get("name", "")))
    chosen = (pods[0].get("metadata") or {}).get("name", "")
    if len(pods) > 1:
        _err(f"Found {len(pods)} pods, using pod/{chosen}")
    return chosen


def cmd_logs(args: argparse.Namespace) -> int:
    if "/" in args.target:
        info, name = _split_target(args.target)
    else:  # `logs NAME` means a pod
        info, name = _POD, args.target
    client = _client(args)
    namespace = _namespace(args)
    if info.kind in ("Deployment", "ReplicaSet"):
        name = _pick_pod(client, info, name, namespace)
    elif info.kind != "Pod" or not name:
        raise UsageError(f"logs works on pods, deployments and replicasets, not {info.plural}")
    path = _query(f"{_POD.object_path(namespace=namespace, name=name)}/log", {
        "container": args.container,
        "follow": "true" if args.follow else None,
        "tailLines": str(args.tail) if args.tail is not None and args.tail >= 0 else None,
    })
    for chunk in client.stream(path, timeout=None if args.follow else client.timeout):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    from reconciler.manifests import parse_path  # lazily: only validate parses manifests here

    result = parse_path(path)
    problems = list(result.problems)
    for problem in problems:
        _out(str(problem) if problem.severity == "error" else f"{problem} (warning)")
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    _err(f"{len(result.objects)} objects, {errors} error{'s' if errors != 1 else ''}, "
         f"{warnings} warning{'s' if warnings != 1 else ''}")
    return EXIT_FAILED if errors else EXIT_OK


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, the usage line, exit 2
        self.print_usage(sys.stderr)
        _err(f"error: {message}")
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
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def sub(p: argparse._SubParsersAction, name: str, help_text: str, *, namespaced: bool = True
            ) -> argparse.ArgumentParser:
        child = p.add_parser(name, help=help_text, description=help_text)
        # SUPPRESS: given after the subcommand it wins; absent, the global value stays.
        child.add_argument("--state-dir", dest="state_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if namespaced:
            child.add_argument("-n", "--namespace", dest="namespace", default=argparse.SUPPRESS,
                               help="namespace (default: default)")
        return child

    p = sub(subs, "daemon", "run the reconciler daemon", namespaced=False)
    p.add_argument("--config", help="config file (YAML)")
    p.add_argument("--repo", help="Git repository: a path or a URL")
    p.add_argument("--branch", help="branch to follow (default: main)")
    p.add_argument("--path", help="folder inside the repository holding the manifests (default: .)")
    p.add_argument("--node", action="append", metavar="NAME=URL", help="a podman node (repeatable)")
    p.add_argument("--interval", metavar="DURATION", help="poll interval for a remote repository (default: 15s)")
    p.add_argument("--webhook-listen", metavar="HOST:PORT", help="listen for Git webhooks")
    p.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics")
    p.set_defaults(func=cmd_daemon)

    p = sub(subs, "install-service", "install the systemd unit, an example config and the launcher",
            namespaced=False)
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
    p.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"])
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
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
    r.set_defaults(func=_rollout_action("undo", "rolled back"))
    for action, past, help_text in (("restart", "restarted", "restart a deployment's pods"),
                                    ("pause", "paused", "pause a deployment's rollout"),
                                    ("resume", "resumed", "resume a paused rollout")):
        r = sub(rollout, action, help_text)
        r.add_argument("target", metavar="deployment/NAME")
        r.add_argument("name", nargs="?", help=argparse.SUPPRESS)
        r.set_defaults(func=_rollout_action(action, past))

    p = sub(subs, "diff", "show what the daemon would change", namespaced=False)
    p.add_argument("-o", "--output", choices=["json"])
    p.set_defaults(func=cmd_diff)

    p = sub(subs, "validate", "check manifests without a daemon", namespaced=False)
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_validate)

    p = sub(subs, "sync", "fetch and reconcile now", namespaced=False)
    p.set_defaults(func=cmd_sync)

    p = sub(subs, "logs", "print a pod's logs")
    p.add_argument("target", metavar="pod/NAME")
    p.add_argument("-c", "--container", help="container name")
    p.add_argument("-f", "--follow", action="store_true", help="keep streaming")
    p.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines")
    p.set_defaults(func=cmd_logs)
    return parser


# --------------------------------------------------------------------------- main


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage error (2) or --help (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        _err("error: a command is required")
        return EXIT_USAGE
    try:
        return args.func(args)
    except DaemonUnreachable as exc:
        _err(str(exc))
        return EXIT_UNREACHABLE
    except UnknownKind as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except UsageError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except Failed as exc:
        _err(f"error: {exc}")
        return EXIT_FAILED
    except ApiError as exc:
        if exc.reason and exc.code < 500 and exc.code != 501:
            _err(f"Error from server ({exc.reason}): {exc.message}")
        else:
            message = exc.message.rstrip(".")
            _err(f"error: {message[:1].upper() + message[1:]}.")
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
        _err(f"error: {type(exc).__name__}: {exc}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
