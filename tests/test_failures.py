"""Errors end the whole job, never hang it: thread mode in process, MPI in subprocesses."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import mpiml
from util import MPIEXEC, ROOT, mpi_env, run_app


def run_script(tmp_path, code, ranks, timeout=60):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(code))
    start = time.monotonic()
    proc = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, str(script)],
                          capture_output=True, text=True, timeout=timeout, env=mpi_env(),
                          cwd=ROOT)
    return proc, time.monotonic() - start


# -- thread mode -----------------------------------------------------------------------

@pytest.mark.parametrize("size", [2, 3, 5])
def test_thread_error_wakes_ranks_blocked_in_collectives(size):
    def body(comm):
        if comm.rank == size - 1:
            time.sleep(0.2)
            raise KeyError("lost the key on the last rank")
        if comm.rank % 2:
            comm.recv(source=size - 1)          # waits for a message that never comes
        comm.Allreduce(np.ones(3), np.empty(3))  # waits for a rank that never comes

    start = time.monotonic()
    with pytest.raises(KeyError, match="lost the key on the last rank") as info:
        mpiml.run(body, threads=size)
    assert time.monotonic() - start < 5
    assert any(f"rank {size - 1}" in note for note in getattr(info.value, "__notes__", []))


@pytest.mark.parametrize("calls", [
    ("Bcast", "Allreduce"),
    ("Bcast-root0", "Bcast-root1"),
    ("Allreduce-3", "Allreduce-4"),
    ("Barrier", "allgather"),
])
def test_thread_mismatched_collectives_name_ranks_and_calls(calls):
    def call(comm, what):
        if what == "Bcast":
            comm.Bcast(np.zeros(3))
        elif what.startswith("Bcast-root"):
            comm.Bcast(np.zeros(3), root=int(what[-1]))
        elif what.startswith("Allreduce"):
            n = int(what.split("-")[1]) if "-" in what else 3
            comm.Allreduce(np.zeros(n), np.zeros(n))
        elif what == "Barrier":
            comm.Barrier()
        else:
            comm.allgather(1)

    def body(comm):
        call(comm, calls[0] if comm.rank == 0 else calls[1])

    with pytest.raises(mpiml.CollectiveMismatchError) as info:
        mpiml.run(body, threads=3)
    message = str(info.value)
    assert "rank 0" in message and "rank 1" in message and "rank 2" in message
    assert calls[0].split("-")[0] in message and calls[1].split("-")[0] in message


def test_thread_rank_that_returns_early_is_reported():
    def body(comm):
        if comm.rank == 0:
            return "done early"
        comm.Barrier()

    with pytest.raises(mpiml.CollectiveMismatchError, match="already returned"):
        mpiml.run(body, threads=3)


def test_thread_recv_without_sender_is_reported():
    def body(comm):
        if comm.rank == 1:
            comm.recv(source=0, tag=5)

    with pytest.raises(mpiml.CollectiveMismatchError, match="no sender is left"):
        mpiml.run(body, threads=2)


@pytest.mark.parametrize("bad", [0, -1, "abc", 2.5, True])
def test_run_rejects_bad_thread_counts(bad):
    with pytest.raises(mpiml.MpimlError, match="threads must be a positive integer"):
        mpiml.run(lambda comm: None, threads=bad)


def test_blas_is_one_thread_per_rank_by_default_and_overridable():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads(comm):
        return [info["num_threads"] for info in threadpoolctl.threadpool_info()
                if info["user_api"] == "blas"]

    default = mpiml.run(blas_threads, threads=2)
    assert all(n == 1 for per_rank in default for n in per_rank)
    wider = mpiml.run(blas_threads, threads=2, blas_threads=2)
    assert all(n == 2 for per_rank in wider for n in per_rank)


def test_import_mpiml_without_mpi_library(tmp_path):
    code = """
        import sys
        sys.modules["mpi4py"] = None          # as if no MPI library were installed
        import mpiml
        print(mpiml.run(lambda comm: comm.allreduce(comm.rank), threads=3))
        assert "mpi4py.MPI" not in sys.modules
    """
    env = mpi_env()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[3, 3, 3]"


# -- MPI: an error on one rank ends every process -------------------------------------

@pytest.mark.parametrize("ranks", [2, 3])
def test_mpi_error_aborts_ranks_blocked_in_collectives_and_receives(tmp_path, ranks):
    proc, seconds = run_script(tmp_path, """
        import time, numpy as np, mpiml
        def body(comm):
            if comm.rank == 1:
                time.sleep(0.5)
                raise ZeroDivisionError("rank one divided by zero")
            if comm.rank == 2:
                comm.Recv(np.empty(4), source=1)     # blocked in a receive
            comm.Allreduce(np.ones(4), np.empty(4))  # blocked in a collective
        mpiml.run(body)
    """, ranks)
    assert proc.returncode != 0
    assert seconds < 30
    assert proc.stderr.count("ZeroDivisionError: rank one divided by zero") == 1
    assert "rank 1 of" in proc.stderr


def test_mpi_user_error_is_one_line_without_traceback(tmp_path):
    proc, _ = run_script(tmp_path, """
        import mpiml
        def body(comm):
            if comm.rank == 0:
                raise mpiml.MpimlError("the data file has 3 columns, expected 4")
            comm.Barrier()
        mpiml.run(body)
    """, 2)
    assert proc.returncode != 0
    assert proc.stderr.count("the data file has 3 columns, expected 4") == 1
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad", ["0", "abc", "-3"])
def test_app_rejects_bad_thread_counts(bad):
    proc = run_app(["apps/pi.py", "--threads", bad])
    assert proc.returncode == 2
    assert "--threads: must be a positive integer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_app_runs_the_same_on_threads_and_mpi():
    import json
    threads = run_app(["apps/pi.py", "--json", "--intervals", "100003"], threads=3)
    mpi = run_app(["apps/pi.py", "--json", "--intervals", "100003"], ranks=3)
    assert threads.returncode == 0 and mpi.returncode == 0, threads.stderr + mpi.stderr
    a, b = json.loads(threads.stdout.splitlines()[-1]), json.loads(mpi.stdout.splitlines()[-1])
    assert (a["backend"], a["ranks"], b["backend"], b["ranks"]) == ("threads", 3, "mpi", 3)
    assert abs(a["pi"] - b["pi"]) < 1e-12 and a["error"] < 1e-9
