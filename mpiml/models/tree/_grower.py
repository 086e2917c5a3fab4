"""The generic tree grower: histogram split search over exact integer channels.

One call grows one tree. Each step picks the leaves to split (every open leaf of the
current level for depth-wise growth, or the single best leaf for best-first growth when
``max_leaf_nodes`` is set), partitions their local rows, creates the children and
searches the children's best splits. Node ids follow creation order (root 0, then the
two children of each split, left first, parents in id order), whatever the engine.

Best-first growth on several ranks expands leaves ahead of their turn, several per step
(:meth:`_Grower._grow_best_first_ahead`): a leaf's split and children depend on its rows
alone, so the growth is replayed on the expanded nodes and gives the same tree with
fewer collective steps (19.3 instead of 30 per tree of 31 leaves on 1M x 28 rows, at the
cost of 1.15 expanded leaves per tree whose turn never comes).

Two engines search splits, and pick the same split from the same exact sums:

* histograms (any criterion, any rank count): the histogram of each split's smaller
  child only, the sibling derived as parent minus child; in ``"data"`` mode the local
  histograms are ``Reduce_scatter``-ed by feature block; every rank scores its block of
  features and an ``Allgather`` of the per-rank best candidates, resolved with the fixed
  tie-break (gain, then lowest feature, then lowest threshold bin), gives every rank the
  same split. Two collectives per step, whatever the number of nodes.
* local (one rank, built-in criteria): the whole level is searched by one numba kernel
  (dense histograms for large nodes, sorted bins for small ones), no per-node Python.

With ``packed_fields`` (boosting's quantized gradients beyond a million rows), the one
channel packs fields whose sums carry past ``max_rows`` rows: histograms are summed
packed where a node's rows allow it and unpacked into exact channels otherwise
(:meth:`_Grower._histograms`), and the criterion works on the unpacked channels.
"""

__all__ = ["grow_tree", "index_buffers", "leaf_of_rows", "leaf_slots"]

import numpy as np

from ...comm.partition import block_counts, block_range
from ._criteria import EPSILON, category_keys
from ._kernels import (build_histograms_nodes, build_histograms_rows_nodes, unpack_histograms,
                       unpacked_sum)
from ._profile import collective, phase
from ._split_kernels import (fill_leaves, fill_range, sample_features, scan_histogram,
                             scan_histograms, search_local, split_nodes, take_candidates)
from ._tree import TREE_FIELDS, Tree

_MODES = ("data", "feature")
_HIST_BUDGET = 64 << 20   # bytes of local histograms built at once
_KEEP_HIST_ROWS = 1024    # smaller open nodes drop their histogram: both children are built
# best-first growth on several ranks expands at most this share of the leaves still to
# make in one collective step (see ``_Grower._grow_best_first_ahead``)
_AHEAD_SHARE = 1 / 3
_MASK_WORDS = 4           # int64 words of a candidate's left bins (256 bins at most)
# kinds of the candidates of a feature searched as "virtual" features: a numeric feature
# with missing values right (its bins as they are) or left (the missing bin merged into
# bin 0), a categorical feature with missing values right or left (bins in sorted order)
_AS_IS, _MISSING_LEFT, _CATEGORY_RIGHT, _CATEGORY_LEFT = range(4)


# a leaf's split fields (those ``_step`` sets), for expanded nodes the tree leaves unsplit
_LEAF_FIELDS = {"feature": -1, "threshold": -2.0, "threshold_bin": -1, "gain": 0.0,
                "missing_left": 0, "categorical": 0, "cat_bitset": 0}


