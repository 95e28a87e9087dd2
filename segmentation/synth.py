"""Synthetic Arvato-shaped data with planted segments: the generator behind ``segmentation generate``.

The real files are proprietary, so the job is developed and scored on data of the same shape whose truth is
known. Everything column-specific comes from the schema (kinds, codes, unknown codes, information levels,
missing shares), so another vendor's attributes file works as well.

Model (one draw per row):

- A hidden segment ``k`` out of ``K`` with unequal weights (population: ``0.3/K + 0.7 * Dirichlet(3)``).
- Ordinal, numeric, binary and date columns: a latent score ``z = separation * mu[k, column] + block factors +
  noise`` (unit variance within a segment), cut into the column's codes at thresholds that give a random base
  distribution (Dirichlet over the codes; geometric for counts and dates, bell-shaped for other numerics).
  ``mu`` is half shared by the column's information level (whole blocks move together between segments),
  half column-specific.
- Categorical and mixed columns: segment-specific probabilities ``base * exp(separation * g[k, code])``,
  drawn by inverse CDF from a uniform that carries the same block factors, so blocks stay correlated.
- Block factors: one per information level (or name prefix before the first ``_`` where the level is empty)
  and one per (level, prefix) pair, with loadings of random sign, so PLZ8, microcell, household, ``SEMIO_``,
  ``D19_`` ... columns correlate within their block.
- Raw missingness: each row has a coverage uniform ``u``; a column with raw share ``r`` in the table is empty
  where ``u < min(r, m)``, ``m`` being the table's typical block share (the column-weighted median of the
  non-zero shares; about 11.9% for the population, 26.8% for customers). Blocks with the same share are thus
  empty on the same rows, and rows with ``u < m`` lack every block except the never-missing columns (the
  mostly-empty rows). Shares above ``m`` add an independent part drawn once per row and name prefix, so
  sparse columns of one family (the child ages 1..4) stay nested.
- Unknown codes: where the schema gives ``missing_share_recoded``, present cells get an unknown code with
  probability ``(recoded - raw) / (1 - raw)``; other columns with unknown codes get a small seeded rate
  (1-3%). A string sentinel in an integer-coded column (``X``, ``XX``) is kept rare (0.04% of present cells,
  as in the real file), so that pandas' default low-memory read sees it in some 2,048-row chunks and not in
  others and warns about mixed types exactly as it does on the real file.
- Customers over-represent some segments (about 2-3x) and under-represent others (0.2x), the rest at 1x;
  mail-outs draw from the average of both mixes. Customer extras are drawn from segment-specific
  probabilities over their codes.
- Response (the ``extra`` column of ``mailout_train``, positive = its last code): every mail-out row (test
  rows too, in the truth only) responds with probability ``logistic(a[k] + sum_i b_i x_i)`` over
  ``RESPONSE_ATTRIBUTES`` seeded ordinal columns (the least-missing ones, from distinct information levels):
  ``x_i = 2 * position / (n_codes - 1) - 1`` of the written valid code, 0 where the cell is empty or unknown,
  so the probability is a function of the segment and of what the file shows. ``a[k]`` is solved exactly
  (the chosen columns are independent given the segment) so that segment k's expected rate is proportional
  to its customer ratio, 1.24% overall. ``truth/mailout_*.csv`` hold each row's draw and probability; the
  AUC of that probability (the Bayes limit of any model) is in ``planted.json`` (``response``).

``SEGMENT_SEPARATION = 0.3`` was tuned with the plain scikit-learn pipeline (unknown codes -> NaN, drop
columns over 30% and rows over 50% missing, codes as numbers, median impute, StandardScaler, PCA to 90%
variance, KMeans(k=8, n_init=10); ``plain_pipeline_ari`` in ``tests/test_synth.py``), scoring the adjusted
Rand index against the planted segments on the rows kept (88%). At 20,000 population rows: 0.922 (seed 0)
and 0.943 (seed 1) at 0.3, against 0.856 at 0.27, 0.960 at 0.33, 0.994 at 0.4 and 0.61 at 0.25 (seed 0);
at 12,000 rows, seeds 0, 1, 3: 0.926, 0.937, 0.925. One-hot encoding the categoricals instead adds ~200
noisy dummy columns and makes k-means less stable: 0.95-0.96 when it finds the optimum, 0.73 in a local one
(seed 0, two of three k-means seeds). Within-block correlations are kept weak on purpose (loadings 0.05-0.25):
strong block factors are the largest-variance directions and k-means then splits them instead of the segments.

Engineering: rows are drawn in blocks of ``BLOCK_ROWS`` whose random generator is keyed by
``(seed, table, block)`` only, and formatted to CSV text by gathering pre-formatted byte tokens, so the
output is byte-identical whatever ``processes`` and ``chunk_rows`` are. Chunks run on a process pool and are
written in order to a temporary name that is renamed when the file is complete; memory stays flat in rows.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit, ndtr, ndtri
from scipy.stats import rankdata

from segmentation.schema import Attribute, Schema, load_schema

TABLES = ("population", "customers", "mailout_train", "mailout_test")
# Shift of a segment's latent mean, in within-segment standard deviations, per unit of its profile.
SEGMENT_SEPARATION = 0.3
# Rows per random-generator unit; chunks are whole numbers of blocks so bytes never depend on chunk size.
BLOCK_ROWS = 5_000
REAL_MAILOUT_TEST_PER_TRAIN = 42_833 / 42_962
RESPONSE_RATE = 0.0124  # 532 of 42,962 in the real mail-out
RESPONSE_ATTRIBUTES = 3  # ordinal columns with an individual (logistic) effect on the response
RESPONSE_EFFECT = (0.8, 1.2)  # |coefficient| per column, on its -1..1 code scale
PROBABILITY_DECIMALS = 8  # the planted probability is rounded so the truth file holds it exactly
UNDER_RATIO = 0.2
SENTINEL_RATE = 0.0004  # 373 of 891,221 rows carry X / XX in the real population file
DEFAULT_UNKNOWN_RATE = (0.01, 0.03)
DATE_RANGE = (date(1992, 1, 1), date(2017, 12, 31))
DATE_TIME = "00:00:00"  # the real timestamps all fall at midnight
_MODEL_KEY = 1_000  # spawn key of the model parameters, apart from the tables' 0..3
_RESPONSE_KEY = 1_001  # spawn key of the response effects (apart, so the other columns keep their draws)
MAILOUT_TABLES = ("mailout_train", "mailout_test")
_PROFILE_SHARED = 0.5  # share of a segment profile's variance common to the column's information level
# Loadings of a column on its level's and its (level, prefix) pair's factor (random sign per column).
LEVEL_LOADING = (0.05, 0.15)
PAIR_LOADING = (0.1, 0.25)


@dataclass
class _Column:
    """How one non-id column is drawn and written."""

    name: str
    mode: str  # "latent" (ordered cut of a score), "choice" (segment probabilities), "response"
    values: list[str]  # valid codes, then unknown codes; index len(values) is the empty cell
    n_valid: int
    integer_coded: bool
    thresholds: np.ndarray | None = None  # latent: cut points on the standard-normal scale
    cumulative: np.ndarray | None = None  # choice: (K, n_valid) cumulative probabilities
    unknown_rate: float = 0.0  # probability that a present cell holds an (ordinary) unknown code
    unknown_first: int = 0  # index of the first ordinary unknown code in values
    n_unknown: int = 0
    sentinel: int = -1  # index of the rare string sentinel, -1 if none
    raw_share: dict[str, float] = field(default_factory=dict)  # raw NaN share per table


@dataclass
class _Model:
    """Every parameter of the generator; built once from (schema, seed, sizes) and shipped to workers."""

    seed: int
    segments: int
    separation: float
    schema_columns: dict[str, list[str]]
    id_name: str
    columns: list[_Column]
    column_index: dict[str, int]
    weights: dict[str, np.ndarray]  # segment weights per table
    response_rates: np.ndarray  # (K,) expected response rate per segment
    response_columns: np.ndarray  # model column indices of the response's individual attributes
    response_coefficients: np.ndarray  # their logistic coefficients
    response_intercepts: np.ndarray  # (K,) solved so each segment's expected rate is response_rates[k]
    shifts: np.ndarray  # (K, n_columns) latent mean per segment (zero for choice columns)
    level_group: np.ndarray  # (n_columns,) index of the level factor
    pair_group: np.ndarray  # (n_columns,) index of the (level, prefix) factor
    level_loading: np.ndarray
    pair_loading: np.ndarray
    noise_sd: np.ndarray
    n_level: int
    n_pair: int
    prefix_group: np.ndarray  # (n_columns,) index of the sparse-missingness uniform
    unknown_columns: list[int]  # columns that can hold an unknown code or sentinel
    empty_index: np.ndarray  # (n_columns,) value index of the empty cell
    n_prefix: int
    nested_share: dict[str, np.ndarray]  # table -> (n_columns,) min(raw, m)
    sparse_share: dict[str, np.ndarray]  # table -> (n_columns,) independent part
    mostly_empty_share: dict[str, float]
    sizes: dict[str, int]
    id_ranges: dict[str, tuple[int, int, int]]  # table -> (first id, multiplier, offset)


def _is_integer(code: str) -> bool:
    return code.lstrip("-").isdigit()


def _prefix(name: str) -> str:
    return name.split("_", 1)[0]


def _block_share(shares: list[float]) -> float:
    """The column-weighted median of the non-zero raw shares: the typical block share of a table."""
    nonzero = sorted(s for s in shares if s > 0)
    return nonzero[len(nonzero) // 2] if nonzero else 0.0


def _raw_share(attribute: Attribute, table: str) -> float:
    # Mail-outs were never profiled per column; the public analyses assume population rates.
    share = attribute.missing_share_customers if table == "customers" else attribute.missing_share_population
    return float(share or 0.0)


def _base_probabilities(attribute: Attribute, values: list[str], rng: np.random.Generator) -> np.ndarray:
    """A random but realistic marginal over a column's valid values."""
    n = len(values)
    if attribute.kind in ("numeric", "date") and n > 12:
        position = np.arange(n, dtype=float)
        low = attribute.value_range[0] if attribute.value_range else 0
        if attribute.kind == "date" or low <= 1:  # counts (and insertion dates) pile up at the start
            mean = n * rng.uniform(0.02, 0.15)
            weights = np.exp(-position / mean)
        else:  # years and the like: a bump inside the range
            centre, spread = n * rng.uniform(0.4, 0.85), n * rng.uniform(0.08, 0.2)
            weights = np.exp(-0.5 * ((position - centre) / spread) ** 2)
        weights += 1e-4 * weights.max()
        return weights / weights.sum()
    return rng.dirichlet(np.full(n, 2.0))


