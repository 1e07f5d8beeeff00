"""The podman node driver: NodeDriver over podman's libpod REST API."""