class _Grower:
    def __init__(self, binned, channels, criterion, bin_edges, comm, mode, max_depth,
                 max_leaf_nodes, min_samples_leaf, min_samples_split, min_gain, max_features,
                 random_state, tree_index, rows, binned_rows=None, buffer=None,
                 packed_fields=None):
        self.binned = binned
        self.binned_rows = binned_rows if mode == "data" else None
        self.channels = channels
        self.criterion = criterion
        self.comm = comm if comm is not None and comm.size > 1 else None
        self.mode = mode
        self.max_depth = max_depth
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = max(1, int(min_samples_leaf))
        self.min_samples_split = max(2, int(min_samples_split))
        self.min_gain = float(min_gain)
        self.n_features = binned.shape[0]
        self.k_features = (self.n_features if max_features is None
                           else max(1, min(int(max_features), self.n_features)))
        self.random_state = int(random_state or 0)
        self.tree_index = int(tree_index)
        self.n_bins = bin_edges.max_n_bins
        self.bins_per_feature = bin_edges.n_bins
        self.edge_table = bin_edges.padded()[0]
        self.bin_edges = bin_edges
        # categorical features and missing-value bins are searched through histograms
        self.special = bin_edges.special
        # a packed channel summed in pieces: sums and histograms hold its unpacked fields
        self.packed_fields = packed_fields
        self.n_channels = (channels.shape[1] if packed_fields is None
                           else packed_fields.n_unpacked)
        self.local = (self.comm is None and criterion.kernel is not None and not self.special
                      and packed_fields is None)
        size, rank = (self.comm.size, self.comm.rank) if self.comm else (1, 0)
        self.size = size
        f0, f1 = block_range(self.n_features, size, rank)
        self.owned = np.arange(f0, f1, dtype=np.int64)
        self.hist_features = (np.arange(self.n_features, dtype=np.int64)
                              if mode == "data" else self.owned)
        self.rows = rows
        self.buffer = np.empty(rows.shape[0], dtype=rows.dtype) if buffer is None else buffer
        self.hists = {}
        self._counts = {}
        self._all_features = None
        self._no_tables = np.zeros((1, self.n_bins), dtype=np.uint8)   # split_nodes' unused
        self.n_nodes = 0
        self._allocate(64)

    # -- node arrays -----------------------------------------------------------------

    def _allocate(self, capacity):
        c, n_out = self.n_channels, self.criterion.n_outputs
        fresh = {
            "start": np.zeros(capacity, np.int64), "stop": np.zeros(capacity, np.int64),
            "depth": np.zeros(capacity, np.int64), "sums": np.zeros((capacity, c), np.int64),
            "feature": np.full(capacity, -1, np.int64),
            "threshold": np.full(capacity, -2.0), "threshold_bin": np.full(capacity, -1, np.int64),
            "left": np.full(capacity, -1, np.int64), "right": np.full(capacity, -1, np.int64),
            "value": np.zeros((capacity, n_out)), "n_node_samples": np.zeros(capacity, np.int64),
            "impurity": np.zeros(capacity), "gain": np.zeros(capacity),
            "cand_gain": np.full(capacity, -np.inf), "cand_feature": np.zeros(capacity, np.int64),
            "cand_bin": np.zeros(capacity, np.int64), "cand_left": np.zeros((capacity, c), np.int64),
            "open": np.zeros(capacity, bool),
            "missing_left": np.zeros(capacity, np.uint8),
            "categorical": np.zeros(capacity, np.uint8),
            "cat_bitset": np.zeros((capacity, self.bin_edges.bitset_words), np.uint32),
            # missing values the candidate saw: 0 none (the larger child gets them), 1 left,
            # 2 right; the bins a categorical candidate sends left, as 256 bits
            "cand_missing": np.zeros(capacity, np.int64),
            "cand_mask": np.zeros((capacity, _MASK_WORDS), np.int64),
        }
        if self.n_nodes:
            for name, arr in fresh.items():
                arr[:self.n_nodes] = getattr(self, name)[:self.n_nodes]
        for name, arr in fresh.items():
            setattr(self, name, arr)
        self.capacity = capacity

    def _new_nodes(self, sums):
        """Append nodes with channel sums ``sums`` (n, C): their values, impurities and
        sample counts (their row segments and depths are the caller's). Returns the
        first id; the ids are consecutive."""
        n = sums.shape[0]
        if self.n_nodes + n > self.capacity:
            self._allocate(max(2 * self.capacity, self.n_nodes + n))
        first = self.n_nodes
        ids = slice(first, first + n)
        self.n_nodes += n
        self.sums[ids] = sums
        values, impurity = self.criterion.node_stats(sums)
        self.value[ids] = values
        self.impurity[ids] = impurity
        self.n_node_samples[ids] = self.criterion.n_samples(sums)
        return first

    def _splittable(self, ids):
        count = self.n_node_samples[ids]
        ok = ((count >= self.min_samples_split) & (count >= 2 * self.min_samples_leaf)
              & (self.impurity[ids] > EPSILON))
        if self.max_depth is not None:
            ok &= self.depth[ids] < self.max_depth
        return ids[ok]

    def _candidate_rows(self, n):
        """Zeroed rows of one rank's best candidates: gain bits, feature, bin, left sums
        (C), missing side, left-bin mask (``_MASK_WORDS``)."""
        return np.zeros((n, 4 + self.n_channels + _MASK_WORDS), dtype=np.int64)

    def _take_candidates(self, ids, mine):
        """Every rank's candidate rows ``mine`` for nodes ``ids`` (Allgather-ed on several
        ranks); each node keeps the best of them and is open when its gain is finite and
        at least ``min_gain``. Collective."""
        if self.comm is None:
            every = mine[None]
        else:
            every = np.empty((self.size,) + mine.shape, dtype=np.int64)
            with collective(self.comm):
                self.comm.Allgather(mine, every)
        gains = np.ascontiguousarray(every[:, :, 0]).view(np.float64)
        take_candidates(np.asarray(ids, dtype=np.int64), every, gains, self.min_gain,
                        self.cand_gain, self.cand_feature, self.cand_bin, self.cand_left,
                        self.cand_missing, self.cand_mask, self.open)

    # -- local engine ----------------------------------------------------------------

    def _search_local(self, ids):
        n, c = ids.shape[0], self.n_channels
        gain, feature = np.empty(n), np.empty(n, np.int64)
        bin_, left = np.empty(n, np.int64), np.zeros((n, c), np.int64)
        kind, first, n_classes, scales, count_channel = self.criterion.kernel
        with phase("split search"):
            search_local(self.binned, self.channels, self.rows, self.start[ids], self.stop[ids],
                         ids, self.sums[ids], self.bins_per_feature, kind, first, n_classes,
                         scales, count_channel, self.min_samples_leaf, self.random_state,
                         self.tree_index, self.k_features, gain, feature, bin_, left)
        mine = self._candidate_rows(n)
        mine[:, 0], mine[:, 1], mine[:, 2], mine[:, 3:3 + c] = gain.view(np.int64), feature, bin_, left
        self._take_candidates(ids, mine)

    # -- histogram engine ------------------------------------------------------------

    def _histograms(self, ids):
        """Summed histograms of the owned features of nodes ``ids``: a list of (n_own, B, C)
        views into chunk buffers (copy one to keep it). Collective in data mode.

        With ``packed_fields``, a node whose rows (over every rank) are at most
        ``max_rows`` is histogrammed and summed in its packed channel, a third of the
        bytes, and only its owned features are unpacked after the sum; larger nodes are
        unpacked on each rank before the sum (:meth:`_build_unpacked`)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.packed_fields is None:
            return self._summed(ids, self.n_channels, self._build_nodes)
        small = self.n_node_samples[ids] <= self.packed_fields.max_rows
        hists = dict(zip(ids[small].tolist(),
                         self._summed(ids[small], 1, self._build_nodes, unpack=True)))
        hists.update(zip(ids[~small].tolist(),
                         self._summed(ids[~small], self.n_channels, self._build_unpacked)))
        return [hists[nid] for nid in ids.tolist()]

    def _summed(self, ids, n_channels, build, unpack=False):
        """``build`` this rank's (n_hist_features, len(ids), B, ``n_channels``) histograms
        of nodes ``ids``, sum them over the ranks by feature block in data mode, and
        (``unpack``) unpack the packed sums. Nodes go in chunks so that the local buffer
        stays under ``_HIST_BUDGET`` bytes (the same chunks on every rank)."""
        per_node = max(1, len(self.hist_features) * self.n_bins * n_channels * 8)
        chunk = max(1, _HIST_BUDGET // per_node)
        out = []
        for lo in range(0, len(ids), chunk):
            part = ids[lo:lo + chunk]
            shape = (len(self.hist_features), len(part), self.n_bins, n_channels)
            with phase("histograms"):
                local = np.zeros(shape, dtype=np.int64)
                build(part, local)
            if self.mode == "data" and self.comm is not None:
                counts = self._scatter_counts(int(np.prod(shape[1:])))
                summed = np.empty((len(self.owned),) + shape[1:], dtype=np.int64)
                with collective(self.comm):
                    self.comm.Reduce_scatter(local, summed, counts)
                local = summed
            if unpack:
                with phase("histograms"):
                    fields = self.packed_fields
                    words = local
                    local = np.zeros(words.shape[:3] + (self.n_channels,), dtype=np.int64)
                    unpack_histograms(words, np.arange(len(part), dtype=np.int64),
                                      fields.count_bits, fields.hess_bits, local)
            out.extend(local[:, slot] for slot in range(len(part)))
        return out

    def _build_nodes(self, ids, out):
        """Add this rank's histograms of nodes ``ids`` to ``out``."""
        self._build(self.start[ids], self.stop[ids], out)

    def _build(self, starts, stops, out):
        """Add this rank's histograms of the row segments ``starts``/``stops`` to ``out``
        (n_hist_features, n_segments, B, channels)."""
        if self._row_major():
            build_histograms_rows_nodes(self.binned_rows, self.channels, self.rows, starts,
                                        stops, out)
        else:
            build_histograms_nodes(self.binned, self.channels, self.rows, starts, stops,
                                   self.hist_features, out)

    def _build_unpacked(self, ids, out):
        """Add this rank's histograms of nodes ``ids`` to ``out`` as unpacked fields: each
        node's rows in pieces of at most ``packed_fields.max_rows`` (whose packed sums
        never carry), each piece histogrammed packed and unpacked into its node's slot."""
        fields = self.packed_fields
        chunk = fields.max_rows
        starts, stops = self.start[ids], self.stop[ids]
        pieces = np.maximum(1, -(-(stops - starts) // chunk))
        piece_node = np.repeat(np.arange(len(ids), dtype=np.int64), pieces)
        first = np.repeat(np.cumsum(pieces) - pieces, pieces)
        piece_starts = starts[piece_node] + (np.arange(piece_node.size) - first) * chunk
        piece_stops = np.minimum(piece_starts + chunk, stops[piece_node])
        packed = np.zeros((len(self.hist_features), piece_node.size, self.n_bins, 1),
                          dtype=np.int64)
        self._build(piece_starts, piece_stops, packed)
        unpack_histograms(packed, piece_node, fields.count_bits, fields.hess_bits, out)

    def _scatter_counts(self, unit):
        counts = self._counts.get(unit)
        if counts is None:
            counts = self._counts[unit] = block_counts(self.n_features, self.size, unit=unit)[0]
        return counts

    def _row_major(self):
        """Whether histograms read the row-major matrix: whenever there is one, for up to
        three channels (with the rows prefetched, reading a row's bins at once wins at
        every node size)."""
        return self.binned_rows is not None and self.channels.shape[1] <= 3

    def _feature_mask(self, nid):
        if self.k_features == self.n_features:
            if self._all_features is None:
                self._all_features = np.ones(self.n_features, dtype=bool)
            return self._all_features
        mask = np.ones(self.n_features, dtype=bool)
        sample_features(self.random_state, self.tree_index, nid, self.n_features,
                        self.k_features, mask)
        return mask

    def _local_best(self, nid):
        """This rank's best split of a node over its owned features: ``(gain, f, b, left
        sums, missing, left-bin mask)`` (see ``cand_missing``, ``cand_mask``)."""
        none = (-np.inf, 0, 0, np.zeros(self.n_channels, dtype=np.int64))
        if len(self.owned) == 0 or self.n_bins < 2:
            return none + (0, None)
        if not self.special:
            gain, j, b, left = self._scan(self.hists[nid], nid, self.bins_per_feature[self.owned],
                                          self._feature_mask(nid)[self.owned])
            return gain, int(self.owned[j]), b, left, 0, None
        return self._special_best(nid)

    def _special_best(self, nid):
        """Best split over owned features with missing-value bins or categories: each such
        feature is searched as one or two "virtual" features whose bins are ordered so
        that every candidate (missing values left or right; a prefix of the categories
        sorted by :func:`category_keys`) is a prefix of bins, with the criterion's own
        scan. Candidates are met feature by feature, missing right before missing left."""
        hist, sums = self.hists[nid], self.sums[nid]
        edges = self.bin_edges
        rows, feats, kinds, orders, counts = [], [], [], [], []
        for j, f in enumerate(self.owned):
            h = hist[j]
            nv = int(edges.n_value_bins[f])
            m = nv if edges.missing[f] else -1
            seen = m >= 0 and h[m].any()
            if edges.categorical[f]:
                present = np.flatnonzero(h[:nv].any(axis=1))
                keys = category_keys(self.criterion, h[present], sums)
                order = present[np.lexsort((present, keys))]
                right = h[order]
                if seen:
                    right = np.concatenate([right, h[m:m + 1]])
                variants = [(_CATEGORY_RIGHT, right)]
                if seen and order.size:
                    moved = h[order].copy()
                    moved[0] += h[m]
                    variants.append((_CATEGORY_LEFT, moved))
            else:
                order = None
                variants = [(_AS_IS, h)]
                if seen:
                    moved = h[:m].copy()
                    moved[0] += h[m]
                    variants.append((_MISSING_LEFT, moved))
            for kind, v in variants:
                if v.shape[0] >= 2:
                    rows.append(v), feats.append(f), kinds.append(kind), orders.append(order)
                    counts.append(v.shape[0])
        if not rows:
            return (-np.inf, 0, 0, np.zeros(self.n_channels, dtype=np.int64), 0, None)
        virtual = np.zeros((len(rows), self.n_bins, self.n_channels), dtype=np.int64)
        for i, v in enumerate(rows):
            virtual[i, :v.shape[0]] = v
        feats = np.asarray(feats, dtype=np.int64)
        mask = self._feature_mask(nid)[feats]
        gain, v, b, left = self._scan(virtual, nid, np.asarray(counts, dtype=np.int64), mask)
        if gain == -np.inf:
            return (gain, 0, 0, left, 0, None)
        f, kind = int(feats[v]), kinds[v]
        nv = int(edges.n_value_bins[f])
        m = nv if edges.missing[f] else -1
        seen = m >= 0 and bool(hist[list(self.owned).index(f), m].any())
        missing = 0 if not seen else (1 if kind in (_MISSING_LEFT, _CATEGORY_LEFT) else 2)
        bins_left = None
        if kind in (_CATEGORY_RIGHT, _CATEGORY_LEFT):
            bins_left = orders[v][:b + 1]
        return gain, f, int(b), left, missing, bins_left

    def _scan(self, hist, nid, n_bins, allowed):
        """``(gain, j, b, left)``: the criterion's first best candidate (in (row, bin)
        order) of the histograms ``hist`` (n, B, C) whose row j has ``n_bins[j]`` bins
        and is searched where ``allowed[j]``."""
        none = (-np.inf, 0, 0, np.zeros(self.n_channels, dtype=np.int64))
        crit, sums = self.criterion, self.sums[nid]
        if crit.kernel is not None:
            kind, first, n_classes, scales, count_channel = crit.kernel
            left = np.zeros(self.n_channels, dtype=np.int64)
            gain, j, b = scan_histogram(hist, sums, np.arange(hist.shape[0], dtype=np.int64),
                                        n_bins, kind, first, n_classes, scales, count_channel,
                                        self.min_samples_leaf, allowed, left)
            return (gain, int(j), int(b), left) if gain > -np.inf else none
        if hasattr(crit, "best_split"):
            best = crit.best_split(hist, sums, self.min_samples_leaf, allowed)
            if best is None:
                return none
            gain, j, b, left = best
            return float(gain), int(j), int(b), left
        left = np.cumsum(hist[:, :-1, :], axis=1)
        right = sums - left
        gain = np.asarray(crit.split_gain(left, right, sums), dtype=np.float64)
        valid = ((crit.n_samples(left) >= self.min_samples_leaf)
                 & (crit.n_samples(right) >= self.min_samples_leaf) & ~np.isnan(gain))
        valid &= allowed[:, None]
        gain = np.where(valid, gain, -np.inf)
        k = int(np.argmax(gain))
        j, b = divmod(k, hist.shape[1] - 1)
        if gain[j, b] == -np.inf:
            return none
        return float(gain[j, b]), int(j), int(b), left[j, b]

    def _scan_nodes(self, ids, mine):
        """The search of :meth:`_local_best` for every node of ``ids`` in one kernel call,
        into the rows of ``mine``; False (nothing written) where it does not apply:
        missing-value bins or categories, no owned feature, or a criterion with neither
        a ``kernel`` spec nor ``best_splits``."""
        crit = self.criterion
        if (self.special or len(self.owned) == 0 or self.n_bins < 2
                or (crit.kernel is None and not hasattr(crit, "best_splits"))):
            return False
        hists = np.empty((len(ids),) + self.hists[ids[0]].shape, dtype=np.int64)
        for slot, nid in enumerate(ids):      # (np.stack costs more for a few arrays)
            hists[slot] = self.hists[nid]
        if self.k_features == self.n_features:
            masks = np.ones((len(ids), len(self.owned)), dtype=bool)
        else:
            masks = np.stack([self._feature_mask(nid)[self.owned] for nid in ids])
        parents = self.sums[np.asarray(ids, dtype=np.int64)]
        if crit.kernel is not None:
            kind, first, n_classes, scales, count_channel = crit.kernel
            n = len(ids)
            gains, j, b = np.empty(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
            lefts = np.zeros((n, self.n_channels), np.int64)
            scan_histograms(hists, parents, self.bins_per_feature[self.owned], kind, first,
                            n_classes, scales, count_channel, self.min_samples_leaf, masks,
                            gains, j, b, lefts)
        else:
            gains, j, b, lefts = crit.best_splits(hists, parents, self.min_samples_leaf, masks)
        c = self.n_channels
        mine[:, 0] = gains.view(np.int64)
        mine[:, 1] = self.owned[j]
        mine[:, 2] = b
        mine[:, 3:3 + c] = lefts
        return True

    def _scan_each(self, ids, mine):
        """:meth:`_local_best` of each node of ``ids``, one by one, into the rows of
        ``mine`` (gain, feature, bin, left sums, missing side, left-bin mask)."""
        c = self.n_channels
        for slot, nid in enumerate(ids):
            gain, f, b, left, missing, bins_left = self._local_best(nid)
            mine[slot, 0] = np.float64(gain).view(np.int64)
            mine[slot, 1:3] = (f, b)
            mine[slot, 3:3 + c] = left
            mine[slot, 3 + c] = missing
            if bins_left is not None:
                bits = np.zeros(64 * _MASK_WORDS, dtype=bool)
                bits[bins_left] = True
                mine[slot, 4 + c:] = np.packbits(bits, bitorder="little").view(np.int64)

    def _search_hist(self, ids):
        """Best split of each node over all features, identical on every rank. Collective."""
        mine = self._candidate_rows(len(ids))
        with phase("split search"):
            if not self._scan_nodes(ids, mine):
                self._scan_each(ids, mine)
        self._take_candidates(ids, mine)

    # -- growth ----------------------------------------------------------------------

    def _search_children(self, parents, children):
        """Search the splits of the splittable ``children`` ((S, 2) ids) of ``parents``."""
        wanted = self._splittable(children.reshape(-1))
        if self.local:
            # one rank: large nodes searching every feature use histograms (and subtraction),
            # the others the local kernel; both pick the same split from the same sums
            on_hist = self._use_histograms(wanted)
            if (~on_hist).any():
                self._search_local(wanted[~on_hist])
            wanted = wanted[on_hist]
        wanted_set = set(wanted.tolist())
        derive, direct = [], []
        for parent, (left, right) in zip(parents.tolist(), children.tolist()):
            if left not in wanted_set and right not in wanted_set:
                continue
            if parent in self.hists:
                small, large = ((left, right) if self.n_node_samples[left] <= self.n_node_samples[right]
                                else (right, left))
                derive.append((parent, small, large))
            else:
                direct.extend(c for c in (left, right) if c in wanted_set)
        deriving = {parent for parent, _, _ in derive}
        for parent in parents:
            if parent not in deriving:
                self.hists.pop(parent, None)
        built = [small for _, small, _ in derive] + direct
        if not built:
            return
        for nid, hist in zip(built, self._histograms(built)):
            self.hists[nid] = hist
        for parent, small, large in derive:
            hist = self.hists.pop(parent)   # the parent's own array: no other node reads it
            np.subtract(hist, self.hists[small], out=hist)
            self.hists[large] = hist
        self._search_hist(wanted.tolist())
        for nid in built + [large for _, _, large in derive]:
            if not self.open[nid] or self.n_node_samples[nid] < _KEEP_HIST_ROWS:
                self.hists.pop(nid, None)
            elif not self.hists[nid].flags.c_contiguous:
                self.hists[nid] = np.ascontiguousarray(self.hists[nid])  # frees the chunk

    def _use_histograms(self, ids):
        """Which of ``ids`` the one-rank grower searches through histograms."""
        if self.k_features < self.n_features:
            return np.zeros(len(ids), dtype=bool)
        return self.n_node_samples[ids] >= _KEEP_HIST_ROWS

    def _step(self, chosen):
        """Split the ``chosen`` open nodes (sorted ids) and search their children. Collective."""
        left_sums = self.cand_left[chosen]
        missing_left = self._missing_sides(chosen, left_sums)
        self.missing_left[chosen] = missing_left
        if self.special:
            tables, categorical = self._left_tables(chosen, missing_left)
            self._record_categories(chosen, tables, categorical)
        else:
            tables = self._no_tables
        # children of chosen[i]: 2 i (left) and 2 i + 1 (right) after the first new id
        child_sums = np.empty((2 * len(chosen), self.n_channels), dtype=np.int64)
        child_sums[0::2] = left_sums
        np.subtract(self.sums[chosen], left_sums, out=child_sums[1::2])
        first = self._new_nodes(child_sums)
        with phase("partition"):
            split_nodes(chosen, first, self.rows, self.buffer, self.binned, tables, self.special,
                        self.edge_table, self.start, self.stop, self.depth, self.cand_feature,
                        self.cand_bin, self.cand_gain, self.categorical, self.feature,
                        self.threshold_bin, self.threshold, self.left, self.right, self.gain,
                        self.open)
        children = np.arange(first, first + 2 * len(chosen)).reshape(-1, 2)
        self._search_children(chosen, children)

    def _missing_sides(self, chosen, left_sums):
        """Where each split sends missing values: the learned side, or, where the node
        had no missing value of the feature, the child with more rows (ties: right)."""
        learned = self.cand_missing[chosen]
        n_left = self.criterion.n_samples(left_sums)
        n_right = self.n_node_samples[chosen] - n_left
        return np.where(learned == 0, n_left > n_right, learned == 1).astype(np.uint8)

    def _left_tables(self, chosen, missing_left):
        """``(table (S, B) uint8, categorical (S,) bool)``: which bins go left at each
        split (numeric: the bins up to the threshold bin; categorical: the candidate's
        bins; the missing bin: ``missing_left``)."""
        edges = self.bin_edges
        features = self.cand_feature[chosen]
        table = np.zeros((len(chosen), self.n_bins), dtype=np.uint8)
        categorical = edges.categorical[features]
        for i, f in enumerate(features):
            nv = edges.n_value_bins[f]
            if categorical[i]:
                bits = np.unpackbits(self.cand_mask[chosen[i]].view(np.uint8), bitorder="little")
                table[i, :nv] = bits[:nv]
            else:
                table[i, :self.cand_bin[chosen[i]] + 1] = 1
            if edges.missing[f]:
                table[i, nv] = missing_left[i]
        return table, categorical

    def _record_categories(self, chosen, table, categorical):
        """Store each categorical split's left category codes as a bitset over the codes
        (a code sharing the "other" bin goes where that bin goes)."""
        self.categorical[chosen] = categorical
        words = self.cat_bitset.shape[1]
        for i in np.flatnonzero(categorical):
            code_bins = self.bin_edges.code_bins[self.cand_feature[chosen[i]]]
            bits = np.zeros(32 * words, dtype=bool)
            bits[:code_bins.size] = table[i, code_bins] != 0
            self.cat_bitset[chosen[i]] = np.packbits(bits, bitorder="little").view(np.uint32)

    def grow(self):
        if self.packed_fields is not None:
            fields = self.packed_fields
            sums = np.zeros(self.n_channels, dtype=np.int64)
            unpacked_sum(self.channels, self.rows, fields.max_rows, fields.count_bits,
                         fields.hess_bits, sums)
        elif self.rows.shape[0] == self.channels.shape[0]:  # all rows: sum without a copy
            sums = self.channels.sum(axis=0, dtype=np.int64)
        else:
            sums = self.channels[self.rows].sum(axis=0, dtype=np.int64)
        if self.mode == "data" and self.comm is not None:
            total = np.empty_like(sums)
            with collective(self.comm):
                self.comm.Allreduce(sums, total)
            sums = total
        root = np.array([self._new_nodes(sums[None])])
        self.start[0], self.stop[0], self.depth[0] = 0, self.rows.shape[0], 0
        if self._splittable(root).size:
            if self.local and not self._use_histograms(root)[0]:
                self._search_local(root)
            else:
                self.hists[0] = self._histograms([0])[0]
                self._search_hist([0])
        if self.max_leaf_nodes is not None and self._ahead():
            return self._grow_best_first_ahead()
        n_leaves = 1
        while True:
            open_ids = np.flatnonzero(self.open[:self.n_nodes])
            if open_ids.size == 0:
                break
            if self.max_leaf_nodes is not None:
                if n_leaves >= self.max_leaf_nodes:
                    break
                open_ids = open_ids[[int(np.argmax(self.cand_gain[open_ids]))]]
            n_leaves += open_ids.size
            self._step(open_ids)
        return self._ordered_tree(np.arange(self.n_nodes),
                                  np.flatnonzero(self.left[:self.n_nodes] >= 0))

    def _ahead(self):
        """Whether best-first growth splits leaves ahead of their turn: with more than one
        rank (where each step costs collectives) and when no node's feature subset
        depends on its id."""
        return self.comm is not None and self.k_features == self.n_features

    def _grow_best_first_ahead(self):
        """Best-first growth that splits several leaves per collective step: the same tree
        as one best leaf per step.

        A leaf's best split and its children depend on the leaf's rows alone, so a leaf
        can be split before its turn. The growth itself is replayed on the expanded
        nodes: the open leaf of the largest gain (ties: the lowest id in creation
        order) is split next. When that leaf has not been expanded yet, one step expands
        it together with the next open leaves in that order, up to the leaves still to
        make (``_AHEAD_SHARE`` of them): two collectives for all of them. Expanded leaves
        whose turn never comes stay leaves of the tree."""
        order = [0]                 # creation order of the tree's nodes (expanded ids)
        position = {0: 0}           # expanded id -> its place in ``order``
        open_ = [0] if self.open[0] else []
        expanded, split = set(), []
        n_leaves = 1
        while open_ and n_leaves < self.max_leaf_nodes:
            best = max(open_, key=lambda n: (self.cand_gain[n], -position[n]))
            if best not in expanded:
                pending = sorted((n for n in open_ if n not in expanded),
                                 key=lambda n: (-self.cand_gain[n], position[n]))
                room = self.max_leaf_nodes - n_leaves
                batch = pending[:max(1, int(np.ceil(room * _AHEAD_SHARE)))]
                self._step(np.array(sorted(batch), dtype=np.int64))
                expanded.update(batch)
            open_.remove(best)
            split.append(best)
            for child in (self.left[best], self.right[best]):
                position[int(child)] = len(order)
                order.append(int(child))
                if self.open[child]:
                    open_.append(int(child))
            n_leaves += 1
        return self._ordered_tree(np.array(order, dtype=np.int64), np.array(split, dtype=np.int64))

    def _ordered_tree(self, order, split):
        """The tree of the expanded nodes ``order`` (in creation order) whose nodes
        ``split`` are split; every other node is a leaf. Remembers the leaves' nodes for
        :meth:`leaf_segments`."""
        fields = {name: getattr(self, name)[order] for name in TREE_FIELDS}
        is_split = np.isin(order, split)
        position = np.full(self.n_nodes, -1, dtype=np.int64)
        position[order] = np.arange(order.size)
        for side in ("left", "right"):
            fields[side] = np.where(is_split, position[np.maximum(fields[side], 0)], -1)
        leaf = ~is_split
        for name, value in _LEAF_FIELDS.items():
            fields[name][leaf] = value
        self._tree_leaves = np.flatnonzero(leaf)
        self._leaf_nodes = order[self._tree_leaves]
        return Tree(**fields)

    def leaf_segments(self):
        """``(rows, starts, stops, leaves)``: leaf ``leaves[i]`` holds the local rows
        ``rows[starts[i]:stops[i]]``."""
        nodes = self._leaf_nodes
        return self.rows, self.start[nodes], self.stop[nodes], self._tree_leaves


def leaf_of_rows(segments, n_rows):
    """The leaf index of each of ``n_rows`` local rows, from the leaves' row segments
    (``grow_tree(..., return_segments=True)``)."""
    rows, starts, stops, leaves = segments
    leaf = np.empty(n_rows, dtype=np.int64)
    fill_leaves(rows, starts, stops, leaves, leaf)
    return leaf


def leaf_slots(segments, n_rows, out=None):
    """The place in ``segments``' leaves (0 .. n_leaves - 1) of each of ``n_rows`` local
    rows, in the smallest unsigned type that holds it (``out``: an array of that type to
    fill, reused from tree to tree). A pass over the rows in their order then reaches
    each row's leaf through a table of a few entries instead of each leaf's rows
    through the scattered row indices."""
    rows, starts, stops, leaves = segments
    dtype = np.uint8 if leaves.size <= 1 << 8 else (
        np.uint16 if leaves.size <= 1 << 16 else np.uint32)
    if out is None or out.dtype != dtype or out.shape[0] != n_rows:
        out = np.empty(n_rows, dtype=dtype)
    fill_leaves(rows, starts, stops, np.arange(leaves.size, dtype=np.int64), out)
    return out


def _index_dtype(n_rows):
    """Local row indices: 4 bytes each where they fit."""
    return np.int32 if n_rows < 2 ** 31 else np.int64


def index_buffers(n_rows):
    """Two row-index arrays for :func:`grow_tree`'s ``index_buffers``, to reuse for every
    tree grown on ``n_rows`` local rows."""
    index = _index_dtype(n_rows)
    return np.empty(n_rows, dtype=index), np.empty(n_rows, dtype=index)


def grow_tree(binned, channels, criterion, bin_edges, *, comm=None, mode="data", max_depth=None,
              max_leaf_nodes=None, min_samples_leaf=1, min_samples_split=2, min_gain=0.0,
              max_features=None, random_state=0, tree_index=0, return_leaves=False,
              binned_rows=None, return_segments=False, index_buffers=None, packed_fields=None):
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
        Rows whose channels are all zero add nothing (and are skipped unless
        ``return_leaves``).
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
    binned_rows : ndarray of shape (n_local, n_features), uint8, optional
        ``binned`` row-major (once per fit by a caller growing many trees): lets
        ``mode="data"`` histogram the nodes it suits row by row. Same tree.
    return_segments : bool
        With ``return_leaves``, return the leaves as row segments instead of an array:
        ``(rows, starts, stops, leaves)``, leaf ``leaves[i]`` holding the local rows
        ``rows[starts[i]:stops[i]]`` (no pass over the rows to make).
    index_buffers : pair of ndarray of shape (n_local,), int32 or int64, optional
        With ``return_leaves``: two arrays the grower uses for its row indices (the
        segments' ``rows`` is the first), so that a caller growing many trees reuses
        them (:func:`index_buffers`).
    packed_fields : layout, optional
        ``channels`` is one packed channel (``count_bits``, ``hess_bits``, ``max_rows``
        as :class:`mpiml.models.gbdt.criterion.PackedLayout`) whose sums of more than
        ``max_rows`` rows would carry: histograms and sums are made ``max_rows`` rows
        at a time and unpacked into ``n_unpacked`` exact channels, on which
        ``criterion`` works. Same tree for any rank count.

    Returns
    -------
    tree : Tree
    leaf_of_row : ndarray of shape (n_local,), int64, or tuple
        Only with ``return_leaves`` (segments with ``return_segments``).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    channels = np.ascontiguousarray(channels, dtype=np.int64)
    binned = np.ascontiguousarray(binned, dtype=np.uint8)
    index = _index_dtype(binned.shape[1])
    buffer = None
    if return_leaves and index_buffers is not None:
        rows, buffer = index_buffers
        fill_range(rows)
    elif return_leaves:
        rows = np.arange(binned.shape[1], dtype=index)
    else:
        rows = np.flatnonzero(channels.any(axis=1)).astype(index)
    grower = _Grower(binned, channels, criterion, bin_edges, comm, mode, max_depth, max_leaf_nodes,
                     min_samples_leaf, min_samples_split, min_gain, max_features,
                     random_state, tree_index, rows, binned_rows, buffer, packed_fields)
    tree = grower.grow()
    if not return_leaves:
        return tree
    segments = grower.leaf_segments()
    return tree, segments if return_segments else leaf_of_rows(segments, binned.shape[1])
