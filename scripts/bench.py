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

The peers (scikit-learn, LightGBM, XGBoost) and matplotlib come with
``pip install -e '.[bench]'``; a missing one is skipped with a message. The results file
holds the machine (cores, memory, BLAS, MPI library), the command, and every figure with
its unit. Progress (what runs, step i of N, elapsed time) goes to stderr.
"""

import argparse
import datetime
import http.client
import json
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # the benchmarks package beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.common import (  # noqa: E402
    INSTALL_HINT, ROOT, SCRIPTS, AreaSkipped, ChildFailed, Context, Progress, child_env, cores,
    default_ranks, figure, fit_figures, import_script, last_json, missing_modules, mpiexec_path)
from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.plots import make_plots  # noqa: E402
from benchmarks.summary import summary_lines, write_summary  # noqa: E402

# the suite's names as they were before the split, for its tests and other callers
from benchmarks.common import PEER_MODULES, _select  # noqa: E402, F401
from benchmarks.summary import _fmt, summary_table  # noqa: E402, F401

SCHEMA = "mpiml-bench/1"
AREAS = ("matmul", "comm", "linear", "trees", "gbdt", "serving")
GBDT_PEERS = ("lightgbm", "xgboost", "sklearn")

# Sizes: "tiny" is for the suite's own tests, "quick" finishes in under five minutes on a
# quiet 2-core machine, "full" is the published run.
SIZES = {
    "tiny": {
        "matmul": {"sizes": [64, 128], "repeat": 1},
        "comm": {"ranks": 2, "max_bytes": "64K"},
        "linear": {"n_samples": 4000, "n_features": 28},
        "trees": {"forest_samples": 2000, "tree_samples": 4000, "trees": 5, "depth": 4},
        "gbdt": {"n_samples": 2000, "n_test": 500, "trees": 5, "leaves": 15,
                 "peers": ["lightgbm", "xgboost"]},
        "serving": {"models": ["logistic", "gbdt"], "train_rows": 2000, "concurrency": 2,
                    "duration": 1.0, "warmup": 0.3},
    },
    "quick": {
        "matmul": {"sizes": [256, 512, 1024], "repeat": 2},
        "comm": {"ranks": 2, "max_bytes": "4M"},
        "linear": {"n_samples": 100_000, "n_features": 28},
        "trees": {"forest_samples": 20_000, "tree_samples": 50_000, "trees": 20, "depth": 8},
        "gbdt": {"n_samples": 50_000, "n_test": 10_000, "trees": 30, "leaves": 31,
                 "peers": list(GBDT_PEERS)},
        "serving": {"models": ["logistic", "forest", "gbdt"], "train_rows": 20_000,
                    "concurrency": 4, "duration": 5.0, "warmup": 1.0},
    },
    "full": {
        "matmul": {"sizes": [512, 1024, 2048, 4096], "repeat": 3},
        "comm": {"ranks": 2, "max_bytes": "64M"},
        "linear": {"n_samples": 1_000_000, "n_features": 28},
        "trees": {"forest_samples": 200_000, "tree_samples": 1_000_000, "trees": 50,
                  "depth": 10},
        "gbdt": {"n_samples": 1_000_000, "n_test": 200_000, "trees": 100, "leaves": 31,
                 "peers": list(GBDT_PEERS)},
        "serving": {"models": ["logistic", "forest", "gbdt"], "train_rows": 200_000,
                    "concurrency": 8, "duration": 30.0, "warmup": 3.0},
    },
}


# -- areas ----------------------------------------------------------------------------------

def matmul_steps(params, ranks):
    return len(params["sizes"])


def run_matmul(ctx, params):
    reports = []
    for n in params["sizes"]:
        ctx.step(f"n={n}: SUMMA and Cannon, MPI and threads, on {ctx.ranks} ranks; numpy")
        out = ctx.scratch / f"matmul_{n}.json"
        ctx.run(["python", SCRIPTS / "bench_matmul.py", "--sizes", n,
                 "--ranks", ",".join(map(str, ctx.ranks)), "--repeat", params["repeat"],
                 "--out", out])
        reports.extend(json.loads(out.read_text()))
    return {"raw": reports, "figures": matmul_figures(reports)}


def matmul_figures(reports):
    figures, single, numpy_seen = [], {}, set()
    for rep in reports:
        if rep["ranks"] == 1:
            single[(rep["n"], rep["backend"], rep["algo"])] = rep["gflops"]
    for rep in reports:
        labels = {"impl": "mpiml", "algo": rep["algo"], "backend": rep["backend"],
                  "ranks": rep["ranks"], "n": rep["n"], "dtype": rep.get("dtype", "float64")}
        figures.append(figure("gflops", rep["gflops"], "GFLOP/s", **labels))
        figures.append(figure("time", rep["seconds"], "s", **labels))
        if "cpu_seconds" in rep:  # all ranks' CPU time: a second view on a shared machine
            figures.append(figure("cpu_time", rep["cpu_seconds"], "s", **labels))
        base = single.get((rep["n"], rep["backend"], rep["algo"]))
        if base:
            figures.append(figure("parallel_efficiency", rep["gflops"] / (rep["ranks"] * base),
                                  "1", **labels))
        key = (rep["n"], rep.get("numpy_threads"))
        if "numpy_gflops" in rep and key not in numpy_seen:
            numpy_seen.add(key)
            figures.append(figure("gflops", rep["numpy_gflops"], "GFLOP/s", impl="numpy",
                                  threads=rep["numpy_threads"], n=rep["n"],
                                  dtype=labels["dtype"]))
    return figures


def comm_steps(params, ranks):
    return 1


def run_comm(ctx, params):
    if mpiexec_path() is None:
        raise AreaSkipped("mpiexec not found (install the mpich extra or a system MPI)")
    ctx.step(f"Bcast, Allreduce, Sendrecv up to {params['max_bytes']}B on "
             f"{params['ranks']} ranks: threads, MPI, mpi4py")
    out = ctx.scratch / "comm.json"
    ctx.run(["python", SCRIPTS / "bench_comm.py", "--ranks", params["ranks"],
             "--max-bytes", params["max_bytes"], "--json", out])
    raw = json.loads(out.read_text())
    figures = []
    for impl, per_op in raw["results"].items():
        for op, per_size in per_op.items():
            for nbytes, seconds in per_size.items():
                labels = {"impl": impl, "op": op, "bytes": int(nbytes), "ranks": raw["ranks"]}
                figures.append(figure("latency", seconds * 1e6, "us", **labels))
                figures.append(figure("bandwidth", int(nbytes) / seconds / 1e9, "GB/s", **labels))
    return {"raw": raw, "figures": figures, "mpi_library": raw.get("library")}


def linear_steps(params, ranks):
    return 1


def run_linear(ctx, params):
    if missing_modules(["sklearn"]):
        raise AreaSkipped(f"scikit-learn is not installed ({INSTALL_HINT})")
    ctx.step(f"logistic regression, {params['n_samples']} x {params['n_features']}: "
             "scikit-learn, mpiml threads P=1,2 and mpiexec -n 2")
    args = ["python", SCRIPTS / "bench_linear.py", "--n-samples", params["n_samples"],
            "--n-features", params["n_features"]]
    if mpiexec_path() is None:
        args.append("--no-mpi")
        ctx.skip("mpiexec not found: MPI rows left out")
    rows = last_json(ctx.run(args))
    if not isinstance(rows, list):
        raise ChildFailed(args, 0, ["no JSON rows in the output of bench_linear.py"])
    figures = []
    for row in rows:
        labels = {"library": row["impl"], "backend": row["backend"], "ranks": row["ranks"],
                  "n_samples": params["n_samples"]}
        figures.append(figure("fit_time", row["fit_seconds"], "s", **labels))
        figures.append(figure("time_to_target", row["seconds_to_target"], "s", **labels))
        figures.append(figure("train_log_loss", row["log_loss"], "1", **labels))
        figures.append(figure("iterations", row["n_iter"], "1", **labels))
    return {"raw": rows, "figures": figures}


def trees_steps(params, ranks):
    return 2


def run_trees(ctx, params):
    if missing_modules(["sklearn"]):
        raise AreaSkipped(f"scikit-learn is not installed ({INSTALL_HINT})")
    rows = []
    common = ["--ranks", ",".join(map(str, ctx.ranks)), "--sklearn-jobs", cores(), "--json"]
    ctx.step(f"random forest, {params['forest_samples']} rows, {params['trees']} trees: "
             f"mpiml on {ctx.ranks} thread ranks, scikit-learn")
    rows += last_json(ctx.run(["python", SCRIPTS / "bench_trees.py", "--only", "forest",
                               "--forest-samples", params["forest_samples"],
                               "--trees", params["trees"], *common]))["results"]
    ctx.step(f"decision tree, {params['tree_samples']} rows, depth {params['depth']}: "
             f"mpiml on {ctx.ranks} thread ranks, scikit-learn")
    rows += last_json(ctx.run(["python", SCRIPTS / "bench_trees.py", "--only", "tree",
                               "--tree-samples", params["tree_samples"],
                               "--depth", params["depth"], *common]))["results"]
    figures = [f for row in rows for f in fit_figures(
        row, case=row["case"], library=row["library"],
        backend="threads" if row["library"] == "mpiml" else None, ranks=row.get("ranks"),
        threads=None if row["library"] == "mpiml" else cores())]
    return {"raw": rows, "figures": figures}


def gbdt_steps(params, ranks):
    return 1 + len(params["peers"])


def run_gbdt(ctx, params):
    if missing_modules(["sklearn"]):
        raise AreaSkipped(f"scikit-learn is not installed; bench_gbdt.py needs it for the "
                          f"AUC ({INSTALL_HINT})")
    common = ["python", SCRIPTS / "bench_gbdt.py", "--n-samples", params["n_samples"],
              "--n-test", params["n_test"], "--trees", params["trees"],
              "--leaves", params["leaves"], "--threads", cores(), "--json"]
    backend = "both" if mpiexec_path() else "threads"
    ctx.step(f"mpiml, {params['n_samples']} rows, {params['trees']} trees of "
             f"{params['leaves']} leaves, ranks {ctx.ranks} ({backend})")
    rows = last_json(ctx.run([*common, "--only", "mpiml", "--backend", backend,
                              "--ranks", ",".join(map(str, ctx.ranks))]))["results"]
    for peer in params["peers"]:
        ctx.step(f"{peer}, {cores()} threads")
        if missing_modules([peer]):
            ctx.skip(f"{peer} skipped: not installed ({INSTALL_HINT})")
            continue
        lines = ctx.run([*common, "--only", peer])
        for line in lines:
            if "skipped" in line:
                ctx.skip(line.strip())
        rows += last_json(lines)["results"]
    figures = [f for row in rows for f in fit_figures(
        row, library=row["library"], backend=row.get("backend"), ranks=row.get("ranks"),
        threads=row.get("threads"), n_samples=params["n_samples"], trees=params["trees"])]
    return {"raw": rows, "figures": figures}


def serving_steps(params, ranks):
    return 2 + len(params["models"])


class Server:
    """scripts/serve.sh (Gunicorn) on a free loopback port, in its own process group."""

    def __init__(self, models_dir, log_path, workers):
        self.log_path = Path(log_path)
        env = child_env(MPIML_MODELS=models_dir, MPIML_BIND="127.0.0.1:0",
                        MPIML_WORKERS=workers, PYTHON=sys.executable, MPIML_LOG_LEVEL="info")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self._log = open(self.log_path, "wb")
        self.command = ["bash", str(SCRIPTS / "serve.sh"), str(models_dir)]
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout=180):
        """Wait until the server listens and ``/ready`` answers 200; return its URL."""
        deadline = time.monotonic() + timeout
        url = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n"
                                   + self.log()[-3000:])
            if url is None:
                match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", self.log())
                url = match.group(1) if match else None
            if url is not None and _http_status(url, "/ready") == 200:
                return url
            time.sleep(0.2)
        raise RuntimeError("the server did not become ready:\n" + self.log()[-3000:])

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def _http_status(url, path):
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def load_test(loadtest, url, model, params):
    """Load ``model`` with loadtest.py's keep-alive clients; return the sorted latencies
    (s), the error messages and the seconds of load."""
    try:  # loadtest.py's checks end its own process with SystemExit
        host, port = loadtest.loopback_target(url)
        listed = loadtest.fetch_json(host, port, "/v1/models")["models"]
    except SystemExit as exc:
        raise RuntimeError(f"load test of {model!r}: {exc}") from None
    info = next((m for m in listed if m["name"] == model), None)
    if info is None:
        raise RuntimeError(f"the server does not list model {model!r}: "
                           f"{[m['name'] for m in listed]}")
    path = f"/v1/models/{model}:predict"
    bodies = loadtest.make_bodies(info["n_features"], 1, "v1", count=64, seed=0)
    concurrency = params["concurrency"]
    if params["warmup"] > 0:
        loadtest.run_process((host, port, path, bodies, params["warmup"],
                              min(concurrency, 4), 10_000))
    processes = min(concurrency, 2)
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    jobs = [(host, port, path, bodies, params["duration"], n, 1000 * i)
            for i, n in enumerate(shares) if n]
    started = time.perf_counter()
    if len(jobs) == 1:
        results = [loadtest.run_process(jobs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
            results = pool.map(loadtest.run_process, jobs)
    elapsed = time.perf_counter() - started
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = [e for _, errs in results for e in errs]
    return latencies, errors, elapsed


def latency_histogram(latencies, bins=40):
    """Log-spaced histogram of latencies (s) in milliseconds: edges and counts."""
    import numpy as np
    ms = np.asarray(latencies) * 1e3
    if len(ms) == 0:
        return {"edges_ms": [], "counts": []}
    low, high = max(ms.min(), 1e-3), max(ms.max(), ms.min() * 1.01, 1e-3 * 1.01)
    counts, edges = np.histogram(ms, bins=np.geomspace(low, high, bins + 1))
    return {"edges_ms": [round(e, 4) for e in edges.tolist()], "counts": counts.tolist()}


def run_serving(ctx, params):
    loadtest = import_script("loadtest")
    models_dir = ctx.scratch / "models"
    models_dir.mkdir(exist_ok=True)
    data = (f"synthetic:classification?n_samples={params['train_rows']}"
            f"&n_features=28&seed=0")
    ctx.step(f"train {', '.join(params['models'])} on {params['train_rows']} rows "
             "(apps/train.py)")
    model_flags = {"forest": ["--n-estimators", "20", "--max-depth", "10"],
                   "gbdt": ["--n-estimators", "50"], "logistic": []}
    for model in params["models"]:
        ctx.run(["python", ROOT / "apps" / "train.py", model, "--data", data,
                 "--out", models_dir / f"{model}.mpiml", "--test-fraction", "0", "--quiet",
                 *model_flags.get(model, [])])
    workers = max(1, cores())
    ctx.step(f"start the server: scripts/serve.sh, {workers} Gunicorn workers")
    server = Server(models_dir, ctx.scratch / "gunicorn.log", workers)
    ctx.commands.append(shlex.join(server.command))
    figures, histograms = [], {}
    try:
        url = server.wait_ready()
        ctx.progress.output(f"listening at {url}")
        for model in params["models"]:
            ctx.step(f"load test {model}: {params['concurrency']} keep-alive clients, "
                     f"{params['duration']:g} s, one row per request")
            latencies, errors, elapsed = load_test(loadtest, url, model, params)
            requests = len(latencies) + len(errors)
            labels = {"model": model, "concurrency": params["concurrency"], "rows": 1,
                      "workers": workers}
            figures.append(figure("throughput", requests / elapsed, "requests/s", **labels))
            for q in (50, 90, 99):
                figures.append(figure(f"latency_p{q}",
                                      1e3 * loadtest.percentile(latencies, q), "ms", **labels))
            figures.append(figure("latency_max", 1e3 * latencies[-1] if latencies else None,
                                  "ms", **labels))
            figures.append(figure("errors", len(errors), "requests", **labels))
            histograms[model] = latency_histogram(latencies)
            ctx.progress.output(
                f"{model}: {requests / elapsed:.0f} requests/s, p50 "
                f"{1e3 * loadtest.percentile(latencies, 50):.2f} ms, p99 "
                f"{1e3 * loadtest.percentile(latencies, 99):.2f} ms, {len(errors)} errors")
            if errors:
                ctx.skip(f"{model}: {len(errors)} failed requests, e.g. {sorted(set(errors))[0]}")
    finally:
        server.stop()
    return {"figures": figures, "latency_histograms": histograms,
            "params_server": {"workers": workers}}


AREA_FUNCTIONS = {
    "matmul": (run_matmul, matmul_steps), "comm": (run_comm, comm_steps),
    "linear": (run_linear, linear_steps), "trees": (run_trees, trees_steps),
    "gbdt": (run_gbdt, gbdt_steps), "serving": (run_serving, serving_steps),
}

# -- driver -------------------------------------------------------------------------------------

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
