#!/usr/bin/env python
"""Load test for the mpiml model server (loopback targets only).

N concurrent keep-alive clients post predictions for a bounded time and the script
prints requests/s, latency percentiles and the error count::

    python scripts/loadtest.py --model logistic --concurrency 8 --duration 60
    python scripts/loadtest.py --model forest --rows 10000 --concurrency 1 --duration 20
    python scripts/loadtest.py --model gbdt --rows 10000 --protocol v2-binary --concurrency 1
    python scripts/loadtest.py --pss MASTER_PID      # memory of a running server
    python scripts/loadtest.py --compare             # against the stack's ceiling

``--compare`` starts the servers itself, one after the other on a free loopback port with
the same Gunicorn settings (``serve/gunicorn.conf.py``, ``MPIML_WORKERS``,
``MPIML_THREADS``): the bare Flask app of ``scripts/ceiling_app.py``, which reads each
request and answers a constant, then the model server on a one-row logistic regression and
a 100-tree boosted model that it trains on synthetic data (``--features``), and prints
each one's requests/s, p50 and p99 with its ratio to the ceiling. ``--repeat N`` runs the
servers in turn N times and reports the round of the median ratio (the ratio of every round
is printed too): on a shared machine a drift in load then hits every server alike.

Clients are threads, each with its own HTTP/1.1 connection, spread over
``--processes`` processes so that the client's own interpreter lock does not cap
the rate. Only addresses that resolve to loopback are accepted: this tool must
never load someone else's server.
"""

import argparse
import http.client
import ipaddress
import json
import multiprocessing
import os
import random
import socket
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loopback_target(url):
    """Return (host, port) of ``url`` or raise SystemExit if it is not loopback."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"error: --url must be http://HOST:PORT, got {url!r}")
    port = parts.port or 80
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise SystemExit(f"error: cannot resolve {parts.hostname!r}: {exc}") from None
    addresses = {info[4][0] for info in infos}
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise SystemExit(f"error: refusing to load {parts.hostname!r} ({', '.join(sorted(addresses))}): "
                         "only loopback targets (127.0.0.0/8, ::1) are allowed")
    return parts.hostname, port


def fetch_json(host, port, path):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"error: GET {path} answered {resp.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


JSON_HEADERS = {"Content-Type": "application/json", "Connection": "keep-alive"}


def make_bodies(n_features, rows, protocol, count, seed, outputs=None):
    """``count`` request ``(body, headers)`` pairs of ``rows`` random rows each.

    ``v2-binary``: the binary tensor data extension, a JSON header (its length in
    ``Inference-Header-Content-Length``) followed by the rows as little-endian float64,
    and the outputs asked for as binary too.
    """
    import struct

    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        X = [[round(rng.gauss(0.0, 1.0), 6) for _ in range(n_features)] for _ in range(rows)]
        flat = [v for row in X for v in row]
        if protocol == "v1":
            bodies.append((json.dumps({"instances": X}, separators=(",", ":")).encode(),
                           JSON_HEADERS))
            continue
        tensor = {"name": "input-0", "shape": [rows, n_features], "datatype": "FP64"}
        if protocol == "v2":
            tensor["data"] = flat
        else:
            tensor["parameters"] = {"binary_data_size": 8 * len(flat)}
        body = {"inputs": [tensor]}
        if outputs:
            body["outputs"] = [{"name": name} for name in outputs]
        if protocol == "v2-binary":
            body["parameters"] = {"binary_data_output": True}
        header = json.dumps(body, separators=(",", ":")).encode()
        if protocol == "v2":
            bodies.append((header, JSON_HEADERS))
        else:
            bodies.append((header + struct.pack(f"<{len(flat)}d", *flat),
                           {"Content-Type": "application/octet-stream", "Connection": "keep-alive",
                            "Inference-Header-Content-Length": str(len(header))}))
    return bodies


def client_loop(host, port, path, bodies, deadline, latencies, errors, seed):
    """One keep-alive client: post until ``deadline``, appending latencies (s) and errors."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    while time.perf_counter() < deadline:
        body, headers = bodies[rng.randrange(len(bodies))]
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append(f"HTTP {resp.status}")
            else:
                latencies.append(time.perf_counter() - started)
            if resp.will_close:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.close()


