"""Tree core: distributed histogram split search shared by trees, forests and boosting.

Every tree mpiml learns is identical, node for node, for any rank count and either
backend. Three choices give that: bin edges computed from a sample chosen by *global*
row index; histograms of int64 fixed-point channels, whose sums are exact in any order;
and gains computed elementwise from those exact sums, with a fixed tie-break.

Interface
---------
Binning (collective)::

    edges = fit_bin_edges(X_local, max_bins=255, comm=comm)   # BinEdges, same on every rank
    binned = bin_data(X_local, edges)          # (n_features, n_local) uint8, feature-major

Channels: an ``(n_local, C)`` int64 matrix whose column sums over a node's rows are all a
criterion needs. Helpers: :func:`classification_channels` (one-hot weighted class counts),
:func:`regression_channels` (count, w, w*y, w*y^2), and for any other quantity
(gradients, hessians) :func:`fixed_point_scale` (a power of two chosen from the
*global* max magnitude and row count, so no int64 sum can overflow) and :func:`to_fixed`.

Criterion (any object with these members; :class:`Criterion` is a base class)::

    n_outputs                              width of a node value
    count_channel                          channel holding the row count, or None (sum of channels)
    n_samples(sums)  (..., C) -> (...)     row counts (min_samples_leaf / min_samples_split)
    node_value(sums) (C,) -> (n_outputs,)  leaf value (class probabilities, mean, -G/(H+l2))
    impurity(sums)   (C,) -> float         a node with impurity <= EPSILON is not split
                                           (return np.inf when the notion does not apply)
    split_gain(left, right, parent)        left, right (n_feat, n_thresholds, C), parent (C,)
                                           -> (n_feat, n_thresholds) float64; -inf/NaN = invalid
    node_stats(sums) (S, C) -> (values (S, n_outputs), impurities (S,))   (default provided)
    kernel                                 None (built-in criteria: a numeric spec that lets
                                           one-rank growth run entirely in numba)
    best_split(hist, parent, min_samples_leaf, feature_mask)   optional: the search's pick
                                           (first maximum in (feature, bin) order) from a
                                           node's (n_feat, n_bins, C) histograms in one pass
                                           -> (gain, f, b, left) or None
    best_splits(hists, parents, min_samples_leaf, masks)   optional: ``best_split`` of N
                                           nodes at once, (N, n_feat, n_bins, C), (N, C),
                                           (N, n_feat) -> (gains, f, b, lefts), gain -inf
                                           (f = b = 0, zero lefts) where none is valid

``split_gain`` is called on every threshold of a block of features at once and must be
elementwise (no float reductions whose order could depend on the block), e.g. gradient
boosting: ``GL**2/(HL+l2) + GR**2/(HR+l2) - G**2/(H+l2)`` from ``sums / scale``.

Growing (collective when comm has several ranks)::

    tree = grow_tree(binned, channels, criterion, edges, comm=comm, mode="data",
                     max_depth=None, max_leaf_nodes=None, min_samples_leaf=1,
                     min_samples_split=2, min_gain=0.0, max_features=None,
                     random_state=0, tree_index=0, return_leaves=False)

``mode="data"``: rows sharded, local histograms of the smaller child ``Reduce_scatter``-ed
by feature block, each rank scores the features of its block. ``mode="feature"``: every
rank holds every row and histograms only its own features (no histogram traffic).
``comm=None``: one rank. ``max_leaf_nodes`` set: best-first (leaf-wise) growth, else
depth-wise, level by level (one ``Reduce_scatter`` and one ``Allgather`` per level or
per best-first step, whatever the number of nodes; on several ranks a best-first step
expands several leaves ahead of their turn, with the same tree as one leaf per step).
Rows whose channels are all zero (out of a bootstrap or a subsample) contribute nothing.
``max_features`` (an int) draws each node's features from
``(random_state, tree_index, node id)``. ``return_leaves=True`` also returns the leaf
index of every local row (to update predictions without a traversal). ``binned_rows``
(``binned.T`` C-contiguous, made once per fit) lets data mode histogram very large and
very small nodes row by row.

Trees: :class:`Tree` holds flat arrays (:data:`TREE_FIELDS`): ``feature`` (-1 at a leaf),
``threshold`` (float: the bin's upper edge, go left when ``x <= threshold``),
``threshold_bin``, ``left``/``right`` (-1 at a leaf), ``value`` (n_nodes, n_outputs),
``n_node_samples``, ``impurity``, ``gain``, ``depth``, ``missing_left`` (1: NaN goes left),
``categorical`` (1: a category-subset split) and ``cat_bitset`` (n_nodes, words) uint32
(bit c: category code c goes left).

Missing values and categories: ``fit_bin_edges(..., n_categories=K)`` gives a feature
with missing values a last bin of its own and bins a categorical feature by its code
(at most 255 category bins: the most frequent keep theirs, the rest share one). The
grower searches such a feature as "virtual" features whose bin order makes every
candidate a prefix: missing values right (bins as they are) or left (merged into the
first bin); categories sorted by the criterion's ``category_keys`` (see
:func:`category_keys`). Any criterion's own scan then picks the split, so every rank
count still picks the same one. ``tree.apply(X)`` / ``tree.predict(X)``
work on raw X. Many trees: :func:`stack_trees` -> (arrays, offsets), :func:`predict_trees`
(sum of leaf values in tree order, one numba pass over :class:`PackedTrees`, the
prediction layout an estimator builds once and keeps), :func:`unstack_trees`.

Estimators: :class:`DecisionTreeClassifier`, :class:`DecisionTreeRegressor`.
"""

from ._binning import BinEdges, bin_data, fit_bin_edges
from ._criteria import (CATEGORY_EPS, EPSILON, ClassificationCriterion, Criterion, RegressionCriterion,
                        classification_channels, fixed_point_scale, regression_channels, to_fixed)
from ._grower import grow_tree, index_buffers, leaf_of_rows, leaf_slots
from ._tree import TREE_FIELDS, PackedTrees, Tree, predict_trees, stack_trees, unstack_trees

__all__ = [
    "BinEdges", "fit_bin_edges", "bin_data",
    "EPSILON", "CATEGORY_EPS", "Criterion", "ClassificationCriterion", "RegressionCriterion",
    "classification_channels", "regression_channels", "fixed_point_scale", "to_fixed",
    "grow_tree", "index_buffers", "leaf_of_rows", "leaf_slots", "Tree", "TREE_FIELDS", "stack_trees",
    "unstack_trees", "predict_trees", "PackedTrees",
    "DecisionTreeClassifier", "DecisionTreeRegressor",
]


def __getattr__(name):
    # the estimators import the shared estimator helpers; the core stays importable alone
    if name in ("DecisionTreeClassifier", "DecisionTreeRegressor"):
        from . import _classes
        return getattr(_classes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
