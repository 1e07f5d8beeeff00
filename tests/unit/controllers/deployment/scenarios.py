"""The steps the rollout scenarios share (Kubernetes' own scenarios, in the research notes)."""
from __future__ import annotations

from tests.harness.sim import Sim, deployment


def start(sim: Sim, **kw) -> None:
    """Apply a Deployment and wait until all its replicas are available."""
    sim.apply(deployment(**kw))
    sim.settle()
    assert sim.available() == kw.get("replicas", 10)


def watch_bounds(sim: Sim, *, max_live: int, min_available: int, min_ready: int = 0) -> dict:
    """Check the fenceposts on every store write; returns the extremes seen."""
    seen = {"max_live": 0, "min_available": 10**9}

    def check() -> None:
        seen["max_live"] = max(seen["max_live"], sim.live())
        seen["min_available"] = min(seen["min_available"], sim.available(min_ready=min_ready))
        assert sim.live() <= max_live, f"{sim.live()} live pods > {max_live}"
        assert sim.available(min_ready=min_ready) >= min_available, "availability fell below the minimum"

    sim.checks.append(check)
    return seen


def crashloop(sim: Sim, **kw) -> None:
    """S4's start: 10 replicas at v1, then a rollout to an image whose containers crash."""
    start(sim, replicas=10, surge=3, unavailable=2, **kw)
    sim.driver.crashing.add("hello:bad")
    sim.apply(deployment(replicas=10, image="hello:bad", surge=3, unavailable=2, commit="c2", **kw))
    sim.settle()


def auto(d: dict) -> dict:
    """The Deployment, annotated for automatic rollback."""
    d["metadata"]["annotations"]["reconciler.io/auto-rollback"] = "true"
    return d