def run_process(args):
    host, port, path, bodies, duration, threads, seed = args
    deadline = time.perf_counter() + duration
    latencies, errors = [], []
    workers = [threading.Thread(target=client_loop,
                                args=(host, port, path, bodies, deadline, latencies, errors, seed + i))
               for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return latencies, errors


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def pss_report(master_pid):
    """PSS (kB) of a Gunicorn master and its children, from /proc/PID/smaps_rollup."""
    def pss(pid):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        return 0

    def rss(pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == master_pid:
                    children.append(int(entry))
            except OSError:
                continue
    report = {"master_pid": master_pid, "master_pss_kb": pss(master_pid),
              "master_rss_kb": rss(master_pid),
              "workers": [{"pid": p, "pss_kb": pss(p), "rss_kb": rss(p)} for p in sorted(children)]}
    report["workers_pss_kb"] = sum(w["pss_kb"] for w in report["workers"])
    report["total_pss_kb"] = report["workers_pss_kb"] + report["master_pss_kb"]
    return report


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_models(directory, n_features):
    """Train the models the comparison serves; returns their names."""
    sys.path.insert(0, ROOT)
    import numpy as np

    import mpiml
    from mpiml.models.gbdt import GradientBoostingClassifier
    from mpiml.models.linear import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, n_features))
    y = (X[:, : max(1, n_features // 2)].sum(axis=1) + rng.standard_normal(5000) > 0)
    y = y.astype(np.int64)
    mpiml.save(LogisticRegression().fit(X, y), os.path.join(directory, "logistic.mpiml"))
    gbdt = GradientBoostingClassifier(n_estimators=100, random_state=0).fit(X, y)
    mpiml.save(gbdt, os.path.join(directory, "gbdt100.mpiml"))
    return ["logistic", "gbdt100"]


class _Server:
    """One Gunicorn server on a free loopback port, stopped on exit."""

    def __init__(self, app, env):
        import subprocess

        self.port = _free_port()
        env = dict(os.environ, MPIML_BIND=f"127.0.0.1:{self.port}", MPIML_LOG_LEVEL="warning",
                   **env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", os.path.join(ROOT, "serve", "gunicorn.conf.py"),
             app], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"error: the server exited: {self.proc.stderr.read()[-2000:]!r}")
            try:
                fetch_json("127.0.0.1", self.port, "/v1/models")
                return self
            except (OSError, SystemExit):
                time.sleep(0.1)
        raise SystemExit("error: the server did not start within 60 s")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def compare(args):
    """Ceiling, then each model, on the same settings: one table of figures and ratios."""
    import tempfile

    base = ["--concurrency", str(args.concurrency), "--duration", str(args.duration),
            "--warmup", str(args.warmup), "--rows", str(args.rows), "--protocol", args.protocol,
            "--json"]
    if args.processes:
        base += ["--processes", str(args.processes)]
    rounds = []
    with tempfile.TemporaryDirectory(prefix="mpiml-loadtest-") as directory:
        names = _make_models(directory, args.features)
        runs = [("ceiling", "scripts.ceiling_app:app",
                 {"CEILING_FEATURES": str(args.features)})]
        runs += [(name, "serve.wsgi:app", {"MPIML_MODELS": directory}) for name in names]
        for _ in range(args.repeat):   # the servers take turns, so that drift hits all alike
            results = []
            for label, app, env in runs:
                with _Server(app, env) as server:
                    model = "ceiling" if label == "ceiling" else label
                    out = _capture(["--url", f"http://127.0.0.1:{server.port}", "--model", model]
                                   + base)
                out["server"] = label
                results.append(out)
            ceiling = results[0]
            for r in results:
                r["ratio"] = round(r["requests_per_s"] / ceiling["requests_per_s"], 3)
                r["p99_ratio"] = (round(r["p99_ms"] / ceiling["p99_ms"], 3) if ceiling["p99_ms"]
                                  else None)
            rounds.append(results)
    # per server: the round with the median ratio (the ceiling: its median rate)
    results = []
    for k in range(len(rounds[0])):
        runs_k = sorted((r[k] for r in rounds),
                        key=lambda r: r["requests_per_s"] if k == 0 else r["ratio"])
        chosen = dict(runs_k[(len(runs_k) - 1) // 2])
        chosen["rounds"] = [r[k]["ratio"] if k else r[k]["requests_per_s"] for r in rounds]
        chosen["errors"] = sum(r[k]["errors"] for r in rounds)
        results.append(chosen)
    if args.json:
        print(json.dumps({"settings": {k: os.environ.get(k) for k in
                                       ("MPIML_WORKERS", "MPIML_THREADS")}, "results": results}))
    else:
        print(f"{'server':10s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'x ceiling':>10s} "
              f"{'p99 x':>7s} errors  rounds")
        for r in results:
            print(f"{r['server']:10s} {r['requests_per_s']:9.1f} {r['p50_ms']:8.2f} "
                  f"{r['p99_ms']:8.2f} {r['ratio']:10.3f} {r['p99_ratio']:7.3f} {r['errors']:6d}  "
                  f"{' '.join(str(x) for x in r['rounds'])}")
    return 1 if any(r["errors"] for r in results) else 0


def _capture(argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(argv)
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server (loopback only)")
    parser.add_argument("--model", help="model name (default: the first ready model)")
    parser.add_argument("--protocol", choices=["v1", "v2", "v2-binary"], default="v1",
                        help="v1 :predict, v2 JSON infer, or v2 infer with binary tensors")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--processes", type=int, default=0,
                        help="client processes (default: min(concurrency, 2))")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load not counted")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--outputs", nargs="+", choices=["predict", "predict_proba"],
                        help="v2 only: outputs to ask for (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--pss", type=int, metavar="MASTER_PID",
                        help="report the PSS of this Gunicorn master and its workers, then exit")
    parser.add_argument("--compare", action="store_true",
                        help="start the ceiling app and the model server in turn and compare")
    parser.add_argument("--repeat", type=int, default=1,
                        help="--compare: rounds (servers in turn); each figure is the median "
                             "round's")
    parser.add_argument("--features", type=int, default=20,
                        help="--compare: features of the generated models (default 20)")
    args = parser.parse_args(argv)

    if args.compare:
        return compare(args)
    if args.pss:
        report = pss_report(args.pss)
        if args.json:
            print(json.dumps(report))
        else:
            for w in report["workers"]:
                print(f"worker {w['pid']}: PSS {w['pss_kb'] / 1024:.1f} MiB, "
                      f"RSS {w['rss_kb'] / 1024:.1f} MiB")
            print(f"master {args.pss}: PSS {report['master_pss_kb'] / 1024:.1f} MiB")
            print(f"workers PSS sum {report['workers_pss_kb'] / 1024:.1f} MiB, "
                  f"with master {report['total_pss_kb'] / 1024:.1f} MiB")
        return 0

    if args.outputs and args.protocol == "v1":
        parser.error("--outputs needs --protocol v2 or v2-binary")
    if args.concurrency < 1 or args.duration <= 0 or args.rows < 1:
        parser.error("--concurrency and --rows must be >= 1 and --duration > 0")
    host, port = loopback_target(args.url)
    models = fetch_json(host, port, "/v1/models")["models"]
    ready = [m for m in models if m.get("status") == "ready"]
    if args.model is None:
        if not ready:
            raise SystemExit("error: the server has no ready model")
        args.model = ready[0]["name"]
    info = next((m for m in ready if m["name"] == args.model), None)
    if info is None:
        raise SystemExit(f"error: model {args.model!r} is not ready on the server "
                         f"(ready: {', '.join(m['name'] for m in ready) or 'none'})")
    quoted = urllib.parse.quote(args.model, safe="")
    path = f"/v1/models/{quoted}:predict" if args.protocol == "v1" else f"/v2/models/{quoted}/infer"
    bodies = make_bodies(info["n_features"], args.rows, args.protocol,
                         count=4 if args.rows > 100 else 64, seed=0, outputs=args.outputs)

    processes = args.processes or min(args.concurrency, 2)
    shares = [args.concurrency // processes + (i < args.concurrency % processes) for i in range(processes)]
    if args.warmup > 0:
        run_process((host, port, path, bodies, args.warmup, min(args.concurrency, 4), 10_000))
    started = time.perf_counter()
    jobs = [(host, port, path, bodies, args.duration, n, 1000 * i) for i, n in enumerate(shares) if n]
    if len(jobs) == 1:
        results = [run_process(jobs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
            results = pool.map(run_process, jobs)
    elapsed = time.perf_counter() - started
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = [e for _, errs in results for e in errs]
    summary = {
        "model": args.model, "protocol": args.protocol, "rows": args.rows,
        "concurrency": args.concurrency, "processes": len(jobs), "seconds": round(elapsed, 2),
        "requests": len(latencies) + len(errors), "errors": len(errors),
        "requests_per_s": round((len(latencies) + len(errors)) / elapsed, 1),
        "p50_ms": round(1000 * percentile(latencies, 50), 2),
        "p90_ms": round(1000 * percentile(latencies, 90), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
        "max_ms": round(1000 * latencies[-1], 2) if latencies else float("nan"),
    }
    if errors:
        summary["first_errors"] = sorted(set(errors))[:5]
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['requests']} requests in {summary['seconds']} s to {args.model!r} "
              f"({args.protocol}, {args.rows} row(s)/request, {args.concurrency} clients): "
              f"{summary['requests_per_s']} requests/s")
        print(f"latency p50 {summary['p50_ms']} ms, p90 {summary['p90_ms']} ms, "
              f"p99 {summary['p99_ms']} ms, max {summary['max_ms']} ms")
        print(f"errors: {len(errors)}" + (f" ({'; '.join(summary['first_errors'])})" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
