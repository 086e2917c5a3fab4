"""Trees, forests and boosting on tables: missing values and categorical features.

Every model must be bit-identical for any rank count and both backends, also with text
categories, NaN cells, a category present on one rank only, a column all missing on
one rank and an empty rank; the learned missing side and category-subset splits must
be the ones that matter; accuracy close to scikit-learn's HistGradientBoosting.
"""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal

import mpiml
from util import rank_rows
from mpiml.comm.partition import block_range
from mpiml.data.tables import Table
from mpiml.models.forest import RandomForestClassifier, RandomForestRegressor
from mpiml.models.gbdt import GradientBoostingClassifier, GradientBoostingRegressor
from mpiml.models.tree import (BinEdges, DecisionTreeClassifier, DecisionTreeRegressor,
                               fit_bin_edges)

COLORS = [f"c{i:02d}" for i in range(12)]


def _table(n=240, seed=0):
    """A DataFrame of text categories (with missing cells), numbers with NaN, a column
    missing in the first third of the rows, and a category only in the last rows; and a
    binary target of all of them."""
    rng = np.random.default_rng(seed)
    color = rng.choice(COLORS, n).astype(object)
    color[rng.random(n) < 0.1] = None
    color[-5:] = "zz-last-rows-only"
    x0 = rng.standard_normal(n)
    x0[rng.random(n) < 0.2] = np.nan
    x1 = rng.standard_normal(n)
    x1[: n // 3] = np.nan
    good = {c for i, c in enumerate(COLORS) if i % 3 == 0}
    score = (np.array([c in good for c in color], dtype=float) * 1.5
             + np.where(np.isnan(x0), 1.0, x0) + 0.5 * np.nan_to_num(x1))
    y = (score + 0.3 * rng.standard_normal(n) > 0.7).astype(np.int64)
    X = pd.DataFrame({"color": color, "x0": x0, "x1": x1})
    return X, y, score


def _test_table():
    X, _, _ = _table(40, seed=7)
    X.loc[X.index[:4], "color"] = "never-seen"
    X.loc[X.index[4:8], "x0"] = np.nan
    return X


MODELS = {
    "tree-gini": (DecisionTreeClassifier, dict(max_depth=5, random_state=0)),
    "tree-entropy-3-classes": (DecisionTreeClassifier,
                               dict(criterion="entropy", max_leaf_nodes=9, random_state=0)),
    "tree-regressor": (DecisionTreeRegressor, dict(max_depth=4, random_state=0)),
    "tree-feature-mode": (DecisionTreeClassifier, dict(max_depth=4, parallel="feature",
                                                       random_state=0)),
    "forest": (RandomForestClassifier, dict(n_estimators=3, max_depth=4, random_state=0)),
    "forest-data-regressor": (RandomForestRegressor,
                              dict(n_estimators=2, max_depth=3, parallel="data",
                                   max_features=2, random_state=0)),
    "gbdt": (GradientBoostingClassifier,
             dict(n_estimators=4, max_leaf_nodes=6, min_samples_leaf=5, random_state=0)),
    "gbdt-3-classes": (GradientBoostingClassifier,
                       dict(n_estimators=2, max_leaf_nodes=5, min_samples_leaf=5,
                            quantize_gradients=False, random_state=0)),
    "gbdt-subsample-validation": (GradientBoostingClassifier,
                                  dict(n_estimators=3, max_leaf_nodes=4, min_samples_leaf=5,
                                       subsample=0.7, validation_fraction=0.2,
                                       random_state=0)),
    "gbdt-regressor": (GradientBoostingRegressor,
                       dict(n_estimators=3, max_depth=3, max_leaf_nodes=None,
                            min_samples_leaf=4, random_state=0)),
}


def _target(case, y, score):
    if "regressor" in case:
        return score
    if "3-classes" in case:
        return np.digitize(score, [0.0, 1.0])
    return y


def _fingerprint(model):
    meta, arrays = model._get_state()
    X_test = _test_table()
    pred = model.predict_proba(X_test) if hasattr(model, "predict_proba") else model.predict(X_test)
    return {name: np.asarray(a) for name, a in arrays.items()}, pred


def _fit_body(comm, case, empty_rank):
    cls, params = MODELS[case]
    X, y, score = _table()
    y = _target(case, y, score)
    a, b = rank_rows(comm, len(X), empty_rank)
    return _fingerprint(cls(**params).fit(X.iloc[a:b], y[a:b], comm=comm))


@pytest.mark.threads(1, 2, 3, 4)
@pytest.mark.parametrize("empty_rank", [False, True], ids=["blocks", "empty-rank"])
@pytest.mark.parametrize("case", sorted(MODELS))
def test_identical_for_any_rank_count(spmd, case, empty_rank):
    cls, params = MODELS[case]
    X, y, score = _table()
    want_arrays, want_pred = _fingerprint(cls(**params).fit(X, _target(case, y, score)))
    for arrays, pred in spmd(_fit_body, case, empty_rank):
        assert sorted(arrays) == sorted(want_arrays)
        for name in want_arrays:
            assert_array_equal(arrays[name], want_arrays[name], err_msg=name)
        assert_array_equal(pred, want_pred)


@pytest.mark.parametrize("case", sorted(MODELS))
def test_models_use_categories_and_missing_values(case, tmp_path):
    cls, params = MODELS[case]
    X, y, score = _table()
    model = cls(**params).fit(X, _target(case, y, score))
    assert model.is_categorical_.tolist() == [True, False, False]
    trees = [model.tree_] if hasattr(model, "tree_") else list(model.trees_)
    assert any(t.categorical[t.left >= 0].any() for t in trees)
    # the saved model predicts the same, unseen categories (missing) included
    path = tmp_path / "m.mpiml"
    mpiml.save(model, path)
    loaded = mpiml.load(path)
    X_test = _test_table()
    assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    # a Table of the same columns gives the same predictions
    table = Table({c: X_test[c].to_numpy() for c in X_test.columns}, categorical=["color"])
    assert_array_equal(model.predict(table), model.predict(X_test))


def test_learned_missing_side():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(400)
    missing = rng.random(400) < 0.3
    y = ((x > 0.5) & ~missing).astype(int)   # missing rows are with the low values
    x[missing] = np.nan
    X = x[:, None]
    tree = DecisionTreeClassifier(max_depth=1).fit(X, y)
    assert tree.tree_.missing_left[0] == 1
    assert (tree.predict(X) == y).all()
    gbdt = GradientBoostingClassifier(n_estimators=10, max_leaf_nodes=2).fit(X, y)
    assert (gbdt.predict(X) == y).all()
    # the other way round: the missing rows with the high values
    y2 = ((x > 0.5) | missing).astype(int)
    tree = DecisionTreeClassifier(max_depth=1).fit(X, y2)
    assert tree.tree_.missing_left[0] == 0 and (tree.predict(X) == y2).all()


def test_unseen_missing_goes_to_the_larger_child():
    x = np.arange(100.0)[:, None]
    y = (x[:, 0] >= 80).astype(int)           # left child (x < 80) has 80 rows
    tree = DecisionTreeClassifier(max_depth=1).fit(x, y)
    assert tree.tree_.missing_left[0] == 1
    assert tree.predict([[np.nan]])[0] == 0
    tree = DecisionTreeClassifier(max_depth=1).fit(x, 1 - (x[:, 0] >= 20).astype(int))
    assert tree.tree_.missing_left[0] == 0 and tree.predict([[np.nan]])[0] == 0


def test_categorical_split_beats_ordinal_codes():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 20, 600)
    left = rng.permutation(20)[:10]
    y = np.isin(codes, left).astype(int)
    X = codes[:, None].astype(float)
    categorical = DecisionTreeClassifier(max_depth=1, categorical_features=[0]).fit(X, y)
    ordinal = DecisionTreeClassifier(max_depth=1).fit(X, y)
    assert categorical.score(X, y) == 1.0
    assert ordinal.score(X, y) < 0.85
    gbdt = GradientBoostingRegressor(n_estimators=1, max_leaf_nodes=2, learning_rate=1.0,
                                     categorical_features=[0]).fit(X, y.astype(float))
    assert_array_equal(gbdt.predict(X), y)


