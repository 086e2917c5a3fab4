"""Linear and logistic regression: P ranks equal one rank, and match numpy / scikit-learn."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import LogisticRegression as SkLogistic

from mpiml.comm import self_comm
from mpiml.comm.partition import block_range
from mpiml.errors import MpimlError
from mpiml.models.linear import LinearRegression, LogisticRegression

RNG = np.random.default_rng(0)
N, D = 211, 5
X = RNG.standard_normal((N, D)) * RNG.uniform(0.5, 4, D) + RNG.uniform(-3, 3, D)
Y_REG = X @ RNG.standard_normal(D) + 2.0 + 0.1 * RNG.standard_normal(N)
Y_BIN = (X @ RNG.standard_normal(D) / 3 + RNG.standard_normal(N) > 0).astype(int)
Y_MULTI = np.array(["x", "y", "z"])[np.digitize(X[:, 0] - X[:, 1] + RNG.standard_normal(N), [-2, 1])]
W = RNG.uniform(0.2, 3.0, N)


def _fit(comm, cls, y, params, weighted=False):
    s, e = block_range(N, comm.size, comm.rank)
    model = cls(**params).fit(X[s:e], y[s:e], sample_weight=W[s:e] if weighted else None,
                              comm=comm)
    return model.coef_, model.intercept_, model.score(X[s:e], y[s:e], comm=comm)


def _serial(cls, y, params, weighted=False):
    return cls(**params).fit(X, y, sample_weight=W if weighted else None)


@pytest.mark.parametrize("solver, params", [
    ("normal", {}),
    ("lbfgs", {"tol": 1e-10, "max_iter": 500}),
    ("gd", {"tol": 1e-9, "max_iter": 5000, "learning_rate": 0.5}),
])
def test_linear_matches_lstsq_and_one_rank(spmd, solver, params):
    params = dict(params, solver=solver)
    ref = _serial(LinearRegression, Y_REG, params)
    exact = np.linalg.lstsq(np.column_stack([X, np.ones(N)]), Y_REG, rcond=None)[0]
    assert_allclose(ref.coef_, exact[:D], rtol=1e-6)
    assert_allclose(ref.intercept_, exact[D], rtol=1e-6)
    for coef, intercept, score in spmd(_fit, LinearRegression, Y_REG, params):
        assert_allclose(coef, ref.coef_, rtol=1e-10)
        assert_allclose(intercept, ref.intercept_, rtol=1e-10)
        assert score > 0.98


@pytest.mark.parametrize("solver", ["lbfgs", "gd"])
def test_linear_large_target_offset(spmd, solver):
    # y far from 0: the solvers fit y minus its mean, so no precision is lost
    y = Y_REG + 1e5
    params = {"solver": solver, "tol": 1e-10, "max_iter": 500 if solver == "lbfgs" else 3000}
    exact = np.linalg.lstsq(np.column_stack([X, np.ones(N)]), y, rcond=None)[0]
    ref = _serial(LinearRegression, y, params)
    assert_allclose(ref.coef_, exact[:D], rtol=1e-6)
    assert_allclose(ref.intercept_, exact[D], rtol=1e-10)
    for coef, intercept, _ in spmd(_fit, LinearRegression, y, params):
        assert_allclose(coef, ref.coef_, rtol=1e-10)
        assert_allclose(intercept, ref.intercept_, rtol=1e-12)


@pytest.mark.threads(1, 2)
@pytest.mark.parametrize("solver", ["gd", "sgd"])
def test_divergence_is_a_clear_error(spmd, solver):
    params = {"solver": solver, "learning_rate": 1e3, "max_iter": 2000, "n_iter_no_change": 2000}
    with np.errstate(all="ignore"):
        results = spmd(_bad, LinearRegression, Y_REG, params)
    assert all(r is not None and "diverged" in r and "learning_rate" in r for r in results), results


def test_ridge_and_weights(spmd):
    params = {"alpha": 0.3}
    ref = _serial(LinearRegression, Y_REG, params, weighted=True)
    lb = _serial(LinearRegression, Y_REG, dict(params, solver="lbfgs", tol=1e-11, max_iter=500),
                 weighted=True)
    assert_allclose(lb.coef_, ref.coef_, rtol=1e-6)
    for coef, _intercept, _ in spmd(_fit, LinearRegression, Y_REG, params, True):
        assert_allclose(coef, ref.coef_, rtol=1e-10)


@pytest.mark.parametrize("y", [Y_BIN, Y_MULTI], ids=["binary", "multinomial"])
@pytest.mark.parametrize("solver", ["lbfgs", "gd"])
def test_logistic_full_batch_equals_one_rank(spmd, y, solver):
    params = {"solver": solver, "C": 1.0 / (1e-2 * N), "tol": 1e-9,
              "max_iter": 300 if solver == "lbfgs" else 400, "learning_rate": 1.0}
    ref = _serial(LogisticRegression, y, params)
    for coef, intercept, _score in spmd(_fit, LogisticRegression, y, params):
        assert_allclose(coef, ref.coef_, rtol=1e-10, atol=1e-12)
        assert_allclose(intercept, ref.intercept_, rtol=1e-10, atol=1e-12)


BIG_X = RNG.standard_normal((20011, 6)) * RNG.uniform(0.1, 50, 6) + RNG.uniform(-9, 9, 6)
BIG_Y = np.digitize(BIG_X @ RNG.standard_normal(6) / 40 + RNG.standard_normal(20011), [-1, 0.5])
BIG_W = RNG.uniform(0.2, 3.0, 20011)


def _fit_big(comm, cls, y, params):
    s, e = block_range(len(BIG_X), comm.size, comm.rank)
    model = cls(**params).fit(BIG_X[s:e], y[s:e], sample_weight=BIG_W[s:e], comm=comm)
    return model.coef_, model.intercept_, model.n_iter_, model.mean_, model.scale_


@pytest.mark.parametrize("cls, y, params", [
    (LogisticRegression, BIG_Y, {"tol": 1e-12, "max_iter": 400}),
    (LogisticRegression, BIG_Y == 2, {"tol": 0.0, "max_iter": 400, "C": np.inf}),
    (LinearRegression, BIG_X[:, 0] + 1e4, {"solver": "lbfgs", "tol": 0.0, "max_iter": 400}),
    (LogisticRegression, BIG_Y, {"solver": "gd", "max_iter": 60}),
], ids=["softmax-lbfgs", "binary-lbfgs-to-noise", "linear-lbfgs-offset", "softmax-gd"])
def test_full_batch_fits_are_the_same_bits_for_any_rank_count(spmd, cls, y, params):
    # Sums over fixed row blocks: the stopping test at the noise level of the loss
    # makes the same decision on P ranks as on one, so the whole path is the same.
    ref = _fit_big(self_comm(), cls, y, params)
    for result in spmd(_fit_big, cls, y, params):
        for got, want in zip(result, ref):
            assert_array_equal(got, want)


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("C", [1.0, 0.05])
@pytest.mark.parametrize("y", [Y_BIN, Y_MULTI], ids=["binary", "multinomial"])
def test_logistic_matches_scikit_learn(y, C, standardize):
    # C means what it means in scikit-learn; standardising only preconditions the solver
    ours = _serial(LogisticRegression, y, {"C": C, "standardize": standardize,
                                           "tol": 1e-10, "max_iter": 2000})
    sk = SkLogistic(C=C, tol=1e-10, max_iter=5000).fit(X, y)
    assert_allclose(ours.coef_, sk.coef_, rtol=1e-4, atol=1e-5)
    assert_array_equal(ours.classes_, sk.classes_)
    assert_allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-5)
    assert (ours.predict(X) == sk.predict(X)).mean() > 0.99
    assert_allclose(ours.predict_proba(X).sum(axis=1), 1.0)


def test_sgd_is_the_same_for_any_rank_count(spmd):
    params = {"solver": "sgd", "C": 1.0 / (1e-3 * N), "max_iter": 15, "batch_size": 32,
              "learning_rate": 0.1, "random_state": 5}
    ref = _serial(LogisticRegression, Y_BIN, params)
    sk = SkLogistic().fit(X, Y_BIN).score(X, Y_BIN)
    for coef, _intercept, score in spmd(_fit, LogisticRegression, Y_BIN, params):
        assert_allclose(coef, ref.coef_, rtol=1e-9, atol=1e-12)
        assert score > sk - 0.05
    for _coef, _, score in spmd(_fit, LinearRegression, Y_REG, {"solver": "sgd", "max_iter": 30,
                                                              "random_state": 1, "batch_size": 16,
                                                              "learning_rate": 0.05}):
        assert score > 0.98


def _bad(comm, cls, y, params):
    try:
        _fit(comm, cls, y, params)
    except MpimlError as exc:
        return str(exc)
    return None


@pytest.mark.threads(1, 3)
@pytest.mark.parametrize("cls, y, params, message", [
    (LogisticRegression, Y_BIN, {"solver": "newton"}, "solver must be one of"),
    (LogisticRegression, Y_BIN, {"max_iter": 0}, "max_iter must be an integer >= 1, got 0"),
    (LinearRegression, Y_REG, {"alpha": -1.0}, "alpha must be a number >= 0, got -1.0"),
    (LogisticRegression, Y_BIN, {"C": 0.0}, "C must be a number > 0, got 0.0"),
    (LogisticRegression, np.zeros(N), {}, "1 class"),
    (LogisticRegression, np.array([1, "a"] * N, dtype=object)[:N], {},
     "mixes labels of types int, str"),
])
def test_bad_parameters_and_targets(spmd, cls, y, params, message):
    results = spmd(_bad, cls, y, params)
    assert all(r is not None and message in r for r in results), results


@pytest.mark.threads(1, 2)
def test_infinity_in_one_rank_is_an_error_everywhere(spmd):
    # NaN is a missing value (imputed, tests/test_linear_tables.py); infinity is refused
    def body(comm):
        s, e = block_range(N, comm.size, comm.rank)
        Xl = X[s:e].copy()
        if comm.rank == comm.size - 1:
            Xl[-1, 2] = np.inf
        try:
            LinearRegression().fit(Xl, Y_REG[s:e], comm=comm)
        except MpimlError as exc:
            return str(exc)
    assert all(r is not None and "infinity" in r for r in spmd(body))


@pytest.mark.threads(1, 3)
@pytest.mark.parametrize("cls", [LinearRegression, LogisticRegression])
def test_no_features_is_an_error_everywhere(spmd, cls):
    def body(comm):
        s, e = block_range(N, comm.size, comm.rank)
        try:
            cls().fit(np.empty((e - s, 0)), Y_BIN[s:e], comm=comm)
        except MpimlError as exc:
            return str(exc)
    assert all(r is not None and "0 features" in r for r in spmd(body))


def test_fewer_rows_than_ranks(spmd):
    def body(comm):
        s, e = block_range(3, comm.size, comm.rank)
        m = LogisticRegression().fit(X[s:e], Y_BIN[:3][s:e] if False else np.array([0, 1, 1])[s:e],
                                     comm=comm)
        return m.coef_
    results = spmd(body)
    assert all(np.allclose(r, results[0], rtol=1e-10) for r in results)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("cls_path", ["mpiml.models.linear:LogisticRegression",
                                      "mpiml.models.mlp:MLPClassifier"])
def test_predict_with_proba_is_predict_and_predict_proba(cls_path, n_classes):
    """The server's one-pass call gives exactly the two answers, also where a decision
    value is close to zero."""
    import importlib
    module, name = cls_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(300, 4))
    y = np.argmax(X[:, :n_classes] + 0.3 * rng.normal(size=(300, n_classes)), axis=1)
    model = cls(max_iter=30).fit(X, np.array(["a", "b", "c"])[y])
    labels, proba = model.predict_with_proba(X)
    assert np.array_equal(labels, model.predict(X))
    assert np.array_equal(proba, model.predict_proba(X))
