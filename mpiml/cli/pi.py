"""Estimate pi by the midpoint rule with the intervals split over ranks.

    mpiexec -n 4 mpiml pi --intervals 10000000
    mpiml pi --threads 4
"""

import argparse
import json
import math
import sys
import time

import numpy as np

import mpiml
from mpiml.cli import add_launch_arguments, launch, positive_int
from mpiml.comm import block_range


def estimate_pi(comm, intervals):
    """Collective: the midpoint-rule estimate of pi with ``intervals`` intervals."""
    lo, hi = block_range(intervals, comm.size, comm.rank)
    x = (np.arange(lo, hi, dtype=np.float64) + 0.5) / intervals
    part = np.array([np.sum(4.0 / (1.0 + x * x)) / intervals])
    total = np.empty(1)
    comm.Allreduce(part, total, op=mpiml.SUM)
    return float(total[0])


def _job(comm, intervals):
    start = time.perf_counter()
    value = estimate_pi(comm, intervals)
    return {"rank": comm.rank, "backend": comm.backend, "ranks": comm.size, "pi": value,
            "error": abs(value - math.pi), "seconds": time.perf_counter() - start}


def main(argv=None, prog="mpiml pi"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=positive_int, default=10_000_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_launch_arguments(parser)
    args = parser.parse_args(argv)
    result = launch(_job, args, args.intervals)
    if result["rank"] == 0:
        result.pop("rank")
        if args.json:
            print(json.dumps(result))
        else:
            print(f"pi ~ {result['pi']:.15f} (error {result['error']:.1e}) on {result['ranks']} "
                  f"{result['backend']} rank(s) in {result['seconds']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
