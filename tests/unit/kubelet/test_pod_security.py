"""Issue 13, the node's side of pod policy, on the fake driver and a manual clock (the same with
real podman: tests/e2e/test_pod_security.py):

- allowPrivilegeEscalation: false reaches the engine as no_new_privileges;
- runAsNonRoot refuses a container whose user is root (runAsUser 0, or the image's USER empty,
  "root" or "0") or cannot be verified (a user name): CreateContainerConfigError, nothing created,
  and the agent settles instead of looping; a numeric non-root user runs;
- initContainers run in order, each to completion, before any app container exists; a failing one
  is restarted with the crash-loop back-off and the app never starts.
"""
from __future__ import annotations

import copy

import pytest

from reconciler.core import objects as o
from reconciler.core.backoff import BACKOFF_START
from tests.harness.sim import Sim

IMAGE = "hello:v1"


def pod(name: str = "solo", *, containers: list[dict] | None = None, init: list[dict] | None = None,
        security: dict | None = None, policy: str = "Always") -> dict:
    spec: dict = {"containers": containers or [{"name": "app", "image": IMAGE}], "restartPolicy": policy,
                  "terminationGracePeriodSeconds": 2}
    if init:
        spec["initContainers"] = init
    if security:
        spec["securityContext"] = security
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def stored(sim: Sim, name: str = "solo") -> dict:
    return sim.store.get("Pod", "default", name)


def engine(sim: Sim, name: str = "solo"):
    return sim.driver.pod_state(namespace="default", name=name)


# ------------------------------------------------------------------ allowPrivilegeEscalation


def test_allow_privilege_escalation_false_is_no_new_privileges(sim):
    sim.apply(pod(containers=[
        {"name": "locked", "image": IMAGE, "securityContext": {"allowPrivilegeEscalation": False}},
        {"name": "default", "image": IMAGE},
        {"name": "allowed", "image": IMAGE, "securityContext": {"allowPrivilegeEscalation": True}}]))
    sim.settle()
    request = sim.driver.pod_request(namespace="default", name="solo")
    assert {c.name: c.no_new_privileges for c in request.containers} == {
        "locked": True, "default": False, "allowed": False}


# ------------------------------------------------------------------ runAsNonRoot


