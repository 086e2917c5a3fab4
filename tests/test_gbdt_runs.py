"""Whole runs of ``scripts/bench_gbdt.py --case runs`` and their runner
``scripts/gbdt_run.py``: rows read per rank, peak memory per process, the comparison
table."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from util import ROOT, mpi_env

RUNNER = ROOT / "scripts" / "gbdt_run.py"
BENCH = ROOT / "scripts" / "bench_gbdt.py"


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    return _module(RUNNER, "mpiml_gbdt_run")


@pytest.mark.parametrize("start, stop", [(0, None), (0, 7), (5, 12), (40, 40), (39, 40)])
def test_read_rows_gives_the_block_of_a_saved_array(runner, tmp_path, start, stop):
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = np.arange(40, dtype=np.int64)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    assert runner.n_rows(tmp_path / "X.npy") == 40
    np.testing.assert_array_equal(runner.read_rows(tmp_path / "X.npy", start, stop),
                                  X[start:stop])
    np.testing.assert_array_equal(runner.read_rows(tmp_path / "y.npy", start, stop),
                                  y[start:stop])


def test_read_rows_refuses_a_fortran_array(runner, tmp_path):
    np.save(tmp_path / "F.npy", np.asfortranarray(np.ones((4, 3))))
    with pytest.raises(ValueError, match="C-ordered"):
        runner.read_rows(tmp_path / "F.npy")


def test_pss_peak_sees_a_large_allocation(runner):
    watch = runner.PssPeak(interval=0.005)
    before = watch._read()
    block = np.ones(40 << 17)        # 40 MiB, every page touched
    block[0] = 2.0
    peak = watch.stop()
    del block
    assert peak >= before + 35


def test_peak_is_the_process_own_not_its_parents(tmp_path):
    # ru_maxrss survives exec on Linux; the runner's VmHWM does not
    child = tmp_path / "child.py"
    child.write_text("import importlib.util as u\n"
                     f"s = u.spec_from_file_location('r', {str(RUNNER)!r})\n"
                     "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
                     "print(m._peak_mb())\n")
    parent = tmp_path / "parent.py"
    parent.write_text("import resource, subprocess, sys\n"
                      "import numpy as np\n"
                      "big = np.ones(300 << 17); big[0] = 2\n"
                      f"out = subprocess.run([sys.executable, {str(child)!r}],\n"
                      "                     capture_output=True, text=True, check=True).stdout\n"
                      "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, out)\n")
    done = subprocess.run([sys.executable, str(parent)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    parent_mb, child_mb = map(float, done.stdout.split())
    assert parent_mb > 300 and child_mb < parent_mb - 200


def test_table_efficiency_and_ratios(capsys):
    bench = _module(BENCH, "mpiml_bench_gbdt_runs")
    rows = [
        {"library": "mpiml", "backend": "mpi", "n": 1, "label": "a", "seconds": 20.0,
         "peak_mb": 600.0, "peak_pss_mb": 500.0, "auc": 0.9},
        {"library": "mpiml", "backend": "mpi", "n": 2, "label": "b", "seconds": 12.5,
         "peak_mb": 900.0, "peak_pss_mb": 700.0, "auc": 0.9},
        {"library": "lightgbm", "backend": "threads", "n": 1, "label": "c", "seconds": 18.0,
         "peak_mb": 400.0, "peak_pss_mb": 350.0, "auc": 0.9},
        {"library": "lightgbm", "backend": "threads", "n": 2, "label": "d", "seconds": 10.0,
         "peak_mb": 400.0, "peak_pss_mb": 350.0, "auc": 0.9},
    ]
    bench._whole_table(rows, threads=2)
    assert rows[1]["efficiency"] == pytest.approx(20 / (2 * 12.5))
    assert rows[3]["efficiency"] == pytest.approx(0.9)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("b "))
    assert line.split()[-3:] == ["1.25", "2.25", "2.00"]


@pytest.mark.slow
def test_runs_command_under_mpiexec():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--case", "runs", "--only", "mpiml", "--rows", "3000",
         "--n-test", "500", "--n-features", "5", "--trees", "3", "--json"],
        capture_output=True, text=True, timeout=600, env=mpi_env(OMP_NUM_THREADS=1))
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    got = {(r["backend"], r["n"]): r for r in out["results"]}
    assert set(got) == {("mpi", 1), ("mpi", 2), ("threads", 1), ("threads", 2)}
    assert len({r["auc"] for r in got.values()}) == 1       # the same model everywhere
    for r in got.values():
        assert r["seconds"] > 0 and r["peak_mb"] > 0 and r["peak_pss_mb"] > 0
        assert set(r["stages"]) == {"import", "load", "fit", "save"}
    assert got[("mpi", 1)]["efficiency"] == 1.0
    # two processes each hold an interpreter and its libraries
    assert got[("mpi", 2)]["peak_mb"] > 1.5 * got[("mpi", 1)]["peak_mb"]


def test_rounds_give_the_run_of_the_median_time_and_each_round_ratio(capsys):
    bench = _module(BENCH, "mpiml_bench_gbdt_rounds")

    def run(library, n, seconds, peak):
        label = bench._label(library, "threads", n)
        return label, {"library": library, "backend": "threads", "n": n, "label": label,
                       "seconds": seconds, "peak_mb": peak, "peak_pss_mb": peak, "auc": 0.9}
    rounds = [dict([run("mpiml", 2, 9.0, 700.0), run("lightgbm", 2, 10.0, 500.0)]),
              dict([run("mpiml", 2, 12.0, 710.0), run("lightgbm", 2, 11.0, 505.0)]),
              dict([run("mpiml", 2, 10.0, 720.0), run("lightgbm", 2, 12.5, 510.0)]),
              dict([run("lightgbm", 2, 9.5, 499.0)])]          # a round without the mpiml run
    labels = [bench._label("mpiml", "threads", 2), bench._label("lightgbm", "threads", 2)]
    rows = bench.median_rows(rounds, labels, threads=2)
    mine, ref = rows
    assert mine["seconds"] == 10.0 and mine["peak_mb"] == 720.0      # the median run, whole
    assert mine["rounds"] == [9.0, 12.0, 10.0]
    assert mine["ratios"] == pytest.approx([0.9, 12 / 11, 0.8])
    assert ref["seconds"] == 10.0 and ref["rounds"] == [10.0, 11.0, 12.5, 9.5]  # lower median
    bench._whole_table(rows, threads=2)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mpiml"))
    assert line.endswith("rounds s/LGBM 0.90 1.09 0.80")
