"""Synthetic data sets whose union of shards is the same for any rank count.

Rows are generated in fixed blocks of :data:`BLOCK` global rows; block ``b`` draws
from a generator seeded by ``(seed, kind, b)``, never by the rank. A rank generates
the blocks that overlap its rows and keeps its slice, so the data set is a pure
function of ``(kind, n_samples, n_features, ..., seed)``.
"""

__all__ = ["make_classification", "make_regression", "BLOCK"]

import numpy as np

from ..checks import check_float, check_int
from ..comm.partition import block_range
from ._common import Dataset

BLOCK = 4096
_KIND = {"classification": 1, "regression": 2}


def _weights(seed, kind, n_features, n_informative, columns, scale):
    rng = np.random.default_rng([seed, _KIND[kind], 2 ** 32 - 1])
    W = rng.standard_normal((n_features, columns)) * scale
    W[n_informative:] = 0.0
    bias = rng.standard_normal(columns) * 0.5 * scale
    return W, bias


def _matmul(X, W):
    # einsum without BLAS: the same bits whatever BLAS threading each rank has
    return np.einsum("ij,jk->ik", X, W, optimize=False)


def _blocks(n_samples, comm, seed, kind, make_block):
    start, stop = block_range(n_samples, comm.size, comm.rank)
    Xs, ys = [], []
    for b in range(start // BLOCK, -(-stop // BLOCK)):
        lo = b * BLOCK
        rows = min(BLOCK, n_samples - lo)
        X, y = make_block(np.random.default_rng([seed, _KIND[kind], b]), rows)
        keep = slice(max(start - lo, 0), min(stop - lo, rows))
        Xs.append(X[keep])
        ys.append(y[keep])
    return start, Xs, ys


def _check(n_samples, n_features, n_informative, seed):
    n_samples = check_int("n_samples", n_samples, low=0)
    n_features = check_int("n_features", n_features, low=1)
    n_informative = check_int("n_informative", n_features if n_informative is None
                              else n_informative, low=0, high=n_features)
    seed = check_int("seed", seed, low=0)
    return n_samples, n_features, n_informative, seed


def make_classification(comm, n_samples=1000, n_features=20, n_classes=2, n_informative=None,
                        class_sep=1.0, seed=0):
    """Collective (no communication): this rank's rows of a synthetic classification set.

    ``X`` is standard normal; labels follow a softmax (logistic for two classes) of a
    random linear function of the first ``n_informative`` features, with scale
    ``class_sep`` (larger: easier). Labels are int64 ``0 .. n_classes-1``.

    Returns
    -------
    Dataset
    """
    n_samples, n_features, n_informative, seed = _check(n_samples, n_features,
                                                        n_informative, seed)
    n_classes = check_int("n_classes", n_classes, low=2)
    class_sep = check_float("class_sep", class_sep, low=0, low_open=True)
    W, bias = _weights(seed, "classification", n_features, n_informative,
                       1 if n_classes == 2 else n_classes, class_sep)

    def block(rng, rows):
        X = rng.standard_normal((rows, n_features))
        logits = _matmul(X, W) + bias
        if n_classes == 2:
            y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logits[:, 0]))).astype(np.int64)
        else:
            y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1).astype(np.int64)
        return X, y

    return _assemble(comm, n_samples, n_features, seed, "classification", block, np.int64)


def make_regression(comm, n_samples=1000, n_features=20, n_informative=None, noise=0.1,
                    seed=0):
    """Collective (no communication): this rank's rows of a synthetic regression set.

    ``y = X @ w + b + noise * N(0, 1)`` with standard normal ``X`` and ``w`` (zero past
    the first ``n_informative`` features).

    Returns
    -------
    Dataset
    """
    n_samples, n_features, n_informative, seed = _check(n_samples, n_features,
                                                        n_informative, seed)
    noise = check_float("noise", noise, low=0)
    W, bias = _weights(seed, "regression", n_features, n_informative, 1, 1.0)

    def block(rng, rows):
        X = rng.standard_normal((rows, n_features))
        y = _matmul(X, W)[:, 0] + bias[0] + noise * rng.standard_normal(rows)
        return X, y

    return _assemble(comm, n_samples, n_features, seed, "regression", block, np.float64)


def _assemble(comm, n_samples, n_features, seed, kind, block, ydtype):
    start, Xs, ys = _blocks(n_samples, comm, seed, kind, block)
    X = np.concatenate(Xs) if Xs else np.zeros((0, n_features))
    y = np.concatenate(ys) if ys else np.zeros(0, dtype=ydtype)
    return Dataset(X=np.ascontiguousarray(X), y=y,
                   feature_names=[f"x{j}" for j in range(n_features)], target="y",
                   n_rows=n_samples, offset=start, source=f"synthetic:{kind}")
