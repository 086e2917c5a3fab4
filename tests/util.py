"""Helpers for tests that start subprocesses: apps, mpiexec, servers."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else "mpiexec"


def mpi_env(**extra):
    """Environment for a child process: the venv first on PATH, idle MPICH ranks yield,
    and no launcher variables of ours (a nested mpiexec must not think it is our rank)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MPIR_CVAR_CH4_PROGRESS_THROTTLE"] = "1"
    for var in [v for v in env if v.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA"))]:
        del env[var]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_app(args, ranks=None, threads=None, timeout=120, **kwargs):
    """Run ``python apps/...`` (``args[0]`` is the script) under ``mpiexec -n ranks`` or
    with ``--threads``; returns the CompletedProcess (text mode, output captured)."""
    cmd = [sys.executable, *map(str, args)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if ranks is not None:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=mpi_env(), cwd=ROOT, **kwargs)
