"""Data-parallel multi-layer perceptrons: ``MLPClassifier`` and ``MLPRegressor``.

Every rank holds the same weights. A mini-batch is a set of global rows drawn from
``(random_state, epoch)``; each rank back-propagates its own rows of the batch, writes
the gradients of every layer into ONE flat buffer (with the batch weight and loss) and
allreduces it, then every rank applies the same SGD-with-momentum or Adam update. The
batches, and so the model, are the same for any rank count (up to rounding). With
``batch_size`` at least the number of rows (full batch) the rows are summed over fixed
global blocks, and the model is the same bits for any rank count.

Objective per batch: ``mean_i loss_i + alpha / 2 * sum ||W_l||^2`` (biases are not
penalised); half squared error for regression, log-loss (logistic output for two
classes, softmax otherwise) for classification. ``X`` may be an array (NaN missing), a
DataFrame or a :class:`~mpiml.data.tables.Table`: the collective stage of
:mod:`mpiml.models._preprocess` (saved in the model) one-hot encodes categories and
imputes missing numbers with an indicator, then the numeric value columns are standardised
with a mean and scale computed over all ranks (``mean_``, ``scale_``; the 0/1 one-hot and
indicator columns keep mean 0 and scale 1, as scikit-learn's usual pipeline does);
``coefs_[0]``
has one row per column of ``expanded_feature_names_``.
"""

__all__ = ["MLPClassifier", "MLPRegressor"]

import numpy as np

from ..checks import (check_bool, check_choice, check_float, check_int, check_int_tuple,
                      encode_classes, resolve_seed)
from ..comm import collective_error, global_offset, resolve_comm
from ..comm.rowblocks import RowBlocks
from ..errors import InvalidParameterError
from ..progress import as_progress
from ._base import (BaseEstimator, ClassifierMixin, EpochStopper, RegressorMixin, check_is_fitted,
                    checked_params, classes_from_json, classes_to_json, collective)
from ._preprocess import TablePreprocessing
from .linear import LogisticRegression, _epoch_batches, standardize_stats

_ACTIVATIONS = ("relu", "tanh")


def _layout(sizes):
    """Offsets of each layer's (W, b) in the flat parameter vector."""
    spans, pos = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        spans.append((pos, pos + fan_in * fan_out, pos + fan_in * fan_out + fan_out,
                      fan_in, fan_out))
        pos += fan_in * fan_out + fan_out
    return spans, pos


def _views(flat, spans):
    return [(flat[a:b].reshape(i, o), flat[b:c]) for a, b, c, i, o in spans]


