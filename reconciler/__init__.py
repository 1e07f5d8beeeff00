"""Reconciler: a GitOps control plane for podman nodes.

Layers (enforced by the import-linter contract in ``.importlinter``), top to bottom:
``cli`` > ``daemon`` > ``api`` > ``controllers`` > ``store``/``source``/``manifests`` > ``labels``/``clock``;
``runtime`` (node drivers) sits below all of them.
"""
