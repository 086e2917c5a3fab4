"""Parquet files and Spark-style directories: row groups split over ranks, the same
table for any rank count, and the same schema as a CSV of the same rows."""

import os

import numpy as np
import pytest

from test_data import _reference, _same_as_one_rank, _shared_dir, _table_body

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")


def _frame(n=37):
    """Numbers with NaN, text with None, a category on the last row only, zip codes,
    integers with nulls, booleans, and an integer target."""
    i = np.arange(n)
    return pd.DataFrame({
        "num": np.where(i % 7 == 3, np.nan, i * 0.25),
        "city": pd.Series([None if k % 5 == 2 else ["paris", "berlin", "rome"][k % 3]
                           for k in i], dtype=object),
        "last": pd.Series(["late" if k == n - 1 else "early" for k in i], dtype=object),
        "zip": pd.Series([["02134", "10001", "00501"][k % 3] for k in i], dtype=object),
        "count": pd.array([None if k % 4 == 1 else int(k) for k in i], dtype="Int64"),
        "flag": i % 3 == 0,
        "y": (i % 2).astype(np.int64),
    })


def _arrow(frame):
    return pa.Table.from_pandas(frame, preserve_index=False)


def _write_on_rank0(spmd, write):
    spmd(lambda comm: comm.rank == 0 and write() and None)


def _spark_dir(directory, frame, sizes=(3, 0, 20, 14), group=6):
    """Parts of uneven sizes (one empty), several row groups each, and the files Spark
    leaves beside them."""
    os.makedirs(directory, exist_ok=True)
    start = 0
    for k, size in enumerate(sizes):
        part = _arrow(frame.iloc[start:start + size])
        pq.write_table(part, os.path.join(directory, f"part-{k:05d}-abc.snappy.parquet"),
                       row_group_size=group)
        start += size
    assert start == len(frame)
    for junk in ("_SUCCESS", ".part-00000-abc.snappy.parquet.crc", "_metadata"):
        with open(os.path.join(directory, junk), "wb") as f:
            f.write(b"not parquet")
    return True


@pytest.mark.threads(1, 2, 3, 4)
@pytest.mark.parametrize("layout", ["one_group", "groups_of_5", "spark_dir"])
def test_parquet_same_table_for_any_rank_count(spmd, tmp_path, layout):
    directory = _shared_dir(spmd, tmp_path)
    frame = _frame()
    if layout == "spark_dir":
        path = os.path.join(directory, "parts")
        _write_on_rank0(spmd, lambda: _spark_dir(path, frame))
    else:
        path = os.path.join(directory, "d.parquet")
        group = len(frame) if layout == "one_group" else 5
        _write_on_rank0(spmd, lambda: pq.write_table(_arrow(frame), path,
                                                     row_group_size=group) or True)
    kw = {"target": "y", "task": "classification"}
    reference = _reference(path, kw)
    _same_as_one_rank(spmd(_table_body, path, kw), reference)
    assert reference["y"] == frame["y"].tolist()
    kinds = {f["name"]: f["kind"] for f in reference["schema"]}
    assert kinds == {"num": "numeric", "city": "categorical", "last": "categorical",
                     "zip": "categorical", "count": "numeric", "flag": "numeric"}
    assert reference["schema"][2]["categories"] == ["early", "late"]
    assert reference["summary"] == {
        "rows": 37, "features": 6,
        "categorical": {"city": 3, "last": 2, "zip": 3},
        "missing": {"num": 5, "city": 7, "count": 9}}


def test_parquet_and_csv_of_the_same_rows(spmd, tmp_path):
    directory = _shared_dir(spmd, tmp_path)
    frame = _frame()
    frame["flag"] = frame["flag"].astype(int)  # a CSV holds 0/1, not True/False
    csv = os.path.join(directory, "d.csv")
    parquet = os.path.join(directory, "d.parquet")

    def write():
        frame.to_csv(csv, index=False)
        pq.write_table(_arrow(frame), parquet, row_group_size=4)
        return True
    _write_on_rank0(spmd, write)
    kw = {"target": "y", "task": "classification"}
    from_csv = _reference(csv, dict(kw, categorical="zip"))
    from_parquet = _reference(parquet, kw)
    assert from_csv["schema"] == from_parquet["schema"]
    np.testing.assert_array_equal(from_csv["encoded"], from_parquet["encoded"])
    assert from_csv["summary"] == from_parquet["summary"]
    assert from_csv["y"] == from_parquet["y"]
    _same_as_one_rank(spmd(_table_body, parquet, kw), from_csv)


