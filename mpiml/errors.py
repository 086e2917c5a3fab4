"""Exceptions raised by mpiml."""

__all__ = ["MpimlError", "CommError", "CollectiveMismatchError", "RankAborted", "ModelFileError",
           "InvalidParameterError", "DataError"]


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


class ModelFileError(MpimlError, ValueError):
    """A model file is missing, truncated, corrupted, altered or of an unknown format."""


class InvalidParameterError(MpimlError, ValueError):
    """An estimator, reader or launcher parameter has a bad value."""


class DataError(MpimlError, ValueError):
    """Training or prediction data cannot be used (shape, NaN/inf, labels)."""
