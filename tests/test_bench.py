"""The benchmark suite, scripts/bench.py: its JSON results and PNG plots at the tiny size.

One tiny run of every area is made for the module (about a minute on a quiet 2-core
machine); the other tests read its files or call the suite's functions on canned data.
"""

import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from util import ROOT, mpi_env

UNDER_MPI = any(v in os.environ for v in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"))
pytestmark = pytest.mark.skipif(UNDER_MPI, reason="the suite's tests run once, outside mpiexec")

SCRIPT = ROOT / "scripts" / "bench.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
AREAS = ("matmul", "comm", "linear", "trees", "gbdt", "serving")
PLOTS = {"matmul_gflops.png", "scaling_matmul.png", "scaling_forest.png", "scaling_gbdt.png",
         "peers_gbdt.png", "peers_forest.png", "peers_tree.png", "peers_linear.png",
         "serving_latency.png", "comm_bandwidth.png"}


def load_bench():
    spec = importlib.util.spec_from_file_location("mpiml_bench_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def assert_valid_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG file"
    assert len(data) > 5_000, f"{path.name} is suspiciously small ({len(data)} bytes)"
    image = pytest.importorskip("matplotlib.image").imread(path)
    height, width = image.shape[:2]
    assert width >= 500 and height >= 300, f"{path.name} is {width} x {height}"
    assert image[..., :3].std() > 0.02, f"{path.name} is blank"


def run_suite(*args, timeout=900):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=mpi_env())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = run_suite("--tiny", "--out", out)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    return proc, json.loads((out / "results.json").read_text()), out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_run_shows_progress(tiny):
    proc, results, _ = tiny
    steps = [line for line in proc.stderr.splitlines() if ") " in line and "/" in line
             and line.startswith("[")]
    assert steps, proc.stderr[-2000:]
    total = int(steps[0].split("(", 1)[1].split("/", 1)[0]), int(
        steps[-1].split("/", 1)[1].split(")", 1)[0])
    assert total[0] == 1
    for area in AREAS:
        assert f" {area}: " in proc.stderr
    assert "[00:0" in proc.stderr  # elapsed time
    assert "results.json" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_results_have_the_expected_fields(tiny):
    _, results, _ = tiny
    assert results["schema"] == "mpiml-bench/1"
    assert results["size"] == "tiny"
    assert "scripts/bench.py --tiny" in results["command"]
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0
    assert machine["blas"]["threadpoolctl"] or machine["blas"]["numpy_build"]
    assert machine["mpi"]["library"], machine["mpi"]
    assert machine["packages"]["numpy"]
    assert set(results["benchmarks"]) == set(AREAS)
    for name, area in results["benchmarks"].items():
        assert area["status"] in ("ok", "skipped"), (name, area.get("reason"))
        assert area["seconds"] >= 0 and isinstance(area["commands"], list)
        if area["status"] == "skipped":
            assert area["reason"]
            continue
        assert area["figures"], name
        for fig in area["figures"]:
            assert {"name", "value", "unit"} <= set(fig), fig
            assert isinstance(fig["unit"], str) and fig["unit"], fig

    def names(area):
        return {(f["name"], f["unit"]) for f in results["benchmarks"][area]["figures"]}

    assert {("gflops", "GFLOP/s"), ("time", "s"), ("parallel_efficiency", "1")} <= names("matmul")
    assert {f.get("impl") for f in results["benchmarks"]["matmul"]["figures"]} >= {"mpiml", "numpy"}
    assert {("latency", "us"), ("bandwidth", "GB/s")} <= names("comm")
    assert {("fit_time", "s"), ("train_log_loss", "1")} <= names("linear")
    assert {("fit_time", "s"), ("test_auc", "1")} <= names("trees")
    assert {("fit_time", "s"), ("test_auc", "1")} <= names("gbdt")
    assert {("latency_p50", "ms"), ("latency_p99", "ms"), ("throughput", "requests/s")} \
        <= names("serving")
    gbdt = results["benchmarks"]["gbdt"]
    libraries = {f["library"] for f in gbdt["figures"]}
    for peer in gbdt["params"]["peers"]:
        # every peer was measured or skipped with a message
        assert peer in libraries or any(peer in m for m in gbdt["skipped"]), peer
    assert {f["ranks"] for f in gbdt["figures"] if f["library"] == "mpiml"} >= {1, 2}
    serving = results["benchmarks"]["serving"]
    assert all(f["value"] == 0 for f in serving["figures"] if f["name"] == "errors")
    assert all(sum(h["counts"]) > 0 for h in serving["latency_histograms"].values())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_run_writes_valid_pngs(tiny):
    pytest.importorskip("matplotlib")
    _, results, out = tiny
    assert set(results["plots"]) == PLOTS
    for name in results["plots"]:
        assert_valid_png(out / name)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_replot_from_a_results_file(tiny, tmp_path):
    pytest.importorskip("matplotlib")
    _, _, out = tiny
    assert bench.main(["--replot", str(out / "results.json"), "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.glob("*.png")} == PLOTS
    for path in tmp_path.glob("*.png"):
        assert_valid_png(path)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_run_writes_the_summary_table(tiny):
    _, results, out = tiny
    table = (out / "summary.md").read_text()
    assert results["command"] in table
    for title in ("matmul summa", "Allreduce", "logistic regression", "random forest",
                  "decision tree", "gradient boosting", "serving logistic"):
        assert f"| {title}" in table, title
    fastest = max(bench._select(results["benchmarks"]["matmul"], "gflops", impl="numpy"),
                  key=lambda f: (f["n"], f["threads"]))
    assert bench._fmt(fastest["value"], "GFLOP/s") in table


def test_summary_table_ratios_from_canned_figures():
    fig = bench.figure
    results = {"command": "python scripts/bench.py", "size": "tiny", "machine": {"cores": 2},
               "benchmarks": {
                   "gbdt": {"status": "ok", "params": {"trees": 5, "leaves": 7, "n_samples": 900},
                            "figures": [
                                fig("fit_time", 2.0, "s", library="mpiml", backend="mpi", ranks=1),
                                fig("fit_time", 1.5, "s", library="mpiml", backend="mpi", ranks=2),
                                fig("test_auc", 0.875, "1", library="mpiml", backend="mpi",
                                    ranks=2),
                                fig("fit_time", 3.0, "s", library="lightgbm", backend=None,
                                    ranks=None),
                                fig("test_auc", 0.8, "1", library="lightgbm", backend=None,
                                    ranks=None)]},
                   "linear": {"status": "failed", "reason": "boom", "figures": []}}}
    table = bench.summary_table(results)
    rows = [line for line in table.splitlines() if line.startswith("| gradient")]
    assert rows == ["| gradient boosting, 5 trees of 7 leaves, 900 rows; mpi P = 2 | 1.5 s, AUC "
                    "0.87500 | lightgbm: 3 s, AUC 0.80000 | 2.00x |"]
    assert "logistic" not in table


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_only_runs_the_chosen_areas(tmp_path):
    proc = run_suite("--tiny", "--only", "linear", "--quiet", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["benchmarks"]) == ["linear"]
    assert "(1/1) linear:" in proc.stderr
    assert "scikit-learn" not in proc.stderr.split("(1/1) linear:", 1)[1].split("\n", 1)[1], \
        "--quiet prints the benchmark's own output"


def test_only_rejects_an_unknown_area(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "gbdt,gpu"])
    err = capsys.readouterr().err
    assert "'gpu'" in err and "matmul" in err


def test_ranks_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--ranks", "0,2"])
    assert "--ranks" in capsys.readouterr().err
    assert bench.parse_args(["--ranks", "4,1,2"]).ranks == [1, 2, 4]


def test_sizes_cover_every_area():
    for size, params in bench.SIZES.items():
        assert set(params) == set(AREAS), size
    assert bench.parse_args(["--quick"]).size == "quick"
    assert bench.parse_args([]).size == "full"


def test_each_area_is_a_module_of_the_benchmarks_package():
    package = SCRIPT.parent / "benchmarks"
    for area in AREAS:
        module = importlib.import_module(f"benchmarks.{area}")
        assert Path(module.__file__).resolve() == (package / f"{area}.py").resolve()
        assert module.SIZES == {size: params[area] for size, params in bench.SIZES.items()}
        run, steps = bench.AREA_FUNCTIONS[area]
        assert run.__module__ == steps.__module__ == f"benchmarks.{area}"
    for shared in ("common", "machine", "plots", "summary"):
        assert (package / f"{shared}.py").is_file(), shared


def test_progress_line_shows_step_and_elapsed():
    stream = io.StringIO()
    progress = bench.Progress(3, stream=stream)
    progress.step("gbdt", "lightgbm, 2 threads")
    progress.output("lightgbm  1.0 s")
    progress.output('{"results": []}')
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[00:00] (1/3) gbdt: lightgbm, 2 threads"
    assert lines[1] == "[00:00]     lightgbm  1.0 s"
    assert len(lines) == 2  # the child's JSON line goes to the results, not the screen


class FakeContext:
    """Stands in for bench.Context: canned child output, steps and skips recorded."""

    def __init__(self, outputs, ranks=(1, 2)):
        self.outputs, self.ranks = list(outputs), list(ranks)
        self.steps, self.skipped, self.commands = [], [], []

    def step(self, label):
        self.steps.append(label)

    def skip(self, message):
        self.skipped.append(message)

    def run(self, args, **env):
        self.commands.append([str(a) for a in args])
        return self.outputs.pop(0)


def test_missing_peer_is_skipped_with_a_message(monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.setitem(bench.PEER_MODULES, "xgboost", "no_such_module_for_mpiml_tests")
    mpiml_rows = {"results": [{"library": "mpiml", "backend": "threads", "ranks": r,
                               "threads": None, "seconds": 2.0 / r, "auc": 0.8} for r in (1, 2)]}
    sk_rows = {"results": [{"library": "sklearn", "ranks": None, "threads": 2, "seconds": 1.5,
                            "auc": 0.79}]}
    ctx = FakeContext([["data: ...", json.dumps(mpiml_rows)],
                       ["sklearn 2 threads 1.5 s", json.dumps(sk_rows)]])
    params = dict(bench.SIZES["tiny"]["gbdt"], peers=["xgboost", "sklearn"])
    result = bench.run_gbdt(ctx, params)
    assert len(ctx.steps) == bench.gbdt_steps(params, ctx.ranks)
    assert any("xgboost skipped: not installed" in m and "[bench]" in m for m in ctx.skipped)
    assert len(ctx.commands) == 2  # the missing peer's script is never started
    libraries = {f["library"] for f in result["figures"]}
    assert libraries == {"mpiml", "sklearn"}
    assert all(f["unit"] == ("s" if f["name"] == "fit_time" else "1") for f in result["figures"])


def test_matmul_efficiency_from_the_script_reports():
    reports = [{"algo": "summa", "backend": "mpi", "ranks": p, "grid": [1, p], "m": 256,
                "k": 256, "n": 256, "dtype": "float64", "seconds": 1.0 / p, "gflops": g,
                "numpy_gflops": 30.0, "numpy_threads": p}
               for p, g in ((1, 10.0), (2, 15.0))]
    figures = bench.matmul_figures(reports)
    eff = {f["ranks"]: f["value"] for f in figures if f["name"] == "parallel_efficiency"}
    assert eff == pytest.approx({1: 1.0, 2: 0.75})
    numpy = [f for f in figures if f.get("impl") == "numpy"]
    assert {(f["threads"], f["value"]) for f in numpy} == {(1, 30.0), (2, 30.0)}


def test_plots_from_canned_results(tmp_path):
    pytest.importorskip("matplotlib")
    fig = bench.figure
    results = {
        "size": "tiny", "created": "2026-01-01T00:00:00+00:00", "machine": {"cores": 2},
        "params": {"serving": {"concurrency": 2}},
        "benchmarks": {
            "matmul": {"figures": bench.matmul_figures([
                {"algo": algo, "backend": be, "ranks": p, "n": n, "dtype": "float64",
                 "seconds": n ** 3 / 1e9 / p, "gflops": 2.0 * p, "numpy_gflops": 20.0,
                 "numpy_threads": min(p, 2)}
                for algo in ("summa", "cannon") for be in ("mpi", "threads")
                for p in ((1, 2) if algo == "summa" else (1, 4)) for n in (64, 128, 256)])},
            "trees": {"figures": [fig("fit_time", 4.0 / p, "s", case=c, library="mpiml",
                                      backend="threads", ranks=p) for p in (1, 2)
                                  for c in ("forest", "tree")]
                      + [fig("test_auc", 0.8, "1", case=c, library="mpiml", backend="threads",
                             ranks=p) for p in (1, 2) for c in ("forest", "tree")]},
            "gbdt": {"figures": [fig("fit_time", 3.0, "s", library="lightgbm", threads=2),
                                 fig("test_auc", 0.81, "1", library="lightgbm", threads=2),
                                 fig("fit_time", 5.0, "s", library="mpiml", backend="mpi",
                                     ranks=1),
                                 fig("test_auc", 0.8, "1", library="mpiml", backend="mpi",
                                     ranks=1)]},
            "serving": {"figures": [fig("latency_p50", 1.5, "ms", model="gbdt")],
                        "latency_histograms": {"gbdt": bench.latency_histogram(
                            [0.001, 0.0012, 0.0015, 0.002, 0.01])}},
        },
    }
    written = bench.make_plots(results, tmp_path)
    assert set(written) == {"matmul_gflops.png", "scaling_matmul.png", "scaling_forest.png",
                            "scaling_gbdt.png", "peers_gbdt.png", "peers_forest.png",
                            "peers_tree.png", "serving_latency.png"}
    for name in written:
        assert_valid_png(tmp_path / name)


def test_describe_machine_has_cores_memory_blas_and_mpi():
    machine = bench.describe_machine()
    assert machine["cores"] >= 1
    assert machine["memory_bytes"] is None or machine["memory_bytes"] > 0
    assert set(machine["blas"]) == {"threadpoolctl", "numpy_build"}
    assert {"library", "mpi4py", "mpiexec"} <= set(machine["mpi"])
    json.dumps(machine)  # all of it goes into the results file


def test_a_failing_area_is_reported_and_the_others_still_run(monkeypatch, tmp_path, capsys):
    def broken(ctx, params):
        ctx.step("always fails")
        raise bench.ChildFailed(["python", "scripts/bench_matmul.py"], 1, ["Traceback ...", "boom"])

    def fine(ctx, params):
        ctx.step("canned")
        return {"figures": [bench.figure("bandwidth", 1.0, "GB/s", impl="mpi", op="Bcast",
                                         bytes=8, ranks=2)]}

    def missing(ctx, params):
        raise bench.AreaSkipped("scikit-learn is not installed")

    monkeypatch.setattr(bench, "AREA_FUNCTIONS", {
        "matmul": (broken, lambda p, r: 1), "comm": (fine, lambda p, r: 1),
        "linear": (missing, lambda p, r: 0)})
    argv = ["--tiny", "--only", "matmul,comm,linear", "--out", str(tmp_path)]
    assert bench.run_suite(bench.parse_args(argv), argv) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    areas = results["benchmarks"]
    assert areas["matmul"]["status"] == "failed" and "boom" in areas["matmul"]["reason"]
    assert areas["comm"]["status"] == "ok"
    assert areas["linear"] == dict(areas["linear"], status="skipped",
                                   reason="scikit-learn is not installed")
    out, err = capsys.readouterr()
    assert "matmul: FAILED" in err and "linear: skipped" in err
    assert "failed" in out and "comm" in out
