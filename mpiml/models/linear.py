"""Data-parallel linear models: ``LinearRegression`` and ``LogisticRegression``.

Every rank holds a block of rows. Each evaluation of the objective computes the loss
sum and gradient of each fixed global block of rows (:class:`RowBlocks`) and combines
them with ONE ``Allreduce``; every rank then takes the same step, so every rank holds
the same model. The full-batch solvers (``gd``, ``lbfgs``) give the same bits for any
rank count and either backend.

``X`` may be an array (NaN missing), a pandas DataFrame or a
:class:`~mpiml.data.tables.Table` with categorical features and missing values. The
collective stage of :mod:`mpiml.models._preprocess` (saved in the model) expands it:
one-hot columns for categories, mean imputation with a missing indicator for numeric
features; for numeric data without missing values it is the identity. The expanded
columns are standardised with a mean and scale computed collectively (stored as
``mean_`` and ``scale_``); ``coef_`` and ``intercept_`` are given in the units of the
expanded columns, named by ``expanded_feature_names_`` (the original features where
nothing was expanded).

Objectives (``W`` = total sample weight, ``theta`` = coefficients on standardised
features, ``coef`` = the same coefficients in raw feature units; the intercept is not
penalised)::

    LinearRegression:    sum_i w_i * (z_i - y_i)^2 / 2 / W  +  alpha / 2 * ||theta||^2
    LogisticRegression:  C * sum_i w_i * logloss_i  +  ||coef||^2 / 2

``LogisticRegression``'s is scikit-learn's (binary, or multinomial softmax), so ``C``
means what it means there; standardising only preconditions the solver, the minimum is
the same. It is minimised divided by ``C * W`` (a mean loss), which leaves the minimum
where it is.

Solvers
-------
``normal`` (LinearRegression only, the default): the normal equations from one
Allreduce of the ``X^T W X`` and ``X^T W y`` of each fixed row block (standardised, so
well scaled; the same bits for any rank count), solved by least squares on every rank.
It moves ``(n_features + 1)^2`` numbers per block; for many thousands of features
prefer ``lbfgs``.
``gd``: full-batch gradient descent with step ``learning_rate``.
``sgd``: mini-batches of ``batch_size`` global rows; each epoch visits the rows in an
order drawn from ``(random_state, epoch)`` over the global row index, so the batches are
the same for any rank count.
``lbfgs``: limited-memory BFGS; the two-loop recursion runs locally (identically) on
every rank, the line search backtracks with an Armijo condition.
"""

__all__ = ["LinearRegression", "LogisticRegression"]

from collections import deque

import numpy as np

from ..checks import (check_bool, check_choice, check_float, check_int, encode_classes,
                      resolve_seed)
from ..comm import collective_error, global_offset, resolve_comm
from ..comm.rowblocks import RowBlocks
from ..errors import DataError, InvalidParameterError
from ..progress import as_progress
from ._base import (BaseEstimator, ClassifierMixin, EpochStopper, RegressorMixin, check_is_fitted,
                    checked_params, classes_from_json, classes_to_json, collective)
from ._preprocess import TablePreprocessing

_CHUNK = 65536


def _allreduce(comm, buf):
    out = np.empty_like(buf)
    comm.Allreduce(buf, out)
    return out


def standardize_stats(X, w, comm, center=True, scale=True, blocks=None):
    """Collective: weighted ``(mean, scale, total_weight)`` of the columns of every rank's X.

    Two passes over fixed row blocks (sums, then centred squares: no cancellation), so
    the result is the same, bit for bit, for any rank count. A constant column gets
    scale 1. ``w`` may be None (unit weights). ``blocks`` is a :class:`RowBlocks` over
    ``(X, ..., w)`` to reuse; by default one is made over ``(X, w)``.
    """
    d = X.shape[1]
    if blocks is None:
        blocks = RowBlocks(comm, (X, w), d + 1)

    def sums(Xb, *rest):
        wb = rest[-1]
        return np.concatenate(([Xb.shape[0]], Xb.sum(axis=0)) if wb is None
                              else ([wb.sum()], wb @ Xb))
    buf = blocks.sums(sums, d + 1)
    total = buf[0]
    mean = buf[1:] / total if center else np.zeros(d)
    if not scale:
        return mean, np.ones(d), total

    def squares(Xb, *rest):
        wb = rest[-1]
        centred = (Xb - mean) ** 2
        return centred.sum(axis=0) if wb is None else wb @ centred
    std = np.sqrt(blocks.sums(squares, d) / total)
    std[~(std > 1e-12 * np.maximum(np.abs(mean), 1.0))] = 1.0
    return mean, std, total


