"""The ``coretune`` command: ``sweep`` runs a search space, ``report`` prints its leaderboard.

``scores export`` writes per-example scores; ``data fake`` writes stand-in data of a
dataset's real format (a rehearsal aid, never a benchmark); ``compact`` merges a results
directory's part files (sweeps do it when they end; this is for a sweep that was killed).

Exit codes: 0 done; 2 the user's input was refused (a :class:`~coretune.errors.CoretuneError`:
one line naming the field and value); 1 a bug in coretune or a plugin, or a Ray failure
(one line with the exception's type and where it was raised; ``--debug`` prints the
traceback); 130 interrupted (every finished row kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from rich.console import Console
from rich.markup import escape

from coretune.errors import CoretuneError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coretune", description=__doc__.split("\n\n")[0])
    p.add_argument("--debug", action="store_true",
                   help="on an unexpected error, print the whole traceback")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="run a sweep (validated before Ray starts)")
    s.add_argument("spec", help="search space YAML, or a packaged space's name ('demo', "
                                "'soft_label_table1', …)")
    s.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a value of the spec (YAML value; "
                   "e.g. --set dataset=fashion_mnist --set budget.value=10)")
    s.add_argument("--out", required=True,
                   help="results directory: a path or URI (file://, s3://…)")
    s.add_argument("--address", default=None, help="join a running Ray cluster (e.g. 'auto')")
    s.add_argument("--scheduler", choices=["fifo", "asha"], default=None,
                   help="override the spec's trial scheduler")
    s.add_argument("--cache", default=None,
                   help="artifact store: a path or URI (default $CORETUNE_CACHE or "
                        "~/.cache/coretune)")
    s.add_argument("--data-root", default=None, help="dataset root (overrides the spec)")
    s.add_argument("--download", action="store_true",
                   help="let torchvision datasets download into the data root (off by default)")
    s.add_argument("--allow-node-local", action="store_true",
                   help="with --address: accept cache/out on a node-local disk (only if every "
                        "node mounts the same path)")
    s.add_argument("--dry-run", action="store_true",
                   help="print the plan (trials, artifacts, what is cached) and stop")
    s.add_argument("--smoke", action="store_true",
                   help="a smoke run: the space shrunk to minutes (one seed, two ratios, "
                        "short budgets, small archs and grids; every selector, label mode, "
                        "arch and artifact kind kept); its rows are never compared with "
                        "the papers")
    s.add_argument("--no-report", action="store_true", help="skip the leaderboard at the end")
    s.add_argument("--quiet", action="store_true",
                   help="no live progress view and no summary dump (for CI logs)")
    s.add_argument("--log", action="append", default=[], metavar="NAME",
                   help="also record each student as its own run in tensorboard, mlflow or "
                        "wandb (repeatable or comma separated; files under OUT/logs; W&B "
                        "offline unless WANDB_MODE is set)")
    r = sub.add_parser("report", help="leaderboards of one or more sweep directories: "
                       "terminal, Markdown, LaTeX, CSV, HTML and plots")
    r.add_argument("dirs", nargs="+", metavar="DIR", help="sweep output directories or URIs")
    r.add_argument("--compare", action="store_true",
                   help="line two runs up cell by cell (compare.md)")
    r.add_argument("--out", default=None, help="where to write (default: the first DIR)")
    r.add_argument("--cache", default=None,
                   help="artifact store, for the coreset difficulty histogram")
    r.add_argument("--no-plots", action="store_true", help="skip the figures")
    sc = sub.add_parser("scores", help="per-example scores")
    ex = sc.add_subparsers(dest="scores_command", required=True).add_parser(
        "export", help="write per-example scores (index, score: higher = keep) to DIR")
    ex.add_argument("dir", help="output directory")
    ex.add_argument("--dataset", required=True, help="dataset name (or one of the spec's)")
    ex.add_argument("--score", action="append", required=True,
                    help="score name (repeatable): aum, forgetting, el2n, grand, entropy, "
                         "margin, least_confidence, dual, cld")
    ex.add_argument("--spec", default=None,
                    help="take the dynamics recipe and the dataset's split from this spec")
    ex.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="override a value of the spec")
    ex.add_argument("--cache", default=None, help="artifact store (as for sweep)")
    ex.add_argument("--data-root", default=None, help="dataset root")
    ex.add_argument("--format", default="parquet", choices=["parquet", "csv"])
    da = sub.add_parser("data", help="dataset files")
    fk = da.add_subparsers(dest="data_command", required=True).add_parser(
        "fake", help="write stand-in data of a dataset's real on-disk format, with learnable "
        "classes: a rehearsal aid for the loaders and a sweep, never a benchmark")
    fk.add_argument("name", metavar="NAME", help="a dataset read from files (cifar10, "
                    "cifar100, cifar100n, fashion_mnist, stl10, tiny_imagenet, imagenet1k)")
    fk.add_argument("--root", required=True, help="the dataset's root, as --data-root takes "
                    "it (what an earlier fake wrote there is replaced; real data is refused)")
    fk.add_argument("--per-class", type=int, default=None, help="training images per class "
                    "(default: the dataset's, small; the test split keeps the default ratio)")
    fk.add_argument("--seed", type=int, default=0, help="the same seed writes the same bytes")
    cp = sub.add_parser("compact", help="merge the part files of results directories (under "
                        "their driver lease: refused while a sweep writes there)")
    cp.add_argument("dirs", nargs="+", metavar="DIR", help="sweep output directories or URIs")
    return p


def _compact(args: argparse.Namespace, console: Console) -> int:
    from coretune.errors import PathError
    from coretune.reports.results import ResultsStore

    for uri in args.dirs:
        store = ResultsStore(uri)
        if not store.has_results():
            raise PathError(f"DIR {uri}: holds no results (no trials/ part files)")
        with store.lease():
            done = store.compact()
        merged = ", ".join(f"{table} {before:,} parts -> {after}"
                           for table, (before, after) in done.items()) or "already compact"
        console.print(f"{store.uri}: {merged}", markup=False, highlight=False)
    return 0


def _sweep(args: argparse.Namespace, console: Console) -> int:
    from coretune.driver.loggers import log_dir, logger_names
    from coretune.search_spaces.schema import load_spec

    loggers = logger_names(args.log)  # an unknown or missing logger: before anything
    spec = load_spec(args.spec, args.overrides)  # before torch and Ray
    from coretune.driver.plan import describe, local_resources, plan_sweep

    if args.smoke:
        from coretune.search_spaces.smoke import smoke_spec

        spec = smoke_spec(spec, gpu=args.address is not None or local_resources()["GPU"] > 0)

    plan = plan_sweep(spec, args.out, args.cache, args.data_root, args.download,
                      cluster=args.address is not None and not args.allow_node_local,
                      dry_run=args.dry_run)
    plan.allow_node_local = args.allow_node_local
    log_dir(loggers, plan.results.location)  # an output the loggers cannot write under
    console.print(describe(plan) if args.dry_run else describe(plan).splitlines()[0],
                  markup=False, highlight=False)
    if args.dry_run:
        return 0
    summary = None
    if plan.trials:
        from coretune.driver.run import execute

        summary = execute(plan, args.address, args.scheduler, console, args.quiet, loggers)
        if args.quiet:
            console.print(f"sweep {plan.spec.name}: {summary.trials_finished} of "
                          f"{summary.trials_run} trials finished, {summary.status_counts}, "
                          f"{summary.wall_seconds:.1f} s", markup=False, highlight=False)
        else:
            console.print(json.dumps(summary.as_dict(), indent=1))
    if not args.no_report:
        from coretune.driver.figures import difficulty_figure
        from coretune.reports.report import write_report

        write_report(args.out, console,
                     extra_figures=difficulty_figure([args.out], plan.store.uri))
    if summary is not None and summary.interrupted:
        Console(stderr=True).print(
            f"interrupted: {summary.trials_finished} of {summary.trials_run} trials finished "
            "and are saved; run the same command again to complete the rest",
            soft_wrap=True, highlight=False, markup=False)
        return 130
    return 0 if summary is None or summary.status_counts.get("error", 0) == 0 else 1


def _scores(args: argparse.Namespace, console: Console) -> int:
    from coretune.search_spaces.schema import load_spec
    from coretune.spec import DataSpec, DynamicsSpec

    spec = load_spec(args.spec, args.overrides) if args.spec else None
    recipe = spec.dynamics if spec else DynamicsSpec()
    dataset = next((d for d in (spec.datasets if spec else []) if d.name == args.dataset),
                   DataSpec(name=args.dataset))
    from coretune.driver.plan import default_cache_dir
    from coretune.driver.score_export import export_scores
    from coretune.train.data import check_data_spec

    check_data_spec(dataset)  # a named error for an unknown dataset or split
    for path in export_scores(args.dir, dataset, recipe, args.score,
                              args.cache or default_cache_dir(), args.data_root, args.format):
        console.print(f"wrote {path}", markup=False, highlight=False)
    return 0


def _data(args: argparse.Namespace, console: Console) -> int:
    from coretune.train.datasets.fake import write_fake

    written = write_fake(args.name, args.root, args.per_class, seed=args.seed)
    console.print(written.summary(), markup=False, highlight=False, soft_wrap=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # a pipe or log file gets rich's 80-column default; leaderboards read better wider
    console = Console() if sys.stdout.isatty() else Console(width=140)
    err = Console(stderr=True)
    try:
        if args.command == "sweep":
            return _sweep(args, console)
        if args.command == "scores":
            return _scores(args, console)
        if args.command == "data":
            return _data(args, console)
        if args.command == "compact":
            return _compact(args, console)
        from coretune.reports.report import write_report

        extra = {}
        if args.cache and not args.no_plots:
            from coretune.driver.figures import difficulty_figure

            extra = difficulty_figure(args.dirs, args.cache)
        write_report(args.dirs, console, out=args.out, compare=args.compare,
                     figures=not args.no_plots, extra_figures=extra)
        return 0
    except CoretuneError as exc:  # the user's input: one line, exit 2
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug or a Ray failure: what and where, exit 1
        if args.debug:
            traceback.print_exc()
        err.print(f"[bold red]error:[/] {escape(describe_bug(exc))}", highlight=False,
                  soft_wrap=True)
        return 1


def describe_bug(exc: BaseException) -> str:
    """One line for an unexpected exception: its type, message and the innermost frame
    it was raised in (file:line in function), plus how to see the whole traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (raised at {frames[-1].filename}:{frames[-1].lineno} in " \
            f"{frames[-1].name})" if frames else ""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
    return f"{text}{where}; this is a bug, not your input: rerun with --debug for the traceback"


if __name__ == "__main__":
    sys.exit(main())
