"""Issue 13: a pod's volumes on the host (reconciler/kubelet/volumes.py, through podrequest).

The pod's directory is 0700; an emptyDir is never world-writable: owned by runAsUser (0750),
group-writable with setgid for fsGroup/runAsGroup (02770), root's 0755 when nothing is known;
and a subPath that a container turned into a symlink (to /) is refused, while a plain one works
(its directories are made as needed). These run as root (chown); skipped otherwise.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconciler.kubelet.env import ConfigError
from reconciler.kubelet.podrequest import build_request, prepare_volumes
from reconciler.kubelet.volumes import safe_subpath

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


class NoStore:
    def get(self, *_a):
        return None

    def list(self, *_a):
        return []


def pod(*, security: dict | None = None, container_security: dict | None = None, mounts: list | None = None) -> dict:
    container: dict = {"name": "app", "image": "hello:v1",
                       "volumeMounts": mounts or [{"name": "scratch", "mountPath": "/scratch"}]}
    if container_security:
        container["securityContext"] = container_security
    spec: dict = {"containers": [container], "volumes": [{"name": "scratch", "emptyDir": {}}]}
    if security:
        spec["securityContext"] = security
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u-1"}, "spec": spec}


def owner(path: str) -> tuple[int, int, int]:
    info = os.stat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


@pytest.mark.parametrize(("security", "container_security", "expected"), [
    (None, None, (0, 0, 0o755)),
    ({"runAsUser": 1000}, None, (1000, 0, 0o750)),
    ({"runAsUser": 1000, "runAsGroup": 3000}, None, (1000, 3000, 0o2770)),
    ({"runAsUser": 1000, "fsGroup": 2000}, None, (1000, 2000, 0o2770)),
    ({"fsGroup": 2000}, None, (0, 2000, 0o2770)),
    (None, {"runAsUser": 1001}, (1001, 0, 0o750)),
])
def test_an_emptydir_is_owned_by_the_pods_user_and_never_world_writable(tmp_path, security, container_security,
                                                                        expected):
    old = os.umask(0)  # whatever the daemon's umask, the modes are the ones chosen
    try:
        paths = prepare_volumes(pod=pod(security=security, container_security=container_security), store=NoStore(),
                                volumes_dir=tmp_path)
    finally:
        os.umask(old)
    assert owner(paths["scratch"]) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "u-1").st_mode) == 0o700  # no local user reaches the volumes


def test_fs_group_is_a_supplementary_group_of_every_container(tmp_path):
    request = build_request(pod=pod(security={"fsGroup": 2000, "supplementalGroups": [5]}), store=NoStore(),
                            volumes_dir=tmp_path, labels={})
    assert request.containers[0].supplemental_groups == (2000, 5)


def test_a_container_running_as_the_pods_user_can_write(tmp_path):
    """A bind mount hands the container the directory itself (the 0700 pod directory above it is
    never walked): here, a directory fd opened by root, then used as uid 1000."""
    paths = prepare_volumes(pod=pod(security={"runAsUser": 1000}), store=NoStore(), volumes_dir=tmp_path)
    mounted = os.open(paths["scratch"], os.O_RDONLY | os.O_DIRECTORY)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(1000)
            os.setuid(1000)
            fd = os.open("written", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=mounted)
            os.write(fd, b"ok")
            os.close(fd)
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(mounted)
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    assert Path(paths["scratch"], "written").read_text() == "ok"


def test_a_subpath_symlink_to_root_is_refused(tmp_path):
    spec = pod(mounts=[{"name": "scratch", "mountPath": "/data", "subPath": "data"}])
    prepare_volumes(pod=spec, store=NoStore(), volumes_dir=tmp_path)
    # What a container of the pod could do in its volume before its next start.
    os.symlink("/", tmp_path / "u-1" / "scratch" / "data")
    with pytest.raises(ConfigError, match="subPath 'data' of volume 'scratch'.*symbolic link"):
        build_request(pod=spec, store=NoStore(), volumes_dir=tmp_path, labels={})


def test_a_symlink_deeper_in_the_subpath_is_refused(tmp_path):
    root = tmp_path / "vol"
    (root / "a").mkdir(parents=True)
    os.symlink("/etc", root / "a" / "b")
    with pytest.raises(ConfigError, match="'a/b' is a symbolic link"):
        safe_subpath(str(root), "a/b/c", volume="vol")
    os.symlink("/etc/passwd", root / "file")
    with pytest.raises(ConfigError, match="symbolic link"):
        safe_subpath(str(root), "file", volume="vol")


def test_an_emptydir_replaced_by_a_symlink_is_refused(tmp_path):
    spec = pod()
    paths = prepare_volumes(pod=spec, store=NoStore(), volumes_dir=tmp_path)
    os.rmdir(paths["scratch"])
    os.symlink("/", paths["scratch"])
    with pytest.raises(ConfigError, match="symbolic link"):
        prepare_volumes(pod=spec, store=NoStore(), volumes_dir=tmp_path)
    assert os.stat("/").st_mode == os.stat("/").st_mode  # / untouched (no chmod through the link)


def test_a_plain_subpath_works_and_is_made(tmp_path):
    spec = pod(mounts=[{"name": "scratch", "mountPath": "/data", "subPath": "one/two"}])
    request = build_request(pod=spec, store=NoStore(), volumes_dir=tmp_path, labels={})
    [mount] = request.containers[0].mounts
    assert mount.source == str(tmp_path / "u-1" / "scratch" / "one" / "two")
    assert os.path.isdir(mount.source) and not os.path.islink(mount.source)
    root = tmp_path / "files"
    root.mkdir()
    (root / "app.conf").write_text("x")
    assert safe_subpath(str(root), "app.conf", volume="cfg") == str(root / "app.conf")


@pytest.mark.parametrize("bad", ["../x", "/etc", "a/../../b", "a//b", "./a"])
def test_a_subpath_leaving_the_volume_is_refused(tmp_path, bad):
    with pytest.raises(ConfigError, match="relative path"):
        safe_subpath(str(tmp_path), bad, volume="vol")
