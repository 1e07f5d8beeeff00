"""The multi-host lab itself: hosts in namespaces, each with its own podman and pod network,
pods reaching pods on other hosts once the pod CIDRs are routed (host-gw), nothing left after."""
from __future__ import annotations

import pytest

from tests.harness.hostlab import HostLab, run
from tests.harness.podman_fixtures import ImageRefs

pytestmark = pytest.mark.podman

GET = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080"


def test_pods_on_two_hosts_reach_each_other_once_routed(images: ImageRefs) -> None:
    lab = HostLab(hosts=2, images=(images.hello_v1,))
    with lab:
        ips = {}
        for index, host in enumerate(lab.hosts):
            ip = host.pod_cidr.rsplit(".", 1)[0] + ".5"
            started = host.podman("run", "-d", "--name", "web", "--network", "reconciler", "--ip", ip,
                                  images.hello_v1)
            assert started.returncode == 0, started.stderr
            ips[index] = ip
        first, second = lab.hosts
        # Before routing: another host's pod CIDR is unreachable (no route, and no default route).
        before = first.podman("exec", "web", "/bin/busybox", "sh", "-c", GET.format(ip=ips[1]))
        assert "200 OK" not in before.stdout
        lab.route_pod_cidrs()
        for src, dst in ((first, ips[1]), (second, ips[0])):
            got = src.podman("exec", "web", "/bin/busybox", "sh", "-c", GET.format(ip=dst))
            assert "200 OK" in got.stdout, (got.stdout, got.stderr)
        # The root side (where the control plane runs) reaches every host's pods too.
        reply = run("curl", "-s", "-m", "5", f"http://{ips[1]}:8080/index.html")
        assert "hello" in reply.stdout
    assert lab.leftovers() == []