def lbfgs(fun, x0, max_iter, tol, memory=10, progress=None):
    """Minimise ``fun`` (returning ``(f, grad)``) by L-BFGS with a backtracking line search.

    Local and deterministic: ranks that see the same ``fun`` values take the same path.
    Stops when ``max|grad| <= tol``, when the relative decrease falls below 64 machine
    epsilons, or after ``max_iter`` iterations. Returns ``(x, f, grad, n_iter)``.
    """
    report = as_progress(progress)
    x = x0.copy()
    f, g = fun(x)
    S, Y, RHO = deque(maxlen=memory), deque(maxlen=memory), deque(maxlen=memory)
    ftol = 64 * np.finfo(float).eps
    it = 0
    for it in range(1, max_iter + 1):
        if np.max(np.abs(g)) <= tol:
            it -= 1
            break
        q = g.copy()
        alphas = []
        for s, y, rho in zip(reversed(S), reversed(Y), reversed(RHO)):
            a = rho * (s @ q)
            alphas.append(a)
            q -= a * y
        if S:
            q *= (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1])
        else:
            q *= min(1.0, 1.0 / max(np.linalg.norm(g), 1e-300))
        for (s, y, rho), a in zip(zip(S, Y, RHO), reversed(alphas)):
            b = rho * (y @ q)
            q += (a - b) * s
        direction = -q
        slope = g @ direction
        if not slope < 0:
            S.clear(), Y.clear(), RHO.clear()
            direction = -g / max(np.linalg.norm(g), 1e-300)
            slope = g @ direction
        step = 1.0
        for _ in range(40):
            x_new = x + step * direction
            f_new, g_new = fun(x_new)
            if np.isfinite(f_new) and f_new <= f + 1e-4 * step * slope:
                break
            denom = 2.0 * (f_new - f - slope * step)
            guess = -slope * step * step / denom if np.isfinite(f_new) and denom > 0 else 0.5 * step
            step = min(max(guess, 0.1 * step), 0.5 * step)
        else:
            break  # no decrease possible at this precision
        s, y = x_new - x, g_new - g
        sy = s @ y
        if sy > 1e-10 * (y @ y):
            S.append(s), Y.append(y), RHO.append(1.0 / sy)
        decrease = f - f_new
        x, f, g = x_new, f_new, g_new
        report(it, f)
        if decrease <= ftol * max(abs(f), abs(f_new), 1.0):
            break
    return x, f, g, it


