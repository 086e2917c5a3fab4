"""Gradient boosting: the boosting loop shared by the classifier and the regressor.

Boosting is sequential; the parallelism is inside each tree, built by the tree core
(:mod:`mpiml.models.tree`) on rows sharded over ranks. What makes the model the same
to the last bit for any rank count:

* gradients and hessians are row-wise functions of a row's raw score, and are turned
  into int64 fixed-point numbers with power-of-two scales that every rank agrees on
  (an allreduce MAX), so every histogram sum, split gain and leaf value is computed
  from exact integer sums (:mod:`._fixed_point`, :mod:`.criterion`); with
  ``quantize_gradients`` the split search uses integers rounded at random from a
  hash of (seed, tree, global row index), packed into one channel, and the node
  values the exact sums;
* row sampling and the validation split draw one number per (seed, round, global row
  index) (:func:`mpiml.data.split.holdout_mask`), never per rank;
* raw scores are updated row by row, tree after tree, in a fixed order; the loss
  curves, baselines and absolute-error leaf medians use exact integer sums too.

The same properties make checkpoints exact: a resumed fit recomputes the raw scores
from the saved trees and draws round ``m``'s sample from ``m`` alone.
"""

__all__ = ["BaseGradientBoosting"]

import os

import numpy as np

from ...checks import check_bool, check_float, check_int, resolve_seed, validate_fit_data
from ...comm import agree, collective_error, global_offset, resolve_comm
from ...comm.ops import MAX
from ...data.split import holdout_mask
from ...errors import DataError, InvalidParameterError, MpimlError
from ...progress import as_progress
from .._base import BaseEstimator, check_is_fitted, collective
from ..tree._classes import allow_nan_tags, fit_table
from ..tree._profile import collective as timed_collective, phase
from ..tree import (PackedTrees, bin_data, fit_bin_edges, fixed_point_scale, grow_tree, index_buffers,
                    leaf_slots, stack_trees, unstack_trees)
from . import _fixed_point as fp
from .criterion import (GradientCriterion, PackedGradientCriterion, add_leaf_values, channel_layout,
                        hessian_scale, make_channels, make_packed_channels, packed_scales,
                        quantized_layout, renew_node_values, unpacked_criterion)

_VALIDATION_STREAM = 2 ** 32  # round m draws its row sample from stream m
_QUANTIZE_STREAM = 2 ** 33    # tree m * k + c rounds its gradients with stream 2**33 + that