def _hgb_table(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 8, n)
    b = rng.integers(0, 30, n)
    x = rng.standard_normal((n, 3))
    x[rng.random((n, 3)) < 0.15] = np.nan
    effect_a = rng.standard_normal(8)[a]
    effect_b = rng.standard_normal(30)[b]
    score = effect_a + effect_b + np.nan_to_num(x[:, 0], nan=1.5) - np.nan_to_num(x[:, 1])
    X = pd.DataFrame({"a": pd.Categorical([f"a{v}" for v in a]),
                      "b": pd.Categorical([f"b{v}" for v in b]),
                      "x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2]})
    return X, score + 0.5 * rng.standard_normal(n)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_close_to_scikit_learn_hist_gradient_boosting(task):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    X, score = _hgb_table(3000, 3)
    X_test, score_test = _hgb_table(2000, 4)
    common = dict(max_leaf_nodes=15, learning_rate=0.1, min_samples_leaf=20)
    if task == "classification":
        y, y_test = (score > 0).astype(int), (score_test > 0).astype(int)
        ours = GradientBoostingClassifier(n_estimators=60, **common)
        theirs = HistGradientBoostingClassifier(max_iter=60, categorical_features="from_dtype",
                                                early_stopping=False, **common)
    else:
        y, y_test = score, score_test
        ours = GradientBoostingRegressor(n_estimators=60, **common)
        theirs = HistGradientBoostingRegressor(max_iter=60, categorical_features="from_dtype",
                                               early_stopping=False, **common)
    ours_score = ours.fit(X, y).score(X_test, y_test)
    theirs_score = theirs.fit(X, y).score(X_test, y_test)
    assert ours_score > theirs_score - 0.03, (ours_score, theirs_score)


def _cap_body(comm, codes):
    a, b = block_range(len(codes), comm.size, comm.rank)
    edges = fit_bin_edges(codes[a:b, None], 8, comm=comm, n_categories=[12])
    return edges.code_bins[0]


@pytest.mark.threads(1, 3)
def test_category_cap_keeps_the_most_frequent(spmd):
    # 12 categories, 8 bins: the 7 most frequent keep their bin, the rest share the 8th
    counts = [5, 1, 9, 9, 2, 7, 3, 3, 8, 1, 6, 4]
    codes = np.repeat(np.arange(12), counts).astype(float)
    codes = np.random.default_rng(0).permutation(codes)
    kept = [0, 2, 3, 5, 8, 10, 11]                    # 9, 9, 8, 7, 6, 5, 4; 3 tie loses
    want = np.full(12, 7)
    want[kept] = np.arange(7)
    for got in spmd(_cap_body, codes):
        assert_array_equal(got, want)
    # a model with more categories than bins still fits, and the others share a side
    X = codes[:, None]
    y = (codes % 2).astype(int)
    tree = DecisionTreeClassifier(max_bins=8, categorical_features=[0]).fit(X, y)
    leaf = tree.apply(np.array([[1.0], [4.0], [6.0], [7.0], [9.0]]))
    assert len(set(leaf.tolist())) == 1


def test_missing_bin_is_the_last():
    X = np.array([[0.0], [1.0], [np.nan], [2.0]])
    edges = fit_bin_edges(X, 255)
    assert isinstance(edges, BinEdges) and edges.missing.tolist() == [True]
    assert edges.n_bins.tolist() == [4]
    assert edges.n_value_bins.tolist() == [3]


@pytest.mark.parametrize("cls", [DecisionTreeClassifier, RandomForestClassifier,
                                 GradientBoostingClassifier])
def test_infinity_refused(cls):
    X, y, _ = _table(60)
    X.loc[X.index[3], "x0"] = np.inf
    with pytest.raises(mpiml.MpimlError, match="inf"):
        cls().fit(X, y)
    with pytest.raises(mpiml.MpimlError, match="inf"):
        cls().fit(np.array([[np.inf], [0.0], [1.0], [2.0]]), [0, 1, 0, 1])


def test_version_1_gbdt_file_still_predicts():
    from pathlib import Path
    data = Path(__file__).parent / "data"
    inputs = np.load(data / "v1_inputs.npz")
    model = mpiml.load(data / "v1_gbdt.mpiml")
    assert_array_equal(model.predict_proba(inputs["X"]), inputs["gbdt"])
