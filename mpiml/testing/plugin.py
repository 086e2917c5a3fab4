"""pytest plugin: one test body, run on thread ranks and on the MPI world.

Installing mpiml registers this plugin (entry point ``mpiml.testing.plugin`` in the
``pytest11`` group); ``-p mpiml.testing.plugin`` loads it from a source checkout.

The ``spmd`` fixture
    A test that takes it is parametrized over the backends: ``threads1`` ...
    ``threads5`` run the body on N thread ranks in this process (the counts of
    ``@pytest.mark.threads(1, 2, 3)``, or the ``spmd_threads`` ini option); ``mpi`` runs
    it on the MPI world. The ``mpi`` case is marked ``@pytest.mark.mpi(min_size=1)``
    and runs only under ``mpiexec -n P python -m pytest --with-mpi`` (pytest-mpi gives
    ``--with-mpi`` and the ``mpi`` marker); elsewhere it is skipped.
    ``@pytest.mark.mpi_only`` leaves out the thread cases.

    ``spmd(body, *args, **kwargs)`` calls ``body(comm, *args, **kwargs)`` on every rank
    and returns the list of every rank's result, in rank order, on every rank. Assert on
    that list outside the body, or use :func:`mpiml.testing.assert_all_ranks` inside it:
    then a failure fails on every rank instead of leaving one waiting. ``spmd.size`` is
    the rank count and ``spmd.backend`` is ``"threads"`` or ``"mpi"``.

The ``spmd_tmp_path`` fixture
    ``spmd_tmp_path(comm)`` is this rank's own new directory; ``spmd_tmp_path.shared``
    is one directory that every rank of the test sees (rank 0's under MPI, so on one
    node only).

The time limit
    Every ``spmd`` test has a time limit, counted from its start:
    ``@pytest.mark.spmd_timeout(seconds)``, else ``--spmd-timeout``, else the
    ``spmd_timeout`` ini option, else 240 s; ``0`` turns it off. On thread ranks the
    run is aborted and the test fails with :class:`~mpiml.errors.RankTimeout`, which
    names every rank's state: the collective or receive it waits in, still computing,
    or returned. Under MPI each rank prints its own state to stderr (``mpiml.testing:
    ... timed out after 3 s on rank 1 of 2: waiting in Barrier on a 2-rank
    communicator``) and the job is aborted, since a rank blocked in MPI cannot be woken.
"""

__all__ = ["SPMDRunner", "SPMDTmpPath", "spmd", "spmd_tmp_path"]

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

DEFAULT_THREADS = ("1", "2", "3", "4", "5")
DEFAULT_TIMEOUT = 240.0
_ABORT_GRACE_SECONDS = 1.0   # lets the other ranks print their state before the abort


def _mpi_rank():
    for var in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        if var in os.environ:
            return os.environ[var]
    return None


def _under_mpi():
    return _mpi_rank() is not None


def pytest_addoption(parser):
    group = parser.getgroup("mpiml", "SPMD tests (mpiml.testing)")
    group.addoption("--spmd-timeout", type=float, default=None, metavar="SECONDS",
                    help="time limit of each spmd test (0: none); overrides the "
                         "spmd_timeout ini option")
    parser.addini("spmd_timeout", f"time limit in seconds of each spmd test (0: none; "
                  f"default {DEFAULT_TIMEOUT:g})", default=str(DEFAULT_TIMEOUT))
    parser.addini("spmd_threads", "thread rank counts of the spmd fixture when a test "
                  "has no threads marker", type="args", default=list(DEFAULT_THREADS))


def pytest_configure(config):
    config.addinivalue_line("markers", "threads(*counts): thread rank counts for the spmd fixture")
    config.addinivalue_line("markers", "mpi_only: the spmd fixture runs no thread case")
    config.addinivalue_line("markers", "spmd_timeout(seconds): time limit of this spmd test")
    rank = _mpi_rank()
    if rank is not None:
        # every rank runs pytest: each needs its own temporary tree, or they race to clean
        # it; pytest empties the tree when the next run of that rank starts
        if config.option.basetemp:
            os.makedirs(config.option.basetemp, exist_ok=True)
            config.option.basetemp = os.path.join(config.option.basetemp, f"rank{rank}")
        else:
            config.option.basetemp = os.path.join(tempfile.gettempdir(),
                                                  f"mpiml-pytest-{os.getuid()}-rank{rank}")


def pytest_generate_tests(metafunc):
    if "spmd" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("threads")
    if metafunc.definition.get_closest_marker("mpi_only"):
        counts = ()
    elif marker:
        counts = marker.args
    else:
        counts = [int(n) for n in metafunc.config.getini("spmd_threads")]
    params = [pytest.param(f"threads{n}", id=f"threads{n}") for n in counts]
    params.append(pytest.param("mpi", id="mpi", marks=pytest.mark.mpi(min_size=1)))
    metafunc.parametrize("spmd", params, indirect=True)


def _timeout(item):
    """This test's time limit in seconds, or None."""
    marker = item.get_closest_marker("spmd_timeout")
    if marker is not None:
        seconds = marker.args[0] if marker.args else marker.kwargs["seconds"]
    elif item.config.getoption("spmd_timeout") is not None:
        seconds = item.config.getoption("spmd_timeout")
    else:
        seconds = item.config.getini("spmd_timeout")
    seconds = float(seconds)
    return seconds if seconds > 0 else None


_RESULTS_COMM = []   # a duplicate of the MPI world for the results of spmd bodies


def _results_comm():
    # the exchange of results runs on its own communicator: a rank that failed and
    # waits there never matches a collective that the other ranks wait in
    if not _RESULTS_COMM:
        from mpiml.comm import world
        _RESULTS_COMM.append(world().Dup())
    return _RESULTS_COMM[0]