def _epoch_batches(n_total, batch_size, seed, epoch, offset, n_local):
    """Local row indices of this rank for each mini-batch of one epoch (same for any P)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_total)
    local = order - offset
    mine = (local >= 0) & (local < n_local)
    for lo in range(0, n_total, batch_size):
        sel = mine[lo:lo + batch_size]
        yield local[lo:lo + batch_size][sel]


class _LinearModel(TablePreprocessing, BaseEstimator):
    """What LinearRegression and LogisticRegression share: solvers, scaling, state."""

    _solvers = ("gd", "sgd", "lbfgs")

    def _check_params(self):
        check_choice("solver", self.solver, self._solvers)
        self._check_penalty()
        check_int("max_iter", self.max_iter, low=1)
        check_float("tol", self.tol, low=0)
        check_float("learning_rate", self.learning_rate, low=0, low_open=True)
        check_int("batch_size", self.batch_size, low=1)
        check_int("n_iter_no_change", self.n_iter_no_change, low=1)
        check_bool("fit_intercept", self.fit_intercept)
        check_bool("standardize", self.standardize)

    # -- the objective on standardised features ------------------------------------------

    def _unpack(self, theta):
        """theta (flat) -> coef (d, K) and intercept (K,) in raw feature units."""
        d, k = self._shape
        t = theta.reshape(d + 1, k)
        coef = t[:d] / self.scale_[:, None]
        intercept = t[d] - self.mean_ @ coef
        return coef, intercept

    def _terms(self, theta, X, target, w):
        """Sums over the rows given: ``[loss, X^T R (d*k), sum of R (k)]`` (raw features).

        ``R`` is the residual of the loss at the linear scores. One block's worth of rows
        at a time; :meth:`_gradient` turns summed terms into the gradient.
        """
        d, k = self._shape
        coef, intercept = self._unpack(theta)
        Z = X @ coef + intercept
        loss, R = self._loss_residual(Z, target)
        out = np.empty(1 + (d + 1) * k)
        if w is not None:
            out[0] = loss @ w
            R *= w[:, None]
        else:
            out[0] = loss.sum()
        out[1:1 + d * k] = (X.T @ R).ravel()
        out[1 + d * k:] = R.sum(axis=0)
        return out

    def _gradient(self, terms):
        """Summed :meth:`_terms` -> gradient on standardised features, flat ((d+1)*k,)."""
        d, k = self._shape
        raw = terms[1:1 + d * k].reshape(d, k)
        sum_r = terms[1 + d * k:]
        grad = np.empty((d + 1, k))
        grad[:d] = (raw - self.mean_[:, None] * sum_r) / self.scale_[:, None]
        grad[d] = sum_r if self.fit_intercept else 0.0
        return grad.ravel()

    def _objective(self, blocks, total):
        d, k = self._shape
        width = 1 + (d + 1) * k
        penalty = self._penalty(total)[:, None]

        def fun(theta):
            terms = blocks.sums(lambda X, t, w: self._terms(theta, X, t, w), width)
            f = terms[0] / total
            g = self._gradient(terms) / total
            t = theta.reshape(d + 1, k)[:d]
            f += 0.5 * np.sum(penalty * t * t)
            g.reshape(d + 1, k)[:d] += penalty * t
            return f, g
        return fun

    # -- fit --------------------------------------------------------------------------------

    def _fit(self, X, y, sample_weight, comm, progress, feature_names=None):
        comm = resolve_comm(comm)
        checked_params(self, comm)
        X, y, w, n_total = self._fit_table(X, y, sample_weight, comm, feature_names)
        target, k = self._prepare_target(y, comm)
        d = X.shape[1]
        self._shape = (d, k)
        # Full-batch sums over fixed row blocks: the same, bit for bit, for any P.
        blocks = RowBlocks(comm, (X, target, w), 1 + (d + 1) * k)
        self.mean_, self.scale_, total = standardize_stats(
            X, w, comm, center=self.fit_intercept, scale=self.standardize, blocks=blocks)
        if total <= 0:
            raise collective_error(DataError("sample_weight sums to 0"))
        shift = self._target_shift(blocks, total)
        if np.any(shift):
            target = target - shift
            blocks = RowBlocks(comm, (X, target, w), 1 + (d + 1) * k)
        theta = np.zeros((d + 1) * k)
        report = as_progress(progress)
        if self.solver == "normal":
            theta, loss, n_iter = self._solve_normal(X, target, w, comm, total)
        elif self.solver == "lbfgs":
            fun = self._objective(blocks, total)
            theta, loss, _, n_iter = lbfgs(fun, theta, self.max_iter, self.tol, progress=report)
        elif self.solver == "gd":
            theta, loss, n_iter = self._gd(theta, blocks, total, report)
        else:
            theta, loss, n_iter = self._sgd(theta, comm, X, target, w, n_total, total, report)
        comm.Bcast(theta, root=0)  # every rank holds exactly rank 0's model
        if not (np.isfinite(theta).all() and np.isfinite(loss)):
            hint = (f"use a smaller learning_rate (got {self.learning_rate!r})"
                    if self.solver in ("gd", "sgd") else "scale the features")
            raise collective_error(InvalidParameterError(
                f"{type(self).__name__}(solver={self.solver!r}) diverged: the loss is not "
                f"finite after {n_iter} iteration(s); {hint}"))
        self._theta = theta
        coef, intercept = self._unpack(theta)
        self._set_coef(coef, intercept + shift)
        self.n_iter_ = int(n_iter)
        self.loss_ = float(loss)
        return self

    def _gd(self, theta, blocks, total, report):
        fun = self._objective(blocks, total)
        f, g = fun(theta)
        it = 0
        for it in range(1, self.max_iter + 1):
            if np.max(np.abs(g)) <= self.tol:
                it -= 1
                break
            theta = theta - self.learning_rate * g
            f, g = fun(theta)
            report(it, f)
            if not np.isfinite(f):
                break
        return theta, f, it

    def _sgd(self, theta, comm, X, target, w, n_total, total, report):
        d, k = self._shape
        seed = resolve_seed(self.random_state, comm)
        offset, _ = global_offset(X.shape[0], comm)
        buf = np.empty(2 + (d + 1) * k)
        stopper = EpochStopper(self.tol, self.n_iter_no_change)
        penalty = self._penalty(total)[:, None]
        self.loss_curve_ = []
        epoch_loss = np.inf
        it = 0
        for it in range(1, self.max_iter + 1):
            loss_sum = weight_sum = 0.0
            for rows in _epoch_batches(n_total, self.batch_size, seed, it, offset, X.shape[0]):
                wb = None if w is None else w[rows]
                buf[1:] = self._terms(theta, X[rows], target[rows], wb)
                buf[0] = rows.size if wb is None else wb.sum()
                out = _allreduce(comm, buf)
                if out[0] <= 0:
                    continue
                g = self._gradient(out[1:]) / out[0]
                t = theta.reshape(d + 1, k)[:d]
                g.reshape(d + 1, k)[:d] += penalty * t
                loss_sum += out[1]
                weight_sum += out[0]
                theta = theta - self.learning_rate * g
            epoch_loss = loss_sum / weight_sum + 0.5 * np.sum(
                penalty * theta.reshape(d + 1, k)[:d] ** 2)
            self.loss_curve_.append(float(epoch_loss))
            report(it, epoch_loss)
            if stopper.done(epoch_loss):
                break
        return theta, epoch_loss, it

    # -- persistence ------------------------------------------------------------------------

    def _get_state(self):
        check_is_fitted(self, "coef_")
        meta = {"params": self.get_params(), "n_features_in_": self.n_features_in_,
                "n_iter_": self.n_iter_, "loss_": self.loss_,
                "n_ranks_": getattr(self, "n_ranks_", 1)}
        if hasattr(self, "feature_names_in_"):
            meta["feature_names_in_"] = [str(n) for n in self.feature_names_in_]
        if hasattr(self, "classes_"):
            meta["classes_"] = classes_to_json(self.classes_)
        arrays = {"coef_": np.asarray(self.coef_, dtype=np.float64),
                  "intercept_": np.asarray(self.intercept_, dtype=np.float64),
                  "mean_": self.mean_, "scale_": self.scale_}
        self._stage_state(meta, arrays)
        return meta, arrays

    @classmethod
    def _from_state(cls, meta, arrays):
        names = cls._get_param_names()
        model = cls(**{k: v for k, v in meta["params"].items() if k in names})
        model.n_features_in_ = int(meta["n_features_in_"])
        model.n_iter_ = meta["n_iter_"]
        model.loss_ = meta["loss_"]
        model.n_ranks_ = meta.get("n_ranks_", 1)
        if "feature_names_in_" in meta:
            model.feature_names_in_ = np.asarray(meta["feature_names_in_"], dtype=object)
        if "classes_" in meta:
            model.classes_ = classes_from_json(meta["classes_"])
        model.coef_ = arrays["coef_"]
        model.intercept_ = arrays["intercept_"]
        model.mean_ = arrays["mean_"]
        model.scale_ = arrays["scale_"]
        model._check_params()
        model._stage_from_state(meta, arrays)
        d = model.preprocessor_.n_features_out
        outputs = 1 if model._task == "regression" else len(model.classes_)
        rows = 1 if outputs <= 2 else outputs
        if (model.coef_.shape not in ((d,), (rows, d)) or model.intercept_.size != rows
                or model.mean_.shape != (d,) or model.scale_.shape != (d,)):
            raise ValueError("array shapes do not match the expanded features and classes_")
        return model


class LinearRegression(RegressorMixin, _LinearModel):
    """Least squares (optionally L2-penalised) linear regression, data-parallel.

    Parameters
    ----------
    alpha : float, default 0.0
        L2 penalty on the standardised coefficients (0: ordinary least squares).
    solver : {"normal", "lbfgs", "gd", "sgd"}, default "normal"
    max_iter : int, default 1000
        Iterations (gd, lbfgs) or epochs (sgd).
    tol : float, default 1e-8
        Stop when the largest gradient component is at most ``tol`` (gd, lbfgs), or
        when the epoch loss has not improved by ``tol`` for ``n_iter_no_change`` epochs (sgd).
    learning_rate : float, default 0.1
        Step size of gd and sgd.
    batch_size : int, default 256
        Rows per sgd mini-batch (over all ranks).
    n_iter_no_change : int, default 5
    fit_intercept, standardize : bool, default True
    random_state : int or None
        Seeds the sgd row order.
    categorical_features : "from_dtype", array-like of int or str, or bool mask
        Features read as categories: by default the text and ``category`` columns of a
        DataFrame or Table; indices, names or a mask mark integer-coded columns of an
        array (as in scikit-learn's HistGradientBoosting).

    Attributes
    ----------
    coef_ : ndarray of shape (n_expanded,)
        Coefficients of the expanded columns, in their units (``n_expanded`` is
        ``n_features_in_`` for numeric data without missing values).
    intercept_ : float
    expanded_feature_names_ : ndarray of str, shape (n_expanded,)
        The columns ``coef_`` is over: ``feature`` (numeric, missing values imputed by
        the mean), ``feature=category`` (one-hot) and ``feature_missing`` (indicator).
    preprocessor_ : Preprocessor
        The fitted one-hot / imputation stage (:mod:`mpiml.models._preprocess`).
    feature_schema_ : Schema
        Kinds and vocabularies of the input features.
    mean_, scale_ : ndarray of shape (n_expanded,)
        Standardisation computed over all ranks' rows.
    n_iter_ : int
    loss_ : float
        Final value of the objective.
    """

    _model_type = "linear_regression"
    _solvers = ("normal", "gd", "sgd", "lbfgs")

    def __init__(self, *, alpha=0.0, solver="normal", max_iter=1000, tol=1e-8,
                 learning_rate=0.1, batch_size=256, n_iter_no_change=5, fit_intercept=True,
                 standardize=True, random_state=None,
                 categorical_features="from_dtype"):
        self.alpha = alpha
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter_no_change = n_iter_no_change
        self.fit_intercept = fit_intercept
        self.standardize = standardize
        self.random_state = random_state
        self.categorical_features = categorical_features

    def _check_penalty(self):
        check_float("alpha", self.alpha, low=0)

    def _penalty(self, total):
        """Per feature: the L2 weight on the standardised coefficients of the mean loss."""
        return np.full(self._shape[0], float(self.alpha))

    @collective
    def fit(self, X, y, sample_weight=None, *, comm=None, progress=None, feature_names=None):
        """Collective: fit on every rank's rows (this rank passes its own ``X``, ``y``).

        Parameters
        ----------
        X : ndarray of shape (n_local, n_features), DataFrame or Table
            NaN, None and ``pd.NA`` are missing values; text and ``category`` columns
            are categorical (see ``categorical_features``).
        y : ndarray of shape (n_local,)
        sample_weight : ndarray of shape (n_local,), optional
        comm : Communicator, optional
        progress : callable, optional
            ``progress(iteration, loss)`` (see :mod:`mpiml.models._base`).
        feature_names : list of str, optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, comm, progress, feature_names)

    @staticmethod
    def _prepare_target(y, comm):
        return y.reshape(-1, 1), 1

    def _target_shift(self, blocks, total):
        """Collective: the weighted mean of y over all ranks (0 without an intercept).

        The solvers fit ``y - mean``, so that a large offset in y costs no precision.
        """
        if not self.fit_intercept:
            return np.zeros(1)
        return blocks.sums(lambda X, t, w: np.array([t[:, 0].sum() if w is None
                                                     else w @ t[:, 0]]), 1) / total

    @staticmethod
    def _loss_residual(Z, target):
        R = Z - target
        return 0.5 * (R[:, 0] ** 2), R

    def _solve_normal(self, X, target, w, comm, total):
        d = X.shape[1]
        m = d + 1
        width = m * m + m + 1

        def gram(Xb, tb, wb):
            """``[X^T W X, X^T W y, y^T W y]`` of one block (standardised, with the
            intercept column), a chunk of rows at a time."""
            part = np.zeros(width)
            A = part[:m * m].reshape(m, m)
            b = part[m * m:m * m + m]
            for lo in range(0, Xb.shape[0], _CHUNK):
                Xt = np.empty((min(_CHUNK, Xb.shape[0] - lo), m))
                Xt[:, :d] = (Xb[lo:lo + _CHUNK] - self.mean_) / self.scale_
                Xt[:, d] = 1.0 if self.fit_intercept else 0.0
                yt = tb[lo:lo + _CHUNK, 0]
                Xw = Xt if wb is None else Xt * wb[lo:lo + _CHUNK, None]
                A += Xw.T @ Xt
                b += Xw.T @ yt
                part[-1] += (yt ** 2).sum() if wb is None else wb[lo:lo + _CHUNK] @ yt ** 2
            return part
        # fixed row blocks: the same normal equations, bit for bit, for any rank count
        buf = RowBlocks(comm, (X, target, w), width).sums(gram, width)
        A = buf[:m * m].reshape(m, m) / total
        b = buf[m * m:m * m + m] / total
        A[np.arange(d), np.arange(d)] += self.alpha
        theta = np.linalg.lstsq(A, b, rcond=None)[0]
        if not self.fit_intercept:
            theta[d] = 0.0
        yy = buf[-1] / total
        loss = 0.5 * (yy - 2 * theta @ b + theta @ (A @ theta))
        return theta, loss, 1

    def _set_coef(self, coef, intercept):
        self.coef_ = coef[:, 0].copy()
        self.intercept_ = float(intercept[0])

    def predict(self, X):
        """Local: predictions for this rank's rows, ndarray of shape (n_samples,)."""
        check_is_fitted(self, "coef_")
        return self._expand_X(X) @ self.coef_ + self.intercept_

    @classmethod
    def _from_state(cls, meta, arrays):
        model = super()._from_state(meta, arrays)
        model.intercept_ = float(np.asarray(model.intercept_).reshape(-1)[0])
        return model


