#!/usr/bin/env python
"""Run every mpiml benchmark with one command; write one JSON file and PNG plots.

    python scripts/bench.py --quick                       # every area, a few minutes on 2 cores
    python scripts/bench.py                               # full size (tens of minutes on 2 cores)
    python scripts/bench.py --quick --only gbdt,matmul    # a subset
    python scripts/bench.py --out docs/perf               # where results.json and the PNGs go
    python scripts/bench.py --replot docs/perf/results.json   # the plots again, from a results file

Areas, each measured by its own script, run as a child process whose JSON is read back:

=========  ===================================================================
matmul     scripts/bench_matmul.py: SUMMA and Cannon (MPI and threads) against numpy
comm       scripts/bench_comm.py: Bcast, Allreduce, Sendrecv (threads, MPI, raw mpi4py)
linear     scripts/bench_linear.py: logistic regression (L-BFGS) against scikit-learn
trees      scripts/bench_trees.py: random forest and decision tree against scikit-learn
gbdt       scripts/bench_gbdt.py: gradient boosting against LightGBM, XGBoost, scikit-learn
serving    scripts/serve.sh (Gunicorn) loaded by scripts/loadtest.py's clients
=========  ===================================================================

The code is the package scripts/benchmarks/, laid out like asv's benchmark folders: one
module per area (its sizes, its step count and its run), beside the shared modules common
(paths, child processes, progress, figures), machine, plots and summary. This script is
the driver.

The peers (scikit-learn, LightGBM, XGBoost) and matplotlib come with
``pip install -e '.[bench]'``; a missing one is skipped with a message. The results file
holds the machine (cores, memory, BLAS, MPI library), the command, and every figure with
its unit. Progress (what runs, step i of N, elapsed time) goes to stderr.
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # the benchmarks package beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks import comm, gbdt, linear, matmul, serving, trees  # noqa: E402
from benchmarks.common import (  # noqa: E402
    ROOT, AreaSkipped, ChildFailed, Context, Progress, cores, default_ranks)
from benchmarks.gbdt import GBDT_PEERS  # noqa: E402
from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.plots import make_plots  # noqa: E402
from benchmarks.summary import summary_lines, write_summary  # noqa: E402

# the suite's names as they were before the split, for its tests and other callers
from benchmarks.common import PEER_MODULES, _select, figure  # noqa: E402, F401
from benchmarks.gbdt import gbdt_steps, run_gbdt  # noqa: E402, F401
from benchmarks.matmul import matmul_figures  # noqa: E402, F401
from benchmarks.serving import latency_histogram  # noqa: E402, F401
from benchmarks.summary import _fmt, summary_table  # noqa: E402, F401

SCHEMA = "mpiml-bench/1"
AREA_MODULES = {"matmul": matmul, "comm": comm, "linear": linear, "trees": trees, "gbdt": gbdt,
                "serving": serving}
AREAS = tuple(AREA_MODULES)
AREA_FUNCTIONS = {
    "matmul": (matmul.run_matmul, matmul.matmul_steps), "comm": (comm.run_comm, comm.comm_steps),
    "linear": (linear.run_linear, linear.linear_steps), "trees": (trees.run_trees, trees.trees_steps),
    "gbdt": (gbdt.run_gbdt, gbdt.gbdt_steps), "serving": (serving.run_serving, serving.serving_steps),
}

# Sizes: "tiny" is for the suite's own tests, "quick" finishes in under five minutes on a
# quiet 2-core machine, "full" is the published run; each area's parameters are in its module.
SIZES = {size: {area: module.SIZES[size] for area, module in AREA_MODULES.items()}
         for size in ("tiny", "quick", "full")}


def _names(text, choices, flag):
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in choices]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"{flag}: unknown {', '.join(map(repr, bad)) or 'empty list'} in {text!r}; "
            f"choose from {', '.join(choices)}")
    return names


def _rank_list(text):
    try:
        ranks = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        ranks = []
    if not ranks or ranks[0] < 1:
        raise argparse.ArgumentTypeError(f"--ranks: expected positive integers separated by "
                                         f"commas, got {text!r}")
    return ranks


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Sizes: tiny (the suite's tests), quick (< 5 min on 2 cores), full (default).")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--size", choices=tuple(SIZES), default="full")
    size.add_argument("--quick", dest="size", action="store_const", const="quick",
                      help="same as --size quick")
    size.add_argument("--tiny", dest="size", action="store_const", const="tiny",
                      help="same as --size tiny")
    parser.add_argument("--only", type=lambda t: _names(t, AREAS, "--only"),
                        default=list(AREAS), metavar="AREAS",
                        help=f"comma-separated subset of {','.join(AREAS)}")
    parser.add_argument("--ranks", type=_rank_list, default=None,
                        help="rank counts for the scaling runs (default: 1,2,4,... up to "
                             f"the cores: {','.join(map(str, default_ranks()))})")
    parser.add_argument("--peers", type=lambda t: _names(t, GBDT_PEERS, "--peers"),
                        default=None, help="gbdt peers (default: the size's list)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for results.json and the PNG plots (default bench-results/)")
    parser.add_argument("--quiet", action="store_true",
                        help="progress lines only, not the benchmarks' own output")
    parser.add_argument("--replot", type=Path, metavar="RESULTS_JSON",
                        help="only draw the plots of an existing results file (into --out "
                             "if given, else next to the file)")
    return parser.parse_args(argv)


def _command(argv):
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    return shlex.join(["python", script, *argv])


def _write(results, path):
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str) + "\n")
    os.replace(tmp, path)



def run_suite(args, argv):
    params = {area: dict(SIZES[args.size][area]) for area in args.only}
    if args.peers is not None and "gbdt" in params:
        params["gbdt"]["peers"] = args.peers
    ranks = args.ranks or default_ranks()
    out = args.out or ROOT / "bench-results"
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    total = sum(AREA_FUNCTIONS[a][1](params[a], ranks) for a in args.only)
    progress = Progress(total, verbose=not args.quiet)
    progress.note(f"mpiml benchmarks, {args.size} size: {', '.join(args.only)}; ranks "
                  f"{ranks}; {cores()} cores; {total} steps; results in {results_path}")
    results = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": _command(argv),
        "argv": list(argv),
        "size": args.size,
        "ranks": ranks,
        "params": params,
        "machine": describe_machine(),
        "benchmarks": {},
        "plots": [],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="mpiml-bench-") as scratch:
        ctx = Context(args.size, ranks, scratch, progress)
        for area in args.only:
            run, _ = AREA_FUNCTIONS[area]
            ctx.area, ctx.commands, ctx.skipped = area, [], []
            started = time.monotonic()
            entry = {"status": "ok", "params": params[area]}
            try:
                entry.update(run(ctx, params[area]))
            except AreaSkipped as exc:
                entry.update(status="skipped", reason=str(exc), figures=[])
                progress.note(f"{area}: skipped: {exc}")
            except (ChildFailed, RuntimeError, OSError, KeyError, TypeError, ValueError) as exc:
                failed = True
                entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}", figures=[])
                progress.note(f"{area}: FAILED: {exc}")
            entry["seconds"] = round(time.monotonic() - started, 2)
            entry["commands"], entry["skipped"] = ctx.commands, ctx.skipped
            results["benchmarks"][area] = entry
            _write(results, results_path)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["machine"]["load_average_at_end"] = None if load is None else [round(x, 2)
                                                                          for x in load]
    results["seconds"] = round(time.monotonic() - progress.started, 1)
    progress.note("drawing the plots")
    results["plots"] = make_plots(results, out)
    _write(results, results_path)
    write_summary(results, out)
    print("\n".join(summary_lines(results)))
    print(f"{results['seconds']:.0f} s; results: {results_path}; plots: "
          f"{', '.join(results['plots']) or 'none'}")
    return 1 if failed else 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.replot:
        results = json.loads(args.replot.read_text())
        out = args.out or args.replot.parent
        out.mkdir(parents=True, exist_ok=True)
        written = make_plots(results, out)
        write_summary(results, out)
        print(f"plots and summary.md in {out}: {', '.join(written) or 'none'}")
        return 0
    return run_suite(args, argv)


if __name__ == "__main__":
    sys.exit(main())
