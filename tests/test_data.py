"""Sharded readers, synthetic generators and the split: same rows for any rank count."""

import os

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mpiml.data import load_data, holdout_mask, train_test_split
from mpiml.errors import MpimlError


def _shared_dir(spmd, tmp_path):
    path = str(tmp_path)
    return spmd(lambda comm: comm.bcast(path))[0]


def _load(comm, source, kw):
    try:
        d = load_data(source, comm, **kw)
    except MpimlError as exc:
        return ("error", str(exc))
    return d.X, d.y, d.offset, d.n_rows, d.feature_names, d.target


def _union(results):
    X = np.concatenate([r[0] for r in results])
    y = np.concatenate([r[1] for r in results])
    return X, y


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("n_rows", [0, 1, 3, 37])
def test_csv_rows_are_split_and_complete(spmd, tmp_path, n_rows):
    directory = _shared_dir(spmd, tmp_path)
    rng = np.random.default_rng(n_rows)
    data = np.round(rng.standard_normal((n_rows, 4)), 3)
    path = os.path.join(directory, "d.csv")
    lines = ["f1,f2,label,f3"] + [f"{a},{b},{int(c > 0)},{d}" for a, b, c, d in data]
    if n_rows:
        lines.insert(2, "")  # a blank line is skipped
    spmd(lambda comm: comm.rank == 0 and _write(path, "\n".join(lines) + "\n") and None)
    results = spmd(_load, path, {"target": "label", "task": "classification"})
    X, y = _union(results)
    assert_array_equal(X, data[:, [0, 1, 3]])
    assert_array_equal(y, (data[:, 2] > 0).astype(int))
    assert results[0][4] == ["f1", "f2", "f3"] and results[0][5] == "label"
    assert [r[2] for r in results] == list(np.cumsum([0] + [len(r[0]) for r in results])[:-1])


@pytest.mark.parametrize("content, kw, message", [
    ("a,b,y\n1,2,3\n4,5,6\n7,x,9\n", {"numeric": "b"},
     "line 4, column 'b': non-numeric value 'x'"),
    ("a,b,y\n1,2,3\n4,5,6\n7,8\n", {}, "line 4 has 2 fields but the header has 3"),
    ("a,b,y\n1,2,3\n4,5,6\n7,8,9,10\n", {}, "line 4 has 4 fields but the header has 3"),
    ("a,b,y\n1,2,3\n4,inf,6\n", {}, "line 3, column 'b': NaN or infinity"),
    ("a,b,y\n1,2,3\n4,5,inf\n", {}, "line 3, column 'y': NaN or infinity"),
    ("a,b,y\n1,2,3\n4,5,cat\n", {"task": "regression"}, "regression target 'y' is not numeric "
                                                         "\\(line 3: 'cat'\\)"),
    ("a,b,y\n1,2,3\n", {"target": "nope"}, "target column 'nope' is not in"),
    ("", {}, "empty"),
    ("a,b,y\n1,2,3\n#4,5,6\n7,8,9\n", {"numeric": ["a"]},
     "line 3, column 'a': non-numeric value '#4'"),
    ("a,b,y\n1,2,3\n4,5#6,6\n", {"numeric": "a,b"}, "line 3, column 'b': non-numeric value '5#6'"),
    ("a,b,y\n1,2,3\n4,5,\n", {}, "line 3, column 'y': empty cell"),
    ("a,b,y\n1,2,3\n4,5,NA\n", {}, "line 3, column 'y': missing value 'NA'"),
    ("a,b,y\n1,x,3\n4,5,NA\n", {}, "line 3, column 'y': missing value 'NA'"),
    ("a,b,y\r1,2,3\r4,5,6\r", {}, "line 1 cannot be read as CSV"),
    ("a,b,y\n1,2,3\n4,\"5,6\n7,8,9\n", {}, "line 3 cannot be read as CSV"),
    ("a,b,y\n1,2,3\n", {"categorical": "c"}, "--categorical names column 'c', which is not"),
    ("a,b,y\n1,2,3\n", {"numeric": "y"}, "--numeric names the target column 'y'"),
    ("a,b,y\n1,2,3\n", {"numeric": "a", "categorical": "a"},
     "column 'a' is forced both categorical and numeric"),
])
def test_csv_errors_name_line_and_column(spmd, tmp_path, content, kw, message):
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "bad.csv")
    spmd(lambda comm: comm.rank == 0 and _write(path, content) and None)
    results = spmd(_load, path, kw)
    assert all(r[0] == "error" for r in results)
    import re
    assert re.search(message, results[0][1]), results[0][1]


