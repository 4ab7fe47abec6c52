"""The statistics of a report: rates, Wilson intervals, and the uplift of a journey over its
holdout with a confidence interval, read as "too few to tell" below a floor."""

from __future__ import annotations

import math

#: below this many customers in the treated group or in the holdout, uplift is "too few to tell"
MIN_GROUP = 30


def rate(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def wilson(x: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of the proportion x/n (n > 0)."""
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def uplift_ci(
    conv_a: int, n_a: int, conv_b: int, n_b: int, z: float = 1.96
) -> tuple[float, tuple[float, float]] | None:
    """Difference of two conversion rates (treated a minus holdout b) with the 95% Newcombe hybrid
    score interval (Newcombe 1998, method 10). Unlike the plain normal interval it stays honest for
    small groups and for rates near 0 or 1, where the normal one collapses to a point."""
    if not n_a or not n_b:
        return None
    p_a, p_b = conv_a / n_a, conv_b / n_b
    l_a, u_a = wilson(conv_a, n_a, z)
    l_b, u_b = wilson(conv_b, n_b, z)
    diff = p_a - p_b
    low = diff - math.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
    high = diff + math.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
    return round(diff, 4), (round(low, 4), round(high, 4))


def uplift_verdict(n_a: int, n_b: int, ci: tuple[float, float]) -> str:
    """What a marketer may conclude from an uplift interval."""
    if min(n_a, n_b) < MIN_GROUP:
        return "too few to tell"
    if ci[0] > 0:
        return "better than holdout"
    if ci[1] < 0:
        return "worse than holdout"
    return "no clear difference"


def verdict(n_a: int, n_b: int, ci: tuple[float, float]) -> str:
    """What a difference a minus b means: 'better', 'worse', 'no clear difference', or 'too few to
    tell' when either group has fewer than MIN_GROUP customers."""
    if min(n_a, n_b) < MIN_GROUP:
        return "too few to tell"
    if ci[0] > 0:
        return "better"
    if ci[1] < 0:
        return "worse"
    return "no clear difference"
