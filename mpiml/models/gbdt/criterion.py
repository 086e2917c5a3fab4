"""The gradient-boosting split criterion on exact fixed-point gradient sums.

Channels of a row: ``[1, g, h]`` with ``g`` and ``h`` the row's gradient and hessian
in int64 fixed point (scales ``grad_scale`` and ``hess_scale``), or ``[1, g]`` when the
hessian is the row count (squared error without weights). From the exact integer sums
``G``, ``H`` of a node (as reals: ``G / grad_scale``), with ``l2`` the L2 regularisation:

* split gain ``GL^2/(HL+l2) + GR^2/(HR+l2) - G^2/(H+l2)`` (twice the loss decrease of
  the second-order approximation, as in XGBoost and LightGBM);
* node value ``-learning_rate * G / (H + l2)``, the Newton step, already shrunk.

Every quantity is an elementwise function of exact integers, so each rank computes the
same float for the same candidate whatever the number of ranks.
"""

__all__ = ["GradientCriterion", "MIN_HESSIAN"]

import numpy as np

from ..tree._criteria import Criterion

#: a child whose hessian sum is below this is not a valid split (as scikit-learn's
#: ``min_hessian_to_split`` and LightGBM's ``min_sum_hessian_in_leaf``)
MIN_HESSIAN = 1e-3


class GradientCriterion(Criterion):
    """Second-order gain and Newton leaf values for boosting.

    Parameters
    ----------
    grad_scale, hess_scale : float
        Fixed-point scales of the gradient and hessian channels.
    l2_regularization : float
    learning_rate : float
    count_is_hessian : bool
        Channels are ``[1, g]`` and the hessian of a node is its row count.
    """

    count_channel = 0
    n_outputs = 1

    def __init__(self, grad_scale, hess_scale, l2_regularization, learning_rate,
                 count_is_hessian=False):
        self.grad_scale = float(grad_scale)
        self.hess_scale = 1.0 if count_is_hessian else float(hess_scale)
        self.hess_channel = 0 if count_is_hessian else 2
        self.l2 = float(l2_regularization)
        self.learning_rate = float(learning_rate)

    def _grad_hess(self, sums):
        s = np.asarray(sums)
        return (s[..., 1].astype(np.float64) / self.grad_scale,
                s[..., self.hess_channel].astype(np.float64) / self.hess_scale)

    def node_value(self, sums):
        g, h = self._grad_hess(sums)
        denominator = h + self.l2
        return np.array([-self.learning_rate * g / denominator if denominator > 0 else 0.0])

    def impurity(self, sums):
        """``inf``: boosting has no impurity; whether a split helps is the gain's business."""
        return np.inf

    def split_gain(self, left, right, parent):
        gl, hl = self._grad_hess(left)
        gr, hr = self._grad_hess(right)
        gp, hp = self._grad_hess(parent)
        l2 = self.l2
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = gl * gl / (hl + l2) + gr * gr / (hr + l2) - gp * gp / (hp + l2)
        return np.where((hl >= MIN_HESSIAN) & (hr >= MIN_HESSIAN), gain, -np.inf)
