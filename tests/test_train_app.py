"""apps/train.py as users run it: threads, mpiexec, JSON report, bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mpiml
import mpiml.io

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "apps" / "train.py")
SYNTH = "synthetic:classification?n_samples=3000&n_features=6&seed=1"
FIELDS = {"model", "task", "backend", "ranks", "rows", "features", "seconds", "metric",
          "train_score", "test_score", "out", "sha256"}


def _mpiexec():
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("mpiexec", path=path)


def _run(args, mpi=0, timeout=120):
    cmd = [sys.executable, APP] + args
    if mpi:
        cmd = [_mpiexec(), "-n", str(mpi)] + cmd
    env = dict(os.environ, MPIR_CVAR_CH4_PROGRESS_THROTTLE="1")
    for var in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"):
        env.pop(var, None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _report(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model, extra", [
    ("logistic", []),
    ("mlp", ["--hidden", "8,4", "--max-iter", "10", "--learning-rate-init", "0.02"]),
])
def test_threads_json_report(tmp_path, model, extra):
    out = tmp_path / "m.mpiml"
    report = _report(_run([model, "--data", SYNTH, "--out", str(out), "--threads", "2",
                           "--json", "--quiet"] + extra))
    assert set(report) == FIELDS
    assert report["ranks"] == 2 and report["backend"] == "threads" and report["rows"] == 3000
    assert report["metric"] == "accuracy" and report["train_score"] > 0.7
    assert report["sha256"] == mpiml.io.file_sha256(out)
    model = mpiml.load(out)
    assert model.predict(np.zeros((2, 6))).shape == (2,)


def test_linear_regression_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = X @ [1.0, 2.0, -1.0] + 0.5
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([y, X]), delimiter=",", header="price,a,b,c", comments="")
    proc = _run(["linear", "--data", str(csv), "--target", "price", "--out",
                 str(tmp_path / "m.mpiml"), "--test-fraction", "0", "--json"])
    report = _report(proc)
    assert report["test_score"] is None and report["train_score"] > 0.999
    assert "r2: train" in proc.stdout
    assert "data: 200 rows x 3 features; categorical: none; missing cells: none" in proc.stderr
    assert mpiml.io.read_manifest(tmp_path / "m.mpiml")["feature_names_in_"] == ["a", "b", "c"]


def test_mpiexec_two_ranks_same_model_as_one(tmp_path):
    if _mpiexec() is None:
        pytest.skip("no mpiexec")
    args = ["logistic", "--data", SYNTH, "--json", "--quiet", "--tol", "1e-10"]
    one = _report(_run(args + ["--out", str(tmp_path / "one.mpiml")]))
    two = _report(_run(args + ["--out", str(tmp_path / "two.mpiml")], mpi=2))
    assert two["ranks"] == 2 and two["backend"] == "mpi"
    a, b = mpiml.load(tmp_path / "one.mpiml"), mpiml.load(tmp_path / "two.mpiml")
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-8)
    assert abs(one["test_score"] - two["test_score"]) < 0.01


BAD = [
    (["logistic", "--data", "{d}/missing.csv"], "No such file"),
    (["logistic", "--data", "{d}/ragged.csv"], "line 3 has 2 fields"),
    (["logistic", "--data", "{d}/text.csv", "--numeric", "b"],
     "line 4, column 'b': non-numeric value 'x'"),
    (["logistic", "--data", "{d}/inf.csv"], "line 3, column 'b': NaN or infinity"),
    (["logistic", "--data", "{d}/good.csv", "--categorical", "c"], "--categorical names column"),
    (["logistic", "--data", "{d}/missingy.csv"], "line 3, column 'y': empty cell in the target"),
    (["logistic", "--data", "{d}/nulls.parquet"], "row 1, column 'y': missing target"),
    (["logistic", "--data", "{d}/good.npz", "--numeric", "a"], "not for"),
    (["logistic", "--data", "{d}/good.csv", "--target", "nope"], "target column 'nope'"),
    (["logistic", "--data", "{d}/oneclass.csv"], "1 class"),
    (["linear", "--data", "{d}/labels.csv"], "regression target 'y' is not numeric"),
    (["logistic", "--data", "{d}/good.csv", "--out", "{d}/nodir/m.mpiml"], "does not exist"),
    (["logistic", "--data", "{d}/good.csv", "--max-iter", "0"], "max_iter must be"),
]


def _bad_files(d):
    files = {"ragged.csv": "a,b,y\n1,2,0\n3,4\n", "text.csv": "a,b,y\n1,2,0\n3,4,1\n5,x,1\n",
             "inf.csv": "a,b,y\n1,2,0\n3,inf,1\n", "good.csv": "a,b,y\n1,2,0\n3,4,1\n5,5,1\n",
             "oneclass.csv": "a,b,y\n1,2,0\n3,4,0\n", "labels.csv": "a,b,y\n1,2,0\n3,4,cat\n",
             "missingy.csv": "a,b,y\n1,2,0\n3,4,\n"}
    for name, text in files.items():
        (d / name).write_text(text)
    np.savez(d / "good.npz", X=np.zeros((3, 2)), y=np.arange(3) % 2)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    pq.write_table(pa.table({"a": [1.0, 2.0], "y": [0, None]}), d / "nulls.parquet")


@pytest.mark.parametrize("args, message", BAD)
@pytest.mark.parametrize("launch", ["threads", "mpi"])
def test_bad_input(tmp_path, args, message, launch):
    if launch == "mpi" and (_mpiexec() is None or args[-1] not in ("{d}/ragged.csv",
                                                                    "{d}/inf.csv", "0", "b")):
        pytest.skip("a few cases under mpiexec are enough")
    if args[2].endswith(".parquet"):
        pytest.importorskip("pyarrow")
    _bad_files(tmp_path)
    out = tmp_path / "model.mpiml"
    out.write_bytes(b"old model")
    args = [a.format(d=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(out)]
    proc = _run(args + (["--threads", "2"] if launch == "threads" else []),
                mpi=2 if launch == "mpi" else 0)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error") == 1, proc.stderr
    assert out.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# -- categorical tables end to end -------------------------------------------------------

def _categorical_rows(n=400, seed=0):
    """A label that depends on a city (text), a zip code and a number, with missing
    cells everywhere."""
    rng = np.random.default_rng(seed)
    cities = np.array(["paris", "berlin", "rome", "lagos"])
    city = cities[rng.integers(0, 4, n)]
    zips = np.array(["02134", "10001", "00501"])[rng.integers(0, 3, n)]
    x = rng.standard_normal(n)
    y = ((city == "paris") | (city == "rome")) ^ (x > 1.2)
    frame = {"city": [None if k % 17 == 0 else c for k, c in enumerate(city)],
             "zip": list(zips), "x": np.where(np.arange(n) % 13 == 5, np.nan, x),
             "label": np.where(y, "yes", "no")}
    return frame


def _write_tables(d):
    import pandas as pd
    frame = pd.DataFrame(_categorical_rows())
    frame.to_csv(d / "cat.csv", index=False)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, d / "cat.parquet", row_group_size=64)
    (d / "parts").mkdir()
    for k, (a, b) in enumerate([(0, 150), (150, 160), (160, 400)]):
        pq.write_table(table.slice(a, b - a), d / "parts" / f"part-{k:05d}.parquet",
                       row_group_size=50)
    (d / "parts" / "_SUCCESS").write_text("")


@pytest.mark.parametrize("model, extra", [("gbdt", ["--n-estimators", "20"]),
                                          ("logistic", [])])
@pytest.mark.parametrize("source", ["cat.csv", "cat.parquet", "parts"])
def test_categorical_table_end_to_end(tmp_path, model, extra, source):
    pytest.importorskip("pandas")
    if source != "cat.csv":
        pytest.importorskip("pyarrow")
    _write_tables(tmp_path)
    out = tmp_path / f"{model}.mpiml"
    proc = _run([model, "--data", str(tmp_path / source), "--target", "label",
                 "--categorical", "zip", "--out", str(out), "--threads", "2", "--json"]
                + extra)
    report = _report(proc)
    assert report["rows"] == 400 and report["features"] == 3 and report["ranks"] == 2
    assert report["task"] == "classification" and report["train_score"] > 0.75
    assert ("categorical: city (4 categories), zip (3 categories); missing cells: "
            "city 24, x 31") in proc.stderr
    loaded = mpiml.load(out)
    rows = {"city": np.array(["paris", None], dtype=object),
            "zip": np.array(["02134", "99999"], dtype=object), "x": np.array([0.0, np.nan])}
    from mpiml.data.tables import Table
    assert loaded.predict(Table(rows)).shape == (2,)


def test_categorical_csv_and_parquet_give_the_same_model(tmp_path):
    pytest.importorskip("pyarrow")
    _write_tables(tmp_path)
    models = []
    for source in ("cat.csv", "parts"):
        out = tmp_path / f"{source}.mpiml"
        _report(_run(["gbdt", "--data", str(tmp_path / source), "--target", "label",
                      "--categorical", "zip", "--n-estimators", "5", "--out", str(out),
                      "--json", "--quiet"]))
        models.append(mpiml.io.read_manifest(out))
    assert models[0]["features"] == models[1]["features"]
    city = next(f for f in models[0]["features"] if f["name"] == "city")
    assert city["kind"] == "categorical" and city["categories"] == ["berlin", "lagos", "paris",
                                                                    "rome"]


def test_unavailable_model_is_a_clear_error(tmp_path, monkeypatch):
    from mpiml.cli import train
    monkeypatch.setitem(train.ESTIMATORS, "forest", {"classification": "mpiml.models.nope:X"})
    with pytest.raises(SystemExit) as info:
        train.main(["forest", "--data", SYNTH, "--out", str(tmp_path / "m")])
    assert info.value.code == 2


def test_progress_lines_and_quiet(tmp_path):
    args = ["logistic", "--data", SYNTH, "--out", str(tmp_path / "m.mpiml"), "--threads", "2"]
    proc = _run(args)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("logistic: iter")]
    assert lines and all("loss" in line and "elapsed" in line for line in lines)
    assert "accuracy: train" in proc.stdout
    proc = _run(args + ["--quiet"])
    assert proc.returncode == 0 and "iter" not in proc.stderr


def test_progress_reporter_rate_limit():
    import io as _io
    from mpiml.progress import ProgressReporter
    stream = _io.StringIO()
    report = ProgressReporter(interval=3600, stream=stream, label="fit")
    for i in range(100):
        report(i, 1.0 / (i + 1))
    report.done()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("fit: iter 0") and "iter 99" in lines[1]


def test_categorical_parquet_parts_under_mpiexec(tmp_path):
    pytest.importorskip("pyarrow")
    if _mpiexec() is None:
        pytest.skip("no mpiexec")
    _write_tables(tmp_path)
    args = ["logistic", "--data", str(tmp_path / "parts"), "--target", "label",
            "--categorical", "zip", "--json", "--quiet"]
    one = _report(_run(args + ["--out", str(tmp_path / "one.mpiml")]))
    two = _report(_run(args + ["--out", str(tmp_path / "two.mpiml")], mpi=2))
    assert two["ranks"] == 2 and two["backend"] == "mpi" and two["rows"] == one["rows"]
    assert abs(one["test_score"] - two["test_score"]) < 0.01
    assert (mpiml.io.read_manifest(tmp_path / "one.mpiml")["features"]
            == mpiml.io.read_manifest(tmp_path / "two.mpiml")["features"])
