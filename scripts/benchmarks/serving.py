"""serving: scripts/serve.sh (Gunicorn) loaded by scripts/loadtest.py's keep-alive clients."""

import http.client
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from .common import ROOT, SCRIPTS, child_env, cores, figure, import_script

__all__ = ["SIZES", "serving_steps", "run_serving", "Server", "load_test", "latency_histogram"]

SIZES = {
    "tiny": {"models": ["logistic", "gbdt"], "train_rows": 2000, "concurrency": 2,
             "duration": 1.0, "warmup": 0.3},
    "quick": {"models": ["logistic", "forest", "gbdt"], "train_rows": 20_000,
              "concurrency": 4, "duration": 5.0, "warmup": 1.0},
    "full": {"models": ["logistic", "forest", "gbdt"], "train_rows": 200_000,
             "concurrency": 8, "duration": 30.0, "warmup": 3.0},
}


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
