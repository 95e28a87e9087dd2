"""Response model benchmark at the real mail-out size: the job's features, the Bayes limit on the same rows.

Generates Arvato-shaped data (60,000 population, 20,000 customers, 42,962 mail-out train rows ~1.24%
responding, 42,833 test rows), runs the job on it (k = the planted segments, no report) and takes the
features the job's response model gets (``response.response_features`` through the saved model: the
standardized features with missing cells as NaN, segment membership, distances to the centres) for the
assigned mail-out rows. On the same stratified folds (``response.cross_validate``) it compares:

- LightGBM with the job's settings (``DEFAULT_PARAMS``: stumps) and variants: the former settings (7 leaves,
  half the features and 80% of the rows a round, 300 rounds at learning rate 0.02), positives unweighted
  and weighted by the full ratio;
- scikit-learn's HistGradientBoostingClassifier and XGBoost (when importable) with the same stump settings;

next to the Bayes limit on the same rows and folds (the AUC of the planted probability, which knows the
true segment), the ranking by the segment's response rate and lift alone, and a logistic regression on the
oracle's inputs (the three planted attributes and the true or the assigned segment): what a model that
knew which columns matter could reach from ~480 responses. Then it fits the job's model on all the training
rows and scores the mail-out test: ROC AUC against the planted test responses and the top-decile lift.
Exits with status 1 when the job's model misses the acceptance (5-fold ROC AUC >= Bayes - 0.02).

    python benchmarks/bench_response.py --data data/bench-response        # generates it and runs the job once
    python benchmarks/bench_response.py --data data/bench-response --seed 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from segmentation.io import read_table
from segmentation.model import SegmentationModel
from segmentation.response import (
    DEFAULT_PARAMS,
    DEFAULT_ROUNDS,
    ResponseModel,
    cross_validate,
    feature_names,
    response_features,
)
from segmentation.synth import generate

REAL_ROWS = 42_962
TOLERANCE = 0.02  # the acceptance: cross-validated ROC AUC >= Bayes - 0.02
FORMER = {
    "learning_rate": 0.02,
    "num_leaves": 7,
    "max_bin": 255,
    "feature_fraction": 0.5,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
}


def prepare(data: Path, rows: int, seed: int) -> Path:
    """Generate the data and run the job once (both skipped when present); returns the run folder."""
    from segmentation.config import load_job
    from segmentation.job import run_job

    planted = data / "truth" / "planted.json"
    if not planted.exists():
        generate(data, rows=60_000, customers_rows=20_000, mailout_rows=rows, seed=seed, processes=2)
    run = data / "run"
    if not (run / "run.json").exists():
        profile = data / "local.yml"
        profile.write_text(
            "kind: local\nn_workers: 2\nthreads_per_worker: 1\nmemory_limit: 3GiB\n"
            "dashboard_address: 127.0.0.1:0\n"
        )
        inputs = {
            f"inputs.{t}": str(data / f"{t}.csv")
            for t in ("population", "customers", "mailout_train", "mailout_test")
        }
        k = len(json.loads(planted.read_text())["response"]["rate_by_segment"])
        overrides = {**inputs, "output": str(run), "cluster": str(profile), "seed": seed, "clustering.k": k}
        run_job(load_job(None, {**overrides, "report": False}))
    return run


def job_features(run: Path, data: Path, table: str) -> dict:
    """The response features of a mail-out table through the run's saved model, with the planted truth
    (segment, response, probability) of its assigned rows and the planted attributes' columns."""
    model = SegmentationModel.load(run / "model").compile()
    raw = read_table(data / f"{table}.csv", model.schema, table).frame.compute()
    block = model.codebook.encode(raw)
    aside, labels, X = response_features(model, block)
    ids = block.ids.astype("int64")[~aside]
    truth = pd.read_csv(data / "truth" / f"{table}.csv", sep=";").set_index("LNR").loc[ids]
    return {
        "X": X,
        "labels": labels,
        "segment": truth["segment"].to_numpy(),
        "y": truth["response"].to_numpy(dtype="int8"),
        "probability": truth["probability"].to_numpy(),
        "names": feature_names(model),
    }


