"""Generator throughput and memory: rows/s, MB/s and peak RSS of the process tree (pool workers included).

Writes the four tables at the real sizes (``--scale 1``: 891,221 population + 191,652 customers + the two
mail-outs) or with ``--scale N`` times the population rows (the other tables stay at their real sizes), into
a temporary folder on the disk of ``--work`` (default ``/work``), then deletes it. A run whose output would
not fit (it needs 60 GB free at 10x, proportionally less below) is skipped with a message.

    python benchmarks/bench_generate.py [--scale 1] [--processes 2] [--chunk-rows 50000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

from segmentation.synth import TABLES, generate

POPULATION_ROWS = 891_221
CUSTOMERS_ROWS = 191_652
MAILOUT_ROWS = 42_962
FREE_GB_PER_SCALE = 6.0  # 1x writes about 1.4 GB; 60 GB free for 10x leaves room for the rest of the team


class PeakMemory:
    """Samples the resident memory of this process and all its children every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        root = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [root, *root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:  # a worker that just exited
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(scale: int, processes: int, chunk_rows: int, work: Path, keep: Path | None) -> dict:
    free_gb = shutil.disk_usage(work).free / 1e9
    needed_gb = FREE_GB_PER_SCALE * scale
    if free_gb < needed_gb:
        return {"scale": scale, "skipped": f"{free_gb:.0f} GB free on {work}, {needed_gb:.0f} GB wanted"}
    folder = Path(tempfile.mkdtemp(prefix=f"bench_generate_{scale}x_", dir=work)) if keep is None else keep
    try:
        with PeakMemory() as memory:
            started = time.perf_counter()
            summary = generate(
                folder,
                rows=POPULATION_ROWS * scale,
                customers_rows=CUSTOMERS_ROWS,
                mailout_rows=MAILOUT_ROWS,
                processes=processes,
                chunk_rows=chunk_rows,
            )
            seconds = time.perf_counter() - started
        rows = sum(summary["rows"].values())
        sizes = {t: Path(summary["paths"][t]).stat().st_size for t in TABLES}
        return {
            "scale": scale,
            "processes": processes,
            "chunk_rows": chunk_rows,
            "rows": summary["rows"],
            "seconds": round(seconds, 2),
            "seconds_by_table": {t: round(s, 2) for t, s in summary["seconds"].items()},
            "rows_per_second": round(rows / seconds),
            "megabytes_per_second": round(sum(sizes.values()) / 1e6 / seconds, 1),
            "file_megabytes": {t: round(b / 1e6, 1) for t, b in sizes.items()},
            "peak_rss_megabytes": round(memory.peak_bytes / 1e6),
        }
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, nargs="+", default=[1], help="population multiples, e.g. 1 10")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument(
        "--work", type=Path, default=Path("/work"), help="disk to write the temporary output on"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="write here and keep the files (one scale only)"
    )
    args = parser.parse_args()
    for scale in args.scale:
        print(json.dumps(run(scale, args.processes, args.chunk_rows, args.work, args.keep)), flush=True)


if __name__ == "__main__":
    main()