@pytest.mark.parametrize(("image_user", "security", "message"), [
    ("", {"runAsNonRoot": True}, "container has runAsNonRoot and image will run as root"),
    ("root", {"runAsNonRoot": True}, "container has runAsNonRoot and image will run as root"),
    ("0:0", {"runAsNonRoot": True}, "container has runAsNonRoot and image will run as root"),
    ("nobody", {"runAsNonRoot": True}, "image has non-numeric user (nobody), cannot verify user is non-root"),
    ("1000", {"runAsNonRoot": True, "runAsUser": 0}, "container's runAsUser breaks non-root policy"),
])
def test_run_as_non_root_refuses_a_root_user(sim, image_user, security, message):
    sim.driver.add_image(IMAGE)
    sim.driver.set_image_user(IMAGE, image_user)
    sim.apply(pod(security=security))
    sim.settle()  # settles: the refusal is not retried in a hot loop
    [status] = stored(sim)["status"]["containerStatuses"]
    waiting = status["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError"
    assert message in waiting["message"]
    assert engine(sim) is None  # nothing was created
    assert stored(sim)["status"]["phase"] == "Pending"
    # Later looks find the same answer and write nothing new.
    before = sim.store.resource_version
    sim.advance(10)
    assert "CreateContainerConfigError" in str(stored(sim)["status"]["containerStatuses"])
    assert sim.store.resource_version - before < 10


@pytest.mark.parametrize(("image_user", "security"), [
    ("1000", {"runAsNonRoot": True}),
    ("1000:1000", {"runAsNonRoot": True}),
    ("", {"runAsNonRoot": True, "runAsUser": 1000}),
    ("nobody", {"runAsNonRoot": True, "runAsUser": 65534}),
    ("", {"runAsNonRoot": False}),
])
def test_run_as_non_root_lets_a_non_root_user_run(sim, image_user, security):
    sim.driver.add_image(IMAGE)
    sim.driver.set_image_user(IMAGE, image_user)
    sim.apply(pod(security=security))
    sim.settle()
    assert [c.state for c in engine(sim).containers] == ["running"]


def test_run_as_non_root_on_the_container_overrides_the_pod(sim):
    sim.driver.add_image(IMAGE)
    sim.apply(pod(containers=[{"name": "app", "image": IMAGE, "securityContext": {"runAsNonRoot": True}}],
                  security={"runAsNonRoot": False}))
    sim.settle()
    assert engine(sim) is None
    assert "will run as root" in str(stored(sim)["status"]["containerStatuses"])


# ------------------------------------------------------------------ initContainers


def init_pod(policy: str = "Always") -> dict:
    return pod(init=[{"name": "first", "image": "init:v1"}, {"name": "second", "image": "init:v1"}], policy=policy)


def states(containers) -> dict[str, str]:
    return {c.name: c.state for c in containers}


def initialized(sim: Sim) -> str:
    return (o.get_condition(stored(sim)["status"], "Initialized") or {}).get("status", "")


def test_init_containers_run_in_order_before_the_app(sim):
    sim.apply(init_pod())
    sim.settle()
    state = engine(sim)
    assert states(state.init_containers) == {"first": "running", "second": "waiting"}
    assert state.containers == ()  # the app container does not even exist yet
    assert stored(sim)["status"]["phase"] == "Pending" and initialized(sim) == "False"
    assert [s["state"] for s in stored(sim)["status"]["initContainerStatuses"]][1] == \
        {"waiting": {"reason": "PodInitializing"}}

    sim.driver.crash(namespace="default", name="solo", container="first", exit_code=0)  # completed
    sim.advance(2)
    state = engine(sim)
    assert states(state.init_containers) == {"first": "terminated", "second": "running"}
    assert state.containers == ()

    sim.driver.crash(namespace="default", name="solo", container="second", exit_code=0)
    sim.advance(2)
    state = engine(sim)
    assert states(state.init_containers) == {"first": "terminated", "second": "terminated"}
    assert states(state.containers) == {"app": "running"}
    status = stored(sim)["status"]
    assert status["phase"] == "Running" and initialized(sim) == "True"
    assert [(s["name"], s["ready"], s["state"]["terminated"]["reason"]) for s in status["initContainerStatuses"]] \
        == [("first", True, "Completed"), ("second", True, "Completed")]
    # Finished init containers are not run again, and the pod stays in step.
    starts = len(sim.driver.calls_to("start_container"))
    sim.advance(30)
    assert len(sim.driver.calls_to("start_container")) == starts
    assert not sim.driver.calls_to("start_pod")


def test_a_failing_init_container_is_retried_with_back_off_and_the_app_never_starts(sim):
    sim.apply(init_pod())
    sim.settle()
    first_id = engine(sim).init_containers[0].container_id
    sim.driver.crash(namespace="default", name="solo", container="first", exit_code=3)
    sim.advance(1)
    # The first restart is at once (a new container), the next after the back-off.
    state = engine(sim)
    assert states(state.init_containers)["first"] == "running"
    assert state.init_containers[0].container_id != first_id
    [first, _second] = stored(sim)["status"]["initContainerStatuses"]
    assert first["restartCount"] == 1 and first["lastState"]["terminated"]["exitCode"] == 3
    sim.driver.crash(namespace="default", name="solo", container="first", exit_code=3)
    sim.advance(1)
    first = stored(sim)["status"]["initContainerStatuses"][0]
    assert first["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    sim.advance(BACKOFF_START)
    assert stored(sim)["status"]["initContainerStatuses"][0]["restartCount"] == 2
    state = engine(sim)
    assert state.containers == ()
    status = stored(sim)["status"]
    assert status["phase"] == "Pending" and initialized(sim) == "False"
    assert (o.get_condition(status, "Ready") or {}).get("status") != "True"


def test_a_failed_init_container_under_never_is_not_retried(sim):
    sim.apply(init_pod(policy="Never"))
    sim.settle()
    sim.driver.crash(namespace="default", name="solo", container="first", exit_code=1)
    sim.advance(60)
    state = engine(sim)
    assert states(state.init_containers) == {"first": "terminated", "second": "waiting"}
    assert state.containers == ()
    assert stored(sim)["status"]["initContainerStatuses"][0]["restartCount"] == 0


def test_an_app_restart_does_not_rerun_init_containers(sim):
    sim.apply(init_pod())
    sim.settle()
    for name in ("first", "second"):
        sim.driver.crash(namespace="default", name="solo", container=name, exit_code=0)
        sim.advance(2)
    ids = [c.container_id for c in engine(sim).init_containers]
    sim.driver.crash(namespace="default", name="solo", container="app", exit_code=1)
    sim.advance(1)
    state = engine(sim)
    assert states(state.containers) == {"app": "running"}
    assert [c.container_id for c in state.init_containers] == ids
    assert states(state.init_containers) == {"first": "terminated", "second": "terminated"}


def test_init_containers_share_the_pods_volumes(sim):
    spec = init_pod()
    spec["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    spec["spec"]["initContainers"][0]["volumeMounts"] = [{"name": "work", "mountPath": "/work"}]
    spec["spec"]["containers"][0]["volumeMounts"] = [{"name": "work", "mountPath": "/data"}]
    sim.apply(copy.deepcopy(spec))
    sim.settle()
    request = sim.driver.pod_request(namespace="default", name="solo")
    [init_mount] = request.init_containers[0].mounts
    for name in ("first", "second"):
        sim.driver.crash(namespace="default", name="solo", container=name, exit_code=0)
        sim.advance(2)
    # The app containers were created by a second create_pod, after the init containers succeeded.
    first, then = [c.args["request"] for c in sim.driver.calls_to("create_pod")]
    assert first.containers == () and then.init_containers == ()
    [app_mount] = then.containers[0].mounts
    assert init_mount.source == app_mount.source and app_mount.target == "/data"
