"""Phase timings of tree growth and boosting (``scripts/bench_gbdt.py --profile``).

Off by default: :func:`phase` then returns one shared no-op context manager. Inside
``with profiling() as phases:`` (entered on each rank: the profile is a context
variable, so every thread rank keeps its own) the growers and the boosting loop time
their phases. Times are exclusive: a phase nested in another (histograms inside a
tree) is not counted again in the outer one, so the phases add up to the time inside
the outermost ones.

Phases: ``gradients`` (gradients, hessians, losses and their channels), ``histograms``
(the local histogram kernels), ``waiting`` (a barrier before each collective of the
growers: the time a rank waits for the slowest; only while profiling), ``reduction``
(the collectives themselves), ``split search`` (scanning histograms for the best split),
``partition`` (moving the rows of each split), ``leaf values`` (renewing node values
and adding leaf values to the scores) and ``bookkeeping`` (everything else in the
growth of a tree: the per-split Python).
"""

__all__ = ["phase", "profiling", "Phases", "collective"]

import contextlib
import contextvars
import time

_current = contextvars.ContextVar("mpiml_tree_phases", default=None)


class _Null:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL = _Null()


class Phases:
    """Exclusive seconds and entries per phase of one rank."""

    def __init__(self):
        self.seconds = {}
        self.calls = {}
        self._stack = []   # [name, resumed at]

    def _enter(self, name):
        now = time.perf_counter()
        if self._stack:
            outer = self._stack[-1]
            self.seconds[outer[0]] = self.seconds.get(outer[0], 0.0) + now - outer[1]
        self._stack.append([name, now])
        self.calls[name] = self.calls.get(name, 0) + 1

    def _exit(self):
        now = time.perf_counter()
        name, resumed = self._stack.pop()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - resumed
        if self._stack:
            self._stack[-1][1] = now


class _Timer:
    __slots__ = ("phases", "name")

    def __init__(self, phases, name):
        self.phases, self.name = phases, name

    def __enter__(self):
        self.phases._enter(self.name)
        return self

    def __exit__(self, *exc):
        self.phases._exit()
        return False


def phase(name):
    """A context manager that times ``name`` while profiling, else does nothing."""
    phases = _current.get()
    return _NULL if phases is None else _Timer(phases, name)


def collective(comm):
    """Before a collective of ``comm``: while profiling, a timed barrier (``waiting``);
    then a context manager that times the collective itself (``reduction``). Nothing is
    timed on one rank (no other rank to wait for)."""
    phases = _current.get()
    if phases is None or comm is None or comm.size == 1:
        return _NULL
    with _Timer(phases, "waiting"):
        comm.Barrier()
    return _Timer(phases, "reduction")


@contextlib.contextmanager
def profiling():
    """Profile the fits inside the block on this rank; yields the :class:`Phases`."""
    phases = Phases()
    token = _current.set(phases)
    try:
        yield phases
    finally:
        _current.reset(token)
