"""Best-first growth on several ranks splits leaves ahead of their turn
(``_Grower._grow_best_first_ahead``): the tree, its leaf rows and its node ids are those
of one best leaf per step, with fewer collective steps."""

import threading

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mpiml.comm.partition import block_range
from mpiml.models.tree import (ClassificationCriterion, RegressionCriterion, TREE_FIELDS,
                               bin_data, classification_channels, fit_bin_edges, grow_tree,
                               regression_channels)
from mpiml.models.tree import _grower

pytestmark = pytest.mark.timeout(120)


def _xor_grid(n_side=8, copies=3):
    """A balanced XOR: after the first split both children tie on every candidate."""
    g = np.arange(n_side, dtype=float) - (n_side - 1) / 2
    a, b = np.meshgrid(g, g)
    X = np.tile(np.column_stack([a.ravel(), b.ravel()]), (copies, 1))
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(np.int64)
    y[:n_side] = 1 - y[:n_side]   # one row's flip makes the first split unique
    return X, y


def _mixed(n=3000, seed=0):
    """Numeric features with missing values, a categorical one, a duplicated column."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    X[:, 4] = rng.integers(0, 9, n)                        # categorical codes
    X[:, 3] = X[:, 0]                                      # equal gains on two features
    X[rng.random(n) < 0.15, 1] = np.nan
    effect = np.array([0.0, 2, -1, 0.5, 3, -2, 1, 0, -3])
    y = X[:, 0] + np.nan_to_num(X[:, 1], nan=1.5) * X[:, 2] + effect[X[:, 4].astype(int)]
    return X, y + 0.3 * rng.standard_normal(n)


CASES = {
    "xor-tie-3-leaves": dict(data=_xor_grid, task="gini", leaves=3),
    "xor-tie-5-leaves": dict(data=_xor_grid, task="gini", leaves=5),
    "mixed-regression-31": dict(data=_mixed, task="regression", leaves=31, categorical=[4]),
    "mixed-entropy-12-depth-4": dict(data=lambda: _mixed(seed=1), task="entropy", leaves=12,
                                     categorical=[4], max_depth=4),
    "mixed-regression-feature-mode": dict(data=_mixed, task="regression", leaves=17,
                                          categorical=[4], mode="feature"),
}


def _grow_body(comm, case):
    spec = CASES[case]
    X, y = spec["data"]()
    mode = spec.get("mode", "data")
    a, b = block_range(len(X), comm.size, comm.rank) if mode == "data" else (0, len(X))
    n_categories = [0] * X.shape[1]
    for j in spec.get("categorical", []):
        n_categories[j] = 9
    edges = fit_bin_edges(X[a:b], 32, comm=comm if mode == "data" else None,
                          n_categories=n_categories)
    binned = bin_data(X[a:b], edges)
    if spec["task"] == "regression":
        channels, scales = regression_channels(y[a:b], comm=comm if mode == "data" else None)
        criterion = RegressionCriterion(scales)
    else:
        if y.dtype.kind == "f":
            y = (y > np.median(y)).astype(np.int64)
        channels = classification_channels(y[a:b], 2, comm=comm if mode == "data" else None)[0]
        criterion = ClassificationCriterion(spec["task"], 2)
    tree, segments = grow_tree(binned, channels, criterion, edges, comm=comm, mode=mode,
                               max_leaf_nodes=spec["leaves"], max_depth=spec.get("max_depth"),
                               min_samples_leaf=2, return_leaves=True, return_segments=True)
    rows, starts, stops, leaves = segments
    leaf_rows = {int(leaf): sorted((a + rows[s:e]).tolist())
                 for s, e, leaf in zip(starts, stops, leaves)}
    return {name: getattr(tree, name) for name in TREE_FIELDS}, leaf_rows


class _StepCounter:
    """Counts ``_Grower._step`` calls per rank (thread ranks share one counter, MPI ranks
    each have their own); every rank makes the same steps."""

    def __init__(self):
        self.by_rank = {}
        self.lock = threading.Lock()

    @property
    def steps(self):
        counts = set(self.by_rank.values())
        assert len(counts) <= 1, self.by_rank
        return counts.pop() if counts else 0

    def reset(self):
        self.by_rank = {}


def _counting(monkeypatch, counter):
    step = _grower._Grower._step

    def counted(self, chosen):
        rank = 0 if self.comm is None else self.comm.rank
        with counter.lock:
            counter.by_rank[rank] = counter.by_rank.get(rank, 0) + 1
        return step(self, chosen)
    monkeypatch.setattr(_grower._Grower, "_step", counted)


def _assert_same_tree(got, want):
    fields, leaf_rows = got
    want_fields, want_rows = want
    for name in TREE_FIELDS:
        assert_array_equal(fields[name], want_fields[name], err_msg=name)
    assert leaf_rows.keys() == want_rows.keys()
    for leaf in leaf_rows:
        assert leaf_rows[leaf] == want_rows[leaf], leaf


@pytest.mark.threads(2, 3)
@pytest.mark.parametrize("case", sorted(CASES))
def test_ahead_growth_gives_the_one_leaf_per_step_tree(spmd, monkeypatch, case):
    counter = _StepCounter()
    _counting(monkeypatch, counter)
    got = spmd(_grow_body, case)
    ahead_steps = counter.steps
    counter.reset()
    monkeypatch.setattr(_grower._Grower, "_ahead", lambda self: False)
    want = spmd(_grow_body, case)
    for g, w in zip(got, want):
        _assert_same_tree(g, w)
    n_splits = int((want[0][0]["left"] >= 0).sum())
    assert n_splits >= min(2, CASES[case]["leaves"] - 1)
    assert counter.steps == n_splits
    if case.startswith("xor-tie-3"):
        # the two tied children: the first made (the left one) is split, not the other
        fields = want[0][0]
        assert fields["left"][1] >= 0 and fields["left"][2] < 0
    if CASES[case]["leaves"] >= 12 and spmd.size > 1:   # one rank grows one leaf per step
        assert ahead_steps < counter.steps


@pytest.mark.threads(2)
def test_ahead_growth_is_not_used_with_feature_subsets(spmd, monkeypatch):
    # a node's feature subset is drawn from its id, which is known only in turn
    used = []
    ahead = _grower._Grower._grow_best_first_ahead
    monkeypatch.setattr(_grower._Grower, "_grow_best_first_ahead",
                        lambda self: used.append(1) or ahead(self))

    def body(comm, max_features):
        X, y = _mixed()
        a, b = block_range(len(X), comm.size, comm.rank)
        edges = fit_bin_edges(X[a:b], 32, comm=comm)
        channels, scales = regression_channels(y[a:b], comm=comm)
        grow_tree(bin_data(X[a:b], edges), channels, RegressionCriterion(scales), edges, comm=comm,
                  max_leaf_nodes=8, max_features=max_features)

    spmd(body, 2)
    assert not used
    spmd(body, None)
    assert bool(used) == (spmd.size > 1)   # on one rank growth is one leaf per step