class _Sklearn:
    """HistGradientBoostingClassifier with the job's stump settings and positive weight."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, X, y):
        from sklearn.ensemble import HistGradientBoostingClassifier

        weight = np.where(y == 1, np.sqrt((len(y) - y.sum()) / y.sum()), 1.0)
        self.model = HistGradientBoostingClassifier(
            learning_rate=DEFAULT_PARAMS["learning_rate"],
            max_iter=DEFAULT_ROUNDS,
            max_leaf_nodes=DEFAULT_PARAMS["num_leaves"],
            min_samples_leaf=DEFAULT_PARAMS["min_data_in_leaf"],
            l2_regularization=DEFAULT_PARAMS["lambda_l2"],
            max_bins=DEFAULT_PARAMS["max_bin"],
            early_stopping=False,
            random_state=self.seed,
        ).fit(X, y, sample_weight=weight)
        return self

    def predict(self, X):
        return self.model.predict_proba(X)[:, 1]


class _XGBoost:
    """XGBoost with the job's stump settings and positive weight."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, X, y):
        import xgboost

        self.model = xgboost.XGBClassifier(
            n_estimators=DEFAULT_ROUNDS,
            learning_rate=DEFAULT_PARAMS["learning_rate"],
            max_depth=1,
            min_child_weight=1.0,
            reg_lambda=DEFAULT_PARAMS["lambda_l2"],
            max_bin=DEFAULT_PARAMS["max_bin"],
            scale_pos_weight=np.sqrt((len(y) - y.sum()) / y.sum()),
            tree_method="hist",
            n_jobs=1,
            random_state=self.seed,
        ).fit(X, y)
        return self

    def predict(self, X):
        return self.model.predict_proba(X)[:, 1]


def candidates() -> dict:
    """Name -> make_model(seed) for ``cross_validate``; the job's model first."""
    made = {
        "lightgbm (job)": ResponseModel,
        "lightgbm former": lambda seed: ResponseModel(
            params={**DEFAULT_PARAMS, **FORMER}, num_boost_round=300, seed=seed
        ),
        "lightgbm unweighted": lambda seed: ResponseModel(seed=seed, positive_weight="none"),
        "lightgbm full ratio": lambda seed: ResponseModel(seed=seed, positive_weight="balanced"),
        "sklearn hgb": _Sklearn,
    }
    try:
        import xgboost  # noqa: F401

        made["xgboost"] = _XGBoost
    except ImportError:
        pass
    return made


