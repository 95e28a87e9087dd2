"""This job vs the plain pandas + scikit-learn notebook pipeline and the raw-parse floor, side by side in one run.

    python benchmarks/bench_pipeline.py [--rows 891221 --customers-rows 191652] [--data DIR] [--k 8]
                                        [--layout generator|relayout] [--parquet] [--lock-notebook]
                                        [--repeat N] [--json OUT.json]

Generates Arvato-shaped data (real sizes by default; reused if ``--data`` already holds it); ``--layout
relayout`` rewrites it in a second file layout (``benchmarks/relayout.py``: other column order, integers
without ``.0``, quoted text codes, an undeclared sentinel, CRLF). Then runs, each in its own subprocess so that
memory is measured for the whole process tree (client + scheduler + workers):

1. the floor: one multi-threaded ``pyarrow.csv.read_csv`` of both tables (parse only, nothing else), run
   twice, the faster counting (its 5 GB make it the run most sensitive to how fast the machine hands out
   memory: on a VM whose freed memory goes back to the host, 9.6-19.1 s for the same parse);
2. the notebook pipeline a user would run today, in its own environment on the newest releases of pandas,
   scikit-learn and pyarrow (``benchmarks/.venv-notebook``, created on first use; ``--notebook-python`` to
   use another): ``read_csv`` both tables, unknown codes -> NaN, drop columns > 30% missing and rows > 50%
   missing, median impute, ``StandardScaler``, ``PCA(0.9)``, ``KMeans(k, n_init=10)``, predict customers;
3. this job: ``segmentation run`` with the same k (elbow skipped), default local profile;
4. with ``--lock-notebook``: the same notebook in this job's environment (the lock's older releases);
5. with ``--parquet``: ``segmentation ingest`` of both tables, then the job on the Parquet files.

Each of them starts with its input files in the page cache (read once, untimed, just before it) after a
pause of ``SETTLE_SECONDS`` (``peak_tree_rss``), and the machine's memory was touched once before the first
(``warm_memory``). With ``--repeat N`` every one of them runs N times and the fastest run counts (its
seconds, ARI and stages; the peak is the largest of the N): on a VM the same command varies by 20% from run
to run. Prints wall seconds, peak RSS of each process tree (sampled every 0.2 s with psutil), the ratios to
the notebook and to the floor, the job's stage breakdown and the adjusted Rand index of each against the
planted segments; ``--json`` saves all of it, every run's seconds included. Not a test: only ratios from one
run carry between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    from segmentation.schema import default_attributes_path, parse_attributes

    data, k, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    schema = parse_attributes(default_attributes_path().read_text(encoding="utf-8-sig"))
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
    population_ids = population["LNR"].to_numpy()
    pop = recode(population)
    del population  # the raw frame (text columns on some files) would stay beside the model's copies
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
    del customers
    ckeep = cust.isna().mean(axis=1) <= 0.5
    clabels = kmeans.predict(pca.transform(scaler.transform(imputer.transform(cust[ckeep]))))
    pd.DataFrame({"LNR": population_ids[keep.to_numpy()], "segment": kmeans.labels_}).to_parquet(out)
    print(f"notebook: {int(keep.sum())} population rows kept, {pca.n_components_} components, "
          f"{int(ckeep.sum())} customers assigned", flush=True)
    """
)


FLOOR = textwrap.dedent(
    """
    import sys, pyarrow.csv as pv
    rows = 0
    for path in sys.argv[1:]:
        table = pv.read_csv(path, parse_options=pv.ParseOptions(delimiter=";"))
        rows += table.num_rows
        del table
    print(f"floor: parsed {rows} rows", flush=True)
    """
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_ENV = ROOT / "benchmarks" / ".venv-notebook"
NOTEBOOK_PACKAGES = ["pandas", "scikit-learn", "pyarrow", "numpy"]


def notebook_python() -> str:
    """The notebook's own environment on the newest releases (created once; not the job's lock)."""
    python = NOTEBOOK_ENV / "bin" / "python"
    if not python.exists():
        print(f"creating {NOTEBOOK_ENV} with the newest {', '.join(NOTEBOOK_PACKAGES)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(NOTEBOOK_ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", *NOTEBOOK_PACKAGES], check=True
        )
    return str(python)


