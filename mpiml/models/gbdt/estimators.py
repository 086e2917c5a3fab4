"""GradientBoostingClassifier and GradientBoostingRegressor."""

__all__ = ["GradientBoostingClassifier", "GradientBoostingRegressor"]

import numpy as np

from ...checks import encode_classes
from .._base import ClassifierMixin, RegressorMixin, classes_from_json, classes_to_json
from ._boosting import BaseGradientBoosting
from .losses import AbsoluteError, BinaryLogLoss, HalfSquaredError, MultinomialLogLoss

_PARAMS_DOC = """
    Parameters
    ----------
    loss : str
        {loss}
    learning_rate : float, default 0.1
        Shrinkage of every leaf value.
    n_estimators : int, default 100
        Boosting rounds (at most; early stopping may end sooner).
    max_leaf_nodes : int or None, default 31
        Leaves per tree, grown best leaf first (leaf-wise). None: depth-wise growth
        bounded by ``max_depth``.
    max_depth : int or None, default None
    min_samples_leaf : int, default 20
        Rows (of the round's sample) in every leaf.
    l2_regularization : float, default 0.0
        ``l2`` in the gain ``G^2/(H+l2)`` and the leaf value ``-G/(H+l2)``.
    max_bins : int, default 255
        Bins per feature (edges from a sample chosen by global row index).
    subsample : float, default 1.0
        Share of training rows each round uses, drawn from (random_state, round,
        global row index): the same rows for any rank count.
    validation_fraction : float or None, default None
        Share of rows held out (drawn by global row index) whose loss is recorded in
        ``validation_loss_`` and drives early stopping.
    n_iter_no_change : int or None, default None
        Stop when none of the last ``n_iter_no_change`` rounds lowered the validation
        loss (the training loss without a validation set) by more than ``tol``.
    tol : float, default 1e-7
    random_state : int or None, default None
    quantize_gradients : bool, default True
        Search splits on gradients and hessians rounded (stochastically, unbiased, from
        the global row index) to a few integer levels packed with the row count into one
        integer per row, as LightGBM's quantized training: about twice as fast
        histograms. The leaf values are then computed from the exact sums. Used up to
        about a million training rows (beyond, the field widths leave too few levels)
        and ignored above; False always searches on the exact fixed-point sums.
    categorical_features : "from_dtype", None, array of int, str or bool, default "from_dtype"
        Which features are categorical (as scikit-learn's HistGradientBoosting):
        ``"from_dtype"`` takes pandas ``category``/object/string columns and a
        :class:`~mpiml.data.tables.Table`'s categorical columns. X may hold NaN
        (missing values, sent to the side each split learned).

    Attributes
    ----------
    n_iter_ : int
        Rounds made.
    n_trees_per_iteration_ : int
        Trees per round ({per_round}).
    trees_ : list of mpiml.models.tree.Tree
        ``n_iter_ * n_trees_per_iteration_`` trees, round by round.
    baseline_ : ndarray of shape (``n_trees_per_iteration_``,)
        Raw score before the first tree.
    train_loss_, validation_loss_ : list of float
        Mean loss (exact over all rows) of the model after 0, 1, ..., ``n_iter_`` rounds;
        ``validation_loss_`` is empty without a validation set.
    feature_importances_ : ndarray of shape (n_features,)
        Total split gain per feature, normalised to sum to 1.
    n_features_in_ : int

    Notes
    -----
    The fitted model is identical to the last bit for any number of ranks and either
    backend: gradients and hessians are summed in int64 fixed point (see
    :mod:`mpiml.models.gbdt._boosting`).
"""


