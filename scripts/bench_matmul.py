"""Benchmark apps/matmul.py (SUMMA and Cannon, MPI and thread backends) against numpy.

For each size n and rank count P this runs, side by side:

* numpy ``A @ B`` in one process with min(P, cores) BLAS threads (the baseline);
* ``mpiexec -n P python apps/matmul.py --json`` (MPI backend) and
  ``python apps/matmul.py --threads P --json`` (thread backend), one BLAS thread per rank,

and prints GFLOP/s and the ratio to numpy. Each figure is the best of ``--repeat`` runs.
On a shared machine the wall-clock figures also measure the waiting for a core; the
``GF/cpu-s`` columns (GFLOP per CPU-second, all ranks or BLAS threads together) show
the work each side did, and their ratio the overhead of the distributed algorithm.
Cannon needs a square rank count: with a non-square P it runs on the next square
(marked ``*`` when that oversubscribes the cores). With several rank counts that
include 1, it also prints the parallel efficiency GFLOP/s(P) / (P * GFLOP/s(1)).

With ``--op add`` it measures ``C = A + B`` instead (``apps/matmul.py --op add``, C
gathered on rank 0), private blocks against one shared array per node (``--shared``),
against numpy's ``A + B`` in one process: the time of the addition, the time of the
gather, and the node's total memory (PSS: shared pages counted once) once A, B, C and
the gathered C are held.

    python scripts/bench_matmul.py                          # n = 1024, 2048, 4096; P = 2
    python scripts/bench_matmul.py --sizes 1024 --repeat 2  # quick
    python scripts/bench_matmul.py --sizes 8192 --ranks 1,2,4,8,16 --backends mpi
    python scripts/bench_matmul.py --op add                 # n = 8192; P = 1, 2
    python scripts/bench_matmul.py --op add --sizes 2048 --backends mpi
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "apps" / "matmul.py"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from mpiml.cli import positive_int  # noqa: E402


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, "
                                         f"got {text!r}")
    return values


def _name_list(choices):
    def parse(text):
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in names if v not in choices]
        if not names or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}, got {text!r}")
        return names
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", choices=("matmul", "add"), default="matmul",
                        help="matmul: A @ B (default); add: A + B, shared against private "
                             "blocks")
    parser.add_argument("--sizes", type=_int_list,
                        help="square sizes n, comma separated (default 1024,2048,4096; "
                             "--op add: 8192)")
    parser.add_argument("--ranks", type=_int_list,
                        help="rank counts P, comma separated (default 2; --op add: 1,2)")
    parser.add_argument("--algos", type=_name_list(("summa", "cannon")),
                        default=["summa", "cannon"])
    parser.add_argument("--backends", type=_name_list(("mpi", "threads")),
                        default=["mpi", "threads"])
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="runs per figure (best kept)")
    parser.add_argument("--out", type=Path, help="also write every result as JSON here")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [8192] if args.op == "add" else [1024, 2048, 4096]
    if args.ranks is None:
        args.ranks = [1, 2] if args.op == "add" else [2]
    return args


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "1")
    return env


def numpy_gflops(n, threads, dtype, repeat):
    """numpy ``A @ B`` with ``threads`` BLAS threads, in a fresh process: best GFLOP/s of
    wall-clock time, and GFLOP per CPU-second (all threads) in that run."""
    code = f"""
import json, time
import numpy as np
from threadpoolctl import threadpool_limits
rng = np.random.default_rng(0)
a = rng.standard_normal(({n}, {n})).astype("{dtype}")
b = rng.standard_normal(({n}, {n})).astype("{dtype}")
best = (float("inf"), 0.0)
with threadpool_limits({threads}, user_api="blas"):
    a[:256] @ b[:, :256]
    for _ in range({repeat}):
        start, cpu = time.perf_counter(), time.process_time()
        a @ b
        best = min(best, (time.perf_counter() - start, time.process_time() - cpu))
