"""A fitted tree as flat arrays, and forests of them."""

__all__ = ["Tree", "TREE_FIELDS", "stack_trees", "unstack_trees", "predict_trees", "PackedTrees"]

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._bin_kernels import bin_rows, build_bin_lookup
from ._kernels import (NODE_NARROW, NODE_WIDE, apply_tree, pack_forest, predict_packed,
                       predict_walk)

#: name -> dtype of every per-node array ("value" is 2-D: (n_nodes, n_outputs)).
TREE_FIELDS = {
    "feature": np.int64,          # split feature, -1 at a leaf
    "threshold": np.float64,      # go left when x[feature] <= threshold (a bin upper edge); -2 at a leaf
    "threshold_bin": np.int64,    # go left when bin <= threshold_bin
    "left": np.int64,             # child indices, -1 at a leaf
    "right": np.int64,
    "value": np.float64,          # node value (class probabilities, mean, leaf weight)
    "n_node_samples": np.int64,   # rows in the node (count channel)
    "impurity": np.float64,
    "gain": np.float64,           # gain of the node's split (0 at a leaf)
    "depth": np.int64,
    "missing_left": np.uint8,     # 1: a missing value (NaN) goes left, else right
    "categorical": np.uint8,      # 1: a category-subset split (threshold NaN)
    "cat_bitset": np.uint32,      # 2-D (n_nodes, words): bit c set = category code c goes left
}

#: fields that version-1 model files lack, and their defaults for ``n`` nodes
_LATER_FIELDS = {
    "missing_left": lambda n: np.zeros(n, np.uint8),
    "categorical": lambda n: np.zeros(n, np.uint8),
    "cat_bitset": lambda n: np.zeros((n, 0), np.uint32),
}


def _with_defaults(arrays):
    n = len(arrays["feature"])
    return {name: arrays[name] if name in arrays else _LATER_FIELDS[name](n)
            for name in TREE_FIELDS}


