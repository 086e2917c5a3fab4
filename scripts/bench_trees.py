"""Benchmark: mpiml random forests and decision trees against scikit-learn.

One run, the same data for both libraries (``mpiml.data.make_classification``, a
synthetic binary problem with 28 features, plus a held-out test set of a quarter as many
rows):

* forest: 200,000 training rows, 50 trees (``max_features="sqrt"``, fully grown,
  bootstrap), mpiml ``parallel="trees"`` on P ranks against scikit-learn
  ``RandomForestClassifier(n_jobs=2)``;
* tree: 1,000,000 training rows, one ``DecisionTreeClassifier(max_depth=10)``, mpiml
  (``parallel="data"``) on P ranks against scikit-learn's.

mpiml runs as thread ranks (``--ranks 1,2``), or as MPI processes with ``--backend mpi``
(each process generates the data and fits on its block of rows). Prints per line the fit's wall seconds, the
process CPU seconds it used (all threads; useful when the machine is shared) and the test
AUC; ``--json`` adds one JSON object on the last line.

    python scripts/bench_trees.py [--forest-samples 200000] [--tree-samples 1000000]
                                  [--trees 50] [--depth 10] [--ranks 1,2] [--only forest|tree]
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import mpiml  # noqa: E402
from mpiml.comm import resolve_comm  # noqa: E402
from mpiml.comm.partition import block_range  # noqa: E402
from mpiml.data import make_classification  # noqa: E402
from mpiml.models.forest import RandomForestClassifier  # noqa: E402
from mpiml.models.tree import DecisionTreeClassifier  # noqa: E402


def make_data(n_train, n_features, seed):
    n_test = max(1, n_train // 4)
    data = make_classification(resolve_comm(None), n_samples=n_train + n_test,
                               n_features=n_features, seed=seed)
    return data.X[:n_train], data.y[:n_train], data.X[n_train:], data.y[n_train:]


def auc(y, score):
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, score))


def fit_mpiml(make, ranks, X, y):
    """Fit on ``ranks`` thread ranks: (wall seconds of the slowest rank, model)."""
    make().set_params(max_depth=3).fit(X[:500], y[:500])  # load the compiled kernels first
    def body(comm):
        start, stop = block_range(len(X), comm.size, comm.rank)
        model = make()
        comm.Barrier()
        t0 = time.perf_counter()
        model.fit(X[start:stop], y[start:stop], comm=comm)
        comm.Barrier()
        return time.perf_counter() - t0, model

    return mpiml.run(body, threads=ranks)[0]


def mpi_worker(args):
    """Under mpiexec: fit one case on the MPI world; rank 0 prints one JSON line."""
    from mpiml.comm import world
    comm = world()
    if args.worker == "forest":
        X, y, X_test, y_test = make_data(args.forest_samples, args.features, args.seed)
        model = RandomForestClassifier(n_estimators=args.trees, random_state=0)
    else:
        X, y, X_test, y_test = make_data(args.tree_samples, args.features, args.seed + 1)
        model = DecisionTreeClassifier(max_depth=args.depth)
    start, stop = block_range(len(X), comm.size, comm.rank)
    warm = block_range(500, comm.size, comm.rank)  # load the compiled kernels first
    type(model)(max_depth=3).fit(X[warm[0]:warm[1]], y[warm[0]:warm[1]], comm=comm)
    comm.Barrier()
    cpu, t0 = time.process_time(), time.perf_counter()
    model.fit(X[start:stop], y[start:stop], comm=comm)
    comm.Barrier()
    seconds = time.perf_counter() - t0
    cpu = comm.allreduce(time.process_time() - cpu)
    if comm.rank == 0:
        print(json.dumps({"seconds": seconds, "cpu_seconds": cpu,
                          "auc": auc(y_test, model.predict_proba(X_test)[:, 1])}), flush=True)


def fit_mpi(case, ranks, args):
    """Run ``mpi_worker`` under mpiexec: (wall seconds, process CPU seconds, test AUC)."""
    import shutil
    import subprocess
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                           + os.environ.get("PATH", ""))
    command = [mpiexec, "-n", str(ranks), sys.executable, os.path.abspath(__file__),
               "--worker", case, "--forest-samples", str(args.forest_samples),
               "--tree-samples", str(args.tree_samples), "--features", str(args.features),
               "--trees", str(args.trees), "--depth", str(args.depth), "--seed", str(args.seed)]
    env = dict(os.environ, MPIR_CVAR_CH4_PROGRESS_THROTTLE="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return row["seconds"], row["cpu_seconds"], row["auc"]


def fit_sklearn(model, X, y):
    t0 = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - t0, model


def run_case(name, data, mpiml_make, sklearn_make, ranks, rows, args):
    X, y, X_test, y_test = data
    backends = ("threads", "mpi") if args.backend == "both" else (args.backend,)
    if "mpi" in backends:
        for p in ranks:
            seconds, cpu, score = fit_mpi(name, p, args)
            row = {"case": name, "library": "mpiml", "backend": "mpi", "ranks": p,
                   "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                   "auc": round(score, 5)}
            print(f"{name:7s} {'mpiml mpi P=' + str(p):14s} {row['seconds']:8.2f} s  "
                  f"(cpu {row['cpu_seconds']:7.2f} s)  AUC {row['auc']:.4f}", flush=True)
            rows.append(row)
    runs = [(f"mpiml P={p}", {"library": "mpiml", "ranks": p},
             lambda p=p: fit_mpiml(mpiml_make, p, X, y)) for p in ranks if "threads" in backends]
    if sklearn_make is not None:
        runs.append(("scikit-learn", {"library": "scikit-learn"},
                     lambda: fit_sklearn(sklearn_make(), X, y)))
    for label, info, fit in runs:
        cpu = time.process_time()
        seconds, model = fit()
        cpu = time.process_time() - cpu
        row = dict(case=name, **info, seconds=round(seconds, 2), cpu_seconds=round(cpu, 2),
                   auc=round(auc(y_test, model.predict_proba(X_test)[:, 1]), 5))
        print(f"{name:7s} {label:14s} {row['seconds']:8.2f} s  (cpu {row['cpu_seconds']:7.2f} s)"
              f"  AUC {row['auc']:.4f}", flush=True)
        rows.append(row)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forest-samples", type=int, default=200_000)
    parser.add_argument("--tree-samples", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=28)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--ranks", default="1,2", help="comma-separated mpiml rank counts")
    parser.add_argument("--sklearn-jobs", type=int, default=2)
    parser.add_argument("--only", choices=("forest", "tree"))
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("threads", "mpi", "both"), default="threads",
                        help="mpiml ranks as threads (default) or mpiexec processes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=("forest", "tree"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return mpi_worker(args)
    ranks = [int(r) for r in args.ranks.split(",") if r]
    rows = []
    if args.only in (None, "forest"):
        from sklearn.ensemble import RandomForestClassifier as SkForest
        data = make_data(args.forest_samples, args.features, args.seed)
        print(f"forest: {args.forest_samples} x {args.features}, {args.trees} trees", flush=True)
        run_case("forest", data,
                 lambda: RandomForestClassifier(n_estimators=args.trees, random_state=0),
                 None if args.no_sklearn else
                 lambda: SkForest(n_estimators=args.trees, n_jobs=args.sklearn_jobs, random_state=0),
                 ranks, rows, args)
    if args.only in (None, "tree"):
        from sklearn.tree import DecisionTreeClassifier as SkTree
        data = make_data(args.tree_samples, args.features, args.seed + 1)
        print(f"tree: {args.tree_samples} x {args.features}, max_depth {args.depth}", flush=True)
        run_case("tree", data, lambda: DecisionTreeClassifier(max_depth=args.depth),
                 None if args.no_sklearn else lambda: SkTree(max_depth=args.depth, random_state=0),
                 ranks, rows, args)
    if args.json:
        print(json.dumps({"benchmark": "trees", "results": rows}))


if __name__ == "__main__":
    main()
