"""Table tests of the rollout maths against the scenarios of Kubernetes' own tests."""
import pytest

from reconciler.controllers.deployment import maths as rollout
from reconciler.controllers.deployment.maths import RSView


@pytest.mark.parametrize(
    "surge, unavailable, desired, expected",
    [
        ("25%", "25%", 10, (3, 2)),  # S2/S6: surge rounds up, unavailable rounds down
        ("25%", "25%", 1, (1, 0)),
        ("25%", "25%", 8, (2, 2)),
        ("39%", "39%", 10, (4, 3)),
        (0, 0, 10, (0, 1)),  # both zero: unavailable becomes 1
        ("0%", "0%", 10, (0, 1)),
        (1, 0, 10, (1, 0)),
        (3, 2, 10, (3, 2)),
        ("50%", "10%", 3, (2, 0)),
        ("100%", "100%", 4, (4, 4)),
    ],
)
def test_fenceposts(surge, unavailable, desired, expected):
    assert rollout.resolve_fenceposts(max_surge=surge, max_unavailable=unavailable, desired=desired) == expected


@pytest.mark.parametrize("value", ["abc", "1.5%", "x%", True])
def test_bad_int_or_percent(value):
    with pytest.raises(rollout.IntOrPercentError):
        rollout.scaled_value(value, total=10, round_up=True)


def test_max_unavailable_is_capped_by_desired_and_zero_for_recreate():
    assert rollout.max_unavailable(max_surge=0, max_unavailable=5, desired=3) == 3
    assert rollout.max_unavailable(max_surge=1, max_unavailable=1, desired=0) == 0
    assert rollout.max_unavailable(max_surge=1, max_unavailable=1, desired=3, rolling=False) == 0


@pytest.mark.parametrize(
    "desired, surge, current, new, expected",
    [
        (10, 1, 10, 0, 1),  # S1 first step
        (10, 1, 11, 1, 1),  # at the ceiling: wait
        (10, 1, 10, 1, 2),  # after one old pod went
        (10, 3, 10, 0, 3),  # S2 first step
        (3, 0, 3, 0, 0),  # S3: no surge, nothing until an old pod goes
        (3, 0, 2, 0, 1),
        (10, 3, 8, 9, 10),  # never past desired
    ],
)
def test_new_rs_new_replicas(desired, surge, current, new, expected):
    assert rollout.new_rs_new_replicas(desired=desired, surge=surge, current_pods=current, new_replicas=new) == expected


@pytest.mark.parametrize(
    "all_replicas, min_available, new_replicas, new_available, expected",
    [
        (11, 10, 1, 0, 0),  # S1: the new pod is not available yet
        (11, 10, 1, 1, 1),  # S1: it is, one old may go
        (13, 8, 3, 0, 2),  # S2: (10,3): two old may go before any new is available
        (13, 8, 5, 0, 0),  # S4: (8,5), none available: stuck
    ],
)
def test_max_scaled_down(all_replicas, min_available, new_replicas, new_available, expected):
    assert rollout.max_scaled_down(all_replicas=all_replicas, min_available=min_available,
                                   new_replicas=new_replicas, new_available=new_available) == expected


def test_cleanup_unhealthy_takes_unavailable_pods_of_oldest_first():
    old = [RSView(name="b", replicas=3, available=1, created=2), RSView(name="a", replicas=2, available=0, created=1)]
    assert rollout.cleanup_unhealthy(old, max_cleanup=3) == {"a": 0, "b": 2}
    assert rollout.cleanup_unhealthy(old, max_cleanup=1) == {"a": 1}
    assert rollout.cleanup_unhealthy([RSView(name="h", replicas=3, available=3)], max_cleanup=5) == {}


def test_scale_down_old_only_what_is_available_above_minimum():
    old = [RSView(name="new-ish", replicas=4, available=4, created=2), RSView(name="oldest", replicas=3, available=3, created=1)]
    assert rollout.scale_down_old(old, total_available=10, min_available=8) == {"oldest": 1}
    assert rollout.scale_down_old(old, total_available=12, min_available=8) == {"oldest": 0, "new-ish": 3}
    assert rollout.scale_down_old(old, total_available=8, min_available=8) == {}


@pytest.mark.parametrize(
    "desired, expected",
    [
        (15, {"old": 11, "new": 7}),  # S7: 10 -> 15 mid-rollout, max 13
        (5, {"old": 5, "new": 3}),  # S7: 10 -> 5
        (0, {"old": 0, "new": 0}),
    ],
)
def test_proportional_scaling(desired, expected):
    rss = [RSView(name="old", replicas=8, created=1, max_replicas=13), RSView(name="new", replicas=5, created=2, max_replicas=13)]
    surge = 3 if desired else 0
    assert rollout.proportional_sizes(rss, desired=desired, surge=surge, deployment_status_replicas=13) == expected


def test_round_half_up_unlike_python_round():
    assert round(2.5) == 2  # the trap
    assert rollout.round_half_up(2.5) == 3
    assert rollout.round_half_up(0.5) == 1
    assert rollout.round_half_up(3.49) == 3


def test_proportional_scaling_rounds_half_up():
    # 1 * 5 / 2 = 2.5: Go rounds to 3, Python's round() would give 2.
    rss = [RSView(name="a", replicas=1, created=1, max_replicas=2), RSView(name="b", replicas=1, created=2, max_replicas=2)]
    sizes = rollout.proportional_sizes(rss, desired=4, surge=1, deployment_status_replicas=2)
    assert sizes["b"] == 3  # bigger-or-newer first takes the rounded-up share
    assert sum(sizes.values()) == 5
