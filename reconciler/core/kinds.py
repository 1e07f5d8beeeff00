"""The resource kinds the API serves, and the names kubectl users type for them.

One table shared by the server (which plural maps to which stored kind) and the
CLI (which `get KIND` words are valid, and which URL path they use), so the two
can never disagree about a name.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

CORE = "/api/v1"
APPS = "/apis/apps/v1"


@dataclass(frozen=True, kw_only=True)
class KindInfo:
    kind: str  # the stored kind, e.g. "Deployment"
    plural: str  # the URL word, e.g. "deployments"
    group_path: str  # "/api/v1" or "/apis/apps/v1"
    namespaced: bool

    @property
    def api_version(self) -> str:
        return "v1" if self.group_path == CORE else "apps/v1"

    @property
    def resource(self) -> str:
        """kubectl's qualified resource name: "deployments.apps", "pods"."""
        return self.plural if self.group_path == CORE else f"{self.plural}.apps"

    @property
    def singular_resource(self) -> str:
        """kubectl's `-o name` prefix: "deployment.apps", "pod"."""
        singular = self.kind.lower()
        return singular if self.group_path == CORE else f"{singular}.apps"

    def collection_path(self, *, namespace: str | None) -> str:
        """The list URL; namespace None lists all namespaces (ignored for cluster kinds)."""
        if self.namespaced and namespace is not None:
            return f"{self.group_path}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{self.group_path}/{self.plural}"

    def object_path(self, *, namespace: str, name: str) -> str:
        # Quoted: a typo such as "web?x" must name an object, not start a query string.
        name = quote(name, safe="")
        if self.namespaced:
            return f"{self.group_path}/namespaces/{quote(namespace, safe='')}/{self.plural}/{name}"
        return f"{self.group_path}/{self.plural}/{name}"


_INFOS = (
    (KindInfo(kind="Deployment", plural="deployments", group_path=APPS, namespaced=True), ("deployment", "deploy")),
    (KindInfo(kind="ReplicaSet", plural="replicasets", group_path=APPS, namespaced=True), ("replicaset", "rs")),
    (KindInfo(kind="Pod", plural="pods", group_path=CORE, namespaced=True), ("pod", "po")),
    (KindInfo(kind="Service", plural="services", group_path=CORE, namespaced=True), ("service", "svc")),
    (KindInfo(kind="Endpoints", plural="endpoints", group_path=CORE, namespaced=True), ("ep",)),
    (KindInfo(kind="Node", plural="nodes", group_path=CORE, namespaced=False), ("node", "no")),
    (KindInfo(kind="ConfigMap", plural="configmaps", group_path=CORE, namespaced=True), ("configmap", "cm")),
    (KindInfo(kind="Secret", plural="secrets", group_path=CORE, namespaced=True), ("secret",)),
    (KindInfo(kind="Namespace", plural="namespaces", group_path=CORE, namespaced=False), ("namespace", "ns")),
    (KindInfo(kind="Event", plural="events", group_path=CORE, namespaced=True), ("event", "ev")),
)

# Every accepted name (plural, singular, short) -> its KindInfo.
KINDS: dict[str, KindInfo] = {}
# (group_path, plural) -> KindInfo, for the server's routing.
BY_PLURAL: dict[tuple[str, str], KindInfo] = {}
for _info, _aliases in _INFOS:
    BY_PLURAL[(_info.group_path, _info.plural)] = _info
    for _name in (_info.plural, *_aliases):
        KINDS[_name] = _info
del _info, _aliases, _name


class UnknownKind(KeyError):
    """A KIND word that names no resource the daemon serves."""

    def __init__(self, word: str) -> None:
        super().__init__(word)
        self.word = word

    def __str__(self) -> str:
        return f'the server doesn\'t have a resource type "{self.word}"'


def lookup(word: str) -> KindInfo:
    """Resolve a kubectl KIND word: any case, optionally qualified ("deploy.apps", "deployments.v1.apps")."""
    key = word.strip().lower()
    for suffix in (".v1.apps", ".apps", ".v1"):
        if key.endswith(suffix) and key[: -len(suffix)] in KINDS:
            info = KINDS[key[: -len(suffix)]]
            # "pods.apps" is not a thing: the group must match.
            if ("apps" in suffix) == (info.group_path == APPS):
                return info
            raise UnknownKind(word)
    found = KINDS.get(key)
    if found is None:
        raise UnknownKind(word)
    return found
