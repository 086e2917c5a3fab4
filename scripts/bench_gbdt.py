"""Benchmark: mpiml gradient boosting against LightGBM, XGBoost and scikit-learn.

One run, the same data for every library: a synthetic binary problem
(``mpiml.data.make_classification``, default 1,000,000 training rows x 28 features
plus 200,000 test rows), 100 trees of 31 leaves, learning rate 0.1. mpiml runs on
P = 1 and P = 2 ranks (``--ranks``), as thread ranks and/or MPI processes
(``--backend threads|mpi|both``, both by default when ``mpiexec`` is found; each MPI
rank keeps an equal block of the training rows); the other libraries on ``--threads`` threads
(LightGBM ``num_leaves=31``, XGBoost ``hist`` with ``max_depth=6``, scikit-learn
``HistGradientBoostingClassifier(max_leaf_nodes=31)``). A library that is
not installed is skipped with a message (``pip install -e .[bench]``).

    python scripts/bench_gbdt.py [--n-samples 1000000] [--json]

Prints one line per library: fit seconds (wall clock), CPU seconds of the fit (all
threads, all ranks: a second view when the machine is shared) and test AUC. ``--json`` prints the rows as
one JSON object on the last line.

``--case table``: a table of ``--rows`` rows (default 1,000,000; 25% more for the test)
with 8 numeric features and two categorical ones of 50 and 1,000 levels (text
categories in pandas ``category`` columns, the 1,000 of Zipf-like frequencies), 10% of
every column missing; mpiml (thread ranks, ``categorical_features="from_dtype"``),
LightGBM (pandas ``category`` columns) and scikit-learn's HistGradientBoosting
(``categorical_features="from_dtype"`` for the 50 levels; it refuses more than 255
categories, so it gets the 1,000-level feature as ordinal codes), with fit time, test
AUC and each library's time and AUC relative to mpiml on P=1.

    python scripts/bench_gbdt.py --case table [--rows 200000]

``--case runs``: whole runs, each in a process of its own (``mpiexec -n P`` for MPI
ranks): load the training rows from one ``.npy`` file (each MPI rank reads its block),
fit, save the model (mpiml's model file, LightGBM's and XGBoost's own), with the wall
seconds from start to saved model and the peak memory summed over the ranks, taken
before the test AUC is computed: resident (``VmHWM``, which counts the pages the ranks
share, such as their libraries, once per rank) and proportional (PSS: each shared page
divided among the processes that map it, so that the sum is the memory the ranks use
together; see ``scripts/gbdt_run.py``). mpiml runs at each P of
``--ranks`` under mpiexec and on thread ranks; LightGBM (default, and
``use_quantized_grad=True``) and XGBoost on 1 and ``--threads`` threads. Each row gets its
parallel efficiency (against the same library's one-rank or one-thread run) and its time
and memory relative to LightGBM on ``--threads`` threads. ``--repeat N`` runs the whole plan N
times in rounds (each round starting one run later in the plan) and reports, for each
configuration, the run of the median time with every round's time over LightGBM's in the
same round, so that a drift of a shared machine's speed shows instead of deciding a ratio.

    python scripts/bench_gbdt.py --case runs [--rows 1000000] [--repeat 3] [--json]

``--profile``: mpiml alone, at each P of ``--ranks`` (1 and 2 needed; under mpiexec unless
``--backend threads``), the time per tree of each phase of the fit (gradients,
histograms, split search, partition, leaf values, per-split bookkeeping, the collectives
and the waiting before them, and the rest of the wall time: binning and set-up), the
split of each phase into the part that divides by P and the part every rank repeats, and
the modelled efficiency at P = 4, 8, 16 and 64 beside the measured ones (see
``efficiency_model``). With ``--repeat N`` every P is profiled N times, in rounds (P = 1,
2, ... in each), and each phase's median over the rounds goes into the model: the
repeated part is ``2 t(2) - t(1)``, so one noisy run moves it by twice its noise.

    python scripts/bench_gbdt.py --profile --ranks 1,2,4 [--n-samples 200000] [--repeat 3]
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mpiml  # noqa: E402
from mpiml.comm import resolve_comm  # noqa: E402
from mpiml.data import make_classification  # noqa: E402
from mpiml.models.gbdt import GradientBoostingClassifier  # noqa: E402
from mpiml.models.tree._profile import profiling  # noqa: E402
from gbdt_run import mpiml_params, peer_model  # noqa: E402


def make_data(n_train, n_test, n_features, seed):
    data = make_classification(resolve_comm(None), n_samples=n_train + n_test,
                               n_features=n_features, seed=seed)
    return data.X[:n_train], data.y[:n_train], data.X[n_train:], data.y[n_train:]


def auc(y, score):
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, score))


def fit_threads(ranks, X, y, args, profile=False):
    """Fit on ``ranks`` thread ranks: ``(seconds, rank 0's model, each rank's phase
    seconds or None)``."""
    from mpiml.comm.partition import block_range

    def body(comm):
        start, stop = block_range(len(X), comm.size, comm.rank)
        model = GradientBoostingClassifier(**mpiml_params(args.trees, args.leaves))
        comm.Barrier()
        with (profiling() if profile else contextlib.nullcontext()) as phases:
            t0 = time.perf_counter()
            model.fit(X[start:stop], y[start:stop], comm=comm)
            comm.Barrier()
            seconds = time.perf_counter() - t0
        return seconds, model, None if phases is None else phases.seconds

    results = mpiml.run(body, threads=ranks)
    return results[0][0], results[0][1], [r[2] for r in results]


def bench_mpiml(ranks, X, y, X_test, y_test, args):
    cpu = time.process_time()
    seconds, model, _ = fit_threads(ranks, X, y, args)
    cpu = time.process_time() - cpu
    return seconds, cpu, auc(y_test, model.predict_proba(X_test)[:, 1])


def bench_lightgbm(X, y, X_test, y_test, args):
    model = peer_model("lightgbm", args.trees, args.leaves, args.threads)
    t0, cpu = time.perf_counter(), time.process_time()
    model.fit(X, y)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    return seconds, cpu, auc(y_test, model.predict_proba(X_test)[:, 1])


def bench_xgboost(X, y, X_test, y_test, args):
    model = peer_model("xgboost", args.trees, args.leaves, args.threads)
    t0, cpu = time.perf_counter(), time.process_time()
    model.fit(X, y)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    return seconds, cpu, auc(y_test, model.predict_proba(X_test)[:, 1])


def bench_sklearn(X, y, X_test, y_test, args):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits
    model = HistGradientBoostingClassifier(max_iter=args.trees, max_leaf_nodes=args.leaves,
                                           learning_rate=0.1, min_samples_leaf=20,
                                           early_stopping=False)
    with threadpool_limits(limits=args.threads):
        t0, cpu = time.perf_counter(), time.process_time()
        model.fit(X, y)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    return seconds, cpu, auc(y_test, model.predict_proba(X_test)[:, 1])


def mpi_worker(args):
    """Under mpiexec: each rank takes its block of the same data set, fits, reports."""
    from mpiml.comm import world
    from mpiml.comm.partition import block_range
    from mpiml.metrics import roc_auc

    comm = world()
    # every rank makes the whole set and keeps its block of the training rows, so that
    # the ranks hold equal shares (blocks of training and test rows together would not)
    X_all, y_all, X_test, y_test = make_data(args.n_samples, args.n_test, args.n_features,
                                             args.seed)
    a, b = block_range(args.n_samples, comm.size, comm.rank)
    X, y = X_all[a:b].copy(), y_all[a:b].copy()
    test = slice(*block_range(args.n_test, comm.size, comm.rank))
    X_test, y_test = X_test[test].copy(), y_test[test].copy()
    del X_all, y_all
    # numba's compilation (rank 0, into the cache) and every rank's loading of the
    # kernels, outside the timing: a rank that loads them in the timed fit makes the
    # others wait, and the profile would count that as work that every rank repeats
    if comm.rank == 0:
        GradientBoostingClassifier(n_estimators=2).fit(X[:20_000], y[:20_000])
    comm.Barrier()
    if comm.rank != 0:
        GradientBoostingClassifier(n_estimators=2).fit(X[:20_000], y[:20_000])
    model = GradientBoostingClassifier(**mpiml_params(args.trees, args.leaves))
    comm.Barrier()
    with (profiling() if args.profile else contextlib.nullcontext()) as phases:
        t0, cpu = time.perf_counter(), time.process_time()
        model.fit(X, y, comm=comm)
        cpu = comm.allreduce(time.process_time() - cpu)
        comm.Barrier()
        seconds = time.perf_counter() - t0
    every = comm.gather(phases.seconds if phases is not None else None, root=0)
    score = roc_auc(y_test, model.predict_proba(X_test)[:, 1], comm)
    if comm.rank == 0:
        print(json.dumps({"seconds": seconds, "cpu": cpu, "auc": score, "phases": every}),
              flush=True)


def find_mpiexec():
    """``mpiexec`` beside this Python (a venv's MPICH) or on ``PATH``; None if absent."""
    bindir = os.path.dirname(sys.executable)
    return shutil.which("mpiexec", path=bindir + os.pathsep + os.environ.get("PATH", ""))


def mpi_env():
    """The environment of the benchmark's MPI runs: idle MPICH ranks yield."""
    return dict(os.environ, MPIR_CVAR_CH4_PROGRESS_THROTTLE="1")


def bench_mpiml_mpi(ranks, args, profile=False):
    mpiexec = find_mpiexec()
    if mpiexec is None:
        raise FileNotFoundError("mpiexec not found")
    command = [mpiexec, "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker",
               "--n-samples", str(args.n_samples), "--n-test", str(args.n_test),
               "--n-features", str(args.n_features), "--trees", str(args.trees),
               "--leaves", str(args.leaves), "--seed", str(args.seed)]
    if profile:
        command.append("--profile")
    done = subprocess.run(command, env=mpi_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mpiexec failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if profile:
        return result["seconds"], result["phases"]
    return result["seconds"], result["cpu"], result["auc"]


PEERS = {"lightgbm": bench_lightgbm, "xgboost": bench_xgboost, "sklearn": bench_sklearn}


# -- the table case: missing values and categorical features --------------------------------

TABLE_LEVELS = (50, 1000)
TABLE_NUMERIC = 8
TABLE_MISSING = 0.1


def make_table(n, seed):
    """``(X DataFrame, y)``: numeric and categorical columns, 10% of every cell missing,
    a logistic target of all of them (the missing values with effects of their own)."""
    import pandas as pd
    rng = np.random.default_rng(seed)
    effects = np.random.default_rng(12345)     # the same model for training and test
    weights = effects.normal(size=TABLE_NUMERIC)
    nan_effect = effects.normal(size=TABLE_NUMERIC)
    logit = np.zeros(n)
    columns = {}
    for j in range(TABLE_NUMERIC):
        x = rng.normal(size=n)
        missing = rng.random(n) < TABLE_MISSING
        logit += np.where(missing, nan_effect[j], weights[j] * np.tanh(x))
        x[missing] = np.nan
        columns[f"x{j}"] = x
    for k in TABLE_LEVELS:
        frequency = 1.0 / np.arange(1, k + 1) ** 0.7
        codes = rng.choice(k, size=n, p=frequency / frequency.sum())
        level_effect = effects.normal(scale=1.0, size=k)
        missing = rng.random(n) < TABLE_MISSING
        logit += np.where(missing, 0.5, level_effect[codes])
        names = np.array([f"L{k}_{c:04d}" for c in range(k)], dtype=object)
        cat = pd.Categorical.from_codes(np.where(missing, -1, codes), categories=names)
        columns[f"cat{k}"] = cat
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(logit - logit.mean())))).astype(np.int64)
    return pd.DataFrame(columns), y


