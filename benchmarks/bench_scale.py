"""The job at 1x and 10x the real size on one machine: wall time, peak memory, scratch and spill disk, and
each pass's disk bytes against the disk's own read bandwidth.

    python benchmarks/bench_scale.py [--scales 1 10] [--profiles default laptop-lowmem] [--data-root DIR]
                                     [--k 8] [--json OUT.json]

For each scale, generates ``scale`` x the real population and customers (891,221 + 191,652 rows; 13 GB of
CSV at 10x, about 5 minutes on 2 cores; reused when ``DATA_ROOT/scale-N`` already holds it). Measures the
disk's sequential read bandwidth once (``dd iflag=direct`` over 2 GiB of the largest input, bypassing the
page cache). Then, for each profile (``default``: the packaged local profile; otherwise a file of
``cluster_config/``), runs ``segmentation run`` with k given (elbow skipped) and no report in its own
process tree, and prints:

- wall seconds and the ratio to the same profile's 1x run; peak RSS of the whole process tree (client,
  scheduler, nannies, workers), sampled every 0.2 s;
- the largest size the job's work folder (coded blocks, PCA coordinates, checkpoints) and Dask's spill
  folder reached (sampled every 2 s), against the work folder's bound (``work_bound``: 2 bytes per coded
  value of every row read, 8 per id, 4 per row for its count of missing values, 4 per PCA coordinate of
  every kept population row, plus 10%);
- per stage, from ``run.json``'s ``stage_costs``: bytes read from and written to storage by the workers and
  the client (the kernel's per-process counts: reads served from the page cache do not count), the
  bandwidth floor (bytes read / measured bandwidth) and the stage's seconds over that floor.

Needs ~35 GB free for 10x (13 GB of CSV + the work folder). Not a test: only ratios from one run carry.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_pipeline import peak_tree_rss

from segmentation.synth import generate

ROOT = Path(__file__).resolve().parents[1]
POPULATION_ROWS, CUSTOMERS_ROWS = 891_221, 191_652


def work_bound(run: dict) -> int:
    """Most bytes the work folder holds (docs/scaling.md): coded blocks (2 bytes a value, 8 an id, 4 the
    row's count of missing values) of every row read and the PCA coordinates (4 bytes each) of the kept population rows, plus 10% for the files'
    headers, the few text columns and the checkpoints."""
    rows = sum(table["read"] for table in run["rows"].values())
    coded = rows * (2 * run["columns"]["input"] + 8 + 4)
    coordinates = 4 * run["rows"]["population"]["assigned"] * run["pca"]["n_components"]
    return int(1.1 * (coded + coordinates))


def dataset(root: Path, scale: int, seed: int) -> Path:
    """``root/scale-N`` holding ``scale`` x the real tables (generated once)."""
    folder = root / f"scale-{scale}"
    planted = folder / "truth" / "planted.json"
    if (
        not planted.exists()
        or json.loads(planted.read_text())["rows"]["population"] != scale * POPULATION_ROWS
    ):
        print(
            f"generating {scale}x ({scale * POPULATION_ROWS:,} + {scale * CUSTOMERS_ROWS:,} rows) ...",
            flush=True,
        )
        generate(folder, rows=scale * POPULATION_ROWS, customers_rows=scale * CUSTOMERS_ROWS, mailout_rows=1000,
                 seed=seed)  # fmt: skip
    return folder


def read_bandwidth(path: Path, gib: int = 2) -> float:
    """Sequential read bandwidth in bytes/s of the disk holding ``path``, past the page cache."""
    blocks = min(gib * 64, max(path.stat().st_size // 2**24, 1))  # 16 MiB blocks
    done = subprocess.run(
        ["dd", f"if={path}", "of=/dev/null", "bs=16M", f"count={blocks}", "iflag=direct"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    copied, seconds = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", done.stderr).groups()
    return int(copied) / float(seconds)


def run_job(data: Path, profile: str, k: int, seed: int, scratch: Path) -> dict:
    out = scratch / f"run-{profile}"
    spill = scratch / f"spill-{profile}"
    spill.mkdir()
    command = [sys.executable, "-m", "segmentation.cli", "run", "--population", str(data / "population.csv"),
               "--customers", str(data / "customers.csv"), "--out", str(out), "--k", str(k), "--seed", str(seed),
               "--no-report"]  # fmt: skip
    if profile != "default":
        command += ["--cluster", str(ROOT / "cluster_config" / f"{profile}.yml")]
    work = scratch / f".run-{profile}.work"  # the job's work folder, next to the run folder
    folders = {work: 0, spill: 0}
    env = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(spill)}
    seconds, peak, _ = peak_tree_rss(command, env=env, folder_peaks=folders)
    run = json.loads((out / "run.json").read_text())
    return {
        "seconds": seconds,
        "peak_bytes": peak,
        "work_folder_peak_bytes": folders[work],
        "spill_folder_peak_bytes": folders[spill],
        "stages": run["timings"],
        "stage_costs": run.get("stage_costs", {}),
        "peak_worker_memory": run.get("peak_worker_memory"),
        "workers_lost": run.get("workers_lost"),
        "work_bound_bytes": work_bound(run),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--profiles", nargs="+", default=["default", "laptop-lowmem"])
    parser.add_argument("--data-root", type=Path, default=Path("data/scale"))
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    results: dict = {"runs": {}}
    for scale in args.scales:
        data = dataset(args.data_root, scale, args.seed)
        csv_bytes = sum((data / f"{t}.csv").stat().st_size for t in ("population", "customers"))
        if "bandwidth" not in results:
            results["bandwidth"] = read_bandwidth(data / "population.csv")
            print(f"disk read bandwidth (O_DIRECT): {results['bandwidth'] / 1e6:.0f} MB/s", flush=True)
        for profile in args.profiles:
            print(f"running {scale}x with profile {profile} ...", flush=True)
            with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.data_root) as scratch:
                figures = run_job(data, profile, args.k, args.seed, Path(scratch))
            figures["csv_bytes"] = csv_bytes
            results["runs"][f"{scale}x {profile}"] = figures
            report(scale, profile, figures, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"saved {args.json}")


def report(scale: int, profile: str, figures: dict, results: dict) -> None:
    gib, bandwidth = 2**30, results["bandwidth"]
    one = results["runs"].get(f"1x {profile}")
    ratio = f", {figures['seconds'] / one['seconds']:.2f}x the 1x run" if one and scale != 1 else ""
    work = figures["work_folder_peak_bytes"]
    print(f"\n{scale}x, profile {profile}: {figures['seconds']:.1f} s{ratio}; peak RSS of the process tree "
          f"{figures['peak_bytes'] / gib:.2f} GiB (peak worker {(figures['peak_worker_memory'] or 0) / gib:.2f} GiB); "
          f"work folder peak {work / 1e9:.2f} GB ({work / figures['csv_bytes']:.2f}x the CSV; bound "
          f"{figures['work_bound_bytes'] / 1e9:.2f} GB); "
          f"spilled {figures['spill_folder_peak_bytes'] / 1e9:.2f} GB; workers lost {figures['workers_lost']}")  # fmt: skip
    print(f"{'stage':10}{'seconds':>9}{'read GB':>9}{'written GB':>11}{'floor s':>9}{'over floor':>11}")
    for stage, seconds in figures["stages"].items():
        costs = figures["stage_costs"].get(stage, {})
        read, written = costs.get("disk_read_bytes", 0), costs.get("disk_write_bytes", 0)
        floor = read / bandwidth
        over = f"{seconds / floor:.2f}x" if floor > 0.5 else "-"
        print(f"{stage:10}{seconds:>9.1f}{read / 1e9:>9.2f}{written / 1e9:>11.2f}{floor:>9.1f}{over:>11}")


if __name__ == "__main__":
    main()
