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
import importlib.metadata
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
SCHEMA = "mpiml-bench/1"
AREAS = ("matmul", "comm", "linear", "trees", "gbdt", "serving")
GBDT_PEERS = ("lightgbm", "xgboost", "sklearn")
PEER_MODULES = {"lightgbm": "lightgbm", "xgboost": "xgboost", "sklearn": "sklearn",
                "scikit-learn": "sklearn", "matplotlib": "matplotlib"}
INSTALL_HINT = "pip install -e '.[bench]'"

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
CHILD_TIMEOUT = {"tiny": 300, "quick": 600, "full": 4 * 3600}


# -- helpers ------------------------------------------------------------------------------

def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_ranks():
    """1, 2, 4, ... up to the cores (at least 1 and 2): the strong-scaling rank counts."""
    ranks, p = [1], 2
    while p <= max(2, cores()):
        ranks.append(p)
        p *= 2
    if cores() > 2 and ranks[-1] != cores():
        ranks.append(cores())
    return ranks


def missing_modules(names):
    """The subset of ``names`` (peer names or module names) that cannot be imported."""
    return [n for n in names if importlib.util.find_spec(PEER_MODULES.get(n, n)) is None]


def child_env(**extra):
    """Environment of a child: the venv first on PATH, idle MPICH ranks yield, unbuffered
    output (progress streams), and no launcher variables (a nested mpiexec is its own job)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def mpiexec_path():
    local = Path(sys.executable).with_name("mpiexec")
    if local.exists():
        return str(local)
    import shutil
    return shutil.which("mpiexec")


def last_json(lines):
    """The last line of ``lines`` that is a JSON object or array, decoded (None if none)."""
    for line in reversed(lines):
        text = line.strip()
        if text[:1] in "{[":
            try:
                return json.loads(text)
            except ValueError:
                continue
    return None


def import_script(name):
    """Import ``scripts/NAME.py`` as a module (the scripts folder is not a package)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return __import__(name)


class AreaSkipped(Exception):
    """An area cannot run here (a library or a script is missing)."""


class ChildFailed(Exception):
    def __init__(self, command, returncode, tail, timed_out=False):
        what = "timed out" if timed_out else f"exited with {returncode}"
        super().__init__(f"{shlex.join(command)} {what}:\n" + "\n".join(tail))
        self.tail = tail


# -- progress -----------------------------------------------------------------------------

class Progress:
    """Progress lines on a stream: elapsed time, step i of N, the area, and child output."""

    def __init__(self, total, stream=None, verbose=True):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.started = time.monotonic()
        self._step_started = self.started
        self._lock = threading.Lock()

    def elapsed(self):
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    def _print(self, text):
        with self._lock:
            print(f"[{self.elapsed()}] {text}", file=self.stream, flush=True)

    def step(self, area, label):
        self.done += 1
        self._step_started = time.monotonic()
        self._print(f"({self.done}/{self.total}) {area}: {label}")

    def step_seconds(self):
        return time.monotonic() - self._step_started

    def output(self, line):
        text = line.strip()
        # a child's machine-readable JSON line is for the results file, not for the eye
        if self.verbose and text and not (text[:1] in "{[" and text[-1:] in "}]"):
            self._print(f"    {line}")

    def note(self, text):
        self._print(text)


class Context:
    """What an area needs: its parameters, the rank counts, a scratch folder, progress."""

    def __init__(self, size, ranks, scratch, progress, peers=None):
        self.size, self.ranks, self.scratch = size, ranks, Path(scratch)
        self.progress, self.peers = progress, peers
        self.timeout = CHILD_TIMEOUT[size]
        self.area = None
        self.commands = []
        self.skipped = []

    def step(self, label):
        self.progress.step(self.area, label)

    def skip(self, message):
        self.skipped.append(message)
        self.progress.note(f"{self.area}: {message}")

    def run(self, args, **env):
        """Run a child (``python`` stands for this interpreter), stream its output as
        progress, and return its output lines; raise ChildFailed on a non-zero exit."""
        command = [sys.executable if a == "python" else str(a) for a in args]
        for arg in args[1:2]:
            if str(arg).endswith(".py") and not Path(arg).exists():
                raise AreaSkipped(f"{Path(arg).relative_to(ROOT)} is missing in this checkout")
        self.commands.append(shlex.join(command))
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", cwd=ROOT, env=child_env(**env),
                                start_new_session=True)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and any mpiexec ranks it started
            except ProcessLookupError:
                pass

        timer = threading.Timer(self.timeout, kill)
        timer.start()
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                self.progress.output(lines[-1])
            returncode = proc.wait()
        except BaseException:  # Ctrl-C: the child has its own session and would live on
            kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        if returncode != 0 or timed_out.is_set():
            raise ChildFailed(command, returncode, lines[-25:], timed_out.is_set())
        return lines


