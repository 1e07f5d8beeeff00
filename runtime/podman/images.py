"""Image references as Kubernetes users write them, and the memory of which images are present.

Design:
- ``nginx`` means ``docker.io/library/nginx`` on a Kubernetes node; podman would
  instead try short-name resolution (which fails without search registries), so
  every reference is fully qualified before podman sees it (``normalize_image``).
- Registries on this host (localhost, 127.x) speak plain HTTP in tests; podman is
  told not to insist on TLS for them rather than relying on registries.conf.
- Cheap pulls: ``PresenceMemo`` remembers for ``IMAGE_PRESENT_TTL`` seconds that an
  image is present, so a burst of N pod starts asks podman once; a create that
  finds the image gone meanwhile forgets the answer at once.
- A reference goes into REST paths (``/images/{name}/json``) only URL-quoted
  (``image_path``), slashes included: the manifest parser refuses references that are not
  image references, and this is the second line, so that ``../`` or ``?`` in a name can
  never address another endpoint of the API.
- A pull's answer is a stream of JSON reports in which a failure arrives as
  ``{"error": ...}`` with status 200; ``read_pull_reports`` turns it into one outcome.
"""
from __future__ import annotations

import json
import re
import threading
import time
from typing import Any
from urllib.parse import quote

from runtime.driver import ImagePullError
from runtime.podman.transport import Response

PULL_TIMEOUT = 600.0
# Seconds a "the image is present" answer is trusted: long enough for a burst of pod starts
# (a rollout, a scale-up) to ask once, short enough that an image removed by hand is noticed
# before the next burst (and a create that finds it gone forgets the answer at once).
IMAGE_PRESENT_TTL = 5.0
_IMAGE_CACHE_LIMIT = 256
# Registries on this host that speak plain HTTP; podman is told not to insist on TLS.
_INSECURE_REGISTRY_RE = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+)(:\d+)?$")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def normalize_image(image: str) -> str:
    """Fully qualify a Docker-style image reference, as Kubernetes users expect.

    ``nginx`` means ``docker.io/library/nginx`` on a Kubernetes node; podman would
    instead try short-name resolution (which fails without search registries).
    """
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return image
    if not sep:
        return f"docker.io/library/{image}"
    return f"docker.io/{image}"


def image_path(image: str, action: str) -> str:
    """The API path ``/images/<reference>/<action>`` for an image as a Kubernetes user names it,
    the reference quoted as one path segment (podman's router unquotes it)."""
    return f"/images/{quote(normalize_image(image), safe='')}/{action}"


def registry_of(image: str) -> str:
    """The registry host of a normalized reference ("" when it names none)."""
    first, sep, _ = image.partition("/")
    return first if sep else ""


def pull_params(reference: str) -> dict[str, Any]:
    """The query of ``POST /images/pull`` for a normalized reference."""
    params: dict[str, Any] = {"reference": reference, "quiet": "true"}
    if _INSECURE_REGISTRY_RE.match(registry_of(reference)):
        # The local test registry is plain HTTP; do not depend on registries.conf for it.
        params["tlsVerify"] = "false"
    return params


def read_pull_reports(response: Response, *, image: str) -> None:
    """Read a pull's stream of JSON reports to its end; raises ImagePullError unless an image came."""
    pulled = False
    for line in response.iter_lines():
        if not line.strip():
            continue
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if report.get("error"):
            raise ImagePullError(f"cannot pull image {image}: {report['error']}")
        if report.get("id") or report.get("images"):
            pulled = True
    if not pulled:
        raise ImagePullError(f"cannot pull image {image}: podman reported no image.")


class PresenceMemo:
    """Which normalized image references were recently seen present (bounded, thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Normalized image reference -> monotonic time until which "present" is believed.
        self._present_until: dict[str, float] = {}
        self._asking: dict[str, threading.Lock] = {}  # one look (or pull) at a time per reference

    def believed(self, reference: str) -> bool:
        with self._lock:
            until = self._present_until.get(reference)
        return until is not None and time.monotonic() < until

    def remember(self, reference: str) -> None:
        with self._lock:
            if len(self._present_until) >= _IMAGE_CACHE_LIMIT:
                now = time.monotonic()
                self._present_until = {r: t for r, t in self._present_until.items() if t > now}
            self._present_until[reference] = time.monotonic() + IMAGE_PRESENT_TTL

    def forget(self, reference: str) -> None:
        with self._lock:
            self._present_until.pop(reference, None)

    def asking(self, reference: str) -> threading.Lock:
        """The lock to hold while asking podman whether ``reference`` is present: a burst of pods
        starting together (the agent's 8 workers) then asks once, the others waiting for its
        answer, instead of all asking at once beside their creates."""
        with self._lock:
            lock = self._asking.get(reference)
            if lock is None:
                if len(self._asking) >= _IMAGE_CACHE_LIMIT:
                    self._asking = {r: held for r, held in self._asking.items() if held.locked()}
                lock = self._asking[reference] = threading.Lock()
            return lock