def test_csv_text_labels(spmd, tmp_path):
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "t.csv")
    rows = [f"{i},{'cat' if i % 3 else '7'}" for i in range(20)]
    spmd(lambda comm: comm.rank == 0 and _write(path, "x,animal\n" + "\n".join(rows)) and None)
    X, y = _union(spmd(_load, path, {}))
    assert_array_equal(y, ["cat" if i % 3 else "7" for i in range(20)])
    assert_array_equal(X[:, 0], np.arange(20))


def test_missing_file(spmd):
    results = spmd(_load, "/nonexistent/data.csv", {})
    assert all(r[0] == "error" and "No such file" in r[1] for r in results)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("n", [2, 23])
def test_npz_and_npy(spmd, tmp_path, compressed, n):
    directory = _shared_dir(spmd, tmp_path)
    X = np.arange(n * 3, dtype=float).reshape(n, 3)
    y = np.arange(n) % 2
    npz = os.path.join(directory, "d.npz")
    npy = os.path.join(directory, "d.npy")

    def write(comm):
        if comm.rank == 0:
            (np.savez_compressed if compressed else np.savez)(npz, X=X, y=y)
            np.save(npy, np.column_stack([X, y]))
    spmd(write)
    Xu, yu = _union(spmd(_load, npz, {}))
    assert_array_equal(Xu, X)
    assert_array_equal(yu, y)
    Xu, yu = _union(spmd(_load, npy, {}))
    assert_array_equal(Xu, X)
    assert_array_equal(yu, y)
    Xu, yu = _union(spmd(_load, npy, {"target": "0"}))
    assert_array_equal(Xu, np.column_stack([X[:, 1:], y]))


@pytest.mark.parametrize("source", [
    "synthetic:classification?n_samples=9000&n_features=3&n_classes=3&seed=4",
    "synthetic:regression?n_samples=5&n_features=2&noise=0.5",
    "synthetic:classification?n_samples=0",
])
def test_synthetic_is_the_same_for_any_rank_count(spmd, source):
    from mpiml.comm import resolve_comm
    ref = _load(resolve_comm(None), source, {})
    X, y = _union(spmd(_load, source, {}))
    assert_array_equal(X, ref[0])
    assert_array_equal(y, ref[1])


def _load_error(comm, source, kw):
    try:
        load_data(source, comm, **kw)
    except MpimlError as exc:
        return str(exc), getattr(exc, "collective", False)
    return None


@pytest.mark.parametrize("source, message", [
    ("synthetic:classification?n_samples=ten", "n_samples must be a number"),
    ("synthetic:blobs", "unknown synthetic data set"),
    ("synthetic:classification?n_classes=1", "n_classes must be an integer >= 2, got 1"),
    ("synthetic:regression?n_features=3&n_informative=4", "n_informative must be"),
])
def test_synthetic_bad_spec(spmd, source, message):
    # every rank raises the same error, marked collective (printed once under mpiexec)
    results = spmd(_load_error, source, {})
    assert all(r is not None and message in r[0] and r[1] for r in results), results


def test_npz_target_other_than_y(spmd, tmp_path):
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "d.npz")
    spmd(lambda comm: comm.rank == 0 and np.savez(path, X=np.zeros((3, 2)), y=np.arange(3))
         and None)
    results = spmd(_load_error, path, {"target": "label"})
    assert all(r is not None and "target 'label'" in r[0] for r in results), results
    assert _union(spmd(_load, path, {"target": "y"}))[1].tolist() == [0, 1, 2]


