"""The ``segmentation`` command: generate, ingest, run, elbow, assign, report.

Exit codes: 0 success, 1 unexpected failure, 2 bad configuration or usage, 3 bad input data,
130 interrupted (Ctrl-C). Errors are printed as one line naming the file, column and value at fault.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

EXIT_FAILURE, EXIT_CONFIG, EXIT_INPUT, EXIT_INTERRUPTED = 1, 2, 3, 130


def _add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", nargs="?", help="job spec (YAML), e.g. jobs/demo.yml")
    parser.add_argument("--population", help="population table (CSV, .csv.gz, Parquet; path, glob or URL)")
    parser.add_argument("--customers", help="customers table")
    parser.add_argument("--mailout-train", help="mail-out (train) table to segment too")
    parser.add_argument("--mailout-test", help="mail-out (test) table to segment too")
    parser.add_argument("--attributes", help="attributes file (default: the packaged Arvato schema)")
    parser.add_argument("--out", help="run folder to write")
    parser.add_argument("--cluster", help="cluster profile (YAML), e.g. cluster_config/local.yml")
    parser.add_argument("--k", type=int, help="number of segments (default: the elbow's recommendation)")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="fail on a value that is neither a valid nor an unknown code",
    )
    parser.add_argument(
        "--no-report", dest="report", action="store_false", default=None, help="skip the HTML/PDF report"
    )


def _job_config(args: argparse.Namespace):
    from .config import load_job

    overrides = {
        "inputs.population": args.population,
        "inputs.customers": args.customers,
        "inputs.mailout_train": args.mailout_train,
        "inputs.mailout_test": args.mailout_test,
        "attributes": args.attributes,
        "output": args.out,
        "cluster": args.cluster,
        "kmeans.k": args.k,
        "seed": args.seed,
        "strict": args.strict,
        "report": args.report,
    }
    return load_job(args.job, overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from .job import run_job

    result = run_job(_job_config(args))
    table = result.proportions.copy()
    for column in ("population_share", "customers_share"):
        table[column] = (100 * table[column]).map("{:.1f}%".format)
    for column in ("ratio", "ratio_ci_low", "ratio_ci_high"):
        table[column] = table[column].map("{:.2f}".format)
    table["p_value"] = table["p_value"].map("{:.1e}".format)
    print(table.to_string(index=False))
    rows = result.run["rows"]
    for name, counts in rows.items():
        print(
            f"{name}: {counts['read']:,} rows read = {counts['assigned']:,} assigned + "
            f"{counts['set_aside']:,} set aside (insufficient_data)"
        )
    print(f"\nRun folder: {result.output}")
    report = Path(result.output) / "report.html"
    if report.exists():
        print(f"Report: {report}\nPDF:    {Path(result.output) / 'Customer Segmentation Report.pdf'}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .synth import generate

    summary = generate(
        args.out,
        rows=args.rows,
        customers_rows=args.customers_rows,
        mailout_rows=args.mailout_rows,
        segments=args.segments,
        seed=args.seed,
    )
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in summary.get("rows", {}).items()))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from .io import ingest, read_table
    from .schema import load_schema

    schema = load_schema(args.attributes)
    table = read_table(args.input, schema, args.table, strict=args.strict)
    summary, _ = ingest(table, args.out)
    print(f"{args.input} -> {args.out}: {summary['rows']:,} rows")
    for column, count in summary["invalid_values"].items():
        print(f"  {column}: {count} invalid value(s) treated as missing")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    from .job import assign_file

    if args.score:
        from .response import score_file

        rows = score_file(args.model, args.input, args.out)
        print(
            f"{args.input} -> {args.out}: {rows['rows']:,} rows = {rows['scored']:,} scored + {rows['set_aside']:,} set aside"
        )
        return 0
    summary = assign_file(args.model, args.input, args.out, table=args.table)
    print(summary.to_string())
    print(f"\nAssignments: {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report
    from .target import write_targets

    write_targets(args.run_dir)
    html, pdf = write_report(args.run_dir)
    print(f"Report: {html}\nPDF:    {pdf}")
    return 0


def cmd_elbow(args: argparse.Namespace) -> int:
    from .job import elbow_only

    config = _job_config(args)
    config.kmeans.k_min, config.kmeans.k_max = args.k_min, args.k_max
    table = elbow_only(config)
    print(table.to_string(index=False))
    print(f"\nrecommended k: {int(table.loc[table['recommended'], 'k'].iloc[0])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segmentation", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the whole job and write a run folder")
    _add_job_arguments(run)
    run.set_defaults(func=cmd_run)

    elbow = commands.add_parser("elbow", help="fit a range of k and recommend one")
    _add_job_arguments(elbow)
    elbow.add_argument("--k-min", type=int, default=2)
    elbow.add_argument("--k-max", type=int, default=15)
    elbow.set_defaults(func=cmd_elbow)

    generate = commands.add_parser(
        "generate", help="write synthetic Arvato-shaped data with planted segments"
    )
    generate.add_argument("--out", required=True)
    generate.add_argument("--rows", type=int, default=891_221)
    generate.add_argument("--customers-rows", type=int, default=191_652)
    generate.add_argument("--mailout-rows", type=int, default=42_962)
    generate.add_argument("--segments", type=int, default=8)
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=cmd_generate)

    ingest = commands.add_parser("ingest", help="convert a CSV table to compact Parquet once")
    ingest.add_argument("input")
    ingest.add_argument("out")
    ingest.add_argument(
        "--table", default="population", help="population, customers, mailout_train, mailout_test"
    )
    ingest.add_argument("--attributes")
    ingest.add_argument("--strict", action="store_true")
    ingest.set_defaults(func=cmd_ingest)

    assign = commands.add_parser("assign", help="segment a new file with a saved model")
    assign.add_argument("--model", required=True, help="RUN_DIR/model")
    assign.add_argument("--input", required=True)
    assign.add_argument("--out", required=True, help="Parquet file or folder to write")
    assign.add_argument(
        "--table", default=None, help="table name recorded in the output (default: file stem)"
    )
    assign.add_argument(
        "--score", action="store_true", help="rank by predicted response (needs model/response)"
    )
    assign.set_defaults(func=cmd_assign)

    report = commands.add_parser("report", help="(re)write the HTML and PDF report of a run folder")
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.verbose:
        logging.getLogger("segmentation").setLevel(logging.INFO)
    else:
        # distributed logs every worker start and stop at INFO; the job prints what a user needs.
        # (Read by dask when it is first imported, below; a DASK_* variable the user set wins.)
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    from .config import ConfigError
    from .io import InputError
    from .runtime import ProfileError, handle_interrupts
    from .schema import SchemaError

    try:
        with handle_interrupts():  # clean up on `kill` / `timeout` as on Ctrl-C
            return args.func(args)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, ProfileError, SchemaError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (InputError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
