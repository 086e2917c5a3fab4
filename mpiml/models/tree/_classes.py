"""DecisionTreeClassifier and DecisionTreeRegressor on the distributed split search."""

__all__ = ["DecisionTreeClassifier", "DecisionTreeRegressor"]

import math
import numbers

import numpy as np
from scipy import sparse

from ...checks import (check_choice, check_float, check_int, check_random_state, encode_classes,
                       resolve_seed, validate_fit_data)
from ...comm import collective_error, resolve_comm
from ...comm.ops import MAX
from ...errors import DataError, InvalidParameterError
from .._base import (BaseEstimator, ClassifierMixin, RegressorMixin, check_is_fitted,
                     checked_params, classes_from_json, classes_to_json, collective)
from ._binning import bin_data, fit_bin_edges
from ._criteria import (ClassificationCriterion, RegressionCriterion, classification_channels,
                        regression_channels)
from ._grower import grow_tree
from ._tree import TREE_FIELDS, Tree

TREE_PARAMS = ("max_depth", "min_samples_split", "min_samples_leaf", "min_impurity_decrease",
               "max_features", "max_leaf_nodes", "max_bins")


# -- helpers shared with the forests ---------------------------------------------------------

def check_tree_params(est):
    """Validate the tree parameters of ``est`` (also ``criterion``, ``random_state`` and the
    classifiers' ``class_weight``); returns the tree parameters as a dict (raises naming the
    parameter and the value). Needs no data."""
    check_choice("criterion", est.criterion, est._criteria)
    check_random_state(est.random_state)
    weight = None if est._regression else est.class_weight
    if not (weight is None or isinstance(weight, dict)
            or (isinstance(weight, str) and weight == "balanced")):
        raise InvalidParameterError(f"class_weight must be None, 'balanced' or a dict, "
                                    f"got {est.class_weight!r}")
    return {
        "max_depth": check_int("max_depth", est.max_depth, low=1, allow_none=True),
        "min_samples_split": check_int("min_samples_split", est.min_samples_split, low=2),
        "min_samples_leaf": check_int("min_samples_leaf", est.min_samples_leaf, low=1),
        "min_impurity_decrease": check_float("min_impurity_decrease", est.min_impurity_decrease,
                                             low=0.0),
        "max_features": check_max_features(est.max_features),
        "max_leaf_nodes": check_int("max_leaf_nodes", est.max_leaf_nodes, low=2, allow_none=True),
        "max_bins": check_int("max_bins", est.max_bins, low=2, high=256),
    }


def fit_table(est, X, comm):
    """Collective: ``est._fit_X(X, comm)`` (arrays, DataFrames, Tables to the float matrix
    trees learn from), except for input that ``validate_fit_data`` refuses with the
    message scikit-learn expects (sparse matrices, arrays of 0 features)."""
    if sparse.issparse(X) or (isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[1] == 0):
        return X
    return est._fit_X(X, comm)


def allow_nan_tags(tags):
    """scikit-learn tags of a tree model: missing values (NaN) are data, not an error."""
    tags.input_tags.allow_nan = True
    return tags


def check_max_features(value):
    """None, "sqrt", "log2", an int >= 1 or a float in (0, 1]; numeric text (from command
    lines) is read as a number."""
    if value is None or value in ("sqrt", "log2"):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "none":
            return None
        for convert in (int, float):
            try:
                number = convert(text)
            except ValueError:
                continue
            try:
                return check_max_features(number)
            except InvalidParameterError:
                break
        raise InvalidParameterError(f"max_features must be None, 'sqrt', 'log2', an integer >= 1 "
                                    f"or a float in (0, 1], got {value!r}")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)) \
            and 0.0 < value <= 1.0:
        return float(value)
    raise InvalidParameterError(f"max_features must be None, 'sqrt', 'log2', an integer >= 1 "
                                f"or a float in (0, 1], got {value!r}")


def resolve_max_features(value, n_features):
    """Number of features drawn at each node."""
    if value is None:
        k = n_features
    elif value == "sqrt":
        k = int(math.sqrt(n_features))
    elif value == "log2":
        k = int(math.log2(n_features)) if n_features else 0
    elif isinstance(value, float):
        k = int(value * n_features)
    else:
        if value > n_features:  # every rank knows n_features: the same error everywhere
            raise collective_error(InvalidParameterError(
                f"max_features must be <= n_features ({n_features}), got {value!r}"))
        k = value
    return max(1, min(n_features, k))


