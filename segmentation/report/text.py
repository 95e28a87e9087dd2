"""The report's sentences, written from the numbers: headline, recommendations, segment descriptions.

Their strength follows ``segmentation.wording``: a ratio is "strongly" or "slightly" over- or
under-represented only where the test flags it and its interval excludes 1."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..wording import (
    representation_grade,
)
from .formats import (
    INSUFFICIENT,
    _join,
    _ordered,
    _segment_word,
    format_count,
    format_ratio,
    format_sd,
    format_share,
    segment_order,
)

logger = logging.getLogger(__name__)


# Segment descriptions name at most this many attributes, each at least MIN_DIFFERENCE sd from the mean.
DESCRIBED_ATTRIBUTES = 5


MIN_DIFFERENCE = 0.2


REPRESENTATION_WORDS = {
    "over": "over-represented",
    "under": "under-represented",
    "similar": "no clear difference",
}


def describe_segment(
    profile_rows: pd.DataFrame, top_attributes: int = 5, min_difference: float = MIN_DIFFERENCE
) -> str:
    """One sentence saying how a segment differs from the population, from its rows of profiles.csv.

    Takes the ``top_attributes`` most distinguishing attributes (by ``rank``), keeps those at least
    ``min_difference`` standard deviations from the population mean, and names them by label with the
    direction and size: 'much' from 1 sd, 'slightly' below 0.5 sd.

    >>> describe_segment(profiles[profiles["segment"] == "3"])  # doctest: +SKIP
    "Compared with the population, segment 3 scores much higher on 'Financial type score: saver'
    (FINANZ_SPARER, +1.2 sd); and lower on 'Affinity score: event-oriented' (SEMIO_ERL, -0.8 sd)."
    """
    segments = profile_rows["segment"].astype(str).unique()
    if len(segments) != 1:
        raise ValueError(f"profile_rows must hold exactly one segment, got {len(segments)}: {list(segments)}")
    who = _segment_word(segments[0])
    top = profile_rows.sort_values("rank").head(top_attributes)
    top = top[top["standardized_difference"].abs() >= min_difference]
    if top.empty:
        return (
            f"Compared with the population, {who} shows no marked difference: none of its "
            f"{top_attributes} most distinguishing attributes is {min_difference:.1f} sd or more from "
            "the population mean."
        )

    def phrase(row) -> str:
        label = row["label"] or row["attribute"]
        name = "" if label == row["attribute"] else f"{row['attribute']}, "
        return f"'{label}' ({name}{format_sd(row['standardized_difference'])})"

    clauses = []
    for direction, sign in (("higher", 1), ("lower", -1)):
        side = top[np.sign(top["standardized_difference"]) == sign]
        side = side.reindex(side["standardized_difference"].abs().sort_values(ascending=False).index)
        size = side["standardized_difference"].abs()
        adverb = np.where(size >= 1.0, "much ", np.where(size >= 0.5, "", "slightly "))
        for word in dict.fromkeys(adverb):
            items = [phrase(row) for (_, row), a in zip(side.iterrows(), adverb, strict=True) if a == word]
            clauses.append(f"{word}{direction} on {_join(items)}")
    joined = clauses[0] if len(clauses) == 1 else "; ".join(clauses[:-1]) + "; and " + clauses[-1]
    return f"Compared with the population, {who} scores {joined}."


def _grade(row: pd.Series) -> str:
    """The wording grade of a proportions.csv row: 'in proportion' unless the test flags it
    (``representation``), else 'slightly'/'strongly' over/under by the ratio (``wording``)."""
    if row["representation"] not in ("over", "under"):
        return "in proportion"
    grade = representation_grade(row["ratio"], row["ratio_ci_low"], row["ratio_ci_high"])
    return grade if grade.endswith(row["representation"]) else "in proportion"


def headline(proportions: pd.DataFrame, run: dict, warning: str | None = None) -> list[str]:
    """The few sentences a reader needs: how far to trust the segments (``warning``, from
    ``wording.structure_warning``), who is over- and under-represented and how strongly, on what data."""
    table = _ordered(proportions)
    segments = table.drop(index=INSUFFICIENT, errors="ignore")
    lines = [warning] if warning else []
    for representation, name, lead in (
        ("over", "lift", "Over-represented among customers"),
        ("under", "ratio", "Under-represented among customers"),
    ):
        chosen = segments[segments["representation"] == representation].sort_values(
            "ratio", ascending=representation == "under"
        )
        items = [
            f"segment {s} ({_grade(r).split()[0]}: {name} {format_ratio(r.ratio)}; "
            f"{format_share(r.customers_share)} of customers vs {format_share(r.population_share)} of the "
            "population)"
            for s, r in chosen.iterrows()
        ]
        lines.append(f"{lead}: {_join(items)}." if items else f"{lead}: none at the 5% level.")
    if INSUFFICIENT in table.index and table.loc[INSUFFICIENT, "representation"] != "similar":
        row = table.loc[INSUFFICIENT]
        more = "more" if row["representation"] == "over" else "less"
        lines.append(
            f"Customer records are {more} often incomplete than population records: {INSUFFICIENT} holds "
            f"{format_share(row['customers_share'])} of customers vs {format_share(row['population_share'])} "
            f"of the population (ratio {format_ratio(row['ratio'])})."
        )
    rows = run.get("rows", {})
    if "population" in rows and "customers" in rows:
        pca = run.get("pca", {})
        method = ""
        if "n_components" in pca and "explained_variance" in pca:
            method = (
                f" (k-means on {pca['n_components']} principal components keeping "
                f"{format_share(pca['explained_variance'])} of the variance)"
            )
        lines.append(
            f"{len(segments)} segments{method}, from {format_count(rows['population']['read'])} "
            f"population and {format_count(rows['customers']['read'])} customer rows, of which "
            f"{format_count(rows['population']['set_aside'])} and "
            f"{format_count(rows['customers']['set_aside'])} were set aside as {INSUFFICIENT}."
        )
    return lines


def _shares_and_ratio(row: pd.Series) -> dict[str, str]:
    """One proportions.csv row's numbers, formatted for sentences."""
    return {
        "customers": format_share(row["customers_share"]),
        "population": format_share(row["population_share"]),
        "ratio": format_ratio(row["ratio"]),
        "ci": f"95% CI {format_ratio(row['ratio_ci_low'])} to {format_ratio(row['ratio_ci_high'])}",
    }