class SPMDRunner:
    """The ``spmd`` fixture: runs a body on every rank of one backend.

    Attributes
    ----------
    backend : str
        ``"threads"`` or ``"mpi"``.
    threads : int or None
        The thread rank count, ``None`` under MPI.
    size : int
        The number of ranks.
    timeout : float or None
        The test's time limit in seconds.
    """

    def __init__(self, case, timeout=None, nodeid=""):
        self.case = case
        self.threads = int(case[len("threads"):]) if case.startswith("threads") else None
        self.backend = "mpi" if self.threads is None else "threads"
        self.timeout = timeout
        self.nodeid = nodeid
        self.failed = None       # under MPI: this rank's error while it waits for the others

    @property
    def size(self):
        if self.threads is not None:
            return self.threads
        return int(os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or 1)

    def __call__(self, body, *args, **kwargs):
        """Run ``body(comm, *args, **kwargs)`` on every rank; every rank's result, in
        rank order, on every rank."""
        __tracebackhide__ = True
        if self.threads is not None:
            return self._run_threads(body, args, kwargs)
        return self._run_mpi(body, args, kwargs)

    def _run_threads(self, body, args, kwargs):
        __tracebackhide__ = True
        import mpiml
        return mpiml.run(body, *args, threads=self.threads, **kwargs)

    def _run_mpi(self, body, args, kwargs):
        from mpiml.comm import world

        __tracebackhide__ = True
        comm = world()
        error, result = None, None
        try:
            result = body(comm, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported on every rank below
            error = exc
            self.failed = f"{type(exc).__name__}: {exc}"
        outcomes = _results_comm().allgather(
            (None, result) if error is None else (self.failed, None))
        self.failed = None
        failing = [rank for rank, (text, _) in enumerate(outcomes) if text is not None]
        if error is not None:
            if len(failing) > 1 and hasattr(error, "add_note"):
                error.add_note(f"(the spmd body failed on ranks {failing} of {comm.size})")
            raise error
        if failing:
            from mpiml.testing import SPMDAssertionError
            lines = "\n".join(f"  rank {rank}: " + outcomes[rank][0].replace("\n", "\n    ")
                              for rank in failing)
            raise SPMDAssertionError(f"the spmd body failed on rank(s) {failing} of "
                                     f"{comm.size}:\n{lines}", failing)
        return [value for _, value in outcomes]

    def __repr__(self):
        return f"spmd({self.case})"


class _MPIWatchdog:
    """Under MPI: at the deadline, print where this rank waits, then abort the job."""

    def __init__(self, runner, config):
        self.runner = runner
        self.config = config
        self.timer = threading.Timer(runner.timeout, self._expire)
        self.timer.daemon = True

    def start(self):
        self.timer.start()

    def cancel(self):
        self.timer.cancel()

    def _expire(self):
        from mpiml.comm.mpi import blocked_in, world_abort

        record = blocked_in()
        if self.runner.failed is not None:
            state = (f"failed ({self.runner.failed}) and waits for the other ranks to "
                     f"finish the body")
        elif record is not None:
            state = f"waiting in {record[0]} on a {record[1]}-rank communicator"
        else:
            state = "running, not in a communication call"
        capture = self.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)
        rank, size = _mpi_rank(), self.runner.size
        sys.stderr.write(f"\nmpiml.testing: {self.runner.nodeid} timed out after "
                         f"{self.runner.timeout:g} s on rank {rank} of {size}: {state}; "
                         f"aborting the job\n")
        sys.stderr.flush()
        time.sleep(_ABORT_GRACE_SECONDS)
        world_abort(1)


@pytest.fixture
def spmd(request):
    """Run a body on every rank of this test's backend (see :mod:`mpiml.testing.plugin`)."""
    config = request.config
    with_mpi = config.getoption("with_mpi", False) or config.getoption("only_mpi", False)
    if request.param == "mpi" and not (_under_mpi() and with_mpi):
        pytest.skip("runs under mpiexec with --with-mpi")
    runner = SPMDRunner(request.param, _timeout(request.node), request.node.nodeid)
    if runner.backend == "threads":
        from mpiml.comm.threads import time_limit
        # every thread run of this test, the spmd bodies and any mpiml.run inside it
        with time_limit(runner.timeout):
            yield runner
        return
    watchdog = None
    if runner.timeout is not None:
        watchdog = _MPIWatchdog(runner, config)
        watchdog.start()
    try:
        yield runner
    finally:
        if watchdog is not None:
            watchdog.cancel()


class SPMDTmpPath:
    """The ``spmd_tmp_path`` fixture: temporary directories for the ranks of a test.

    Attributes
    ----------
    shared : pathlib.Path
        One directory for every rank of the test: the test's ``tmp_path`` on thread
        ranks, rank 0's ``tmp_path`` under MPI (reachable from one node only).
    """

    def __init__(self, root, shared):
        self.root = Path(root)
        self.shared = Path(shared)

    def __call__(self, comm):
        """This rank's own directory, created empty on the first call (not collective).

        Parameters
        ----------
        comm : Communicator

        Returns
        -------
        pathlib.Path
        """
        path = self.root / f"rank{comm.rank}"
        path.mkdir(exist_ok=True)
        return path


@pytest.fixture
def spmd_tmp_path(request, tmp_path):
    """Per-rank temporary directories, and one that every rank shares."""
    case = getattr(getattr(request.node, "callspec", None), "params", {}).get("spmd")
    shared = tmp_path
    if case == "mpi" and _under_mpi():
        from mpiml.comm import world
        shared = world().bcast(str(tmp_path), root=0)
    return SPMDTmpPath(tmp_path, shared)
