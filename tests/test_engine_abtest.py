"""Experiment arithmetic, pinned against values worked out by hand."""

import pytest

from recommendations.engine.abtest import arm_share, compare_rates, wilson_interval


def test_wilson_interval_of_10_in_100():
    # p = 0.1, n = 100, z = 1.96:
    # centre = (0.1 + z²/200) / (1 + z²/100) = 0.119208 / 1.038415 = 0.114799
    # half width = z·sqrt(0.0009 + z²/40000) / 1.038415 = 0.061857 / 1.038415
    low, high = wilson_interval(10, 100)

    assert low == pytest.approx(0.05523, abs=1e-4)
    assert high == pytest.approx(0.17437, abs=1e-4)


def test_wilson_interval_without_trials_is_empty():
    assert wilson_interval(0, 0) == (0.0, 0.0)


def test_two_rates_far_apart_differ_significantly():
    # pooled = 130 / 2000 = 0.065; se = sqrt(0.065 · 0.935 · 2/1000) = 0.011025
    # z = (0.08 - 0.05) / 0.011025 = 2.7211; p = erfc(z / √2) = 0.0065
    comparison = compare_rates(50, 1000, 80, 1000)

    assert comparison.difference == pytest.approx(0.03)
    assert comparison.z == pytest.approx(2.7211, abs=1e-3)
    assert comparison.p_value == pytest.approx(0.0065, abs=2e-4)
    assert comparison.significant


def test_two_close_rates_do_not():
    comparison = compare_rates(50, 1000, 55, 1000)

    assert not comparison.significant
    assert compare_rates(0, 0, 5, 10).p_value == 1.0


def test_a_user_always_lands_in_the_same_arm():
    assert arm_share("exp", "196") == arm_share("exp", "196")
    assert 0 <= arm_share("exp", "196") < 1


def test_arms_split_users_at_the_requested_share():
    shares = [arm_share("split-test", str(user)) for user in range(20_000)]

    in_treatment = sum(share < 0.3 for share in shares) / len(shares)

    assert in_treatment == pytest.approx(0.3, abs=0.015)


def test_experiments_draw_independently():
    first = [arm_share("one", str(u)) < 0.5 for u in range(5_000)]
    second = [arm_share("two", str(u)) < 0.5 for u in range(5_000)]

    agree = sum(a == b for a, b in zip(first, second, strict=True)) / 5_000

    assert agree == pytest.approx(0.5, abs=0.03)
