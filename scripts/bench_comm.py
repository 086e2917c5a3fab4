"""Latency and bandwidth of Bcast, Allreduce, Sendrecv, Allgather and Reduce_scatter, 8 B
to 64 MiB (the message: each rank's send buffer).

The threads backend, the MPI backend and raw mpi4py, side by side in one run:

    python scripts/bench_comm.py                 # 2 ranks
    python scripts/bench_comm.py --ranks 4 --max-bytes 8M --json results.json

The MPI figures come from a child ``mpiexec -n P`` that times the mpiml MPI backend and
raw mpi4py alternately, message size by message size, so both see the same machine.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mpiml.comm.partition import block_counts  # noqa: E402

OPS = ("Bcast", "Allreduce", "Sendrecv", "Allgather", "Reduce_scatter")


def parse_bytes(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B")
    return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)


def sizes_up_to(max_bytes):
    """8 B, 64 B, ... (powers of 8), plus 1 MiB and 8 MiB (the targets), up to max_bytes."""
    sizes, n = {max_bytes}, 8
    while n < max_bytes:
        sizes.add(n)
        n *= 8
    sizes.update(s for s in (1 << 20, 8 << 20) if s < max_bytes)
    return sorted(sizes)


def repetitions(nbytes, budget=1 << 28):
    return int(max(5, min(2000, budget // max(nbytes, 1) // 8)))


def time_op(comm, op, nbytes, reps):
    """Collective: seconds per call of ``op`` on an ``nbytes`` message (max over ranks).

    ``comm`` is an mpiml Communicator or a raw mpi4py communicator: the calls have the
    same positional signature in both.
    """
    n = max(nbytes // 8, 1)
    send, recv = np.ones(n), np.empty(n)
    rank, size = _rank_size(comm)
    right, left = (rank + 1) % size, (rank - 1) % size
    gathered = np.empty(n * size)
    counts = block_counts(n, size)[0]
    block = np.empty(counts[rank])
    call = {"Bcast": lambda: comm.Bcast(send, 0),
            "Allreduce": lambda: comm.Allreduce(send, recv),
            "Sendrecv": lambda: comm.Sendrecv(send, right, 0, recv, left, 0),
            "Allgather": lambda: comm.Allgather(send, gathered),
            "Reduce_scatter": lambda: comm.Reduce_scatter(send, block, counts)}[op]
    call()  # warm up: connections, registration caches
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(reps):
        call()
    elapsed = (time.perf_counter() - start) / reps
    return max(comm.allgather(elapsed))


def _rank_size(comm):
    if hasattr(comm, "Get_rank"):
        return comm.Get_rank(), comm.Get_size()
    return comm.rank, comm.size


def threads_results(ranks, sizes):
    import mpiml

    def body(comm):
        return {op: {n: time_op(comm, op, n, repetitions(n)) for n in sizes} for op in OPS}
    return mpiml.run(body, threads=ranks)[0]


def mpi_worker(sizes):
    """Runs under mpiexec: mpiml's MPI backend and raw mpi4py, alternately."""
    from mpi4py import MPI

    import mpiml
    from mpiml.comm import world

    ours, raw = world(), MPI.COMM_WORLD.Dup()
    results = {"mpi": {op: {} for op in OPS}, "mpi4py": {op: {} for op in OPS}}
    for op in OPS:
        for n in sizes:
            reps = repetitions(n)
            best = {"mpi": [], "mpi4py": []}
            for turn in range(6):  # alternate who goes first; keep the best of six each
                pair = [("mpi", ours), ("mpi4py", raw)]
                for key, comm in (pair if turn % 2 == 0 else pair[::-1]):
                    best[key].append(time_op(comm, op, n, reps))
            for key in best:
                results[key][op][n] = min(best[key])
    if ours.rank == 0:
        print(json.dumps({"library": MPI.Get_library_version().splitlines()[0].strip(),
                          "version": mpiml.__version__, "results": results}))


def mpi_results(ranks, sizes):
    here = Path(__file__).resolve()
    env = dict(os.environ, MPIR_CVAR_CH4_PROGRESS_THROTTLE=os.environ.get(
        "MPIR_CVAR_CH4_PROGRESS_THROTTLE", "1" if ranks > (os.cpu_count() or 1) else "0"))
    mpiexec = Path(sys.executable).with_name("mpiexec")
    cmd = [str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", str(ranks), sys.executable,
           str(here), "--worker", "--sizes", ",".join(map(str, sizes))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    convert = {k: {op: {int(n): t for n, t in per.items()} for op, per in v.items()}
               for k, v in data["results"].items()}
    return data["library"], convert


def human(nbytes):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} B"


def table(results, sizes):
    cols = ("threads", "mpi", "mpi4py")
    head = (f"{'op':<14}{'size':>9} | " + " | ".join(f"{c + ' us':>12} {'GB/s':>7}" for c in cols)
            + f" | {'mpi/mpi4py':>10} {'thr/mpi':>8}")
    lines = [head, "-" * len(head)]
    for op in OPS:
        for n in sizes:
            t = {c: results[c][op][n] for c in cols}
            cells = " | ".join(f"{t[c] * 1e6:>12.1f} {n / t[c] / 1e9:>7.2f}" for c in cols)
            lines.append(f"{op:<14}{human(n):>9} | {cells} | "
                         f"{t['mpi4py'] / t['mpi']:>10.2f} {t['mpi'] / t['threads']:>8.2f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--max-bytes", type=parse_bytes, default=64 << 20,
                        help="largest message (e.g. 8M, 64M)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return mpi_worker([int(s) for s in args.sizes.split(",")])

    sizes = sizes_up_to(args.max_bytes)
    print(f"bench_comm: {args.ranks} ranks, {os.cpu_count()} cores, messages "
          f"{human(sizes[0])} .. {human(sizes[-1])}", flush=True)
    results = {"threads": threads_results(args.ranks, sizes)}
    library, mpi = mpi_results(args.ranks, sizes)
    results.update(mpi)
    print(f"MPI library: {library}\n")
    print(table(results, sizes))
    print("\nratios: mpi/mpi4py = raw mpi4py time / mpiml MPI time (1.00 = same speed); "
          "thr/mpi = MPI time / threads time (2.00 = threads twice as fast)")
    big = [n for n in sizes if n >= 1 << 20]
    if big:
        worst = min(results["mpi4py"][op][n] / results["mpi"][op][n] for op in OPS for n in big)
        print(f"target: MPI backend within 5% of mpi4py for >= 1 MiB: worst ratio {worst:.3f} "
              f"({'met' if worst >= 0.95 else 'NOT met'})")
    eight = 8 << 20
    if eight in sizes:
        ratio = results["mpi"]["Allreduce"][eight] / results["threads"]["Allreduce"][eight]
        print(f"target: threads >= 2x MPI bandwidth for Allreduce 8 MiB on {args.ranks} ranks: "
              f"{ratio:.2f}x ({'met' if ratio >= 2 else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"ranks": args.ranks, "library": library,
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