def test_split_is_the_same_for_any_rank_count(spmd):
    source = "synthetic:regression?n_samples=1001&n_features=2"

    def body(comm):
        d = load_data(source, comm)
        return train_test_split(d, 0.25, seed=3)
    parts = spmd(body)
    test_y = np.concatenate([p[3] for p in parts])
    mask = holdout_mask(0, 1001, 0.25, seed=3)
    from mpiml.comm import resolve_comm
    full = load_data(source, resolve_comm(None))
    assert_array_equal(test_y, full.y[mask])
    assert_array_equal(np.concatenate([p[1] for p in parts]), full.y[~mask])
    assert 0.2 < mask.mean() < 0.3


# -- tables: column kinds, missing cells, forced kinds --------------------------------

def _table_body(comm, source, kw):
    """Every rank's view of a table source: its rows, the schema and encoded matrix of
    fit_schema, and the summary (the same on every rank)."""
    from mpiml.data.tables import Table, fit_schema
    try:
        d = load_data(source, comm, **kw)
    except MpimlError as exc:
        return ("error", str(exc))
    encoded, schema, names = fit_schema(d.X, comm)
    columns = ({k: v.tolist() for k, v in d.X.columns.items()} if isinstance(d.X, Table)
               else None)
    return {"kind": type(d.X).__name__, "columns": columns, "y": d.y.tolist(),
            "encoded": encoded, "schema": schema.to_json(), "names": names,
            "summary": d.summary, "offset": d.offset, "n_rows": d.n_rows}


def _same_as_one_rank(results, reference):
    """The union of the shards is one rank's table: rows, schema, encoding, summary."""
    assert all(isinstance(r, dict) for r in results), results
    assert [r["offset"] for r in results] == list(
        np.cumsum([0] + [len(r["y"]) for r in results])[:-1])
    assert all(r["kind"] == reference["kind"] for r in results)
    assert sum((r["y"] for r in results), []) == reference["y"]
    encoded = np.concatenate([r["encoded"] for r in results])
    assert_array_equal(encoded, reference["encoded"])
    for r in results:
        assert r["schema"] == reference["schema"]
        assert r["summary"] == reference["summary"]
        assert r["names"] == reference["names"] and r["n_rows"] == reference["n_rows"]
    if reference["columns"] is not None:
        for name, cells in reference["columns"].items():
            union = sum((r["columns"][name] for r in results), [])
            assert _cells_or_none(union) == _cells_or_none(cells), name


def _cells_or_none(cells):
    from mpiml.data.tables import is_missing
    return [None if is_missing(c) else c for c in cells]


def _reference(source, kw):
    from mpiml.comm import resolve_comm
    return _table_body(resolve_comm(None), source, kw)


def _write_on_rank0(spmd, path, text):
    spmd(lambda comm: comm.rank == 0 and _write(path, text) and None)


NA_CELLS = sorted(__import__("mpiml.data.tables", fromlist=["NA_TOKENS"]).NA_TOKENS)


def _mixed_csv(n=41):
    """Text columns, every NA token, a category on the last rows only, a numeric and a
    text column present only in the first rows (missing everywhere on later ranks)."""
    lines = ["num,city,na,late,sparse,tag,y"]
    for i in range(n):
        city = ["paris", "berlin", "", "rome", "NA"][i % 5]
        late = "lagos" if i == n - 1 else ["1.50", "2", "3e1"][i % 3]
        sparse = f"{i / 4}" if i < 3 else ""
        tag = ["x", "y"][i % 2] if i < 2 else "null"
        lines.append(f"{i * 0.5},{city},{NA_CELLS[i % len(NA_CELLS)] if i % 2 else i},"
                     f"{late},{sparse},{tag},{i % 3}")
    return "\n".join(lines) + "\n"


