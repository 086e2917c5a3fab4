"""A fitted tree as flat arrays, and forests of them."""

__all__ = ["Tree", "TREE_FIELDS", "stack_trees", "unstack_trees", "predict_trees", "PackedTrees"]

import numpy as np

from ._kernels import PACKED_NODE, apply_tree, pack_forest, predict_packed

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
}


class Tree:
    """Flat-array binary tree; node 0 is the root, nodes are numbered in creation order.

    Attributes are the arrays of :data:`TREE_FIELDS`, each of length ``n_nodes``
    (``value`` of shape (n_nodes, n_outputs)).
    """

    def __init__(self, **arrays):
        for name, dtype in TREE_FIELDS.items():
            setattr(self, name, np.ascontiguousarray(arrays[name], dtype=dtype))
        if self.value.ndim == 1:
            self.value = self.value.reshape(-1, 1)

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
        apply_tree(self.feature, self.threshold, self.left, self.right, X, out)
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
    arrays = {name: np.concatenate([getattr(t, name) for t in trees]) if trees else
              np.empty((0,) if name != "value" else (0, 1), dtype=dtype)
              for name, dtype in TREE_FIELDS.items()}
    return arrays, offsets


def unstack_trees(arrays, offsets):
    """Inverse of :func:`stack_trees`: list of Tree."""
    return [Tree(**{name: arrays[name][offsets[t]:offsets[t + 1]] for name in TREE_FIELDS})
            for t in range(len(offsets) - 1)]


class PackedTrees:
    """Stacked trees in the layout prediction reads fastest (built once, then reused).

    Parameters
    ----------
    arrays, offsets
        As returned by :func:`stack_trees`.
    """

    def __init__(self, arrays, offsets):
        offsets = np.asarray(offsets, dtype=np.int64)
        n_nodes = int(offsets[-1])
        value = np.asarray(arrays["value"][:n_nodes], dtype=np.float64).reshape(n_nodes, -1)
        self.nodes = np.empty(n_nodes, dtype=PACKED_NODE)
        self.value = np.empty_like(value)
        pack_forest(*(np.ascontiguousarray(arrays[name][:n_nodes], dtype=TREE_FIELDS[name])
                      for name in ("feature", "threshold", "left", "right")),
                    np.ascontiguousarray(value), offsets, self.nodes, self.value)
        sizes = np.diff(offsets)
        self.roots = offsets[:-1][sizes > 0].copy()       # pre-order keeps each tree's span
        depth = np.asarray(arrays["depth"][:n_nodes], dtype=np.int64)
        self.depths = (np.maximum.reduceat(depth, self.roots) if self.roots.size
                       else np.zeros(0, np.int64))

    def predict(self, X, out):
        """Add the sum over trees (in order) of each row's leaf value to ``out`` (n, n_outputs).

        X: C-contiguous float64 (n, n_features). Local.
        """
        predict_packed(self.nodes, self.roots, self.depths, self.value, X, out)
        return out


def predict_trees(arrays, offsets, X, packed=None):
    """Sum over the stacked trees (in order) of each row's leaf value: (n, n_outputs). Local.

    ``packed``: a :class:`PackedTrees` of the same trees, to skip packing them again.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.zeros((X.shape[0], arrays["value"].shape[1]))
    if packed is None:
        packed = PackedTrees(arrays, offsets)
    return packed.predict(X, out)
