"""Random forests: RandomForestClassifier and RandomForestRegressor.

Two ways to spread the work (``parallel``):

* ``"trees"`` (default): every rank gathers every row (binned: one byte per value) and
  grows its block of the trees (``block_range(n_estimators, size, rank)``); the trees
  are then allgathered as flat arrays. Fastest while the data set fits one rank's memory.
* ``"data"``: rows stay sharded and every tree is grown by all ranks together
  (histograms reduce-scattered by feature). For data sets no single rank can hold.

Tree ``t`` draws its bootstrap sample and its per-node feature subsets from
``(random_state, t)`` over *global* row indices, never from the rank, so the forest is
identical for any rank count, either backend and either mode.
"""

__all__ = ["RandomForestClassifier", "RandomForestRegressor"]

import numbers
import time

import numpy as np

from ..checks import (check_bool, check_choice, check_float, check_int, encode_classes,
                      resolve_seed, validate_fit_data)
from ..comm import collective_error, global_offset, resolve_comm
from ..comm.partition import block_range
from ..errors import DataError, InvalidParameterError
from ..progress import as_progress
from ._base import (BaseEstimator, ClassifierMixin, RegressorMixin, check_is_fitted, checked_params,
                    classes_from_json, collective)
from .tree._binning import bin_data, fit_bin_edges
from .tree._classes import (allow_nan_tags, check_regression_target, check_tree_params,
                            fit_one_tree, fit_table, gather_binned_rows, normalised_importances,
                            resolve_max_features, restore_feature_names, row_weights,
                            tree_model_meta)
from .tree._tree import TREE_FIELDS, PackedTrees, predict_trees, stack_trees, unstack_trees


def bootstrap_counts(seed, tree_index, n_total, n_draws):
    """How many times each global row is drawn for tree ``tree_index``: (n_total,) int64."""
    rng = np.random.default_rng([seed, tree_index, 1])
    return np.bincount(rng.integers(0, n_total, n_draws), minlength=n_total)


def _allgather_trees(comm, trees, n_outputs, words):
    """Collective: every rank's trees, concatenated in rank order, on every rank
    (``words``: the width of the categorical bitsets, also for a rank without trees)."""
    arrays, offsets = stack_trees(trees)
    if arrays["cat_bitset"].shape[1] != words:     # a rank without trees
        arrays["cat_bitset"] = np.zeros((arrays["cat_bitset"].shape[0], words), np.uint32)
    node_counts = comm.allgather(np.diff(offsets).tolist())
    sizes = np.asarray([sum(c) for c in node_counts], dtype=np.int64)
    full = {}
    for name, dtype in TREE_FIELDS.items():
        local = np.ascontiguousarray(arrays[name], dtype=dtype)
        if name == "value":
            local = local.reshape(-1, n_outputs)
        width = int(np.prod(local.shape[1:]))
        out = np.empty((int(sizes.sum()),) + local.shape[1:], dtype=dtype)
        if width:
            comm.Allgatherv(local.reshape(-1), [out.reshape(-1), sizes * width])
        full[name] = out
    all_counts = [n for counts in node_counts for n in counts]
    offsets = np.zeros(len(all_counts) + 1, dtype=np.int64)
    np.cumsum(all_counts, out=offsets[1:])
    return full, offsets


