"""MLPs: the same model for any rank count, accuracy close to scikit-learn's."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import make_friedman1, make_moons

from mpiml.comm.partition import block_range
from mpiml.errors import MpimlError
from mpiml.models.mlp import MLPClassifier, MLPRegressor

X_CLS, Y_CLS = make_moons(301, noise=0.2, random_state=0)
X_REG, Y_REG = make_friedman1(257, random_state=0)


def _fit(comm, cls, X, y, params):
    s, e = block_range(len(X), comm.size, comm.rank)
    model = cls(**params).fit(X[s:e], y[s:e], comm=comm)
    return model._theta, model.score(X[s:e], y[s:e], comm=comm), model.loss_curve_


@pytest.mark.parametrize("params", [
    {"hidden_layer_sizes": (16, 8), "solver": "adam", "learning_rate_init": 0.01},
    {"hidden_layer_sizes": (12,), "solver": "sgd", "activation": "tanh",
     "learning_rate_init": 0.05, "batch_size": 32},
])
def test_classifier_same_for_any_rank_count(spmd, params):
    params = dict(params, max_iter=25, random_state=3)
    ref = MLPClassifier(**params).fit(X_CLS, Y_CLS)
    for theta, score, curve in spmd(_fit, MLPClassifier, X_CLS, Y_CLS, params):
        assert_allclose(theta, ref._theta, rtol=1e-8, atol=1e-10)
        assert_allclose(curve, ref.loss_curve_, rtol=1e-8)
        assert score > 0.85


def test_full_batch_equals_one_rank(spmd):
    params = {"hidden_layer_sizes": (8,), "batch_size": 10_000, "max_iter": 20,
              "learning_rate_init": 0.05, "random_state": 0}
    ref = MLPRegressor(**params).fit(X_REG, Y_REG)
    for theta, _score, _curve in spmd(_fit, MLPRegressor, X_REG, Y_REG, params):
        assert_allclose(theta, ref._theta, rtol=1e-10, atol=1e-12)


def test_full_batch_is_the_same_bits_for_any_rank_count(spmd):
    # 20011 rows: three row blocks, cut by the rank boundaries in different places
    X, y = make_friedman1(20011, random_state=1)
    params = {"hidden_layer_sizes": (6,), "batch_size": 20011, "max_iter": 4,
              "learning_rate_init": 0.05, "random_state": 0}
    ref = MLPRegressor(**params).fit(X, y)
    for theta, _, curve in spmd(_fit, MLPRegressor, X, y, params):
        np.testing.assert_array_equal(theta, ref._theta)
        assert curve == ref.loss_curve_


def test_accuracy_close_to_scikit_learn():
    from sklearn.neural_network import MLPClassifier as Sk, MLPRegressor as SkR
    params = {"hidden_layer_sizes": (32,), "learning_rate_init": 0.01, "max_iter": 200,
              "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = Sk(**params).fit(X_CLS, Y_CLS).score(X_CLS, Y_CLS)
        skr = SkR(**params).fit(X_REG, Y_REG).score(X_REG, Y_REG)
    assert MLPClassifier(**params).fit(X_CLS, Y_CLS).score(X_CLS, Y_CLS) > sk - 0.03
    assert MLPRegressor(**params).fit(X_REG, Y_REG).score(X_REG, Y_REG) > skr - 0.05


def test_multiclass_probabilities():
    y = np.array(["a", "b", "c"])[np.digitize(X_CLS[:, 0], [0.0, 1.0])]
    model = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0,
                          learning_rate_init=0.01).fit(X_CLS, y)
    proba = model.predict_proba(X_CLS)
    assert proba.shape == (len(y), 3)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert (model.predict(X_CLS) == y).mean() > 0.8


@pytest.mark.parametrize("params, message", [
    ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes must be"),
    ({"activation": "sigmoid"}, "activation must be one of"),
    ({"solver": "lbfgs"}, "solver must be one of"),
])
def test_bad_parameters(params, message):
    with pytest.raises(MpimlError, match=message):
        MLPClassifier(**params).fit(X_CLS, Y_CLS)


@pytest.mark.threads(1, 2)
def test_divergence_is_a_clear_error(spmd):
    def body(comm):
        try:
            _fit(comm, MLPRegressor, X_REG, Y_REG * 1e6, {"solver": "sgd", "max_iter": 50,
                                                          "learning_rate_init": 10.0})
        except MpimlError as exc:
            return str(exc)
    with np.errstate(all="ignore"):
        results = spmd(body)
    assert all(r is not None and "diverged" in r for r in results), results