def table_mpiml(ranks, X, y, X_test, y_test, args):
    from mpiml.comm.partition import block_range

    def body(comm):
        start, stop = block_range(len(X), comm.size, comm.rank)
        model = GradientBoostingClassifier(**mpiml_params(args.trees, args.leaves))
        part = X.iloc[start:stop]
        comm.Barrier()
        t0 = time.perf_counter()
        model.fit(part, y[start:stop], comm=comm)
        comm.Barrier()
        return time.perf_counter() - t0, model

    cpu = time.process_time()
    seconds, model = mpiml.run(body, threads=ranks)[0]
    cpu = time.process_time() - cpu
    return seconds, cpu, auc(y_test, model.predict_proba(X_test)[:, 1])


def table_lightgbm(X, y, X_test, y_test, args):
    model = peer_model("lightgbm", args.trees, args.leaves, args.threads)
    t0, cpu = time.perf_counter(), time.process_time()
    model.fit(X, y)       # pandas category columns are LightGBM's categorical features
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    return seconds, cpu, auc(y_test, model.predict_proba(X_test)[:, 1])


def _ordinal_wide(X):
    """HistGradientBoosting takes at most 255 categories: wider ones as their codes."""
    X = X.copy()
    for k in TABLE_LEVELS:
        if k > 255:
            codes = X[f"cat{k}"].cat.codes.to_numpy().astype(np.float64)
            X[f"cat{k}"] = np.where(codes < 0, np.nan, codes)
    return X


