"""Test harness: one test body, run on every backend.

A test that takes the ``spmd`` fixture is parametrized over the backends:

* ``threads1`` ... ``threads5``: the body runs on N thread ranks in this process
  (the default set, or the counts given by ``@pytest.mark.threads(1, 2, 3)``);
* ``mpi``: the body runs on the MPI world. This case is marked
  ``@pytest.mark.mpi(min_size=1)`` and runs only under
  ``mpiexec -n P python -m pytest --with-mpi -m mpi``.

``spmd(body, *args, **kwargs)`` calls ``body(comm, *args, **kwargs)`` on every rank and
returns the list of every rank's result, in rank order, on every rank (under MPI the
results are allgathered). Assert on that list outside the body: then every rank
checks the same data and a failure fails on every rank instead of hanging one.
"""

import os
import tempfile

import pytest

import mpiml

DEFAULT_THREADS = (1, 2, 3, 4, 5)


def _under_mpi():
    return _mpi_rank() is not None


def _mpi_rank():
    for var in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        if var in os.environ:
            return os.environ[var]
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "threads(*counts): thread rank counts for the spmd fixture")
    config.addinivalue_line("markers", "mpi_only: no thread variant")
    rank = _mpi_rank()
    if rank is not None and not config.option.basetemp:
        # every rank runs pytest: each needs its own temporary tree, or they race to clean
        # it; pytest empties the tree when the next run of that rank starts
        config.option.basetemp = os.path.join(tempfile.gettempdir(),
                                              f"mpiml-pytest-{os.getuid()}-rank{rank}")


def pytest_generate_tests(metafunc):
    if "spmd" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("threads")
    counts = marker.args if marker else DEFAULT_THREADS
    params = [pytest.param(f"threads{n}", id=f"threads{n}") for n in counts]
    params.append(pytest.param("mpi", id="mpi", marks=pytest.mark.mpi(min_size=1)))
    metafunc.parametrize("spmd", params, indirect=True)


class _Runner:
    def __init__(self, backend):
        self.backend = backend
        self.threads = int(backend[len("threads"):]) if backend.startswith("threads") else None

    @property
    def size(self):
        if self.threads is not None:
            return self.threads
        return int(os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or 1)

    def __call__(self, body, *args, **kwargs):
        if self.threads is not None:
            return mpiml.run(body, *args, threads=self.threads, **kwargs)
        from mpiml.comm import world

        comm = world()
        result = body(comm, *args, **kwargs)
        return comm.allgather(result)

    def __repr__(self):
        return f"spmd({self.backend})"


@pytest.fixture
def spmd(request):
    if request.param == "mpi" and not _under_mpi():
        pytest.skip("runs under mpiexec with --with-mpi")
    return _Runner(request.param)
