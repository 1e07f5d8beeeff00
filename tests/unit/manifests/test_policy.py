"""Issue 13, "Policy": what a pusher to Git may ask of the host, and what is said about it.

Table tests over small manifests, each with the exact ``file:line: kind/name: message`` a
user sees: capabilities beyond the baseline set, hostPID/hostIPC/hostPort, fields parsed
and then ignored (warnings), relative mountPaths, image references, reserved Service
names, clusterIPs outside the service CIDR and named targetPorts no container declares.
"""
from __future__ import annotations

import pytest

from reconciler.manifests import Allow, ParseResult, parse_files

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: p
  labels: {app: web}
spec:
  containers:
  - name: c
    image: busybox:1
"""
# Lines 1-9 above; cases append container fields (line 10+, 4-space indent) or pod fields.


def capability_name(name: str) -> str:
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def parse(text: str, *, allow: Allow = Allow()) -> ParseResult:
    return parse_files([("m.yaml", text.encode())], allow=allow)


def errors(text: str, *, allow: Allow = Allow()) -> list[str]:
    return [str(p) for p in parse(text, allow=allow).errors]


def warnings(text: str, *, allow: Allow = Allow()) -> list[str]:
    return [str(p) for p in parse(text, allow=allow).warnings]


# ---- capabilities

def capabilities(*names: str) -> str:
    return POD + "    securityContext:\n      capabilities:\n        add: [" + ", ".join(names) + "]\n"


CAP_DENIED = ("m.yaml:12: Pod/p: spec.containers[0].securityContext.capabilities.add[{i}]: capability {name} is "
              "beyond Kubernetes' baseline set and is denied; list it in allow.capabilities in the daemon config "
              "to permit it")


@pytest.mark.parametrize(("added", "denied"), [
    (["ALL"], ["ALL"]),
    (["SYS_ADMIN"], ["SYS_ADMIN"]),
    (["CAP_SYS_MODULE"], ["SYS_MODULE"]),
    (["sys_admin"], ["SYS_ADMIN"]),            # podman upper-cases: so must the check
    (["DAC_READ_SEARCH", "NET_ADMIN"], ["DAC_READ_SEARCH", "NET_ADMIN"]),
    (["NET_BIND_SERVICE", "CHOWN", "SYS_CHROOT", "CAP_KILL"], []),   # the baseline set
])
def test_capabilities_beyond_baseline_are_denied(added: list[str], denied: list[str]) -> None:
    expected = [CAP_DENIED.format(i=added.index(raw), name=name)
                for raw, name in zip(added, [capability_name(a) for a in added], strict=True) if name in denied]
    assert errors(capabilities(*added)) == expected


@pytest.mark.parametrize(("allowed", "added", "ok"), [
    (["NET_ADMIN"], ["NET_ADMIN"], True),
    (["CAP_NET_ADMIN"], ["NET_ADMIN"], True),
    (["NET_ADMIN"], ["CAP_NET_ADMIN"], True),
    (["NET_ADMIN"], ["NET_ADMIN", "SYS_ADMIN"], False),
    (["NET_ADMIN"], ["ALL"], False),
    (["ALL"], ["SYS_ADMIN", "ALL"], True),
])
def test_allow_capabilities_lists_extra_ones(allowed: list[str], added: list[str], ok: bool) -> None:
    result = parse(capabilities(*added), allow=Allow(capabilities=frozenset(allowed)))
    assert (not result.errors) is ok


def test_init_container_capabilities_are_checked_too() -> None:
    text = POD + "  initContainers:\n  - name: i\n    image: busybox:1\n" \
                 "    securityContext: {capabilities: {add: [SYS_ADMIN]}}\n"
    assert [p.line for p in parse(text).errors] == [13]


def test_denials_are_told_apart_from_other_errors() -> None:
    text = capabilities("SYS_ADMIN") + "---\n" + POD.replace("name: p", "name: q").replace("image: busybox:1",
                                                                                          "image: ../x")
    result = parse(text)
    assert result.failed_keys == {("Pod", "default", "p"), ("Pod", "default", "q")}
    assert result.denied_keys == {("Pod", "default", "p")}


# ---- host namespaces and ports

@pytest.mark.parametrize(("field", "setting"), [("hostPID", "host_pid"), ("hostIPC", "host_ipc")])
def test_host_namespaces_are_denied_unless_allowed(field: str, setting: str) -> None:
    allow = Allow(**{setting: True})
    text = POD + f"  {field}: true\n"
    assert errors(text) == [f"m.yaml:10: Pod/p: spec.{field}: {field} is denied; set allow.{field}: true in the "
                            "daemon config to permit it"]
    assert errors(text, allow=allow) == []
    # Allowed but not implemented: said, never silent.
    assert warnings(text, allow=allow) == [f"m.yaml:10: Pod/p: spec.{field}: ignored (not implemented): the pod "
                                           f"keeps its own {field[4:]} namespace"]
    assert errors(POD + f"  {field}: false\n") == []
    assert parse(POD + f"  {field}: true\n").warnings == ()   # modelled: no "unknown field"


def test_host_port_is_denied_unless_allowed() -> None:
    text = POD + "    ports:\n    - containerPort: 80\n      hostPort: 8080\n"
    assert errors(text) == ["m.yaml:12: Pod/p: spec.containers[0].ports[0].hostPort: hostPort is denied; set "
                            "allow.hostPort: true in the daemon config to permit it"]
    assert errors(text, allow=Allow(host_port=True)) == []
    assert warnings(text, allow=Allow(host_port=True)) == [
        "m.yaml:12: Pod/p: spec.containers[0].ports[0].hostPort: ignored (not implemented): nothing is published "
        "on the node's address"]


def test_host_port_in_a_deployment_template() -> None:
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      hostIPC: true
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80, hostPort: 80}]
"""
    assert [p.line for p in parse(text).errors] == [9, 13]
    assert parse(text).denied_keys == {("Deployment", "default", "web")}


