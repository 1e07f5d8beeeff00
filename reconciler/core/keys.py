"""Every label, annotation and store key the control plane owns, defined once.

Labels and annotations are part of the contract users see (``get -o json``,
``reconciler.io/prune: "false"``); store keys (``kv``) are the daemon's own
records beside the objects. The container engine's labels (``reconciler.io/pod-name``
and friends, written on podman objects) are ``runtime``'s: the engine layer imports
nothing of ``reconciler``, so they live in ``runtime/driver.py``.
"""
from __future__ import annotations

# -- annotations and labels on objects ------------------------------------------------------
ANN_REVISION = "deployment.kubernetes.io/revision"
ANN_REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
ANN_DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
ANN_MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ANN_COMMIT = "reconciler.io/commit"
ANN_SOURCE_FILE = "reconciler.io/source-file"
ANN_MANAGED_BY = "reconciler.io/managed-by"
ANN_PRUNE = "reconciler.io/prune"
ANN_AUTO_ROLLBACK = "reconciler.io/auto-rollback"
ANN_ROLLED_BACK_FROM = "reconciler.io/rolled-back-from"  # set by the automatic rollback
ANN_CONFIG_HASH = "reconciler.io/config-hash"  # digest of the ConfigMaps/Secrets a template reads
ANN_ROLLOUT_ON_CONFIG = "reconciler.io/rollout-on-config-change"
ANN_REGISTERED = "reconciler.io/registered"  # on a Node that registered itself through the API (reconciler node)
ANN_POD_IP = "reconciler.io/pod-ip"  # the scheduler's choice, from the node's pod CIDR
LABEL_TEMPLATE_HASH = "pod-template-hash"
LABEL_GRACE = "reconciler.io/grace"  # a pod's termination grace, written on the engine's pod
# What else the kubelet writes on the engine's pod, so podman alone tells a pod's place.
LABEL_NODE = "reconciler.io/node"  # the node whose agent owns the engine pod
LABEL_REPLICASET = "reconciler.io/replicaset"
LABEL_DEPLOYMENT = "reconciler.io/deployment"
LABEL_POD_TEMPLATE_HASH = "reconciler.io/pod-template-hash"
LABEL_COMMIT = "reconciler.io/commit"  # ANN_COMMIT of the pod, copied to the engine
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"  # a Node's roles are the rest of such label keys
MANAGER = "reconciler"  # the value of ANN_MANAGED_BY
ANN_DEPLOYMENT_PREFIX = "deployment.kubernetes.io/"  # the Deployment controller's annotations (ANN_REVISION...)
ANN_RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # stamped on a pod template by `rollout restart`

# -- the daemon's records in the store (kv) --------------------------------------------------
SOURCE_KEY = "source"  # the work-queue key of the sync (the sync record is the store's sync_state)
COMPLETED_KEY = "daemon/completedCommit"
HEALTH_KEY = "sync/health"  # the commit being checked, its objects and the last verdict
OBJECT_STATES_KEY = "sync/objects"  # per-object sync state of the last applied commit
FAILURES_KEY = "rollback/failures"
SERVICE_ALLOCATIONS_KEY = "allocator/services"
API_CA_KEY = "api/ca"  # the API's CA, certificate and key in PEM: one for every daemon on the store (apiserver.certs)
API_TOKENS_KEY = "api/tokens"  # sha256 of each API token -> its kind, expiry and bound node (apiserver.auth)
OWN_COMMITS_PREFIX = "signing/own/"  # + sha: a commit the daemon wrote itself (signing.OwnCommits)


def rollback_pin_key(namespace: str, name: str) -> str:
    """The automatic rollback's pin of one Deployment: the failed spec and the good template."""
    return f"rollback/pin/{namespace}/{name}"


def rollback_completed_key(namespace: str, name: str) -> str:
    """The template of one Deployment's last revision that completed."""
    return f"rollback/completed/{namespace}/{name}"


def commit_key(sha: str) -> str:
    """What the applier recorded of one commit: its subject, author and timestamp."""
    return f"commit:{sha}"
