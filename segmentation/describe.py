"""Segment profiles in the original attributes: each centre mapped back through the inverse PCA and the
inverse scaling, compared with the population in standard deviations; and each segment's persona, a short
name and a profile in plain words built from its most distinguishing documented attributes, grouped by
theme (age and life stage, wealth and income, family, housing and neighbourhood, cars, purchase
behaviour, attitudes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .schema import Attribute, Schema


def segment_profiles(
    centres_scaled: np.ndarray,
    feature_names: list[str],
    population_mean: np.ndarray,
    population_std: np.ndarray,
    schema: Schema,
) -> pd.DataFrame:
    """One row per segment x feature, ranked within each segment by absolute standardized difference, with
    the segment's ``segment_name`` and ``persona`` (``with_personas``) on each of its rows.

    ``centres_scaled`` holds the centres in standardized feature space (the inverse PCA of the k-means
    centres), where a coordinate *is* the difference from the population mean in population standard
    deviations; the inverse scaling gives the value in the attribute's own units.
    """
    rows = []
    for segment, centre in enumerate(np.asarray(centres_scaled, dtype="float64")):
        order = np.argsort(-np.abs(centre), kind="stable")
        rank = np.empty(len(centre), dtype="int64")
        rank[order] = np.arange(1, len(centre) + 1)
        rows.append(
            pd.DataFrame(
                {
                    "segment": str(segment),
                    "attribute": feature_names,
                    "label": [schema.label(f) for f in feature_names],
                    "segment_mean": centre * population_std + population_mean,
                    "population_mean": population_mean,
                    "population_std": population_std,
                    "standardized_difference": centre,
                    "rank": rank,
                }
            )
        )
    profiles = pd.concat(rows, ignore_index=True)
    profiles = profiles.sort_values(["segment", "rank"], key=_segment_key, kind="stable")
    return with_personas(profiles.reset_index(drop=True), schema)


def _segment_key(column: pd.Series) -> pd.Series:
    return column.astype(int) if column.name == "segment" else column


# ---------------------------------------------------------------------------------------------- personas

THEMES = (
    "age and life stage",
    "wealth and income",
    "family",
    "housing and neighbourhood",
    "cars",
    "purchase behaviour",
    "attitudes",
)
# The packaged Arvato attributes carry no theme column: their theme follows from the name's prefix, and
# failing that from the information level (the DIAS levels are places: person, household, building, ...).
_ARVATO_PREFIXES = (
    (("ALTERSKATEGORIE", "ALTER_HH", "GEBURTSJAHR", "PRAEGENDE", "LP_LEBENSPHASE", "AGER_TYP",
      "KOMBIALTER", "CAMEO_INTL_2015_LIFE"), "age and life stage"),
    (("FINANZ", "HH_EINKOMMEN", "LP_STATUS", "KKK", "CAMEO_INTL_2015_WEALTH", "CAMEO_DEU", "ARBEIT",
      "RELAT_AB", "TITEL_KZ", "ANZ_TITEL"), "wealth and income"),
    (("LP_FAMILIE", "ANZ_PERSONEN", "ANZ_KINDER", "ALTER_KIND", "W_KEIT_KIND"), "family"),
    (("KBA05_ANTG", "KBA05_GBZ", "KBA05_BAUMAX"), "housing and neighbourhood"),
    (("KBA13", "KBA05"), "cars"),
    (("D19", "CJT", "KK_KUNDENTYP", "SHOPPER", "RETOURTYP", "ONLINE_AFFINITAET", "RT_"), "purchase behaviour"),
    (("SEMIO", "GFK", "HEALTH", "VERS_TYP", "ZABEOTYP", "GREEN_AVANTGARDE", "FINANZTYP"), "attitudes"),
)  # fmt: skip
_LEVEL_THEMES = {"person": "attitudes", "household": "family"}
MIN_PERSONA_DIFFERENCE = 0.2  # sd: smaller differences are not worth a sentence
# Car shares describe the neighbourhood (PLZ8 area, microcell), not the person's own car, and a hundred of
# them differ a little in every segment: they rank a theme at 0.6 of their size, so a persona leads with
# the people (age, wealth, family, purchases) unless the cars differ much more.
# Attributes of no theme (record keeping, unknown meaning) count for half.
THEME_WEIGHTS = {"cars": 0.6, "other": 0.5}


def attribute_theme(attribute: Attribute, feature: str | None = None) -> str:
    """The persona theme of an attribute (or of one of its features): the attributes file's ``theme``
    column when given, else from the Arvato name prefixes, else from the information level (places such
    as building, PLZ8 or postcode -> housing and neighbourhood); 'other' when nothing says."""
    if attribute.theme:
        return attribute.theme
    name = feature or attribute.name
    for prefixes, theme in _ARVATO_PREFIXES:
        if name.startswith(prefixes) and not (theme == "wealth and income" and name.startswith("FINANZTYP")):
            return theme
    level = attribute.information_level.strip().lower()
    if level in _LEVEL_THEMES:
        return _LEVEL_THEMES[level]
    return "housing and neighbourhood" if level else "other"


def is_documented(attribute: Attribute) -> bool:
    """Whether the attributes file documents the attribute: a label that does not call it undocumented."""
    label = attribute.label.strip().lower()
    return bool(label) and label != attribute.name.lower() and not label.startswith("undocumented")


@dataclass(frozen=True)
class _Feature:
    """What a feature of profiles.csv means: its attribute, its kind of value, and its code range."""

    attribute: Attribute
    share: bool  # a one-hot or binary feature: its mean is a share of people
    top: float | None  # the highest code of an ordinal scale ("4 of 4")


def _feature(schema: Schema, feature: str) -> _Feature | None:
    name, sep, _ = feature.partition("=")
    if sep and name in schema:
        return _Feature(schema[name], True, None)
    if feature in schema:
        attribute = schema[feature]
        if attribute.kind == "binary":
            return _Feature(attribute, True, None)
        # "4 of 5" on an ordinal scale; a count or a year has no "of"
        top = max(float(c) for c in attribute.codes) if attribute.kind == "ordinal" else None
        return _Feature(attribute, False, top)
    for attribute in schema:
        for derived in attribute.derive:
            if derived.name == feature:
                return _Feature(attribute, False, max(derived.mapping.values(), default=None))
    return None


def _value_phrase(row: pd.Series, meaning: _Feature) -> str:
    """'higher Age class (3.6 of 4 vs 2.8 in the population)' or 'more often X (45% vs 12% ...)'."""
    up = row["standardized_difference"] > 0
    label = f"'{row['label'] or row['attribute']}'"
    segment, population = float(row["segment_mean"]), float(row["population_mean"])
    if meaning.share:
        return (
            f"{'more' if up else 'less'} often {label} ({100 * segment:.0f}% vs {100 * population:.0f}% in "
            "the population)"
        )
    scale = f" of {meaning.top:g}" if meaning.top is not None else ""
    return (
        f"{'higher' if up else 'lower'} {label} ({segment:.1f}{scale} vs {population:.1f} in the population)"
    )


def _short_name(row: pd.Series) -> str:
    """'Saver ↑': the label's last part (after 'Financial type score: '), with the direction."""
    short = str(row["label"] or row["attribute"]).rsplit(": ", 1)[-1].split(" (")[0]
    return f"{short[:1].upper()}{short[1:]} {'↑' if row['standardized_difference'] > 0 else '↓'}"


