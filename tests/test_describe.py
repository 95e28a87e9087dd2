import re

import numpy as np
import pandas as pd
import pytest

from segmentation.describe import (
    MIN_PERSONA_DIFFERENCE,
    attribute_theme,
    is_documented,
    segment_persona,
    segment_profiles,
)
from segmentation.schema import load_schema

FEATURES = [
    "ALTERSKATEGORIE_GROB",  # age class 1..4
    "FINANZ_SPARER",
    "HH_EINKOMMEN_SCORE",
    "KBA13_HERST_BMW_BENZ",
    "D19_GESAMT_ANZ_12",
    "SEMIO_ERL",
    "LP_FAMILIE_GROB=2",
    "CAMEO_INTL_2015_WEALTH",
    "PLZ8_ANTG1",
    "AKT_DAT_KL=1",  # undocumented
    "CJT_TYP_1",  # undocumented
    "VK_DHT4A",  # undocumented
]
# Per segment, the standardized differences planted; the undocumented ones are the largest on purpose.
PLANTED = {
    0: {"ALTERSKATEGORIE_GROB": 1.2, "FINANZ_SPARER": -0.9, "CJT_TYP_1": 2.5, "VK_DHT4A": -2.0},
    1: {"KBA13_HERST_BMW_BENZ": 0.8, "HH_EINKOMMEN_SCORE": 1.1, "AKT_DAT_KL=1": 3.0},
    2: {"LP_FAMILIE_GROB=2": 0.9, "D19_GESAMT_ANZ_12": -0.7, "PLZ8_ANTG1": 0.5, "SEMIO_ERL": -0.4},
    3: {"CAMEO_INTL_2015_WEALTH": -1.0, "SEMIO_ERL": 0.6},
}


@pytest.fixture(scope="module")
def profiles():
    schema = load_schema()
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 0.05, (len(PLANTED), len(FEATURES)))
    for segment, planted in PLANTED.items():
        for feature, value in planted.items():
            centres[segment, FEATURES.index(feature)] = value
    mean = np.array([2.8, 3.0, 3.5, 3.1, 1.2, 4.3, 0.2, 3.1, 2.5, 0.1, 3.0, 5.0])
    std = np.array([1.0, 1.3, 1.4, 1.0, 1.6, 1.8, 0.4, 1.4, 1.1, 0.3, 1.4, 3.0])
    return segment_profiles(centres, FEATURES, mean, std, schema), schema


def test_profiles_carry_name_and_persona(profiles):
    table, _ = profiles
    assert {"segment_name", "persona"} <= set(table.columns)
    per_segment = table.groupby("segment")[["segment_name", "persona"]].nunique()
    assert (per_segment == 1).all().all()  # one name and one persona per segment, on every row


def test_every_persona_names_two_documented_attributes_with_direction(profiles):
    table, schema = profiles
    documented = {f: table.loc[table["attribute"] == f, "label"].iloc[0] for f in FEATURES[:9]}
    assert not any(is_documented(schema[f.split("=")[0]]) for f in FEATURES[9:])
    for segment, rows in table.groupby("segment"):
        persona = rows["persona"].iloc[0]
        mentioned = [
            label
            for label in documented.values()
            if re.search(rf"(higher|lower|more often|less often) '{re.escape(label)}'", persona)
        ]
        assert len(mentioned) >= 2, (segment, persona)
        assert "Undocumented" not in persona, persona  # documented attributes first
        assert 2 <= persona.count(". ") + 1 <= 3, persona


def test_persona_speaks_in_the_attributes_own_terms(profiles):
    table, _ = profiles
    persona = table.loc[table["segment"] == "0", "persona"].iloc[0]
    # age class 1..4: the segment's mean (2.8 + 1.2 * 1.0) against the population's, on its own scale
    assert "higher 'Age class from first-name analysis' (4.0 of 4 vs 2.8 in the population)" in persona
    family = table.loc[table["segment"] == "2", "persona"].iloc[0]
    assert "more often 'Family type, rough scale = 2' (56% vs 20% in the population)" in family
    name = table.loc[table["segment"] == "0", "segment_name"].iloc[0]
    assert name == "Age class from first-name analysis ↑ · Saver ↓"


def test_persona_falls_back_to_undocumented_attributes_and_to_no_difference():
    schema = load_schema()
    rows = pd.DataFrame(
        {
            "segment": "0",
            "attribute": ["CJT_TYP_1", "VK_DHT4A"],
            "label": [schema.label("CJT_TYP_1"), schema.label("VK_DHT4A")],
            "segment_mean": [4.0, 2.0],
            "population_mean": [3.0, 5.0],
            "standardized_difference": [0.7, -1.0],
        }
    )
    name, persona = segment_persona(rows, schema)
    assert "higher 'Undocumented customer-journey sub-score 1'" in persona
    calm = rows.assign(standardized_difference=MIN_PERSONA_DIFFERENCE / 2)
    assert segment_persona(calm, schema)[0] == "Close to the population"


@pytest.mark.parametrize(
    ("feature", "theme"),
    [
        ("ALTERSKATEGORIE_GROB", "age and life stage"),
        ("PRAEGENDE_JUGENDJAHRE", "age and life stage"),
        ("CAMEO_INTL_2015_LIFE_STAGE", "age and life stage"),
        ("CAMEO_INTL_2015_WEALTH", "wealth and income"),
        ("FINANZ_SPARER", "wealth and income"),
        ("LP_FAMILIE_GROB", "family"),
        ("PLZ8_ANTG1", "housing and neighbourhood"),
        ("KBA05_ANTG1", "housing and neighbourhood"),
        ("KBA13_HERST_BMW_BENZ", "cars"),
        ("D19_GESAMT_ANZ_12", "purchase behaviour"),
        ("SEMIO_ERL", "attitudes"),
        ("FINANZTYP", "attitudes"),
        ("WOHNLAGE", "housing and neighbourhood"),  # from its information level (Building)
    ],
)
def test_arvato_themes(feature, theme):
    schema = load_schema()
    source = "CAMEO_INTL_2015" if feature.startswith("CAMEO_INTL_2015") else feature
    assert attribute_theme(schema[source], feature) == theme


def test_theme_column_of_the_attributes_file_wins():
    from segmentation.schema import parse_attributes

    schema = parse_attributes(
        "attribute,kind,codes,unknown_codes,label,theme\nID,id,,,,\nSCORE,ordinal,1..5,,A score,loyalty\n"
    )
    assert attribute_theme(schema["SCORE"]) == "loyalty"


def test_persona_leads_with_people_unless_the_neighbourhood_cars_differ_much_more():
    schema = load_schema()

    def rows(cars: float) -> pd.DataFrame:
        names = ["KBA13_HERST_BMW_BENZ", "ALTERSKATEGORIE_GROB", "EINGEFUEGT_AM"]
        return pd.DataFrame(
            {
                "segment": "0",
                "attribute": names,
                "label": [schema.label(n) for n in names],
                "segment_mean": [4.0, 3.5, 1999.0],
                "population_mean": [3.0, 2.8, 1995.0],
                "standardized_difference": [cars, 0.7, 2.0],  # the record date differs most: never named
            }
        )

    assert segment_persona(rows(1.0), schema)[1].startswith("On age and life stage")
    assert segment_persona(rows(1.5), schema)[1].startswith("On cars")
    assert "Record insertion" not in segment_persona(rows(1.0), schema)[1]
