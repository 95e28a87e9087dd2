"""Honest wording: how strongly a segment is over- or under-represented, and whether the structure is weak.

The words follow the effect size and its interval, not the test alone: a ratio whose 95% interval covers 1
is "in proportion"; a ratio within ``SLIGHT_BAND`` (0.67-1.5) is "slightly" over- or under-represented;
beyond it, "strongly". So a ratio of 0.83 and one of 0.18 are no longer described in the same words.
The headline warns when the segments are weakly separated (mean silhouette below ``WEAK_SILHOUETTE``) or
when any segment would not come back in a repeat of the analysis (stability below ``UNSTABLE``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SLIGHT_BAND = (0.67, 1.5)
WEAK_SILHOUETTE = 0.1
STABLE = 0.85
UNSTABLE = 0.6


def representation_grade(ratio: float, ci_low: float, ci_high: float) -> str:
    """'in proportion', 'slightly over', 'slightly under', 'strongly over' or 'strongly under'.

    In proportion when the interval covers 1 (or the ratio is not finite: too little data to say)."""
    if not (math.isfinite(ratio) and ratio > 0) or (ci_low <= 1.0 <= ci_high):
        return "in proportion"
    direction = "over" if ratio > 1 else "under"
    strength = "slightly" if SLIGHT_BAND[0] <= ratio <= SLIGHT_BAND[1] else "strongly"
    return f"{strength} {direction}"


def representation_phrase(ratio: float, ci_low: float, ci_high: float) -> str:
    """The grade as words for a sentence: 'strongly over-represented among customers', ..."""
    grade = representation_grade(ratio, ci_low, ci_high)
    if grade == "in proportion":
        return "in proportion to the population"
    return f"{grade}-represented among customers"


def stability_label(jaccard: float) -> str:
    """Hennig's reading of a cluster's mean bootstrap Jaccard: stable (>= 0.85), fuzzy, unstable (< 0.6)."""
    if not math.isfinite(jaccard):
        return "not measured"
    if jaccard >= STABLE:
        return "stable"
    return "fuzzy" if jaccard >= UNSTABLE else "unstable"


def structure_warning(silhouette: float | None, stabilities: Iterable[float] = ()) -> str | None:
    """A headline warning when the segments are weakly separated or some would not come back; else None."""
    reasons = []
    if silhouette is not None and math.isfinite(silhouette) and silhouette < WEAK_SILHOUETTE:
        reasons.append(f"the segments overlap (mean silhouette {silhouette:.2f}, below {WEAK_SILHOUETTE:g})")
    unstable = [s for s in stabilities if math.isfinite(s) and s < UNSTABLE]
    if unstable:
        reasons.append(
            f"{len(unstable)} segment{'s' if len(unstable) > 1 else ''} would not reliably come back if the "
            f"analysis were repeated (bootstrap stability below {UNSTABLE:g})"
        )
    if not reasons:
        return None
    return (
        "Weak structure: " + " and ".join(reasons) + ". Read the segments as tendencies in a continuum, "
        "not as distinct groups, and prefer the response evidence where there is some."
    )
