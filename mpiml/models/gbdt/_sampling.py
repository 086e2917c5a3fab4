"""Random numbers keyed by (seed, stream, global row index), never by rank.

A counter-based generator (SplitMix64's finaliser applied to a key and the row's
global index) gives every row the same number whichever rank holds it, so row
sampling and the validation split are identical for any rank count, and the draw of
round ``m`` can be repeated after a resume without replaying rounds ``0..m-1``.
"""

__all__ = ["row_uniform", "VALIDATION_STREAM"]

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
VALIDATION_STREAM = (1 << 32) - 1  # boosting rounds use streams 0, 1, 2, ...


def _mix_int(z):
    """SplitMix64 finaliser on a Python int (mod 2**64)."""
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _mix_array(z):
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def row_uniform(seed, stream, start, stop):
    """Uniform numbers in [0, 1) for the global rows ``start .. stop - 1``.

    Parameters
    ----------
    seed : int
        The estimator's seed (``random_state``).
    stream : int
        Which draw: the boosting round, or ``VALIDATION_STREAM``.
    start, stop : int
        Global index range of this rank's rows (local, no communication).

    Returns
    -------
    u : ndarray of shape (stop - start,)
    """
    key = _mix_int(_mix_int(int(seed) * _GOLDEN + 1) + int(stream) * _GOLDEN)
    index = np.arange(start, stop, dtype=np.uint64)
    bits = _mix_array(index * np.uint64(_GOLDEN) + np.uint64(key))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
