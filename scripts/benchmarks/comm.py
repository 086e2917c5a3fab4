"""comm: Bcast, Allreduce, Sendrecv, Allgather, Reduce_scatter (threads, MPI, raw mpi4py), by
scripts/bench_comm.py."""

import json

from .common import SCRIPTS, AreaSkipped, figure, mpiexec_path

__all__ = ["SIZES", "comm_steps", "run_comm"]

SIZES = {
    "tiny": {"ranks": 2, "max_bytes": "64K"},
    "quick": {"ranks": 2, "max_bytes": "4M"},
    "full": {"ranks": 2, "max_bytes": "64M"},
}


def comm_steps(params, ranks):
    return 1


def run_comm(ctx, params):
    if mpiexec_path() is None:
        raise AreaSkipped("mpiexec not found (install the mpich extra or a system MPI)")
    ctx.step(f"Bcast, Allreduce, Sendrecv, Allgather, Reduce_scatter up to {params['max_bytes']}B on "
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