# ---- fields parsed and then ignored: warnings naming the field

@pytest.mark.parametrize(("extra", "expected"), [
    ("  volumes:\n  - name: v\n    emptyDir: {medium: Memory}\n",
     "m.yaml:12: Pod/p: spec.volumes[0].emptyDir.medium: Memory is ignored (not implemented): the volume is a "
     "directory on the node's disk, not a tmpfs"),
    ("  volumes:\n  - name: v\n    emptyDir: {sizeLimit: 1Gi}\n",
     "m.yaml:12: Pod/p: spec.volumes[0].emptyDir.sizeLimit: ignored (not implemented): the volume's size is not "
     "limited"),
    ("  hostname: other\n",
     "m.yaml:10: Pod/p: spec.hostname: ignored (not implemented): the pod's hostname is its name"),
    ("  dnsPolicy: Default\n",
     "m.yaml:10: Pod/p: spec.dnsPolicy: Default is ignored (not implemented): Service names resolve through "
     "/etc/hosts entries, the rest through the node's resolver"),
    ("    ports: [{containerPort: 80, hostIP: 127.0.0.1}]\n",
     "m.yaml:10: Pod/p: spec.containers[0].ports[0].hostIP: ignored (not implemented): nothing is published on the "
     "node's address"),
    ("    livenessProbe:\n      exec: {command: [\"true\"]}\n      terminationGracePeriodSeconds: 5\n",
     "m.yaml:12: Pod/p: spec.containers[0].livenessProbe.terminationGracePeriodSeconds: ignored (not implemented): "
     "the pod's terminationGracePeriodSeconds applies"),
])
def test_ignored_fields_are_warnings(extra: str, expected: str) -> None:
    result = parse(POD + extra)
    assert not result.errors, [str(p) for p in result.errors]
    assert [str(p) for p in result.warnings] == [expected]
    assert len(result.objects) == 1  # a warning, not an error: the object is applied


@pytest.mark.parametrize("extra", [
    "  dnsPolicy: ClusterFirst\n",                         # what pods get anyway
    "  volumes:\n  - name: v\n    emptyDir: {}\n",
    "  volumes:\n  - name: v\n    emptyDir: {medium: ''}\n",
    "    securityContext: {allowPrivilegeEscalation: false, runAsNonRoot: true}\n",   # implemented elsewhere
    "  securityContext: {runAsUser: 1000, runAsNonRoot: true}\n",
    "  securityContext: {fsGroup: 2000, supplementalGroups: [5]}\n",                     # the kubelet's groups
])
def test_fields_with_an_effect_give_no_warning(extra: str) -> None:
    assert warnings(POD + extra) == []


def test_host_path_type_other_than_directory_or_create_is_a_warning() -> None:
    text = POD + "  volumes:\n  - name: v\n    hostPath: {path: /run/x.sock, type: Socket}\n"
    assert warnings(text, allow=Allow(host_path=True)) == [
        "m.yaml:12: Pod/p: spec.volumes[0].hostPath.type: Socket is not checked (not implemented): the path is "
        "mounted whatever it is"]


# ---- errors: mountPath, image, Service names and addresses

def test_relative_mount_path_is_an_error() -> None:
    text = POD + "    volumeMounts:\n    - {name: v, mountPath: data}\n  volumes:\n  - {name: v, emptyDir: {}}\n"
    assert errors(text) == ["m.yaml:11: Pod/p: spec.containers[0].volumeMounts[0].mountPath: 'data' must be an "
                            "absolute path"]
    assert errors(text.replace("mountPath: data", "mountPath: /data")) == []


@pytest.mark.parametrize("image", [
    "nginx", "nginx:1.25", "docker.io/library/nginx:1.25", "localhost:5000/hello:v1", "localhost/app",
    "quay.io/org/team/app@sha256:" + "a" * 64, "app:v1@sha256:" + "0" * 64, "[::1]:5000/app:1", "a__b", "a--b",
    "registry-1.docker.io:443/lib/x",
])
def test_valid_image_references(image: str) -> None:
    assert errors(POD.replace("image: busybox:1", f"image: '{image}'")) == []