def segment_persona(rows: pd.DataFrame, schema: Schema, themes: int = 3) -> tuple[str, str]:
    """(short name, 2-3 sentence profile) of one segment from its rows of the profiles table.

    Documented attributes at least ``MIN_PERSONA_DIFFERENCE`` sd from the population come first (an
    undocumented one only when fewer than two documented ones differ); the ``themes`` strongest themes
    (``THEME_WEIGHTS``), the first with its two strongest attributes, the others with one, each attribute
    with its direction and its value against the population's in its own terms."""
    rows = rows[rows["standardized_difference"].abs() >= MIN_PERSONA_DIFFERENCE]
    rows = rows.reindex(rows["standardized_difference"].abs().sort_values(ascending=False).index)
    chosen: list[tuple[str, pd.Series, _Feature]] = []
    spare: list[tuple[str, pd.Series, _Feature]] = []
    for _, row in rows.iterrows():
        meaning = _feature(schema, row["attribute"])
        if meaning is None or meaning.attribute.kind == "date":  # when the record was made: not a trait
            continue
        item = (attribute_theme(meaning.attribute, row["attribute"]), row, meaning)
        (chosen if is_documented(meaning.attribute) else spare).append(item)
    if len(chosen) < 2:
        chosen += spare[: 2 - len(chosen)]
    if not chosen:
        return "Close to the population", (
            f"No attribute differs from the population by {MIN_PERSONA_DIFFERENCE:g} sd or more: people "
            "in this segment look like the population at large."
        )
    grouped: dict[str, list] = {}
    for theme, row, meaning in chosen:
        grouped.setdefault(theme, []).append((row, meaning))

    def weight(theme: str) -> float:
        strongest = abs(float(grouped[theme][0][0]["standardized_difference"]))
        return strongest * THEME_WEIGHTS.get(theme, 1.0)

    # the strongest themes, the first with two attributes, the others with one each
    ranked = sorted(grouped, key=weight, reverse=True)[:themes]
    by_theme = {theme: grouped[theme][: 2 if i == 0 else 1] for i, theme in enumerate(ranked)}
    listed = [(theme, row, meaning) for theme, items in by_theme.items() for row, meaning in items]
    name = " · ".join(_short_name(row) for _, row, _ in listed[:2])
    (first, *_), rest = by_theme.items(), list(by_theme.items())[1:]
    sentences = [
        f"On {first[0]}, people here show "
        + " and ".join(_value_phrase(row, meaning) for row, meaning in first[1])
        + "."
    ]
    if rest:
        clauses = [
            f"{_value_phrase(row, meaning)} ({theme})" for theme, items in rest for row, meaning in items
        ]
        sentences.append(f"They also show {' and '.join(clauses)}.")
    return name, " ".join(sentences)


def with_personas(profiles: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """``profiles`` with ``segment_name`` and ``persona`` columns (the same on every row of a segment)."""
    names, personas = {}, {}
    for segment, rows in profiles.groupby("segment", sort=False):
        names[segment], personas[segment] = segment_persona(rows, schema)
    return profiles.assign(
        segment_name=profiles["segment"].map(names), persona=profiles["segment"].map(personas)
    )
