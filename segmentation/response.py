"""Who will respond: a gradient-boosted response model tied back to the segments, and ranked mail-outs.

Features of a row (``response_features``): the job's standardized features, with the cells that were
missing (or held an unknown code) put back to NaN so the trees route them natively instead of seeing the
imputed median; then one 0/1 column per segment (the nearest centre) and the distance to every centre in
PCA space. Set-aside rows (``insufficient_data``) have no features and are not scored by the model.

The model is LightGBM, with the positive class up-weighted by ``scale_pos_weight`` =
sqrt(negatives / positives) by default (``positive_weight``): the full ratio (~80 at 1.2%) makes each
responder so heavy that the trees fit noise. Its trees are stumps (two leaves, every feature and row in
every round): a response that adds up effects of the segment and of a few attributes on the log-odds needs
no interactions, and with ~500 responders among 542 features every further split mostly fits noise.
``benchmarks/bench_response.py`` measures it on the job's features of the generated mail-out at the real
size (seed 0: 37,873 assigned rows, 478 responses, Bayes limit 0.842 on them): 5-fold ROC AUC 0.827, against
0.819 with the former 7-leaf trees on half the features and 80% of the rows a round, 0.826 unweighted, 0.820
with the full ratio; scikit-learn's HistGradientBoostingClassifier with the same settings scores the same
(0.827) at 7x the time a fold. On a second mail-out not used to choose (seed 1): 0.829 against 0.821 for the
former settings, Bayes 0.844. Without sampling the fit does not depend on the seed. It is saved as
LightGBM's text model format plus a JSON description; loading parses that text
(``lightgbm.Booster(model_str=...)``) and never unpickles anything.

``cross_validate`` reports stratified k-fold ROC AUC and PR AUC (average precision), mean and spread, next
to the same folds ranked by the segment's response rate alone (learnt on the training folds) and by the
segment's customer lift alone.

Scoring (``score_block``) is a pure per-block function: the job maps it over the coded blocks on the
workers, ``score_file`` over the partitions of any file.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .codes import CodedBlock
from .compare import cumulative_gains
from .io import InputError
from .model import INSUFFICIENT, SegmentationModel
from .run_folder import (
    MAILOUT_SCORES,
    PROPORTIONS,
    RESPONSE_MODEL,
    RESPONSE_SCORES,
    SUBMISSION,
    RunReader,
)

logger = logging.getLogger(__name__)

RESPONSE_FORMAT = 1
BOOSTER_FILE = "booster.txt"
DESCRIPTION_FILE = "response_model.json"
SCORE_COLUMNS = ["LNR", "table", "segment", "probability"]
POSITIVE_WEIGHTS = {"balanced": 1.0, "sqrt": 0.5, "none": 0.0}  # power of negatives/positives
MIN_RESPONSES = 20  # below this the model is fitted but its figures are flagged as unreliable
DEFAULT_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 2,  # stumps: an additive model of the log-odds (see the module docstring)
    "min_data_in_leaf": 40,
    "max_bin": 16,  # codes have few values; fewer cut points on the continuous distances fit less noise
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l2": 1.0,
    # One thread: Dask workers are single-threaded processes, and OpenMP threads on a shared machine spin
    # against each other (20 s a fold instead of ~1 s on a loaded 2-core machine).
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
DEFAULT_ROUNDS = 250  # the 5-fold AUC peaks at 200-300 rounds at this learning rate, then slowly declines


# ------------------------------------------------------------------------------------------ features


def feature_names(model: SegmentationModel) -> list[str]:
    """Names of the columns ``response_features`` returns."""
    k = len(model.segmenter.centres_)
    return [
        *model.scaler.feature_names_,
        *(f"segment={i}" for i in range(k)),
        *(f"distance_{i}" for i in range(k)),
    ]


def response_features(
    model: SegmentationModel, block: CodedBlock
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coded block -> (set-aside mask of every row, segment of the kept rows (the segmenter's own labels, as
    in the assignments), float32 features of the kept rows in ``feature_names`` order)."""
    aside, features = model.standardize_block(block)
    reduced = model.pca.transform_array(features)
    centres = np.asarray(model.segmenter.centres_, dtype="float64")
    distances = np.sqrt(((reduced[:, None, :].astype("float64") - centres[None]) ** 2).sum(axis=2))
    labels = model.segmenter.predict_block(reduced) if len(reduced) else np.zeros(0, dtype=np.intp)
    membership = np.zeros_like(distances)
    membership[np.arange(len(labels)), labels] = 1.0
    features[_missing_mask(model, block, np.flatnonzero(~aside))] = np.nan
    return aside, labels.astype(np.int32), np.hstack([features, membership, distances]).astype("float32")


