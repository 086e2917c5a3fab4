"""Gradient-boosted trees, built in parallel on rows sharded over ranks, and identical
to the last bit for any rank count and either backend.

Each boosting round computes gradients and hessians of the loss locally, turns them
into int64 fixed point with scales every rank agrees on, and grows one tree (one per
class for multiclass) with the shared tree core (:mod:`mpiml.models.tree`: binning,
reduce-scattered histograms, best-first growth) and :class:`GradientCriterion`.

    from mpiml.models.gbdt import GradientBoostingClassifier
    model = GradientBoostingClassifier(n_estimators=100, max_leaf_nodes=31)
    model.fit(X_local, y_local, comm=comm, checkpoint_every=10, checkpoint_path="gb.mpiml")
"""

from .criterion import GradientCriterion
from .estimators import GradientBoostingClassifier, GradientBoostingRegressor

__all__ = ["GradientBoostingClassifier", "GradientBoostingRegressor", "GradientCriterion"]
