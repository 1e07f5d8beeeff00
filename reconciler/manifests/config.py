"""ConfigMap, Secret and Namespace: objects that carry data or scope, not workloads.

Secret ``stringData`` is merged into ``data`` (base64-encoded, stringData wins) as the
apiserver does on write, so consumers read one map; ``stringData`` is then dropped.
"""
from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from .fields import Base64, Bool, ConfigKey, KubeModel, Str, invalid
from .meta import NamespaceMeta, ObjectMeta

# etcd's object size limit, which Kubernetes enforces on ConfigMap and Secret data.
MAX_DATA_BYTES = 1024 * 1024


def _size(value: dict[str, str]) -> dict[str, str]:
    if sum(len(k) + len(v) for k, v in value.items()) > MAX_DATA_BYTES:
        raise invalid("must be no more than 1 MiB in total")
    return value


class ConfigMap(KubeModel):
    api_version: Literal["v1"]
    kind: Literal["ConfigMap"]
    metadata: ObjectMeta
    data: Annotated[dict[ConfigKey, Str], AfterValidator(_size)] | None = None
    binary_data: Annotated[dict[ConfigKey, Base64], AfterValidator(_size)] | None = None
    immutable: Bool | None = None


class Secret(KubeModel):
    api_version: Literal["v1"]
    kind: Literal["Secret"]
    metadata: ObjectMeta
    type: Str = "Opaque"
    data: Annotated[dict[ConfigKey, Base64], AfterValidator(_size)] | None = None
    string_data: Annotated[dict[ConfigKey, Str], AfterValidator(_size)] | None = None
    immutable: Bool | None = None

    @model_validator(mode="after")
    def _merge_string_data(self) -> Secret:
        if self.string_data is not None:
            merged = dict(self.data or {})
            for key, text in self.string_data.items():
                merged[key] = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")
            self._default("data", merged)
            self._default("string_data", None)
        return self


class NamespaceSpec(KubeModel):
    finalizers: list[Str] | None = None


class Namespace(KubeModel):
    api_version: Literal["v1"]
    kind: Literal["Namespace"]
    metadata: NamespaceMeta
    spec: NamespaceSpec | None = None
    status: Any = Field(default=None, exclude=True)
