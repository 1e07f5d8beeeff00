"""The base model and the field types every manifest model is built from.

Kubernetes decodes YAML strictly: a number where a string belongs is an error, not a
conversion, so the models are strict. Field names are snake_case attributes with the
camelCase Kubernetes names as aliases; manifests are validated by alias only (so
``image_pull_policy`` in YAML is an unknown field, as it is for kubectl). Unknown fields
are ignored by the models; ``unknown_fields.py`` finds them in the raw document so they become
warnings even when the object has errors too. An explicit ``null`` for a field means
"not set", as in Kubernetes. Models are frozen because parsed objects are shared by
every controller.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from . import names
from .messages import describe_value
from .quantity import QuantityError, parse_quantity


class KubeModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        strict=True,
        # Defaults are known-good values; validating them again would only cost time.
        validate_default=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # `field: null` (or `field:` with nothing after it) means "unset" in Kubernetes.
        if isinstance(data, dict) and None in data.values():
            return {key: value for key, value in data.items() if value is not None}
        return data

    def _default(self, name: str, value: Any) -> None:
        """Apply a Kubernetes default after validation (the model is otherwise frozen)."""
        object.__setattr__(self, name, value)


def invalid(message: str) -> PydanticCustomError:
    # The message is already a full sentence fragment; pydantic must not template it.
    return PydanticCustomError("invalid", "{reason}", {"reason": message})


def _rule(check: Callable[[str], str | None]) -> AfterValidator:
    def validate(value: str) -> str:
        problem = check(value)
        if problem:
            raise invalid(f"{value!r} {problem}" if len(value) <= 80 else problem)
        return value
    return AfterValidator(validate)


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

NonNegInt32 = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]
PosInt32 = Annotated[StrictInt, Field(ge=1, le=INT32_MAX)]
NonNegInt64 = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
PosInt64 = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]


def _port(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(f"must be a port number, not {describe_value(value)}")
    if not 1 <= value <= 65535:
        raise invalid(f"{value if abs(value) < 10**20 else 'the value'} is not a port number between 1 and 65535")
    return value


PortNumber = Annotated[int, PlainValidator(_port)]
NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]
FileMode = Annotated[StrictInt, Field(ge=0, le=0o777)]
Bool = StrictBool
Str = StrictStr

DNSLabel = Annotated[StrictStr, _rule(names.dns1123_label)]
DNSSubdomain = Annotated[StrictStr, _rule(names.dns1123_subdomain)]
DNS1035Label = Annotated[StrictStr, _rule(names.dns1035_label)]
LabelKey = Annotated[StrictStr, _rule(names.qualified_name)]
LabelValue = Annotated[StrictStr, _rule(names.label_value)]
PortName = Annotated[StrictStr, _rule(names.port_name)]
EnvName = Annotated[StrictStr, _rule(names.env_name)]
ConfigKey = Annotated[StrictStr, _rule(names.config_key)]

Labels = dict[LabelKey, LabelValue]


def _annotations_size(value: dict[str, str]) -> dict[str, str]:
    if sum(len(k) + len(v) for k, v in value.items()) > 256 * 1024:
        raise invalid("annotations must be no more than 256 KiB in total")
    return value


Annotations = Annotated[dict[LabelKey, StrictStr], AfterValidator(_annotations_size)]


Image = Annotated[StrictStr, _rule(names.image_reference)]


def _quantity(value: Any) -> str:
    # Quantities may be written as YAML numbers (cpu: 1) or strings ("100m"); the body
    # keeps Kubernetes' string form.
    try:
        amount = parse_quantity(value)
    except QuantityError as error:
        raise invalid(str(error)) from None
    if amount < 0:
        raise invalid("must not be negative")
    return repr(value) if isinstance(value, float) else str(value)


Quantity = Annotated[str, PlainValidator(_quantity)]


def _int_or_percent(value: Any) -> int | str:
    """maxSurge / maxUnavailable: a non-negative int or "N%"."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise invalid("must be greater than or equal to 0")
        if value > INT32_MAX:
            raise invalid(f"must be at most {INT32_MAX}")
        return value
    if isinstance(value, str):
        digits = value[:-1]
        if value.endswith("%") and digits.isascii() and digits.isdigit() and len(digits) <= 10:
            return value
        raise invalid(f"{value[:40]!r} must be an integer or a percentage such as '25%'")
    raise invalid("must be an integer or a percentage such as '25%'")


IntOrPercent = Annotated[int | str, PlainValidator(_int_or_percent)]


def _port_or_name(value: Any) -> int | str:
    """targetPort and probe ports: a port number or a container port's name."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 65535:
            raise invalid(f"{value if abs(value) < 10**20 else 'the value'} is not a port number between 1 and 65535")
        return value
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            # Kubernetes would read "8080" as a port *name* and then reject it.
            raise invalid(f"{value!r} must be a port number (unquoted) or a port name")
        problem = names.port_name(value)
        if problem:
            raise invalid(f"{value[:40]!r} is not a valid port name: it {problem}")
        return value
    raise invalid("must be a port number or a port name")


PortOrName = Annotated[int | str, PlainValidator(_port_or_name)]


def _node_port(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(f"must be an integer, not {describe_value(value)}")
    if not 30000 <= value <= 32767:
        raise invalid(f"{value if abs(value) < 10**20 else 'the value'} is not in the node port range 30000-32767")
    return value


NodePortNumber = Annotated[int, PlainValidator(_node_port)]


def _cluster_ip(value: str) -> str:
    if value in ("", "None"):
        return value
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise invalid(f"{value[:60]!r} must be an IPv4 address, or 'None' for a headless service") from None
    return value


ClusterIP = Annotated[StrictStr, AfterValidator(_cluster_ip)]


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise invalid(f"{value[:60]!r} must be an IP address") from None
    return value


IPAddress = Annotated[StrictStr, AfterValidator(_ip)]


def _base64(value: str) -> str:
    # Go's base64 decoder (which Kubernetes uses) skips line breaks but nothing else.
    compact = value.replace("\n", "").replace("\r", "")
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("must be base64-encoded (use stringData for plain text)") from None
    return compact


Base64 = Annotated[StrictStr, AfterValidator(_base64)]


def _tcp_only(value: Any) -> str:
    if value == "TCP":
        return value
    if value in ("UDP", "SCTP"):
        raise invalid(f"protocol {value} is not supported by the service proxy; only TCP is")
    raise invalid("must be TCP")


TCPProtocol = Annotated[str, PlainValidator(_tcp_only)]
