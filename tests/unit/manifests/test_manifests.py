"""Table tests for reconciler.manifests: defaults, every kind, errors at their exact line.

Each case is a small manifest and the exact ``file:line: kind/name: message`` a user
would see, so a change in wording or line placement is a deliberate, visible change.
"""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pydantic
import pytest

from reconciler.manifests import (
    Allow,
    Deployment,
    ParseResult,
    Pod,
    QuantityError,
    Service,
    parse_cpu,
    parse_files,
    parse_memory,
    parse_path,
)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25
"""
# Lines 1-17 above; cases append container fields (line 18+) or replace lines.

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
"""


def parse(text: str, *, file: str = "m.yaml", allow: Allow = Allow()) -> ParseResult:
    return parse_files([(file, text.encode())], allow=allow)


def only(result: ParseResult):
    assert not result.errors, [str(p) for p in result.errors]
    assert len(result.objects) == 1
    return result.objects[0]


def error_lines(result: ParseResult) -> list[str]:
    return [str(p) for p in result.errors]


# ---- defaults

def test_deployment_defaults_in_body_and_model() -> None:
    obj = only(parse(DEPLOYMENT))
    assert (obj.file, obj.line, obj.api_version, obj.kind, obj.namespace, obj.name) == \
        ("m.yaml", 1, "apps/v1", "Deployment", "default", "web")
    assert obj.key == ("Deployment", "default", "web")
    assert obj.body == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent"}],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "minReadySeconds": 0,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "paused": False,
        },
    }
    model = obj.model
    assert isinstance(model, Deployment)
    assert model.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert model.spec.strategy.rolling_update.max_surge == "25%"
    assert model.spec.progress_deadline_seconds == 600


