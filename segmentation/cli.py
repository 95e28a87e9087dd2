"""The ``segmentation`` command: generate, ingest, validate, run, elbow, assign, report.

Exit codes: 0 success, 1 unexpected failure, 2 bad configuration or usage, 3 bad input data,
130 interrupted (Ctrl-C). Errors are printed as one line naming the file, column and value at fault.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import __version__

EXIT_FAILURE, EXIT_CONFIG, EXIT_INPUT, EXIT_INTERRUPTED = 1, 2, 3, 130
TABLES = ("population", "customers", "mailout_train", "mailout_test")


def _add_job_arguments(parser: argparse.ArgumentParser, *, writes_run: bool = True) -> None:
    """The job file and the options that override it; ``writes_run=False`` (elbow) leaves out what only a
    run folder uses (mail-out tables, --out, --k, --no-report)."""
    parser.add_argument("job", nargs="?", help="job spec (YAML), e.g. jobs/demo.yml")
    parser.add_argument("--population", help="population table (CSV, .csv.gz, Parquet; path, glob or URL)")
    parser.add_argument("--customers", help="customers table (same formats)")
    if writes_run:
        parser.add_argument("--mailout-train", help="mail-out (train) table to segment too")
        parser.add_argument("--mailout-test", help="mail-out (test) table to segment too")
    parser.add_argument("--attributes", help="attributes file (default: the packaged Arvato schema)")
    parser.add_argument("--sep", help="CSV delimiter of the input tables (default ';'; job file: sep)")
    if writes_run:
        parser.add_argument("--out", help="run folder to write (job file: output)")
    parser.add_argument("--cluster", help="cluster profile (YAML), e.g. cluster_config/local.yml")
    if writes_run:
        parser.add_argument("--k", type=int, help="number of segments (default: the elbow's recommendation)")
    parser.add_argument(
        "--algorithm",
        help="clustering algorithm: kmeans (default), minibatch, gmm or bisecting (job file: clustering.algorithm)",
    )
    parser.add_argument("--seed", type=int, help="random seed (job file: seed)")
    parser.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="fail on a value that is neither a valid nor an unknown code (default: count it as missing)",
    )
    parser.add_argument(
        "--allow-duplicate-ids",
        action="store_true",
        default=None,
        help="keep every row when an id repeats within a table (counted in run.json); default: fail",
    )
    if writes_run:
        parser.add_argument(
            "--no-report", dest="report", action="store_false", default=None, help="skip the HTML/PDF report"
        )


def _job_config(args: argparse.Namespace):
    from .config import load_job

    options = {
        "inputs.population": "population",
        "inputs.customers": "customers",
        "inputs.mailout_train": "mailout_train",
        "inputs.mailout_test": "mailout_test",
        "attributes": "attributes",
        "sep": "sep",
        "output": "out",
        "cluster": "cluster",
        "clustering.algorithm": "algorithm",
        "clustering.k": "k",
        "clustering.k_min": "k_min",
        "clustering.k_max": "k_max",
        "seed": "seed",
        "strict": "strict",
        "allow_duplicate_ids": "allow_duplicate_ids",
        "report": "report",
    }
    overrides = {key: getattr(args, name, None) for key, name in options.items()}
    return load_job(args.job, overrides)


def _checked_job(args: argparse.Namespace, *, workers: bool = False):
    """The job's configuration and its preflight checks, before the heavy modules are even imported:
    a missing file or column is reported in about a second. With ``workers``, a local cluster's fork server
    then starts importing them for the worker processes (``forkserver``) while the caller imports them."""
    from . import forkserver
    from .preflight import preflight

    config = _job_config(args)
    checked = preflight(config)
    if workers:
        forkserver.start(checked.profile)
    return config, checked


def _job_module():
    """``segmentation.job``, imported now (while the fork server imports it for the workers). What is alive
    then, the ~2,600 modules' objects, is exempt from the collector's full passes from then on
    (``gc.freeze``): 0.51-0.67 s of collections instead of 0.88 s in a real-size run's client, which also runs
    the scheduler."""
    import gc

    from . import job

    gc.freeze()
    return job


def cmd_run(args: argparse.Namespace) -> int:
    config, checked = _checked_job(args, workers=True)
    result = _job_module().run_job(config, checked, fresh=args.fresh)
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
    from .run_folder import REPORT_HTML, REPORT_PDF, RunReader

    run = RunReader(result.output, checked.profile.storage_options)
    if run.exists(REPORT_HTML):
        print(f"Report: {run.url(REPORT_HTML)}\nPDF:    {run.url(REPORT_PDF)}")
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
    from .preflight import load_attributes

    schema, _ = load_attributes(args.attributes)
    table = read_table(args.input, schema, args.table, strict=args.strict, sep=args.sep)
    summary, _ = ingest(table, args.out)
    print(f"{args.input} -> {args.out}: {summary['rows']:,} rows")
    for column, count in summary["invalid_values"].items():
        print(f"  {column}: {count} invalid value(s) treated as missing")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    from .assign import assign_file

    if args.score:
        from .response import score_file

        rows = score_file(args.model, args.input, args.out)
        print(
            f"{args.input} -> {args.out}: {rows['rows']:,} rows = {rows['scored']:,} scored + {rows['set_aside']:,} set aside"
        )
        return 0
    summary = assign_file(args.model, args.input, args.out, table=args.table, sep=args.sep)
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
    config, checked = _checked_job(args, workers=True)
    table = _job_module().elbow_only(config, checked)
    print(table.to_string(index=False))
    print(f"\nrecommended k: {int(table.loc[table['recommended'], 'k'].iloc[0])}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    _, checked = _checked_job(args)
    print(f"{args.job or 'command line'}: job, cluster profile and attributes file are valid")
    print(f"attributes: {checked.schema.source} ({len(checked.schema.columns('population'))} columns)")
    for table, files in checked.files.items():
        for file, columns in files.items():
            ignored = [c for c in columns if c not in checked.schema]
            note = f"; ignored (not in the attributes file): {', '.join(ignored)}" if ignored else ""
            print(f"{table}: {file}: header of {len(columns)} columns, every required column present{note}")
    print(f"checked in {time.perf_counter() - started:.1f} s; no data read, no cluster started")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _add_verbosity(parser: argparse.ArgumentParser, default) -> None:
    """-v/-q, accepted before and after the subcommand (after: default SUPPRESS keeps the value given
    before it)."""
    parser.add_argument(
        "-v", "--verbose", action="count", default=default, help="log each stage (-vv: more detail)"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=default, help="print only results and errors"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segmentation",
        description=__doc__.splitlines()[0],
        epilog="Example:\n  segmentation run jobs/demo.yml --k 8\n\n"
        "Exit codes: 0 success, 2 bad configuration or usage, 3 bad input data, 130 interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_verbosity(parser, 0)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, example: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog=f"Example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_verbosity(sub, argparse.SUPPRESS)
        return sub

    run = command(
        "run",
        "run the whole job and write a run folder",
        "segmentation run jobs/demo.yml --k 8 --out runs/demo",
    )
    _add_job_arguments(run)
    run.add_argument(
        "--fresh",
        action="store_true",
        help="ignore (and replace) the checkpoints an earlier, unfinished run of the same job left",
    )
    run.set_defaults(func=cmd_run)

    validate = command(
        "validate",
        "check the job, cluster profile, attributes file and input headers without reading data or "
        "starting a cluster",
        "segmentation validate jobs/demo.yml",
    )
    _add_job_arguments(validate)
    validate.set_defaults(func=cmd_validate)

    elbow = command(
        "elbow",
        "fit a range of k and recommend one (writes no run folder)",
        "segmentation elbow jobs/demo.yml --k-min 2 --k-max 15",
    )
    _add_job_arguments(elbow, writes_run=False)
    elbow.add_argument("--k-min", type=int, help="smallest k to fit (default 2; job file: clustering.k_min)")
    elbow.add_argument("--k-max", type=int, help="largest k to fit (default 15; job file: clustering.k_max)")
    elbow.set_defaults(func=cmd_elbow)

    generate = command(
        "generate",
        "write synthetic Arvato-shaped data with planted segments",
        "segmentation generate --out data/demo --rows 90000 --customers-rows 20000 --seed 42",
    )
    generate.add_argument("--out", required=True, help="folder to write the CSV tables (and truth/) into")
    generate.add_argument(
        "--rows", type=_positive_int, default=891_221, help="population rows (default: %(default)s)"
    )
    generate.add_argument(
        "--customers-rows", type=_positive_int, default=191_652, help="customers rows (default: %(default)s)"
    )
    generate.add_argument(
        "--mailout-rows",
        type=_positive_int,
        default=42_962,
        help="rows of each mail-out table (default: %(default)s)",
    )
    generate.add_argument(
        "--segments", type=_positive_int, default=8, help="planted segments (default: %(default)s)"
    )
    generate.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    generate.set_defaults(func=cmd_generate)

    ingest = command(
        "ingest",
        "convert a CSV table to compact Parquet once",
        "segmentation ingest data/demo/population.csv data/demo/population.parquet",
    )
    ingest.add_argument("input", help="CSV table to read (path, glob or URL; .gz accepted)")
    ingest.add_argument("out", help="Parquet folder to write")
    ingest.add_argument(
        "--table", default="population", choices=TABLES, help="which table it is (default: %(default)s)"
    )
    ingest.add_argument("--attributes", help="attributes file (default: the packaged Arvato schema)")
    ingest.add_argument("--sep", default=";", help="CSV delimiter (default: %(default)r)")
    ingest.add_argument(
        "--strict", action="store_true", help="fail on a value that is neither a valid nor an unknown code"
    )
    ingest.set_defaults(func=cmd_ingest)

    assign = command(
        "assign",
        "segment a new file with a saved model",
        "segmentation assign --model runs/demo/model --input data/demo/mailout_test.csv "
        "--out runs/mailout_test.parquet",
    )
    assign.add_argument("--model", required=True, help="the model folder of a run: RUN_DIR/model")
    assign.add_argument("--input", required=True, help="table to segment (CSV, .csv.gz or Parquet)")
    assign.add_argument("--out", required=True, help="Parquet file or folder to write")
    assign.add_argument(
        "--table", default=None, help="table name recorded in the output (default: file stem)"
    )
    assign.add_argument("--sep", default=";", help="CSV delimiter (default: %(default)r)")
    assign.add_argument(
        "--score", action="store_true", help="rank by predicted response (needs model/response)"
    )
    assign.set_defaults(func=cmd_assign)

    report = command(
        "report", "(re)write the HTML and PDF report of a run folder", "segmentation report runs/demo"
    )
    report.add_argument("run_dir", help="a run folder written by `segmentation run`")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.verbosity = max(args.verbose - args.quiet, -1)  # -1 quiet, 0 default, 1+ verbose
    from .progress import configure_logging

    configure_logging(args.verbosity)
    from .preflight import InputError
    from .runtime import exit_interrupted, handle_interrupts, no_collection_at_exit
    from .schema import SchemaError
    from .settings import SettingsError

    no_collection_at_exit()

    try:
        with handle_interrupts():  # clean up on `kill` / `timeout` as on Ctrl-C
            return args.func(args)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        exit_interrupted(EXIT_INTERRUPTED)
    except (SettingsError, SchemaError) as error:  # a job file, a cluster profile, an attributes file
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (InputError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
