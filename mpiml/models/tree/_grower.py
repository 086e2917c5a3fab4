"""The generic tree grower: histogram split search over exact integer channels.

One call grows one tree. Each step picks the leaves to split (every splittable leaf of
the current level for depth-wise growth, or the single best leaf for best-first growth
when ``max_leaf_nodes`` is set), partitions their local rows, builds the histogram of
each split's smaller child only and derives its sibling as parent minus child, then
finds the children's best splits. One step costs two collectives whatever the number
of nodes it handles: a ``Reduce_scatter`` of the new histograms by feature block (data
mode) and an ``Allgather`` of every rank's best candidate per node, resolved on every
rank with the fixed tie-break (gain, then lowest feature, then lowest threshold bin).
"""

__all__ = ["grow_tree"]

import numpy as np

from ...comm.partition import block_counts, block_range
from ._criteria import EPSILON
from ._kernels import build_histograms, partition_rows
from ._tree import TREE_FIELDS, Tree

_MODES = ("data", "feature")


class _Node:
    __slots__ = ("start", "stop", "sums", "depth", "hist", "candidate")

    def __init__(self, start, stop, sums, depth):
        self.start, self.stop, self.sums, self.depth = start, stop, sums, depth
        self.hist = None
        self.candidate = None


class _Grower:
    def __init__(self, binned, channels, criterion, bin_edges, comm, mode, max_depth,
                 max_leaf_nodes, min_samples_leaf, min_samples_split, min_gain, max_features,
                 random_state, tree_index):
        self.binned = binned
        self.channels = channels
        self.criterion = criterion
        self.bin_edges = bin_edges
        self.comm = comm if comm is not None and comm.size > 1 else None
        self.mode = mode
        self.max_depth = max_depth
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = max(1, int(min_samples_leaf))
        self.min_samples_split = max(2, int(min_samples_split))
        self.min_gain = float(min_gain)
        self.n_features = binned.shape[0]
        self.max_features = max_features if max_features is not None and max_features < self.n_features else None
        self.random_state = random_state
        self.tree_index = tree_index
        self.n_bins = bin_edges.max_n_bins
        self.n_channels = channels.shape[1]
        size, rank = (self.comm.size, self.comm.rank) if self.comm else (1, 0)
        self.size = size
        f0, f1 = block_range(self.n_features, size, rank)
        self.owned = np.arange(f0, f1, dtype=np.int64)
        self.hist_features = (np.arange(self.n_features, dtype=np.int64)
                              if mode == "data" else self.owned)
        self.rows = np.arange(binned.shape[1], dtype=np.int64)
        self.buffer = np.empty(binned.shape[1], dtype=np.int64)
        self.nodes = []
        self.records = {name: [] for name in TREE_FIELDS}

    # -- node bookkeeping ------------------------------------------------------------

    def _new_node(self, start, stop, sums, depth):
        crit = self.criterion
        node = _Node(start, stop, sums, depth)
        self.nodes.append(node)
        rec = self.records
        rec["feature"].append(-1)
        rec["threshold"].append(-2.0)
        rec["threshold_bin"].append(-1)
        rec["left"].append(-1)
        rec["right"].append(-1)
        rec["value"].append(np.asarray(crit.node_value(sums), dtype=np.float64).reshape(-1))
        rec["n_node_samples"].append(int(crit.n_samples(sums)))
        rec["impurity"].append(float(crit.impurity(sums)))
        rec["gain"].append(0.0)
        rec["depth"].append(depth)
        return len(self.nodes) - 1

    def _can_split(self, node_id):
        node = self.nodes[node_id]
        count = self.records["n_node_samples"][node_id]
        return (count >= self.min_samples_split and count >= 2 * self.min_samples_leaf
                and (self.max_depth is None or node.depth < self.max_depth)
                and self.records["impurity"][node_id] > EPSILON)

    # -- histograms and split search -------------------------------------------------

    def _histograms(self, node_ids):
        """Summed histograms of the owned features of ``node_ids``: (n_own, S, B, C). Collective."""
        shape = (len(self.hist_features), len(node_ids), self.n_bins, self.n_channels)
        local = np.zeros(shape, dtype=np.int64)
        for slot, nid in enumerate(node_ids):
            node = self.nodes[nid]
            if node.stop > node.start:
                build_histograms(self.binned, self.channels, self.rows, node.start, node.stop,
                                 self.hist_features, local, slot)
        if self.mode != "data" or self.comm is None:
            return local
        unit = len(node_ids) * self.n_bins * self.n_channels
        counts, _ = block_counts(self.n_features, self.size, unit=unit)
        summed = np.empty((len(self.owned),) + shape[1:], dtype=np.int64)
        self.comm.Reduce_scatter(local, summed, counts)
        return summed

    def _feature_mask(self, node_id):
        if self.max_features is None:
            return None
        rng = np.random.default_rng([self.random_state, self.tree_index, node_id])
        chosen = rng.choice(self.n_features, self.max_features, replace=False)
        return np.isin(self.owned, chosen)

    def _local_best(self, node_id):
        """This rank's best split of a node over its owned features:
        (gain, feature, threshold_bin, left sums)."""
        node = self.nodes[node_id]
        none = (-np.inf, 0, 0, np.zeros(self.n_channels, dtype=np.int64))
        if len(self.owned) == 0 or self.n_bins < 2:
            return none
        crit = self.criterion
        left = np.cumsum(node.hist[:, :-1, :], axis=1)
        right = node.sums - left
        gain = np.asarray(crit.split_gain(left, right, node.sums), dtype=np.float64)
        valid = ((crit.n_samples(left) >= self.min_samples_leaf)
                 & (crit.n_samples(right) >= self.min_samples_leaf) & ~np.isnan(gain))
        mask = self._feature_mask(node_id)
        if mask is not None:
            valid &= mask[:, None]
        gain = np.where(valid, gain, -np.inf)
        k = int(np.argmax(gain))
        f, b = divmod(k, self.n_bins - 1)
        if gain[f, b] == -np.inf:
            return none
        return float(gain[f, b]), int(self.owned[f]), int(b), left[f, b].copy()

    def _find_splits(self, node_ids):
        """Best split of each node over all features, identical on every rank. Collective."""
        width = 3 + self.n_channels
        mine = np.zeros((len(node_ids), width), dtype=np.int64)
        for slot, nid in enumerate(node_ids):
            gain, f, b, left = self._local_best(nid)
            mine[slot, 0] = np.float64(gain).view(np.int64)
            mine[slot, 1:3] = (f, b)
            mine[slot, 3:] = left
        if self.comm is None:
            every = mine[None]
        else:
            every = np.empty((self.size,) + mine.shape, dtype=np.int64)
            self.comm.Allgather(mine, every)
        gains = every[:, :, 0].copy().view(np.float64)
        for slot, nid in enumerate(node_ids):
            best = None
            for r in range(every.shape[0]):
                key = (gains[r, slot], -every[r, slot, 1], -every[r, slot, 2])
                if best is None or key > best[0]:
                    best = (key, r)
            (gain, _, _), r = best
            node = self.nodes[nid]
            if gain > -np.inf and gain >= self.min_gain:
                node.candidate = (float(gain), int(every[r, slot, 1]), int(every[r, slot, 2]),
                                  every[r, slot, 3:].copy())
            else:
                node.candidate = None
                node.hist = None

    # -- growth ----------------------------------------------------------------------

    def _split(self, node_id):
        """Apply a node's candidate; returns (left id, right id)."""
        node = self.nodes[node_id]
        gain, f, b, left_sums = node.candidate
        n_left = partition_rows(self.rows, node.start, node.stop, self.binned[f], b, self.buffer)
        mid = node.start + n_left
        left = self._new_node(node.start, mid, left_sums, node.depth + 1)
        right = self._new_node(mid, node.stop, node.sums - left_sums, node.depth + 1)
        rec = self.records
        rec["feature"][node_id] = f
        rec["threshold"][node_id] = self.bin_edges.threshold(f, b)
        rec["threshold_bin"][node_id] = b
        rec["left"][node_id] = left
        rec["right"][node_id] = right
        rec["gain"][node_id] = gain
        node.candidate = None
        return left, right

    def _step(self, chosen):
        """Split ``chosen`` nodes and search the splits of their children. Collective."""
        pairs = [(nid,) + self._split(nid) for nid in chosen]
        to_build, to_search = [], []
        for parent, left, right in pairs:
            wanted = [c for c in (left, right) if self._can_split(c)]
            if wanted:
                counts = self.records["n_node_samples"]
                small, large = (left, right) if counts[left] <= counts[right] else (right, left)
                to_build.append((parent, small, large))
                to_search.extend(wanted)
            self.nodes[parent].hist = None if not wanted else self.nodes[parent].hist
        if not to_build:
            for parent, _, _ in pairs:
                self.nodes[parent].hist = None
            return
        hists = self._histograms([small for _, small, _ in to_build])
        for slot, (parent, small, large) in enumerate(to_build):
            self.nodes[small].hist = np.ascontiguousarray(hists[:, slot])
            self.nodes[large].hist = self.nodes[parent].hist - self.nodes[small].hist
            self.nodes[parent].hist = None
        for parent, _, _ in pairs:
            self.nodes[parent].hist = None
        self._find_splits(to_search)
        for parent, left, right in pairs:
            for child in (left, right):
                if child not in to_search:
                    self.nodes[child].hist = None

    def grow(self):
        sums = self.channels.sum(axis=0, dtype=np.int64)
        if self.mode == "data" and self.comm is not None:
            total = np.empty_like(sums)
            self.comm.Allreduce(sums, total)
            sums = total
        root = self._new_node(0, self.binned.shape[1], sums, 0)
        if self._can_split(root):
            self.nodes[root].hist = self._histograms([root])[:, 0]
            self._find_splits([root])
        n_leaves = 1
        while True:
            open_ids = [i for i, node in enumerate(self.nodes) if node.candidate is not None]
            if not open_ids:
                break
            if self.max_leaf_nodes is None:
                chosen = open_ids
            else:
                if n_leaves >= self.max_leaf_nodes:
                    break
                chosen = [max(open_ids, key=lambda i: (self.nodes[i].candidate[0], -i))]
            n_leaves += len(chosen)
            self._step(chosen)
        return self._finish()

    def _finish(self):
        rec = self.records
        arrays = {name: np.asarray(rec[name], dtype=dtype) for name, dtype in TREE_FIELDS.items()
                  if name != "value"}
        arrays["value"] = np.vstack(rec["value"])
        tree = Tree(**arrays)
        leaf_of_row = np.empty(self.binned.shape[1], dtype=np.int64)
        for i, node in enumerate(self.nodes):
            if rec["left"][i] < 0:
                leaf_of_row[self.rows[node.start:node.stop]] = i
        return tree, leaf_of_row


