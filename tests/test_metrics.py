"""Collective metrics equal scikit-learn's on the whole data set, for any split over ranks."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import metrics as skm

from mpiml import metrics
from mpiml.comm.partition import block_range

RNG = np.random.default_rng(1)


def _shard(comm, *arrays):
    s, e = block_range(len(arrays[0]), comm.size, comm.rank)
    return [a[s:e] for a in arrays]


@pytest.mark.parametrize("n", [1, 7, 101])
def test_regression_metrics(spmd, n):
    y = RNG.standard_normal(n)
    p = y + 0.3 * RNG.standard_normal(n)
    w = RNG.uniform(0.5, 2.0, n)

    def body(comm):
        yt, yp, ww = _shard(comm, y, p, w)
        return (metrics.mean_squared_error(yt, yp, comm), metrics.r2(yt, yp, comm),
                metrics.r2(yt, yp, comm, sample_weight=ww))
    for mse, r2, r2w in spmd(body):
        assert_allclose(mse, skm.mean_squared_error(y, p), rtol=1e-12)
        if n > 1:
            assert_allclose(r2, skm.r2_score(y, p), rtol=1e-12)
            assert_allclose(r2w, skm.r2_score(y, p, sample_weight=w), rtol=1e-12)


def test_metrics_are_the_same_bits_for_any_rank_count(spmd):
    # values over 16 decades: a sum in any other order rounds differently
    n = 20011
    y = RNG.standard_normal(n) * 10.0 ** RNG.integers(-8, 9, n)
    p = y * (1 + 1e-3 * RNG.standard_normal(n))
    w = RNG.uniform(0.1, 3.0, n)
    labels = (RNG.uniform(size=n) < 0.4).astype(int)
    prob = RNG.uniform(0.01, 0.99, n)

    def body(comm):
        yt, yp, ww, lb, pr = _shard(comm, y, p, w, labels, prob)
        return (metrics.r2(yt, yp, comm), metrics.r2(yt, yp, comm, sample_weight=ww),
                metrics.mean_squared_error(yt, yp, comm, sample_weight=ww),
                metrics.log_loss(lb, pr, comm, sample_weight=ww),
                metrics.accuracy(lb, pr > 0.5, comm, sample_weight=ww))
    expected = (metrics.r2(y, p), metrics.r2(y, p, sample_weight=w),
                metrics.mean_squared_error(y, p, sample_weight=w),
                metrics.log_loss(labels, prob, sample_weight=w),
                metrics.accuracy(labels, prob > 0.5, sample_weight=w))
    for result in spmd(body):
        assert result == expected
    assert_allclose(expected[1], skm.r2_score(y, p, sample_weight=w), rtol=1e-9)


@pytest.mark.parametrize("n", [3, 50, 211])
def test_classification_metrics(spmd, n):
    y = np.tile([0, 1], n)[:n]
    score = np.round(RNG.uniform(size=n), 1)  # ties on purpose
    label = np.where(score > 0.5, 1, 0)
    y3 = np.tile(["a", "b", "c"], n)[:n]
    prob3 = RNG.dirichlet([1, 1, 1], n)

    def body(comm):
        yt, sc, lb, yt3, p3 = _shard(comm, y, score, label, y3, prob3)
        return (metrics.accuracy(yt, lb, comm), metrics.roc_auc(yt, sc, comm),
                metrics.log_loss(yt, np.column_stack([1 - sc, sc]), comm),
                metrics.log_loss(yt3, p3, comm))
    for acc, auc, ll, ll3 in spmd(body):
        assert_allclose(acc, skm.accuracy_score(y, label), rtol=1e-12)
        assert_allclose(auc, skm.roc_auc_score(y, score), rtol=1e-12)
        assert_allclose(ll, skm.log_loss(y, np.column_stack([1 - score, score])), rtol=1e-9)
        assert_allclose(ll3, skm.log_loss(y3, prob3), rtol=1e-9)


@pytest.mark.threads(1, 3)
def test_roc_auc_one_class_is_an_error(spmd):
    def body(comm):
        try:
            metrics.roc_auc(np.ones(2), np.arange(2.0), comm)
        except Exception as exc:  # noqa: BLE001
            return type(exc).__name__
    assert set(spmd(body)) == {"DataError"}