def test_parquet_dictionary_columns_and_forced_kinds(spmd, tmp_path):
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "d.parquet")
    frame = pd.DataFrame({"colour": pd.Categorical(["red", "blue", None, "red", "green"]),
                          "code": [7, 12, 7, 3, 12],
                          "amount": ["1.5", "NA", "2", None, "3"],
                          "label": ["a", "b", "a", "b", "b"]})
    _write_on_rank0(spmd, lambda: pq.write_table(_arrow(frame), path,
                                                 row_group_size=2) or True)
    kw = {"categorical": ["code"], "numeric": "amount"}
    reference = _reference(path, kw)
    _same_as_one_rank(spmd(_table_body, path, kw), reference)
    assert reference["schema"] == [
        {"name": "colour", "kind": "categorical", "categories": ["blue", "green", "red"],
         "categories_dtype": "str"},
        {"name": "code", "kind": "categorical", "categories": ["12", "3", "7"],
         "categories_dtype": "str"},
        {"name": "amount", "kind": "numeric"}]
    assert reference["y"] == ["a", "b", "a", "b", "b"]
    assert reference["summary"]["missing"] == {"colour": 1, "amount": 2}


def test_parquet_clean_numbers_stay_an_array(spmd, tmp_path):
    directory = _shared_dir(spmd, tmp_path)
    path = os.path.join(directory, "d.parquet")
    frame = pd.DataFrame({"a": np.arange(9.0), "b": np.arange(9), "y": np.arange(9) % 2})
    _write_on_rank0(spmd, lambda: pq.write_table(_arrow(frame), path,
                                                 row_group_size=2) or True)
    results = spmd(_table_body, path, {})
    assert all(r["kind"] == "ndarray" for r in results)
    np.testing.assert_array_equal(np.concatenate([r["encoded"] for r in results]),
                                  frame[["a", "b"]].to_numpy(float))


def _bad_sources(directory):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "s": ["x", "1", "z"], "y": [0, 1, None]})
    pq.write_table(_arrow(frame), os.path.join(directory, "nulltarget.parquet"))
    pq.write_table(_arrow(frame.iloc[:2]), os.path.join(directory, "good.parquet"))
    when = pd.DataFrame({"t": pd.to_datetime(["2024-01-01"]), "y": [1]})
    pq.write_table(_arrow(when), os.path.join(directory, "time.parquet"))
    os.makedirs(os.path.join(directory, "mixed"))
    pq.write_table(_arrow(frame.iloc[:2]), os.path.join(directory, "mixed", "part-0.parquet"))
    pq.write_table(_arrow(frame[["a", "y"]].iloc[:2]),
                   os.path.join(directory, "mixed", "part-1.parquet"))
    os.makedirs(os.path.join(directory, "empty"))
    os.makedirs(os.path.join(directory, "nested", "year=2024"))
    with open(os.path.join(directory, "broken.parquet"), "wb") as f:
        f.write(b"PAR1 this is not parquet")
    return True


@pytest.mark.parametrize("name, kw, message", [
    ("nulltarget.parquet", {}, "row 2, column 'y': missing target"),
    ("good.parquet", {"target": "nope"}, "target column 'nope' is not in"),
    ("good.parquet", {"numeric": "s"}, "row 0, column 's': non-numeric value 'x'"),
    ("good.parquet", {"categorical": "q"}, "--categorical names column 'q'"),
    ("good.parquet", {"task": "regression", "target": "s"},
     "regression target 's' is not numeric (row 0: 'x')"),
    ("time.parquet", {}, "columns of types mpiml cannot read: t (timestamp"),
    ("mixed", {}, "has columns ['a', 'y'], not those of"),
    ("empty", {}, "holds no *.parquet part files"),
    ("nested", {}, "partitioned data sets are not supported"),
    ("broken.parquet", {}, "cannot read Parquet file"),
    ("missing.parquet", {}, "No such file"),
])
def test_parquet_errors(spmd, tmp_path, name, kw, message):
    directory = _shared_dir(spmd, tmp_path)
    _write_on_rank0(spmd, lambda: _bad_sources(directory))
    results = spmd(_table_body, os.path.join(directory, name), kw)
    assert all(r[0] == "error" and message in r[1] for r in results), results
