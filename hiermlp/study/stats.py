"""Seed statistics of a study: t intervals of a mean, paired differences, verdicts, ranks.

A comparison trains every entry once per seed. For each entry the seeds' accuracies give a mean, a
sample standard deviation and a Student-t confidence interval of the mean. Two entries trained on the
same seeds (same data subset, data order and augmentation draws) are compared by the *paired*
differences ``a_s - b_s``: the seed-to-seed variation they share cancels, so the interval of the mean
difference is what says whether one is better than the other. An interval that excludes zero is a
difference the data support; one that contains zero is inconclusive.

Each interval is a 95% interval on its own: among many pairs, about one in twenty "supported" verdicts
can be chance when the entries are in truth equal. The claims a preset lists are the planned tests; the
full table of pairs is exploratory.

The t quantile is computed here (the regularized incomplete beta function by its continued fraction,
inverted by bisection) so the library needs no SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "Interval",
    "claim_verdict",
    "mean_interval",
    "paired_difference",
    "student_t_cdf",
    "supported_ranks",
    "t_quantile",
    "verdict",
]


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values with its sample standard deviation and ``level`` confidence interval.

    With one value ``std``, ``lo`` and ``hi`` are NaN: one seed gives no interval.
    """

    mean: float
    std: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN for n < 2)."""
        return (self.hi - self.lo) / 2

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fmt(self, digits: int = 2, *, sign: bool = False) -> str:
        """``mean [lo, hi]``; with ``sign`` a leading ``+`` on positive numbers (for differences)."""
        f = f"{{:{'+' if sign else ''}.{digits}f}}"
        if not math.isfinite(self.lo):
            return f.format(self.mean)
        return f"{f.format(self.mean)} [{f.format(self.lo)}, {f.format(self.hi)}]"

    def fmt_std(self, digits: int = 2) -> str:
        """``mean ± std`` (``mean`` alone for one value)."""
        if not math.isfinite(self.std):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), converges for x < (a+1)/(a+b+2)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b  # the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``t_quantile(0.975, 2)`` = 4.303)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):  # bisection: the cdf is monotone, 200 halvings reach float precision
        mid = (lo + hi) / 2
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def mean_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean, sample std (n - 1) and the two-sided Student-t interval ``mean ± t·std/√n``.

    Raises:
        ValueError: no values, or ``level`` outside (0, 1).
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = math.fsum(xs) / n
    if n == 1:
        return Interval(mean, math.nan, math.nan, math.nan, 1, level)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n, level)


def paired_difference(a: Mapping[Any, float], b: Mapping[Any, float], level: float = 0.95) -> Interval:
    """Interval of the mean of ``a[s] - b[s]`` over the seeds ``s`` both have (paired t interval).

    Raises:
        ValueError: the two share no seed.
    """
    common = [s for s in a if s in b]
    if not common:
        raise ValueError("paired_difference: the two entries share no seed")
    return mean_interval([a[s] - b[s] for s in common], level)


def verdict(diff: Interval) -> str:
    """``"supported"`` when the interval of a difference excludes zero, else ``"inconclusive"``.

    One seed gives no interval, so its difference is inconclusive however large.
    """
    if math.isfinite(diff.lo) and (diff.lo > 0 or diff.hi < 0):
        return "supported"
    return "inconclusive"


def claim_verdict(diff: Interval) -> str:
    """A claim says ``a`` beats ``b``: ``supported`` (interval above 0), ``reversed`` (below) or ``inconclusive``."""
    if verdict(diff) != "supported":
        return "inconclusive"
    return "supported" if diff.mean > 0 else "reversed"


def supported_ranks(labels: Sequence[str], diffs: Mapping[tuple[str, str], Interval]) -> dict[str, int]:
    """Rank = 1 + how many entries are better than this one by a supported difference.

    ``diffs[(a, b)]`` is the interval of ``a - b`` (either order may be given). Entries that no supported
    difference separates share a rank, so the ranking claims no more than the intervals support.
    """

    def better(x: str, y: str) -> bool:  # x is better than y, supported
        if (x, y) in diffs:
            d = diffs[(x, y)]
            return verdict(d) == "supported" and d.mean > 0
        if (y, x) in diffs:
            d = diffs[(y, x)]
            return verdict(d) == "supported" and d.mean < 0
        return False

    return {y: 1 + sum(better(x, y) for x in labels if x != y) for y in labels}