def figure(name, value, unit, **labels):
    """One measured figure with its unit and what it was measured on."""
    out = {"name": name, "value": None if value is None else float(value), "unit": unit}
    out.update(labels)
    return out


def fit_figures(row, **labels):
    """The fit time, CPU time (when measured) and test AUC of one trained model's row."""
    figures = [figure("fit_time", row["seconds"], "s", **labels)]
    if "cpu_seconds" in row:
        figures.append(figure("fit_cpu_time", row["cpu_seconds"], "s", **labels))
    figures.append(figure("test_auc", row["auc"], "1", **labels))
    return figures


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


# -- the machine ------------------------------------------------------------------------------

def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _physical_cores():
    try:
        pairs, physical, core = set(), None, None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                core = value.strip()
                pairs.add((physical, core))
        return len(pairs) or None
    except OSError:
        return None


def _memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _blas():
    import numpy as np
    out = {"threadpoolctl": None, "numpy_build": None}
    try:
        from threadpoolctl import threadpool_info
        out["threadpoolctl"] = [{k: v for k, v in lib.items() if k != "filepath"}
                                for lib in threadpool_info()]
    except ImportError:
        pass
    try:
        config = np.show_config(mode="dicts")
        deps = config.get("Build Dependencies", {})
        out["numpy_build"] = {k: {f: deps[k].get(f) for f in ("name", "version",
                                                                "openblas configuration")
                                  if f in deps[k]} for k in ("blas", "lapack") if k in deps}
    except (TypeError, AttributeError):
        pass
    return out


def _mpi():
    """The MPI library as mpiml sees it, asked in a child so this process stays MPI-free."""
    out = {"mpiexec": mpiexec_path(), "mpi4py": _version("mpi4py"),
           "mpich_wheel": _version("mpich"), "library": None}
    code = "from mpiml.comm.mpi import library_version; print(library_version())"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, cwd=ROOT, env=child_env())
        if done.returncode == 0 and done.stdout.strip():
            out["library"] = done.stdout.strip().splitlines()[-1]
        else:
            out["error"] = (done.stderr.strip().splitlines() or ["no output"])[-1]
    except subprocess.TimeoutExpired:
        out["error"] = "timed out asking the MPI library for its version"
    if out["mpiexec"]:
        try:
            text = subprocess.run([out["mpiexec"], "--version"], capture_output=True, text=True,
                                  timeout=30).stdout
            match = re.search(r"Version:\s*(\S+)", text)
            out["mpiexec_version"] = match.group(1) if match else text.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    return out


