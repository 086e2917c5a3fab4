"""The default communicator: what ``comm=None`` means in a fit, a score or a metric.

Outside any :func:`default_comm` block, ``comm=None`` means one rank holds every row
(a communicator of this thread alone). Inside ``with default_comm(comm):`` it means
``comm``. The default is a context variable: each thread rank has its own, so thread
ranks of one process can each run scikit-learn's searches over their own shard.
"""

__all__ = ["default_comm", "resolve_comm", "current_comm"]

import contextlib
import contextvars

_DEFAULT = contextvars.ContextVar("mpiml_default_comm", default=None)


@contextlib.contextmanager
def default_comm(comm):
    """Make ``comm`` the communicator of every ``fit``, ``score`` and metric called
    with ``comm=None`` inside the ``with`` block (in this thread or task).

    Parameters
    ----------
    comm : Communicator or None
        None restores the one-rank meaning inside the block.

    Examples
    --------
    >>> with mpiml.default_comm(comm):                       # doctest: +SKIP
    ...     search = GridSearchCV(est, grid, cv=KFold(3)).fit(X_local, y_local)
    """
    if comm is not None and not all(hasattr(comm, name) for name in ("rank", "size",
                                                                     "allgather")):
        from ..errors import InvalidParameterError
        raise InvalidParameterError(f"default_comm needs an mpiml Communicator or None, "
                                    f"got {comm!r}")
    token = _DEFAULT.set(comm)
    try:
        yield comm
    finally:
        _DEFAULT.reset(token)


def current_comm():
    """The communicator set by the innermost :func:`default_comm` block, or None."""
    return _DEFAULT.get()


def resolve_comm(comm):
    """``comm``; or, when it is None, the :func:`default_comm` of this context; or a
    one-rank communicator (one rank holds every row)."""
    if comm is not None:
        return comm
    comm = _DEFAULT.get()
    if comm is not None:
        return comm
    from .threads import self_comm
    return self_comm()