def package_versions(python: str) -> dict:
    code = (
        "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
        + repr(NOTEBOOK_PACKAGES)
        + "}))"
    )
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` now (0 if it does not exist)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(parent, name)).st_size
            except OSError:
                pass  # removed meanwhile
    return total


def warm_page_cache(paths: list[Path]) -> None:
    """Read ``paths`` (files, or folders of files) once, so that each timed run starts with its input in the
    page cache: the notebooks' 14-16 GiB evict the CSV, and the job, timed after them, read 0.38 GB of it
    from the disk (read stage 16.9 s against 11-13 s warm)."""
    for path in paths:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                with open(file, "rb") as handle:
                    while handle.read(16 * 2**20):
                        pass


def warm_memory(gib: float) -> None:
    """Touch ``gib`` GiB once in a process of its own, untimed, before anything is timed. A VM gives a
    process memory more slowly the first time the guest touches it after boot: the raw parse (5 GB) took
    19.1 s as the first timed run of a fresh VM and 9.96 s the next time, which made the job look 1.95x
    its floor rather than about 3.7x; the notebook's 14-16 GiB paid the same on its first run."""
    print(f"touching {gib:.0f} GiB of memory once (untimed) ...", flush=True)
    code = f"import numpy as np; np.ones({int(gib * 2**30)}, dtype=np.uint8)"  # writes every page
    subprocess.run([sys.executable, "-c", code], check=True)


# On a VM that hands freed memory back to its host (free page reporting), a process started within seconds
# of another freeing many GiB runs slowly: the real-size job took 46.2 s started 15 s after a process freed
# 17 GiB, 34.6 s after 30 s, 35.2-36.7 s right after, and 32.8-34.6 s with nothing before it. The notebook
# frees ~15 GiB at its end, so every timed command here starts after this pause.
SETTLE_SECONDS = 30.0


def peak_tree_rss(
    command: list[str],
    env: dict | None = None,
    folder_peaks: dict[Path, int] | None = None,
    inputs: list[Path] | None = None,
    settle: float = SETTLE_SECONDS,
) -> tuple[float, int, str]:
    """Run ``command``; return (seconds, peak RSS of it and all its descendants, stdout). First, untimed, a
    pause of ``settle`` seconds (``SETTLE_SECONDS``), then the ``inputs`` read into the page cache. With
    ``folder_peaks`` (folder -> 0), also record there the largest size each folder reached (sampled every
    2 s: scratch and spill folders)."""
    time.sleep(settle)
    warm_page_cache(inputs or [])
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    root = psutil.Process(process.pid)
    peak, samples = 0, 0
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
        if folder_peaks is not None and samples % 10 == 0:
            for folder in folder_peaks:
                folder_peaks[folder] = max(folder_peaks[folder], folder_bytes(folder))
        samples += 1
        if samples % 300 == 0:  # a minute: long runs (10x) must not look hung
            elapsed = time.perf_counter() - started
            print(f"  ... {elapsed:.0f} s, peak RSS so far {peak / 2**30:.2f} GiB", flush=True)
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


def job_command(population: Path, customers: Path, out: Path, args) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "segmentation.cli",
        "run",
        "--population",
        str(population),
        "--customers",
        str(customers),
        "--out",
        str(out),
        "--k",
        str(args.k),
        "--seed",
        str(args.seed),
        "--no-report",
    ]
    return command + (["--cluster", args.cluster] if args.cluster else [])


def fastest_of(runs: int, command_for, **options) -> tuple[dict, str, int]:
    """Run ``command_for(attempt)`` ``runs`` times (``peak_tree_rss`` with ``options``): the figures (the
    fastest run's seconds, the largest peak RSS of all, every run's seconds), the fastest run's output and
    its attempt."""
    measured = [peak_tree_rss(command_for(attempt), **options) for attempt in range(runs)]
    best = min(range(runs), key=lambda attempt: measured[attempt][0])
    figures = {
        "seconds": measured[best][0],
        "peak_bytes": max(run[1] for run in measured),
        "runs": [run[0] for run in measured],
    }
    return figures, measured[best][2], best


def measure_job(args, data: Path, population: Path, customers: Path, out: Path) -> dict:
    """The job's figures (``fastest_of`` ``args.repeat`` runs): seconds, peak, ARI and its run.json's stages."""
    folders = [out.with_name(f"{out.name}-{attempt}") for attempt in range(args.repeat)]
    figures, _, best = fastest_of(
        args.repeat,
        lambda attempt: job_command(population, customers, folders[attempt], args),
        inputs=[population, customers],
        settle=args.settle,
    )
    folder = folders[best]
    run = json.loads((folder / "run.json").read_text())
    ours = pd.read_parquet(folder / "assignments").query("table == 'population'")
    return {
        **figures,
        "ari": ari(ours, data),
        "stages": run["timings"],
        "stage_costs": run.get("stage_costs"),
        "peak_worker_memory": run.get("peak_worker_memory"),
        "pca": run["pca"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=891_221)
    parser.add_argument("--customers-rows", type=int, default=191_652)
    parser.add_argument("--data", type=Path, default=Path("data/bench"))
    parser.add_argument("--layout", choices=["generator", "relayout"], default="generator")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cluster", default=None, help="cluster profile for the job")
    parser.add_argument("--parquet", action="store_true", help="also ingest to Parquet and run the job on it")
    parser.add_argument("--notebook-python", default=None, help="Python of the notebook's environment")
    parser.add_argument(
        "--lock-notebook",
        action="store_true",
        help="also run the notebook in this job's own environment (the lock's pandas and scikit-learn)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every timed command this many times, the fastest counts (the floor at least twice)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        help=f"seconds to pause before each timed command (default {SETTLE_SECONDS:.0f})",
    )
    parser.add_argument("--json", type=Path, default=None, help="save the figures here")
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
        print(f"generating {args.rows:,} + {args.customers_rows:,} rows into {args.data} ...", flush=True)
        # In processes of their own: the memory they leave behind would otherwise count against (and at the
        # second layout's notebook, 16 GiB, run out beside) everything measured after them.
        subprocess.run(
            [sys.executable, "-m", "segmentation.cli", "generate", "--out", str(args.data), "--rows",
             str(args.rows), "--customers-rows", str(args.customers_rows), "--mailout-rows", "1000",
             "--seed", str(args.seed)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    data = args.data
    if args.layout == "relayout":
        data = args.data.with_name(args.data.name + "-relayout")
        if not (data / "population.csv").exists():
            print(f"rewriting {args.data} in the second layout into {data} ...", flush=True)
            relayout_script = str(Path(__file__).with_name("relayout.py"))
            subprocess.run(
                [sys.executable, relayout_script, str(args.data), str(data), "--seed", str(args.seed)],
                check=True,
            )
    population, customers = data / "population.csv", data / "customers.csv"
    csv_bytes = population.stat().st_size + customers.stat().st_size
    results: dict = {
        "rows": {"population": args.rows, "customers": args.customers_rows},
        "layout": args.layout,
        "csv_bytes": csv_bytes,
        "k": args.k,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }

    # The notebook's peak, at most three quarters of the machine's memory.
    warm_memory(min(17.0, 0.75 * psutil.virtual_memory().total / 2**30))
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        scratch = Path(scratch)
        (scratch / "floor.py").write_text(FLOOR)
        print(
            f"running the raw-parse floor ({max(2, args.repeat)} times, the fastest counts) ...", flush=True
        )
        results["floor"], _, _ = fastest_of(
            max(2, args.repeat),
            lambda _: [sys.executable, str(scratch / "floor.py"), str(population), str(customers)],
            inputs=[population, customers],
            settle=args.settle,
        )

        script = scratch / "notebook.py"
        script.write_text(NOTEBOOK)
        if args.notebook_seconds is None:
            # The notebook parses the attributes file with segmentation.schema (standard library only).
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            pythons = {"notebook": args.notebook_python or notebook_python()}
            if args.lock_notebook:
                pythons["notebook_lock"] = sys.executable
            for name, python in pythons.items():
                versions = package_versions(python)
                print(f"running the {name.replace('_', ' on the ')} pipeline ({versions}) ...", flush=True)
                out = [scratch / f"{name}-{attempt}.parquet" for attempt in range(args.repeat)]
                figures, output, best = fastest_of(
                    args.repeat,
                    lambda attempt, python=python, out=out: [
                        python, str(script), str(data), str(args.k), str(out[attempt])
                    ],
                    env=env,
                    inputs=[population, customers],
                    settle=args.settle,
                )  # fmt: skip
                print(output.strip().splitlines()[-1])
                results[name] = {
                    **figures,
                    "ari": ari(pd.read_parquet(out[best]), data),
                    "versions": versions,
                }
        else:
            results["notebook"] = {
                "seconds": args.notebook_seconds,
                "peak_bytes": float("nan"),
                "ari": float("nan"),
            }

        print("running segmentation ...", flush=True)
        results["job"] = measure_job(args, data, population, customers, scratch / "run")
        if args.parquet:
            print("ingesting to Parquet ...", flush=True)
            started = time.perf_counter()
            for table, path in (("population", population), ("customers", customers)):
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "segmentation.cli",
                        "ingest",
                        str(path),
                        str(scratch / f"{table}.parquet"),
                    ],
                    check=True,
                )
            ingest_seconds = time.perf_counter() - started
            print("running segmentation on Parquet ...", flush=True)
            results["job_parquet"] = {
                **measure_job(
                    args,
                    data,
                    scratch / "population.parquet",
                    scratch / "customers.parquet",
                    scratch / "run-pq",
                ),
                "ingest_seconds": ingest_seconds,
            }

    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"saved {args.json}")


def report(results: dict) -> None:
    gib = 2**30
    notebook, floor, job = results["notebook"], results["floor"], results["job"]
    rows = results["rows"]
    print()
    print(
        f"rows: population {rows['population']:,}, customers {rows['customers']:,}; k={results['k']}; "
        f"layout {results['layout']}, {results['csv_bytes'] / 1e9:.2f} GB of CSV"
    )
    print(f"{'':34}{'seconds':>10}{'peak RSS GiB':>15}{'ARI':>8}")
    lines = [
        ("raw-parse floor (pyarrow)", floor),
        ("notebook (pandas + scikit-learn)", notebook),
    ]
    if "notebook_lock" in results:
        lines.append(("notebook on the job's lock", results["notebook_lock"]))
    lines.append(("segmentation (Dask), CSV", job))
    if "job_parquet" in results:
        lines.append(("segmentation, ingested Parquet", results["job_parquet"]))
    for name, figures in lines:
        print(
            f"{name:34}{figures['seconds']:>10.1f}{figures['peak_bytes'] / gib:>15.2f}"
            f"{figures.get('ari', float('nan')):>8.3f}"
        )
    ratios = {
        "job_over_notebook_time": job["seconds"] / notebook["seconds"],
        "job_over_notebook_memory": job["peak_bytes"] / notebook["peak_bytes"],
        "job_over_floor": job["seconds"] / floor["seconds"],
        "read_stage_over_floor": job["stages"].get("read", float("nan")) / floor["seconds"],
    }
    if "notebook_lock" in results:
        ratios["job_over_lock_notebook_time"] = job["seconds"] / results["notebook_lock"]["seconds"]
    if "job_parquet" in results:
        ratios["parquet_job_over_notebook_time"] = results["job_parquet"]["seconds"] / notebook["seconds"]
    results["ratios"] = ratios
    print("ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    print("job stage timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in job["stages"].items()))
    for name in ("job", "job_parquet"):
        if results.get(name, {}).get("stage_costs"):
            print(f"{name} stage costs: {results[name]['stage_costs']}")
    print(f"job PCA: {job['pca']}, peak worker memory {(job['peak_worker_memory'] or 0) / gib:.2f} GiB")


if __name__ == "__main__":
    main()
