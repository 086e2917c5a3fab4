"""One whole gradient-boosting run of ``scripts/bench_gbdt.py --case runs``, in a process
of its own: load the training rows from ``DATA/X.npy`` and ``DATA/y.npy`` (each MPI rank
its block), fit, save the model, then print one JSON line ``{"seconds", "peak_mb",
"peak_pss_mb", "stages", "auc"}``: the wall seconds from start to saved model, the peak
resident memory (``VmHWM``) and the peak proportional set size (:class:`PssPeak`), each summed
over MPI ranks and taken before the test AUC is computed, rank 0's seconds of each
stage (import, load, fit, save), and the AUC on ``DATA/X_test.npy``.

    python scripts/gbdt_run.py --data DATA --run-one mpiml --backend threads --ranks 2
    mpiexec -n 2 python scripts/gbdt_run.py --data DATA --run-one mpiml --backend mpi
    python scripts/gbdt_run.py --data DATA --run-one lightgbm-quantized --threads 2

Only the library of the run is imported, so that each run's memory is its own.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

LIBRARIES = ("mpiml", "lightgbm", "lightgbm-quantized", "xgboost")


def auc(y, score):
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, score))


def mpiml_params(trees, leaves):
    """The settings of every mpiml fit of the benchmark."""
    return dict(n_estimators=trees, max_leaf_nodes=leaves, learning_rate=0.1,
                min_samples_leaf=20, random_state=0)


def peer_model(library, trees, leaves, threads):
    """The classifier of a peer: ``lightgbm`` (``num_leaves=leaves``), ``lightgbm-quantized``
    (the same with ``use_quantized_grad=True``) or ``xgboost`` (``hist``, depth 6)."""
    if library.startswith("lightgbm"):
        import lightgbm
        extra = {"use_quantized_grad": True} if library == "lightgbm-quantized" else {}
        return lightgbm.LGBMClassifier(n_estimators=trees, num_leaves=leaves, learning_rate=0.1,
                                       max_bin=255, min_child_samples=20, n_jobs=threads,
                                       verbose=-1, **extra)
    import xgboost
    return xgboost.XGBClassifier(n_estimators=trees, tree_method="hist", max_depth=6,
                                 learning_rate=0.1, max_bin=256, n_jobs=threads)


def read_rows(path, start=0, stop=None):
    """Rows ``start:stop`` of a C-ordered ``.npy`` file, read into memory of their own (no
    mapping of the file, whose pages would count as this process's memory)."""
    with open(path, "rb") as f:
        shape, fortran, dtype = _header(f)
        if fortran:
            raise ValueError(f"{path}: a C-ordered array is needed")
        stop = shape[0] if stop is None else stop
        width = int(np.prod(shape[1:], dtype=np.int64))
        f.seek(start * width * dtype.itemsize, os.SEEK_CUR)
        rows = np.fromfile(f, dtype=dtype, count=(stop - start) * width)
    return rows.reshape((stop - start,) + tuple(shape[1:]))


def n_rows(path):
    with open(path, "rb") as f:
        return _header(f)[0][0]


def _header(f):
    """``(shape, fortran_order, dtype)`` of an open ``.npy`` file, left at its data."""
    major, _ = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    return read(f)


class PssPeak:
    """The largest proportional set size (``Pss`` of ``/proc/self/smaps_rollup``: this
    process's private pages plus its share of the pages it shares, such as the
    libraries every rank maps) seen by a thread reading it every ``interval`` seconds.
    Summed over the ranks of one host it is the memory they use together; the peak
    resident memory counts every shared page once per rank. ``None`` where Linux's file
    is missing.

    Each reading walks the process's page tables under its memory-map lock, which the
    process's own allocations and page faults wait for, and takes a core from a rank
    that the other ranks then wait for: read every 20 ms, it made fits 25 to 35 %
    slower (mpiml under mpiexec at P = 2, and LightGBM with 2 threads alike); every
    100 ms, whole mpiexec P = 2 runs still took 8.1 to 9.0 s, against 8.0 to 8.2 s every
    250 ms and 7.6 to 7.9 s every 500 ms (four rounds, alternating), with the same peak
    (766 to 767 MB; LightGBM's, XGBoost's and one rank's also within 3 MB). The peak of
    a fit is a plateau of seconds (the bins, gradients and tree buffers held from the
    first tree to the last)."""

    def __init__(self, interval=0.5):
        import threading
        self.interval, self.peak = interval, None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        if os.path.exists("/proc/self/smaps_rollup"):
            self._thread.start()

    def _read(self):
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
        return None

    def _watch(self):
        while True:
            value = self._read()
            if value is not None:
                self.peak = value if self.peak is None else max(self.peak, value)
            if self._done.wait(self.interval):
                return

    def stop(self):
        """The peak in MB (after one last reading)."""
        if self._thread.is_alive():
            self._done.set()
            self._thread.join()
            last = self._read()
            if last is not None:
                self.peak = last if self.peak is None else max(self.peak, last)
        return self.peak


def _peak_mb():
    """Peak resident memory of this process in MB: ``VmHWM`` of ``/proc/self/status``
    (``ru_maxrss`` would not do: Linux keeps it across ``exec``, so a run would inherit
    the peak of the process that started it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_one(args):
    """One whole run (``--run-one``): prints ``{"seconds", "peak_mb", "peak_pss_mb",
    "stages", "auc"}`` (``stages``: seconds of import, load, fit and save, on rank 0)."""
    t0 = time.perf_counter()
    pss = PssPeak()
    stages, mark = {}, [t0]

    def stage(name):
        now = time.perf_counter()
        stages[name] = stages.get(name, 0.0) + now - mark[0]
        mark[0] = now

    x_path, y_path = os.path.join(args.data, "X.npy"), os.path.join(args.data, "y.npy")
    library, out = args.run_one, os.path.join(args.data, f"model-{os.getpid()}")
    if library == "mpiml":
        import mpiml
        from mpiml.comm import world
        from mpiml.comm.partition import block_range
        from mpiml.models.gbdt import GradientBoostingClassifier
        params = mpiml_params(args.trees, args.leaves)
        stage("import")

        def body(comm):
            timed = stage if comm.rank == 0 else (lambda name: None)
            a, b = block_range(n_rows(x_path), comm.size, comm.rank)
            X, y = read_rows(x_path, a, b), read_rows(y_path, a, b)
            timed("load")
            model = GradientBoostingClassifier(**params).fit(X, y, comm=comm)
            timed("fit")
            mpiml.save(model, out + ".mpiml", comm=comm)
            timed("save")
            return model

        if args.backend == "mpi":
            comm = world()
            model = body(comm)
            seconds = time.perf_counter() - t0
            peak = comm.allreduce(_peak_mb())
            peak_pss = comm.allreduce(pss.stop() or 0.0)
            if comm.rank != 0:      # rank 0 scores the model and reports
                return
        else:
            model = mpiml.run(body, threads=int(args.ranks))[0]
            seconds, peak, peak_pss = time.perf_counter() - t0, _peak_mb(), pss.stop()
    else:
        X, y = read_rows(x_path), read_rows(y_path)
        stage("load")
        model = peer_model(library, args.trees, args.leaves, args.threads)
        stage("import")
        model.fit(X, y)
        stage("fit")
        if library == "xgboost":
            model.save_model(out + ".json")
        else:
            model.booster_.save_model(out + ".txt")
        stage("save")
        seconds, peak, peak_pss = time.perf_counter() - t0, _peak_mb(), pss.stop()
    score = auc(np.load(os.path.join(args.data, "y_test.npy")),
                model.predict_proba(np.load(os.path.join(args.data, "X_test.npy")))[:, 1])
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "peak_pss_mb": peak_pss,
                      "stages": stages, "auc": score}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--run-one", choices=LIBRARIES, required=True)
    parser.add_argument("--backend", choices=("threads", "mpi"), default="threads")
    parser.add_argument("--ranks", default="1", help="thread ranks of an mpiml run")
    parser.add_argument("--threads", type=int, default=1, help="threads of a peer's run")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--leaves", type=int, default=31)
    run_one(parser.parse_args())


if __name__ == "__main__":
    main()
