#!/usr/bin/env python
"""Load test for the mpiml model server (loopback targets only).

N concurrent keep-alive clients post predictions for a bounded time and the script
prints requests/s, latency percentiles and the error count::

    python scripts/loadtest.py --model logistic --concurrency 8 --duration 60
    python scripts/loadtest.py --model forest --rows 10000 --concurrency 1 --duration 20
    python scripts/loadtest.py --pss MASTER_PID      # memory of a running server

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


def make_bodies(n_features, rows, protocol, count, seed, outputs=None):
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        X = [[round(rng.gauss(0.0, 1.0), 6) for _ in range(n_features)] for _ in range(rows)]
        if protocol == "v1":
            body = {"instances": X}
        else:
            body = {"inputs": [{"name": "input-0", "shape": [rows, n_features], "datatype": "FP64",
                                "data": [v for row in X for v in row]}]}
            if outputs:
                body["outputs"] = [{"name": name} for name in outputs]
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def client_loop(host, port, path, bodies, deadline, latencies, errors, seed):
    """One keep-alive client: post until ``deadline``, appending latencies (s) and errors."""
    rng = random.Random(seed)
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    conn = http.client.HTTPConnection(host, port, timeout=30)
    while time.perf_counter() < deadline:
        body = bodies[rng.randrange(len(bodies))]
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server (loopback only)")
    parser.add_argument("--model", help="model name (default: the first ready model)")
    parser.add_argument("--protocol", choices=["v1", "v2"], default="v1")
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
    args = parser.parse_args(argv)

    if args.pss:
        report = pss_report(args.pss)
        if args.json:
            print(json.dumps(report))
        else:
            for w in report["workers"]:
                print(f"worker {w['pid']}: PSS {w['pss_kb'] / 1024:.1f} MiB, RSS {w['rss_kb'] / 1024:.1f} MiB")
            print(f"master {args.pss}: PSS {report['master_pss_kb'] / 1024:.1f} MiB")
            print(f"workers PSS sum {report['workers_pss_kb'] / 1024:.1f} MiB, "
                  f"with master {report['total_pss_kb'] / 1024:.1f} MiB")
        return 0

    if args.outputs and args.protocol != "v2":
        parser.error("--outputs needs --protocol v2")
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