flops = 2 * {n} ** 3 / 1e9
print(json.dumps([flops / best[0], flops / max(best[1], 1e-9)]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def numpy_add(n, dtype, repeat):
    """numpy ``A + B`` in a fresh process: best seconds of ``A + B`` (a new C each time)
    and of ``np.add(A, B, out=C)`` (into a C already touched, as apps/matmul.py does), and
    the process's memory (RSS, PSS) once A, B and C are held."""
    code = f"""
import json, sys, time
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
from mpiml.comm import process_memory
rng = np.random.default_rng(0)
a = rng.standard_normal(({n}, {n})).astype("{dtype}")
b = rng.standard_normal(({n}, {n})).astype("{dtype}")
best = in_place = float("inf")
for _ in range({repeat}):
    start = time.perf_counter()
    c = a + b
    best = min(best, time.perf_counter() - start)
    if _ < {repeat} - 1:
        del c
for _ in range({repeat}):
    start = time.perf_counter()
    np.add(a, b, out=c)
    in_place = min(in_place, time.perf_counter() - start)
print(json.dumps([best, in_place, *process_memory()]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def app_report(n, ranks, backend, app_args, dtype, repeat):
    """Run apps/matmul.py once (best of ``repeat`` operations) and return its JSON report."""
    # one BLAS thread per rank at every P (at P = 1 a lone rank would otherwise use all cores)
    args = [str(APP), "--n", str(n), *app_args, "--dtype", dtype,
            "--repeat", str(repeat), "--json", "--blas-threads", "1"]
    if backend == "threads":
        cmd = [sys.executable, *args, "--threads", str(ranks)]
    else:
        mpiexec = shutil.which("mpiexec", path=_env()["PATH"])
        if mpiexec is None:
            raise SystemExit("error: mpiexec not found next to the Python interpreter or on PATH")
        cmd = [mpiexec, "-n", str(ranks), sys.executable, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cannon_ranks(p):
    q = math.isqrt(p)
    return p if q * q == p else (q + 1) ** 2


def bench_add(args):
    """``--op add``: private blocks and shared arrays on every backend and rank count,
    against numpy's ``A + B`` in one process. Returns the reports."""
    mib = 2 ** 20
    print(f"{'n':>6} {'P':>3} {'backend':<8} {'blocks':<8} {'seconds':>8} {'GB/s':>6} "
          f"{'x numpy':>7} {'gather s':>8} {'node PSS MiB':>12} {'x numpy':>7}  per rank MiB")
    results = []
    for n in args.sizes:
        seconds, in_place, _, pss = numpy_add(n, args.dtype, args.repeat)
        moved = 3 * n * n * np.dtype(args.dtype).itemsize / 1e9
        print(f"{n:>6} {1:>3} {'numpy':<8} {'A + B':<8} {seconds:>8.4f} {moved / seconds:>6.2f} "
              f"{1.0:>7.2f} {'-':>8} {pss / mib:>12.0f} {1.0:>7.2f}", flush=True)
        print(f"{n:>6} {1:>3} {'numpy':<8} {'out=C':<8} {in_place:>8.4f} "
              f"{moved / in_place:>6.2f} {in_place / seconds:>7.2f}", flush=True)
        results.append({"op": "add", "impl": "numpy", "n": n, "ranks": 1, "seconds": seconds,
                        "in_place_seconds": in_place, "pss_bytes": [pss],
                        "node_pss_bytes": [pss], "dtype": args.dtype})
        for p in args.ranks:
            for backend in args.backends:
                for shared in (False, True):
                    rep = app_report(n, p, backend, ["--op", "add"] + ["--shared"] * shared,
                                     args.dtype, args.repeat)
                    node = sum(rep["node_pss_bytes"])
                    rep.update(impl="mpiml", numpy_seconds=seconds, numpy_pss_bytes=pss,
                               time_ratio=rep["seconds"] / seconds, memory_ratio=node / pss)
                    results.append(rep)
                    per_rank = ", ".join(f"{x / mib:.0f}" for x in rep["pss_bytes"])
                    print(f"{n:>6} {p:>3} {backend:<8} {'shared' if shared else 'private':<8} "
                          f"{rep['seconds']:>8.4f} {rep['gbytes_per_s']:>6.2f} "
                          f"{rep['time_ratio']:>7.2f} {rep['gather_seconds']:>8.4f} "
                          f"{node / mib:>12.0f} {rep['memory_ratio']:>7.2f}  {per_rank}",
                          flush=True)
    return results


def main(argv=None):
    args = parse_args(argv)
    if args.op == "add":
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"# {os.cpu_count() or 1} cores, load average {load:.2f} at start; {args.dtype}; "
              f"best of {args.repeat}; C = A + B, then C gathered on rank 0")
        results = bench_add(args)
        _write(args.out, results)
        return 0
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {cores} cores, load average {load:.2f} at start; {args.dtype}; best of "
          f"{args.repeat}; one BLAS thread per rank")
    header = (f"{'n':>6} {'P':>3} {'backend':<8} {'algo':<7} {'grid':<5} {'seconds':>8} "
              f"{'GFLOP/s':>8} {'numpy':>7} {'ratio':>6} {'eff':>5} {'GF/cpu-s':>8} "
              f"{'numpy':>7} {'ratio':>6}  comm MB (model)")
    print(header)
    results, single, done = [], {}, set()
    started = time.time()
    for n in args.sizes:
        for p in args.ranks:
            threads = min(p, cores)
            base, base_cpu = numpy_gflops(n, threads, args.dtype, args.repeat)
            print(f"{n:>6} {p:>3} {'numpy':<8} {f'{threads} thr':<7} {'-':<5} "
                  f"{2 * n ** 3 / base / 1e9:>8.3f} {base:>8.1f} {base:>7.1f} {1.0:>6.2f} "
                  f"{'':>5} {base_cpu:>8.1f} {base_cpu:>7.1f} {1.0:>6.2f}", flush=True)
            for backend in args.backends:
                for algo in args.algos:
                    ranks = cannon_ranks(p) if algo == "cannon" else p
                    if (n, backend, algo, ranks) in done:   # Cannon: P=2 and P=4 both run 4
                        continue
                    done.add((n, backend, algo, ranks))
                    rep = app_report(n, ranks, backend, ["--algo", algo], args.dtype,
                                     args.repeat)
                    cpu_gflops = 2 * n ** 3 / 1e9 / max(rep["cpu_seconds"], 1e-9)
                    rep.update(numpy_gflops=base, numpy_cpu_gflops=base_cpu,
                               numpy_threads=threads, ratio=rep["gflops"] / base,
                               cpu_gflops=cpu_gflops, cpu_ratio=cpu_gflops / base_cpu)
                    key = (n, backend, algo)
                    if ranks == 1:
                        single[key] = rep["gflops"]
                    eff = rep["gflops"] / (ranks * single[key]) if key in single else None
                    rep["efficiency"] = eff
                    results.append(rep)
                    mark = "*" if ranks > cores else " "
                    grid = "x".join(map(str, rep["grid"]))
                    print(f"{n:>6} {ranks:>3}{mark}{backend:<8} {algo:<7} {grid:<5} "
                          f"{rep['seconds']:>8.3f} {rep['gflops']:>8.1f} {base:>7.1f} "
                          f"{rep['ratio']:>6.2f} {'' if eff is None else f'{eff:.2f}':>5} "
                          f"{cpu_gflops:>8.1f} {base_cpu:>7.1f} {rep['cpu_ratio']:>6.2f}  "
                          f"{rep['comm_bytes'] / 1e6:.1f} ({rep['comm_bytes_model'] / 1e6:.1f})",
                          flush=True)
    print(f"# {time.time() - started:.0f} s; load average {os.getloadavg()[0]:.2f} at the end; "
          f"* = more ranks than cores")
    _write(args.out, results)
    return 0


def _write(path, results):
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
