"""Issue 13 in the engine's requests, without an engine: what specgen sends podman for
allowPrivilegeEscalation (no_new_privileges), fsGroup (groups) and init containers (a label);
runAsNonRoot decided as the kubelet decides it (runtime/nonroot.py), in the fake as in podman;
and image references URL-quoted in REST paths, so ``../`` cannot reach another endpoint."""
from __future__ import annotations

import pytest

from runtime.driver import ContainerConfigError, ContainerRequest, DriverError, PodRequest
from runtime.fake import FakeDriver
from runtime.nonroot import verify_non_root
from runtime.podman import specgen
from runtime.podman.decode import pod_state
from runtime.podman.images import image_path
from runtime.podman.initcontainers import LABEL_INIT_CONTAINER, split
from runtime.podman.naming import pod_labels


def request(*containers: ContainerRequest, init: tuple[ContainerRequest, ...] = ()) -> PodRequest:
    return PodRequest(namespace="default", name="p", uid="u1", pod_ip="", containers=containers,
                      init_containers=init)


def spec_of(container: ContainerRequest, *, init: bool = False) -> dict:
    return specgen.container_spec(request(container), container, index=0, engine_pod="default_p",
                                  name="default_p_c", user=None, init=init)


def test_no_new_privileges_only_when_asked():
    assert spec_of(ContainerRequest(name="c", image="i", no_new_privileges=True))["no_new_privileges"] is True
    assert "no_new_privileges" not in spec_of(ContainerRequest(name="c", image="i"))


def test_supplemental_groups_are_podman_groups():
    assert spec_of(ContainerRequest(name="c", image="i", supplemental_groups=(2000, 5)))["groups"] == ["2000", "5"]


def test_init_containers_carry_their_label_and_split_apart():
    c = ContainerRequest(name="c", image="i")
    assert spec_of(c, init=True)["labels"][LABEL_INIT_CONTAINER] == "true"
    assert LABEL_INIT_CONTAINER not in spec_of(c)["labels"]
    req = request(ContainerRequest(name="app", image="i"), init=(ContainerRequest(name="setup", image="i"),))
    listed = [
        {"Id": "a", "State": "running", "Labels": spec_of(req.containers[0])["labels"] | {
            "reconciler.io/container-name": "app"}},
        {"Id": "s", "State": "exited", "ExitCode": 0, "Labels": spec_of(req.init_containers[0], init=True)["labels"] | {
            "reconciler.io/container-name": "setup"}},
    ]
    state = pod_state({"Labels": pod_labels(req)}, listed, pod_id="pod")
    assert state is not None
    split_state = split(state, listed)
    assert [c.name for c in split_state.containers] == ["app"]
    assert [(c.name, c.state) for c in split_state.init_containers] == [("setup", "terminated")]


def test_an_init_container_may_not_share_an_app_containers_name():
    req = request(ContainerRequest(name="x", image="i"), init=(ContainerRequest(name="x", image="i"),))
    with pytest.raises(DriverError, match="not unique"):
        specgen.check_request(req, engine_name="default_p")


@pytest.mark.parametrize("image", ["../../containers/json", "a/../../b", "x?all=true", "x#y", "a b"])
def test_image_references_are_one_quoted_path_segment(image):
    path = image_path(image, "json")
    segment = path[len("/images/"):-len("/json")]
    # One segment: no "/" (so no "..": a dot-dot is only special as a whole segment), no query, no fragment.
    assert "/" not in segment and "?" not in segment and "#" not in segment and " " not in segment
    assert path.endswith("/json") and path.count("/") == 3


def test_a_plain_image_reference_is_unchanged_apart_from_its_slashes():
    assert image_path("localhost:5000/hello:v1", "exists") == "/images/localhost%3A5000%2Fhello%3Av1/exists"


@pytest.mark.parametrize(("user", "run_as_user", "refused"), [
    ("", None, "will run as root"), ("root", None, "will run as root"), ("0", None, "will run as root"),
    ("00", None, "will run as root"), ("nobody", None, "non-numeric user (nobody)"),
    ("1000", 0, "runAsUser breaks non-root policy"), ("1000", None, None), ("", 1000, None),
])
def test_verify_non_root(user, run_as_user, refused):
    container = ContainerRequest(name="c", image="i", run_as_non_root=True, run_as_user=run_as_user)
    if refused is None:
        verify_non_root(container, pod="ns/p", image_user=lambda _image: user)
        return
    with pytest.raises(ContainerConfigError, match=refused.replace("(", r"\(").replace(")", r"\)")):
        verify_non_root(container, pod="ns/p", image_user=lambda _image: user)


def test_the_fake_refuses_a_root_container_before_making_anything():
    driver = FakeDriver(images=["i"])
    req = request(ContainerRequest(name="ok", image="i"), ContainerRequest(name="c", image="i", run_as_non_root=True))
    with pytest.raises(ContainerConfigError, match="will run as root"):
        driver.create_pod(req)
    assert driver.list_pods() == []
    driver.set_image_user("i", "1000:1000")
    assert [c.name for c in driver.create_pod(req).containers] == ["ok", "c"]
