#!/usr/bin/env bash
# The main job: multiply two matrices on 4 MPI ranks, then the same on 4 thread ranks.
# Creates .venv and installs mpiml when needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[mpich,test]'
export PATH="$PWD/.venv/bin:$PATH"
export MPIR_CVAR_CH4_PROGRESS_THROTTLE=1

if [ -f apps/matmul.py ]; then
    echo "--- mpiexec -n 4 python apps/matmul.py --check"
    mpiexec -n 4 python apps/matmul.py --check
    echo "--- python apps/matmul.py --threads 4 --check"
    python apps/matmul.py --threads 4 --check
else
    echo "--- mpiexec -n 4 python apps/pi.py"
    mpiexec -n 4 python apps/pi.py
    echo "--- python apps/pi.py --threads 4"
    python apps/pi.py --threads 4
fi