def check_regression_target(y, sample_weight, n_total, comm):
    """Collective: raise :class:`DataError` on every rank when the fixed-point sums of
    ``w * y**2`` over ``n_total`` rows (bootstrap counts included) would overflow float64."""
    w = 1.0 if sample_weight is None else sample_weight.max(initial=0.0)
    top_y, top_w = comm.allreduce(np.array([np.abs(y).max(initial=0.0), w]), op=MAX).tolist()
    if not math.isfinite(top_y * top_y * max(top_w, 1.0) * float(n_total) ** 2):
        raise collective_error(DataError(f"y is too large for a squared-error tree: the sums of "
                                         f"its weighted squares overflow float64 "
                                         f"(max |y| = {top_y:g})"))


def class_weights(class_weight, codes, n_classes, comm):
    """Per-class weights (ndarray (n_classes,)), a dict, or None. Collective for 'balanced'."""
    if class_weight is None:
        return None
    if isinstance(class_weight, str):   # "balanced", checked with the parameters
        local = np.bincount(codes, minlength=n_classes).astype(np.int64)
        counts = np.empty_like(local)
        comm.Allreduce(local, counts)
        return counts.sum() / (n_classes * np.maximum(counts, 1))
    return class_weight or None


def row_weights(class_weight, classes, codes, sample_weight, comm):
    """Per-row weight: sample_weight times class weight, or None when both are absent.
    Collective. A bad ``class_weight`` raises the same error on every rank."""
    try:
        return _row_weights(class_weight, classes, codes, sample_weight, comm)
    except InvalidParameterError as exc:
        raise collective_error(exc) from None


def _row_weights(class_weight, classes, codes, sample_weight, comm):
    cw = class_weights(class_weight, codes, classes.size, comm)
    if isinstance(cw, dict):
        table = np.ones(classes.size)
        for label, w in cw.items():
            hit = np.nonzero(classes == label)[0]
            if hit.size == 0:
                raise InvalidParameterError(f"class_weight has a weight for class {label!r}, "
                                            f"which is not in the data")
            table[hit[0]] = check_float(f"class_weight[{label!r}]", w, low=0.0)
        cw = table
    if cw is None:
        return sample_weight
    w = cw[codes]
    return w if sample_weight is None else w * sample_weight


def global_channel_sums(channels, comm):
    """Collective: exact column sums of ``channels`` over every rank (comm None: local)."""
    local = channels.sum(axis=0, dtype=np.int64)
    if comm is None:
        return local
    total = np.empty_like(local)
    comm.Allreduce(local, total)
    return total


def total_weight(criterion, sums):
    """Weighted number of rows behind ``sums`` (min_impurity_decrease is relative to it)."""
    if isinstance(criterion, RegressionCriterion):
        return float(sums[1]) / criterion.scales[0]
    return float(np.asarray(criterion.class_weights(sums)).sum())


def fit_one_tree(binned, edges, targets, weights, *, regression, n_classes, criterion, params,
                 max_features, random_state, comm, channel_comm, mode="data", tree_index=0):
    """Build the exact channels and the criterion of one tree's rows, then grow it.

    Collective over ``comm`` (the grower's ranks); the channel scales are agreed over
    ``channel_comm`` (``None`` when this rank holds every row).
    """
    if regression:
        channels, scales = regression_channels(targets, weights, comm=channel_comm)
        split_criterion = RegressionCriterion(scales)
    else:
        channels, weighted, scale = classification_channels(targets, n_classes, weights,
                                                            comm=channel_comm)
        split_criterion = ClassificationCriterion(criterion, n_classes, weighted, scale)
    min_gain = 0.0
    if params["min_impurity_decrease"] > 0:
        root = global_channel_sums(channels, channel_comm)
        min_gain = params["min_impurity_decrease"] * total_weight(split_criterion, root)
    return grow_tree(binned, channels, split_criterion, edges, comm=comm, mode=mode,
                     max_depth=params["max_depth"], max_leaf_nodes=params["max_leaf_nodes"],
                     min_samples_leaf=params["min_samples_leaf"],
                     min_samples_split=params["min_samples_split"], min_gain=min_gain,
                     max_features=max_features, random_state=random_state,
                     tree_index=tree_index)


def tree_model_meta(model):
    """The JSON part of a fitted tree or forest's model file: parameters, features, classes."""
    params = model.get_params()
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = "dict"
    meta = {"params": params, "n_features_in_": model.n_features_in_,
            "max_features_": model.max_features_}
    if not model._regression:
        meta["classes"] = classes_to_json(model.classes_)
    if getattr(model, "feature_names_in_", None) is not None:
        meta["feature_names"] = [str(name) for name in model.feature_names_in_]
    return meta