def recommendations(proportions: pd.DataFrame, row_missing: float) -> list[str]:
    """Paragraphs written from the numbers: whom to target, who is under-served, what insufficient_data is."""
    table = _ordered(proportions)
    segments = table.drop(index=INSUFFICIENT, errors="ignore")
    grades = segments.apply(_grade, axis=1) if len(segments) else pd.Series(dtype=str)
    paragraphs = []
    over = segments[grades.str.endswith("over")].sort_values("ratio", ascending=False)
    for segment, row in over.iterrows():
        n = _shares_and_ratio(row)
        if grades[segment] == "strongly over":
            paragraphs.append(
                f"Target segment {segment}: it holds {n['customers']} of customers but {n['population']} of "
                f"the population, a lift of {n['ratio']} ({n['ci']}). For its size it holds {n['ratio']} "
                "times as many customers as the population would suggest; rank mail-out candidates from it "
                "first."
            )
        else:
            paragraphs.append(
                f"Segment {segment} is slightly over-represented: {n['customers']} of customers against "
                f"{n['population']} of the population, a lift of {n['ratio']} ({n['ci']}). A real but modest "
                "lead: a second choice after the strongly over-represented segments."
            )
    if over.empty:
        paragraphs.append(
            "No segment is over-represented among customers at the 5% level (two-sided, "
            "Bonferroni-corrected): the segmentation singles out no target group."
        )
    under = segments[grades.str.endswith("under")].sort_values("ratio")
    for segment, row in under.iterrows():
        n = _shares_and_ratio(row)
        if grades[segment] == "strongly under":
            paragraphs.append(
                f"Segment {segment} is under-served: {n['customers']} of customers against {n['population']} "
                f"of the population (ratio {n['ratio']}, {n['ci']}). People like these are rarely customers "
                "today: a low priority for a mail-out, or a group that needs a different offer."
            )
        else:
            paragraphs.append(
                f"Segment {segment} is slightly under-represented: {n['customers']} of customers against "
                f"{n['population']} of the population (ratio {n['ratio']}, {n['ci']}). Somewhat fewer "
                "customers than its size suggests: not a priority, but no gap either."
            )
    similar = segments[grades == "in proportion"]
    # a segment empty (or nearly) in one table has no finite interval: too small to judge, not "similar"
    small = similar[~(np.isfinite(similar["ratio_ci_high"]) & (similar["ratio_ci_low"] > 0))]
    similar = similar.drop(index=small.index)
    if not similar.empty:
        names = _join([str(s) for s in similar.index])
        low, high = format_ratio(similar["ratio"].min()), format_ratio(similar["ratio"].max())
        paragraphs.append(
            f"{'Segments' if len(similar) > 1 else 'Segment'} {names} "
            f"{'hold' if len(similar) > 1 else 'holds'} customers in proportion to the "
            f"population (ratios {low} to {high}): neither a priority nor a gap."
        )
    for segment, row in small.iterrows():
        paragraphs.append(
            f"Segment {segment} is too small to judge: {format_count(row['population_count'])} population "
            f"and {format_count(row['customers_count'])} customer rows."
        )
    if INSUFFICIENT in table.index:
        row = table.loc[INSUFFICIENT]
        n = _shares_and_ratio(row)
        words = REPRESENTATION_WORDS.get(row["representation"], "not tested")
        text = (
            f"{INSUFFICIENT}: rows with more than {format_share(row_missing)} of their attributes missing "
            f"are set aside rather than forced into a segment. They are {n['population']} of the population "
            f"and {n['customers']} of customers (ratio {n['ratio']}, {words}). They stay in every count, so "
            "the shares add up to 100%, but they have no profile and are left out of the ranked target list."
        )
        if row["representation"] == "over":
            text += (
                " Customer records are incomplete more often than population records: that says more about "
                "how the data were collected than about who the customers are, so it is no reason to target "
                "people with incomplete records."
            )
        elif row["representation"] == "under":
            text += " Customer records are more complete than population records."
        paragraphs.append(text)
    return paragraphs


def distinguishing_attributes(
    profiles: pd.DataFrame, top_attributes: int = 8, max_rows: int = 40
) -> tuple[list[str], int]:
    """Attributes for the profile heatmap: the union of each segment's top ``m`` by rank, grouped by the
    segment they first distinguish; ``m`` is ``top_attributes``, lowered until the union fits ``max_rows``.
    Returns (attributes in order, m)."""
    profiles = profiles[profiles["segment"] != INSUFFICIENT]
    order = {s: i for i, s in enumerate(segment_order(profiles["segment"]))}
    for top in range(top_attributes, 0, -1):
        chosen = profiles[profiles["rank"] <= top]
        if chosen["attribute"].nunique() <= max_rows or top == 1:
            break
    chosen = chosen.assign(_segment=chosen["segment"].map(order)).sort_values(["_segment", "rank"])
    return list(dict.fromkeys(chosen["attribute"])), top


def fixed_k_note(k: int) -> str:
    """What the report says instead of the choice-of-k figure when the run folder has no elbow."""
    return (
        f"k was fixed at {k} in the job configuration: no other number of segments was fitted, so there is "
        "no elbow (sum of squares and silhouette per k) to show. To compare values of k, run the "
        "segmentation elbow command on the same job."
    )
