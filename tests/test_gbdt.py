"""Gradient boosting: bit-identical models for any rank count and backend, resume,
persistence, accuracy against scikit-learn, bad parameters."""

import hashlib

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mpiml
from util import rank_rows
from mpiml.comm.partition import block_range
from mpiml.errors import InvalidParameterError
from mpiml.io import read_manifest
from mpiml.models.gbdt import GradientBoostingClassifier, GradientBoostingRegressor

pytestmark = pytest.mark.timeout(120)

SMALL = dict(n_estimators=6, max_leaf_nodes=7, min_samples_leaf=5, random_state=3)


def _classification(n=263, n_features=5, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    X[:, 0] = np.round(X[:, 0], 1)  # ties in a feature
    logits = X[:, :n_classes] @ rng.normal(size=(n_classes, n_classes)) + 0.5 * X[:, -1:]
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    return X, y


def _regression(n=263, n_features=5, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    y = 3.0 * X[:, 0] - 2.0 * X[:, 1] ** 2 + np.sin(3 * X[:, 2]) + 0.1 * rng.normal(size=n)
    return X, 1e3 * y


def _fingerprint(model, X_test):
    """Every array of the model's saved state, their sha256, and its predictions."""
    meta, arrays = model._get_state()
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    out = {"sha256": digest.hexdigest(), "arrays": arrays, "n_iter": model.n_iter_}
    if hasattr(model, "predict_proba"):
        out["predict"] = model.predict_proba(X_test)
    else:
        out["predict"] = model.predict(X_test)
    return out


def _assert_same(got, want):
    assert got["n_iter"] == want["n_iter"]
    assert sorted(got["arrays"]) == sorted(want["arrays"])
    for name in want["arrays"]:
        assert_array_equal(got["arrays"][name], want["arrays"][name], err_msg=name)
    assert_array_equal(got["predict"], want["predict"])
    assert got["sha256"] == want["sha256"]


CASES = {
    "binary": (GradientBoostingClassifier, _classification, dict(SMALL)),
    "binary-sorted-labels": (GradientBoostingClassifier, _classification, dict(SMALL)),
    "multiclass-subsample-validation": (
        GradientBoostingClassifier, lambda: _classification(n_classes=3),
        dict(SMALL, subsample=0.7, validation_fraction=0.2, l2_regularization=1.0)),
    "regression-weighted-depthwise": (
        GradientBoostingRegressor, _regression,
        dict(SMALL, max_leaf_nodes=None, max_depth=3, learning_rate=0.3)),
    "regression-absolute-weighted-subsample": (
        GradientBoostingRegressor, _regression,
        dict(SMALL, loss="absolute_error", subsample=0.8, learning_rate=0.5)),
    "regression-early-stop": (
        GradientBoostingRegressor, _regression,
        dict(SMALL, n_estimators=40, learning_rate=0.9, validation_fraction=0.3,
             n_iter_no_change=2, tol=1e3)),
    # the split search on exact fixed-point sums instead of quantized gradients
    "binary-exact-gradients": (
        GradientBoostingClassifier, _classification, dict(SMALL, quantize_gradients=False)),
    "multiclass-subsample-validation-exact-gradients": (
        GradientBoostingClassifier, lambda: _classification(n_classes=3),
        dict(SMALL, subsample=0.7, validation_fraction=0.2, l2_regularization=1.0,
             quantize_gradients=False)),
    "regression-weighted-depthwise-exact-gradients": (
        GradientBoostingRegressor, _regression,
        dict(SMALL, max_leaf_nodes=None, max_depth=3, learning_rate=0.3,
             quantize_gradients=False)),
}


def _case_data(case):
    cls, make, params = CASES[case]
    X, y = make()
    if case == "binary-sorted-labels":
        order = np.argsort(y, kind="stable")
        X, y = X[order], y[order]
    weight = None
    if "weighted" in case:
        weight = np.random.default_rng(5).uniform(0.1, 3.0, size=len(y))
    X_test = np.random.default_rng(9).normal(size=(50, X.shape[1]))
    return cls, params, X, y, weight, X_test


def _fit_body(comm, case, empty_rank):
    cls, params, X, y, weight, X_test = _case_data(case)
    a, b = rank_rows(comm, len(X), empty_rank)
    model = cls(**params).fit(X[a:b], y[a:b], None if weight is None else weight[a:b], comm=comm)
    return _fingerprint(model, X_test)


@pytest.mark.threads(1, 2, 3, 4)
@pytest.mark.parametrize("empty_rank", [False, True], ids=["blocks", "empty-rank"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bit_identical_for_any_rank_count(spmd, case, empty_rank):
    cls, params, X, y, weight, X_test = _case_data(case)
    reference = _fingerprint(cls(**params).fit(X, y, weight), X_test)
    results = spmd(_fit_body, case, empty_rank)
    for got in results:
        _assert_same(got, reference)
    if case == "regression-early-stop":
        assert reference["n_iter"] < params["n_estimators"]


def _save_body(comm, path, case):
    cls, params, X, y, weight, X_test = _case_data(case)
    a, b = rank_rows(comm, len(X), empty_rank=True)
    path = comm.bcast(path)
    model = cls(**params).fit(X[a:b], y[a:b], None if weight is None else weight[a:b], comm=comm)
    mpiml.save(model, path, comm=comm)
    return read_manifest(path)["payload_sha256"]


@pytest.mark.threads(1, 3)
@pytest.mark.parametrize("case", ["multiclass-subsample-validation", "regression-weighted-depthwise"])
def test_saved_payload_checksum_for_any_rank_count(spmd, tmp_path, case):
    cls, params, X, y, weight, X_test = _case_data(case)
    mpiml.save(cls(**params).fit(X, y, weight), tmp_path / "serial.mpiml")
    want = read_manifest(tmp_path / "serial.mpiml")["payload_sha256"]
    assert spmd(_save_body, str(tmp_path / "ranks.mpiml"), case) == [want] * spmd.size


def _three_channel_body(comm):
    cls, params, X, y, weight, X_test = _case_data("multiclass-subsample-validation-exact-gradients")
    a, b = rank_rows(comm, len(X), empty_rank=True)
    model = cls(**params).fit(X[a:b], y[a:b], comm=comm)
    return _fingerprint(model, X_test)


@pytest.mark.threads(1, 3)
def test_three_channels_beyond_packing_range(spmd, monkeypatch):
    """More rows than the packed hessian/count channel allows: [g, h, count] channels,
    still identical for any rank count, and the same trees up to hessian rounding."""
    from mpiml.models.gbdt import criterion
    assert criterion.channel_layout(10 ** 9, False) == -1
    assert criterion.channel_layout(10 ** 6, False) == 20
    case = "multiclass-subsample-validation-exact-gradients"
    packed = _fit_body(mpiml.comm.resolve_comm(None), case, False)
    monkeypatch.setattr(criterion, "_MIN_HESSIAN_BITS", 63)
    cls, params, X, y, weight, X_test = _case_data(case)
    reference = _fingerprint(cls(**params).fit(X, y), X_test)
    for got in spmd(_three_channel_body):
        _assert_same(got, reference)
    assert_allclose(reference["predict"], packed["predict"], atol=1e-6)


def _resume_body(comm, path, case):
    cls, params, X, y, weight, X_test = _case_data(case)
    a, b = rank_rows(comm, len(X))
    path = comm.bcast(path)  # under MPI every process has its own tmp_path
    full = cls(**dict(params, n_estimators=7)).fit(X[a:b], y[a:b], comm=comm,
                                                   checkpoint_every=3, checkpoint_path=path)
    saved_rounds = mpiml.load(path).n_iter_
    resumed = cls(**dict(params, n_estimators=7)).fit(X[a:b], y[a:b], comm=comm, resume_from=path)
    return _fingerprint(full, X_test), _fingerprint(resumed, X_test), saved_rounds


@pytest.mark.threads(1, 3)
@pytest.mark.parametrize("case", ["binary", "multiclass-subsample-validation"])
def test_resume_equals_uninterrupted(spmd, tmp_path, case):
    results = spmd(_resume_body, str(tmp_path / "checkpoint.mpiml"), case)
    for full, resumed, saved_rounds in results:
        assert saved_rounds == 6
        _assert_same(resumed, full)


def test_resume_on_other_rank_count_and_longer_run(tmp_path):
    cls, params, X, y, weight, X_test = _case_data("binary")
    path = str(tmp_path / "four.mpiml")
    cls(**dict(params, n_estimators=4)).fit(X, y)
    mpiml.save(cls(**dict(params, n_estimators=4)).fit(X, y), path)
    uninterrupted = _fingerprint(cls(**dict(params, n_estimators=9)).fit(X, y), X_test)

    def body(comm):
        a, b = rank_rows(comm, len(X))
        model = cls(**dict(params, n_estimators=9)).fit(X[a:b], y[a:b], comm=comm,
                                                        resume_from=path)
        return _fingerprint(model, X_test)

    for got in mpiml.run(body, threads=3):
        _assert_same(got, uninterrupted)


def test_resume_rejects_other_parameters(tmp_path):
    X, y = _classification()
    path = str(tmp_path / "m.mpiml")
    mpiml.save(GradientBoostingClassifier(**SMALL).fit(X, y), path)
    with pytest.raises(InvalidParameterError, match="learning_rate"):
        GradientBoostingClassifier(**dict(SMALL, learning_rate=0.5)).fit(X, y, resume_from=path)
    with pytest.raises(InvalidParameterError, match="GradientBoostingRegressor"):
        GradientBoostingRegressor(**SMALL).fit(X, y.astype(float), resume_from=path)


@pytest.mark.parametrize("case", ["binary", "multiclass-subsample-validation",
                                  "regression-weighted-depthwise"])
def test_save_load_predict(tmp_path, case):
    cls, params, X, y, weight, X_test = _case_data(case)
    model = cls(**params).fit(X, y, weight)
    path = tmp_path / "model.mpiml"
    mpiml.save(model, path)
    loaded = mpiml.load(path)
    assert type(loaded) is cls
    assert loaded.get_params() == model.get_params()
    _assert_same(_fingerprint(loaded, X_test), _fingerprint(model, X_test))
    assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    assert loaded.train_loss_ == model.train_loss_
    assert_array_equal(loaded.feature_importances_, model.feature_importances_)
    staged = list(loaded.staged_predict(X_test))
    assert len(staged) == model.n_iter_
    assert_array_equal(staged[-1], model.predict(X_test))
    if cls is GradientBoostingClassifier:
        proba = list(loaded.staged_predict_proba(X_test))[-1]
        assert_array_equal(proba, model.predict_proba(X_test))
        assert_allclose(proba.sum(axis=1), 1.0)


def test_fitted_attributes():
    X, y = _classification(n_classes=3)
    labels = np.array(["ant", "bee", "cat"])[y]
    model = GradientBoostingClassifier(**dict(SMALL, validation_fraction=0.25)).fit(X, labels)
    assert_array_equal(model.classes_, ["ant", "bee", "cat"])
    assert model.n_trees_per_iteration_ == 3 and len(model.trees_) == 3 * model.n_iter_
    assert len(model.train_loss_) == len(model.validation_loss_) == model.n_iter_ + 1
    assert model.train_loss_[-1] < model.train_loss_[0]
    assert_allclose(model.feature_importances_.sum(), 1.0)
    assert set(model.predict(X)) <= {"ant", "bee", "cat"}
    assert all(t.n_leaves <= 7 for t in model.trees_)


def _sklearn_pair(kind):
    from sklearn import datasets
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    common = dict(learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=10)
    if kind == "breast_cancer":
        X, y = datasets.load_breast_cancer(return_X_y=True)
        return X, y, GradientBoostingClassifier(n_estimators=50, random_state=0, **common), \
            HistGradientBoostingClassifier(max_iter=50, early_stopping=False, **common)
    if kind == "wine":
        X, y = datasets.load_wine(return_X_y=True)
        return X, y, GradientBoostingClassifier(n_estimators=50, random_state=0, **common), \
            HistGradientBoostingClassifier(max_iter=50, early_stopping=False, **common)
    X, y = datasets.load_diabetes(return_X_y=True)
    loss = "absolute_error" if kind == "diabetes-absolute" else "squared_error"
    return X, y, GradientBoostingRegressor(n_estimators=50, random_state=0, loss=loss, **common), \
        HistGradientBoostingRegressor(max_iter=50, early_stopping=False, loss=loss, **common)


@pytest.mark.parametrize("kind", ["breast_cancer", "wine", "diabetes", "diabetes-absolute"])
def test_accuracy_close_to_scikit_learn(kind):
    X, y, ours, theirs = _sklearn_pair(kind)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    cut = int(0.7 * len(y))
    ours.fit(X[:cut], y[:cut])
    theirs.fit(X[:cut], y[:cut])
    score, reference = ours.score(X[cut:], y[cut:]), theirs.score(X[cut:], y[cut:])
    assert score >= reference - 0.04, (score, reference)


@pytest.mark.parametrize("params, name", [
    (dict(n_estimators=0), "n_estimators"),
    (dict(n_estimators=-1), "n_estimators"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(max_leaf_nodes=1), "max_leaf_nodes"),
    (dict(max_depth=0), "max_depth"),
    (dict(max_depth=None, max_leaf_nodes=None), "max_leaf_nodes"),
    (dict(min_samples_leaf=0), "min_samples_leaf"),
    (dict(l2_regularization=-1.0), "l2_regularization"),
    (dict(max_bins=1), "max_bins"),
    (dict(max_bins=300), "max_bins"),
    (dict(subsample=1.5), "subsample"),
    (dict(subsample=0.0), "subsample"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(n_iter_no_change=0), "n_iter_no_change"),
    (dict(random_state=-2), "random_state"),
    (dict(loss="hinge"), "loss"),
])
def test_invalid_parameters(params, name):
    X, y = _classification(n=40)
    with pytest.raises(InvalidParameterError, match=name) as info:
        GradientBoostingClassifier(**params).fit(X, y)
    assert repr(list(params.values())[-1]) in str(info.value)


def test_invalid_fit_arguments(tmp_path):
    X, y = _classification(n=40)
    model = GradientBoostingClassifier(n_estimators=2)
    with pytest.raises(InvalidParameterError, match="checkpoint_every"):
        model.fit(X, y, checkpoint_every=-1, checkpoint_path=str(tmp_path / "c"))
    with pytest.raises(InvalidParameterError, match="checkpoint_path"):
        model.fit(X, y, checkpoint_every=2)
    with pytest.raises(mpiml.MpimlError, match="class"):
        model.fit(X, np.zeros(len(X)))
    with pytest.raises(mpiml.MpimlError, match="inf"):   # NaN is a missing value, inf an error
        model.fit(np.full_like(X, np.inf), y)
    with pytest.raises(mpiml.MpimlError, match="not fitted"):
        GradientBoostingRegressor().predict(X)
    fitted = model.fit(X, y)
    with pytest.raises(mpiml.MpimlError, match="features"):
        fitted.predict(X[:, :3])


def _medians_body(comm, values, groups, weights, n_groups):
    a, b = rank_rows(comm, len(values), empty_rank=True)
    from mpiml.models.gbdt._median import group_medians
    return group_medians(comm, values[a:b], groups[a:b], n_groups, weights[a:b])


@pytest.mark.threads(1, 2, 3)
def test_group_medians_match_a_serial_weighted_median(spmd):
    rng = np.random.default_rng(4)
    values = np.round(rng.normal(size=301) * 100, 1)
    values[:5] = [0.0, -0.0, -1e300, 1e300, 5e-324]
    groups = rng.integers(0, 6, size=301)
    weights = rng.integers(0, 4, size=301)
    expected = np.zeros(7)  # group 6 has no rows: 0.0
    for g in range(6):
        v, w = values[groups == g], weights[groups == g]
        order = np.argsort(v, kind="stable")
        cumulative = np.cumsum(w[order])
        expected[g] = v[order][np.searchsorted(2 * cumulative, cumulative[-1])]
    for got in spmd(_medians_body, values, groups, weights, 7):
        assert_array_equal(got, expected)


# -- quantized gradients in one packed channel -------------------------------------------

@pytest.mark.parametrize("count_is_hessian", [False, True])
@pytest.mark.parametrize("n", [2, 1000, 123_457, 1_048_575])
def test_packed_fields_never_carry(n, count_is_hessian):
    """n rows at the extreme levels: the summed word decodes to the exact field sums."""
    from mpiml.models.gbdt.criterion import PackedGradientCriterion, packed_layout
    layout = packed_layout(n, count_is_hessian)
    assert layout is not None and layout.grad_levels >= 4
    crit = PackedGradientCriterion(1.0, 1.0, 0.0, 1.0, layout)
    shift_g = layout.count_bits + layout.hess_bits
    for g_level in (layout.grad_levels, -layout.grad_levels):
        h_level = layout.hess_levels
        word = (g_level << shift_g) + (h_level << layout.count_bits) + 1
        total = np.array([word * n], dtype=np.int64)     # n rows, summed exactly
        assert int(total[0]) == word * n                 # no int64 overflow
        g, h = crit._grad_hess(total[None])
        assert g[0] == g_level * n
        assert h[0] == (h_level * n if layout.hess_bits else n)
        assert crit.n_samples(total[None])[0] == n


def test_packed_layout_range():
    from mpiml.models.gbdt.criterion import packed_layout
    assert packed_layout(2 ** 20 - 1, False).grad_levels == 4
    assert packed_layout(2 ** 20 + 1, False) is None       # too few levels: exact channels
    assert packed_layout(10 ** 8, True) is not None         # the count is the hessian


def test_quantized_layout_packs_in_chunks_beyond_one_layout():
    from mpiml.models.gbdt.criterion import PACKED_CHUNK_ROWS, packed_layout, quantized_layout
    whole, chunked = quantized_layout(2 ** 20 - 1, False)
    assert not chunked and whole.max_rows == 2 ** 20 - 1
    layout, chunked = quantized_layout(2 ** 20 + 1, False)
    assert chunked and layout.max_rows == PACKED_CHUNK_ROWS
    assert repr(layout) == repr(packed_layout(PACKED_CHUNK_ROWS, False))
    assert layout.n_unpacked == 3
    assert quantized_layout(10 ** 8, True)[1] is False      # the count is the hessian
    layout, chunked = quantized_layout(10 ** 13, True)
    assert chunked and layout.n_unpacked == 2


def test_packed_layout_default_rows_never_carry():
    """A layout made by hand holds, by default, the most rows that keep every field at
    its extreme level from carrying: as many as ``packed_layout`` computed it for."""
    from mpiml.models.gbdt.criterion import PACKED_CHUNK_ROWS, PackedLayout, packed_layout
    for n, count_is_hessian in ((PACKED_CHUNK_ROWS, False), (1000, False), (10 ** 6, True)):
        made = packed_layout(n, count_is_hessian)
        by_hand = PackedLayout(made.count_bits, made.hess_bits, made.grad_levels,
                               made.hess_levels)
        assert by_hand.max_rows >= n
        rows = by_hand.max_rows
        grad_bits = 64 - made.count_bits - made.hess_bits
        assert rows * made.grad_levels < 1 << (grad_bits - 1)
        assert rows < 1 << made.count_bits
        if made.hess_bits:
            assert rows * made.hess_levels < 1 << made.hess_bits
    assert PackedLayout(20, 21, 4, 2).max_rows == PACKED_CHUNK_ROWS


QUANTIZED_CASES = sorted(c for c in CASES if "exact" not in c)


def _chunked_layout(chunk_rows):
    """``quantized_layout`` with the one-channel layout's fields, packed in chunks of
    ``chunk_rows`` rows."""
    from mpiml.models.gbdt import criterion

    def layout(n_total, count_is_hessian):
        whole = criterion.packed_layout(n_total, count_is_hessian)
        return criterion.PackedLayout(whole.count_bits, whole.hess_bits, whole.grad_levels,
                                      whole.hess_levels, chunk_rows), True
    return layout


@pytest.mark.threads(1, 3)
@pytest.mark.parametrize("chunk_rows", [1, 37])
@pytest.mark.parametrize("case", QUANTIZED_CASES)
def test_chunked_packing_gives_the_one_channel_trees(spmd, monkeypatch, case, chunk_rows):
    """Packed in chunks and unpacked to exact channels before the sums over ranks, the
    same fields give the same model, bit for bit, as one packed channel, for any rank
    count (rows in pieces of one row, and of 37 rows: several pieces per node)."""
    from mpiml.models.gbdt import _boosting
    cls, params, X, y, weight, X_test = _case_data(case)
    one_channel = _fingerprint(cls(**params).fit(X, y, weight), X_test)
    monkeypatch.setattr(_boosting, "quantized_layout", _chunked_layout(chunk_rows))
    _assert_same(_fingerprint(cls(**params).fit(X, y, weight), X_test), one_channel)
    for got in spmd(_fit_body, case, True):
        _assert_same(got, one_channel)


def _beyond_one_layout_body(comm, X, y, X_test):
    a, b = block_range(len(X), comm.size, comm.rank)
    model = GradientBoostingClassifier(n_estimators=3, max_leaf_nodes=6, random_state=0)
    return _fingerprint(model.fit(X[a:b], y[a:b], comm=comm), X_test)


def test_more_rows_than_one_packed_layout_holds():
    """2**20 + 3 rows: the chunked regime, for real; the same model on 1 and 2 ranks, and
    as accurate as the split search on exact gradients."""
    from mpiml.models.gbdt.criterion import quantized_layout
    n = 2 ** 20 + 3
    assert quantized_layout(n, False)[1]
    rng = np.random.default_rng(11)
    X = rng.normal(size=(n, 2)).astype(np.float32).astype(np.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    X_test = rng.normal(size=(2000, 2))
    one = mpiml.run(_beyond_one_layout_body, X, y, X_test, threads=1)[0]
    for got in mpiml.run(_beyond_one_layout_body, X, y, X_test, threads=2):
        _assert_same(got, one)
    exact = GradientBoostingClassifier(n_estimators=3, max_leaf_nodes=6, random_state=0,
                                       quantize_gradients=False).fit(X, y)
    assert_allclose(one["predict"], exact.predict_proba(X_test), atol=0.02)


def test_stochastic_rounding_is_unbiased_and_rank_independent():
    from mpiml.models.gbdt.criterion import (
        PackedGradientCriterion,
        make_packed_channels,
        packed_layout,
        packed_scales,
    )
    rng = np.random.default_rng(0)
    n = 200_000
    g, h = rng.uniform(-1, 1, n), rng.uniform(0, 0.25, n)
    layout = packed_layout(2 ** 20 - 1, False)           # the coarsest levels used
    gs, hs = packed_scales(layout, 1.0, 0.25)
    offset = 17
    whole = make_packed_channels(g, h, True, gs, hs, layout, 99, offset)
    halves = [make_packed_channels(g[part], h[part], True, gs, hs, layout, 99, offset + part.start)
              for part in (slice(0, n // 3), slice(n // 3, n))]
    assert_array_equal(whole, np.concatenate(halves))
    # rows given by their global indices (a validation split's gaps) hash the same way
    assert_array_equal(make_packed_channels(g, h, True, gs, hs, layout, 99, 0,
                                            np.arange(n) + offset), whole)
    sampled = rng.random(n) < 0.5
    some = make_packed_channels(g, h, sampled, gs, hs, layout, 99, offset)
    assert_array_equal(some[sampled], whole[sampled])
    assert (some[~sampled] == 0).all()
    crit = PackedGradientCriterion(gs, hs, 0.0, 1.0, layout)
    gq, hq = crit._grad_hess(whole)
    assert set(np.unique(gq * gs)) <= set(range(-4, 5))
    assert abs(np.mean(gq - g)) < 3 * np.std(gq - g) / np.sqrt(n)
    assert abs(np.mean(hq - h)) < 3 * np.std(hq - h) / np.sqrt(n)
    assert (crit.n_samples(whole) == 1).all()
    other = make_packed_channels(g, h, True, gs, hs, layout, 100, offset)
    assert not np.array_equal(whole, other)                # the seed matters


@pytest.mark.parametrize("sampled", ["all", "half"])
def test_node_values_are_newton_steps_of_exact_sums_of_the_sampled_rows(sampled):
    from mpiml.models.gbdt.criterion import newton_step, renew_node_values
    from mpiml.models.tree import Tree
    rng = np.random.default_rng(5)
    n = 1000
    g, h = rng.normal(size=n), rng.uniform(0.01, 0.25, n)
    mask = True if sampled == "all" else rng.random(n) < 0.5
    keep = np.ones(n, bool) if mask is True else mask
    rows = rng.permutation(n).astype(np.int64)     # leaf 1: rows[:377], leaf 2: the rest
    segments = (rows, np.array([0, 377]), np.array([377, n]), np.array([1, 2]))
    tree = Tree(feature=np.array([0, -1, -1]), threshold=np.array([0.0, -2, -2]),
                threshold_bin=np.zeros(3), left=np.array([1, -1, -1]),
                right=np.array([2, -1, -1]), value=np.zeros((3, 1)),
                n_node_samples=np.ones(3), impurity=np.zeros(3), gain=np.zeros(3),
                depth=np.array([0, 1, 1]))
    scales = (2.0 ** 30, 2.0 ** 33)
    renew_node_values(None, tree, segments, g, h, mask, *scales, 0.5, 0.1)
    for node, part in ((0, rows), (1, rows[:377]), (2, rows[377:])):
        part = part[keep[part]]
        G = np.rint(g[part] * scales[0]).astype(np.int64).sum()
        H = np.rint(h[part] * scales[1]).astype(np.int64).sum()
        want = newton_step(np.array([G / scales[0]]), np.array([H / scales[1]]), 0.5, 0.1)
        assert tree.value[node, 0] == want[0]


def test_coarse_quantization_keeps_exact_leaf_values_and_accuracy(monkeypatch):
    """With the coarsest levels forced on a small problem, the node values are still the
    Newton steps of the exact sums, and accuracy stays close to the exact search."""
    from mpiml.models.gbdt import _boosting, criterion
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6000, 6))
    y = (X[:, 0] + X[:, 1] ** 2 - 1 + 0.5 * rng.normal(size=6000) > 0).astype(int)
    X_test = rng.normal(size=(3000, 6))
    y_test = (X_test[:, 0] + X_test[:, 1] ** 2 - 1 > 0).astype(int)
    exact = GradientBoostingClassifier(n_estimators=30, quantize_gradients=False,
                                       random_state=0).fit(X, y)
    coarse = criterion.PackedLayout(count_bits=13, hess_bits=25, grad_levels=2, hess_levels=1)
    monkeypatch.setattr(_boosting, "quantized_layout", lambda n, count_is_hessian: (coarse, False))
    model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y)
    assert abs(model.score(X_test, y_test) - exact.score(X_test, y_test)) < 0.02
    one = GradientBoostingClassifier(n_estimators=1, l2_regularization=0.5,
                                     random_state=0).fit(X, y)
    tree = one.trees_[0]
    p = 1.0 / (1.0 + np.exp(-one.baseline_[0]))
    grad, hess = p - y, np.full(len(y), p * (1 - p))
    leaf = tree.apply(X)
    for node in np.flatnonzero(tree.left < 0):
        rows = leaf == node
        want = -0.1 * grad[rows].sum() / (hess[rows].sum() + 0.5)
        assert_allclose(tree.value[node, 0], want, rtol=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_binary_loss_one_pass_matches_separate_terms(weighted):
    from mpiml.models.gbdt.losses import BinaryLogLoss
    rng = np.random.default_rng(2)
    raw = np.concatenate([rng.normal(scale=4, size=997), [0.0, -800.0, 800.0]])[:, None]
    y = (rng.random(len(raw)) < 0.4).astype(float)
    weight = rng.uniform(0.1, 3, len(raw)) if weighted else None
    loss = BinaryLogLoss()
    grad, hess, rows, maxima = loss.gradients_and_pointwise(y, raw, weight)
    with np.errstate(over="ignore"):                      # exp(800) in the reference
        want_grad, want_hess = loss.gradients(y, raw, weight)
        want_rows = loss.pointwise(y, raw, weight)
    assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-300)
    assert_allclose(hess, want_hess, rtol=1e-12, atol=1e-300)
    assert_allclose(rows, want_rows, rtol=1e-12, atol=4e-15)   # log(q) near q = 1
    assert maxima == (np.abs(grad).max(), np.abs(hess).max(), np.abs(rows).max())


@pytest.mark.parametrize("n_leaves", [3, 300, 70_000])
def test_leaf_slots_and_leaf_values_reach_every_row_of_its_leaf(n_leaves):
    """Each row's slot is its leaf's place in the segments, in a type that holds every
    place, and ``add_leaf_values`` adds its leaf's value to that row and no other."""
    from mpiml.models.gbdt.criterion import add_leaf_values
    from mpiml.models.tree import leaf_slots
    rng = np.random.default_rng(3)
    n = n_leaves + 2 * 997
    sizes = np.ones(n_leaves, dtype=np.int64)
    np.add.at(sizes, rng.integers(0, n_leaves, n - n_leaves), 1)    # no leaf empty
    stops = np.cumsum(sizes)
    rows = rng.permutation(n).astype(np.int32)
    leaves = np.sort(rng.choice(3 * n_leaves, n_leaves, replace=False)).astype(np.int64)
    segments = (rows, stops - sizes, stops, leaves)
    slots = leaf_slots(segments, n)
    assert slots.dtype == {3: np.uint8, 300: np.uint16, 70_000: np.uint32}[n_leaves]
    want = np.repeat(np.arange(n_leaves), sizes)
    assert_array_equal(slots[rows], want)
    value = rng.normal(size=(3 * n_leaves, 1))
    raw = rng.normal(size=(n, 2))
    expected = raw.copy()
    expected[rows, 1] += value[np.repeat(leaves, sizes), 0]
    add_leaf_values(slots, leaves, value, raw, 1)
    assert_array_equal(raw, expected)
