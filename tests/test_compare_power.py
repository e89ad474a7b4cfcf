"""Power of a comparison: the minimal detectable difference of the paired design and the seeds a difference of
the paper's size needs, against hand-computed cases, and how reports state them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hiermlp.study.report import claim_sentence, load_result
from hiermlp.study.stats import Interval, minimal_detectable_difference, paper_value, seeds_to_resolve

ROOT = Path(__file__).resolve().parents[1]


def test_minimal_detectable_difference_by_hand():
    # MDD = (t_{0.975, n-1} + t_{0.8, n-1}) * s_d / sqrt(n). For 2 degrees of freedom Student's t has the
    # closed-form quantile t_p = (2p - 1) / sqrt(2 p (1 - p)): t_0.975 = 0.95 / sqrt(0.04875) = 4.302653,
    # t_0.8 = 0.6 / sqrt(0.32) = 1.060660; with s_d = 1.5 over 3 seeds, MDD = 5.363313 * 1.5 / sqrt(3) = 4.644765
    t975, t80 = 0.95 / math.sqrt(0.04875), 0.6 / math.sqrt(0.32)
    assert minimal_detectable_difference(1.5, 3) == pytest.approx((t975 + t80) * 1.5 / math.sqrt(3), abs=1e-6)
    assert minimal_detectable_difference(1.5, 3) == pytest.approx(4.644765, abs=1e-6)
    # 1 degree of freedom is the Cauchy distribution: t_p = tan(pi (p - 1/2))
    cauchy = math.tan(math.pi * 0.475) + math.tan(math.pi * 0.3)
    assert minimal_detectable_difference(2.0, 2) == pytest.approx(cauchy * 2.0 / math.sqrt(2), abs=1e-6)
    # 4 seeds (3 degrees of freedom), printed tables: t_0.975 = 3.182446, t_0.8 = 0.978472
    assert minimal_detectable_difference(1.0, 4) == pytest.approx((3.182446 + 0.978472) / 2, abs=1e-5)
    assert math.isnan(minimal_detectable_difference(1.0, 1)) and math.isnan(minimal_detectable_difference(math.nan, 5))
    # more confidence or more power costs a larger detectable difference
    assert minimal_detectable_difference(1.0, 5, power=0.9) > minimal_detectable_difference(1.0, 5)
    assert minimal_detectable_difference(1.0, 5, level=0.99) > minimal_detectable_difference(1.0, 5)


def test_seeds_to_resolve_a_difference():
    # s_d = 1: MDD is 9.96 for 2 seeds, 3.10 for 3 and 2.08 for 4, so a difference of 2.8 needs 4 seeds
    assert seeds_to_resolve(2.8, 1.0) == 4
    assert seeds_to_resolve(-2.8, 1.0) == 4  # the size matters, not the sign
    n = seeds_to_resolve(0.5, 1.0)  # a small difference needs many: the first n whose MDD <= 0.5
    assert minimal_detectable_difference(1.0, n) <= 0.5 < minimal_detectable_difference(1.0, n - 1)
    assert seeds_to_resolve(0.0, 1.0) is None and seeds_to_resolve(2.8, math.nan) is None
    assert seeds_to_resolve(1e-9, 1.0, max_seeds=1000) is None
    assert paper_value("+2.8 (Swin-T, ADE20K mIoU)") == 2.8 and paper_value("-") is None


def test_claim_sentences_size_an_inconclusive_result():
    d = Interval(mean=0.53, std=0.59, lo=-0.93, hi=1.99, n=3)
    c = {"paper": "+2.8 (Swin-T)", "diff": d, "verdict": "inconclusive"}
    c |= {"mdd": minimal_detectable_difference(d.std, d.n), "seeds_for_paper": seeds_to_resolve(2.8, d.std)}
    text = claim_sentence(c)
    assert f"inconclusive: smaller than ±{c['mdd']:.2f} pp at this budget (3 seeds" in text
    assert f"needs {c['seeds_for_paper']} seeds" in text and c["seeds_for_paper"] == 3


def test_every_compare_report_states_power_per_claim():
    # the committed classification report, read back: its claims gain power from the runs alone
    result = load_result(ROOT / "benchmarks" / "results" / "compare_default" / "compare.json")
    assert result.metric == "top-1"
    table = result.claims_table()
    assert "detectable Δ (95%, 80% power)" in table and "seeds for the paper's Δ" in table
    for c in result.claims:
        assert c["mdd"] == pytest.approx(minimal_detectable_difference(c["diff"].std, c["diff"].n))
        paper = paper_value(c["paper"])
        assert c["seeds_for_paper"] == (seeds_to_resolve(paper, c["diff"].std) if paper is not None else None)
        assert f"±{c['mdd']:.2f} (3 seeds)" in table
    assert any("inconclusive: smaller than" in line for line in result.findings())