def restore_feature_names(est, meta):
    """Set ``feature_names_in_`` from :func:`tree_model_meta`'s ``meta`` (where it has them)."""
    if "feature_names" in meta:
        est.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)


def gather_rows(comm, *arrays):
    """Collective: every rank gets the concatenation (in rank order) of each array's rows."""
    counts = np.asarray(comm.allgather(arrays[0].shape[0]), dtype=np.int64)
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        a = np.ascontiguousarray(a)
        width = int(np.prod(a.shape[1:], dtype=np.int64))
        full = np.empty((int(counts.sum()),) + a.shape[1:], dtype=a.dtype)
        comm.Allgatherv(a.reshape(-1), [full.reshape(-1), counts * width])
        out.append(full)
    return out


def gather_binned_rows(comm, binned, *arrays):
    """Collective: every rank's binned rows ((n_features, n_local) uint8, feature-major) and
    per-row arrays, concatenated in rank order, on every rank."""
    rows_major, *rest = gather_rows(comm, np.ascontiguousarray(binned.T), *arrays)
    return (np.ascontiguousarray(rows_major.T), *rest)


def normalised_importances(gains):
    total = gains.sum()
    return gains / total if total > 0 else np.zeros_like(gains)


# -- the estimators --------------------------------------------------------------------------

class _BaseDecisionTree(BaseEstimator):
    _regression = False
    _criteria = ("gini", "entropy")

    def __sklearn_tags__(self):
        return allow_nan_tags(super().__sklearn_tags__())

    def _check_params(self):
        """Validate every parameter (no data needed); returns the tree parameters."""
        params = check_tree_params(self)
        check_choice("parallel", self.parallel, ("data", "feature"))
        return params

    def _fit(self, X, y, sample_weight, comm):
        c = resolve_comm(comm)
        params = checked_params(self, c)
        parallel = self.parallel
        X = fit_table(self, X, c)
        X, y, sample_weight, n_total = validate_fit_data(X, y, c, sample_weight,
                                                         numeric_y=self._regression,
                                                         estimator=self, allow_nan=True)
        seed = resolve_seed(self.random_state, c)
        if self._regression:
            check_regression_target(y, sample_weight, n_total, c)
            weights = sample_weight
            targets = y
        else:
            classes, targets = encode_classes(y, c)
            weights = row_weights(self.class_weight, classes, targets, sample_weight, c)
            self.classes_ = classes
            self.n_classes_ = int(classes.size)
        if weights is not None and not (kept := weights > 0).all():
            # rows of weight 0 take no part, not even in the bin edges: the tree is the
            # one grown without them
            X, targets, weights = X[kept], targets[kept], weights[kept]
        n_features = X.shape[1]
        k = resolve_max_features(params["max_features"], n_features)
        edges = fit_bin_edges(X, params["max_bins"], comm=c,
                              n_categories=self.feature_schema_.n_categories)
        binned = bin_data(X, edges)
        channel_comm = c
        if parallel == "feature" and c.size > 1:
            binned, targets, weights = gather_binned_rows(c, binned, targets, weights)
            channel_comm = None
        self.tree_ = fit_one_tree(binned, edges, targets, weights, regression=self._regression,
                                  n_classes=getattr(self, "n_classes_", 1),
                                  criterion=self.criterion, params=params,
                                  max_features=k, random_state=seed, comm=c,
                                  channel_comm=channel_comm, mode=parallel)
        self.n_features_in_ = n_features
        self.max_features_ = k
        self.n_outputs_ = 1
        self.feature_importances_ = normalised_importances(self.tree_.feature_gains(n_features))
        self._record_fit(c)
        return self

    def apply(self, X):
        """Leaf index of each row. Local. ndarray (n,) int64."""
        check_is_fitted(self, "tree_")
        return self.tree_.apply(self._check_predict_X(X, allow_nan=True))

    def get_depth(self):
        check_is_fitted(self, "tree_")
        return self.tree_.max_depth

    def get_n_leaves(self):
        check_is_fitted(self, "tree_")
        return self.tree_.n_leaves

    # -- persistence -----------------------------------------------------------------

    def _get_state(self):
        check_is_fitted(self, "tree_")
        arrays = {f"tree_{name}": a for name, a in self.tree_.arrays().items()}
        return tree_model_meta(self), arrays

    @classmethod
    def _from_state(cls, meta, arrays):
        params = dict(meta["params"])
        if params.get("class_weight") == "dict":
            params["class_weight"] = None
        est = cls(**{k: v for k, v in params.items() if k in cls._get_param_names()})
        est.tree_ = Tree(**{name: np.asarray(arrays[f"tree_{name}"]) for name in TREE_FIELDS
                            if f"tree_{name}" in arrays})
        est.n_features_in_ = int(meta["n_features_in_"])
        est.max_features_ = int(meta["max_features_"])
        est.n_outputs_ = 1
        restore_feature_names(est, meta)
        est.feature_importances_ = normalised_importances(est.tree_.feature_gains(est.n_features_in_))
        if not cls._regression:
            est.classes_ = classes_from_json(meta["classes"])
            est.n_classes_ = int(est.classes_.size)
        return est


