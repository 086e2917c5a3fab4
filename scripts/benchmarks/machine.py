"""The machine a run measured: cores, memory, CPU, BLAS, MPI library, package versions and
the git commit; and the one line that names it under each plot and table."""

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from .common import ROOT, child_env, cores, mpiexec_path

__all__ = ["describe_machine"]


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _physical_cores():
    try:
        pairs, physical, core = set(), None, None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                core = value.strip()
                pairs.add((physical, core))
        return len(pairs) or None
    except OSError:
        return None


def _memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _blas():
    import numpy as np
    out = {"threadpoolctl": None, "numpy_build": None}
    try:
        from threadpoolctl import threadpool_info
        out["threadpoolctl"] = [{k: v for k, v in lib.items() if k != "filepath"}
                                for lib in threadpool_info()]
    except ImportError:
        pass
    try:
        config = np.show_config(mode="dicts")
        deps = config.get("Build Dependencies", {})
        out["numpy_build"] = {k: {f: deps[k].get(f) for f in ("name", "version",
                                                                "openblas configuration")
                                  if f in deps[k]} for k in ("blas", "lapack") if k in deps}
    except (TypeError, AttributeError):
        pass
    return out


def _mpi():
    """The MPI library as mpiml sees it, asked in a child so this process stays MPI-free."""
    out = {"mpiexec": mpiexec_path(), "mpi4py": _version("mpi4py"),
           "mpich_wheel": _version("mpich"), "library": None}
    code = "from mpiml.comm.mpi import library_version; print(library_version())"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, cwd=ROOT, env=child_env())
        if done.returncode == 0 and done.stdout.strip():
            out["library"] = done.stdout.strip().splitlines()[-1]
        else:
            out["error"] = (done.stderr.strip().splitlines() or ["no output"])[-1]
    except subprocess.TimeoutExpired:
        out["error"] = "timed out asking the MPI library for its version"
    if out["mpiexec"]:
        try:
            text = subprocess.run([out["mpiexec"], "--version"], capture_output=True, text=True,
                                  timeout=30).stdout
            match = re.search(r"Version:\s*(\S+)", text)
            out["mpiexec_version"] = match.group(1) if match else text.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    return out


def _git():
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=ROOT, timeout=10)
        if head.returncode == 0:
            return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def describe_machine():
    """Cores, memory, CPU, BLAS, MPI library and package versions of this machine."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": cores(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "memory_bytes": _memory_bytes(),
        "load_average_at_start": None if load is None else [round(x, 2) for x in load],
        "blas": _blas(),
        "mpi": _mpi(),
        "packages": {name: _version(name) for name in (
            "mpiml", "numpy", "numba", "mpi4py", "scikit-learn", "lightgbm", "xgboost",
            "matplotlib", "gunicorn", "flask")},
        "environment": {k: os.environ[k] for k in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MPIML_BLAS_THREADS",
            "MPIR_CVAR_CH4_PROGRESS_THROTTLE") if k in os.environ},
        "git": _git(),
    }


def _machine_line(results):
    m = results.get("machine", {})
    load = m.get("load_average_at_start")
    return (f"{m.get('cores', '?')} cores" + (f", load average {load[0]:g} at start" if load
                                              else "")
            + f", {results.get('size', '?')} size, {results.get('created', '')[:16]}")
