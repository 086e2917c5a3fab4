"""matmul: SUMMA and Cannon (MPI and threads) against numpy, by scripts/bench_matmul.py."""

import json

from .common import SCRIPTS, figure

__all__ = ["SIZES", "matmul_steps", "run_matmul", "matmul_figures"]

SIZES = {
    "tiny": {"sizes": [64, 128], "repeat": 1},
    "quick": {"sizes": [256, 512, 1024], "repeat": 2},
    "full": {"sizes": [512, 1024, 2048, 4096], "repeat": 3},
}


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
