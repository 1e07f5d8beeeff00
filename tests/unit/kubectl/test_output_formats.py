"""`get`'s output flags: -o jsonpath=TEMPLATE (kubectl's dialect), -o name, --no-headers.

The template tests are a table of (template, document, expected text), written from
what kubectl prints for the same template; the CLI tests run against a real API server
on a unix socket (the fixtures of test_cli)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.apiserver.server import ApiServer
from reconciler.kubectl.printers import JsonPathTemplate, TemplateError
from tests.unit.kubectl.test_cli import actions, rows, run, server, state_dir, store  # noqa: F401 (fixtures)

POD_A = {"kind": "Pod", "metadata": {"name": "web-a", "labels": {"app": "web", "app.kubernetes.io/name": "shop"}},
         "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "web:1"},
                                                      {"name": "side", "image": "side:1"}]},
         "status": {"phase": "Running", "podIP": "10.244.0.5",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "app", "restartCount": 2, "ready": True}]}}
POD_B = {"kind": "Pod", "metadata": {"name": "web-b", "labels": {"app": "web"}},
         "spec": {"nodeName": "node2", "containers": [{"name": "app", "image": "web:2"}]},
         "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}}
LIST = {"apiVersion": "v1", "kind": "List", "items": [POD_A, POD_B]}


@pytest.mark.parametrize(("template", "doc", "expected"), [
    ("{.items[*].metadata.name}", LIST, "web-a web-b"),
    ("{.status.podIP}", POD_A, "10.244.0.5"),
    ("{.metadata.name}", POD_A, "web-a"),
    ("{range .items[*]}{.metadata.name}{\"\\t\"}{.spec.nodeName}{\"\\n\"}{end}", LIST,
     "web-a\tnode1\nweb-b\tnode2\n"),
    ("{range .items[*]}[{.metadata.name}]{end}", LIST, "[web-a][web-b]"),
    ("{.items[?(@.status.phase==\"Running\")].metadata.name}", LIST, "web-a"),
    ("{.status.conditions[?(@.type==\"Ready\")].status}", POD_B, "False"),
    ("{.metadata.labels.app\\.kubernetes\\.io/name}", POD_A, "shop"),
    ("{.items[*].spec.containers[*].image}", LIST, "web:1 side:1 web:2"),
    ("{.items[0].metadata.name}", LIST, "web-a"),
    ("{.items[-1].metadata.name}", LIST, "web-b"),
    ("{.items[0:1].metadata.name}", LIST, "web-a"),
    ("{..podIP}", LIST, "10.244.0.5"),
    ("{.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}", POD_A, "2 true"),
    ("{.metadata.labels}", POD_B, '{"app":"web"}'),
    ("{.spec.containers[*].name}", POD_A, "app side"),
    ("{.status.podIP}", POD_B, ""),  # a missing field prints nothing, as kubectl's get does
    ("{.nothing.at.all}", POD_A, ""),
    ("name={.metadata.name} kind={.kind}", POD_A, "name=web-a kind=Pod"),
    ("{$.kind}", LIST, "List"),
    ("{range .items[*]}{$.kind}/{.metadata.name} {end}", LIST, "List/web-a List/web-b "),
    ("{.}", {"a": 1}, '{"a":1}'),
    ("plain text", POD_A, "plain text"),
    ("{'single'}{\"\\\"q\\\"\"}", POD_A, 'single"q"'),
])
def test_templates_print_as_kubectl_does(template: str, doc: dict, expected: str) -> None:
    assert JsonPathTemplate(template).render(doc) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{.items[*].metadata.name", "is never closed"),
    ("{.items[}", "is never closed"),
    ("{end}", "closes no {range}"),
    ("{range .items[*]}{.metadata.name}", "has no {end}"),
    ("{}", "empty {}"),
    ("{.items[?(@.x==)]}", "is not a JSONPath expression"),
    ("{.metadata name}", "unexpected ' '"),
    ("{\"open}", "is never closed"),
    ("{.a..}", "needs a field name"),
    ("", "needs a template"),
])
def test_templates_that_do_not_parse_say_where(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        JsonPathTemplate(template)
    assert message in str(caught.value)


# --------------------------------------------------------------------------- through the CLI


def test_get_jsonpath_over_a_list_and_one_object(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, err = run(capsys, "get", "pods", "-o", "jsonpath={.items[*].metadata.name}")
    assert (code, err) == (0, "")
    assert out == "web-abc-1 web-abc-2 web-abc-3 web-abc-4"  # no newline: the template decides
    code, out, _ = run(capsys, "get", "pod", "web-abc-2", "-o=jsonpath={.spec.nodeName} {.status.podIP}")
    assert (code, out) == (0, "node2 127.244.0.9")
    code, out, _ = run(capsys, "get", "deploy/web", "-ojsonpath={.status.readyReplicas}")
    assert (code, out) == (0, "3")
    code, out, _ = run(capsys, "get", "pods", "-l", "app=web", "-o",
                       'jsonpath={range .items[?(@.status.phase=="Pending")]}{.metadata.name}{"\\n"}{end}')
    assert (code, out) == (0, "web-abc-4\n")


@pytest.mark.parametrize("template", ["{.items[*].metadata.name", "{end}", "{.items[?(@.x==)]}"])
def test_a_jsonpath_that_does_not_parse_is_exit_2_before_any_daemon(capsys: pytest.CaptureFixture[str],
                                                                    state_dir: Path, template: str) -> None:
    # No server runs: the template is refused before the daemon is asked (which would be exit 3).
    code, out, err = run(capsys, "get", "pods", "-o", f"jsonpath={template}")
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith("error: argument -o/--output: jsonpath: ")
    assert "Traceback" not in err


def test_unknown_output_format_names_the_choices(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    code, _, err = run(capsys, "get", "pods", "-o", "toml")
    assert code == 2 and "expected one of wide, json, yaml, name, jsonpath=TEMPLATE" in err


def test_output_name_spells_kinds_as_kubectl(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "get", "deploy", "-o", "name")
    assert (code, out) == (0, "deployment.apps/web\n")
    code, out, _ = run(capsys, "get", "rs,svc,cm", "-o", "name")
    assert out == "replicaset.apps/web-abc\nservice/web\nconfigmap/cfg\n"
    code, out, _ = run(capsys, "get", "pods", "-l", "app=web", "-o", "name")
    assert out.splitlines() == ["pod/web-abc-1", "pod/web-abc-2", "pod/web-abc-3", "pod/web-abc-4"]
    code, out, _ = run(capsys, "get", "nodes", "-o", "name")
    assert out == "node/node1\n"


def test_no_headers(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "get", "deploy", "--no-headers")
    assert code == 0
    assert rows(out) == [["web", "3/3", "3", "3", "60m"]]
    # Columns are sized by the rows alone, as kubectl's --no-headers does.
    assert out == "web   3/3   3     3     60m\n"
    code, out, _ = run(capsys, "get", "pods", "-A", "--no-headers", "-o", "wide")
    assert "NAME" not in out and ["prod", "other-1"] in [r[:2] for r in rows(out)]
    code, out, _ = run(capsys, "get", "deploy,svc", "--no-headers")
    assert "NAME" not in out and "\n\n" not in out
    assert [r[0] for r in rows(out)] == ["deployment.apps/web", "service/web"]


def test_json_still_prints_lists_and_single_objects(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "get", "pods", "-o", "json")
    assert json.loads(out)["kind"] == "List"
    code, out, _ = run(capsys, "get", "pod", "web-abc-1", "-o", "json")
    assert json.loads(out)["metadata"]["name"] == "web-abc-1"
