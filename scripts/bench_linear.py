"""Benchmark: mpiml LogisticRegression (lbfgs) at P = 1 and 2 against scikit-learn's.

    python scripts/bench_linear.py                      # 1,000,000 x 28, threads P=1,2 and mpiexec -n 2
    python scripts/bench_linear.py --n-samples 200000 --no-mpi

scikit-learn ``LogisticRegression(C=1, solver="lbfgs")`` is fitted first; its training
log-loss is the target. mpiml fits the unpenalised log-loss (``alpha=0``; scikit-learn's
``C=1`` penalty is negligible at this size) and the time reported is the time from the
start of ``fit`` until the first iteration whose training log-loss is within 1e-4 of
that target. Both use the same synthetic data set
(``synthetic:classification``); the whole fit time is reported too. mpiml ranks use one
BLAS thread each (P=1 included, for a like-for-like scaling figure); scikit-learn keeps
its default threading.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


import numpy as np  # noqa: E402

import mpiml  # noqa: E402
from mpiml import metrics  # noqa: E402
from mpiml.data import make_classification  # noqa: E402
from mpiml.models.linear import LogisticRegression  # noqa: E402

GAP = 1e-4


def fit_mpiml(comm, n_samples, n_features, target, X=None, y=None):
    """Collective: fit on this rank's rows; returns timing on rank 0."""
    if X is None:
        data = make_classification(comm, n_samples=n_samples, n_features=n_features, seed=0)
        X, y = data.X, data.y
    else:
        from mpiml.comm.partition import block_range
        s, e = block_range(len(X), comm.size, comm.rank)
        X, y = X[s:e], y[s:e]
    reached = []
    start = time.perf_counter()

    def progress(iteration, loss, **_):
        if target is not None and not reached and loss <= target + GAP:
            reached.append(time.perf_counter() - start)

    # C=inf: the objective that progress reports is then exactly the training log-loss
    model = LogisticRegression(C=np.inf, tol=1e-6, max_iter=300, standardize=True)
    comm.Barrier()
    start = time.perf_counter()
    model.fit(X, y, comm=comm, progress=progress)
    total = time.perf_counter() - start
    loss = metrics.log_loss(y, model.predict_proba(X), comm, labels=model.classes_)
    return {"ranks": comm.size, "backend": comm.backend, "fit_seconds": total,
            "seconds_to_target": reached[0] if reached else None, "log_loss": loss,
            "n_iter": model.n_iter_}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=28)
    parser.add_argument("--no-mpi", action="store_true")
    parser.add_argument("--worker", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:  # one mpiexec rank
        result = mpiml.run(fit_mpiml, args.n_samples, args.n_features, args.worker)
        if result is not None and result["ranks"] and mpiml.comm.world().rank == 0:
            print(json.dumps(result), flush=True)
        return

    from mpiml.comm import resolve_comm
    data = make_classification(resolve_comm(None), n_samples=args.n_samples,
                               n_features=args.n_features, seed=0)
    X, y = data.X, data.y
    from sklearn.linear_model import LogisticRegression as SkLogistic
    from sklearn.metrics import log_loss
    start = time.perf_counter()
    sk = SkLogistic(C=1.0, solver="lbfgs").fit(X, y)
    sk_seconds = time.perf_counter() - start
    target = log_loss(y, sk.predict_proba(X))
    rows = [{"impl": "scikit-learn", "ranks": 1, "backend": "-", "fit_seconds": sk_seconds,
             "seconds_to_target": sk_seconds, "log_loss": target, "n_iter": int(sk.n_iter_[0])}]
    for threads in (1, 2):
        result = mpiml.run(fit_mpiml, args.n_samples, args.n_features, target, X, y,
                           threads=threads, blas_threads=1)[0]
        rows.append(dict(result, impl="mpiml"))
    if not args.no_mpi:
        bindir = str(Path(sys.executable).parent)
        mpiexec = shutil.which("mpiexec", path=bindir + os.pathsep + os.environ["PATH"])
        env = dict(os.environ, MPIR_CVAR_CH4_PROGRESS_THROTTLE="1")
        proc = subprocess.run([mpiexec, "-n", "2", sys.executable, __file__, "--worker",
                               repr(target), "--n-samples", str(args.n_samples),
                               "--n-features", str(args.n_features)],
                              capture_output=True, text=True, env=env)
        if proc.returncode == 0:
            rows.append(dict(json.loads(proc.stdout.strip().splitlines()[-1]), impl="mpiml"))
        else:
            print(proc.stderr, file=sys.stderr)
    print(f"{args.n_samples} x {args.n_features} binary, target log-loss {target:.6f} "
          f"(+{GAP:g}); one shared machine, timings are noisy")
    print(f"{'impl':<13}{'backend':<9}{'P':>3}{'to target s':>13}{'fit s':>9}{'iters':>7}"
          f"{'log-loss':>11}")
    for r in rows:
        to = "not reached" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.2f}"
        print(f"{r['impl']:<13}{r['backend']:<9}{r['ranks']:>3}{to:>13}{r['fit_seconds']:>9.2f}"
              f"{r['n_iter']:>7}{r['log_loss']:>11.6f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