class LogisticRegression(ClassifierMixin, _LinearModel):
    """L2-penalised logistic regression (binary, or multinomial softmax), data-parallel.

    Parameters
    ----------
    C : float, default 1.0
        Inverse of the L2 penalty strength, as in scikit-learn: the objective is
        ``C * sum_i w_i * logloss_i + ||coef_||^2 / 2`` (coefficients in raw feature
        units, the intercept not penalised). Smaller values regularise more;
        ``numpy.inf`` means no penalty (scikit-learn's ``penalty=None``).
    solver : {"lbfgs", "gd", "sgd"}, default "lbfgs"
    max_iter : int, default 100
    tol : float, default 1e-4
        Stop when the largest gradient component is at most ``tol`` (gd, lbfgs), or when
        the epoch loss has not improved by ``tol`` for ``n_iter_no_change`` epochs (sgd).
    learning_rate : float, default 0.5
        Step size of gd and sgd.
    batch_size : int, default 256
    n_iter_no_change : int, default 5
    fit_intercept, standardize : bool, default True
    random_state : int or None
    categorical_features : "from_dtype", array-like of int or str, or bool mask
        See :class:`LinearRegression`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Collected from every rank.
    coef_ : ndarray of shape (1, n_expanded) for two classes, else (n_classes, n_expanded)
        Over the columns of ``expanded_feature_names_`` (see :class:`LinearRegression`).
    intercept_ : ndarray of shape (1,) or (n_classes,)
    expanded_feature_names_, preprocessor_, feature_schema_
        See :class:`LinearRegression`.
    mean_, scale_ : ndarray of shape (n_expanded,)
    n_iter_ : int
    loss_ : float
    """

    _model_type = "logistic_regression"

    def __init__(self, *, C=1.0, solver="lbfgs", max_iter=100, tol=1e-4,
                 learning_rate=0.5, batch_size=256, n_iter_no_change=5, fit_intercept=True,
                 standardize=True, random_state=None,
                 categorical_features="from_dtype"):
        self.C = C
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter_no_change = n_iter_no_change
        self.fit_intercept = fit_intercept
        self.standardize = standardize
        self.random_state = random_state
        self.categorical_features = categorical_features

    def _check_penalty(self):
        if self.C != np.inf:  # C=inf: no penalty (scikit-learn's penalty=None)
            check_float("C", self.C, low=0, low_open=True)

    def _penalty(self, total):
        """Per feature: the L2 weight on the standardised coefficients of the mean loss,
        ``||coef||^2 / (2 C W)`` written for ``theta = coef * scale_``."""
        return 1.0 / (self.C * total * self.scale_ ** 2)

    @collective
    def fit(self, X, y, sample_weight=None, *, comm=None, progress=None, feature_names=None):
        """Collective: fit on every rank's rows (see :meth:`LinearRegression.fit`)."""
        return self._fit(X, y, sample_weight, comm, progress, feature_names)

    def _prepare_target(self, y, comm):
        self.classes_, codes = encode_classes(y, comm)
        k = self.classes_.size
        if k == 2:
            return codes.astype(np.float64).reshape(-1, 1), 1
        return codes, k

    @staticmethod
    def _target_shift(blocks, total):
        return 0

    @staticmethod
    def _loss_residual(Z, target):
        if Z.shape[1] == 1:
            z = Z[:, 0]
            t = target[:, 0]
            e = np.exp(-np.abs(z))  # one exp serves the loss and the sigmoid, stably
            loss = np.log1p(e) + np.maximum(z, 0.0) - t * z
            inv = 1.0 / (1.0 + e)
            p = np.where(z >= 0, inv, e * inv)
            return loss, (p - t).reshape(-1, 1)
        zmax = Z.max(axis=1, keepdims=True) if Z.size else np.zeros((0, 1))
        E = np.exp(Z - zmax)
        S = E.sum(axis=1, keepdims=True)
        rows = np.arange(Z.shape[0])
        loss = (np.log(S[:, 0]) + zmax[:, 0]) - Z[rows, target]
        P = E / S
        P[rows, target] -= 1.0
        return loss, P

    def _set_coef(self, coef, intercept):
        self.coef_ = np.ascontiguousarray(coef.T)
        self.intercept_ = intercept.copy()
        if self.intercept_.size > 1:  # softmax is unchanged by a shift of every intercept
            self.intercept_ -= self.intercept_.mean()

    def decision_function(self, X):
        """Local: ndarray of shape (n_samples,) for two classes, else (n_samples, n_classes)."""
        check_is_fitted(self, "coef_")
        Z = self._expand_X(X) @ self.coef_.T + self.intercept_
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict_proba(self, X):
        """Local: class probabilities, ndarray of shape (n_samples, n_classes)."""
        return self._proba(self.decision_function(X))

    def predict(self, X):
        """Local: predicted labels, ndarray of shape (n_samples,)."""
        return self._labels(self.decision_function(X))

    def predict_with_proba(self, X):
        """Local: ``(predict(X), predict_proba(X))`` from one evaluation of the model."""
        Z = self.decision_function(X)
        return self._labels(Z), self._proba(Z)

    @staticmethod
    def _proba(Z):
        if Z.ndim == 1:
            p = np.exp(-np.logaddexp(0.0, -Z))
            return np.column_stack([1.0 - p, p])
        Z = Z - Z.max(axis=1, keepdims=True)
        E = np.exp(Z)
        return E / E.sum(axis=1, keepdims=True)

    def _labels(self, Z):
        idx = (Z > 0).astype(np.int64) if Z.ndim == 1 else np.argmax(Z, axis=1)
        return self.classes_[idx]
