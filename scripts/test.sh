#!/usr/bin/env bash
# Run the whole test suite: lint, serial and thread ranks, then under mpiexec -n 1, 2 and 4,
# then (as root, where network namespaces can be made) the multi-host cluster tests,
# then build the API reference with warnings as errors.
# Creates .venv and installs mpiml with its test and docs extras when needed.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || exit 1
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[mpich,test,docs]' || exit 1

export PATH="$PWD/.venv/bin:$PATH"
# ranks outnumber the cores on small machines: let idle MPICH ranks yield,
# and keep BLAS to one thread per rank
export MPIR_CVAR_CH4_PROGRESS_THROTTLE=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export PYTHONDONTWRITEBYTECODE=1

status=0
pytest() { python -m pytest -p no:cacheprovider "$@"; }
step() {
    local name=$1; shift
    echo "=== $name"
    "$@"
    local rc=$?
    # 5: no test was collected for this selection (e.g. no mpi-marked test)
    if [ $rc -ne 0 ] && [ $rc -ne 5 ]; then
        echo "=== FAILED: $name (exit $rc)"
        status=1
    fi
}

step "lint (ruff check)" python -m ruff check --no-cache .
step "serial and thread ranks" pytest -q -m "not cluster" tests
for n in 1 2 4; do
    step "mpiexec -n $n" mpiexec -n "$n" python -m pytest -p no:cacheprovider -q --with-mpi \
        -m "mpi and not cluster" tests
done
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1; then
    step "cluster (network namespaces)" pytest -q -m cluster tests
else
    echo "=== cluster tests skipped: they need root and the ip command to make network namespaces"
fi

docs_out=$(mktemp -d)
step "API reference (sphinx-build -W)" python -m sphinx -W -q -b html docs "$docs_out"
rm -rf "$docs_out"

if [ $status -eq 0 ]; then echo "=== all test steps passed"; else echo "=== some test steps failed"; fi
exit $status
