"""The mpiml.testing pytest plugin, run on users' test files through ``pytester``.

Each test writes a small test file and runs pytest on it in a subprocess: on thread
ranks, and under ``mpiexec -n 2 python -m pytest --with-mpi``. These tests start
mpiexec themselves, so they run in the serial step (no ``mpi`` marker).
"""

import subprocess
import sys
import time

import pytest
from util import MPIEXEC, ROOT, mpi_env

PLUGIN = "mpiml.testing.plugin"

PASSING = """
import pytest
from mpiml.testing import assert_all_ranks


@pytest.mark.threads(2, 3)
def test_sum_of_ranks(spmd):
    def body(comm):
        total = comm.allreduce(comm.rank)
        assert_all_ranks(comm, total == sum(range(comm.size)), f"total {total}")
        return total
    assert spmd(body) == [sum(range(spmd.size))] * spmd.size


@pytest.mark.threads(2, 3)
def test_every_rank_has_its_own_directory(spmd, spmd_tmp_path):
    def body(comm):
        own = spmd_tmp_path(comm)
        assert not any(own.iterdir())
        (own / "rank.txt").write_text(str(comm.rank))
        comm.Barrier()
        return str(own), str(spmd_tmp_path.shared)
    results = spmd(body)
    assert len({own for own, _ in results}) == spmd.size
    assert len({shared for _, shared in results}) == 1
"""

FAILING = """
import pytest
from mpiml.testing import assert_all_ranks, rank_failures


@pytest.mark.threads(2)
def test_block_fails_on_one_rank(spmd):
    def body(comm):
        with rank_failures(comm):
            assert comm.rank != 1, "rank one is odd"
        return comm.rank
    spmd(body)


@pytest.mark.threads(3)
def test_check_fails_on_one_rank(spmd):
    def body(comm):
        assert_all_ranks(comm, lambda: comm.rank % 2 == 0, f"rank {comm.rank} is odd")
    spmd(body)


@pytest.mark.threads(2)
def test_plain_assert_fails_on_one_rank(spmd):
    def body(comm):
        comm.Barrier()
        assert comm.rank == 0, f"rank {comm.rank} is not rank 0"
    spmd(body)
"""

DEADLOCK = """
import pytest


@pytest.mark.threads(2)
@pytest.mark.spmd_timeout(3)
def test_one_rank_skips_the_barrier(spmd):
    def body(comm):
        if comm.rank == 0:
            comm.Barrier()
        else:
            comm.recv(source=0)
    spmd(body)
"""


@pytest.fixture
def run_threads(pytester):
    """pytest on a test file, thread cases only, in a subprocess."""
    def run(source, *args):
        path = pytester.makepyfile(source)
        return pytester.runpytest_subprocess("-p", PLUGIN, "-p", "no:cacheprovider", *args,
                                             str(path), timeout=60)
    return run


@pytest.fixture
def run_mpi(pytester, monkeypatch):
    """``mpiexec -n 2 python -m pytest --with-mpi`` on a test file's MPI cases."""
    for name, value in mpi_env().items():
        monkeypatch.setenv(name, value)

    def run(source, *args):
        path = pytester.makepyfile(source)
        return pytester.run(MPIEXEC, "-n", "2", sys.executable, "-m", "pytest", "-p", PLUGIN,
                            "-p", "no:cacheprovider", "--with-mpi", "-m", "mpi",
                            f"--basetemp={pytester.path / 'basetemp'}", *args, str(path),
                            timeout=90)
    return run


def _output(result):
    return result.stdout.str() + "\n" + result.stderr.str()


def test_user_tests_pass_on_thread_ranks(run_threads):
    result = run_threads(PASSING)
    result.assert_outcomes(passed=4, skipped=2)     # the mpi cases need mpiexec


def test_user_tests_pass_under_mpiexec(run_mpi):
    result = run_mpi(PASSING, "-q")
    assert result.ret == 0, _output(result)
    assert result.stdout.str().count("2 passed") == 2, _output(result)   # once per rank


def test_a_failure_on_one_rank_fails_every_rank_on_threads(run_threads):
    result = run_threads(FAILING)
    result.assert_outcomes(failed=3, skipped=3)
    out = result.stdout.str()
    assert "SPMDAssertionError: failed on rank(s) [1] of 2" in out
    assert "rank 1: rank one is odd" in out
    assert "SPMDAssertionError: failed on rank(s) [1] of 3" in out
    assert "(raised on thread rank 1 of 2)" in out


def test_a_failure_on_one_rank_fails_every_rank_under_mpiexec(run_mpi):
    result = run_mpi(FAILING, "-q")
    out = _output(result)
    assert result.ret != 0, out
    assert result.stdout.str().count("3 failed") == 2, out       # every test on both ranks
    # rank 0, whose own check passed, names rank 1 in each of the three tests
    assert out.count("failed on rank(s) [1] of 2") >= 2, out
    assert "the spmd body failed on rank(s) [1] of 2" in out
    assert "rank 1: AssertionError: rank 1 is not rank 0" in out


def test_a_deadlock_fails_within_the_timeout_on_threads(run_threads):
    start = time.monotonic()
    result = run_threads(DEADLOCK)
    assert time.monotonic() - start < 30
    result.assert_outcomes(failed=1, skipped=1)
    out = result.stdout.str()
    assert "RankTimeout: timed out after 3 s; ranks still waiting: [0, 1]" in out
    assert "rank 0: waiting in Barrier() on a 2-rank communicator" in out
    assert "rank 1: waiting in recv(source=0" in out


def test_a_deadlock_fails_within_the_timeout_under_mpiexec(run_mpi):
    start = time.monotonic()
    result = run_mpi(DEADLOCK, "-q")
    assert time.monotonic() - start < 45
    out = _output(result)
    assert result.ret != 0, out
    assert "timed out after 3 s on rank 0 of 2: waiting in Barrier on a 2-rank " \
           "communicator" in out
    assert "timed out after 3 s on rank 1 of 2: waiting in recv on a 2-rank " \
           "communicator" in out


def test_the_plugin_is_registered_and_its_helpers_need_no_pytest():
    pyproject = (ROOT / "pyproject.toml").read_text()
    # the entry point's name is the module's, the name that pytest_plugins and -p use
    assert f'[project.entry-points.pytest11]\n"{PLUGIN}" = "{PLUGIN}"\n' in pyproject
    code = ("import sys, mpiml.testing; assert 'pytest' not in sys.modules; "
            "print(mpiml.testing.__all__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "assert_all_ranks" in done.stdout