def _valid_values(attribute: Attribute) -> list[str]:
    if attribute.kind == "date":
        first, last = DATE_RANGE
        return [f"{first + timedelta(days=d)} {DATE_TIME}" for d in range((last - first).days + 1)]
    if attribute.kind == "numeric" and not attribute.codes:
        return [str(v) for v in range(100)]
    return list(attribute.codes)


def _build_model(
    schema: Schema, segments: int, seed: int, separation: float, sizes: dict[str, int]
) -> _Model:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_MODEL_KEY,)))
    k = segments
    id_name = schema.id_column
    attributes = [a for a in schema if a.kind != "id"]
    schema_columns = {t: schema.columns(t) for t in TABLES}

    # Segment mixes: population, customers (over/under-represented), mail-outs halfway between.
    population = 0.3 / k + 0.7 * rng.dirichlet(np.full(k, 3.0))
    order = rng.permutation(k)
    n_under = max(1, round(3 * k / 8))
    n_over = max(1, k // 4)
    under, over = order[:n_under], order[n_under : n_under + n_over]
    ratio = np.ones(k)
    ratio[under] = UNDER_RATIO
    deficit = float(np.sum(population[under] * (1 - UNDER_RATIO)))
    # Spread the deficit over the over-represented segments (unevenly), so the rest stay at exactly 1x.
    spread = population[over] * rng.uniform(0.7, 1.3, size=len(over))
    ratio[over] = 1 + deficit * spread / spread.sum() / population[over]
    customers = population * ratio
    customers /= customers.sum()
    mailout = (population + customers) / 2
    response = ratio * RESPONSE_RATE / float(np.sum(mailout * ratio))
    weights = {
        "population": population,
        "customers": customers,
        "mailout_train": mailout,
        "mailout_test": mailout,
    }

    levels = sorted({a.information_level or _prefix(a.name) for a in attributes})
    pairs = sorted({(a.information_level or _prefix(a.name), _prefix(a.name)) for a in attributes})
    level_index = {name: i for i, name in enumerate(levels)}
    pair_index = {name: i for i, name in enumerate(pairs)}
    level_profile = rng.standard_normal((k, len(levels)))

    mostly_empty = {t: _block_share([_raw_share(a, t) for a in attributes if a.in_table(t)]) for t in TABLES}
    sparse_prefixes: dict[str, int] = {}
    columns: list[_Column] = []
    n = len(attributes)
    shifts = np.zeros((k, n))
    level_group = np.zeros(n, dtype=np.intp)
    pair_group = np.zeros(n, dtype=np.intp)
    level_loading = np.zeros(n)
    pair_loading = np.zeros(n)
    prefix_group = np.zeros(n, dtype=np.intp)
    nested = {t: np.zeros(n) for t in TABLES}
    sparse = {t: np.zeros(n) for t in TABLES}
    for j, attribute in enumerate(attributes):
        valid = _valid_values(attribute)
        # A string unknown among integer codes ("X" among 1..9) is the rare mixed-type sentinel.
        integer_valid = all(_is_integer(c) for c in valid)
        sentinels = [u for u in attribute.unknown_codes if integer_valid and not _is_integer(u)]
        ordinary = [u for u in attribute.unknown_codes if u not in sentinels and u not in valid]
        values = valid + ordinary + sentinels
        base = _base_probabilities(attribute, valid, rng)
        target = attribute.kind == "extra" and "mailout_train" in attribute.tables
        if target:
            mode = "response"
        elif attribute.kind in ("categorical", "mixed", "extra"):
            mode = "choice"
        else:
            mode = "latent"
        column = _Column(
            name=attribute.name,
            mode=mode,
            values=values,
            n_valid=len(valid),
            integer_coded=attribute.integer_coded,
            unknown_first=len(valid),
            n_unknown=len(ordinary),
            sentinel=len(valid) + len(ordinary) if sentinels else -1,
        )
        if mode == "latent":
            column.thresholds = ndtri(np.clip(np.cumsum(base)[:-1], 1e-12, 1 - 1e-12))
        elif mode == "choice":
            logits = np.log(base)[None, :] + separation * rng.standard_normal((k, len(valid)))
            probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            column.cumulative = np.cumsum(probabilities, axis=1)
            column.cumulative[:, -1] = 1.0
        if ordinary:
            raw = _raw_share(attribute, "population")
            if attribute.missing_share_recoded is not None and raw < 1:
                column.unknown_rate = max(0.0, (attribute.missing_share_recoded - raw) / (1 - raw))
            else:
                column.unknown_rate = float(rng.uniform(*DEFAULT_UNKNOWN_RATE))

        level = attribute.information_level or _prefix(attribute.name)
        level_group[j] = level_index[level]
        pair_group[j] = pair_index[(level, _prefix(attribute.name))]
        if attribute.kind != "extra":
            sign = rng.choice([-1.0, 1.0])
            level_loading[j] = sign * rng.uniform(*LEVEL_LOADING)
            pair_loading[j] = sign * rng.uniform(*PAIR_LOADING)
            if mode == "latent":
                own = rng.standard_normal(k)
                shared = sign * level_profile[:, level_group[j]]
                profile = math.sqrt(_PROFILE_SHARED) * shared + math.sqrt(1 - _PROFILE_SHARED) * own
                shifts[:, j] = separation * profile
        for table in TABLES:
            share = _raw_share(attribute, table) if attribute.in_table(table) else 0.0
            column.raw_share[table] = share
            nested[table][j] = min(share, mostly_empty[table])
            if share > nested[table][j]:
                sparse[table][j] = (share - nested[table][j]) / (1 - nested[table][j])
        if any(sparse[t][j] > 0 for t in TABLES):
            prefix_group[j] = sparse_prefixes.setdefault(_prefix(attribute.name), len(sparse_prefixes))
        columns.append(column)

    noise_sd = np.sqrt(1 - level_loading**2 - pair_loading**2)
    id_ranges = {}
    first = 1
    for table in ("customers", "population", "mailout_train", "mailout_test"):
        size = sizes[table]
        multiplier = _coprime_multiplier(size, rng)
        id_ranges[table] = (first, multiplier, int(rng.integers(0, max(size, 1))))
        first += size
    return _Model(
        seed=seed,
        segments=k,
        separation=separation,
        schema_columns=schema_columns,
        id_name=id_name,
        columns=columns,
        column_index={c.name: j for j, c in enumerate(columns)},
        weights=weights,
        response_rates=response,
        shifts=shifts,
        level_group=level_group,
        pair_group=pair_group,
        level_loading=level_loading,
        pair_loading=pair_loading,
        noise_sd=noise_sd,
        n_level=len(levels),
        n_pair=len(pairs),
        prefix_group=prefix_group,
        unknown_columns=[j for j, c in enumerate(columns) if c.n_unknown or c.sentinel >= 0],
        empty_index=np.array([len(c.values) for c in columns], dtype=np.int32),
        n_prefix=max(1, len(sparse_prefixes)),
        nested_share=nested,
        sparse_share=sparse,
        mostly_empty_share=mostly_empty,
        sizes=dict(sizes),
        id_ranges=id_ranges,
        **_plant_response(seed, attributes, columns, shifts, nested, sparse, response),
    )


def _plant_response(
    seed: int,
    attributes: list[Attribute],
    columns: list[_Column],
    shifts: np.ndarray,
    nested: dict[str, np.ndarray],
    sparse: dict[str, np.ndarray],
    rates: np.ndarray,
) -> dict[str, np.ndarray]:
    """Choose the response's individual attributes and coefficients; solve the segment intercepts."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_RESPONSE_KEY,)))
    table = "mailout_train"
    candidates = [
        j
        for j, a in enumerate(attributes)
        if columns[j].mode == "latent" and a.kind == "ordinal" and all(a.in_table(t) for t in MAILOUT_TABLES)
    ]
    present = {j: (1 - nested[table][j]) * (1 - sparse[table][j]) for j in candidates}
    tiebreak = rng.random(len(candidates))
    ordered = [
        j for _, _, j in sorted(zip([-present[j] for j in candidates], tiebreak, candidates, strict=False))
    ]
    chosen: list[int] = []
    levels: set[str] = set()
    for j in ordered:  # distinct information levels: independent given the segment, so a[k] is exact
        level = attributes[j].information_level or _prefix(attributes[j].name)
        if level not in levels and len(chosen) < RESPONSE_ATTRIBUTES:
            chosen.append(j)
            levels.add(level)
    coefficients = rng.choice([-1.0, 1.0], len(chosen)) * rng.uniform(*RESPONSE_EFFECT, len(chosen))
    # Per column and segment: the distribution of x over its valid positions, plus x = 0 (empty/unknown).
    linear = np.zeros((len(rates), 1))
    weight = np.ones((len(rates), 1))
    for j, b in zip(chosen, coefficients, strict=True):
        column = columns[j]
        edges = np.concatenate([[-np.inf], column.thresholds, [np.inf]])
        cut = ndtr(edges[None, :] - shifts[:, j][:, None])
        valid = 1 - column.unknown_rate * (column.n_unknown > 0) - SENTINEL_RATE * (column.sentinel >= 0)
        share = present[j] * valid * np.diff(cut, axis=1)
        probability = np.concatenate([share, 1 - share.sum(axis=1, keepdims=True)], axis=1)
        x = np.append(_code_scale(column.n_valid), 0.0) * b
        linear = (linear[:, :, None] + x[None, None, :]).reshape(len(rates), -1)
        weight = (weight[:, :, None] * probability[:, None, :]).reshape(len(rates), -1)
    low, high = np.full(len(rates), -30.0), np.full(len(rates), 10.0)
    for _ in range(100):  # bisection: the expected rate is increasing in the intercept
        middle = (low + high) / 2
        expected = np.sum(weight * expit(middle[:, None] + linear), axis=1)
        low, high = np.where(expected < rates, middle, low), np.where(expected < rates, high, middle)
    return {
        "response_columns": np.array(chosen, dtype=np.intp),
        "response_coefficients": coefficients,
        "response_intercepts": (low + high) / 2,
    }


def _code_scale(n_valid: int) -> np.ndarray:
    """Positions 0..n_valid-1 of an ordinal's valid codes -> -1..1."""
    return 2 * np.arange(n_valid) / max(n_valid - 1, 1) - 1


def _coprime_multiplier(size: int, rng: np.random.Generator) -> int:
    """A multiplier coprime with ``size``: ``(a * i + c) mod size`` then shuffles ids without a table."""
    if size <= 2:
        return 1
    candidate = int(rng.integers(size // 3, 2 * size // 3 + 1))
    while math.gcd(candidate, size) != 1:
        candidate += 1
    return candidate


# --------------------------------------------------------------------------------------------- drawing


def _draw_block(
    model: _Model, table: str, block: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` rows of ``table``: segments (n,), value indices (n_columns, n) int32 (column-major), and
    the planted response probability and draw (n,) (written only for the mail-outs)."""
    rng = np.random.default_rng(np.random.SeedSequence(model.seed, spawn_key=(TABLES.index(table), block)))
    cumulative_weights = np.cumsum(model.weights[table])
    segment = np.minimum(np.searchsorted(cumulative_weights, rng.random(n), side="right"), model.segments - 1)
    level = rng.standard_normal((model.n_level, n), dtype=np.float32)
    pair = rng.standard_normal((model.n_pair, n), dtype=np.float32)
    score = rng.standard_normal((len(model.columns), n), dtype=np.float32)
    score *= model.noise_sd.astype(np.float32)[:, None]
    score += level[model.level_group] * model.level_loading.astype(np.float32)[:, None]
    score += pair[model.pair_group] * model.pair_loading.astype(np.float32)[:, None]
    coverage = rng.random(n)
    sparse_uniform = rng.random((model.n_prefix, n))
    unknown_draw = rng.random((len(model.unknown_columns), n), dtype=np.float32)
    unknown_pick = rng.random((len(model.unknown_columns), n), dtype=np.float32)
    response_draw = rng.random(n)

    index = np.empty((len(model.columns), n), dtype=np.int32)
    shifts = model.shifts.T.astype(np.float32)
    for j, column in enumerate(model.columns):
        if column.mode == "latent":
            index[j] = np.searchsorted(column.thresholds, score[j] + shifts[j, segment])
        elif column.mode == "choice":
            uniform = ndtr(score[j])
            index[j] = (uniform[:, None] > column.cumulative[segment, :-1]).sum(axis=1)
    for row, j in enumerate(model.unknown_columns):
        column = model.columns[j]
        if column.n_unknown:
            pick = column.unknown_first + (unknown_pick[row] * column.n_unknown).astype(np.int32)
            np.copyto(index[j], pick, where=unknown_draw[row] < column.unknown_rate)
        if column.sentinel >= 0:
            # The rare sentinel takes the top end of the same draw, apart from the ordinary unknowns.
            index[j][unknown_draw[row] > 1 - SENTINEL_RATE] = column.sentinel

    empty = coverage < model.nested_share[table][:, None]
    empty |= sparse_uniform[model.prefix_group] < model.sparse_share[table][:, None]
    np.copyto(index, model.empty_index[:, None], where=empty)
    probability = response_probability(model, segment, index)
    response = response_draw < probability
    for j, column in enumerate(model.columns):
        if column.mode == "response":
            index[j] = response * (column.n_valid - 1)
    return segment, index, probability, response


def response_probability(model: _Model, segment: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The planted response probability of rows drawn in ``segment`` with value indices ``index``."""
    linear = model.response_intercepts[segment].copy()
    for j, b in zip(model.response_columns, model.response_coefficients, strict=True):
        n_valid = model.columns[j].n_valid
        x = np.append(_code_scale(n_valid), np.zeros(len(model.columns[j].values) + 1 - n_valid))
        linear += b * x[index[j]]
    return np.round(expit(linear), PROBABILITY_DECIMALS)


def _ids(model: _Model, table: str, start: int, n: int) -> np.ndarray:
    first, multiplier, offset = model.id_ranges[table]
    size = model.sizes[table]
    position = np.arange(start, start + n, dtype=np.int64)
    return first + (multiplier * position + offset) % size


# ------------------------------------------------------------------------------------------ formatting


def _token_table(tokens: list[bytes]) -> np.ndarray:
    """Byte tokens -> a zero-padded (n_tokens, width) uint8 matrix (zero bytes are dropped on output)."""
    width = max(len(t) for t in tokens)
    table = np.zeros((len(tokens), width), dtype=np.uint8)
    for i, token in enumerate(tokens):
        table[i, : len(token)] = np.frombuffer(token, dtype=np.uint8)
    return table


def _column_tokens(column: _Column, table: str, end: bytes) -> np.ndarray:
    # As pandas writes them: integer codes of a column that holds NaN become floats ("4.0").
    as_float = column.integer_coded and column.raw_share.get(table, 0.0) > 0
    tokens = [(f"{int(v)}.0" if as_float else v).encode() + end for v in column.values]
    return _token_table(tokens + [end])


def _integer_tokens(values: np.ndarray, end: bytes) -> np.ndarray:
    """Non-negative integers -> (n, width) uint8 decimal digits, leading zeros as padding."""
    values = np.asarray(values, dtype=np.int64)
    digits = max(1, len(str(int(values.max())))) if len(values) else 1
    powers = 10 ** np.arange(digits - 1, -1, -1, dtype=np.int64)
    out = np.zeros((len(values), digits + len(end)), dtype=np.uint8)
    out[:, :digits] = (values[:, None] // powers % 10 + ord("0")).astype(np.uint8)
    leading = (values[:, None] < powers) & (powers > 1)
    out[:, :digits][leading] = 0
    out[:, digits:] = np.frombuffer(end, dtype=np.uint8)
    return out


class _Renderer:
    """Turns drawn blocks into CSV bytes for one table, with cached token tables."""

    def __init__(self, model: _Model, table: str) -> None:
        self.model = model
        self.table = table
        names = model.schema_columns[table]
        self.layout: list[int | None] = []  # model column index, None for the id
        self.tokens: list[np.ndarray | None] = []
        for position, name in enumerate(names):
            end = b"\n" if position == len(names) - 1 else b";"
            if name == model.id_name:
                self.layout.append(None)
                self.tokens.append(np.frombuffer(end, dtype=np.uint8))
            else:
                j = model.column_index[name]
                self.layout.append(j)
                self.tokens.append(_column_tokens(model.columns[j], table, end))

    def render(self, ids: np.ndarray, index: np.ndarray) -> bytes:
        parts = []
        for j, tokens in zip(self.layout, self.tokens, strict=True):
            if j is None:
                parts.append(_integer_tokens(ids, bytes(tokens)))
            else:
                parts.append(tokens[index[j]])
        matrix = np.concatenate(parts, axis=1)
        return matrix[matrix != 0].tobytes()


def _render_truth(ids: np.ndarray, segment: np.ndarray) -> bytes:
    matrix = np.concatenate([_integer_tokens(ids, b";"), _integer_tokens(segment, b"\n")], axis=1)
    return matrix[matrix != 0].tobytes()


def _render_response_truth(
    ids: np.ndarray, segment: np.ndarray, response: np.ndarray, probability: np.ndarray
) -> bytes:
    """Mail-out truth rows ``id;segment;response;probability`` (mail-outs are small: plain formatting)."""
    rows = zip(
        ids.tolist(), segment.tolist(), response.astype(int).tolist(), probability.tolist(), strict=True
    )
    return "".join(f"{i};{k};{r};{p:.{PROBABILITY_DECIMALS}f}\n" for i, k, r, p in rows).encode()


_WORKER_MODEL: _Model | None = None
_WORKER_RENDERERS: dict[str, _Renderer] = {}


def _init_worker(model: _Model | None) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = model
    _WORKER_RENDERERS.clear()


def _run_chunk(task: tuple[str, int, int]) -> tuple[str, bytes, bytes, np.ndarray, np.ndarray]:
    """Draw and format ``count`` blocks of a table from ``first``; returns (table, csv, truth, counts,
    responses), ``responses`` being (2, rows) of planted (draw, probability) for mail-outs, else empty."""
    table, first, count = task
    model = _WORKER_MODEL
    assert model is not None, "worker used before _init_worker"
    renderer = _WORKER_RENDERERS.get(table)
    if renderer is None:
        renderer = _WORKER_RENDERERS[table] = _Renderer(model, table)
    size = model.sizes[table]
    data, truth = [], []
    counts = np.zeros(model.segments, dtype=np.int64)
    responses = [np.empty((2, 0))]
    for block in range(first, first + count):
        start = block * BLOCK_ROWS
        n = min(BLOCK_ROWS, size - start)
        segment, index, probability, response = _draw_block(model, table, block, n)
        ids = _ids(model, table, start, n)
        data.append(renderer.render(ids, index))
        if table in MAILOUT_TABLES:
            truth.append(_render_response_truth(ids, segment, response, probability))
            responses.append(np.stack([response.astype(float), probability]))
        else:
            truth.append(_render_truth(ids, segment))
        counts += np.bincount(segment, minlength=model.segments)
    return table, b"".join(data), b"".join(truth), counts, np.concatenate(responses, axis=1)


# ------------------------------------------------------------------------------------------------ API


def generate(
    out_dir: str | os.PathLike,
    rows: int = 891_221,
    customers_rows: int = 191_652,
    mailout_rows: int = 42_962,
    mailout_test_rows: int | None = None,
    segments: int = 8,
    seed: int = 0,
    schema: Schema | None = None,
    processes: int = 2,
    chunk_rows: int = 10_000,
    *,
    separation: float = SEGMENT_SEPARATION,
) -> dict[str, Any]:
    """Write Arvato-shaped population, customers and mail-out files with planted segments, plus the truth.

    Parameters
    ----------
    out_dir : folder to write; gets ``population.csv``, ``customers.csv``, ``mailout_train.csv``,
        ``mailout_test.csv`` and ``truth/`` (``<table>.csv`` as ``<id>;segment`` and ``planted.json``).
    rows, customers_rows, mailout_rows : rows of the population, customers and mail-out train files.
    mailout_test_rows : rows of the mail-out test file (default: ``mailout_rows * 42,833 / 42,962``).
    segments : number of planted segments K (at least 2).
    seed : the output depends only on the seed and sizes, never on ``processes`` or ``chunk_rows``.
    schema : the attributes schema (default: the packaged Arvato schema).
    processes : worker processes formatting chunks (1 runs in this process).
    chunk_rows : rows per task; rounded up to a multiple of ``BLOCK_ROWS``.
    separation : segment separation (``SEGMENT_SEPARATION``; higher makes segments easier to recover).

    Returns
    -------
    dict with ``out_dir``, ``paths`` (table -> file, and ``truth``/``planted``), ``rows`` (table -> count),
    ``seconds`` (table -> seconds, and ``total``) and ``seed``.

    Example
    -------
    >>> summary = generate("data/demo", rows=90_000, customers_rows=20_000, mailout_rows=4_000, seed=42)
    >>> summary["rows"]["population"]
    90000
    """
    started = time.perf_counter()
    if segments < 2:
        raise ValueError(f"segments must be at least 2, got {segments}")
    if mailout_test_rows is None:
        mailout_test_rows = round(mailout_rows * REAL_MAILOUT_TEST_PER_TRAIN)
    sizes = {
        "population": rows,
        "customers": customers_rows,
        "mailout_train": mailout_rows,
        "mailout_test": mailout_test_rows,
    }
    for table, size in sizes.items():
        if size < 0:
            raise ValueError(f"{table} rows must not be negative, got {size}")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    schema = schema if schema is not None else load_schema()
    model = _build_model(schema, segments, seed, separation, sizes)

    out = Path(out_dir)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    blocks_per_task = max(1, math.ceil(chunk_rows / BLOCK_ROWS))
    tasks: list[tuple[str, int, int]] = []
    last_task: dict[str, int] = {}
    for table in TABLES:
        n_blocks = math.ceil(sizes[table] / BLOCK_ROWS)
        for first in range(0, n_blocks, blocks_per_task):
            tasks.append((table, first, min(blocks_per_task, n_blocks - first)))
        last_task[table] = len(tasks) - 1

    paths = {t: out / f"{t}.csv" for t in TABLES}
    truth_paths = {t: out / "truth" / f"{t}.csv" for t in TABLES}
    temporary = {
        p: p.with_name(f".{p.name}.tmp-{os.getpid()}") for p in [*paths.values(), *truth_paths.values()]
    }
    handles: dict[Path, Any] = {}
    seconds: dict[str, float] = {}
    counts = {t: np.zeros(segments, dtype=np.int64) for t in TABLES}
    responses: dict[str, list[np.ndarray]] = {t: [] for t in MAILOUT_TABLES}
    try:
        for table in TABLES:
            handles[paths[table]] = open(temporary[paths[table]], "wb")  # noqa: SIM115 - closed below
            handles[paths[table]].write((";".join(model.schema_columns[table]) + "\n").encode())
            handles[truth_paths[table]] = open(temporary[truth_paths[table]], "wb")  # noqa: SIM115
            header = "segment;response;probability" if table in MAILOUT_TABLES else "segment"
            handles[truth_paths[table]].write(f"{model.id_name};{header}\n".encode())
        table_started = time.perf_counter()
        for position, (table, data, truth, chunk_counts, drawn) in enumerate(
            _results(model, tasks, processes)
        ):
            handles[paths[table]].write(data)
            handles[truth_paths[table]].write(truth)
            counts[table] += chunk_counts
            if table in responses:
                responses[table].append(drawn)
            if position == last_task[table]:
                seconds[table] = time.perf_counter() - table_started
                table_started = time.perf_counter()
        for table in TABLES:  # tables with no rows have no tasks
            seconds.setdefault(table, 0.0)
        for path, handle in handles.items():
            handle.close()
            os.replace(temporary[path], path)
    finally:
        for path, handle in handles.items():
            handle.close()
            if temporary[path].exists():
                temporary[path].unlink()

    planted_path = out / "truth" / "planted.json"
    drawn = {t: np.concatenate([np.empty((2, 0)), *responses[t]], axis=1) for t in MAILOUT_TABLES}
    _write_json(planted_path, _planted(model, counts, drawn))
    seconds["total"] = time.perf_counter() - started
    return {
        "out_dir": str(out),
        "paths": {
            **{t: str(p) for t, p in paths.items()},
            "truth": {t: str(p) for t, p in truth_paths.items()},
            "planted": str(planted_path),
        },
        "rows": dict(sizes),
        "seconds": seconds,
        "seed": seed,
    }


def _results(model: _Model, tasks: list[tuple[str, int, int]], processes: int):
    """Chunk results in task order, from a pool of ``processes`` workers (or this process)."""
    if processes == 1 or len(tasks) <= 1:
        _init_worker(model)
        try:
            yield from map(_run_chunk, tasks)
        finally:
            _init_worker(None)
        return
    # spawn, not fork: the caller may hold threads (a Dask client, BLAS) that a fork would copy mid-lock.
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(processes, len(tasks)), initializer=_init_worker, initargs=(model,)) as pool:
        yield from pool.imap(_run_chunk, tasks, chunksize=1)


def _planted(model: _Model, counts: dict[str, np.ndarray], drawn: dict[str, np.ndarray]) -> dict[str, Any]:
    ratio = model.weights["customers"] / model.weights["population"]
    representation = ["over" if r > 1 + 1e-9 else "under" if r < 1 - 1e-9 else "similar" for r in ratio]
    mailout = model.weights["mailout_train"]
    return {
        "generator": "segmentation.synth",
        "seed": model.seed,
        "segments": model.segments,
        "separation": model.separation,
        "rows": model.sizes,
        "segment_names": [str(k) for k in range(model.segments)],
        "population_weights": model.weights["population"].round(6).tolist(),
        "customers_weights": model.weights["customers"].round(6).tolist(),
        "mailout_weights": mailout.round(6).tolist(),
        "customer_population_ratio": ratio.round(6).tolist(),
        "representation": representation,
        "over_represented": [k for k, r in enumerate(representation) if r == "over"],
        "under_represented": [k for k, r in enumerate(representation) if r == "under"],
        "response_rate_by_segment": model.response_rates.round(6).tolist(),
        "response_rate": round(float(np.sum(mailout * model.response_rates)), 6),
        "mostly_empty_share": {t: model.mostly_empty_share[t] for t in TABLES},
        "realised_counts": {t: counts[t].tolist() for t in TABLES},
        "response": _planted_response(model, drawn),
    }


def _planted_response(model: _Model, drawn: dict[str, np.ndarray]) -> dict[str, Any]:
    """How the response was planted, and the realised rate and Bayes-limit AUCs per mail-out table."""
    mailout = model.weights["mailout_train"]
    realised = {}
    for table, (response, probability) in drawn.items():
        positives = int(response.sum())
        realised[table] = {
            "rows": len(response),
            "responses": positives,
            "rate": round(positives / len(response), 6) if len(response) else None,
            "bayes_roc_auc": _roc_auc(response, probability),
            "bayes_pr_auc": _average_precision(response, probability),
        }
    return {
        "link": "logistic",
        "rate": round(float(np.sum(mailout * model.response_rates)), 6),
        "rate_by_segment": model.response_rates.round(6).tolist(),
        "segment_effect": "expected rate proportional to customer_population_ratio",
        "intercept_by_segment": model.response_intercepts.round(6).tolist(),
        "attributes": [
            {
                "name": model.columns[j].name,
                "coefficient": round(float(b), 6),
                "codes": model.columns[j].n_valid,
            }
            for j, b in zip(model.response_columns, model.response_coefficients, strict=True)
        ],
        "attribute_scale": "2 * position / (codes - 1) - 1 of the valid code; 0 where empty or unknown",
        "truth_files": {t: f"truth/{t}.csv" for t in MAILOUT_TABLES},
        "realised": realised,
    }


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC (ties count half) by the rank-sum formula; None without both classes."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    ranks = rankdata(scores)
    return round(
        float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)), 6
    )


def _average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision (scikit-learn's definition: one threshold per distinct score); None without positives."""
    positives = int(labels.sum())
    if not positives:
        return None
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]  # last row of each distinct score
    true_positives = np.cumsum(sorted_labels)[last]
    precision = true_positives / (last + 1)
    recall_gain = np.diff(np.r_[0.0, true_positives]) / positives
    return round(float(np.sum(recall_gain * precision)), 6)


def _write_json(path: Path, payload: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(temporary, path)