@pytest.mark.threads(1, 2, 3, 4)
def test_csv_table_kinds_missing_and_summary(spmd, tmp_path):
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "mixed.csv")
    _write_on_rank0(spmd, path, _mixed_csv())
    kw = {"target": "y", "task": "classification"}
    reference = _reference(path, kw)
    _same_as_one_rank(spmd(_table_body, path, kw), reference)
    kinds = {f["name"]: f["kind"] for f in reference["schema"]}
    assert kinds == {"num": "numeric", "city": "categorical", "na": "numeric",
                     "late": "categorical", "sparse": "numeric", "tag": "categorical"}
    cats = {f["name"]: f.get("categories") for f in reference["schema"]}
    assert cats["city"] == ["berlin", "paris", "rome"]
    assert cats["late"] == ["1.50", "2", "3e1", "lagos"]  # the text as written
    assert cats["tag"] == ["x", "y"]
    assert reference["summary"] == {
        "rows": 41, "features": 6,
        "categorical": {"city": 3, "late": 4, "tag": 2},
        "missing": {"city": 16, "na": 20, "sparse": 38, "tag": 39}}
    assert reference["y"] == [i % 3 for i in range(41)]
    na = np.array(reference["columns"]["na"], dtype=float)
    assert np.isnan(na[1::2]).all()
    assert_array_equal(na[::2], np.arange(0, 41, 2))


@pytest.mark.threads(1, 2, 4)
def test_csv_text_on_one_rank_makes_the_column_categorical(spmd, tmp_path):
    # every rank but the last parses plain numbers with the fast parser, then reads its
    # cells again as text: "1.50" stays "1.50"
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "late.csv")
    rows = [f"{i},{['1.50', '2', '07'][i % 3]},{i % 2}" for i in range(30)] + ["30,zebra,1"]
    _write_on_rank0(spmd, path, "a,b,y\n" + "\n".join(rows) + "\n")
    reference = _reference(path, {})
    _same_as_one_rank(spmd(_table_body, path, {}), reference)
    assert reference["schema"][1]["categories"] == ["07", "1.50", "2", "zebra"]
    assert reference["summary"]["categorical"] == {"b": 4}


@pytest.mark.threads(1, 3)
def test_csv_forced_kinds(spmd, tmp_path):
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "zip.csv")
    rows = [f"{['02134', '10001', '00501'][i % 3]},{i if i % 4 else 'NA'},{i % 2}"
            for i in range(12)]
    _write_on_rank0(spmd, path, "zip,n,y\n" + "\n".join(rows) + "\n")
    kw = {"categorical": "zip", "numeric": ["n"]}
    reference = _reference(path, kw)
    _same_as_one_rank(spmd(_table_body, path, kw), reference)
    assert reference["schema"] == [
        {"name": "zip", "kind": "categorical", "categories": ["00501", "02134", "10001"],
         "categories_dtype": "str"},
        {"name": "n", "kind": "numeric"}]
    assert reference["summary"]["missing"] == {"n": 3}
    # without --categorical the zip codes are numbers
    plain = _reference(path, {})
    assert plain["schema"][0] == {"name": "zip", "kind": "numeric"}


def test_csv_clean_numeric_stays_an_array(spmd, tmp_path):
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "clean.csv")
    _write_on_rank0(spmd, path, "a,b,y\n1,2,0\n3,4,1\n5,6,1\n")
    results = spmd(_table_body, path, {})
    assert all(r["kind"] == "ndarray" for r in results)
    assert results[0]["summary"] == {"rows": 3, "features": 2, "categorical": {},
                                     "missing": {}}


def test_table_split_by_global_row_index(spmd, tmp_path):
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "mixed.csv")
    _write_on_rank0(spmd, path, _mixed_csv())

    def body(comm):
        X_train, y_train, X_test, _ = train_test_split(load_data(path, comm), 0.3, seed=1)
        return X_train["city"].tolist(), y_train.tolist(), X_test["city"].tolist()
    parts = spmd(body)
    from mpiml.comm import resolve_comm
    full = load_data(path, resolve_comm(None))
    mask = holdout_mask(0, 41, 0.3, seed=1)
    assert sum((p[2] for p in parts), []) == full.X["city"][mask].tolist()
    assert sum((p[0] for p in parts), []) == full.X["city"][~mask].tolist()
    assert sum((p[1] for p in parts), []) == full.y[~mask].tolist()
