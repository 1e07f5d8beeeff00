"""Shared fixtures: the real podman service and local registry (see podman_fixtures)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from podman_fixtures import images, podman_host, podman_node  # noqa: E402,F401