def grow_tree(binned, channels, criterion, bin_edges, *, comm=None, mode="data", max_depth=None,
              max_leaf_nodes=None, min_samples_leaf=1, min_samples_split=2, min_gain=0.0,
              max_features=None, random_state=0, tree_index=0, return_leaves=False):
    """Grow one tree from binned rows and exact integer channels.

    Collective when ``comm`` has more than one rank: every rank must call it with the
    same parameters, and every rank returns the same tree.

    Parameters
    ----------
    binned : ndarray of shape (n_features, n_local), uint8
        Feature-major bins from :func:`bin_data` (``mode="data"``: this rank's rows;
        ``mode="feature"``: every row, the same on every rank).
    channels : ndarray of shape (n_local, C), int64
        Per-row channels summed in histograms (e.g. from ``classification_channels``).
    criterion : Criterion
        Node value, impurity, sample count and split gain from channel sums.
    bin_edges : BinEdges
        The edges ``binned`` was made with (thresholds of the fitted tree).
    comm : Communicator or None
    mode : {"data", "feature"}
        ``"data"``: rows sharded; histograms reduce-scattered by feature block.
        ``"feature"``: every rank holds every row; each rank histograms and scores only its
        block of features.
    max_depth : int or None
    max_leaf_nodes : int or None
        ``None``: depth-wise growth. Else best-first (leaf-wise) growth up to that many leaves.
    min_samples_leaf, min_samples_split : int
        On ``criterion.n_samples`` counts.
    min_gain : float
        A split is made only when its gain is ``>= min_gain`` (and the node's impurity is
        above EPSILON).
    max_features : int or None
        Features considered at each node: a subset drawn from
        ``(random_state, tree_index, node id)``; ``None`` means all.
    random_state, tree_index : int
    return_leaves : bool
        Also return the leaf index of every local row.

    Returns
    -------
    tree : Tree
    leaf_of_row : ndarray of shape (n_local,), int64
        Only with ``return_leaves``.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    channels = np.ascontiguousarray(channels, dtype=np.int64)
    binned = np.ascontiguousarray(binned, dtype=np.uint8)
    grower = _Grower(binned, channels, criterion, bin_edges, comm, mode, max_depth, max_leaf_nodes,
                     min_samples_leaf, min_samples_split, min_gain, max_features,
                     random_state, tree_index)
    tree, leaf_of_row = grower.grow()
    return (tree, leaf_of_row) if return_leaves else tree