@pytest.mark.parametrize(("image", "problem"), [
    ("../x", "is not a valid image reference"),
    ("x/../../v4.0.0/libpod/images/x", "is not a valid image reference"),
    ("docker://nginx", "is not a valid image reference"),
    ("http://registry/app", "is not a valid image reference"),
    ("Nginx", "is not a valid image reference"),
    ("/app", "is not a valid image reference"),
    ("app/", "is not a valid image reference"),
    ("a..b", "is not a valid image reference"),
    ("nginx:", "has an invalid tag"),
    ("nginx:-x", "has an invalid tag"),
    ("app@sha256:short", "has an invalid digest"),
    ("a b", "must not contain whitespace"),
    ("nginx?x=1", "is not a valid image reference"),
])
def test_invalid_image_references(image: str, problem: str) -> None:
    found = errors(POD.replace("image: busybox:1", f"image: '{image}'"))
    assert len(found) == 1 and found[0].startswith("m.yaml:9: Pod/p: spec.containers[0].image: "), found
    assert problem in found[0]


SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
"""


@pytest.mark.parametrize("name", ["localhost", "ip6-localhost", "ip6-loopback"])
def test_service_named_like_a_loopback_host_is_an_error(name: str) -> None:
    assert errors(SERVICE.replace("name: web", f"name: {name}")) == [
        f"m.yaml:4: Service/{name}: metadata.name: {name!r} is reserved: every pod's hosts file would send its own "
        "loopback name to this Service"]


@pytest.mark.parametrize(("cidr", "ip", "ok"), [
    ("10.96.0.0/16", "10.96.0.10", True),
    ("10.96.0.0/16", "10.96.255.254", True),
    ("10.96.0.0/16", "10.97.0.1", False),
    ("10.96.0.0/16", "127.0.0.1", False),
    ("10.96.0.0/16", "10.96.0.0", False),      # network address
    ("10.96.0.0/16", "10.96.0.1", False),      # the first address (Kubernetes' own `kubernetes` Service)
    ("10.96.0.0/16", "10.96.255.255", False),  # broadcast
    ("10.100.0.0/24", "10.100.0.7", True),
    ("10.100.0.0/24", "10.96.0.10", False),
])
def test_cluster_ip_must_be_in_the_service_cidr(cidr: str, ip: str, ok: bool) -> None:
    found = errors(SERVICE + f"  clusterIP: {ip}\n", allow=Allow(service_cidr=cidr))
    if ok:
        assert found == []
    else:
        assert found == [f"m.yaml:9: Service/web: spec.clusterIP: {ip} is not a usable address of the service CIDR "
                         f"{cidr} (the network, first and broadcast addresses are reserved); leave clusterIP out to "
                         "have one allocated"]


def test_headless_and_unset_cluster_ip_are_fine() -> None:
    assert errors(SERVICE) == []
    assert errors(SERVICE + "  clusterIP: None\n") == []


# ---- named targetPort against the selected containers (one commit)

NAMED = SERVICE.replace("  - port: 80\n", "  - port: 80\n    targetPort: http\n")
POD_HTTP = POD + "    ports: [{name: http, containerPort: 8080}]\n"
DEPLOYMENT_HTTP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{name: http, containerPort: 80}]
"""


def test_named_target_port_no_selected_container_declares_is_an_error() -> None:
    result = parse(NAMED + "---\n" + POD)
    assert [str(p) for p in result.errors] == [
        "m.yaml:9: Service/web: spec.ports[0].targetPort: no container of the pods this Service selects (Pod/p) "
        "declares a port named 'http'"]
    assert ("Service", "default", "web") in result.failed_keys
    assert ("Service", "default", "web") not in result.denied_keys   # a mistake, not a refusal
    assert [o.kind for o in result.objects] == ["Pod"]                # the rest is still applied


@pytest.mark.parametrize("others", [
    POD_HTTP,                                    # declared by a Pod
    DEPLOYMENT_HTTP,                             # declared by a Deployment's template
    POD.replace("app: web", "app: other"),       # nothing selected in this commit: no opinion
    POD + "---\n" + DEPLOYMENT_HTTP,             # one of the selected workloads declares it
    POD.replace("namespace", "x").replace("  name: p\n", "  name: p\n  namespace: other\n"),  # other namespace
])
def test_named_target_port_declared_or_unknowable_is_fine(others: str) -> None:
    assert errors(NAMED + "---\n" + others) == []


def test_numeric_target_port_need_not_be_declared() -> None:
    assert errors(SERVICE.replace("  - port: 80\n", "  - port: 80\n    targetPort: 9999\n") + "---\n" + POD) == []


def test_service_without_selector_is_not_checked() -> None:
    assert errors(NAMED.replace("  selector: {app: web}\n", "") + "---\n" + POD) == []
