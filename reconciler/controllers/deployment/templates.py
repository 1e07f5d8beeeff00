"""Which ReplicaSet is the new one: template keys, the config digest and the new/old split.

Kubernetes' ``FindNewReplicaSet``: the new ReplicaSet is the OLDEST whose pod
template equals the Deployment's, ignoring the pod-template-hash label. Two
differences, both why this is a module of its own:

- The Deployment's template is its *effective* template: the template plus a
  digest of the ConfigMaps and Secrets it reads (``core.confighash``). Kubernetes
  does not roll pods when their configuration changes (users add checksum
  annotations or a reloader); here a changed ConfigMap is a new template, so it
  rolls, and reverting the ConfigMap finds the old ReplicaSet again. A Deployment
  annotated ``reconciler.io/rollout-on-config: "false"`` opts out.
- Comparing templates (deep copies and JSON dumps of both sides, per ReplicaSet,
  up to three times a reconcile) was most of a no-change reconcile, so each
  template's canonical key is remembered per object uid and resourceVersion: any
  write to the object makes its entry stale.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.confighash import config_hash, referenced_config
from reconciler.core.keys import ANN_CONFIG_HASH, ANN_ROLLOUT_ON_CONFIG, LABEL_TEMPLATE_HASH

# Enough for every ReplicaSet of thousands of Deployments; a few hundred bytes each.
_TEMPLATE_KEYS_MAX = 50_000


class TemplateKeys:
    """Template keys of Deployments and ReplicaSets, remembered per version; splits new from old."""

    def __init__(self, *, store: Any) -> None:
        self._store = store
        # uid -> (version, template key), for ReplicaSets and for Deployments (whose version
        # includes their config digest: a ConfigMap may change while the Deployment does not).
        self._rs_template_keys: dict[str, tuple[Any, str]] = {}
        self._template_keys: dict[str, tuple[Any, str]] = {}
        self._reads_config_of: dict[str, tuple[Any, bool]] = {}  # uid -> (version, names any config)

    def effective_template(self, d: Body) -> dict[str, Any]:
        """The Deployment's template plus a digest of the ConfigMaps and Secrets it reads."""
        template = copy.deepcopy(d["spec"].get("template") or {})
        digest = self._config_digest(d)
        if digest:
            template.setdefault("metadata", {}).setdefault("annotations", {})[ANN_CONFIG_HASH] = digest
        return template

    def split(self, d: Body, all_rss: list[Body]) -> tuple[Body | None, list[Body]]:
        """(new, old): the new ReplicaSet is the OLDEST whose template equals the Deployment's
        (ignoring pod-template-hash); everything else is old."""
        template = self._effective_template_key(d)
        matching = [rs for rs in all_rss if self._rs_template_key(rs) == template]
        if len(matching) > 1:  # rare (a collision or a copy by hand); parsing the times is not free
            matching.sort(key=lambda rs: (o.created(rs), rs["metadata"]["name"]))
        new = matching[0] if matching else None
        old = [rs for rs in all_rss if new is None or rs["metadata"]["name"] != new["metadata"]["name"]]
        return new, old

    def _config_digest(self, d: Body) -> str | None:
        if o.annotations(d).get(ANN_ROLLOUT_ON_CONFIG) == "false":
            return None
        template = d["spec"].get("template") or {}
        if not self._reads_config(d):
            return None  # config_hash's answer without walking the pod spec again
        return config_hash(template_spec=template.get("spec") or {}, namespace=d["metadata"]["namespace"],
                           store=self._store)

    def _reads_config(self, d: Body) -> bool:
        """Does the pod spec name any ConfigMap or Secret? Remembered per Deployment version (asked
        three times a reconcile; most read none). The objects themselves are read every time."""
        meta = d["metadata"]
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        cached = self._reads_config_of.get(uid) if uid else None
        if cached is not None and version is not None and cached[0] == version:
            return cached[1]
        cms, secrets = referenced_config(((d["spec"].get("template") or {}).get("spec")) or {})
        reads = bool(cms or secrets)
        if uid and version is not None:
            _remember(self._reads_config_of, uid, (version, reads))
        return reads

    def _effective_template_key(self, d: Body) -> str:
        """`template_key(self.effective_template(d))`, remembered per Deployment version
        and config digest (the digest is recomputed each time: a ConfigMap may change
        while the Deployment does not)."""
        meta = d["metadata"]
        uid, version, digest = meta.get("uid"), meta.get("resourceVersion"), self._config_digest(d)
        cached = self._template_keys.get(uid) if uid else None
        if cached is not None and version is not None and cached[0] == (version, digest):
            return cached[1]
        key = template_key(_with_digest(d["spec"].get("template") or {}, digest))
        if uid and version is not None:
            _remember(self._template_keys, uid, ((version, digest), key))
        return key

    def _rs_template_key(self, rs: Body) -> str:
        meta = rs["metadata"]
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        cached = self._rs_template_keys.get(uid) if uid else None
        if cached is not None and version is not None and cached[0] == version:
            return cached[1]
        key = template_key(rs["spec"].get("template") or {})
        if uid and version is not None:
            _remember(self._rs_template_keys, uid, (version, key))
        return key


def template_key(template: dict[str, Any]) -> str:
    """Two templates are `objects.templates_equal` exactly when their keys are equal:
    the same canonical JSON of the template without pod-template-hash."""
    return json.dumps(_without_hash(template), sort_keys=True, separators=(",", ":"))


# The two below build what `objects.template_without_hash` and `effective_template` build, for
# reading only: they copy just the dicts on the path they change, where those deep-copied the
# whole template — a third of a Deployment's first reconcile at start-up (issue 16).
def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    t = template or {}
    meta = t.get("metadata") or {}
    labels = meta.get("labels")
    if labels and LABEL_TEMPLATE_HASH in labels:
        labels = {k: v for k, v in labels.items() if k != LABEL_TEMPLATE_HASH}
        t = {**t, "metadata": {**meta, "labels": labels}}
    return t


def _with_digest(template: dict[str, Any], digest: str | None) -> dict[str, Any]:
    if not digest:
        return template
    meta = template.get("metadata") or {}
    return {**template, "metadata": {**meta, "annotations": {**(meta.get("annotations") or {}), ANN_CONFIG_HASH: digest}}}


def _remember(cache: dict[str, tuple[Any, Any]], uid: str, entry: tuple[Any, Any]) -> None:
    if len(cache) >= _TEMPLATE_KEYS_MAX and uid not in cache:
        cache.clear()  # deleted objects leave entries behind; starting over bounds the memory
    cache[uid] = entry
