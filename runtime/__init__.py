"""Node drivers: the container-engine side of Reconciler.

``runtime`` is the lowest layer: it knows podman (and a fake with the same
interface) and nothing of Git, manifests or controllers. The control plane in
``reconciler`` imports it; it never imports ``reconciler``.
"""
