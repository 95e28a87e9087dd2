"""Response model benchmark: LightGBM vs scikit-learn HistGradientBoostingClassifier (and XGBoost when
importable) on the generated mail-out at the real size (42,962 rows, ~1.24% responding).

Every library gets the same features (the mail-out's codes as numbers: unknown codes and empty cells as
NaN, text codes by their position, dates by year), the same stratified folds, comparable settings
(the job's LightGBM settings: 300 rounds, learning rate 0.02, 7 leaves, at least 40 rows a leaf, L2 1.0,
one thread), positives up-weighted by sqrt(negatives/positives) (LightGBM also with the full ratio and
unweighted; HistGradientBoosting with ``class_weight="balanced"``, the full ratio) and is scored by 5-fold ROC AUC and PR AUC (average precision) and
seconds per fold, next to the Bayes limit (the planted probability's AUC on the same rows) and the
ranking by the planted segment's response rate alone.

    python benchmarks/bench_response.py --data data/bench-response            # generates it if absent
    python benchmarks/bench_response.py --data data/bench-response --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from segmentation.response import DEFAULT_PARAMS, DEFAULT_ROUNDS, ResponseModel
from segmentation.schema import load_schema
from segmentation.synth import generate

REAL_ROWS = 42_962


def features(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(codes as float features, RESPONSE, LNR) of a generated mail-out train file."""
    schema = load_schema()
    raw = pd.read_csv(path, sep=";", dtype=str)
    columns = {}
    for attribute in schema.features():
        text = raw[attribute.name]
        if attribute.kind == "date":
            columns[attribute.name] = pd.to_numeric(text.str[:4])
        elif attribute.integer_coded:
            values = pd.to_numeric(text)
            unknown = [int(c) for c in attribute.unknown_codes if c not in attribute.codes]
            columns[attribute.name] = values.mask(values.isin(unknown))
        else:
            columns[attribute.name] = text.map({code: float(i) for i, code in enumerate(attribute.codes)})
    return pd.DataFrame(columns), raw["RESPONSE"].astype(int).to_numpy(), raw["LNR"].astype(int).to_numpy()


def _lightgbm(weight: str):
    return lambda seed: ResponseModel(seed=seed, positive_weight=weight)


class _Sklearn:
    def __init__(self, seed: int):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.model = HistGradientBoostingClassifier(
            learning_rate=DEFAULT_PARAMS["learning_rate"],
            max_iter=DEFAULT_ROUNDS,
            max_leaf_nodes=DEFAULT_PARAMS["num_leaves"],
            min_samples_leaf=DEFAULT_PARAMS["min_data_in_leaf"],
            l2_regularization=DEFAULT_PARAMS["lambda_l2"],
            max_features=DEFAULT_PARAMS["feature_fraction"],
            class_weight="balanced",
            early_stopping=False,
            random_state=seed,
        )

    def fit(self, X, y):
        self.model.fit(X, y)
        return self

    def predict(self, X):
        return self.model.predict_proba(X)[:, 1]


class _XGBoost:
    def __init__(self, seed: int):
        import xgboost

        self.xgboost, self.seed = xgboost, seed

    def fit(self, X, y):
        self.model = self.xgboost.XGBClassifier(
            n_estimators=DEFAULT_ROUNDS,
            learning_rate=DEFAULT_PARAMS["learning_rate"],
            max_leaves=DEFAULT_PARAMS["num_leaves"],
            grow_policy="lossguide",
            min_child_weight=1.0,
            reg_lambda=DEFAULT_PARAMS["lambda_l2"],
            colsample_bytree=DEFAULT_PARAMS["feature_fraction"],
            subsample=DEFAULT_PARAMS["bagging_fraction"],
            scale_pos_weight=np.sqrt((len(y) - y.sum()) / y.sum()),
            tree_method="hist",
            n_jobs=1,
            random_state=self.seed,
        ).fit(X, y)
        return self

    def predict(self, X):
        return self.model.predict_proba(X)[:, 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/bench-response"))
    parser.add_argument("--rows", type=int, default=REAL_ROWS, help="mail-out train rows when generating")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not (args.data / "truth" / "planted.json").exists():
        generate(
            args.data, rows=1_000, customers_rows=300, mailout_rows=args.rows, seed=args.seed, processes=2
        )
    X, y, lnr = features(args.data / "mailout_train.csv")
    truth = pd.read_csv(args.data / "truth" / "mailout_train.csv", sep=";").set_index("LNR").loc[lnr]
    X = X.to_numpy(dtype="float32")
    libraries = {f"lightgbm-{w}": _lightgbm(w) for w in ("sqrt", "balanced", "none")}
    libraries["sklearn-hgb"] = _Sklearn
    try:
        import xgboost  # noqa: F401

        libraries["xgboost"] = _XGBoost
    except ImportError:
        pass
    splitter = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    results: dict[str, dict] = {}
    for name, make in libraries.items():
        roc, pr, seconds = [], [], []
        for train, test in splitter.split(X, y):
            started = time.perf_counter()
            predicted = make(args.seed).fit(X[train], y[train]).predict(X[test])
            seconds.append(time.perf_counter() - started)
            roc.append(roc_auc_score(y[test], predicted))
            pr.append(average_precision_score(y[test], predicted))
        results[name] = {
            "roc_auc": float(np.mean(roc)),
            "roc_auc_std": float(np.std(roc, ddof=1)),
            "pr_auc": float(np.mean(pr)),
            "pr_auc_std": float(np.std(pr, ddof=1)),
            "seconds_per_fold": float(np.mean(seconds)),
        }
    rate = truth.groupby("segment")["response"].transform("mean")
    reference = {
        "rows": len(y),
        "responses": int(y.sum()),
        "features": X.shape[1],
        "bayes_roc_auc": roc_auc_score(y, truth["probability"]),
        "bayes_pr_auc": average_precision_score(y, truth["probability"]),
        "planted_segment_rate_roc_auc": roc_auc_score(y, rate),
    }
    print(f"{reference['rows']:,} rows, {reference['responses']} responses, {reference['features']} features")
    print(f"Bayes limit: ROC AUC {reference['bayes_roc_auc']:.3f}, PR AUC {reference['bayes_pr_auc']:.3f}")
    print(
        f"planted segment's rate alone (in-sample): ROC AUC {reference['planted_segment_rate_roc_auc']:.3f}"
    )
    print(f"{'library':<18} {'ROC AUC':>15} {'PR AUC':>15} {'s/fold':>8}")
    for name, r in results.items():
        print(
            f"{name:<18} {r['roc_auc']:.3f} ± {r['roc_auc_std']:.3f}   {r['pr_auc']:.3f} ± {r['pr_auc_std']:.3f}"
            f" {r['seconds_per_fold']:8.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"reference": reference, "libraries": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
