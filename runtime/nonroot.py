"""runAsNonRoot, decided as the kubelet decides it (``verifyRunAsNonRoot``), for every driver.

Design: the user a container runs as is ``runAsUser`` when the pod says, else the image's
USER, which only the engine knows; so the check belongs to the driver, at create time (as
the kubelet makes it when it generates the container's config), and the look-up of the
image's USER comes in as a function. The decision itself is pure and shared, so the fake
and podman refuse the same containers with the same words:

- runAsUser 0: "container's runAsUser breaks non-root policy";
- no runAsUser, and the image's user is empty (no USER: root), ``root`` or ``0``:
  "container has runAsNonRoot and image will run as root";
- the image's user is another name: it cannot be verified without the image's
  /etc/passwd, so the container is refused too ("non-numeric user"), as the kubelet does.

Each is a ContainerConfigError: nothing is created, and the node agent shows the
container waiting with reason CreateContainerConfigError.
"""
from __future__ import annotations

from collections.abc import Callable

from runtime.driver import ContainerConfigError, ContainerRequest

ROOT_NAMES = frozenset({"", "root", "0"})


def verify_non_root(container: ContainerRequest, *, pod: str, image_user: Callable[[str], str]) -> None:
    """Raise ContainerConfigError when ``container`` has runAsNonRoot and would run as root.

    ``image_user(image)``: the user part of the image's USER ("" when it has none); only
    called when it matters (runAsNonRoot without runAsUser)."""
    if not container.run_as_non_root:
        return
    where = f"(pod: {pod}, container: {container.name})"
    if container.run_as_user is not None:
        if container.run_as_user == 0:
            raise ContainerConfigError(f"container's runAsUser breaks non-root policy {where}")
        return
    user = image_user(container.image).partition(":")[0].strip()
    if user in ROOT_NAMES:
        raise ContainerConfigError(f"container has runAsNonRoot and image will run as root {where}")
    if not user.isdigit():
        raise ContainerConfigError(f"container has runAsNonRoot and image has non-numeric user ({user[:64]}), "
                                   f"cannot verify user is non-root {where}")
    if int(user) == 0:  # "00"
        raise ContainerConfigError(f"container has runAsNonRoot and image will run as root {where}")
