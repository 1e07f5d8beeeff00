"""What a container's probes are: the startup, liveness and readiness probes of a
container spec, with the API server's defaults applied (``parse_probes``).

Apart from the prober because it is the one place those defaults live (period 10 s,
timeout 1 s, failureThreshold 3, successThreshold 1 and only 1 for liveness and startup),
and both the scheduling loop (``prober.py``) and the checks (``probechecks.py``) read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STARTUP = "startup"
LIVENESS = "liveness"
READINESS = "readiness"
KINDS = (STARTUP, LIVENESS, READINESS)
TITLE = {STARTUP: "Startup", LIVENESS: "Liveness", READINESS: "Readiness"}


@dataclass(frozen=True, kw_only=True)
class ProbeSpec:
    """One probe of a container spec, with Kubernetes' defaults applied."""
    kind: str
    handler: dict[str, Any]  # {"httpGet": {...}} | {"tcpSocket": {...}} | {"exec": {...}} | {} (none)
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int


def parse_probes(spec: dict[str, Any]) -> dict[str, ProbeSpec]:
    """The probes of a Kubernetes container dict, with the API server's defaults."""
    configs = {}
    for kind in KINDS:
        raw = spec.get(f"{kind}Probe")
        if not isinstance(raw, dict):
            continue
        handler = {k: raw[k] for k in ("exec", "httpGet", "tcpSocket", "grpc") if raw.get(k) is not None}
        success = _number(raw.get("successThreshold"), default=1, minimum=1)
        configs[kind] = ProbeSpec(
            kind=kind,
            handler=handler,
            initial_delay=float(_number(raw.get("initialDelaySeconds"), default=0, minimum=0)),
            period=float(_number(raw.get("periodSeconds"), default=10, minimum=0.001)),
            timeout=float(_number(raw.get("timeoutSeconds"), default=1, minimum=0.001)),
            # Kubernetes rejects anything but 1 for liveness and startup; hold to that here too.
            success_threshold=int(success) if kind == READINESS else 1,
            failure_threshold=int(_number(raw.get("failureThreshold"), default=3, minimum=1)),
        )
    return configs


def _number(value: Any, *, default: float, minimum: float) -> float:
    """A probe field as a number; 0, absent or nonsense take the default, as the
    API server's defaulting does (validation reports nonsense elsewhere)."""
    if isinstance(value, bool):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if number == 0 and minimum > 0:
        return default
    return number if number >= minimum else default