def test_pod_replacement_policy_is_kept_and_absent_by_default() -> None:
    # Absent means Kubernetes' default (TerminationStarted); it is not written into the body.
    assert "podReplacementPolicy" not in only(parse(DEPLOYMENT)).body["spec"]
    obj = only(parse(DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  podReplacementPolicy: TerminationComplete\n")))
    assert obj.body["spec"]["podReplacementPolicy"] == "TerminationComplete"


def test_replicas_default_to_one() -> None:
    obj = only(parse(DEPLOYMENT.replace("  replicas: 2\n", "")))
    assert obj.body["spec"]["replicas"] == 1
    rs = only(parse(DEPLOYMENT.replace("kind: Deployment", "kind: ReplicaSet").replace("  replicas: 2\n", "")))
    assert rs.body["spec"]["replicas"] == 1 and rs.body["spec"]["minReadySeconds"] == 0
    assert "strategy" not in rs.body["spec"]


@pytest.mark.parametrize("image, policy", [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.25", "IfNotPresent"),
    ("localhost:5000/nginx", "Always"),
    ("localhost:5000/team/nginx:2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy_default(image: str, policy: str) -> None:
    obj = only(parse(DEPLOYMENT.replace("nginx:1.25", image)))
    assert obj.body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_explicit_pull_policy_is_kept() -> None:
    obj = only(parse(DEPLOYMENT + "        imagePullPolicy: Never\n"))
    assert obj.body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_container_defaults() -> None:
    obj = only(parse(DEPLOYMENT + """\
        ports:
        - containerPort: 8080
          name: http
        readinessProbe:
          httpGet: {port: http}
        livenessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 5
        resources:
          limits: {cpu: "1", memory: 256Mi}
          requests: {cpu: 100m}
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
"""))
    container = obj.body["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/", "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": 0, "timeoutSeconds": 1, "periodSeconds": 10,
        "successThreshold": 1, "failureThreshold": 3,
    }
    assert container["livenessProbe"]["periodSeconds"] == 5
    assert container["livenessProbe"]["tcpSocket"] == {"port": 8080}
    # A limit without a request sets the request (Kubernetes defaulting).
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "256Mi"},
                                      "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert container["env"] == [{"name": "POD_NAME",
                                 "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}]


def test_service_defaults() -> None:
    obj = only(parse(SERVICE))
    assert obj.body == {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "ClusterIP", "ports": [{"protocol": "TCP", "port": 80, "targetPort": 80}],
                 "sessionAffinity": "None"},
    }
    assert isinstance(obj.model, Service) and obj.model.spec.ports[0].target_port == 80


def test_pod_defaults_and_volumes() -> None:
    obj = only(parse("""\
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: team}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "sleep 1"]
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: conf, mountPath: /etc/conf, readOnly: true}
    - {name: creds, mountPath: /creds}
  volumes:
  - name: scratch
  - name: conf
    configMap: {name: app-config}
  - name: creds
    secret: {secretName: app-secret}
"""))
    assert obj.key == ("Pod", "team", "p")
    spec = obj.body["spec"]
    assert spec["restartPolicy"] == "Always" and spec["terminationGracePeriodSeconds"] == 30
    assert spec["containers"][0]["imagePullPolicy"] == "Always"
    # A volume with no source is an emptyDir; configMap/secret get Kubernetes' 0644 mode.
    assert spec["volumes"] == [
        {"name": "scratch", "emptyDir": {}},
        {"name": "conf", "configMap": {"name": "app-config", "defaultMode": 0o644}},
        {"name": "creds", "secret": {"secretName": "app-secret", "defaultMode": 0o644}},
    ]
    assert isinstance(obj.model, Pod)


def test_explicit_null_means_unset() -> None:
    obj = only(parse(DEPLOYMENT.replace("  replicas: 2", "  replicas:\n  strategy: null")))
    assert obj.body["spec"]["replicas"] == 1
    assert obj.body["spec"]["strategy"]["type"] == "RollingUpdate"


# ---- other kinds

def test_configmap_secret_namespace() -> None:
    result = parse("""\
apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data:
  app.properties: |
    a=1
binaryData:
  logo.png: iVBORw0KGgo=
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data:
  user: YWRtaW4=
stringData:
  password: s3cr3t
---
apiVersion: v1
kind: Namespace
metadata: {name: team}
""")
    assert not result.problems
    conf, creds, ns = result.objects
    assert conf.body["data"] == {"app.properties": "a=1\n"}
    assert conf.body["binaryData"] == {"logo.png": "iVBORw0KGgo="}
    assert creds.line == 10
    assert creds.body["type"] == "Opaque"
    # stringData is merged into data, base64-encoded, as the apiserver does.
    assert creds.body["data"] == {"user": "YWRtaW4=", "password": base64.b64encode(b"s3cr3t").decode()}
    assert "stringData" not in creds.body
    assert ns.key == ("Namespace", "", "team") and "namespace" not in ns.body["metadata"]


def test_namespace_ignores_metadata_namespace_with_a_warning() -> None:
    result = parse("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n  namespace: other\n")
    assert only(result).namespace == ""
    assert [str(p) for p in result.warnings] == [
        "m.yaml:5: Namespace/team: metadata.namespace: ignored, a Namespace is not namespaced"]


@pytest.mark.parametrize("api_version", ["apps/v1beta2", "apps/v1beta1", "extensions/v1beta1"])
def test_old_deployment_api_versions(api_version: str) -> None:
    text = DEPLOYMENT.replace("apps/v1", api_version).replace("  selector:\n    matchLabels:\n      app: web\n", "")
    obj = only(parse(text))
    assert obj.api_version == "apps/v1" and obj.body["apiVersion"] == "apps/v1"
    # In the old versions a missing selector defaults to the template's labels.
    assert obj.body["spec"]["selector"] == {"matchLabels": {"app": "web"}}


def test_apps_v1_requires_a_selector() -> None:
    text = DEPLOYMENT.replace("  selector:\n    matchLabels:\n      app: web\n", "")
    assert error_lines(parse(text)) == ["m.yaml:5: Deployment/web: spec.selector: is required"]


def test_selector_match_expressions() -> None:
    text = DEPLOYMENT.replace("    matchLabels:\n      app: web\n",
                              "    matchExpressions:\n    - {key: app, operator: In, values: [web, api]}\n")
    obj = only(parse(text))
    assert obj.body["spec"]["selector"]["matchExpressions"][0]["values"] == ["web", "api"]


# ---- errors, each at its exact file:line

ERRORS = [
    ("replicas as a string", DEPLOYMENT.replace("replicas: 2", "replicas: '3'"),
     ["m.yaml:6: Deployment/web: spec.replicas: must be an integer, not a string ('3')"]),
    ("negative replicas", DEPLOYMENT.replace("replicas: 2", "replicas: -1"),
     ["m.yaml:6: Deployment/web: spec.replicas: must be greater than or equal to 0"]),
    ("selector does not match", DEPLOYMENT.replace("        app: web\n    spec:", "        app: api\n    spec:"),
     ["m.yaml:12: Deployment/web: spec.template.metadata.labels: do not match spec.selector"]),
    ("empty selector", DEPLOYMENT.replace("    matchLabels:\n      app: web\n", "    matchLabels: {}\n"),
     ["m.yaml:7: Deployment/web: spec.selector: must not be empty (it would select every pod)"]),
    ("In without values", DEPLOYMENT.replace("    matchLabels:\n      app: web\n",
                                             "    matchExpressions:\n    - {key: app, operator: In}\n"),
     ["m.yaml:9: Deployment/web: spec.selector.matchExpressions[0].values: must not be empty when operator is In"]),
    ("surge and unavailable both zero",
     DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  strategy:\n    rollingUpdate:\n"
                                           "      maxSurge: 0\n      maxUnavailable: 0%\n"),
     ["m.yaml:10: Deployment/web: spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0"]),
    ("rollingUpdate with Recreate",
     DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  strategy:\n    type: Recreate\n    rollingUpdate: {maxSurge: 1}\n"),
     ["m.yaml:9: Deployment/web: spec.strategy.rollingUpdate: must not be set when strategy type is Recreate"]),
    ("bad maxSurge", DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  strategy:\n    rollingUpdate: {maxSurge: 1.5}\n"),
     ["m.yaml:8: Deployment/web: spec.strategy.rollingUpdate.maxSurge: must be an integer or a percentage such as '25%'"]),
    ("maxUnavailable over 100%",
     DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  strategy:\n    rollingUpdate: {maxUnavailable: 150%}\n"),
     ["m.yaml:8: Deployment/web: spec.strategy.rollingUpdate.maxUnavailable: must not be greater than 100%"]),
    ("unknown podReplacementPolicy",
     DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  podReplacementPolicy: Sometimes\n"),
     ["m.yaml:7: Deployment/web: spec.podReplacementPolicy: must be one of TerminationStarted or TerminationComplete, "
      "not 'Sometimes'"]),
    ("unknown strategy", DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  strategy:\n    type: BlueGreen\n"),
     ["m.yaml:8: Deployment/web: spec.strategy.type: must be one of RollingUpdate or Recreate, not 'BlueGreen'"]),
    ("progress deadline not above minReadySeconds",
     DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  minReadySeconds: 30\n  progressDeadlineSeconds: 30\n"),
     ["m.yaml:8: Deployment/web: spec.progressDeadlineSeconds: must be greater than minReadySeconds (30)"]),
    ("restartPolicy in a Deployment", DEPLOYMENT + "      restartPolicy: OnFailure\n",
     ["m.yaml:18: Deployment/web: spec.template.spec.restartPolicy: must be Always for a Deployment, not OnFailure"]),
    ("missing template", DEPLOYMENT.split("  template:")[0],
     ["m.yaml:5: Deployment/web: spec.template: is required"]),
    ("no containers", DEPLOYMENT.split("      containers:")[0] + "      containers: []\n",
     ["m.yaml:15: Deployment/web: spec.template.spec.containers: must not be empty"]),
    ("duplicate container names", DEPLOYMENT + "      - name: web\n        image: busybox\n",
     ["m.yaml:18: Deployment/web: spec.template.spec.containers[1].name: duplicate container name 'web'"]),
    ("init container reusing a name", DEPLOYMENT + "      initContainers:\n      - {name: web, image: busybox}\n",
     ["m.yaml:19: Deployment/web: spec.template.spec.initContainers[0].name: duplicate container name 'web'"]),
    ("bad container name", DEPLOYMENT.replace("      - name: web", "      - name: Web_1"),
     ["m.yaml:16: Deployment/web: spec.template.spec.containers[0].name: 'Web_1' must be a lowercase RFC 1123 label: "
      "lowercase letters, digits and '-', starting and ending with a letter or digit"]),
    ("missing image", DEPLOYMENT.replace("        image: nginx:1.25\n", ""),
     ["m.yaml:16: Deployment/web: spec.template.spec.containers[0].image: is required"]),
    ("mount of an unknown volume", DEPLOYMENT + "        volumeMounts:\n        - name: data\n          mountPath: /data\n",
     ["m.yaml:19: Deployment/web: spec.template.spec.containers[0].volumeMounts[0].name: "
      "volume 'data' is not defined in the pod's volumes"]),
    ("unsupported volume type",
     DEPLOYMENT + "      volumes:\n      - name: data\n        persistentVolumeClaim: {claimName: data}\n",
     ["m.yaml:19: Deployment/web: spec.template.spec.volumes[0]: unsupported volume type persistentVolumeClaim "
      "(supported: emptyDir, configMap, secret, hostPath)"]),
    ("unsupported volume type named by a key with newlines (found by the fuzz test)",
     DEPLOYMENT + "      volumes:\n      - ? \"\\n\\nx\"\n        : true\n",
     ["m.yaml:19: Deployment/web: spec.template.spec.volumes[0]: unsupported volume type [\"\\n\\nx\"] "
      "(supported: emptyDir, configMap, secret, hostPath)"]),
    ("two volume types",
     DEPLOYMENT + "      volumes:\n      - name: data\n        emptyDir: {}\n        configMap: {name: c}\n",
     ["m.yaml:19: Deployment/web: spec.template.spec.volumes[0]: must specify only one volume type, not emptyDir and configMap"]),
    ("bad label key and value",
     DEPLOYMENT.replace("metadata:\n  name: web\n", "metadata:\n  name: web\n  labels:\n    'a b': x\n    tier: 'front end'\n"),
     ["m.yaml:6: Deployment/web: metadata.labels[\"a b\"]: 'a b' name part must consist of alphanumeric characters, "
      "'-', '_' or '.', and must start and end with an alphanumeric character",
      "m.yaml:7: Deployment/web: metadata.labels.tier: 'front end' must be empty or consist of alphanumeric characters, "
      "'-', '_' or '.', and must start and end with an alphanumeric character"]),
    ("label value that YAML reads as a number", DEPLOYMENT.replace("        app: web\n    spec:", "        app: web\n        version: 1.0\n    spec:"),
     ["m.yaml:14: Deployment/web: spec.template.metadata.labels.version: must be a string, not a number (1.0); quote it in the YAML"]),
    ("bad object name", DEPLOYMENT.replace("  name: web", "  name: Web"),
     ["m.yaml:4: Deployment/Web: metadata.name: 'Web' must be a lowercase RFC 1123 subdomain: lowercase letters, digits, "
      "'-' and '.', starting and ending with a letter or digit"]),
    ("bad quantity", DEPLOYMENT + "        resources:\n          limits:\n            cpu: 1.5x\n",
     ["m.yaml:20: Deployment/web: spec.template.spec.containers[0].resources.limits.cpu: "
      "'1.5x' is not a quantity; use a form such as 500m, 0.5, 128Mi or 1G"]),
    ("request above limit", DEPLOYMENT + "        resources:\n          limits: {memory: 1Gi}\n          requests:\n            memory: 2Gi\n",
     ["m.yaml:21: Deployment/web: spec.template.spec.containers[0].resources.requests.memory: "
      "must be less than or equal to the memory limit (1Gi)"]),
    ("env value as a number", DEPLOYMENT + "        env:\n        - name: PORT\n          value: 8080\n",
     ["m.yaml:20: Deployment/web: spec.template.spec.containers[0].env[0].value: "
      "must be a string, not a number (8080); quote it in the YAML"]),
    ("env with value and valueFrom",
     DEPLOYMENT + "        env:\n        - name: A\n          value: x\n          valueFrom:\n"
                  "            secretKeyRef: {name: s, key: k}\n",
     ["m.yaml:21: Deployment/web: spec.template.spec.containers[0].env[0].valueFrom: may not be set when value is set"]),
    ("probe with two handlers",
     DEPLOYMENT + "        readinessProbe:\n          httpGet: {port: 80}\n          exec: {command: [cat, /tmp/ready]}\n",
     ["m.yaml:18: Deployment/web: spec.template.spec.containers[0].readinessProbe: "
      "must set exactly one of httpGet, tcpSocket or exec"]),
    ("liveness successThreshold", DEPLOYMENT + "        livenessProbe:\n          tcpSocket: {port: 80}\n          successThreshold: 2\n",
     ["m.yaml:20: Deployment/web: spec.template.spec.containers[0].livenessProbe.successThreshold: must be 1 for a livenessProbe"]),
    ("probe port out of range", DEPLOYMENT + "        readinessProbe:\n          httpGet:\n            port: 70000\n",
     ["m.yaml:20: Deployment/web: spec.template.spec.containers[0].readinessProbe.httpGet.port: "
      "70000 is not a port number between 1 and 65535"]),
    ("container port protocol", DEPLOYMENT + "        ports:\n        - containerPort: 53\n          protocol: SCTP\n",
     ["m.yaml:20: Deployment/web: spec.template.spec.containers[0].ports[0].protocol: must be one of TCP or UDP, not 'SCTP'"]),
    ("wrong type for a list", DEPLOYMENT + "        args: --verbose\n",
     ["m.yaml:18: Deployment/web: spec.template.spec.containers[0].args: must be a list, not a string"]),
    ("spec is not a mapping", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: [1]\n",
     ["m.yaml:4: Pod/p: spec: must be a mapping, not a list"]),
    ("missing name", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n",
     ["m.yaml:3: ConfigMap/-: metadata.name: is required"]),
    ("missing metadata", "apiVersion: v1\nkind: ConfigMap\n",
     ["m.yaml:1: ConfigMap/-: metadata: is required"]),
    ("service name is a DNS-1035 label", SERVICE.replace("name: web", "name: 9web"),
     ["m.yaml:4: Service/9web: metadata.name: '9web' must be a lowercase RFC 1035 label: lowercase letters, digits and "
      "'-', starting with a letter and ending with a letter or digit"]),
    ("nodePort out of range", SERVICE.replace("spec:\n", "spec:\n  type: NodePort\n") + "    nodePort: 8080\n",
     ["m.yaml:9: Service/web: spec.ports[0].nodePort: 8080 is not in the node port range 30000-32767"]),
    ("nodePort on a ClusterIP service", SERVICE + "    nodePort: 30080\n",
     ["m.yaml:8: Service/web: spec.ports[0].nodePort: may only be set when type is NodePort or LoadBalancer"]),
    ("UDP service", SERVICE + "    protocol: UDP\n",
     ["m.yaml:8: Service/web: spec.ports[0].protocol: protocol UDP is not supported by the service proxy; only TCP is"]),
    ("quoted number as targetPort", SERVICE + "    targetPort: '8080'\n",
     ["m.yaml:8: Service/web: spec.ports[0].targetPort: '8080' must be a port number (unquoted) or a port name"]),
    ("service without ports", SERVICE.replace("  ports:\n  - port: 80\n", "  selector: {app: web}\n"),
     ["m.yaml:5: Service/web: spec.ports: must not be empty"]),
    ("unnamed ports", SERVICE + "  - port: 81\n",
     ["m.yaml:7: Service/web: spec.ports[0].name: is required when a service has more than one port",
      "m.yaml:8: Service/web: spec.ports[1].name: is required when a service has more than one port"]),
    ("ExternalName service", SERVICE + "  type: ExternalName\n",
     ["m.yaml:8: Service/web: spec.type: must be one of ClusterIP, NodePort or LoadBalancer, not 'ExternalName'"]),
    ("sessionAffinity", SERVICE + "  sessionAffinity: Sticky\n",
     ["m.yaml:8: Service/web: spec.sessionAffinity: must be one of None or ClientIP, not 'Sticky'"]),
    ("bad clusterIP", SERVICE + "  clusterIP: 10.0.0.300\n",
     ["m.yaml:8: Service/web: spec.clusterIP: '10.0.0.300' must be an IPv4 address, or 'None' for a headless service"]),
    ("secret data not base64", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  password: hunter2!\n",
     ["m.yaml:5: Secret/s: data.password: must be base64-encoded (use stringData for plain text)"]),
    ("configmap value as a number", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  replicas: 3\n",
     ["m.yaml:5: ConfigMap/c: data.replicas: must be a string, not a number (3); quote it in the YAML"]),
    ("configmap bad key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  'a/b': x\n",
     ["m.yaml:5: ConfigMap/c: data[\"a/b\"]: 'a/b' must consist of alphanumeric characters, '-', '_' or '.'"]),
    ("namespace name", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team.a\n",
     ["m.yaml:4: Namespace/team.a: metadata.name: 'team.a' must be a lowercase RFC 1123 label: lowercase letters, "
      "digits and '-', starting and ending with a letter or digit"]),
    ("unsupported kind", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\n",
     ["m.yaml:2: CronJob/c: kind: 'CronJob' is not a supported kind (supported: Deployment, ReplicaSet, Pod, "
      "Service, ConfigMap, Secret, Namespace)"]),
    ("kind in the wrong case", DEPLOYMENT.replace("kind: Deployment", "kind: deployment"),
     ["m.yaml:2: deployment/web: kind: 'deployment' is not a supported kind (kinds are case-sensitive: "
      "did you mean 'Deployment'?)"]),
    ("wrong apiVersion", "apiVersion: apps/v1\nkind: Service\nmetadata: {name: s}\n",
     ["m.yaml:1: Service/s: apiVersion: 'apps/v1' is not supported for Service (use v1)"]),
    ("missing apiVersion", "kind: Pod\nmetadata: {name: p}\n",
     ["m.yaml:1: Pod/p: apiVersion is required"]),
    ("missing kind", "apiVersion: v1\nmetadata: {name: p}\n",
     ["m.yaml:1: -/p: kind is required"]),
    ("document that is not a mapping", "just text\n---\n- a\n- b\n",
     ["m.yaml:1: -/-: a manifest must be a mapping, not a string",
      "m.yaml:3: -/-: a manifest must be a mapping, not a list"]),
    ("duplicate YAML key", DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  replicas: 3\n"),
     ["m.yaml:7: Deployment/web: spec.replicas: duplicate key"]),
    ("unsupported YAML tag", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a: !!python/name:os.system x\n",
     ["m.yaml:5: ConfigMap/c: unsupported YAML tag !!python/name:os.system"]),
]


@pytest.mark.parametrize("text, expected", [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_errors(text: str, expected: list[str]) -> None:
    result = parse(text)
    assert error_lines(result) == expected
    assert not result.objects


def test_yaml_syntax_error_fails_the_whole_file() -> None:
    text = DEPLOYMENT + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c\n"
    result = parse(text)
    assert error_lines(result) == ["m.yaml:22: -/-: YAML syntax error: did not find expected ',' or '}'"]
    # The Deployment before the error is not applied either: the file's content is unknown.
    assert result.objects == () and result.failed_files == {"m.yaml"}


def test_invalid_utf8_is_reported_with_its_line() -> None:
    result = parse_files([("m.yaml", b"apiVersion: v1\nkind: ConfigMap\ndata: {a: \xff}\n")])
    assert error_lines(result) == ["m.yaml:3: -/-: file is not valid UTF-8 text (byte 0xff at offset 41)"]
    assert result.failed_files == {"m.yaml"}


def test_invalid_object_does_not_stop_the_others() -> None:
    result = parse(DEPLOYMENT.replace("replicas: 2", "replicas: two") + "---\n" + SERVICE)
    assert [o.key for o in result.objects] == [("Service", "default", "web")]
    assert result.failed_keys == {("Deployment", "default", "web")}
    assert result.failed_files == frozenset()
    assert result.objects[0].line == 19


def test_unidentifiable_document_marks_its_file() -> None:
    # Without a name the daemon cannot tell which object broke, so it must not prune from this file.
    result = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n---\n" + SERVICE)
    assert result.failed_files == {"m.yaml"}
    assert [o.name for o in result.objects] == ["web"]


def test_many_errors_in_one_object_are_all_reported_in_line_order() -> None:
    text = DEPLOYMENT.replace("replicas: 2", "replicas: x") + "        imagePullPolicy: Sometimes\n        tty: 1\n"
    result = parse(text)
    assert [(p.line, p.severity) for p in result.problems] == [(6, "error"), (18, "error"), (19, "warning")]


# ---- warnings

def test_unknown_fields_are_warnings_and_left_out_of_the_body() -> None:
    result = parse(DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  replica: 3\n")
                   + "        imagePullPolic: Always\n")
    obj = only(result)
    assert [str(p) for p in result.warnings] == [
        "m.yaml:7: Deployment/web: spec.replica: unknown field",
        "m.yaml:19: Deployment/web: spec.template.spec.containers[0].imagePullPolic: unknown field",
    ]
    assert "replica" not in obj.body["spec"]
    assert "imagePullPolic" not in obj.body["spec"]["template"]["spec"]["containers"][0]
    assert obj.body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_snake_case_names_are_unknown_in_yaml() -> None:
    result = parse(DEPLOYMENT + "        image_pull_policy: Never\n")
    assert [p.message for p in result.warnings] == [
        "spec.template.spec.containers[0].image_pull_policy: unknown field"]
    assert only(result).body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_unknown_fields_are_reported_alongside_errors() -> None:
    result = parse(DEPLOYMENT.replace("replicas: 2", "replicas: x") + "        imagePullPolic: Always\n")
    assert [p.line for p in result.errors] == [6]
    assert [p.line for p in result.warnings] == [18]


def test_server_owned_fields_are_accepted_silently() -> None:
    text = DEPLOYMENT.replace("  name: web\n", "  name: web\n  creationTimestamp: null\n  uid: abc\n"
                                               "  resourceVersion: '7'\n") + "status: {}\n"
    result = parse(text)
    obj = only(result)
    assert not result.warnings
    assert set(obj.body["metadata"]) == {"name", "namespace"} and "status" not in obj.body


# ---- duplicates

def test_duplicate_object_across_files_is_an_error_on_the_second() -> None:
    result = parse_files([("b.yaml", SERVICE.encode()), ("a.yaml", ("---\n" + SERVICE).encode())])
    assert error_lines(result) == ["b.yaml:1: Service/web: Service default/web is already defined at a.yaml:2"]
    # Neither copy is applied (nor pruned): which one the user meant is unknown.
    assert result.objects == () and result.failed_keys == {("Service", "default", "web")}


def test_same_name_in_other_namespace_or_kind_is_fine() -> None:
    text = SERVICE + "---\n" + SERVICE.replace("  name: web\n", "  name: web\n  namespace: other\n") + "---\n" + \
        DEPLOYMENT
    assert len(parse(text).objects) == 3


def test_explicit_default_namespace_duplicates_implicit() -> None:
    text = SERVICE + "---\n" + SERVICE.replace("  name: web\n", "  name: web\n  namespace: default\n")
    assert error_lines(parse(text)) == ["m.yaml:9: Service/web: Service default/web is already defined at m.yaml:1"]


# ---- daemon permissions

PRIVILEGED = DEPLOYMENT + """\
        securityContext:
          privileged: true
      hostNetwork: true
      volumes:
      - name: host
        hostPath: {path: /var/run}
"""


def test_privileged_host_path_and_host_network_are_denied_by_default() -> None:
    assert error_lines(parse(PRIVILEGED)) == [
        "m.yaml:19: Deployment/web: spec.template.spec.containers[0].securityContext.privileged: privileged containers "
        "are denied; set allow.privileged: true in the daemon config to permit them",
        "m.yaml:20: Deployment/web: spec.template.spec.hostNetwork: hostNetwork is denied; set allow.hostNetwork: true "
        "in the daemon config to permit it",
        "m.yaml:23: Deployment/web: spec.template.spec.volumes[0].hostPath: hostPath volumes are denied; set "
        "allow.hostPath: true in the daemon config to permit them",
    ]


def test_allow_permits_each_separately() -> None:
    assert len(parse(PRIVILEGED, allow=Allow(privileged=True, host_path=True)).errors) == 1
    assert len(parse(PRIVILEGED, allow=Allow(host_network=True)).errors) == 2
    obj = only(parse(PRIVILEGED, allow=Allow(privileged=True, host_path=True, host_network=True)))
    assert obj.body["spec"]["template"]["spec"]["hostNetwork"] is True


def test_privileged_pod() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n" \
           "    securityContext: {privileged: true}\n"
    assert [p.line for p in parse(text).errors] == [8]
    assert only(parse(text, allow=Allow(privileged=True)))


# ---- YAML features

def test_multi_document_lines_and_empty_documents() -> None:
    text = "---\n# only a comment\n---\n" + SERVICE + "---\n---\n\n" + DEPLOYMENT + "...\n"
    result = parse(text)
    assert [(o.kind, o.line) for o in result.objects] == [("Service", 4), ("Deployment", 14)]


def test_anchors_and_merge_keys() -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - &base
    name: a
    image: busybox
    resources: {limits: {memory: 64Mi}}
  - <<: *base
    name: b
"""
    obj = only(parse(text))
    containers = obj.body["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a", "b"]
    assert containers[1]["resources"]["limits"] == {"memory": "64Mi"}


def test_error_inside_merged_content_points_at_the_merge() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    <<: {image: 5}\n"
    assert error_lines(parse(text)) == [
        "m.yaml:7: Pod/p: spec.containers[0].image: must be a string, not a number (5); quote it in the YAML"]


def test_yaml_booleans_and_timestamps() -> None:
    # YAML 1.1 reads `yes` as a boolean (as Kubernetes does); dates stay strings.
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations: {built: 2024-01-01}\ndata: {a: yes}\n"
    assert error_lines(parse(text)) == [
        "m.yaml:6: ConfigMap/c: data.a: must be a string, not a boolean; quote it in the YAML"]


# ---- parse_path

def test_parse_path_walks_a_directory(tmp_path: Path) -> None:
    (tmp_path / "apps" / "web").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    (tmp_path / "apps" / "web" / "deploy.yaml").write_text(DEPLOYMENT)
    (tmp_path / "apps" / "web" / "svc.yml").write_text(SERVICE.replace("port: 80", "port: x"))
    (tmp_path / ".git" / "config.yaml").write_text("not: a manifest\n")
    (tmp_path / "README.md").write_text("# hi\n")
    result = parse_path(tmp_path)
    assert [(o.file, o.kind) for o in result.objects] == [("apps/web/deploy.yaml", "Deployment")]
    assert error_lines(result) == ["apps/web/svc.yml:7: Service/web: spec.ports[0].port: must be a port number, not a string"]


def test_parse_path_single_file_and_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(SERVICE)
    assert [o.file for o in parse_path(path).objects] == [str(path)]
    missing = parse_path(tmp_path / "nope")
    assert missing.failed_files and "no such file" in missing.errors[0].message


def test_parse_path_unreadable_file(tmp_path: Path) -> None:
    # Symlinks under a folder are not manifests (the daemon's rule, issue 13), dangling or
    # not: they are skipped, not errors (tests/unit/gitops/test_hostile_git.py has the rule).
    os.symlink(tmp_path / "gone.yaml", tmp_path / "dangling.yaml")
    (tmp_path / "ok.yaml").write_text(SERVICE)
    result = parse_path(tmp_path)
    assert result.failed_files == frozenset() and error_lines(result) == []
    assert [o.name for o in result.objects] == ["web"]


# ---- quantities

@pytest.mark.parametrize("value, millicores", [
    ("100m", 100), ("0.5", 500), (1, 1000), (0.25, 250), ("2", 2000), ("1500m", 1500), ("1e-3", 1),
    (".1", 100), ("1u", 1), ("0", 0),
])
def test_parse_cpu(value: object, millicores: int) -> None:
    assert parse_cpu(value) == millicores


@pytest.mark.parametrize("value, size", [
    ("128Mi", 128 * 2**20), ("1G", 10**9), ("1Gi", 2**30), ("500k", 500_000), (1024, 1024), ("1e3", 1000),
    ("1.5Ki", 1536), ("0.5", 1), ("1E", 10**18), ("2Ei", 2 * 2**60),
])
def test_parse_memory(value: object, size: int) -> None:
    assert parse_memory(value) == size


@pytest.mark.parametrize("value", ["", "abc", "1.5x", "1KB", "--1", "1 Mi", "Mi", "-1", True, None, float("nan"),
                                   "1e100", "9" * 100, "1e3m"])
def test_bad_quantities(value: object) -> None:
    with pytest.raises(QuantityError):
        parse_memory(value)  # type: ignore[arg-type]


# ---- models from Python

def test_models_can_be_built_by_attribute_name_and_are_frozen() -> None:
    from reconciler.manifests import Container
    container = Container(name="c", image="busybox:1", image_pull_policy="Never")
    assert container.image_pull_policy == "Never"
    with pytest.raises(pydantic.ValidationError):  # frozen: pydantic refuses the assignment
        container.image = "other"  # type: ignore[misc]
    body = json.loads(json.dumps(only(parse(DEPLOYMENT)).body))
    assert Deployment.model_validate(body, by_alias=True, by_name=False).model_dump(
        by_alias=True, exclude_none=True) == body


def test_pure_python_yaml_parser_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.manifests import documents
    samples = [DEPLOYMENT + "        imagePullPolic: x\n", SERVICE + "  - port: 81\n", "a: [1\n", "- x\n",
               "base: &b {name: c, image: i}\nlist: [*b, {<<: *b, name: d}]\n"]

    def summary(result: ParseResult) -> tuple:
        # Syntax error wording differs between libyaml and PyYAML; the place must not.
        problems = [(p.file, p.line, p.kind, p.name, p.severity,
                     "YAML syntax error" if "syntax" in p.message else p.message) for p in result.problems]
        return result.objects, problems, result.failed_files, result.failed_keys

    with_libyaml = [summary(parse(text)) for text in samples]
    monkeypatch.setattr(documents, "_Parser", None)
    assert [summary(parse(text)) for text in samples] == with_libyaml


def test_manifests_is_a_low_layer() -> None:
    # It may use reconciler.labels and nothing else of reconciler (the layering in reconciler/__init__.py).
    import subprocess
    import sys
    code = ("import sys, reconciler.manifests; "
            "print(sorted(m for m in sys.modules if m.startswith('reconciler') "
            "and m not in ('reconciler', 'reconciler.core', 'reconciler.core.selectors') and not m.startswith('reconciler.manifests')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"
