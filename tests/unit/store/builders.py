"""What the store tests write: a settable clock and Kubernetes-shaped objects (a
Deployment, a realistic Pod) built the same way in every store test module."""
from __future__ import annotations


class FakeClock:
    def __init__(self, t: float = 1_795_608_000.0) -> None:  # 2026-11-25T12:00:00Z
        self.t = t

    def __call__(self) -> float:
        return self.t


def deployment(name: str, *, namespace: str | None = "default", image: str = "web:1", **meta: object) -> dict:
    md: dict = {"name": name, **meta}
    if namespace is not None:
        md["namespace"] = namespace
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": md,
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
    }


def pod(i: int, namespace: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"web-5d9c7b-{i:05d}",
            "namespace": namespace,
            "labels": {"app": "web", "pod-template-hash": "5d9c7b"},
            "annotations": {"reconciler.io/commit": "a" * 40},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7b", "uid": "u" * 36, "controller": True}
            ],
        },
        "spec": {
            "nodeName": "node1",
            "containers": [
                {
                    "name": "web",
                    "image": "localhost:5000/web:1",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": f"E{k}", "value": str(k)} for k in range(5)],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": f"127.244.0.{i % 250}",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "web", "ready": True, "restartCount": 0, "image": "localhost:5000/web:1",
                 "state": {"running": {"startedAt": "2026-11-25T12:00:00Z"}}}
            ],
        },
    }
