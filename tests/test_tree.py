"""Decision trees and the shared tree core: identity over ranks and backends, hand-checked
splits, accuracy against scikit-learn, persistence, bad parameters."""

import hashlib
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mpiml
from mpiml.errors import InvalidParameterError
from mpiml.models.tree import (
    ClassificationCriterion,
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    bin_data,
    classification_channels,
    fit_bin_edges,
    grow_tree,
)

pytestmark = pytest.mark.timeout(120)


def _data(n=263, n_features=5, n_classes=3, seed=0, sort_labels=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    X[:, 1] = np.round(X[:, 1] * 2)          # a feature with few distinct values
    score = X[:, 0] + 0.5 * X[:, 2] - 0.7 * X[:, 3] ** 2 + 0.3 * rng.standard_normal(n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    if sort_labels:
        order = np.argsort(y, kind="stable")
        X, y = X[order], y[order]
    return X, y


def shard(comm, n, empty_rank=False):
    """This rank's contiguous slice; with ``empty_rank`` rank 1 (or 0 on one rank) holds none."""
    from mpiml.comm.partition import block_range
    if not empty_rank:
        return slice(*block_range(n, comm.size, comm.rank))
    if comm.size == 1:
        return slice(0, n)
    holders = [r for r in range(comm.size) if r != 1]
    if comm.rank == 1:
        start = block_range(n, len(holders), 1)[0]
        return slice(start, start)
    return slice(*block_range(n, len(holders), holders.index(comm.rank)))


def fingerprint(model):
    """sha256 of every saved array (names, dtypes, bytes)."""
    _, arrays = model._get_state()
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + a.dtype.str.encode() + a.tobytes())
    return h.hexdigest()


def _fit_body(comm, make, X, y, empty_rank, weights=None):
    rows = shard(comm, len(X), empty_rank)
    model = make().fit(X[rows], y[rows], None if weights is None else weights[rows], comm=comm)
    return fingerprint(model), model.tree_.arrays()


CASES = {
    "gini": lambda: DecisionTreeClassifier(max_depth=6, random_state=0),
    "entropy-sqrt": lambda: DecisionTreeClassifier(criterion="entropy", max_features="sqrt",
                                                   min_samples_leaf=3, random_state=7),
    "leafwise": lambda: DecisionTreeClassifier(max_leaf_nodes=9, class_weight="balanced",
                                               random_state=0),
    "feature-parallel": lambda: DecisionTreeClassifier(max_depth=5, parallel="feature",
                                                       random_state=0),
    "regressor": lambda: DecisionTreeRegressor(max_depth=5, min_impurity_decrease=1e-3,
                                               random_state=0),
    "regressor-feature": lambda: DecisionTreeRegressor(max_leaf_nodes=12, parallel="feature",
                                                       random_state=0),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("layout", ["blocks", "sorted-labels", "empty-rank"])
def test_tree_identical_for_any_rank_count(spmd, case, layout):
    X, y = _data(sort_labels=layout == "sorted-labels")
    weights = None
    if case.startswith("regressor"):
        y = X[:, 0] * 3.0 + np.sin(X[:, 2]) + 0.1 * y
        weights = np.linspace(0.5, 2.0, len(X))
    make = CASES[case]
    want_hash, want = fingerprint(make().fit(X, y, weights)), make().fit(X, y, weights).tree_.arrays()
    results = spmd(_fit_body, make, X, y, layout == "empty-rank", weights)
    for got_hash, got in results:
        for name in want:
            assert_array_equal(got[name], want[name], err_msg=name)
        assert got_hash == want_hash


def test_toy_split_and_entropy_gain_by_hand():
    # x = 1..6, y = 0 0 1 0 1 1: "x <= 2.5" and "x <= 4.5" both leave one pure side and a
    # 1:3 side, the best entropy decrease; the tie goes to the lower threshold.
    X = np.arange(1.0, 7.0).reshape(-1, 1)
    y = np.array([0, 0, 1, 0, 1, 1])
    model = DecisionTreeClassifier(criterion="entropy", max_depth=1).fit(X, y)
    tree = model.tree_
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert tree.feature[0] == 0
    assert tree.threshold[0] == 2.5
    assert_allclose(tree.impurity[0], 1.0)
    assert_allclose(tree.gain[0], 6 * 1.0 - 4 * h)          # weighted entropy decrease, bits
    assert_allclose(tree.impurity[tree.right[0]], h)
    assert_array_equal(tree.n_node_samples[[1, 2]], [2, 4])
    assert_allclose(model.predict_proba([[2.0], [3.0]]), [[1, 0], [0.25, 0.75]])
    assert_array_equal(model.predict([[2.0], [3.0]]), [0, 1])
    # Gini: 6 * 0.5 - 4 * (1 - 1/16 - 9/16) = 1.5
    gini = DecisionTreeClassifier(max_depth=1).fit(X, y).tree_
    assert gini.threshold[0] == 2.5
    assert_allclose(gini.gain[0], 1.5)


def test_core_grower_directly():
    X, y = _data(n=101, n_classes=2)
    edges = fit_bin_edges(X, 16)
    assert edges.n_bins.max() <= 16
    binned = bin_data(X, edges)
    assert binned.shape == (X.shape[1], X.shape[0]) and binned.dtype == np.uint8
    channels, weighted, scale = classification_channels(y, 2)
    tree, leaves = grow_tree(binned, channels, ClassificationCriterion("gini", 2), edges,
                             max_depth=3, return_leaves=True)
    assert_array_equal(leaves, tree.apply(X))       # raw-X traversal matches the bins
    assert tree.max_depth <= 3
    assert tree.n_node_samples[0] == len(X)


def _score_body(comm, model, X, y):
    rows = shard(comm, len(X), empty_rank=True)
    return model.score(X[rows], y[rows], comm=comm)


def test_score_is_exact_over_all_rows(spmd):
    X, y = _data()
    model = DecisionTreeClassifier(max_depth=3).fit(X, y)
    want = float(np.mean(model.predict(X) == y))
    assert all(s == want for s in spmd(_score_body, model, X, y))


def _split(dataset):
    from sklearn.model_selection import train_test_split
    return train_test_split(*dataset(return_X_y=True), test_size=0.3, random_state=0)


@pytest.mark.parametrize("name", ["breast_cancer", "iris", "wine"])
def test_classifier_accuracy_close_to_scikit_learn(name):
    from sklearn import datasets, tree
    Xtr, Xte, ytr, yte = _split(getattr(datasets, f"load_{name}"))
    ours = DecisionTreeClassifier(max_depth=4, random_state=0).fit(Xtr, ytr).score(Xte, yte)
    ref = tree.DecisionTreeClassifier(max_depth=4, random_state=0).fit(Xtr, ytr).score(Xte, yte)
    assert ours >= ref - 0.06


def test_regressor_r2_close_to_scikit_learn():
    from sklearn import datasets, tree
    Xtr, Xte, ytr, yte = _split(datasets.load_diabetes)
    ours = DecisionTreeRegressor(max_depth=3).fit(Xtr, ytr).score(Xte, yte)
    ref = tree.DecisionTreeRegressor(max_depth=3).fit(Xtr, ytr).score(Xte, yte)
    assert ours >= ref - 0.05


def test_fitted_attributes():
    X, y = _data()
    model = DecisionTreeClassifier(max_depth=4).fit(X, np.array(["a", "b", "c"])[y])
    assert_array_equal(model.classes_, ["a", "b", "c"])
    assert model.get_depth() == 4 and 2 <= model.get_n_leaves() <= 16
    assert_allclose(model.feature_importances_.sum(), 1.0)
    assert model.feature_importances_[0] > model.feature_importances_[4]
    assert set(model.predict(X)) <= {"a", "b", "c"}
    assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)


@pytest.mark.parametrize("make", [lambda: DecisionTreeClassifier(max_depth=5),
                                  lambda: DecisionTreeRegressor(max_leaf_nodes=10)])
def test_save_load_predict(tmp_path, make):
    X, y = _data()
    model = make().fit(X, y)
    path = tmp_path / "tree.mpiml"
    mpiml.save(model, path)
    for mmap in (False, True):
        loaded = mpiml.load(path, mmap=mmap)
        assert type(loaded) is type(model)
        assert_array_equal(loaded.predict(X), model.predict(X))
        assert loaded.get_depth() == model.get_depth()
        assert_array_equal(loaded.feature_importances_, model.feature_importances_)
        if hasattr(model, "predict_proba"):
            assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("params, name, value", [
    ({"max_depth": 0}, "max_depth", "0"),
    ({"max_features": 1.5}, "max_features", "1.5"),
    ({"max_features": "half"}, "max_features", "'half'"),
    ({"min_samples_leaf": 0}, "min_samples_leaf", "0"),
    ({"max_bins": 300}, "max_bins", "300"),
    ({"criterion": "mse"}, "criterion", "'mse'"),
    ({"parallel": "trees"}, "parallel", "'trees'"),
    ({"random_state": -1}, "random_state", "-1"),
    ({"class_weight": "heavy"}, "class_weight", "'heavy'"),
    ({"class_weight": [1, 2]}, "class_weight", "[1, 2]"),
])
def test_invalid_parameters(params, name, value):
    X, y = _data(n=20)
    with pytest.raises(InvalidParameterError, match=name) as info:
        DecisionTreeClassifier(**params).fit(X, y)
    assert value in str(info.value)
    # the same check without data, as apps/train.py runs it before reading any row
    with pytest.raises(InvalidParameterError, match=name):
        DecisionTreeClassifier(**params)._check_params()


def test_regressor_criterion():
    X, y = _data(n=50)
    model = DecisionTreeRegressor(criterion="squared_error", max_depth=2).fit(X, y.astype(float))
    assert model.get_depth() == 2
    with pytest.raises(InvalidParameterError, match="criterion.*'gini'"):
        DecisionTreeRegressor(criterion="gini").fit(X, y.astype(float))


def _bad_parameter_body(comm, X, y):
    rows = shard(comm, len(X))
    try:
        DecisionTreeClassifier(max_depth=0).fit(X[rows], y[rows], comm=comm)
    except mpiml.MpimlError as exc:
        return str(exc), getattr(exc, "collective", False)
    return None, False


def test_bad_parameter_is_one_decision_over_all_ranks(spmd):
    """Every rank raises, marked as decided together (apps print it once, no abort)."""
    X, y = _data(n=30)
    for message, collective in spmd(_bad_parameter_body, X, y):
        assert "max_depth" in message and collective


@pytest.mark.parametrize("make", [DecisionTreeClassifier, DecisionTreeRegressor])
def test_unfitted_model_says_so(make):
    for method in ("predict", "predict_proba", "apply"):
        if hasattr(make, method):
            with pytest.raises(mpiml.MpimlError, match="not fitted"):
                getattr(make(), method)(np.zeros((2, 3)))


def test_values_near_the_float_maximum():
    """Bin edges between huge values stay finite (no overflow of the midpoint)."""
    X, y = _data(n=60, n_classes=2)
    X[:, 4] = np.where(y == 1, 1.7e308, 1.6e308)
    edges = fit_bin_edges(X, 255)
    assert np.isfinite(edges.edges[4]).all() and edges.n_bins[4] == 2
    model = DecisionTreeClassifier(max_depth=1).fit(X, y)
    assert model.tree_.feature[0] == 4 and model.score(X, y) == 1.0


def test_regression_target_too_large():
    X, y = _data(n=40)
    with pytest.raises(mpiml.MpimlError, match="y is too large"):
        DecisionTreeRegressor().fit(X, y * 1e160)


def test_predict_checks_features():
    X, y = _data(n=30)
    model = DecisionTreeClassifier(max_depth=2).fit(X, y)
    with pytest.raises(mpiml.MpimlError, match="features"):
        model.predict(X[:, :3])


@pytest.mark.parametrize("case", ["gini", "entropy-sqrt", "regressor"])
def test_histogram_paths_agree(spmd, monkeypatch, case):
    """Every open node keeps its histogram (subtraction everywhere, histograms rather than
    the local kernel on one rank) and histograms are built one node at a time: the same
    tree as the default settings."""
    from mpiml.models.tree import _grower
    X, y = _data(n=307)
    if case == "regressor":
        y = X[:, 0] * 3.0 + np.sin(X[:, 2])
    make = CASES[case]
    want_hash = fingerprint(make().fit(X, y))
    default = spmd(_fit_body, make, X, y, False)
    monkeypatch.setattr(_grower, "_KEEP_HIST_ROWS", 0)
    monkeypatch.setattr(_grower, "_HIST_BUDGET", 1)
    tight = spmd(_fit_body, make, X, y, False)
    assert all(h == want_hash for h, _ in default + tight)


# segments shorter and longer than the rows the kernels prefetch ahead, at both ends
_SEGMENTS = [(17, 17), (17, 18), (17, 21), (0, 16), (5, 22), (283, 301), (17, 250), (0, 301)]


@pytest.mark.parametrize("segment", _SEGMENTS)
@pytest.mark.parametrize("row_major", [False, True])
@pytest.mark.parametrize("n_channels", [1, 2, 3, 5])
def test_histogram_kernel_matches_numpy(n_channels, row_major, segment):
    from mpiml.models.tree._kernels import build_histograms, build_histograms_rows
    rng = np.random.default_rng(n_channels)
    n, n_features, n_bins = 301, 7, 13
    binned = rng.integers(0, n_bins, (n_features, n), dtype=np.uint8)
    channels = rng.integers(-50, 50, (n, n_channels))
    rows = rng.permutation(n).astype(np.int64)
    features = (np.arange(n_features, dtype=np.int64) if row_major
                else np.array([6, 0, 3, 1, 5, 2], dtype=np.int64))
    out = np.zeros((len(features), 2, n_bins, n_channels), dtype=np.int64)
    start, stop = segment
    if row_major:
        build_histograms_rows(np.ascontiguousarray(binned.T), channels, rows, start, stop, out, 1)
    else:
        build_histograms(binned, channels, rows, start, stop, features, out, 1)
    for j, f in enumerate(features):
        want = np.zeros((n_bins, n_channels), dtype=np.int64)
        np.add.at(want, binned[f, rows[start:stop]], channels[rows[start:stop]])
        assert_array_equal(out[j, 1], want)
    assert not out[:, 0].any()


# -- packed prediction ------------------------------------------------------------------

def _hand_tree(feature, threshold, left, right, value):
    n = len(feature)
    depth = np.zeros(n, np.int64)
    for i in range(n):
        for child in (left[i], right[i]):
            if child >= 0:
                depth[child] = depth[i] + 1
    from mpiml.models.tree import Tree
    return Tree(feature=feature, threshold=threshold, threshold_bin=np.zeros(n), left=left,
                right=right, value=np.asarray(value, float), n_node_samples=np.ones(n),
                impurity=np.zeros(n), gain=np.zeros(n), depth=depth)


def _naive_sum(trees, X):
    out = np.zeros((X.shape[0], trees[0].n_outputs))
    for tree in trees:
        out += tree.predict(X)
    return out


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("threads", [1, 3])
def test_packed_forest_equals_tree_by_tree_walks(wide, threads, monkeypatch):
    """Binned-threshold walks equal ``x <= threshold`` walks bit for bit: rows exactly on
    thresholds, +-inf, NaN, -0.0, unused features, trees of one leaf, any thread count."""
    from mpiml.models.tree import PackedTrees, _tree, predict_trees, stack_trees
    X, y = _data(n=300, n_features=6)
    trees = [DecisionTreeRegressor(max_depth=d, random_state=s).fit(X[s::2], y[s::2].astype(float))
             .tree_ for s in range(2) for d in (1, 3, None)]
    trees.append(_hand_tree(np.array([-1]), np.array([-2.0]), np.array([-1]), np.array([-1]),
                            [[7.5]]))                                    # a single leaf
    trees.append(_hand_tree(np.array([4, -1, 5, -1, -1]), np.array([0.0, -2, -0.0, -2, -2]),
                            np.array([1, -1, 3, -1, -1]), np.array([2, -1, 4, -1, -1]),
                            [[0.0], [1.0], [0.0], [2.0], [4.0]]))       # splits on +-0.0
    arrays, offsets = stack_trees(trees)
    thresholds = arrays["threshold"][arrays["feature"] >= 0]
    probe = np.random.default_rng(3).standard_normal((500, 6))
    probe[:50, 0] = thresholds[:50] if thresholds.size >= 50 else probe[:50, 0]
    probe[50:60] = np.inf
    probe[60:70] = -np.inf
    probe[70:80, 2] = np.nan
    probe[80:90, 4:] = -0.0
    probe[90:100, 4:] = 0.0
    monkeypatch.setattr(_tree, "_MIN_WORK_PER_THREAD", 1)
    packed = PackedTrees(arrays, offsets, wide=wide)
    assert packed.nodes.dtype.itemsize == (16 if wide else 8)
    got = predict_trees(arrays, offsets, probe, packed=packed, threads=threads)
    assert_array_equal(got, _naive_sum(trees, probe))


def test_packed_forest_many_outputs_and_thresholds():
    """Three values per leaf (wider than one node slot), and a chain of 300 distinct
    thresholds on one feature (16-bit bins)."""
    from mpiml.models.tree import PackedTrees, predict_trees, stack_trees
    rng = np.random.default_rng(1)
    X, y = _data(n=400, n_classes=3)
    tree = DecisionTreeClassifier(random_state=0).fit(X, y).tree_
    cuts = np.sort(rng.standard_normal(300))
    n = 2 * cuts.size + 1                      # inner node 2k tests cut k; its left is a leaf
    inner = np.arange(0, n - 1, 2)
    feature = np.full(n, -1)
    feature[inner] = 0
    threshold = np.full(n, -2.0)
    threshold[inner] = cuts
    left = np.full(n, -1)
    left[inner] = inner + 1
    right = np.full(n, -1)
    right[inner] = inner + 2
    value = np.repeat(np.arange(n, dtype=float)[:, None], 3, axis=1) / n
    chain = _hand_tree(feature, threshold, left, right, value)
    trees = [tree, chain, tree]
    arrays, offsets = stack_trees(trees)
    packed = PackedTrees(arrays, offsets)
    assert packed.bin_dtype == np.uint16 and packed.n_outputs == 3
    probe = rng.standard_normal((700, 5))
    probe[:300, 0] = cuts
    assert_array_equal(predict_trees(arrays, offsets, probe, packed=packed), _naive_sum(trees, probe))


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2"])
def test_packed_forest_rejects_bad_thread_counts(threads, monkeypatch):
    from mpiml.models.tree import PackedTrees, stack_trees
    X, y = _data()
    packed = PackedTrees(*stack_trees([DecisionTreeClassifier(max_depth=2).fit(X, y).tree_]))
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        packed.predict(X, np.zeros((len(X), 3)), threads)
    monkeypatch.setenv("MPIML_PREDICT_THREADS", "many")
    with pytest.raises(ValueError, match="MPIML_PREDICT_THREADS"):
        packed.predict(X, np.zeros((len(X), 3)))
