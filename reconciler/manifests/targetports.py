"""A Service's named ``targetPort`` against the containers of the pods it selects.

A named targetPort is resolved, per endpoint, against the port names of the selected pod's
containers; a name no container declares gives a Service with no endpoints and no error
anywhere. The Service alone cannot know its pods, so this is a check over one whole parse
(one commit): for each Service, the workloads in the same namespace whose pod labels match
its selector. It is conservative on purpose: a numeric targetPort need not be declared
(Kubernetes does not require it), and when nothing in the commit matches the selector the
pods may come from elsewhere, so there is nothing to say.
"""
from __future__ import annotations

from collections.abc import Iterable

from .checks import Finding, pod_spec_of
from .pod import Pod
from .results import ParsedObject
from .service import Service
from .workloads import Deployment, ReplicaSet


def unmatched_target_ports(objects: Iterable[ParsedObject]) -> list[tuple[ParsedObject, Finding]]:
    """(the Service, (path, message)) for each named targetPort no selected container declares."""
    objects = list(objects)
    pods: dict[str, list[tuple[str, dict[str, str], set[str]]]] = {}   # namespace -> (who, labels, port names)
    for obj in objects:
        located = pod_spec_of(obj.model)
        if located is None:
            continue
        model = obj.model
        if isinstance(model, Pod):
            labels = model.metadata.labels or {}
        else:
            assert isinstance(model, (Deployment, ReplicaSet))
            labels = model.spec.template.metadata.labels or {}
        names = {port.name for container in located[1].containers for port in container.ports or [] if port.name}
        pods.setdefault(obj.namespace, []).append((f"{obj.kind}/{obj.name}", dict(labels), names))
    out: list[tuple[ParsedObject, Finding]] = []
    for obj in objects:
        service = obj.model
        if not isinstance(service, Service) or not service.spec.selector:
            continue
        selector = service.spec.selector
        selected = [(who, names) for who, labels, names in pods.get(obj.namespace, [])
                    if all(labels.get(k) == v for k, v in selector.items())]
        if not selected:
            continue
        declared = set().union(*(names for _, names in selected))
        shown = ", ".join(who for who, _ in selected[:3]) + (", ..." if len(selected) > 3 else "")
        for i, port in enumerate(service.spec.ports or []):
            target = port.target_port
            if isinstance(target, str) and target not in declared:
                out.append((obj, (("spec", "ports", i, "targetPort"),
                                  f"no container of the pods this Service selects ({shown}) declares a port "
                                  f"named {target!r}")))
    return out