def _stream_seed(seed, stream):
    """A seed for one independent draw (validation split, round m's sample): rows are
    then chosen by a hash of (this seed, global row index), never by rank."""
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class BaseGradientBoosting(BaseEstimator):
    """Shared parameters, fit loop, persistence and prediction. Not used directly."""

    _loss_names = ()

    def __init__(self, *, loss, learning_rate=0.1, n_estimators=100, max_leaf_nodes=31,
                 max_depth=None, min_samples_leaf=20, l2_regularization=0.0, max_bins=255,
                 subsample=1.0, validation_fraction=None, n_iter_no_change=None, tol=1e-7,
                 random_state=None, quantize_gradients=True, categorical_features="from_dtype"):
        self.loss = loss
        self.learning_rate = learning_rate
        self.n_estimators = n_estimators
        self.max_leaf_nodes = max_leaf_nodes
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_bins = max_bins
        self.subsample = subsample
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.quantize_gradients = quantize_gradients
        self.categorical_features = categorical_features

    def __sklearn_tags__(self):
        return allow_nan_tags(super().__sklearn_tags__())

    def _validate_params(self):
        if self.loss not in self._loss_names:
            raise InvalidParameterError(f"loss must be one of {', '.join(self._loss_names)}, "
                                        f"got {self.loss!r}")
        check_float("learning_rate", self.learning_rate, 0, low_open=True)
        check_int("n_estimators", self.n_estimators, 1)
        check_int("max_leaf_nodes", self.max_leaf_nodes, 2, allow_none=True)
        check_int("max_depth", self.max_depth, 1, allow_none=True)
        check_int("min_samples_leaf", self.min_samples_leaf, 1)
        check_float("l2_regularization", self.l2_regularization, 0)
        check_int("max_bins", self.max_bins, 2, 255)
        check_float("subsample", self.subsample, 0, 1, low_open=True)
        check_float("validation_fraction", self.validation_fraction, 0, 1, low_open=True,
                    high_open=True, allow_none=True)
        check_int("n_iter_no_change", self.n_iter_no_change, 1, allow_none=True)
        check_float("tol", self.tol, 0)
        check_int("random_state", self.random_state, 0, allow_none=True)
        check_bool("quantize_gradients", self.quantize_gradients)
        if self.max_leaf_nodes is None and self.max_depth is None:
            raise InvalidParameterError("max_leaf_nodes and max_depth cannot both be None "
                                        "(the trees would be unbounded)")

    _check_params = _validate_params

    def _check_fitted(self):
        check_is_fitted(self, "trees_")

    def _check_predict_input(self, X):
        self._check_fitted()
        return self._check_predict_X(X, allow_nan=True)

    # -- fit ---------------------------------------------------------------------------

    @collective
    def fit(self, X, y, sample_weight=None, *, comm=None, checkpoint_every=None,
            checkpoint_path=None, resume_from=None, progress=None, feature_names=None):
        """Fit the boosted trees on the rows of every rank.

        Collective: every rank of ``comm`` calls it with its own rows.

        Parameters
        ----------
        X : array-like of shape (n_local, n_features)
            This rank's rows: the contiguous global rows ``[offset, offset + n_local)``,
            offsets in rank order. A rank may hold no rows.
        y : array-like of shape (n_local,)
        sample_weight : array-like of shape (n_local,), optional
        comm : Communicator, optional
            ``None``: one rank holding every row.
        checkpoint_every : int, optional
            Save the model so far every this many rounds (needs ``checkpoint_path``);
            0 or None: no checkpoints.
        checkpoint_path : str, optional
            Where checkpoints go: written atomically by rank 0 with :func:`mpiml.save`.
        resume_from : str, optional
            A model file of this estimator (a checkpoint or a finished model) trained
            with the same parameters (``n_estimators`` may be larger) on the same rows:
            boosting continues after its last round and ends with the same model as
            an uninterrupted fit.
        progress : callable, optional
            ``progress(round, train_loss, validation_loss=...)`` after each round, on
            every rank (see :class:`mpiml.progress.ProgressReporter`).
        feature_names : sequence of str, optional
            Stored as ``feature_names_in_`` (and in model files).

        Returns
        -------
        self
        """
        try:  # the same parameters on every rank: every rank raises the same error
            self._validate_params()
            check_int("checkpoint_every", checkpoint_every, 0, allow_none=True)
            if checkpoint_every and not checkpoint_path:
                raise InvalidParameterError("checkpoint_every needs checkpoint_path")
        except InvalidParameterError as exc:
            raise collective_error(exc) from None
        report = as_progress(progress)
        comm = resolve_comm(comm)
        X = fit_table(self, X, comm)
        X, y, weight, n_total = validate_fit_data(X, y, comm, sample_weight,
                                                  numeric_y=self._task == "regression",
                                                  estimator=self, allow_nan=True)
        if n_total < 2:
            raise collective_error(DataError(f"n_samples={n_total}: need at least 2 rows to fit"))
        offset, _ = global_offset(len(X), comm)
        self.n_features_in_ = X.shape[1]
        self._record_fit(comm, feature_names)
        y = self._encode_target(comm, y)
        self._loss_ = self._make_loss()
        k = self._loss_.n_trees_per_round

        resumed, error = None, None
        if resume_from is not None:
            try:  # every rank reads the file (a rank that cannot fails them all)
                resumed = self._read_checkpoint(resume_from)
            except MpimlError as exc:
                error = exc
            agree(comm, error)
        self._seed = resumed._seed if resumed is not None else resolve_seed(self.random_state, comm)

        bin_edges = fit_bin_edges(X, self.max_bins, comm=comm, seed=self._seed,
                                  n_categories=self.feature_schema_.n_categories)
        is_val = np.zeros(len(X), dtype=bool)
        if self.validation_fraction is not None:
            is_val = holdout_mask(offset, len(X), self.validation_fraction,
                               _stream_seed(self._seed, _VALIDATION_STREAM))
        n_val_total = comm.allreduce(int(is_val.sum()))
        if self.validation_fraction is not None and not 0 < n_val_total < n_total:
            raise collective_error(DataError(
                f"validation_fraction={self.validation_fraction!r} leaves {n_val_total} "
                f"validation rows of {n_total}; both parts must be non-empty"))
        train = _Rows(comm, X, y, weight, ~is_val, n_total - n_val_total, bin_edges)
        val = (_Rows(comm, X, y, weight, is_val, n_val_total, None)
               if self.validation_fraction is not None else None)

        if resumed is None:
            self.baseline_ = self._loss_.baseline(comm, train.y, train.weight, train.n_total)
            self.trees_, self.train_loss_, self.validation_loss_ = [], [], []
        else:
            self.baseline_ = np.array(resumed.baseline_, dtype=np.float64)
            self.trees_ = list(resumed.trees_)
            self.train_loss_ = list(resumed.train_loss_)
            self.validation_loss_ = list(resumed.validation_loss_)
        start_round = len(self.trees_) // k
        del self.train_loss_[start_round:], self.validation_loss_[start_round:]
        for part in (train, val):
            if part is not None:
                part.raw = np.tile(self.baseline_, (part.n, 1))
                for t, tree in enumerate(self.trees_):  # the same additions, in the same order
                    part.raw[:, t % k] += tree.value[tree.apply(part.X), 0]

        count_is_hessian = self._loss_.constant_hessian and train.weight is None
        packed, chunked = (quantized_layout(train.n_total, count_is_hessian)
                           if self.quantize_gradients else (None, False))
        packed_fields = packed if chunked else None
        count_bits = channel_layout(train.n_total, count_is_hessian)
        # global row indices of the training rows, where a validation split leaves gaps
        train_rows = None if train.mask.all() else offset + np.flatnonzero(train.mask)
        refit = getattr(self._loss_, "refit_leaves", None)
        if refit is not None:
            refit_weights = self._loss_.exact_weights(comm, train.weight, train.n, train.n_total)
        stopped = False
        for m in range(start_round, self.n_estimators):
            grad = hess = None   # the last round's arrays go before this round's are made
            with phase("gradients"):
                grad, hess, grad_max, hess_max = self._gradients_and_losses(comm, train, val)
            report(m, self.train_loss_[-1], **self._report_fields())
            if self._should_stop():
                stopped = True
                break
            # rows outside the round's sample keep channels of zeros (count included):
            # they add nothing to any sum but are partitioned, so every row gets its leaf
            sampled = self._sample(m, train, offset)
            for c in range(k):
                channels = segments = None
                with phase("gradients"):
                    channels, criterion, exact_scales = self._channels(
                        grad[:, c], hess[:, c], grad_max[c], hess_max[c], sampled, packed,
                        chunked, count_bits, train, offset, train_rows, m * k + c)
                with phase("bookkeeping"):
                    tree, segments = grow_tree(
                        train.binned, channels, criterion, bin_edges, comm=comm, mode="data",
                        max_depth=self.max_depth, max_leaf_nodes=self.max_leaf_nodes,
                        min_samples_leaf=self.min_samples_leaf, return_leaves=True,
                        binned_rows=train.binned_rows, return_segments=True,
                        index_buffers=train.buffer("rows"), packed_fields=packed_fields)
                with phase("leaf values"):
                    slots = leaf_slots(segments, train.n, train.buffer("slots"))
                    if packed is not None:
                        renew_node_values(comm, tree, segments, grad[:, c], hess[:, c], sampled,
                                          *exact_scales, self.l2_regularization,
                                          self.learning_rate, slots=slots)
                    if refit is not None:
                        weights = refit_weights if sampled is True else refit_weights * sampled
                        refit(comm, tree, segments[3][slots], train.y,   # each row's leaf
                              train.raw[:, c], weights, self.learning_rate)
                    add_leaf_values(slots, segments[3], tree.value, train.raw, c)
                    if val is not None:
                        val.raw[:, c] += tree.value[tree.apply(val.X), 0]
                self.trees_.append(tree)
            if checkpoint_every and (m + 1) % checkpoint_every == 0 and m + 1 < self.n_estimators:
                self.n_iter_ = m + 1
                self._finish_attributes()
                self._save_checkpoint(comm, checkpoint_path)
        if not stopped:
            grad = hess = channels = segments = None
            self._gradients_and_losses(comm, train, val)
            report(len(self.trees_) // k, self.train_loss_[-1], **self._report_fields())
        if hasattr(report, "done"):
            report.done()
        self.n_iter_ = len(self.trees_) // k
        self._finish_attributes()
        return self

    def _channels(self, grad, hess, grad_max, hess_max, sampled, packed, chunked, count_bits,
                  train, offset, train_rows, stream):
        """``(channels, criterion, exact_scales)`` of one tree from its gradients
        (``exact_scales``: the fixed-point scales of the node values' exact sums; None
        without quantized gradients). With ``chunked``, the criterion reads the packed
        channel's sums unpacked (see :func:`.criterion.quantized_layout`)."""
        grad_scale = fixed_point_scale(grad_max, train.n_total)
        if packed is None:
            hess_scale = hessian_scale(hess_max, train.n_total, count_bits)
            channels = make_channels(grad, hess, sampled, grad_scale, hess_scale, count_bits)
            criterion = GradientCriterion(grad_scale, hess_scale, self.l2_regularization,
                                          self.learning_rate, count_bits)
            return channels, criterion, None
        q_grad, q_hess = packed_scales(packed, grad_max, hess_max)
        exact_scales = (grad_scale, hessian_scale(hess_max, train.n_total, -1))
        channels = make_packed_channels(
            grad, hess, sampled, q_grad, q_hess, packed,
            _stream_seed(self._seed, _QUANTIZE_STREAM + stream), offset, train_rows,
            out=train.buffer("packed"))
        make = unpacked_criterion if chunked else PackedGradientCriterion
        criterion = make(q_grad, q_hess, self.l2_regularization, self.learning_rate, packed)
        return channels, criterion, exact_scales

    def _report_fields(self):
        if self.validation_loss_:
            return {"validation_loss": self.validation_loss_[-1]}
        return {}

    def _gradients_and_losses(self, comm, train, val):
        """Collective: the training rows' gradients and hessians, each (n, k); append the
        mean train (and validation) loss of the current model, exact over all rows; and
        return the largest magnitudes over all ranks of the gradient and hessian columns,
        each (k,) (one MAX and one SUM allreduce)."""
        loss = self._loss_
        k = loss.n_trees_per_round
        local_max = np.zeros(2 * k + 2)
        if hasattr(loss, "gradients_and_pointwise"):   # one pass over the rows
            grad, hess, train_rows, maxima = loss.gradients_and_pointwise(
                train.y, train.raw, train.weight, out=train.buffer("gradients"))
            local_max[0], local_max[k], local_max[2 * k] = maxima
        else:
            grad, hess = loss.gradients(train.y, train.raw, train.weight)
            train_rows = loss.pointwise(train.y, train.raw, train.weight)
            for c in range(k):
                local_max[c] = fp.max_abs(grad[:, c])
                local_max[k + c] = fp.max_abs(hess[:, c])
            local_max[2 * k] = fp.max_abs(train_rows)
        val_rows = (loss.pointwise(val.y, val.raw, val.weight) if val is not None
                    else np.zeros(0))
        local_max[2 * k + 1] = fp.max_abs(val_rows)
        global_max = np.empty_like(local_max)
        with timed_collective(comm):
            comm.Allreduce(local_max, global_max, op=MAX)
        scales = fp.column_scales(global_max, max(train.n_total, val.n_total if val else 1))
        local = np.zeros((1, 2), dtype=np.int64)
        local[0, 0] = fp.fixed_sum(train_rows, scales[2 * k])
        local[0, 1] = fp.fixed_sum(val_rows, scales[2 * k + 1])
        with timed_collective(comm):
            sums = fp.integer_sums(comm, local) / scales[2 * k:]
        self.train_loss_.append(float(sums[0] / train.weight_total))
        if val is not None:
            self.validation_loss_.append(float(sums[1] / val.weight_total))
        return grad, hess, global_max[:k], global_max[k:2 * k]

    def _should_stop(self):
        """scikit-learn's rule: stop when none of the last ``n_iter_no_change`` losses
        beats the one before them by more than ``tol``."""
        n = self.n_iter_no_change
        if n is None:
            return False
        curve = self.validation_loss_ if self.validation_fraction is not None else self.train_loss_
        if len(curve) <= n:
            return False
        reference = curve[-n - 1] - self.tol
        return not any(loss < reference for loss in curve[-n:])

    def _sample(self, m, train, offset):
        """Round ``m``'s row sample: a bool mask over the training rows, or True (all).
        Drawn from (seed, m, global row index) only."""
        if self.subsample >= 1.0:
            return True
        chosen = holdout_mask(offset, len(train.mask), self.subsample, _stream_seed(self._seed, m))
        return chosen[train.mask]

    def _finish_attributes(self):
        self.n_trees_per_iteration_ = self._loss_.n_trees_per_round
        gains = np.zeros(self.n_features_in_)
        for tree in self.trees_:
            gains += tree.feature_gains(self.n_features_in_)
        total = gains.sum()
        self.feature_importances_ = gains / total if total > 0 else gains
        k = self.n_trees_per_iteration_  # prediction's layout: per output column, built once
        self._forests = [PackedTrees(*stack_trees(self.trees_[c::k])) for c in range(k)]

    # -- checkpoints -------------------------------------------------------------------

    def _save_checkpoint(self, comm, path):
        from ...io import save
        save(self, path, comm=comm, checkpoint=True)

    def _read_checkpoint(self, path):
        """The model in ``path``, checked to continue this fit (same on every rank)."""
        from ...io import load
        where = f"resume_from={os.fspath(path)!r}"
        model = load(path)
        if type(model) is not type(self):
            raise InvalidParameterError(f"{where} holds a {type(model).__name__}, "
                                        f"not a {type(self).__name__}")
        mine, theirs = self.get_params(), model.get_params()
        for name in mine:
            if name == "n_estimators" or (name == "random_state" and mine[name] is None):
                continue
            if mine[name] != theirs[name]:
                raise InvalidParameterError(f"{where} was trained with {name}={theirs[name]!r}, "
                                            f"this estimator has {name}={mine[name]!r}")
        if model.n_features_in_ != self.n_features_in_:
            raise InvalidParameterError(f"{where} has {model.n_features_in_} features, "
                                        f"X has {self.n_features_in_}")
        if not self._same_target(model):
            raise InvalidParameterError(f"{where} was trained on other classes: "
                                        f"{list(model.classes_)!r}")
        return model

    def _same_target(self, model):
        return True

    # -- persistence -------------------------------------------------------------------

    def _get_state(self):
        self._check_fitted()
        meta = {"params": self.get_params(), "n_features_in": int(self.n_features_in_),
                "n_iter": int(self.n_iter_), "seed": int(self._seed),
                "n_trees_per_iteration": int(self.n_trees_per_iteration_)}
        meta.update(self._target_meta())
        if getattr(self, "feature_names_in_", None) is not None:
            meta["feature_names"] = [str(name) for name in self.feature_names_in_]
        arrays, offsets = stack_trees(self.trees_)
        arrays = {f"tree_{name}": a for name, a in arrays.items()}
        arrays["tree_offsets"] = offsets
        arrays["baseline"] = np.asarray(self.baseline_, dtype=np.float64)
        arrays["train_loss"] = np.asarray(self.train_loss_, dtype=np.float64)
        arrays["validation_loss"] = np.asarray(self.validation_loss_, dtype=np.float64)
        return meta, arrays

    @classmethod
    def _from_state(cls, meta, arrays):
        model = cls(**meta["params"])
        model.n_features_in_ = int(meta["n_features_in"])
        model.n_iter_ = int(meta["n_iter"])
        model._seed = int(meta["seed"])
        model._set_target_meta(meta)
        if "feature_names" in meta:
            model.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
        model._loss_ = model._make_loss()
        model.baseline_ = np.array(arrays["baseline"], dtype=np.float64)
        trees = {name[len("tree_"):]: a for name, a in arrays.items()
                 if name.startswith("tree_") and name != "tree_offsets"}
        model.trees_ = unstack_trees(trees, np.asarray(arrays["tree_offsets"]))
        k = model._loss_.n_trees_per_round
        if (k != int(meta["n_trees_per_iteration"]) or model.baseline_.shape != (k,)
                or len(model.trees_) != model.n_iter_ * k):
            raise ValueError(f"{len(model.trees_)} trees do not make {model.n_iter_} rounds "
                             f"of {k}")
        model.train_loss_ = [float(v) for v in arrays["train_loss"]]
        model.validation_loss_ = [float(v) for v in arrays["validation_loss"]]
        model._finish_attributes()
        return model

    def _target_meta(self):
        return {}

    def _set_target_meta(self, meta):
        pass

    # -- prediction --------------------------------------------------------------------

    def _class_forests(self):
        """Per output column: the stacked trees of that column."""
        return self._forests

    def _raw_predict(self, X):
        """Raw scores (n, n_trees_per_iteration_): the baseline plus every tree's leaf
        value, added tree by tree in training order (the bits of training's scores)."""
        X = self._check_predict_input(X)
        raw = np.empty((len(X), self.n_trees_per_iteration_))
        for c, packed in enumerate(self._class_forests()):
            column = np.full((len(X), 1), self.baseline_[c])
            raw[:, c] = packed.predict(X, column)[:, 0]
        return raw

    def _staged_raw_predict(self, X):
        """Raw scores after each round, as :meth:`_raw_predict` would give them."""
        X = self._check_predict_input(X)
        k = self.n_trees_per_iteration_
        raw = np.tile(self.baseline_, (len(X), 1))
        for m in range(self.n_iter_):
            for c in range(k):
                tree = self.trees_[m * k + c]
                raw[:, c] += tree.value[tree.apply(X), 0]
            yield raw.copy()


class _Rows:
    """One part (training or validation) of this rank's rows. Collective to build."""

    def __init__(self, comm, X, y, weight, mask, n_total, bin_edges):
        every = bool(mask.all())
        self.mask = mask
        self.X = X if every else np.ascontiguousarray(X[mask])
        self.y = y if every else y[mask]
        self.weight = None if weight is None else (weight if every else weight[mask])
        self.n = len(self.X)
        self.n_total = n_total
        # the bins row-major for the histograms (a row's bins in one read) and feature-major
        # for the partitions (a large node's split feature in one stream: reading it from
        # the row-major matrix alone made fits 12% slower)
        self.binned = bin_data(self.X, bin_edges) if bin_edges is not None else None
        self.binned_rows = (np.ascontiguousarray(self.binned.T) if self.binned is not None
                            else None)
        if weight is None:
            self.weight_total = float(max(n_total, 1))
        else:
            total = fp.exact_column_sums(comm, [self.weight], max(n_total, 1))[0]
            self.weight_total = float(total) if total > 0 else 1.0
        self.raw = None
        self._buffers = {}

    def buffer(self, name):
        """The fit's reusable work arrays of these rows, made on first use: ``"gradients"``
        (grad (n, 1), hess (n, 1), loss (n,)), ``"packed"`` (the packed channel, (n, 1)
        int64), ``"rows"`` (the grower's two row-index arrays), ``"slots"`` (each row's
        leaf, uint8, for trees of at most 256 leaves). Reusing them keeps the
        allocator from spreading each round's arrays over fresh memory. The loss and the
        packed channel share their memory: a round's losses are summed before its
        channel is made."""
        if name not in self._buffers:
            n = self.n
            if name == "rows":
                self._buffers[name] = index_buffers(n)
            elif name == "slots":
                self._buffers[name] = np.empty(n, dtype=np.uint8)
            else:
                if "scratch" not in self._buffers:
                    self._buffers["scratch"] = np.empty(n, dtype=np.int64)
                scratch = self._buffers["scratch"]
                self._buffers[name] = (
                    (np.empty((n, 1)), np.empty((n, 1)), scratch.view(np.float64))
                    if name == "gradients" else scratch.reshape(n, 1))
        return self._buffers[name]