class _BaseForest(BaseEstimator):
    _regression = False
    _criteria = ("gini", "entropy")

    def __sklearn_tags__(self):
        return allow_nan_tags(super().__sklearn_tags__())

    def _check_params(self):
        """Validate every parameter (no data needed); returns them as a dict."""
        params = check_tree_params(self)
        params["n_estimators"] = check_int("n_estimators", self.n_estimators, low=1)
        params["bootstrap"] = check_bool("bootstrap", self.bootstrap)
        params["oob_score"] = check_bool("oob_score", self.oob_score)
        check_choice("parallel", self.parallel, ("trees", "data"))
        max_samples = self.max_samples
        if max_samples is not None:
            if isinstance(max_samples, numbers.Integral):
                max_samples = check_int("max_samples", max_samples, low=1)
            else:
                max_samples = check_float("max_samples", max_samples, low=0.0, high=1.0,
                                          low_open=True)
        params["max_samples"] = max_samples
        if not params["bootstrap"]:
            for name in ("oob_score", "max_samples"):
                if getattr(self, name) not in (None, False):
                    raise InvalidParameterError(f"{name}={getattr(self, name)!r} needs "
                                                f"bootstrap=True")
        return params

    def _fit(self, X, y, sample_weight, comm, progress):
        c = resolve_comm(comm)
        params = checked_params(self, c)
        n_estimators, bootstrap = params["n_estimators"], params["bootstrap"]
        oob, max_samples, parallel = params["oob_score"], params["max_samples"], self.parallel
        X = fit_table(self, X, c)
        X, y, sample_weight, n_total = validate_fit_data(X, y, c, sample_weight,
                                                         numeric_y=self._regression,
                                                         estimator=self, allow_nan=True)
        seed = resolve_seed(self.random_state, c)
        offset, _ = global_offset(X.shape[0], c)
        X_local, y_local = X, y
        if self._regression:
            check_regression_target(y, sample_weight, n_total, c)
            targets, weights = y, sample_weight
        else:
            classes, targets = encode_classes(y, c)
            weights = row_weights(self.class_weight, classes, targets, sample_weight, c)
            self.classes_ = classes
            self.n_classes_ = int(classes.size)
        n_features = X.shape[1]
        k = resolve_max_features(params["max_features"], n_features)
        if max_samples is None:
            n_draws = n_total
        elif isinstance(max_samples, float):
            n_draws = max(1, int(round(max_samples * n_total)))
        else:
            if max_samples > n_total:
                raise collective_error(InvalidParameterError(
                    f"max_samples must be <= the number of rows ({n_total}), got {max_samples!r}"))
            n_draws = max_samples

        edges = fit_bin_edges(X, params["max_bins"], comm=c,
                              n_categories=self.feature_schema_.n_categories)
        binned = bin_data(X, edges)
        if parallel == "trees":
            if c.size > 1:
                binned, targets, weights = gather_binned_rows(c, binned, targets, weights)
            grow_comm, rows = None, slice(0, n_total)
            mine = range(*block_range(n_estimators, c.size, c.rank))
        else:
            grow_comm, rows = c, slice(offset, offset + X.shape[0])
            mine = range(n_estimators)

        report = as_progress(progress)
        start = time.perf_counter()
        trees = []
        for done, t in enumerate(mine, 1):
            w = weights
            if bootstrap:
                counts = bootstrap_counts(seed, t, n_total, n_draws)[rows].astype(np.float64)
                w = counts if weights is None else counts * weights
            trees.append(fit_one_tree(binned, edges, targets, w, regression=self._regression,
                                      n_classes=getattr(self, "n_classes_", 1),
                                      criterion=self.criterion, params=params,
                                      max_features=k, random_state=seed, comm=grow_comm,
                                      channel_comm=grow_comm, tree_index=t))
            elapsed = time.perf_counter() - start
            estimate = done * n_estimators // max(1, len(mine))
            report(estimate, trees=f"{estimate}/{n_estimators}",
                   eta=f"{elapsed / done * (len(mine) - done):.1f}s")
        if parallel == "trees" and c.size > 1:
            self._stacked = _allgather_trees(c, trees, 1 if self._regression else self.n_classes_,
                                             edges.bitset_words)
        else:
            self._stacked = stack_trees(trees)
        if hasattr(report, "done"):
            report.done()

        self.n_features_in_ = n_features
        self.max_features_ = k
        self.n_outputs_ = 1
        self._set_derived()
        self._record_fit(c)
        if oob:
            self._oob(X_local, y_local, seed, n_total, n_draws, offset, c)
        return self

    def _set_derived(self):
        arrays, offsets = self._stacked
        self._packed = PackedTrees(arrays, offsets)  # prediction's layout, built once
        self.trees_ = unstack_trees(arrays, offsets)
        self.n_estimators_ = len(self.trees_)
        gains = [normalised_importances(t.feature_gains(self.n_features_in_)) for t in self.trees_]
        total = np.zeros(self.n_features_in_)
        for g in gains:
            total += g
        self.feature_importances_ = normalised_importances(total)

    def _oob(self, X, y, seed, n_total, n_draws, offset, comm):
        """Collective: out-of-bag predictions of this rank's rows and the exact global score."""
        n_out = self.trees_[0].n_outputs
        sums = np.zeros((X.shape[0], n_out))
        n_oob = np.zeros(X.shape[0], dtype=np.int64)
        for t, tree in enumerate(self.trees_):
            out = bootstrap_counts(seed, t, n_total, n_draws)[offset:offset + X.shape[0]] == 0
            if out.any():
                sums[out] += tree.predict(X[out])
                n_oob[out] += 1
        has = n_oob > 0
        pred = np.full_like(sums, np.nan)
        pred[has] = sums[has] / n_oob[has, None]
        if comm.allreduce(int(np.count_nonzero(has))) == 0:
            raise collective_error(DataError("no row is out of bag; oob_score needs more "
                                             "trees or fewer max_samples"))
        if self._regression:
            from ..metrics import r2
            self.oob_prediction_ = pred[:, 0]
            self.oob_score_ = r2(y[has], pred[has, 0], comm)
        else:
            from ..metrics import accuracy
            self.oob_decision_function_ = pred
            self.oob_score_ = accuracy(y[has], self.classes_[np.argmax(pred[has], axis=1)], comm)

    def _mean_values(self, X):
        check_is_fitted(self, "trees_")
        X = self._check_predict_X(X, allow_nan=True)
        arrays, offsets = self._stacked
        return predict_trees(arrays, offsets, X, packed=self._packed) / self.n_estimators_

    # -- persistence -----------------------------------------------------------------

    def _get_state(self):
        check_is_fitted(self, "trees_")
        meta = tree_model_meta(self)
        arrays, offsets = self._stacked
        state = {f"trees_{name}": a for name, a in arrays.items()}
        state["tree_offsets"] = offsets
        return meta, state

    @classmethod
    def _from_state(cls, meta, arrays):
        params = dict(meta["params"])
        if params.get("class_weight") == "dict":
            params["class_weight"] = None
        est = cls(**{k: v for k, v in params.items() if k in cls._get_param_names()})
        stacked = {name: np.asarray(arrays[f"trees_{name}"]) for name in TREE_FIELDS
                   if f"trees_{name}" in arrays}   # version-1 files lack the newer fields
        est._stacked = (stacked, np.asarray(arrays["tree_offsets"], dtype=np.int64))
        est.n_features_in_ = int(meta["n_features_in_"])
        est.max_features_ = int(meta["max_features_"])
        est.n_outputs_ = 1
        restore_feature_names(est, meta)
        if not cls._regression:
            est.classes_ = classes_from_json(meta["classes"])
            est.n_classes_ = int(est.classes_.size)
        est._set_derived()
        return est


