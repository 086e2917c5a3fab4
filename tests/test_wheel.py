"""The built wheel in a fresh virtual environment: ``mpiml train``, ``mpiml matmul``,
``mpiml pi`` under ``mpiexec -n 2`` and ``mpiml serve``, all run from a temporary
directory outside the checkout."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from serving import Server
from util import MPIEXEC, ROOT, mpi_env

SYNTH = "synthetic:classification?n_samples=600&n_features=5&seed=3"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(venv bin directory, environment)``: a fresh venv with only the built wheel
    installed in it; the test environment's packages (numpy, mpi4py, ...) are visible
    behind it through a ``.pth`` line, so that nothing is downloaded but the build's
    setuptools. The test environment's MPI library is found through ``LD_LIBRARY_PATH``."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.mpiml"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--disable-pip-version-check", "-w", base / "dist", source],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel, = (base / "dist").glob("mpiml-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "test-env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                                "--no-deps", "--disable-pip-version-check", wheel],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = mpi_env()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env.pop("PYTHONPATH", None)
    # mpi4py looks for the MPI library of the ``mpich`` package under its own prefix
    libdir = Path(sys.prefix) / "lib"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libdir),
                                                           env.get("LD_LIBRARY_PATH")]))
    return venv / "bin", env


def _run(cmd, env, cwd, timeout=180):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                         cwd=cwd, timeout=timeout)
    return out


def test_the_package_comes_from_the_wheel(installed, tmp_path):
    bindir, env = installed
    out = _run([bindir / "python", "-c", "import mpiml, serve; print(mpiml.__file__); "
                "print(serve.__file__)"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.split():
        assert Path(line).is_relative_to(bindir.parent), line
        assert not Path(line).is_relative_to(ROOT)


def test_commands_train_multiply_and_serve_outside_the_checkout(installed, tmp_path):
    bindir, env = installed
    mpiml = bindir / "mpiml"
    matmul = _run([MPIEXEC, "-n", 2, mpiml, "matmul", "--n", 192, "--k", 80, "--check",
                   "--json"], env, tmp_path)
    assert matmul.returncode == 0, matmul.stderr
    report = json.loads(matmul.stdout.strip().splitlines()[-1])
    assert report["ranks"] == 2 and report["backend"] == "mpi" and report["rel_err"] < 1e-12

    pi = _run([MPIEXEC, "-n", 2, mpiml, "pi", "--intervals", 10000, "--json"], env, tmp_path)
    assert pi.returncode == 0, pi.stderr
    assert abs(json.loads(pi.stdout)["pi"] - np.pi) < 1e-8

    models = tmp_path / "models"
    models.mkdir()
    train = _run([MPIEXEC, "-n", 2, mpiml, "train", "gbdt", "--data", SYNTH, "--n-estimators",
                  5, "--out", models / "gb.mpiml", "--json", "--quiet"], env, tmp_path)
    assert train.returncode == 0, train.stderr
    trained = json.loads(train.stdout.strip().splitlines()[-1])
    assert trained["ranks"] == 2 and trained["model"] == "gbdt"
    assert (models / "gb.mpiml").is_file()

    # the library of the wheel reads the file; the served answer equals it
    rows = [[0.1, -0.3, 1.2, 0.0, 0.5], [1.0, 2.0, -1.0, 0.3, -0.2]]
    script = ("import json, sys, mpiml; m = mpiml.load(sys.argv[1]); "
              "print(json.dumps(m.predict(json.loads(sys.argv[2])).tolist()))")
    local = _run([bindir / "python", "-c", script, models / "gb.mpiml", json.dumps(rows)],
                 env, tmp_path)
    assert local.returncode == 0, local.stderr
    server = Server(models, tmp_path / "serve.log", workers=1, cwd=tmp_path,
                    command=[mpiml, "serve", models, "--bind", "127.0.0.1:0", "--workers", 1],
                    PATH=env["PATH"])
    try:
        answer = server.post("/v1/models/gb:predict", json={"instances": rows})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == json.loads(local.stdout)
    finally:
        server.stop()


def test_bad_commands_are_clear_errors(installed, tmp_path):
    bindir, env = installed
    mpiml = bindir / "mpiml"
    unknown = _run([mpiml, "fly"], env, tmp_path)
    assert unknown.returncode == 2 and "unknown command 'fly'" in unknown.stderr
    assert "train" in unknown.stderr and "serve" in unknown.stderr
    no_dir = _run([mpiml, "serve", tmp_path / "nowhere"], env, tmp_path)
    assert no_dir.returncode == 2 and "does not exist" in no_dir.stderr
    bad = _run([mpiml, "train", "gbdt", "--data", SYNTH], env, tmp_path)
    assert bad.returncode == 2 and "--out" in bad.stderr


USER_TEST = '''
import pytest
from mpiml.testing import assert_all_ranks


def body(comm, n):
    total = comm.allreduce(sum(range(comm.rank, n, comm.size)))
    assert_all_ranks(comm, total == n * (n - 1) // 2)
    return total


@pytest.mark.threads(1, 3)
def test_sum(spmd):
    assert spmd(body, 10) == [45] * spmd.size
'''


def test_installed_pytest_plugin_in_an_empty_directory(installed, tmp_path):
    """The plugin comes from the wheel's entry point alone: no conftest.py, no -p."""
    bindir, env = installed
    (tmp_path / "test_user.py").write_text(USER_TEST)
    python = bindir / "python"
    flags = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"]
    local = _run([python, *flags], env, tmp_path)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "2 passed" in local.stdout and "1 skipped" in local.stdout
    mpi = _run([MPIEXEC, "-n", 2, python, *flags, "--with-mpi", "-m", "mpi"], env, tmp_path)
    assert mpi.returncode == 0, mpi.stdout + mpi.stderr
    assert mpi.stdout.count("1 passed") == 2