class GradientBoostingClassifier(ClassifierMixin, BaseGradientBoosting):
    __doc__ = ("Gradient-boosted trees for classification: binary log-loss, or softmax with "
               "one tree per class per round.\n" + _PARAMS_DOC.format(
                   loss="'log_loss' (binary or multinomial cross-entropy).",
                   per_round="1 for two classes, else the number of classes"))

    _model_type = "gbdt_classifier"
    _loss_names = ("log_loss",)

    def __init__(self, *, loss="log_loss", learning_rate=0.1, n_estimators=100,
                 max_leaf_nodes=31, max_depth=None, min_samples_leaf=20, l2_regularization=0.0,
                 max_bins=255, subsample=1.0, validation_fraction=None, n_iter_no_change=None,
                 tol=1e-7, random_state=None, quantize_gradients=True,
                 categorical_features="from_dtype"):
        super().__init__(loss=loss, learning_rate=learning_rate, n_estimators=n_estimators,
                         max_leaf_nodes=max_leaf_nodes, max_depth=max_depth,
                         min_samples_leaf=min_samples_leaf, l2_regularization=l2_regularization,
                         max_bins=max_bins, subsample=subsample,
                         validation_fraction=validation_fraction,
                         n_iter_no_change=n_iter_no_change, tol=tol, random_state=random_state,
                         quantize_gradients=quantize_gradients,
                         categorical_features=categorical_features)

    def _encode_target(self, comm, y):
        self.classes_, codes = encode_classes(y, comm)
        self.n_classes_ = len(self.classes_)
        # two classes: 0/1 codes, one byte a row (exact as floats in the loss)
        return codes.astype(np.uint8) if self.n_classes_ == 2 else codes

    def _make_loss(self):
        if self.n_classes_ == 2:
            return BinaryLogLoss()
        return MultinomialLogLoss(self.n_classes_)

    def _same_target(self, model):
        return np.array_equal(np.asarray(model.classes_), np.asarray(self.classes_))

    def _target_meta(self):
        return {"classes": classes_to_json(self.classes_)}

    def _set_target_meta(self, meta):
        self.classes_ = classes_from_json(meta["classes"])
        self.n_classes_ = len(self.classes_)

    def decision_function(self, X):
        """Raw scores: (n,) logits for two classes, else (n, n_classes). Local."""
        raw = self._raw_predict(X)
        return raw[:, 0] if raw.shape[1] == 1 else raw

    def predict_proba(self, X):
        """Class probabilities of shape (n, n_classes). Local."""
        raw = self._raw_predict(X)  # checks that the model is fitted
        return self._loss_.probabilities(raw)

    def predict(self, X):
        """Most probable class of each row, shape (n,). Local."""
        proba = self.predict_proba(X)  # checks that the model is fitted
        return self.classes_[np.argmax(proba, axis=1)]

    def staged_predict_proba(self, X):
        """Yield ``predict_proba(X)`` after each round. Local."""
        for raw in self._staged_raw_predict(X):
            yield self._loss_.probabilities(raw)

    def staged_predict(self, X):
        """Yield ``predict(X)`` after each round. Local."""
        for proba in self.staged_predict_proba(X):
            yield self.classes_[np.argmax(proba, axis=1)]


class GradientBoostingRegressor(RegressorMixin, BaseGradientBoosting):
    __doc__ = ("Gradient-boosted trees for regression (squared or absolute error).\n"
               + _PARAMS_DOC.format(
                   loss="'squared_error' or 'absolute_error' (leaf values: learning_rate x the "
                        "weighted median of the leaf's residuals).", per_round="1"))

    _model_type = "gbdt_regressor"
    _loss_names = ("squared_error", "absolute_error")

    def __init__(self, *, loss="squared_error", learning_rate=0.1, n_estimators=100,
                 max_leaf_nodes=31, max_depth=None, min_samples_leaf=20, l2_regularization=0.0,
                 max_bins=255, subsample=1.0, validation_fraction=None, n_iter_no_change=None,
                 tol=1e-7, random_state=None, quantize_gradients=True,
                 categorical_features="from_dtype"):
        super().__init__(loss=loss, learning_rate=learning_rate, n_estimators=n_estimators,
                         max_leaf_nodes=max_leaf_nodes, max_depth=max_depth,
                         min_samples_leaf=min_samples_leaf, l2_regularization=l2_regularization,
                         max_bins=max_bins, subsample=subsample,
                         validation_fraction=validation_fraction,
                         n_iter_no_change=n_iter_no_change, tol=tol, random_state=random_state,
                         quantize_gradients=quantize_gradients,
                         categorical_features=categorical_features)

    def _encode_target(self, comm, y):
        return np.asarray(y, dtype=np.float64)

    def _make_loss(self):
        return AbsoluteError() if self.loss == "absolute_error" else HalfSquaredError()

    def predict(self, X):
        """Predicted values, shape (n,). Local."""
        return self._raw_predict(X)[:, 0]

    def staged_predict(self, X):
        """Yield ``predict(X)`` after each round. Local."""
        for raw in self._staged_raw_predict(X):
            yield raw[:, 0]
