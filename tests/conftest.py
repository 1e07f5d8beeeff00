"""Shared fixtures: the real podman service and local registry (see podman_fixtures)."""


from tests.harness.podman_fixtures import images, podman_host, podman_node  # noqa: E402,F401