_PARAMS_DOC = """
    Parameters
    ----------
    n_estimators : int
    criterion : {"gini", "entropy"} (classifier), {"squared_error"} (regressor)
    max_depth, min_samples_split, min_samples_leaf, min_impurity_decrease, max_leaf_nodes,
    max_bins : as for the decision trees
    max_features : None, "sqrt", "log2", int or float
        Features drawn at each node ("sqrt" for the classifier, None = all for the regressor).
    bootstrap : bool
    max_samples : None, int or float in (0, 1]
        Rows drawn (with replacement) for each tree; None: as many as there are rows.
    oob_score : bool
        Score every row with the trees that did not draw it (exact over all ranks).
    class_weight : None, "balanced" or dict (classifier only)
    random_state : int or None
    parallel : {"trees", "data"}
        ``"trees"``: every rank holds every row and grows its share of the trees.
        ``"data"``: rows stay sharded, every tree is grown by all ranks together.
    categorical_features : "from_dtype", None, array of int, str or bool
        Categorical features, as for the decision trees; X may hold NaN (missing values).
"""


class RandomForestClassifier(ClassifierMixin, _BaseForest):
    __doc__ = """A random forest classifier; identical for any rank count, backend and mode.
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    trees_ : list of Tree
    classes_ : ndarray of shape (n_classes,)
    feature_importances_ : ndarray of shape (n_features,)
    oob_score_ : float
        With ``oob_score``.
    oob_decision_function_ : ndarray of shape (n_local, n_classes)
        With ``oob_score``.
    """

    _model_type = "random_forest_classifier"

    def __init__(self, n_estimators=100, criterion="gini", max_depth=None, min_samples_split=2,
                 min_samples_leaf=1, min_impurity_decrease=0.0, max_features="sqrt",
                 max_leaf_nodes=None, max_bins=255, bootstrap=True, max_samples=None,
                 oob_score=False, class_weight=None, random_state=None, parallel="trees",
                 categorical_features="from_dtype"):
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_impurity_decrease = min_impurity_decrease
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.max_bins = max_bins
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.oob_score = oob_score
        self.class_weight = class_weight
        self.random_state = random_state
        self.parallel = parallel
        self.categorical_features = categorical_features

    @collective
    def fit(self, X, y, sample_weight=None, *, comm=None, progress=None):
        """Collective: grow the forest on every rank's rows. Returns self.

        ``progress(iteration, **fields)`` is called on every rank after each tree it grows
        (fields ``trees`` done/total and ``eta``); see :func:`mpiml.progress.as_progress`.
        """
        return self._fit(X, y, sample_weight, comm, progress)

    def predict_proba(self, X):
        """Mean of the trees' class probabilities, ndarray (n, n_classes). Local."""
        return self._mean_values(X)

    def predict(self, X):
        """Predicted class labels, ndarray (n,). Local."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class RandomForestRegressor(RegressorMixin, _BaseForest):
    __doc__ = """A random forest regressor (squared error); identical for any rank count,
    backend and mode.
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    trees_ : list of Tree
    feature_importances_ : ndarray of shape (n_features,)
    oob_score_ : float
        R^2, with ``oob_score``.
    oob_prediction_ : ndarray of shape (n_local,)
        With ``oob_score``.
    """

    _model_type = "random_forest_regressor"
    _regression = True
    _criteria = ("squared_error",)

    def __init__(self, n_estimators=100, criterion="squared_error", max_depth=None,
                 min_samples_split=2, min_samples_leaf=1, min_impurity_decrease=0.0,
                 max_features=None, max_leaf_nodes=None, max_bins=255, bootstrap=True,
                 max_samples=None, oob_score=False, random_state=None, parallel="trees",
                 categorical_features="from_dtype"):
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_impurity_decrease = min_impurity_decrease
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.max_bins = max_bins
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.oob_score = oob_score
        self.random_state = random_state
        self.parallel = parallel
        self.categorical_features = categorical_features

    @collective
    def fit(self, X, y, sample_weight=None, *, comm=None, progress=None):
        """Collective: grow the forest on every rank's rows. Returns self."""
        return self._fit(X, y, sample_weight, comm, progress)

    def predict(self, X):
        """Mean of the trees' predictions, ndarray (n,). Local."""
        return self._mean_values(X)[:, 0]
