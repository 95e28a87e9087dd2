"""The whole job on another vendor's files (tests/foreign_writer.py), written without this project's generator:
its own attributes file, column order, text codes and sentinels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentation.config import load_job
from segmentation.encode import feature_names
from segmentation.io import code_partition, read_table
from segmentation.job import run_job
from segmentation.model import INSUFFICIENT, SegmentationModel
from segmentation.schema import load_schema

from .foreign_writer import OVER_REPRESENTED, SEGMENTS, write_nordwind

pytestmark = pytest.mark.slow

POPULATION, CUSTOMERS = 3000, 1000


@pytest.fixture(scope="module")
def nordwind(tmp_path_factory):
    return write_nordwind(tmp_path_factory.mktemp("nordwind"), POPULATION, CUSTOMERS, seed=3)


@pytest.fixture(scope="module")
def run(nordwind, tmp_path_factory):
    profile = tmp_path_factory.mktemp("profile") / "local.yml"
    profile.write_text(
        "kind: local\nn_workers: 2\nthreads_per_worker: 1\nmemory_limit: 2GiB\ndashboard_address: 127.0.0.1:0\n"
    )
    config = load_job(
        None,
        {
            "inputs.population": str(nordwind.population),
            "inputs.customers": str(nordwind.customers),
            "attributes": str(nordwind.attributes),
            "output": str(tmp_path_factory.mktemp("runs") / "nordwind"),
            "cluster": str(profile),
            "seed": 5,
            "kmeans.k": len(SEGMENTS),
            "kmeans.elbow": False,
        },
    )
    return run_job(config)


def test_every_row_is_assigned_or_set_aside(run):
    found = pd.read_parquet(f"{run.output}/assignments")
    recorded = json.loads(open(f"{run.output}/run.json").read())["rows"]
    for table, expected in (("population", POPULATION), ("customers", CUSTOMERS)):
        rows = found[found["table"] == table]
        aside = int((rows["segment"] == INSUFFICIENT).sum())
        assert len(rows) == expected == recorded[table]["read"]
        assert rows["LNR"].is_unique
        assert recorded[table]["set_aside"] == aside > 0
        assert recorded[table]["assigned"] == expected - aside


def test_sentinels_are_unknown_not_invalid(run):
    # every sentinel Nordwind writes (-9, unbekannt, X, XX, 0, -1) is declared: none counts as invalid
    recorded = json.loads(open(f"{run.output}/run.json").read())
    assert recorded["invalid_values"] == {"population": {}, "customers": {}}


def test_features_are_finite_with_the_declared_width(run, nordwind):
    model = SegmentationModel.load(f"{run.output}/model")
    schema = load_schema(nordwind.attributes)
    declared = [f for a in schema.features() for f in feature_names(a)]
    assert model.cleaner.dropped_columns_ == []
    assert model.scaler.feature_names_ == declared
    assert {"KUNDE_SEIT", "LEBENSSTIL_STUFE", "HAT_KARTE", "REGION=W"} <= set(declared)
    # the saved model applied in-process to Nordwind's file: finite features of that width for every kept row
    table = read_table(nordwind.population, schema, "population", blocksize=None)
    raw = table.read_part(0)
    block, invalid = code_partition(raw, model.codebook, str(nordwind.population))
    aside, features = model.standardize_block(block)
    assert invalid.sum() == 0 and len(block) == POPULATION
    assert features.shape == (POPULATION - aside.sum(), len(declared))
    assert np.isfinite(features).all()


def test_planted_segments_and_over_representation_recovered(run, nordwind):
    found = pd.read_parquet(f"{run.output}/assignments").rename(columns={"LNR": "KUNDEN_NR"})
    population = found.query("table == 'population' and segment != @INSUFFICIENT")
    merged = population.merge(nordwind.truth["population"], on="KUNDEN_NR")
    assert len(merged) == len(population)
    ari = adjusted_rand_score(merged["planted"], merged["segment"])
    print(f"Nordwind ARI {ari:.3f}")
    assert ari > 0.8
    majority = merged.groupby("segment")["planted"].agg(lambda s: s.mode()[0])
    over = majority[majority == OVER_REPRESENTED].index
    assert len(over) == 1
    proportions = run.proportions.set_index("segment")
    assert proportions.loc[over[0], "representation"] == "over"
    assert (proportions.drop(index=[over[0], INSUFFICIENT])["representation"] != "over").all()