def table_sklearn(X, y, X_test, y_test, args):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits
    model = HistGradientBoostingClassifier(max_iter=args.trees, max_leaf_nodes=args.leaves,
                                           learning_rate=0.1, min_samples_leaf=20,
                                           early_stopping=False, categorical_features="from_dtype")
    X, X_test = _ordinal_wide(X), _ordinal_wide(X_test)
    with threadpool_limits(limits=args.threads):
        t0, cpu = time.perf_counter(), time.process_time()
        model.fit(X, y)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    return seconds, cpu, auc(y_test, model.predict_proba(X_test)[:, 1])


TABLE_PEERS = {"lightgbm": table_lightgbm, "sklearn": table_sklearn}


def run_table(args):
    """The table case, every library in one run; ratios against mpiml on P=1."""
    n = args.rows or 1_000_000
    X, y = make_table(n, args.seed)
    X_test, y_test = make_table(max(1, n // 4), args.seed + 1)
    print(f"table: {n} x {X.shape[1]} train ({TABLE_NUMERIC} numeric, categorical of "
          f"{' and '.join(map(str, TABLE_LEVELS))} levels, {TABLE_MISSING:.0%} missing), "
          f"{len(X_test)} test; {args.trees} trees, {args.leaves} leaves", flush=True)
    wanted = args.only.split(",")
    rows = []
    if "mpiml" in wanted:
        table_mpiml(1, X.iloc[:20_000], y[:20_000], X_test.iloc[:100], y_test[:100],
                    argparse.Namespace(trees=2, leaves=args.leaves))  # numba compile/cache load
        for p in (int(r) for r in args.ranks.split(",")):
            seconds, cpu, score = table_mpiml(p, X, y, X_test, y_test, args)
            rows.append({"library": "mpiml", "backend": "threads", "ranks": p, "threads": None,
                         "seconds": seconds, "cpu_seconds": cpu, "auc": score})
    for name in [w for w in wanted if w in TABLE_PEERS]:
        try:
            seconds, cpu, score = TABLE_PEERS[name](X, y, X_test, y_test, args)
        except ImportError as exc:
            print(f"{name:12s} skipped: not installed ({exc.name}); pip install -e .[bench]",
                  flush=True)
            continue
        rows.append({"library": name, "ranks": None, "threads": args.threads,
                     "seconds": seconds, "cpu_seconds": cpu, "auc": score})
    base = rows[0] if rows and rows[0]["library"] == "mpiml" else None
    print(f"{'library':22s} {'fit s':>8s} {'cpu s':>8s} {'AUC':>8s} {'time/mpiml':>11s} "
          f"{'AUC-mpiml':>10s}")
    for row in rows:
        label = (f"mpiml threads P={row['ranks']}" if row["library"] == "mpiml"
                 else f"{row['library']} {row['threads']} threads")
        ratio = f"{row['seconds'] / base['seconds']:11.2f}" if base else f"{'-':>11s}"
        delta = f"{row['auc'] - base['auc']:+10.4f}" if base else f"{'-':>10s}"
        print(f"{label:22s} {row['seconds']:8.2f} {row['cpu_seconds']:8.2f} "
              f"{row['auc']:8.5f} {ratio} {delta}", flush=True)
        for key in ("seconds", "cpu_seconds", "auc"):
            row[key] = round(row[key], 5 if key == "auc" else 2)
    if args.json:
        print(json.dumps({"case": "table", "rows": n, "trees": args.trees,
                          "leaves": args.leaves, "results": rows}))


# -- whole runs: load, fit, save; time and peak memory ------------------------------------

def _spawn(command, env=None):
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({done.returncode}): "
                           f"{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_whole(args):
    """``--case runs``: every run in a fresh process, one after the other."""
    import tempfile
    ranks = [int(r) for r in args.ranks.split(",")]
    threads = sorted({1, args.threads})
    wanted = args.only.split(",")
    mpiexec = find_mpiexec()
    backends = ([args.backend] if args.backend in ("threads", "mpi")
                else (["mpi", "threads"] if mpiexec else ["threads"]))
    with tempfile.TemporaryDirectory(prefix="bench-gbdt-") as data:
        X, y, X_test, y_test = make_data(args.n_samples, args.n_test, args.n_features, args.seed)
        for name, a in (("X", X), ("y", y), ("X_test", X_test), ("y_test", y_test)):
            np.save(os.path.join(data, name + ".npy"), a)
        del X, y, X_test, y_test
        print(f"whole runs: {args.n_samples} x {args.n_features} from .npy, {args.trees} trees, "
              f"{args.leaves} leaves; load + fit + save; peak RSS and PSS summed over ranks",
              flush=True)
        runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gbdt_run.py")
        base = [sys.executable, runner, "--data", data,
                "--trees", str(args.trees), "--leaves", str(args.leaves)]
        plan = []
        if "mpiml" in wanted:
            _spawn(base[:4] + ["--run-one", "mpiml", "--backend", "threads", "--ranks", "1",
                               "--trees", "2", "--leaves", str(args.leaves)])   # numba cache
            for backend in backends:
                for p in ranks:
                    plan.append(("mpiml", backend, p))
        for lib in ("lightgbm", "lightgbm-quantized", "xgboost"):
            if lib.split("-")[0] in wanted:
                plan.extend((lib, "threads", t) for t in threads)
        env = mpi_env()
        rounds = []
        for round_ in range(args.repeat):
            # each round starts one run later in the plan: a drift of the machine's speed
            # does not always fall on the same run
            shift = round_ % len(plan) if plan else 0
            results = {}
            for lib, backend, n in plan[shift:] + plan[:shift]:
                row = _whole_run(lib, backend, n, base, mpiexec, env)
                if row is None:
                    continue
                results[row["label"]] = row
                parts = ", ".join(f"{k} {v:.2f}" for k, v in row["stages"].items())
                mark = f" [round {round_ + 1}]" if args.repeat > 1 else ""
                print(f"{row['label']:30s} {row['seconds']:8.2f} s  RSS {row['peak_mb']:6.0f} MB  "
                      f"PSS {row['peak_pss_mb'] or float('nan'):6.0f} MB  AUC {row['auc']:.5f}  "
                      f"({parts}){mark}", flush=True)
            rounds.append(results)
    rows = median_rows(rounds, [_label(*step) for step in plan], args.threads)
    _whole_table(rows, args.threads)
    if args.json:
        print(json.dumps({"case": "runs", "rows": args.n_samples, "trees": args.trees,
                          "leaves": args.leaves, "repeat": args.repeat, "results": rows}))


def _label(lib, backend, n):
    return f"mpiml {backend} P={n}" if lib == "mpiml" else f"{lib} {n} thread(s)"


def _whole_run(lib, backend, n, base, mpiexec, env):
    """One whole run in processes of its own: its row, or None if the library is absent."""
    if lib == "mpiml" and backend == "mpi":
        command = [mpiexec, "-n", str(n)] + base + ["--run-one", "mpiml", "--backend", "mpi"]
    elif lib == "mpiml":
        command = base + ["--run-one", "mpiml", "--backend", "threads", "--ranks", str(n)]
    else:
        command = base + ["--run-one", lib, "--threads", str(n)]
    try:
        got = _spawn(command, env)
    except RuntimeError as exc:
        if "ModuleNotFoundError" not in str(exc):
            raise
        print(f"{lib:18s} skipped: not installed; pip install -e .[bench]", flush=True)
        return None
    return dict(got, library=lib, backend=backend, n=n, label=_label(lib, backend, n))


def median_rows(rounds, labels, threads):
    """One row per label (in ``labels`` order) from rounds of runs (each a dict label ->
    row): the run of the median time (the lower one of an even count), with ``rounds``,
    every round's seconds, and ``ratios``, each round's time over the time of LightGBM on
    ``threads`` threads in that round (the reference of the table; None without it)."""
    refs = [results.get(_label("lightgbm", "threads", threads)) for results in rounds]
    rows = []
    for label in labels:
        runs = [(results[label], ref) for results, ref in zip(rounds, refs) if label in results]
        if not runs:
            continue
        ordered = sorted(runs, key=lambda pair: pair[0]["seconds"])
        row = dict(ordered[(len(ordered) - 1) // 2][0])
        row["rounds"] = [run["seconds"] for run, _ in runs]
        row["ratios"] = [run["seconds"] / ref["seconds"] if ref else None for run, ref in runs]
        rows.append(row)
    return rows


def _whole_table(rows, threads):
    """Print the runs with efficiency and ratios to LightGBM on ``threads`` threads (and
    each round's time ratio, for rows of several rounds)."""
    one = {(r["library"], r["backend"]): r for r in rows if r["n"] == 1}
    ref = next((r for r in rows if r["library"] == "lightgbm" and r["n"] == threads), None)
    print(f"\n{'run':30s} {'s':>7s} {'eff':>5s} {'RSS MB':>7s} {'PSS MB':>7s} {'AUC':>8s}"
          f" {'s/LGBM':>7s} {'RSS/LGBM':>9s} {'PSS/LGBM':>9s}")
    for r in rows:
        first = one.get((r["library"], r["backend"])) or one.get((r["library"], "mpi"))
        r["efficiency"] = (first["seconds"] / (r["n"] * r["seconds"])) if first else None
        eff = f"{r['efficiency']:5.2f}" if r["efficiency"] is not None else f"{'-':>5s}"
        pss = r.get("peak_pss_mb") or float("nan")
        ratio = (f"{r['seconds'] / ref['seconds']:7.2f} {r['peak_mb'] / ref['peak_mb']:9.2f} "
                 f"{pss / (ref.get('peak_pss_mb') or float('nan')):9.2f}"
                 if ref else f"{'-':>7s} {'-':>9s} {'-':>9s}")
        each = ""
        if len(r.get("ratios") or []) > 1 and None not in r["ratios"]:
            each = "  rounds s/LGBM " + " ".join(f"{x:.2f}" for x in r["ratios"])
        print(f"{r['label']:30s} {r['seconds']:7.2f} {eff} {r['peak_mb']:7.0f} {pss:7.0f} "
              f"{r['auc']:8.5f} {ratio}{each}")


# -- the profile: phases, and a model of the efficiency ------------------------------------

PHASES = ("gradients", "histograms", "split search", "partition", "leaf values", "bookkeeping",
          "other")
COMMUNICATION = ("reduction", "waiting")
MODEL_RANKS = (1, 2, 4, 8, 16, 64)


def per_tree_ms(seconds_by_rank, trees):
    """Mean over ranks of each phase, ms per tree."""
    names = PHASES[:-1] + COMMUNICATION
    return {n: 1e3 * sum(r.get(n, 0.0) for r in seconds_by_rank) / len(seconds_by_rank) / trees
            for n in names}


def efficiency_model(t1, t2):
    """From the per-tree phase times at P = 1 and P = 2 (ms): each phase ``t_p(P) = a_p / P
    + b_p`` (``a_p`` divides by P, ``b_p`` is repeated by every rank: ``b_p = 2 t_p(2) -
    t_p(1)``, at least 0), and communication ``c log2 P`` (``c``: reduction and waiting at
    P = 2). Then ``T(P) = sum_p a_p / P + sum_p b_p + c log2 P`` and the efficiency is
    ``E(P) = T(1) / (P T(P))``.

    Each model entry also has the weak-scaling figures of P ranks that each hold as many
    rows as the one rank of the profile (P times the rows): the divisible work per rank
    stays ``sum_p a_p``, so ``T_weak(P) = sum_p a_p + sum_p b_p + c_weak log2 P`` and
    ``E_weak(P) = T(1) / T_weak(P)``. The histograms the ranks sum do not grow with the
    rows, so the reduction stays; the waiting (ranks late by the noise of their share of
    the work) is doubled, as each rank does twice the work it did at P = 2."""
    import math

    split = {}
    for name in PHASES:
        b = min(max(0.0, 2.0 * t2[name] - t1[name]), t1[name])
        split[name] = (t1[name] - b, b)
    divisible = sum(a for a, _ in split.values())
    repeated = sum(b for _, b in split.values())
    c = sum(t2[n] for n in COMMUNICATION)
    base = divisible + repeated

    def total(p):
        return divisible / p + repeated + c * math.log2(p)
    c_weak = t2["reduction"] + 2.0 * t2["waiting"]
    model = {}
    for p in MODEL_RANKS:
        weak = base + c_weak * math.log2(p)
        model[p] = {"ms_per_tree": total(p), "efficiency": base / (p * total(p)),
                    "weak_ms_per_tree": weak, "weak_efficiency": base / weak}
    return split, divisible, repeated, c, model


def median_profile(runs):
    """One profile from several of the same P: the median of each phase, of the wall time
    per tree and of the seconds, each over the runs (so the phases need not add up to
    the wall time exactly)."""
    import statistics
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "ms_per_tree": statistics.median(r["ms_per_tree"] for r in runs),
            "phases": {name: statistics.median(r["phases"][name] for r in runs)
                       for name in runs[0]["phases"]},
            "rounds": len(runs)}


def run_profile(args):
    """``--profile``: phase times per tree at each P of ``--ranks``, then the model."""
    ranks = [int(r) for r in args.ranks.split(",")]
    if 1 not in ranks or 2 not in ranks:
        raise SystemExit("error: --profile needs P = 1 and P = 2 in --ranks (e.g. 1,2,4)")
    backend = args.backend or "mpi"
    print(f"profile: {args.n_samples} x {args.n_features}, {args.trees} trees, {args.leaves} "
          f"leaves, backend {backend}; ms per tree, mean over ranks (a barrier before each "
          "collective separates waiting from the collective)", flush=True)
    X = y = None
    if backend == "threads":
        X, y, _, _ = make_data(args.n_samples, 0, args.n_features, args.seed)
        fit_threads(1, X[:20_000], y[:20_000], argparse.Namespace(trees=2, leaves=args.leaves))
    rounds = {p: [] for p in ranks}
    for _ in range(max(1, args.repeat)):
        for p in ranks:
            if backend == "threads":
                seconds, _, phases = fit_threads(p, X, y, args, profile=True)
            else:
                seconds, phases = bench_mpiml_mpi(p, args, profile=True)
            ms = per_tree_ms(phases, args.trees)
            wall = 1e3 * seconds / args.trees
            ms["other"] = max(0.0, wall - sum(ms.values()))   # binning, set-up, reports
            rounds[p].append({"seconds": seconds, "ms_per_tree": wall, "phases": ms})
    measured = {p: median_profile(runs) for p, runs in rounds.items()}
    names = PHASES + COMMUNICATION
    if args.repeat > 1:
        print(f"medians of {args.repeat} rounds; wall ms per tree by round: " + "; ".join(
            f"P={p} " + ", ".join(f"{r['ms_per_tree']:.2f}" for r in runs)
            for p, runs in rounds.items()))
    print(f"{'phase':14s}" + "".join(f"{'P=' + str(p):>10s}" for p in ranks))
    for name in names:
        print(f"{name:14s}" + "".join(f"{measured[p]['phases'][name]:10.2f}" for p in ranks))
    print(f"{'wall':14s}" + "".join(f"{measured[p]['ms_per_tree']:10.2f}" for p in ranks))
    split, divisible, repeated, c, model = efficiency_model(measured[1]["phases"],
                                                            measured[2]["phases"])
    print("\nsplit of each phase at P = 1 (ms per tree): divides by P / repeated by every rank")
    for name, (a, b) in split.items():
        print(f"  {name:14s} {a:8.2f} / {b:8.2f}")
    print(f"  {'total':14s} {divisible:8.2f} / {repeated:8.2f};  communication at P = 2: "
          f"{c:.2f} ms, modelled as {c:.2f} x log2(P)")
    print("\nmodel T(P) = divisible / P + repeated + c log2 P;  E(P) = T(1) / (P T(P));\n"
          "weak scaling (P times the rows): T_weak(P) = divisible + repeated + "
          "(reduction + 2 waiting at P = 2) log2 P, E_weak(P) = T(1) / T_weak(P)")
    t1 = measured[1]["ms_per_tree"]
    for p in MODEL_RANKS:
        line = (f"  P={p:<3d} T {model[p]['ms_per_tree']:8.2f} ms  E {model[p]['efficiency']:.3f}"
                f"   weak: E {model[p]['weak_efficiency']:.3f}")
        if p in measured:
            line += (f"   measured: {measured[p]['ms_per_tree']:8.2f} ms, "
                     f"E {t1 / (p * measured[p]['ms_per_tree']):.3f}")
        print(line)
    if args.json:
        print(json.dumps({"backend": backend, "measured": measured,
                          "split": split, "communication_ms": c,
                          "model": {str(p): v for p, v in model.items()}}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("numeric", "table", "runs"), default="numeric",
                        help="numeric: make_classification; table: missing values and "
                             "categorical features; runs: whole runs with peak memory")
    parser.add_argument("--rows", type=int, default=None,
                        help="training rows (both cases; default 1,000,000)")
    parser.add_argument("--n-samples", type=int, default=1_000_000, help="training rows")
    parser.add_argument("--n-test", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=28)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--leaves", type=int, default=31)
    parser.add_argument("--ranks", default="1,2", help="mpiml thread rank counts, comma-separated")
    parser.add_argument("--threads", type=int, default=2, help="threads of the other libraries")
    parser.add_argument("--only", default="mpiml,lightgbm,xgboost,sklearn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("threads", "mpi", "both"), default=None,
                        help="how mpiml's ranks run (default: both when mpiexec is found, "
                             "else threads)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="--case runs: run every configuration this many times, in rounds, "
                             "and report the run of the median time with every round's figures; "
                             "--profile: profile every P this many times, in rounds, and model "
                             "the median of each phase")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="mpiml only: time each phase per tree at each P of --ranks "
                             "(needs 1 and 2; default backend mpi) and model the efficiency")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rows is not None:
        args.n_samples = args.rows
    if args.worker:
        return mpi_worker(args)
    if args.case == "runs":
        return run_whole(args)
    if args.profile:
        return run_profile(args)
    if args.case == "table":
        if args.only == "mpiml,lightgbm,xgboost,sklearn":
            args.only = "mpiml,lightgbm,sklearn"
        return run_table(args)

    X, y, X_test, y_test = make_data(args.n_samples, args.n_test, args.n_features, args.seed)
    print(f"data: {len(X)} x {X.shape[1]} train, {len(X_test)} test; {args.trees} trees, "
          f"{args.leaves} leaves, learning rate 0.1", flush=True)
    wanted = args.only.split(",")
    rows = []
    if "mpiml" in wanted:
        bench_mpiml(1, X[:20_000], y[:20_000], X_test[:100], y_test[:100],
                    argparse.Namespace(trees=2, leaves=args.leaves))  # numba compile/cache load
        if args.backend is None:
            args.backend = "both" if find_mpiexec() else "threads"
        backends = ("threads", "mpi") if args.backend == "both" else (args.backend,)
        for backend in backends:
            for p in (int(r) for r in args.ranks.split(",")):
                if backend == "threads":
                    seconds, cpu, score = bench_mpiml(p, X, y, X_test, y_test, args)
                else:
                    seconds, cpu, score = bench_mpiml_mpi(p, args)
                rows.append({"library": "mpiml", "backend": backend, "ranks": p,
                             "threads": None, "seconds": round(seconds, 2),
                             "cpu_seconds": round(cpu, 2), "auc": round(score, 5)})
                print(f"mpiml {backend:7s} P={p}      {seconds:8.2f} s  {cpu:8.2f} cpu-s   "
                      f"AUC {score:.5f}", flush=True)
    for name in [w for w in wanted if w in PEERS]:
        try:
            seconds, cpu, score = PEERS[name](X, y, X_test, y_test, args)
        except ImportError as exc:
            print(f"{name:12s} skipped: not installed ({exc.name}); "
                  f"pip install -e .[bench]", flush=True)
            continue
        rows.append({"library": name, "ranks": None, "threads": args.threads,
                     "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                     "auc": round(score, 5)})
        print(f"{name:12s} {args.threads} threads    {seconds:8.2f} s  {cpu:8.2f} cpu-s   "
              f"AUC {score:.5f}", flush=True)
    if args.json:
        print(json.dumps({"n_samples": len(X), "n_features": X.shape[1], "trees": args.trees,
                          "leaves": args.leaves, "results": rows}))


if __name__ == "__main__":
    main()