def _missing_mask(model: SegmentationModel, block: CodedBlock, rows: np.ndarray) -> np.ndarray:
    """(rows, features) True where the feature's source cell was missing or an unknown code (so imputed)."""
    source, _, columns, _, rest = model.compile().__dict__["_gather"]
    codebook = model.codebook
    mask = np.zeros((len(rows), len(model.scaler.feature_names_)), dtype=bool)
    positions = block.positions[rows][:, source].astype(np.int64)
    mask[:, columns] = codebook.is_missing[codebook.offsets[source] + positions]
    for lookup in rest:
        empty = block.rest[lookup.codes.attribute.name].isna().to_numpy()[rows]
        mask[:, lookup.features] = empty[:, None]
    return mask


# ---------------------------------------------------------------------------------------------- model


@dataclass
class ResponseModel:
    """LightGBM binary classifier with the positive class up-weighted; scikit-learn-like ``fit``/``predict``.

    Parameters: ``params`` (LightGBM parameters; default ``DEFAULT_PARAMS``), ``num_boost_round``, ``seed``,
    ``positive_weight`` ("sqrt", "balanced" or "none": ``scale_pos_weight`` = (negatives/positives) ** 0.5,
    1 or 0).
    Attributes after ``fit``: ``booster_`` (lightgbm.Booster), ``feature_names_``, ``scale_pos_weight_``.
    """

    params: dict = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    num_boost_round: int = DEFAULT_ROUNDS
    seed: int = 0
    positive_weight: str = "sqrt"

    def fit(self, X: np.ndarray, y: np.ndarray, names: list[str] | None = None) -> ResponseModel:
        import lightgbm

        y = np.asarray(y, dtype="int8")
        positives = int(y.sum())
        if positives == 0 or positives == len(y):
            raise ValueError(f"the response needs both classes to fit; got {positives} of {len(y)} positive")
        if self.positive_weight not in POSITIVE_WEIGHTS:
            raise ValueError(
                f"positive_weight {self.positive_weight!r} is not one of {', '.join(POSITIVE_WEIGHTS)}"
            )
        self.scale_pos_weight_ = ((len(y) - positives) / positives) ** POSITIVE_WEIGHTS[self.positive_weight]
        self.feature_names_ = list(names) if names is not None else [f"f{i}" for i in range(X.shape[1])]
        params = {**self.params, "seed": self.seed, "scale_pos_weight": self.scale_pos_weight_}
        data = lightgbm.Dataset(X, label=y, feature_name=self.feature_names_, free_raw_data=True)
        self.booster_ = lightgbm.train(params, data, num_boost_round=self.num_boost_round)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability-like scores (float64). Up-weighting inflates them; only their order is calibrated."""
        if len(X) == 0:
            return np.zeros(0)
        return self.booster_.predict(X)

    def save(self, folder: str | Path) -> None:
        """``booster.txt`` (LightGBM text format) and ``response_model.json``; no pickle."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(folder / BOOSTER_FILE))
        description = {
            "format": RESPONSE_FORMAT,
            "library": "lightgbm",
            "params": self.params,
            "num_boost_round": self.num_boost_round,
            "seed": self.seed,
            "positive_weight": self.positive_weight,
            "scale_pos_weight": self.scale_pos_weight_,
            "feature_names": self.feature_names_,
        }
        (folder / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> ResponseModel:
        """Parse a saved model. The booster is LightGBM's own text format, parsed by LightGBM; anything else
        (a pickle, a truncated file) is refused with a ValueError, never executed."""
        import lightgbm

        folder = Path(folder)
        try:
            description = json.loads((folder / DESCRIPTION_FILE).read_text(encoding="utf-8"))
            text = (folder / BOOSTER_FILE).read_text(encoding="utf-8")
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"{folder}: not a saved response model ({error.filename} missing)"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{folder}: not a saved response model ({error})") from None
        if description.get("format") != RESPONSE_FORMAT:
            raise ValueError(
                f"{folder}: response model format {description.get('format')} is not {RESPONSE_FORMAT}"
            )
        if not text.startswith("tree\n"):
            raise ValueError(f"{folder / BOOSTER_FILE}: not a LightGBM text model")
        try:
            booster = lightgbm.Booster(model_str=text)
        except lightgbm.basic.LightGBMError as error:
            raise ValueError(f"{folder / BOOSTER_FILE}: not a LightGBM text model ({error})") from None
        if booster.feature_name() != description["feature_names"]:
            raise ValueError(f"{folder}: {BOOSTER_FILE} and {DESCRIPTION_FILE} list different features")
        model = cls(
            description["params"],
            description["num_boost_round"],
            description["seed"],
            description["positive_weight"],
        )
        model.booster_ = booster
        model.feature_names_ = description["feature_names"]
        model.scale_pos_weight_ = description["scale_pos_weight"]
        return model


def _summary(values: list[float]) -> dict:
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)),
        "folds": [float(v) for v in values],
    }


def cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    lift: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    make_model=ResponseModel,
) -> dict:
    """Stratified ``folds``-fold ROC AUC and PR AUC of the model, and of two rankings on the same folds: by the
    segment's response rate (learnt on the training folds) and by the segment's lift (``lift[label]``).

    ``labels`` are the rows' segment indices. Returns {"folds", "model", "segment_rate", "segment_lift"}, each
    ranking with ``roc_auc`` and ``pr_auc`` as {"mean", "std", "folds"}; the model's also ``seconds_per_fold``
    and ``gains``, the cumulative gains of its out-of-fold scores (``compare.cumulative_gains``).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype="int8")
    lift = np.asarray(lift, dtype="float64")
    scores: dict[str, dict[str, list[float]]] = {
        name: {"roc_auc": [], "pr_auc": []} for name in ("model", "segment_rate", "segment_lift")
    }
    seconds = []
    out_of_fold = np.empty(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(X, y):
        started = time.perf_counter()
        predicted = make_model(seed=seed).fit(X[train], y[train]).predict(X[test])
        out_of_fold[test] = predicted
        seconds.append(time.perf_counter() - started)
        positives = np.bincount(labels[train], weights=y[train], minlength=len(lift))
        rows = np.bincount(labels[train], minlength=len(lift))
        rate = np.where(rows > 0, positives / np.maximum(rows, 1), y[train].mean())
        for name, score in (
            ("model", predicted),
            ("segment_rate", rate[labels[test]]),
            ("segment_lift", lift[labels[test]]),
        ):
            scores[name]["roc_auc"].append(roc_auc_score(y[test], score))
            scores[name]["pr_auc"].append(average_precision_score(y[test], score))
    result = {name: {metric: _summary(v) for metric, v in values.items()} for name, values in scores.items()}
    result["model"]["seconds_per_fold"] = float(np.mean(seconds))
    result["model"]["gains"] = cumulative_gains(y, out_of_fold)
    return {"folds": folds, **result}


# -------------------------------------------------------------------------------------------- scoring


def score_block(
    model: SegmentationModel, response: ResponseModel, block: CodedBlock, table: str
) -> pd.DataFrame:
    """Coded block -> ``LNR, table, segment, probability`` for every row; set-aside rows get
    ``insufficient_data`` and a missing probability."""
    aside, labels, features = response_features(model, block)
    segment = np.full(len(block), INSUFFICIENT, dtype=object)
    segment[~aside] = labels.astype(str)
    probability = np.full(len(block), np.nan)
    probability[~aside] = response.predict(features)
    return pd.DataFrame(
        {
            "LNR": block.ids.astype("int64"),
            "table": pd.array([table] * len(block), dtype="string"),
            "segment": pd.array(segment, dtype="string"),
            "probability": probability,
        }
    )


def rank_scores(scores: pd.DataFrame, lift: dict[str, float]) -> pd.DataFrame:
    """Scored rows (set-aside rows dropped) -> ``LNR, segment, probability, rank``: rank 1 is the most
    likely responder; ties by the segment's lift (higher first), then LNR."""
    scored = scores[scores["probability"].notna()]
    ordered = scored.assign(lift=scored["segment"].astype(str).map(lift).astype("float64")).sort_values(
        ["probability", "lift", "LNR"], ascending=[False, False, True], kind="stable"
    )
    ordered = ordered[["LNR", "segment", "probability"]].reset_index(drop=True)
    return ordered.assign(rank=np.arange(1, len(ordered) + 1, dtype="int64"))