class _MLP(TablePreprocessing, BaseEstimator):
    def __init__(self, *, hidden_layer_sizes=(100,), activation="relu", solver="adam",
                 alpha=1e-4, batch_size=200, learning_rate_init=1e-3, max_iter=200, tol=1e-4,
                 n_iter_no_change=10, momentum=0.9, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 standardize=True, random_state=None, categorical_features="from_dtype"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.standardize = standardize
        self.random_state = random_state
        self.categorical_features = categorical_features

    def _check_params(self):
        hidden = check_int_tuple("hidden_layer_sizes", self.hidden_layer_sizes)
        check_choice("activation", self.activation, _ACTIVATIONS)
        check_choice("solver", self.solver, ("sgd", "adam"))
        check_float("alpha", self.alpha, low=0)
        check_int("batch_size", self.batch_size, low=1)
        check_float("learning_rate_init", self.learning_rate_init, low=0, low_open=True)
        check_int("max_iter", self.max_iter, low=1)
        check_float("tol", self.tol, low=0)
        check_int("n_iter_no_change", self.n_iter_no_change, low=1)
        check_float("momentum", self.momentum, low=0, high=1, high_open=True)
        check_float("beta_1", self.beta_1, low=0, high=1, high_open=True)
        check_float("beta_2", self.beta_2, low=0, high=1, high_open=True)
        check_float("epsilon", self.epsilon, low=0, low_open=True)
        check_bool("standardize", self.standardize)
        return hidden

    # -- forward and backward ---------------------------------------------------------------

    def _forward(self, X, layers):
        acts = [(X - self.mean_) / self.scale_]
        for i, (W, b) in enumerate(layers):
            Z = acts[-1] @ W + b
            if i < len(layers) - 1:
                Z = np.maximum(Z, 0.0) if self.activation == "relu" else np.tanh(Z)
            acts.append(Z)
        return acts

    def _local(self, theta, X, target, w, out, spans):
        """Weight sum, loss sum and the gradient of every layer into ``out`` (fused)."""
        layers = _views(theta, spans)
        grads = _views(out[2:], spans)
        acts = self._forward(X, layers)
        loss, delta = self._loss_residual(acts[-1], target)
        if w is not None:
            out[0], out[1] = w.sum(), loss @ w
            delta = delta * w[:, None]
        else:
            out[0], out[1] = X.shape[0], loss.sum()
        for i in range(len(layers) - 1, -1, -1):
            gW, gb = grads[i]
            np.matmul(acts[i].T, delta, out=gW)
            gb[...] = delta.sum(axis=0)
            if i:
                delta = delta @ layers[i][0].T
                if self.activation == "relu":
                    delta *= acts[i] > 0
                else:
                    delta *= 1.0 - acts[i] ** 2

    # -- fit --------------------------------------------------------------------------------

    def _fit(self, X, y, sample_weight, comm, progress, feature_names):
        comm = resolve_comm(comm)
        hidden = checked_params(self, comm)
        X, y, w, n_total = self._fit_table(X, y, sample_weight, comm, feature_names)
        target, n_out = self._prepare_target(y, comm)
        d = X.shape[1]
        self.mean_, self.scale_, _ = standardize_stats(X, w, comm, scale=self.standardize,
                                                       center=self.standardize)
        # 0/1 columns (one-hot, missing indicators) stay as they are: scaled by their
        # spread, a rare category's column would weigh the most
        values = self.preprocessor_.value_columns
        self.mean_[~values], self.scale_[~values] = 0.0, 1.0
        sizes = (d,) + hidden + (n_out,)
        spans, n_params = _layout(sizes)
        seed = resolve_seed(self.random_state, comm)
        theta = self._init_params(sizes, spans, n_params, seed)
        offset, _ = global_offset(X.shape[0], comm)
        report = as_progress(progress)
        buf = np.empty(2 + n_params)
        velocity = np.zeros(n_params)
        second = np.zeros(n_params)
        weight_mask = np.zeros(n_params, dtype=bool)
        for a, b, _, _, _ in spans:
            weight_mask[a:b] = True
        lr = self.learning_rate_init
        stopper, step = EpochStopper(self.tol, self.n_iter_no_change), 0
        self.loss_curve_ = []
        epoch = 0
        # A batch of every row sums over fixed row blocks: the same bits for any P.
        blocks = (RowBlocks(comm, (X, target, w), buf.size) if self.batch_size >= n_total
                  else None)

        def block_sums(Xb, tb, wb):
            part = np.empty_like(buf)
            self._local(theta, Xb, tb, wb, part, spans)
            return part
        for epoch in range(1, self.max_iter + 1):
            loss_sum = weight_sum = 0.0
            batches = ([None] if blocks is not None else
                       _epoch_batches(n_total, self.batch_size, seed, epoch, offset, X.shape[0]))
            for rows in batches:
                if blocks is not None:
                    out = blocks.sums(block_sums, buf.size)
                else:
                    wb = None if w is None else w[rows]
                    self._local(theta, X[rows], target[rows], wb, buf, spans)
                    out = np.empty_like(buf)
                    comm.Allreduce(buf, out)
                if out[0] <= 0:
                    continue
                # scikit-learn's penalty: alpha / 2 * ||W||^2 per batch, over the batch's
                # weight like the loss
                grad = out[2:] / out[0]
                grad[weight_mask] += self.alpha / out[0] * theta[weight_mask]
                loss_sum += out[1] + 0.5 * self.alpha * float(theta[weight_mask] @
                                                              theta[weight_mask])
                weight_sum += out[0]
                step += 1
                if self.solver == "adam":
                    velocity = self.beta_1 * velocity + (1 - self.beta_1) * grad
                    second = self.beta_2 * second + (1 - self.beta_2) * grad * grad
                    rate = lr * np.sqrt(1 - self.beta_2 ** step) / (1 - self.beta_1 ** step)
                    theta = theta - rate * velocity / (np.sqrt(second) + self.epsilon)
                else:
                    velocity = self.momentum * velocity - lr * grad
                    theta = theta + velocity
            epoch_loss = loss_sum / weight_sum
            self.loss_curve_.append(float(epoch_loss))
            report(epoch, epoch_loss)
            if stopper.done(epoch_loss):
                break
        comm.Bcast(theta, root=0)
        if not (np.isfinite(theta).all() and np.isfinite(self.loss_curve_[-1])):
            raise collective_error(InvalidParameterError(
                f"{type(self).__name__}(solver={self.solver!r}) diverged: the loss is not "
                f"finite after {epoch} epoch(s); use a smaller learning_rate_init (got "
                f"{self.learning_rate_init!r}) or scale the target"))
        self._set_params(theta, sizes)
        self.n_iter_ = epoch
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else float("nan")
        return self

    def _init_params(self, sizes, spans, n_params, seed):
        rng = np.random.default_rng([seed, 7])
        theta = np.empty(n_params)
        for i, (W, b) in enumerate(_views(theta, spans)):
            fan_in, fan_out = W.shape
            factor = 2.0 if (i == len(spans) - 1 and self._task == "classification") else 6.0
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[...] = rng.uniform(-bound, bound, W.shape)
            b[...] = rng.uniform(-bound, bound, b.shape)
        return theta

    def _set_params(self, theta, sizes):
        spans, _ = _layout(sizes)
        self._theta = theta
        self._spans = spans
        self.coefs_ = [W for W, _ in _views(theta, spans)]
        self.intercepts_ = [b for _, b in _views(theta, spans)]
        self.n_layers_ = len(sizes)
        self.n_outputs_ = sizes[-1]

    def _output(self, X):
        check_is_fitted(self, "coefs_")
        return self._forward(self._expand_X(X), list(zip(self.coefs_, self.intercepts_)))[-1]

    # -- persistence ------------------------------------------------------------------------

    def _get_state(self):
        check_is_fitted(self, "coefs_")
        params = self.get_params()
        params["hidden_layer_sizes"] = list(check_int_tuple("hidden_layer_sizes",
                                                            params["hidden_layer_sizes"]))
        meta = {"params": params, "n_features_in_": self.n_features_in_,
                "n_iter_": self.n_iter_, "loss_": self.loss_,
                "sizes": [W.shape[0] for W in self.coefs_] + [self.n_outputs_],
                "n_ranks_": getattr(self, "n_ranks_", 1)}
        if hasattr(self, "feature_names_in_"):
            meta["feature_names_in_"] = [str(n) for n in self.feature_names_in_]
        if hasattr(self, "classes_"):
            meta["classes_"] = classes_to_json(self.classes_)
        arrays = {"params": self._theta, "mean_": self.mean_, "scale_": self.scale_}
        self._stage_state(meta, arrays)
        return meta, arrays

    @classmethod
    def _from_state(cls, meta, arrays):
        params = dict(meta["params"])
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        model = cls(**params)
        sizes = tuple(int(s) for s in meta["sizes"])
        spans, n_params = _layout(sizes)
        theta = arrays["params"]
        if theta.shape != (n_params,) or arrays["mean_"].shape != (sizes[0],):
            raise ValueError("array shapes do not match the layer sizes")
        model.n_features_in_ = int(meta["n_features_in_"])
        model.n_iter_ = meta["n_iter_"]
        model.loss_ = meta["loss_"]
        model.n_ranks_ = meta.get("n_ranks_", 1)
        model.mean_ = arrays["mean_"]
        model.scale_ = arrays["scale_"]
        if "feature_names_in_" in meta:
            model.feature_names_in_ = np.asarray(meta["feature_names_in_"], dtype=object)
        if "classes_" in meta:
            model.classes_ = classes_from_json(meta["classes_"])
        model._check_params()
        model._stage_from_state(meta, arrays)
        outputs = len(model.classes_) if model._task == "classification" else 1
        if (sizes[-1] != (1 if outputs <= 2 else outputs)
                or sizes[0] != model.preprocessor_.n_features_out):
            raise ValueError("the layer sizes do not match the expanded features and classes_")
        model._set_params(theta, sizes)
        return model


_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Units of each hidden layer (``apps/train.py --hidden 64,32``).
    activation : {"relu", "tanh"}, default "relu"
    solver : {"adam", "sgd"}, default "adam"
        Adam, or SGD with (heavy-ball) momentum.
    alpha : float, default 1e-4
        L2 penalty on the weights.
    batch_size : int, default 200
        Rows per mini-batch over all ranks.
    learning_rate_init : float, default 1e-3
    max_iter : int, default 200
        Epochs.
    tol : float, default 1e-4
        Stop when the epoch loss has not improved by ``tol`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default 10
    momentum : float, default 0.9 (sgd)
    beta_1, beta_2, epsilon : float (adam)
    standardize : bool, default True
    random_state : int or None
        Seeds the initial weights and the batch order (shared by every rank).
    categorical_features : "from_dtype", array-like of int or str, or bool mask
        Features read as categories: by default the text and ``category`` columns of a
        DataFrame or Table; indices, names or a mask mark integer-coded array columns.

    Attributes
    ----------
    coefs_ : list of ndarray of shape (fan_in, fan_out)
        ``coefs_[0]`` has one row per expanded input column.
    intercepts_ : list of ndarray of shape (fan_out,)
    expanded_feature_names_ : ndarray of str, shape (n_expanded,)
        The input columns after the stage: ``feature``, ``feature=category`` (one-hot)
        and ``feature_missing`` (indicator); the features themselves for numeric data
        without missing values.
    preprocessor_ : Preprocessor
        The fitted one-hot / imputation stage.
    feature_schema_ : Schema
    mean_, scale_ : ndarray of shape (n_expanded,)
    loss_curve_ : list of float
        Mean training loss of each epoch.
    n_iter_ : int
    """


class MLPClassifier(ClassifierMixin, _MLP):
    __doc__ = "Data-parallel multi-layer perceptron classifier.\n" + _PARAMS_DOC + \
        "classes_ : ndarray of shape (n_classes,)\n"
    _model_type = "mlp_classifier"

    @collective
    def fit(self, X, y, sample_weight=None, *, comm=None, progress=None, feature_names=None):
        """Collective: train on every rank's rows (this rank passes its own ``X``, ``y``).

        Parameters
        ----------
        X : ndarray of shape (n_local, n_features), DataFrame or Table
            NaN, None and ``pd.NA`` are missing values; text and ``category`` columns
            are categorical.
        y : ndarray of shape (n_local,)
        sample_weight : ndarray of shape (n_local,), optional
        comm : Communicator, optional
        progress : callable, optional
            ``progress(epoch, loss)``.
        feature_names : list of str, optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, comm, progress, feature_names)

    def _prepare_target(self, y, comm):
        self.classes_, codes = encode_classes(y, comm)
        if self.classes_.size == 2:
            return codes.astype(np.float64).reshape(-1, 1), 1
        return codes, self.classes_.size

    _loss_residual = staticmethod(LogisticRegression._loss_residual)

    def predict_proba(self, X):
        """Local: class probabilities, ndarray of shape (n_samples, n_classes)."""
        return self._proba(self._output(X))

    def predict(self, X):
        """Local: predicted labels, ndarray of shape (n_samples,)."""
        return self._labels(self._output(X))

    def predict_with_proba(self, X):
        """Local: ``(predict(X), predict_proba(X))`` from one pass through the network."""
        Z = self._output(X)
        return self._labels(Z), self._proba(Z)

    @staticmethod
    def _proba(Z):
        if Z.shape[1] == 1:
            p = np.exp(-np.logaddexp(0.0, -Z[:, 0]))
            return np.column_stack([1.0 - p, p])
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)

    def _labels(self, Z):
        idx = (Z[:, 0] > 0).astype(np.int64) if Z.shape[1] == 1 else np.argmax(Z, axis=1)
        return self.classes_[idx]


class MLPRegressor(RegressorMixin, _MLP):
    __doc__ = "Data-parallel multi-layer perceptron regressor (half squared error).\n" + \
        _PARAMS_DOC
    _model_type = "mlp_regressor"

    @collective
    def fit(self, X, y, sample_weight=None, *, comm=None, progress=None, feature_names=None):
        """Collective: train on every rank's rows (see :meth:`MLPClassifier.fit`)."""
        return self._fit(X, y, sample_weight, comm, progress, feature_names)

    @staticmethod
    def _prepare_target(y, comm):
        return y.reshape(-1, 1), 1

    @staticmethod
    def _loss_residual(Z, target):
        R = Z - target
        return 0.5 * R[:, 0] ** 2, R

    def predict(self, X):
        """Local: predictions, ndarray of shape (n_samples,)."""
        return self._output(X)[:, 0]
