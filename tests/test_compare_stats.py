"""Interval and paired-difference maths of hiermlp compare, against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from hiermlp.study.stats import (
    Interval,
    mean_interval,
    paired_difference,
    student_t_cdf,
    supported_ranks,
    t_quantile,
    verdict,
)


@pytest.mark.parametrize(
    ("df", "t975"),
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)],  # printed t tables, 4 decimals
)
def test_t_quantile_matches_the_printed_table(df, t975):
    assert t_quantile(0.975, df) == pytest.approx(t975, abs=5e-5)
    assert t_quantile(0.025, df) == pytest.approx(-t975, abs=5e-5)
    assert student_t_cdf(t975, df) == pytest.approx(0.975, abs=2e-6)


def test_t_cdf_closed_forms():
    assert student_t_cdf(0.0, 3) == 0.5
    for t in (-2.0, 0.5, 3.0):  # df = 1 is the Cauchy distribution: 1/2 + atan(t)/pi
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        # df = 2: 1/2 + t / (2 sqrt(2 + t^2))
        assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_mean_interval_by_hand():
    # 70, 72, 74: mean 72, sample std 2, half width t(0.975, 2) * 2 / sqrt(3) = 4.302653 * 1.154701 = 4.968275
    iv = mean_interval([70.0, 72.0, 74.0])
    assert (iv.mean, iv.std, iv.n) == (72.0, 2.0, 3)
    assert iv.lo == pytest.approx(72.0 - 4.968275, abs=1e-5) and iv.hi == pytest.approx(72.0 + 4.968275, abs=1e-5)
    one = mean_interval([80.0])  # one seed: a mean, no interval
    assert one.mean == 80.0 and math.isnan(one.std) and math.isnan(one.lo)
    assert verdict(Interval(5.0, math.nan, math.nan, math.nan, 1)) == "inconclusive"
    with pytest.raises(ValueError):
        mean_interval([])


def test_paired_difference_by_hand():
    a = {0: 80.0, 1: 82.0, 2: 81.0}
    b = {0: 78.0, 1: 81.0, 2: 78.0, 7: 99.0}  # seed 7 has no partner: left out
    d = paired_difference(a, b)  # differences 2, 1, 3: mean 2, std 1, half width 4.302653 / sqrt(3) = 2.484138
    assert (d.mean, d.std, d.n) == (2.0, 1.0, 3)
    assert d.lo == pytest.approx(-0.484138, abs=1e-5) and d.hi == pytest.approx(4.484138, abs=1e-5)
    assert verdict(d) == "inconclusive"
    # the same means, unpaired, would be far less certain; paired with a steady gap the data support it
    steady = paired_difference({0: 80.0, 1: 70.0, 2: 90.0}, {0: 78.0, 1: 67.5, 2: 87.0})  # 2, 2.5, 3
    assert steady.mean == pytest.approx(2.5) and steady.lo == pytest.approx(2.5 - 1.242069, abs=1e-5)
    assert verdict(steady) == "supported"
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_supported_ranks_claim_only_what_is_separated():
    sure = Interval(3.0, 0.1, 2.0, 4.0, 3)
    unsure = Interval(1.0, 2.0, -1.0, 3.0, 3)
    # a beats c (supported), b beats c (supported), a vs b inconclusive: a and b share rank 1, c is 3rd
    diffs = {("a", "b"): unsure, ("a", "c"): sure, ("c", "b"): Interval(-3.0, 0.1, -4.0, -2.0, 3)}
    assert supported_ranks(["a", "b", "c"], diffs) == {"a": 1, "b": 1, "c": 3}