def submission(scores: pd.DataFrame, set_aside_probability: float) -> pd.DataFrame:
    """``LNR, RESPONSE`` for every row (the leaderboard's format); set-aside rows, which the model cannot
    score, get ``set_aside_probability`` (the training response rate of set-aside rows)."""
    probability = scores["probability"].fillna(set_aside_probability)
    return pd.DataFrame({"LNR": scores["LNR"].to_numpy(), "RESPONSE": probability.to_numpy()})


# ------------------------------------------------------------------------------------------ responses


def read_responses(
    path: str, id_column: str, response_column: str, storage_options: dict | None = None
) -> pd.DataFrame:
    """``id_column, response`` (int8 0/1) of one mail-out file (CSV with ``;`` or Parquet). Any other value,
    an empty cell included, is an InputError naming the file, column, row id and value."""
    from .io import is_parquet

    columns = [id_column, response_column]
    try:
        if is_parquet(path):
            raw = pd.read_parquet(path, columns=columns, storage_options=storage_options).astype(str)
        else:
            raw = pd.read_csv(
                path,
                sep=";",
                usecols=columns,
                dtype=str,
                keep_default_na=False,
                storage_options=storage_options,
            )
    except ValueError as error:
        raise InputError(f"{path}: cannot read columns {id_column}, {response_column}: {error}") from None
    text = raw[response_column].str.strip().str.replace(r"\.0$", "", regex=True)
    bad = ~text.isin(["0", "1"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"{path}: column {response_column}, row with {id_column}={raw[id_column].iloc[row]}: "
            f"value {raw[response_column].iloc[row]!r} is not 0 or 1"
        )
    return pd.DataFrame(
        {id_column: pd.to_numeric(raw[id_column]).astype("int64"), "response": text.astype("int8")}
    )


# ------------------------------------------------------------------------------------------- the stage

SCORED_TABLES = ("population", "mailout_train", "mailout_test")
_SCORE_META = pd.DataFrame(
    {
        "LNR": pd.Series(dtype="int64"),
        "table": pd.Series(dtype="string"),
        "segment": pd.Series(dtype="string"),
        "probability": pd.Series(dtype="float64"),
    }
)


def _train_block(model: SegmentationModel, block: CodedBlock) -> tuple:
    return (block.ids, *response_features(model, block))


def _responses_of(ids: np.ndarray, responses: pd.DataFrame, id_column: str, source: str) -> np.ndarray:
    """The 0/1 response of each id, in ``ids`` order (every mail-out row must have exactly one)."""
    if responses[id_column].duplicated().any():
        twice = responses.loc[responses[id_column].duplicated(), id_column].iloc[0]
        raise InputError(f"{source}: column {id_column}: value {twice} appears more than once")
    found = responses.set_index(id_column)["response"].reindex(ids)
    if found.isna().any():
        raise InputError(
            f"{source}: column {id_column}: row {ids[np.flatnonzero(found.isna())[0]]} has no response"
        )
    return found.to_numpy(dtype="int8")


def response_stage(
    session,
    model: SegmentationModel,
    tables: dict,
    blocks: dict,
    proportions: pd.DataFrame,
    folder,
    seed: int,
) -> dict | None:
    """The job's response stage, with a ``mailout_train`` among ``tables`` (``io.Table``; ``blocks``: their
    ``scratch.Blocks``): :func:`run_response`, rewriting proportions.csv with its columns. Returns the
    run.json ``response`` section, None without a mail-out."""
    if "mailout_train" not in tables:
        return None
    with session.stage("response"):
        loaded = {name: blocks[name].load() for name in SCORED_TABLES if name in blocks}
        proportions, response = run_response(model, loaded, tables["mailout_train"].paths, proportions, folder,
                                              session.profile.storage_options, seed)  # fmt: skip
        folder.write(PROPORTIONS, proportions)
    return response


def run_response(
    model: SegmentationModel,
    blocks: dict[str, list],
    train_paths: list[str],
    proportions: pd.DataFrame,
    folder,
    storage_options: dict | None = None,
    seed: int = 0,
    folds: int = 5,
) -> tuple[pd.DataFrame, dict]:
    """The response stage of a job with a ``mailout_train``: response per segment, the model (cross-validated,
    fitted, saved in ``model/response``) and the scores of every table in ``blocks`` (lazy coded blocks per
    table), written by the workers to ``response_scores/``; ``mailout_scores.parquet`` and ``submission.csv``
    for ``mailout_test``. Returns (proportions with ``RESPONSE_COLUMNS``, the run.json ``response`` section).
    """
    import dask
    import dask.dataframe as dd
    import lightgbm

    from .compare import compare_response, response_rate_test
    from .model import segment_names

    started = time.perf_counter()
    schema = model.schema
    id_column = schema.id_column
    response_column = schema.extras("mailout_train")[0]
    shared = dask.delayed(model, traverse=False)
    reads = [
        dask.delayed(read_responses)(p, id_column, response_column, storage_options) for p in train_paths
    ]
    parts = [dask.delayed(_train_block)(shared, b) for b in blocks["mailout_train"]]
    responses, parts = dask.compute(reads, parts)
    ids = np.concatenate([p[0] for p in parts])
    aside = np.concatenate([p[1] for p in parts])
    labels = np.concatenate([p[2] for p in parts])
    X = np.concatenate([p[3] for p in parts])
    y = _responses_of(ids, pd.concat(responses, ignore_index=True), id_column, ", ".join(train_paths))

    k = len(model.segmenter.centres_)
    segments = np.full(len(ids), INSUFFICIENT, dtype=object)
    segments[~aside] = labels.astype(str)
    by_segment = compare_response(pd.Series(segments), pd.Series(y), segment_names(k))
    proportions = proportions.join(by_segment, on="segment")
    lift = (
        proportions.set_index("segment")["ratio"]
        .reindex([str(i) for i in range(k)])
        .to_numpy(dtype="float64")
    )
    y_kept = y[~aside]
    positives = int(y_kept.sum())
    section: dict = {
        "mailout_train": {
            "rows": len(y),
            "responses": int(y.sum()),
            "rate": float(y.mean()) if len(y) else None,
        },
        "rate_test": response_rate_test(by_segment, exclude=(INSUFFICIENT,)),
    }
    if positives < MIN_RESPONSES:
        section["warning"] = (
            f"only {positives} responses among the assigned mail-out rows: figures are unreliable"
        )
        logger.warning("response: %s", section["warning"])
    if positives == 0 or positives == len(y_kept):
        section["model"] = None
        section["skipped"] = f"no model: {positives} of {len(y_kept)} assigned mail-out rows responded"
        logger.warning("response: %s", section["skipped"])
        return proportions, section

    names = feature_names(model)
    if positives >= folds:
        section["cross_validation"] = cross_validate(
            X, y_kept, labels, np.nan_to_num(lift, nan=1.0), folds, seed
        )
    fit_started = time.perf_counter()
    response = ResponseModel(seed=seed).fit(X, y_kept, names)
    fit_seconds = time.perf_counter() - fit_started
    response.save(folder.path(RESPONSE_MODEL))
    del X

    shared_response = dask.delayed(response, traverse=False)
    scored, counts = {}, {}
    for table in SCORED_TABLES:
        if table not in blocks:
            continue
        frame = dd.from_delayed(
            [dask.delayed(score_block)(shared, shared_response, b, table) for b in blocks[table]],
            meta=_SCORE_META,
            verify_meta=False,
        )
        scored[table] = frame.to_parquet(
            folder.url_for(RESPONSE_SCORES),
            write_index=False,
            compute=False,
            name_function=lambda i, t=table: f"{t}-{i:05d}.parquet",
            storage_options=storage_options,
            write_metadata_file=False,
        )
        missing = frame["probability"].isna()
        counts[table] = ((~missing).sum(), missing.sum())
        if table == "mailout_test":
            scored["frame"] = frame
    (computed,) = dask.compute({"scored": scored, "counts": counts})
    section["scores"] = {
        table: {"rows": int(n + m), "scored": int(n), "set_aside": int(m)}
        for table, (n, m) in computed["counts"].items()
    }
    files = {"model": RESPONSE_MODEL.name, "scores": RESPONSE_SCORES.name}
    if "frame" in computed["scored"]:
        test = computed["scored"]["frame"]
        lift_by_name = {str(i): float(v) for i, v in enumerate(lift)}
        folder.write(MAILOUT_SCORES, rank_scores(test, lift_by_name))
        aside_rate = by_segment.loc[INSUFFICIENT, "response_rate"]
        fallback = float(aside_rate) if by_segment.loc[INSUFFICIENT, "mailout_count"] else float(y.mean())
        folder.write(SUBMISSION, submission(test, fallback))
        files.update(mailout_scores=MAILOUT_SCORES.name, submission=SUBMISSION.name)
    section["model"] = {
        "library": "lightgbm",
        "version": lightgbm.__version__,
        "features": len(names),
        "rows": len(y_kept),
        "responses": positives,
        "params": response.params,
        "num_boost_round": response.num_boost_round,
        "scale_pos_weight": response.scale_pos_weight_,
        "fit_seconds": fit_seconds,
    }
    section["files"] = files
    section["seconds"] = time.perf_counter() - started
    return proportions, section


def _score_partition(
    raw: pd.DataFrame, model: SegmentationModel, response: ResponseModel, table: str
) -> pd.DataFrame:
    return score_block(model, response, model.codebook.encode(raw), table)


def score_file(model_dir: str, input_path: str, out: str, storage_options: dict | None = None) -> dict:
    """Score any file with a run's saved model (``RUN_DIR/model`` with ``response/``): partitions are scored
    where Dask runs them; the ranked ``LNR, segment, probability, rank`` (set-aside rows left out) is
    written to the Parquet file ``out`` atomically. Ties are broken by the run's lift when its
    proportions.csv sits next to the model folder. Returns the row accounting."""
    from .io import read_table, replace_when_done

    model = SegmentationModel.load(model_dir).compile()
    response = ResponseModel.load(Path(model_dir) / "response")
    name = Path(str(input_path)).name.split(".")[0]
    table = name if name in SCORED_TABLES or name == "customers" else "mailout_test"
    source = read_table(input_path, model.schema, table, storage_options)
    scores = source.frame.map_partitions(_score_partition, model, response, table, meta=_SCORE_META).compute()
    frame = RunReader(Path(model_dir).parent).read_if_present(PROPORTIONS)
    lift = {} if frame is None else dict(zip(frame["segment"], frame["ratio"], strict=True))
    ranked = rank_scores(scores, lift)
    with replace_when_done(out) as temporary:
        ranked.to_parquet(temporary, index=False)
    return {"rows": len(scores), "scored": len(ranked), "set_aside": len(scores) - len(ranked)}
