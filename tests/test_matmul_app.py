"""apps/matmul.py end to end: JSON report, human summary, bad input (exit status 2),
under --threads and under mpiexec -n 2 / -n 4."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "apps" / "matmul.py"
FIELDS = {"algo", "backend", "ranks", "grid", "m", "k", "n", "dtype", "seconds", "gflops",
          "comm_bytes", "comm_bytes_model", "cpu_seconds"}


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPIR_CVAR_CH4_PROGRESS_THROTTLE"] = "1"
    env.pop("MPIML_BACKEND", None)
    return env


def _mpiexec():
    found = shutil.which("mpiexec", path=_env()["PATH"])
    if found is None:
        pytest.skip("mpiexec not found")
    return [found]


def _run(args, ranks=None, timeout=120):
    cmd = [sys.executable, str(APP), *args]
    if ranks is not None:
        cmd = _mpiexec() + ["-n", str(ranks)] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=ROOT)


def _report(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(150)
@pytest.mark.parametrize("launch, algo, grid", [
    (["--threads", "2"], "summa", [1, 2]),
    (["--threads", "4"], "cannon", [2, 2]),
    (["--threads", "3"], "summa", [1, 3]),
    ([], "cannon", [1, 1]),
])
def test_json_report_threads(launch, algo, grid):
    report = _report(_run(launch + ["--algo", algo, "--m", "50", "--k", "31", "--n", "17",
                                    "--check", "--json", "--repeat", "2"]))
    assert FIELDS | {"rel_err"} <= set(report)
    assert (report["algo"], report["grid"], report["backend"]) == (algo, grid, "threads")
    assert (report["m"], report["k"], report["n"], report["dtype"]) == (50, 31, 17, "float64")
    assert report["ranks"] == math.prod(grid)
    assert report["rel_err"] < 1e-13
    assert report["comm_bytes"] == report["comm_bytes_model"]
    assert report["seconds"] > 0 and report["gflops"] > 0 and len(report["times"]) == 2


@pytest.mark.timeout(150)
@pytest.mark.parametrize("ranks, algo, grid", [(2, "summa", [1, 2]), (4, "cannon", [2, 2]),
                                               (4, "summa", [2, 2])])
def test_json_report_mpiexec(ranks, algo, grid):
    proc = _run(["--algo", algo, "--n", "67", "--dtype", "float32", "--check", "--json"],
                ranks=ranks)
    report = _report(proc)
    assert (report["backend"], report["ranks"], report["grid"]) == ("mpi", ranks, grid)
    assert report["dtype"] == "float32" and report["rel_err"] < 1e-5
    assert report["comm_bytes"] == report["comm_bytes_model"] > 0
    assert sum(line.startswith("{") for line in proc.stdout.splitlines()) == 1  # rank 0 only


@pytest.mark.timeout(150)
def test_default_run_prints_a_human_summary():
    proc = _run(["--threads", "2"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("summa", "grid 1x2", "C(2048x2048)", "float64", "GFLOP/s", "model"):
        assert text in out


@pytest.mark.timeout(150)
@pytest.mark.parametrize("args, text", [
    (["--threads", "2", "--algo", "cannon"], "--algo summa"),
    (["--threads", "6", "--algo", "cannon"], "square"),
    (["--n", "0"], "--n"),
    (["--m", "-4"], "--m"),
    (["--k", "x"], "--k"),
    (["--dtype", "int8"], "--dtype"),
    (["--algo", "strassen"], "--algo"),
    (["--repeat", "0"], "--repeat"),
    (["--seed", "-1"], "--seed"),
    (["--algo", "cannon", "--panel", "8"], "--panel"),
    (["--op", "sub"], "--op"),
    (["--op", "add", "--k", "5"], "--k"),
    (["--op", "add", "--algo", "cannon"], "--algo"),
    (["--op", "add", "--panel", "4"], "--panel"),
])
def test_bad_input_is_one_line_and_status_2(args, text):
    proc = _run(args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.timeout(150)
@pytest.mark.parametrize("args, ranks", [(["--algo", "cannon"], 2), (["--n", "-1"], 2),
                                         (["--algo", "cannon", "--n", "8"], 3),
                                         (["--threads", "2", "--n", "8"], 3)])
def test_bad_input_under_mpiexec(args, ranks):
    proc = _run(args, ranks=ranks)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ") and lines[0].count("error") == 1, proc.stderr


@pytest.mark.parametrize("args", [["--repeat", "0"], ["--sizes", "0"], ["--ranks", "2,x"],
                                  ["--algos", "strassen"]])
def test_benchmark_refuses_bad_flags(args):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_matmul.py"), *args],
                          capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert args[0] in proc.stderr.strip().splitlines()[-1]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("launch, ranks", [(["--threads", "2"], None), ([], 2)])
def test_sizes_too_large_for_memory_are_a_clear_error(launch, ranks):
    # B alone needs 8 PB: no machine allocates it, whatever it overcommits
    proc = _run(launch + ["--m", "1", "--k", "1", "--n", str(10 ** 15)], ranks=ranks)
    assert proc.returncode != 0
    assert "not enough memory" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    if ranks is None:
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(150)
@pytest.mark.parametrize("algo", ["summa", "cannon"])
def test_more_ranks_than_rows_and_columns(algo):
    report = _report(_run(["--threads", "9", "--algo", algo, "--m", "2", "--k", "1", "--n", "3",
                           "--dtype", "complex128", "--check", "--json"]))
    assert report["grid"] == [3, 3] and report["rel_err"] < 1e-14
    assert report["comm_bytes"] == report["comm_bytes_model"]


MEMORY_FIELDS = {"rss_bytes", "pss_bytes", "nodes", "node_rss_bytes", "node_pss_bytes"}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("launch, ranks", [(["--threads", "3"], None), ([], 2), ([], 4)])
def test_add_shared_and_private_blocks(launch, ranks):
    args = launch + ["--op", "add", "--m", "1024", "--n", "1000", "--check", "--json"]
    private = _report(_run(args, ranks=ranks))
    shared = _report(_run(args + ["--shared"], ranks=ranks))
    size = ranks or 3
    for report, is_shared in ((private, False), (shared, True)):
        assert MEMORY_FIELDS <= set(report)
        assert (report["op"], report["shared"], report["ranks"]) == ("add", is_shared, size)
        assert report["grid"] == [size, 1] and report["rel_err"] == 0.0
        assert len(report["pss_bytes"]) == size and len(report["node_pss_bytes"]) == 1
        assert report["gather_copied"] is not is_shared
    # rank 0 gathered a private copy of C (8 MB); the shared C is the node's array
    matrix = 1024 * 1000 * 8
    assert private["node_pss_bytes"][0] - shared["node_pss_bytes"][0] > matrix // 2


@pytest.mark.timeout(150)
@pytest.mark.parametrize("launch, ranks", [(["--threads", "4"], None), ([], 4)])
def test_matmul_shared_blocks_match_private_ones(launch, ranks):
    args = launch + ["--algo", "cannon", "--m", "50", "--k", "31", "--n", "17", "--check",
                     "--json"]
    private = _report(_run(args, ranks=ranks))
    shared = _report(_run(args + ["--shared"], ranks=ranks))
    assert shared["shared"] and not private["shared"] and MEMORY_FIELDS <= set(shared)
    assert shared["rel_err"] < 1e-13 and private["rel_err"] < 1e-13
    assert shared["comm_bytes"] == private["comm_bytes"] == shared["comm_bytes_model"]


@pytest.mark.timeout(150)
def test_add_summary_names_the_layout_and_memory():
    proc = _run(["--threads", "2", "--op", "add", "--n", "300", "--shared"])
    assert proc.returncode == 0, proc.stderr
    for text in ("add:", "one shared array per node", "C(300x300) = A + B", "GB/s",
                 "no copy", "node total"):
        assert text in proc.stdout


@pytest.mark.timeout(150)
def test_benchmark_add_compares_shared_private_and_numpy(tmp_path):
    out = tmp_path / "add.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_matmul.py"), "--op",
                           "add", "--sizes", "96", "--ranks", "1,2", "--backends", "threads",
                           "--repeat", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert [r["impl"] for r in results] == ["numpy"] + ["mpiml"] * 4
    assert [(r["ranks"], r["shared"]) for r in results[1:]] == [
        (1, False), (1, True), (2, False), (2, True)]
    assert all(r["node_pss_bytes"][0] > 0 and r["memory_ratio"] > 0 for r in results[1:])
    assert "shared" in proc.stdout and "private" in proc.stdout and "numpy" in proc.stdout