class Tree:
    """Flat-array binary tree; node 0 is the root, nodes are numbered in creation order.

    Attributes are the arrays of :data:`TREE_FIELDS`, each of length ``n_nodes``
    (``value`` of shape (n_nodes, n_outputs)).
    """

    def __init__(self, **arrays):
        arrays = _with_defaults(arrays)
        for name, dtype in TREE_FIELDS.items():
            setattr(self, name, np.ascontiguousarray(arrays[name], dtype=dtype))
        if self.value.ndim == 1:
            self.value = self.value.reshape(-1, 1)
        if self.cat_bitset.ndim == 1:
            self.cat_bitset = self.cat_bitset.reshape(self.n_nodes, -1)

    @property
    def n_nodes(self):
        return int(self.feature.shape[0])

    @property
    def n_outputs(self):
        return int(self.value.shape[1])

    @property
    def n_leaves(self):
        return int(np.count_nonzero(self.left < 0))

    @property
    def max_depth(self):
        return int(self.depth.max(initial=0))

    def arrays(self):
        """dict name -> array (the flat form saved in model files)."""
        return {name: getattr(self, name) for name in TREE_FIELDS}

    def apply(self, X):
        """Leaf index of each row. X: ndarray (n, n_features) -> int64 (n,). Local."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = np.empty(X.shape[0], dtype=np.int64)
        apply_tree(self.feature, self.threshold, self.missing_left, self.categorical,
                   self.cat_bitset, self.left, self.right, X, out)
        return out

    def predict(self, X):
        """Leaf value of each row: ndarray (n, n_outputs). Local."""
        return self.value[self.apply(X)]

    def feature_gains(self, n_features):
        """Total split gain per feature: ndarray (n_features,)."""
        inner = self.feature >= 0
        return np.bincount(self.feature[inner], weights=self.gain[inner], minlength=n_features)

    def equals(self, other):
        """Exact equality of every array."""
        return all(np.array_equal(a, b) for a, b in zip(self.arrays().values(), other.arrays().values()))


def stack_trees(trees):
    """Concatenate trees: (dict name -> array over all nodes, offsets (n_trees + 1,) int64)."""
    offsets = np.zeros(len(trees) + 1, dtype=np.int64)
    np.cumsum([t.n_nodes for t in trees], out=offsets[1:])
    words = max((t.cat_bitset.shape[1] for t in trees), default=0)
    empty = {"value": (0, 1), "cat_bitset": (0, 0)}
    arrays = {name: np.concatenate([_field(t, name, words) for t in trees]) if trees else
              np.empty(empty.get(name, (0,)), dtype=dtype)
              for name, dtype in TREE_FIELDS.items()}
    return arrays, offsets


def _field(tree, name, words):
    arr = getattr(tree, name)
    if name == "cat_bitset" and arr.shape[1] < words:
        arr = np.pad(arr, ((0, 0), (0, words - arr.shape[1])))
    return arr


def unstack_trees(arrays, offsets):
    """Inverse of :func:`stack_trees`: list of Tree (arrays of version-1 files, without the
    missing-value and categorical fields, give numeric splits sending NaN right)."""
    arrays = _with_defaults(arrays)
    return [Tree(**{name: arrays[name][offsets[t]:offsets[t + 1]] for name in TREE_FIELDS})
            for t in range(len(offsets) - 1)]


class PackedTrees:
    """Stacked trees in the layout prediction reads fastest (built once, then reused).

    Every inner node's threshold becomes its rank among the distinct thresholds of its
    feature, and rows are binned against those thresholds once per call, so a node is
    8 bytes (see :data:`NODE_NARROW`) and a leaf's values sit next to it. Predictions
    are exactly those of ``x <= threshold`` walks, summed over trees in order.

    Parameters
    ----------
    arrays, offsets
        As returned by :func:`stack_trees`.
    wide : bool, optional
        Force the 16-byte node layout (chosen by itself past 65,536 features or 65,535
        distinct thresholds of one feature).
    """

    def __init__(self, arrays, offsets, *, wide=False):
        offsets = np.asarray(offsets, dtype=np.int64)
        arrays = _with_defaults(arrays)
        n_nodes = int(offsets[-1])
        feature = np.ascontiguousarray(arrays["feature"][:n_nodes], dtype=np.int64)
        threshold = np.ascontiguousarray(arrays["threshold"][:n_nodes], dtype=np.float64)
        left = np.ascontiguousarray(arrays["left"][:n_nodes], dtype=np.int64)
        right = np.ascontiguousarray(arrays["right"][:n_nodes], dtype=np.int64)
        value = np.ascontiguousarray(arrays["value"][:n_nodes], dtype=np.float64)
        value = value.reshape(n_nodes, -1)
        self.n_outputs = value.shape[1]
        self.n_features = int(feature.max(initial=-1)) + 1
        # the plain walk of raw values: rows with a missing value where some split sends
        # it left, and every row once any split is categorical
        missing_left = np.ascontiguousarray(arrays["missing_left"][:n_nodes], dtype=np.uint8)
        categorical = np.ascontiguousarray(arrays["categorical"][:n_nodes], dtype=np.uint8)
        bitset = np.ascontiguousarray(arrays["cat_bitset"][:n_nodes], dtype=np.uint32)
        self._walk = (feature, threshold, missing_left, categorical,
                      bitset.reshape(n_nodes, -1), left, right, value, offsets)
        inner = left >= 0
        self.walk_all = bool((categorical[inner] != 0).any())
        self.walk_missing = bool((missing_left[inner] != 0).any())
        if self.walk_all:
            return

        # per feature, its sorted distinct thresholds; a node's bound is its rank + 1
        inner = np.flatnonzero(left >= 0)
        order = inner[np.lexsort((threshold[inner], feature[inner]))]
        f_sorted, t_sorted = feature[order], threshold[order]
        fresh = np.ones(order.size, dtype=bool)
        fresh[1:] = (f_sorted[1:] != f_sorted[:-1]) | (t_sorted[1:] != t_sorted[:-1])
        table = t_sorted[fresh]
        starts = np.searchsorted(f_sorted[fresh], np.arange(self.n_features + 1)).astype(np.int64)
        counts = np.diff(starts)
        self.bin_lookup = build_bin_lookup(table, starts)   # for bin_rows
        bound = np.zeros(n_nodes, dtype=np.int64)
        bound[order] = np.cumsum(fresh) - starts[f_sorted]   # rank + 1

        max_count = int(counts.max(initial=0))
        wide = wide or self.n_features > 65536 or max_count > 65535
        self.bin_dtype = (np.uint8 if max_count <= 255 and not wide else
                          np.uint16 if not wide else np.int32)
        node_dtype = NODE_WIDE if wide else NODE_NARROW
        self.stride = node_dtype.itemsize // 8
        n_leaves = int(np.count_nonzero(left < 0))
        per_leaf = 1 + -(-self.n_outputs // self.stride)
        n_slots = n_nodes - n_leaves + per_leaf * n_leaves
        if n_slots > np.iinfo(np.int32).max:
            raise ValueError(f"{n_nodes} nodes are too many to pack for prediction")
        self.nodes = np.zeros(n_slots, dtype=node_dtype)
        self.values = self.nodes.view(np.float64)
        roots = pack_forest(feature, left, right, bound, value, offsets, self.nodes,
                            self.values, self.stride)
        self.roots = roots[roots >= 0]
        depth = np.asarray(arrays["depth"][:n_nodes], dtype=np.int64)
        tree_starts = offsets[:-1][np.diff(offsets) > 0]
        self.depths = (np.maximum.reduceat(depth, tree_starts) if tree_starts.size
                       else np.zeros(0, np.int64))

    def predict(self, X, out, threads=None):
        """Add the sum over trees (in order) of each row's leaf values to ``out`` (n, n_outputs).

        X: C-contiguous float64 (n, n_features). Local. ``threads``: how many threads
        share the rows of a large batch (default: ``MPIML_PREDICT_THREADS``, else 1);
        every row's sum is the same whatever the number.
        """
        if X.shape[1] < self.n_features:
            raise ValueError(f"X has {X.shape[1]} features; the trees split on feature "
                             f"{self.n_features - 1}")
        if self.walk_all:
            predict_walk(*self._walk, X, np.arange(X.shape[0]), out)
            return out
        if self.walk_missing:
            nan_rows = np.flatnonzero(np.isnan(X[:, :self.n_features]).any(axis=1))
            if nan_rows.size:
                keep = out[nan_rows].copy()
                self.predict(np.ascontiguousarray(np.nan_to_num(X, nan=0.0)), out, threads)
                out[nan_rows] = keep
                predict_walk(*self._walk, X, nan_rows, out)
                return out
        chunks = _row_chunks(X.shape[0], len(self.roots), _prediction_threads(threads))
        if len(chunks) == 1:
            self._predict_rows(X, out)
        else:
            list(_thread_pool(len(chunks)).map(
                lambda c: self._predict_rows(X[c[0]:c[1]], out[c[0]:c[1]]), chunks))
        return out

    def _predict_rows(self, X, out):
        binned = np.empty((X.shape[0], self.n_features), dtype=self.bin_dtype)
        bin_rows(X[:, :self.n_features] if X.shape[1] != self.n_features else X,
                 *self.bin_lookup, binned)
        predict_packed(self.nodes, self.values, self.stride, self.roots, self.depths, binned, out)


#: rows x trees below which a batch is not worth sharing among threads
_MIN_WORK_PER_THREAD = 100_000
_POOL = {}


def _prediction_threads(threads):
    if threads is None:
        threads = os.environ.get("MPIML_PREDICT_THREADS", "1")
        try:
            threads = int(threads)
        except ValueError:
            raise ValueError(f"MPIML_PREDICT_THREADS must be a positive integer, "
                             f"got {threads!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def _row_chunks(n_rows, n_trees, threads):
    """Contiguous row ranges, one per thread that gets enough work."""
    useful = max(1, min(threads, n_rows * max(n_trees, 1) // _MIN_WORK_PER_THREAD))
    if useful == 1:
        return [(0, n_rows)]
    bounds = np.linspace(0, n_rows, useful + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _thread_pool(n):
    """A process's own pool (a pool made before a fork has no threads in the child)."""
    key = (os.getpid(), n)
    pool = _POOL.get(key)
    if pool is None:
        pool = _POOL[key] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="mpiml-predict")
    return pool


def predict_trees(arrays, offsets, X, packed=None, threads=None):
    """Sum over the stacked trees (in order) of each row's leaf value: (n, n_outputs). Local.

    ``packed``: a :class:`PackedTrees` of the same trees, to skip packing them again.
    ``threads``: see :meth:`PackedTrees.predict`.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.zeros((X.shape[0], arrays["value"].shape[1]))
    if packed is None:
        packed = PackedTrees(arrays, offsets)
    return packed.predict(X, out, threads)