class DecisionTreeClassifier(ClassifierMixin, _BaseDecisionTree):
    """A decision tree classifier grown by the distributed histogram split search.

    The tree is identical, node for node, for any number of ranks and either backend.

    Parameters
    ----------
    criterion : {"gini", "entropy"}
    max_depth : int or None
    min_samples_split, min_samples_leaf : int
    min_impurity_decrease : float
        Split only when the weighted impurity decrease (relative to all rows) is at least this.
    max_features : None, "sqrt", "log2", int or float
        Features drawn at each node (from random_state and the node id).
    max_leaf_nodes : int or None
        Best-first growth up to this many leaves.
    max_bins : int, 2..256
        Bins per feature (thresholds are quantile bin edges; at most 255 when the
        feature has missing values, which take a bin of their own).
    class_weight : None, "balanced" or dict
    random_state : int or None
    parallel : {"data", "feature"}
        ``"data"``: rows stay sharded, histograms are reduce-scattered by feature.
        ``"feature"``: every rank gathers every row and scores its block of features.
    categorical_features : "from_dtype", None, array of int, str or bool
        Which features are categorical (as scikit-learn's HistGradientBoosting):
        ``"from_dtype"`` takes pandas ``category``/object/string columns (and a
        :class:`~mpiml.data.tables.Table`'s categorical columns). X may hold NaN (missing
        values); see the README on missing values and category-subset splits.

    Attributes
    ----------
    tree_ : Tree
        Flat arrays; ``tree_.value`` holds the class probabilities of each node.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_, n_classes_, max_features_ : int
    feature_importances_ : ndarray of shape (n_features,)
    """

    _model_type = "decision_tree_classifier"

    def __init__(self, criterion="gini", max_depth=None, min_samples_split=2, min_samples_leaf=1,
                 min_impurity_decrease=0.0, max_features=None, max_leaf_nodes=None, max_bins=255,
                 class_weight=None, random_state=None, parallel="data",
                 categorical_features="from_dtype"):
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_impurity_decrease = min_impurity_decrease
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.max_bins = max_bins
        self.class_weight = class_weight
        self.random_state = random_state
        self.parallel = parallel
        self.categorical_features = categorical_features

    @collective
    def fit(self, X, y, sample_weight=None, *, comm=None):
        """Collective: grow the tree on every rank's rows ``X`` (n_local, n_features), ``y``
        (n_local,). Returns self."""
        return self._fit(X, y, sample_weight, comm)

    def predict_proba(self, X):
        """Class probabilities, ndarray of shape (n, n_classes). Local."""
        check_is_fitted(self, "tree_")
        return self.tree_.predict(self._check_predict_X(X, allow_nan=True))

    def predict(self, X):
        """Predicted class labels, ndarray of shape (n,). Local."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class DecisionTreeRegressor(RegressorMixin, _BaseDecisionTree):
    """A decision tree regressor (squared error) grown by the distributed histogram split
    search; sums of y and y^2 are kept in exact fixed point, so the tree is identical for
    any number of ranks and either backend.

    Parameters are those of :class:`DecisionTreeClassifier` without ``class_weight``;
    ``criterion`` is ``"squared_error"`` (the variance decrease).
    """

    _model_type = "decision_tree_regressor"
    _regression = True
    _criteria = ("squared_error",)

    def __init__(self, criterion="squared_error", max_depth=None, min_samples_split=2,
                 min_samples_leaf=1, min_impurity_decrease=0.0, max_features=None,
                 max_leaf_nodes=None, max_bins=255, random_state=None, parallel="data",
                 categorical_features="from_dtype"):
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_impurity_decrease = min_impurity_decrease
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.max_bins = max_bins
        self.random_state = random_state
        self.parallel = parallel
        self.categorical_features = categorical_features

    @collective
    def fit(self, X, y, sample_weight=None, *, comm=None):
        """Collective: grow the tree on every rank's rows. Returns self."""
        return self._fit(X, y, sample_weight, comm)

    def predict(self, X):
        """Predicted values, ndarray of shape (n,). Local."""
        check_is_fitted(self, "tree_")
        return self.tree_.predict(self._check_predict_X(X, allow_nan=True))[:, 0]
