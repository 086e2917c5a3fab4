"""fit_schema and Schema.encode: kinds, vocabularies, missing values, round trips."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mpiml.comm import resolve_comm
from mpiml.data.tables import NA_TOKENS, Feature, Schema, Table, fit_schema, is_missing
from mpiml.errors import DataError, MpimlError

pd = pytest.importorskip("pandas")
NAN = np.nan


def _fit(X, categorical_features="from_dtype"):
    return fit_schema(X, resolve_comm(None), categorical_features)


def test_dataframe_dtypes_and_missing_values():
    frame = pd.DataFrame({
        "cat": pd.Categorical(["b", "a", None, "b"]),
        "obj": pd.Series(["x", None, "y", "NA"], dtype=object),
        "str": pd.Series(["p", pd.NA, "q", "p"], dtype="string"),
        "num": [1.0, NAN, 3.0, 4.0],
        "int": pd.array([1, None, 3, 4], dtype="Int64"),
    })
    X, schema, names = _fit(frame)
    assert names == ["cat", "obj", "str", "num", "int"]
    assert list(schema.is_categorical) == [True, True, True, False, False]
    assert list(schema.n_categories) == [2, 2, 2, 0, 0]
    assert schema.has_categorical
    assert_array_equal(X, [[1, 0, 0, 1, 1], [0, NAN, NAN, NAN, NAN],
                           [NAN, 1, 1, 3, 3], [1, NAN, 0, 4, 4]])


@pytest.mark.parametrize("spec", [[1], ["b"], np.array([False, True, False])])
def test_numpy_with_categorical_features(spec):
    X = np.array([[0.5, 3, 1], [1.5, 1, NAN], [2.5, 3, 2]])
    names = ["a", "b", "c"]
    by_name = isinstance(spec, list) and isinstance(spec[0], str)
    frame = pd.DataFrame(X, columns=names) if by_name else X
    encoded, schema, _ = _fit(frame, spec)
    assert list(schema.is_categorical) == [False, True, False]
    assert_array_equal(schema.features[1].categories, [1.0, 3.0])
    assert_array_equal(encoded, [[0.5, 1, 1], [1.5, 0, NAN], [2.5, 1, 2]])


@pytest.mark.parametrize("spec, message", [
    ([5], "not a feature index below 3"),
    (["nope"], "'nope', which is not a feature"),
    (np.array([True, False]), "a mask of 2 values but X has 3 features"),
    ([1.5], "not a feature index"),
])
def test_bad_categorical_features(spec, message):
    with pytest.raises(MpimlError, match=message):
        _fit(np.zeros((2, 3)), spec)


def test_round_trip_and_unknown_categories():
    _, schema, _ = _fit(Table({"city": np.array(["paris", "rome", None], dtype=object),
                               "n": np.array([1.0, NAN, 2.0])}))
    again = Schema.from_json(schema.to_json())
    assert again == schema and again.names == ["city", "n"]
    rows = {"city": np.array(["rome", "lagos", "NA"], dtype=object), "n": [5, None, 1]}
    assert_array_equal(again.encode(rows), [[1, 5], [NAN, NAN], [NAN, 1]])
    numeric = Feature("code", "categorical", [3.0, 7.0])
    assert Feature.from_json(numeric.to_json()) == numeric


def test_wrong_kind_cell_names_row_and_feature():
    _, schema, _ = _fit(Table({"city": np.array(["a", "b"], dtype=object),
                               "n": np.array([1.0, 2.0])}))
    with pytest.raises(DataError, match="row 1, feature 'n': expected a number"):
        schema.encode({"city": ["a", "b"], "n": [1.0, "lots"]})
    with pytest.raises(DataError, match="missing \\['n'\\]"):
        schema.encode({"city": ["a"]})


def test_na_tokens_are_missing():
    assert all(is_missing(t) and is_missing(f"  {t} ") for t in NA_TOKENS)
    assert not any(is_missing(v) for v in ("0", "none", 0, False, "nul"))
    assert is_missing(None) and is_missing(NAN) and is_missing(pd.NA) and is_missing(pd.NaT)


def _fit_shard(comm, columns):
    rows = [np.array_split(np.asarray(v, dtype=object if isinstance(v[0], str) or v[0] is None
                                      else float), comm.size)[comm.rank]
            for v in columns.values()]
    table = Table(dict(zip(columns, rows)))
    try:
        X, schema, _ = fit_schema(table, comm)
    except MpimlError as exc:
        return "error", str(exc)
    return X, schema.to_json()


@pytest.mark.threads(1, 2, 3, 4)
def test_vocabulary_is_the_union_for_any_rank_count(spmd):
    columns = {"c": ["z", "a", "m", None, "a", "q", "b"],  # "b" on the last rank only
               "n": [1.0, 2.0, NAN, 4.0, 5.0, 6.0, 7.0]}
    results = spmd(_fit_shard, columns)
    reference = _fit_shard(resolve_comm(None), columns)
    assert all(r[1] == reference[1] for r in results)
    assert_array_equal(np.concatenate([r[0] for r in results]), reference[0])
    assert reference[1][0]["categories"] == ["a", "b", "m", "q", "z"]


# -- a plain numeric matrix is read without a copy ------------------------------------------

def test_fit_schema_reads_a_plain_float_matrix_without_a_copy():
    X = np.random.default_rng(0).normal(size=(200_000, 3))
    X[5, 1] = np.nan
    out, schema, _ = fit_schema(X, resolve_comm(None))
    assert out is X and not schema.has_categorical


@pytest.mark.parametrize("make", [
    lambda X: X.astype(np.float32),                 # converted: a new float64 matrix
    lambda X: np.asfortranarray(X)[:, :2],          # a strided view
    lambda X: (X * 10).astype(np.int64),            # integers
])
def test_fit_schema_gives_a_float64_matrix_equal_to_the_input(make):
    X = make(np.random.default_rng(1).normal(size=(50, 3)))
    out, _, _ = fit_schema(X, resolve_comm(None))
    assert out.dtype == np.float64 and out.shape == X.shape
    assert_array_equal(out, X.astype(np.float64))


def test_fit_schema_copies_a_matrix_with_categorical_codes():
    X = np.column_stack([np.arange(10.0) % 3, np.linspace(0, 1, 10)])
    out, schema, _ = fit_schema(X, resolve_comm(None), [0])
    assert out is not X and schema.has_categorical
    assert_array_equal(out[:, 1], X[:, 1])


def test_an_infinity_is_still_refused_with_its_row():
    X = np.zeros((70_000, 2))
    X[69_000, 1] = np.inf
    with pytest.raises(DataError, match=r"infinity \(row 69000, column 1\)"):
        fit_schema(X, resolve_comm(None))
