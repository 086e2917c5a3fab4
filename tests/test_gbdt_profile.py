"""Phase profile of boosting (mpiml/models/tree/_profile.py) and the efficiency model of
``scripts/bench_gbdt.py --profile``."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import mpiml
from mpiml.models.gbdt import GradientBoostingClassifier
from mpiml.models.tree._profile import phase, profiling
from util import ROOT, mpi_env

SCRIPT = ROOT / "scripts" / "bench_gbdt.py"


def _bench():
    spec = importlib.util.spec_from_file_location("mpiml_bench_gbdt", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(n=3000, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(int)


def _fit(comm, X, y, profile):
    lo, hi = comm.rank * len(X) // comm.size, (comm.rank + 1) * len(X) // comm.size
    model = GradientBoostingClassifier(n_estimators=8, max_leaf_nodes=7, random_state=0)
    if not profile:
        return model.fit(X[lo:hi], y[lo:hi], comm=comm), None
    with profiling() as phases:
        model.fit(X[lo:hi], y[lo:hi], comm=comm)
    return model, phases


def test_profiling_times_every_phase_on_each_rank_and_leaves_the_trees_alone():
    X, y = _data()
    plain = mpiml.run(lambda comm: _fit(comm, X, y, False), threads=2)
    profiled = mpiml.run(lambda comm: _fit(comm, X, y, True), threads=2)
    for (model, _), (same, phases) in zip(plain, profiled):
        np.testing.assert_array_equal(model.predict_proba(X), same.predict_proba(X))
        for name in ("gradients", "histograms", "split search", "partition", "leaf values",
                     "bookkeeping", "reduction", "waiting"):
            assert phases.seconds[name] > 0, name
        assert phases.calls["bookkeeping"] == 8   # one per tree, on each rank's own record


def test_no_profile_outside_the_block():
    with phase("histograms") as timer:
        pass
    with profiling() as phases:
        pass
    assert phases.seconds == {} and type(timer).__name__ == "_Null"


def test_phases_are_exclusive():
    with profiling() as phases:
        with phase("bookkeeping"):
            with phase("histograms"):
                sum(range(200_000))
    assert phases.seconds["histograms"] > 0
    assert phases.seconds["bookkeeping"] < phases.seconds["histograms"]


def test_efficiency_model_splits_divisible_and_repeated_work():
    bench = _bench()
    names = bench.PHASES + bench.COMMUNICATION
    t1 = dict.fromkeys(names, 0.0)
    t2 = dict.fromkeys(names, 0.0)
    t1["histograms"], t2["histograms"] = 40.0, 20.0        # divides by P
    t1["bookkeeping"], t2["bookkeeping"] = 10.0, 10.0      # every rank repeats it
    t2["reduction"] = 2.0
    split, divisible, repeated, c, model = bench.efficiency_model(t1, t2)
    assert split["histograms"] == (40.0, 0.0) and split["bookkeeping"] == (0.0, 10.0)
    assert (divisible, repeated, c) == (40.0, 10.0, 2.0)
    assert model[1]["efficiency"] == 1.0
    # T(16) = 40/16 + 10 + 2*4 = 20.5; E = 50 / (16 * 20.5)
    assert model[16]["ms_per_tree"] == pytest.approx(20.5)
    assert model[16]["efficiency"] == pytest.approx(50 / (16 * 20.5))


def test_efficiency_model_of_weak_scaling():
    """P ranks of as many rows each: the divisible work per rank stays, the reduction
    stays, the waiting doubles (each rank does twice its work at P = 2)."""
    bench = _bench()
    names = bench.PHASES + bench.COMMUNICATION
    t1 = dict.fromkeys(names, 0.0)
    t2 = dict.fromkeys(names, 0.0)
    t1["histograms"], t2["histograms"] = 40.0, 20.0
    t1["bookkeeping"], t2["bookkeeping"] = 10.0, 10.0
    t2["reduction"], t2["waiting"] = 2.0, 1.0
    _, _, _, c, model = bench.efficiency_model(t1, t2)
    assert c == 3.0
    assert model[1]["weak_efficiency"] == 1.0
    # T_weak(16) = 40 + 10 + (2 + 2 * 1) * 4 = 66; E = 50 / 66
    assert model[16]["weak_ms_per_tree"] == pytest.approx(66.0)
    assert model[16]["weak_efficiency"] == pytest.approx(50 / 66)
    assert model[16]["efficiency"] == pytest.approx(50 / (16 * (40 / 16 + 10 + 3 * 4)))


def test_profiles_of_several_rounds_give_each_phase_its_median():
    bench = _bench()
    runs = [{"seconds": s, "ms_per_tree": w, "phases": {"histograms": h, "waiting": q}}
            for s, w, h, q in ((3.0, 30.0, 20.0, 1.0), (9.0, 90.0, 21.0, 9.0),
                               (4.0, 40.0, 80.0, 2.0))]
    one = bench.median_profile(runs)
    assert one == {"seconds": 4.0, "ms_per_tree": 40.0, "rounds": 3,
                   "phases": {"histograms": 21.0, "waiting": 2.0}}
    assert bench.median_profile(runs[:1])["phases"] == runs[0]["phases"]


@pytest.mark.slow
def test_profile_command_under_mpiexec():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--profile", "--ranks", "1,2", "--n-samples", "4000",
         "--n-test", "500", "--n-features", "5", "--trees", "3", "--repeat", "2", "--json"],
        capture_output=True, text=True, timeout=600, env=mpi_env(OMP_NUM_THREADS=1))
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(out["measured"]) == {"1", "2"}
    assert out["measured"]["2"]["rounds"] == 2 and "medians of 2 rounds" in done.stdout
    assert out["measured"]["2"]["phases"]["reduction"] > 0
    assert out["measured"]["1"]["phases"]["reduction"] == 0
    assert 0 < out["model"]["16"]["efficiency"] <= 1
    assert 0 < out["model"]["16"]["weak_efficiency"] <= 1
    assert "model T(P)" in done.stdout
