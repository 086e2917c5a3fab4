"""Exceptions raised by mpiml."""

__all__ = ["MpimlError", "CommError", "CollectiveMismatchError", "RankAborted", "ModelFileError",
           "InvalidParameterError", "DataError", "RankFailure", "RankTimeout"]


class MpimlError(Exception):
    """A user-facing error: bad input, bad parameters, bad files.

    Entry scripts print its message alone (no traceback) and exit non-zero.
    """


class CommError(MpimlError, ValueError):
    """A communication call was given arguments it cannot work with
    (wrong buffer size or dtype, bad rank, bad tag)."""


class CollectiveMismatchError(MpimlError, RuntimeError):
    """Ranks of one communicator called different collectives (threads backend)."""


class RankAborted(RuntimeError):
    """Raised in a thread rank that was woken up because another rank failed."""


class RankTimeout(MpimlError, TimeoutError):
    """An SPMD run outlived its time limit; the message names each rank's state.

    Attributes
    ----------
    waiting : list of int
        The ranks that were blocked in a communication call.
    """

    waiting = ()


class ModelFileError(MpimlError, ValueError):
    """A model file is missing, truncated, corrupted, altered or of an unknown format."""


class InvalidParameterError(MpimlError, ValueError):
    """An estimator, reader or launcher parameter has a bad value."""


class DataError(MpimlError, ValueError):
    """Training or prediction data cannot be used (shape, NaN/inf, labels)."""


class RankFailure(BaseException):
    """A collective call failed on some ranks only; the original error is its cause.

    Not an :class:`Exception`: tools that catch a failed fit and go on to the next one
    (scikit-learn's searches and cross-validation record a score of NaN) must not catch
    it, because the other ranks wait in a collective for this one. It ends the SPMD
    program; :func:`mpiml.run` and the launchers report the rank and the original error.
    """
