"""This job vs the plain pandas + scikit-learn notebook pipeline, side by side in one run.

    python benchmarks/bench_pipeline.py [--rows 891221 --customers-rows 191652] [--data DIR] [--k 8]

Generates Arvato-shaped data (real sizes by default; reused if ``--data`` already holds it), then runs, each in
its own subprocess so that memory is measured for the whole process tree (client + scheduler + workers):

1. the notebook pipeline: ``read_csv`` both tables, unknown codes -> NaN, drop columns > 30% missing and rows >
   50% missing, median impute, ``StandardScaler``, ``PCA(0.9)``, ``KMeans(k, n_init=10)``, predict customers;
2. this job: ``segmentation run`` with the same k (elbow skipped), default local profile.

Prints wall seconds, peak RSS of the process tree (sampled every 0.2 s with psutil), the ratios, and the
adjusted Rand index of each against the planted segments. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import psutil
from sklearn.metrics import adjusted_rand_score

NOTEBOOK = textwrap.dedent(
    """
    import sys, numpy as np, pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler
    from segmentation.schema import load_schema

    data, k, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    schema = load_schema()
    population = pd.read_csv(f"{data}/population.csv", sep=";", low_memory=False)
    customers = pd.read_csv(f"{data}/customers.csv", sep=";", low_memory=False)
    numeric = [a.name for a in schema.features() if a.kind in ("ordinal", "numeric", "binary", "mixed")
               and a.integer_coded]
    def recode(frame):
        values = frame[numeric].apply(pd.to_numeric, errors="coerce")
        for column in numeric:
            unknown = [float(c) for c in schema[column].unknown_codes]
            if unknown:
                values[column] = values[column].where(~values[column].isin(unknown))
        return values
    pop = recode(population)
    kept_columns = pop.columns[pop.isna().mean() <= 0.3]
    pop = pop[kept_columns]
    keep = pop.isna().mean(axis=1) <= 0.5
    imputer = SimpleImputer(strategy="median").fit(pop[keep])
    scaler = StandardScaler().fit(imputer.transform(pop[keep]))
    X = scaler.transform(imputer.transform(pop[keep]))
    pca = PCA(n_components=0.9, svd_solver="full").fit(X)
    Z = pca.transform(X)
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=0).fit(Z)
    cust = recode(customers)[kept_columns]
    ckeep = cust.isna().mean(axis=1) <= 0.5
    clabels = kmeans.predict(pca.transform(scaler.transform(imputer.transform(cust[ckeep]))))
    pd.DataFrame({"LNR": population.loc[keep, "LNR"].to_numpy(), "segment": kmeans.labels_}).to_parquet(out)
    print(f"notebook: {int(keep.sum())} population rows kept, {pca.n_components_} components, "
          f"{int(ckeep.sum())} customers assigned", flush=True)
    """
)


def peak_tree_rss(command: list[str]) -> tuple[float, int, str]:
    """Run ``command``; return (seconds, peak RSS of it and all its descendants, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        total = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                try:
                    total += member.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.2)
    output = process.stdout.read()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({process.returncode}):\n{output[-3000:]}")
    return time.perf_counter() - started, peak, output


def ari(assignments: pd.DataFrame, data: Path) -> float:
    truth = pd.read_csv(data / "truth" / "population.csv", sep=";").rename(columns={"segment": "planted"})
    merged = assignments.merge(truth, on="LNR")
    merged = merged[merged["segment"] != "insufficient_data"]
    return adjusted_rand_score(merged["planted"], merged["segment"].astype(str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=891_221)
    parser.add_argument("--customers-rows", type=int, default=191_652)
    parser.add_argument("--data", type=Path, default=Path("data/bench"))
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cluster", default=None, help="cluster profile for the job")
    parser.add_argument(
        "--notebook-seconds",
        type=float,
        default=None,
        help="skip the notebook pipeline and use this time for the ratio (peak memory ratio then not shown)",
    )
    args = parser.parse_args()

    if (
        not (args.data / "truth" / "planted.json").exists()
        or json.loads((args.data / "truth" / "planted.json").read_text())["rows"]["population"] != args.rows
    ):
        from segmentation.synth import generate

        print(f"generating {args.rows:,} + {args.customers_rows:,} rows into {args.data} ...", flush=True)
        generate(
            args.data, rows=args.rows, customers_rows=args.customers_rows, mailout_rows=1000, seed=args.seed
        )

    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        scratch = Path(scratch)
        notebook_out = scratch / "notebook.parquet"
        script = scratch / "notebook.py"
        script.write_text(NOTEBOOK)
        if args.notebook_seconds is None:
            print("running the pandas + scikit-learn notebook pipeline ...", flush=True)
            nb_seconds, nb_peak, nb_output = peak_tree_rss(
                [sys.executable, str(script), str(args.data), str(args.k), str(notebook_out)]
            )
            print(nb_output.strip().splitlines()[-1])
        else:
            nb_seconds, nb_peak = args.notebook_seconds, float("nan")
        print("running segmentation ...", flush=True)
        run_dir = scratch / "run"
        command = [
            sys.executable,
            "-m",
            "segmentation.cli",
            "run",
            "--population",
            str(args.data / "population.csv"),
            "--customers",
            str(args.data / "customers.csv"),
            "--out",
            str(run_dir),
            "--k",
            str(args.k),
            "--seed",
            str(args.seed),
            "--no-report",
        ]
        if args.cluster:
            command += ["--cluster", args.cluster]
        job_seconds, job_peak, _ = peak_tree_rss(command)
        run = json.loads((run_dir / "run.json").read_text())
        ours = pd.read_parquet(run_dir / "assignments").query("table == 'population'")
        ours_ari = ari(ours, args.data)
        nb_ari = ari(pd.read_parquet(notebook_out), args.data) if notebook_out.exists() else float("nan")

    gib = 2**30
    print()
    print(f"rows: population {args.rows:,}, customers {args.customers_rows:,}; k={args.k}")
    print(f"{'':28}{'seconds':>10}{'peak RSS GiB':>15}{'ARI':>8}")
    print(f"{'pandas + scikit-learn':28}{nb_seconds:>10.1f}{nb_peak / gib:>15.2f}{nb_ari:>8.3f}")
    print(f"{'segmentation (Dask)':28}{job_seconds:>10.1f}{job_peak / gib:>15.2f}{ours_ari:>8.3f}")
    print(
        f"ratio (segmentation / notebook): time {job_seconds / nb_seconds:.2f}x, "
        f"peak memory {job_peak / nb_peak:.2f}x"
    )
    print("job stage timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in run["timings"].items()))
    print(f"job PCA: {run['pca']}, peak worker memory {run.get('peak_worker_memory', 0) / gib:.2f} GiB")


if __name__ == "__main__":
    main()