def _git():
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=ROOT, timeout=10)
        if head.returncode == 0:
            return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def describe_machine():
    """Cores, memory, CPU, BLAS, MPI library and package versions of this machine."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": cores(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "memory_bytes": _memory_bytes(),
        "load_average_at_start": None if load is None else [round(x, 2) for x in load],
        "blas": _blas(),
        "mpi": _mpi(),
        "packages": {name: _version(name) for name in (
            "mpiml", "numpy", "numba", "mpi4py", "scikit-learn", "lightgbm", "xgboost",
            "matplotlib", "gunicorn", "flask")},
        "environment": {k: os.environ[k] for k in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MPIML_BLAS_THREADS",
            "MPIR_CVAR_CH4_PROGRESS_THROTTLE") if k in os.environ},
        "git": _git(),
    }


# -- plots --------------------------------------------------------------------------------------

def _select(area, name, **labels):
    return [f for f in (area or {}).get("figures", [])
            if f["name"] == name and f["value"] is not None
            and all(f.get(k) == v for k, v in labels.items())]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, source):
    fig.text(0.99, 0.005, source, ha="right", va="bottom", fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _machine_line(results):
    m = results.get("machine", {})
    load = m.get("load_average_at_start")
    return (f"{m.get('cores', '?')} cores" + (f", load average {load[0]:g} at start" if load
                                              else "")
            + f", {results.get('size', '?')} size, {results.get('created', '')[:16]}")


def plot_matmul_gflops(results, out):
    area = results["benchmarks"].get("matmul")
    figs = _select(area, "gflops", impl="mpiml")
    if not figs:
        return None
    p = max(f["ranks"] for f in figs if f["algo"] == "summa") if any(
        f["algo"] == "summa" for f in figs) else max(f["ranks"] for f in figs)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    marks = {"summa": "o", "cannon": "s"}
    for algo in ("summa", "cannon"):
        for backend in ("mpi", "threads"):
            # Cannon runs on the next square rank count: the run paired with P ranks
            ranks = p if algo == "summa" else max(
                (f["ranks"] for f in figs if f["algo"] == algo), default=p)
            pts = sorted((f["n"], f["value"]) for f in figs if f["algo"] == algo
                         and f["backend"] == backend and f["ranks"] == ranks)
            if pts:
                ax.plot(*zip(*pts), marker=marks[algo], ls="-" if backend == "mpi" else "--",
                        label=f"mpiml {algo.upper() if algo == 'summa' else 'Cannon'}, "
                              f"{backend}, {ranks} ranks")
    threads = min(p, results.get("machine", {}).get("cores") or p)
    pts = sorted((f["n"], f["value"]) for f in _select(area, "gflops", impl="numpy")
                 if f.get("threads") == threads)
    if pts:
        ax.plot(*zip(*pts), marker="^", color="k", label=f"numpy A @ B, {threads} BLAS threads")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("matrix size n (n x n times n x n)")
    ax.set_ylabel("throughput (GFLOP/s)")
    ax.set_title("Distributed matrix multiply: GFLOP/s against n (float64)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "matmul_gflops.png", _machine_line(results))


def _scaling_plot(results, out, name, title, series):
    """``series``: list of (label, [(ranks, seconds)]) -> time and efficiency subplots."""
    series = [(label, sorted(pts)) for label, pts in series if pts]
    if not series:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    all_ranks = sorted({r for _, pts in series for r, _ in pts})
    for label, pts in series:
        ranks, seconds = zip(*pts)
        line, = left.plot(ranks, seconds, marker="o", label=label)
        base = dict(pts).get(1)
        if base:
            left.plot(ranks, [base / r for r in ranks], ls=":", color=line.get_color(), alpha=0.6)
            right.plot(ranks, [base / (s * r) for r, s in pts], marker="o",
                       color=line.get_color(), label=label)
    right.axhline(1.0, color="k", ls=":", lw=1, label="ideal")
    left.plot([], [], ls=":", color="0.4", label="ideal (time at 1 rank / P)")
    for ax in (left, right):
        ax.set_xlabel("ranks P")
        ax.set_xticks(all_ranks)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("time (s)")
    left.set_title("time against ranks")
    right.set_ylabel("parallel efficiency T(1) / (P T(P))")
    right.set_ylim(0, max(1.2, right.get_ylim()[1]))
    right.set_title("parallel efficiency")
    fig.suptitle(f"Strong scaling: {title}")
    return _save(fig, out / f"scaling_{name}.png", _machine_line(results))


def plot_scaling_matmul(results, out):
    area = results["benchmarks"].get("matmul")
    figs = _select(area, "time", impl="mpiml")
    if not figs:
        return None
    n = max(f["n"] for f in figs)
    series = []
    for algo in ("summa", "cannon"):
        for backend in ("mpi", "threads"):
            series.append((f"{algo}, {backend}", [(f["ranks"], f["value"]) for f in figs
                                                  if f["n"] == n and f["algo"] == algo
                                                  and f["backend"] == backend]))
    return _scaling_plot(results, out, "matmul", f"matrix multiply, n = {n}", series)


def plot_scaling_forest(results, out):
    figs = _select(results["benchmarks"].get("trees"), "fit_time", case="forest",
                   library="mpiml")
    return _scaling_plot(results, out, "forest", "random forest fit (mpiml, thread ranks)",
                         [("mpiml threads", [(f["ranks"], f["value"]) for f in figs])])


def plot_scaling_gbdt(results, out):
    figs = _select(results["benchmarks"].get("gbdt"), "fit_time", library="mpiml")
    series = [(f"mpiml {b}", [(f["ranks"], f["value"]) for f in figs if f.get("backend") == b])
              for b in ("threads", "mpi")]
    return _scaling_plot(results, out, "gbdt", "gradient boosting fit (mpiml)", series)


def _peer_label(f):
    if f["library"] == "mpiml":
        return f"mpiml {f.get('backend') or ''} P={f.get('ranks')}".replace("  ", " ")
    threads = f.get("threads")
    return f"{f['library']}" + (f" ({threads} thr)" if threads else "")


def _peers_plot(results, out, name, title, time_figs, quality_figs, quality_label):
    if not time_figs:
        return None
    plt = _pyplot()
    labels = [_peer_label(f) for f in time_figs]
    quality = {_peer_label(f): f["value"] for f in quality_figs}
    colors = ["tab:blue" if f["library"] == "mpiml" else "tab:orange" for f in time_figs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(labels) + 2.2))
    y = range(len(labels))
    bars = left.barh(y, [f["value"] for f in time_figs], color=colors)
    left.bar_label(bars, fmt="%.3g s", fontsize=7, padding=2)
    left.margins(x=0.15)
    left.set_yticks(list(y), labels)
    left.invert_yaxis()
    left.set_xlabel("training time (s)")
    left.set_title("training time (lower is better)")
    values = [quality.get(lb, math.nan) for lb in labels]
    bars = right.barh(y, values, color=colors)
    right.bar_label(bars, fmt="%.4f", fontsize=7, padding=2)
    right.set_yticks(list(y), labels)
    right.invert_yaxis()
    finite = [v for v in values if not math.isnan(v)]
    if finite:
        spread = max(finite) - min(finite)
        pad = max(spread, 0.01)
        right.set_xlim(min(finite) - pad, max(finite) + pad)
    from matplotlib.ticker import MaxNLocator
    right.xaxis.set_major_locator(MaxNLocator(5))
    right.set_xlabel(quality_label)
    right.set_title(quality_label.split(" (")[0])
    from matplotlib.patches import Patch
    left.legend(handles=[Patch(color="tab:blue", label="mpiml"),
                         Patch(color="tab:orange", label="peer")], fontsize=8, loc="lower right")
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title)
    return _save(fig, out / f"peers_{name}.png", _machine_line(results))


def plot_peers_gbdt(results, out):
    area = results["benchmarks"].get("gbdt")
    return _peers_plot(results, out, "gbdt", "Gradient boosting: mpiml against LightGBM, "
                       "XGBoost and scikit-learn", _select(area, "fit_time"),
                       _select(area, "test_auc"), "test AUC (higher is better)")


def plot_peers_forest(results, out):
    area = results["benchmarks"].get("trees")
    return _peers_plot(results, out, "forest", "Random forest: mpiml against scikit-learn",
                       _select(area, "fit_time", case="forest"),
                       _select(area, "test_auc", case="forest"), "test AUC (higher is better)")


def plot_peers_tree(results, out):
    area = results["benchmarks"].get("trees")
    return _peers_plot(results, out, "tree", "Decision tree: mpiml against scikit-learn",
                       _select(area, "fit_time", case="tree"),
                       _select(area, "test_auc", case="tree"), "test AUC (higher is better)")


def plot_peers_linear(results, out):
    area = results["benchmarks"].get("linear")
    return _peers_plot(results, out, "linear", "Logistic regression (L-BFGS): mpiml against "
                       "scikit-learn", _select(area, "fit_time"),
                       _select(area, "train_log_loss"), "training log-loss (lower is better)")


def plot_serving_latency(results, out):
    area = results["benchmarks"].get("serving") or {}
    histograms = {m: h for m, h in area.get("latency_histograms", {}).items() if h["counts"]}
    if not histograms:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, hist in histograms.items():
        edges, counts = hist["edges_ms"], hist["counts"]
        total = sum(counts) or 1
        line, = ax.step(edges, [counts[0] / total] + [c / total for c in counts], where="pre",
                        label=model)
        for q, ls in (("latency_p50", "--"), ("latency_p99", ":")):
            for f in _select(area, q, model=model):
                ax.axvline(f["value"], color=line.get_color(), ls=ls, lw=1)
    ax.plot([], [], color="0.4", ls="--", label="p50")
    ax.plot([], [], color="0.4", ls=":", label="p99")
    params = (results.get("params", {}).get("serving") or {})
    ax.set_xscale("log")
    ax.set_xlabel("request latency (ms, log scale)")
    ax.set_ylabel("fraction of requests per bin")
    ax.set_title(f"Serving latency: one row per request, {params.get('concurrency', '?')} "
                 "keep-alive clients")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "serving_latency.png", _machine_line(results))


def plot_comm(results, out):
    area = results["benchmarks"].get("comm")
    figs = _select(area, "bandwidth")
    if not figs:
        return None
    plt = _pyplot()
    ops = sorted({f["op"] for f in figs})
    fig, axes = plt.subplots(1, len(ops), figsize=(4 * len(ops), 4), squeeze=False)
    for ax, op in zip(axes[0], ops):
        for impl in ("threads", "mpi", "mpi4py"):
            pts = sorted((f["bytes"], f["value"]) for f in figs if f["op"] == op
                         and f["impl"] == impl)
            if pts:
                ax.plot(*zip(*pts), marker="o", label={"threads": "mpiml threads",
                                                       "mpi": "mpiml MPI",
                                                       "mpi4py": "raw mpi4py"}[impl])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("bandwidth (GB/s)")
        ax.set_title(op)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Communication on {figs[0].get('ranks', '?')} ranks")
    return _save(fig, out / "comm_bandwidth.png", _machine_line(results))


PLOTS = (plot_matmul_gflops, plot_scaling_matmul, plot_scaling_forest, plot_scaling_gbdt,
         plot_peers_gbdt, plot_peers_forest, plot_peers_tree, plot_peers_linear,
         plot_serving_latency, plot_comm)


def make_plots(results, out):
    """Write every plot that ``results`` has data for into ``out``; return the file names."""
    if missing_modules(["matplotlib"]):
        print(f"plots skipped: matplotlib is not installed ({INSTALL_HINT})", file=sys.stderr)
        return []
    out = Path(out)
    written = []
    for plot in PLOTS:
        path = plot(results, out)
        if path is not None:
            written.append(Path(path).name)
    return written


# -- summary table ------------------------------------------------------------------------------

def _one(area, name, **labels):
    found = _select(area, name, **labels)
    return found[0]["value"] if found else None


def _fmt(value, unit=""):
    if value is None:
        return "-"
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {unit}".rstrip()


def _ratio(ours, theirs, higher_is_better):
    if not ours or not theirs:
        return "-"
    return f"{(ours / theirs if higher_is_better else theirs / ours):.2f}x"


def _matmul_rows(area):
    rows = []
    sizes = sorted({f["n"] for f in _select(area, "gflops", impl="mpiml")})
    if not sizes:
        return rows
    n = sizes[-1]
    for algo in ("summa", "cannon"):
        ranks = sorted({f["ranks"] for f in _select(area, "gflops", algo=algo, n=n)})
        for p in [r for r in ranks if r > 1][-1:]:
            numpy = _one(area, "gflops", impl="numpy", n=n, threads=min(p, cores()))
            for backend in ("mpi", "threads"):
                ours = _one(area, "gflops", algo=algo, backend=backend, ranks=p, n=n)
                rows.append((f"matmul {algo}, n = {n}, {backend} P = {p}",
                             _fmt(ours, "GFLOP/s"), f"numpy `A @ B`: {_fmt(numpy, 'GFLOP/s')}",
                             _ratio(ours, numpy, True)))
    return rows


def _comm_rows(area):
    sizes = sorted({f["bytes"] for f in _select(area, "latency", op="Allreduce")})
    if not sizes:
        return []
    size = max([b for b in sizes if b <= 8 << 20] or sizes)
    raw = _one(area, "latency", op="Allreduce", impl="mpi4py", bytes=size)
    return [(f"Allreduce {size:,} bytes, {backend} backend",
             _fmt(_one(area, "latency", op="Allreduce", impl=backend, bytes=size), "us"),
             f"raw mpi4py: {_fmt(raw, 'us')}",
             _ratio(_one(area, "latency", op="Allreduce", impl=backend, bytes=size), raw, False))
            for backend in ("threads", "mpi")]


PEER_TITLES = {
    "linear": "logistic regression, L-BFGS to the peer's log-loss, {n_samples:,} rows",
    "forest": "random forest, {trees} trees, {forest_samples:,} rows",
    "tree": "decision tree, depth {depth}, {tree_samples:,} rows",
    "gbdt": "gradient boosting, {trees} trees of {leaves} leaves, {n_samples:,} rows",
}


def _peer_rows(area, case, time_name, quality_name, quality_label):
    labels = {"case": case} if case in ("forest", "tree") else {}
    figures = _select(area, time_name, **labels)
    ours = [f for f in figures if f.get("library") == "mpiml"]
    peers = [f for f in figures if f.get("library") != "mpiml"] or [None]
    if not ours:
        return []
    title = PEER_TITLES[case].format(**area.get("params", {}))
    top = max(f["ranks"] for f in ours)
    rows = []
    for f in (f for f in ours if f["ranks"] == top):
        quality = _one(area, quality_name, **labels, library="mpiml", backend=f["backend"],
                       ranks=top)
        for peer in peers:
            peer_text = "-" if peer is None else (
                f"{peer['library']}: {_fmt(peer['value'], 's')}, {quality_label} "
                f"{_one(area, quality_name, **labels, library=peer['library']):.5f}")
            rows.append((f"{title}; {f['backend']} P = {top}",
                         f"{_fmt(f['value'], 's')}, {quality_label} {quality:.5f}", peer_text,
                         _ratio(f["value"], peer and peer["value"], False)))
    return rows


def _serving_rows(area):
    rows = []
    for f in _select(area, "throughput"):
        labels = {k: f[k] for k in ("model", "concurrency", "rows", "workers")}
        p50, p99 = (_one(area, f"latency_{q}", **labels) for q in ("p50", "p99"))
        errors = _one(area, "errors", **labels)
        rows.append((f"serving {f['model']}, {f['rows']} row(s), {f['concurrency']} clients, "
                     f"{f['workers']} workers",
                     f"{_fmt(f['value'], 'req/s')}, p50 {_fmt(p50, 'ms')}, p99 "
                     f"{_fmt(p99, 'ms')}, {_fmt(errors)} errors", "-", "-"))
    return rows


def summary_table(results):
    """Markdown table of the headline figures in ``results``: mpiml, the peer, the ratio.

    A ratio above 1 means mpiml is faster (time, latency) or higher (GFLOP/s).
    """
    benchmarks = results.get("benchmarks", {})
    area = {name: entry for name, entry in benchmarks.items() if entry.get("status") == "ok"}
    rows = []
    if "matmul" in area:
        rows += _matmul_rows(area["matmul"])
    if "comm" in area:
        rows += _comm_rows(area["comm"])
    if "linear" in area:
        rows += _peer_rows(area["linear"], "linear", "time_to_target", "train_log_loss",
                           "log-loss")
    for case in ("forest", "tree"):
        if "trees" in area:
            rows += _peer_rows(area["trees"], case, "fit_time", "test_auc", "AUC")
    if "gbdt" in area:
        rows += _peer_rows(area["gbdt"], "gbdt", "fit_time", "test_auc", "AUC")
    if "serving" in area:
        rows += _serving_rows(area["serving"])
    lines = [f"Command: `{results.get('command', '?')}`; {_machine_line(results)}.", "",
             "| benchmark | mpiml | peer | mpiml vs peer |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "mpiml vs peer: above 1x, mpiml takes less time (or does more GFLOP/s); "
              "P: ranks."]
    return "\n".join(lines) + "\n"


def write_summary(results, out):
    path = Path(out) / "summary.md"
    path.write_text(summary_table(results))
    return path


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


def summary_lines(results):
    lines = []
    for name, area in results["benchmarks"].items():
        head = f"{name:8s} {area['status']:8s} {area.get('seconds', 0):7.1f} s"
        if area["status"] != "ok":
            head += f"  {area.get('reason', '').splitlines()[0] if area.get('reason') else ''}"
        lines.append(head)
        for message in area.get("skipped", []):
            lines.append(f"{'':8s} note: {message}")
    return lines


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