def oracle(train: dict, attributes: list[str], folds: int, seed: int) -> dict:
    """5-fold ROC AUC of a logistic regression on the planted attributes (missing -> their mean) and the
    true or the assigned segment: the ceiling of a model told which columns matter."""
    columns = [train["names"].index(name) for name in attributes]
    planted = np.nan_to_num(train["X"][:, columns], nan=0.0)
    k = int(max(train["segment"].max(), train["labels"].max())) + 1
    y = train["y"]
    results = {}
    for name, segment in (("true segment", train["segment"]), ("assigned segment", train["labels"])):
        X = np.hstack([np.eye(k)[segment], planted])
        aucs = []
        for fit, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
            model = LogisticRegression(max_iter=2_000).fit(X[fit], y[fit])
            aucs.append(roc_auc_score(y[test], model.predict_proba(X[test])[:, 1]))
        results[name] = {"mean": float(np.mean(aucs)), "std": float(np.std(aucs, ddof=1))}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/bench-response"))
    parser.add_argument("--rows", type=int, default=REAL_ROWS, help="mail-out train rows when generating")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only-job", action="store_true", help="the job's model only, no comparison")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    run = prepare(args.data, args.rows, args.seed)
    planted = json.loads((args.data / "truth" / "planted.json").read_text())["response"]
    train = job_features(run, args.data, "mailout_train")
    y = train["y"]
    proportions = pd.read_csv(run / "proportions.csv", dtype={"segment": str}).set_index("segment")
    k = len(planted["rate_by_segment"])
    lift = proportions["ratio"].reindex([str(i) for i in range(k)]).to_numpy(dtype="float64")

    splitter = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
    bayes_folds = [roc_auc_score(y[t], train["probability"][t]) for _, t in splitter.split(train["X"], y)]
    bayes = {
        "all_rows": planted["realised"]["mailout_train"]["bayes_roc_auc"],
        "assigned_rows": float(roc_auc_score(y, train["probability"])),
        "folds": bayes_folds,
        "std": float(np.std(bayes_folds, ddof=1)),
    }
    made = candidates()
    if args.only_job:
        made = {"lightgbm (job)": made["lightgbm (job)"]}
    results = {}
    for name, make in made.items():
        results[name] = cross_validate(
            train["X"], y, train["labels"], lift, args.folds, args.seed, make_model=make
        )
        results[name]["model"].pop("gains")
        gap = np.subtract(results[name]["model"]["roc_auc"]["folds"], bayes_folds)
        results[name]["gap_to_bayes"] = {"mean": float(gap.mean()), "std": float(np.std(gap, ddof=1))}
        print(f"{name}: {results[name]['model']['roc_auc']['mean']:.4f}", file=sys.stderr)
    ceiling = oracle(train, [a["name"] for a in planted["attributes"]], args.folds, args.seed)

    started = time.perf_counter()
    fitted = ResponseModel(seed=args.seed).fit(train["X"], y, train["names"])
    fit_seconds = time.perf_counter() - started
    test = job_features(run, args.data, "mailout_test")
    scores = fitted.predict(test["X"])
    top = np.argsort(-scores, kind="stable")[: len(scores) // 10]
    holdout = {
        "rows": len(scores),
        "responses": int(test["y"].sum()),
        "roc_auc": float(roc_auc_score(test["y"], scores)),
        "bayes_roc_auc": float(roc_auc_score(test["y"], test["probability"])),
        "top_decile_lift": float(test["y"][top].mean() / test["y"].mean()),
        "fit_seconds": fit_seconds,
    }

    job = results["lightgbm (job)"]
    print(
        f"{len(y):,} assigned mail-out rows, {int(y.sum())} responses, {train['X'].shape[1]} features; "
        f"Bayes ROC AUC {bayes['assigned_rows']:.4f} on them (fold spread {bayes['std']:.4f}), "
        f"{bayes['all_rows']:.4f} on all {planted['realised']['mailout_train']['rows']:,} rows"
    )
    print(
        f"segment rate alone {job['segment_rate']['roc_auc']['mean']:.4f} ± "
        f"{job['segment_rate']['roc_auc']['std']:.4f}, segment lift alone "
        f"{job['segment_lift']['roc_auc']['mean']:.4f} ± {job['segment_lift']['roc_auc']['std']:.4f}"
    )
    for name, r in ceiling.items():
        print(f"oracle logistic (planted attributes + {name}): {r['mean']:.4f} ± {r['std']:.4f}")
    print(f"{'model':<22} {'ROC AUC':>15} {'- Bayes':>16} {'PR AUC':>15} {'s/fold':>7}")
    for name, r in results.items():
        roc, pr, gap = r["model"]["roc_auc"], r["model"]["pr_auc"], r["gap_to_bayes"]
        print(
            f"{name:<22} {roc['mean']:.4f} ± {roc['std']:.4f} {gap['mean']:+.4f} ± {gap['std']:.4f} "
            f"{pr['mean']:.4f} ± {pr['std']:.4f} {r['model']['seconds_per_fold']:7.1f}"
        )
    print(
        f"mail-out test ({holdout['rows']:,} assigned rows, {holdout['responses']} responses): ROC AUC "
        f"{holdout['roc_auc']:.4f} (Bayes {holdout['bayes_roc_auc']:.4f}), top decile "
        f"{holdout['top_decile_lift']:.2f}x the base rate; fit {fit_seconds:.1f} s"
    )
    if args.json:
        payload = {"bayes": bayes, "oracle": ceiling, "models": results, "mailout_test": holdout}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    met = job["model"]["roc_auc"]["mean"] >= bayes["assigned_rows"] - TOLERANCE
    print(f"acceptance (CV ROC AUC >= Bayes - {TOLERANCE}): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
