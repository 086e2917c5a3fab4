#!/usr/bin/env bash
# The whole mission in about a minute: multiply two matrices on 4 MPI ranks and on 4
# thread ranks; train a model on 4 MPI ranks; serve the saved file with Gunicorn; query it
# over HTTP (v1 and Open Inference Protocol v2) and print the server's answer next to
# mpiml.load(...).predict on the same rows; stop the server.
# Creates .venv and installs mpiml when needed; everything else goes to a temporary
# directory that is removed at the end, and no process is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[mpich,test]'
export PATH="$PWD/.venv/bin:$PATH"
export MPIR_CVAR_CH4_PROGRESS_THROTTLE=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export PYTHONDONTWRITEBYTECODE=1

work=$(mktemp -d "${TMPDIR:-/tmp}/mpiml-demo.XXXXXX")
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "--- mpiexec -n 4 python apps/matmul.py --check"
mpiexec -n 4 python apps/matmul.py --check
echo "--- python apps/matmul.py --threads 4 --check"
python apps/matmul.py --threads 4 --check

data="synthetic:classification?n_samples=4000&n_features=8&n_informative=6&seed=0"
mkdir -p "$work/models"
echo "--- mpiexec -n 4 python apps/train.py gbdt --data '$data' --out $work/models/demo.mpiml"
mpiexec -n 4 python apps/train.py gbdt --data "$data" --out "$work/models/demo.mpiml" --quiet

port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "--- MPIML_MODELS=$work/models gunicorn -c serve/gunicorn.conf.py serve.wsgi:app (127.0.0.1:$port)"
MPIML_MODELS="$work/models" MPIML_BIND="127.0.0.1:$port" MPIML_WORKERS=2 MPIML_LOG_LEVEL=warning \
    gunicorn -c serve/gunicorn.conf.py serve.wsgi:app > "$work/server.log" 2>&1 &
server=$!

python - "$port" "$work/models/demo.mpiml" <<'PY'
import json, sys, time, urllib.error, urllib.request

import numpy as np

import mpiml

port, path = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"


def call(route, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + route, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


for _ in range(300):  # up to 30 s for the workers to start
    try:
        call("/ready")
        break
    except (urllib.error.URLError, ConnectionError):
        time.sleep(0.1)
else:
    sys.exit("the server did not become ready; see its log")

rows = np.random.default_rng(1).standard_normal((5, 8))
local = mpiml.load(path).predict(rows)
v1 = call("/v1/models/demo:predict", {"instances": rows.tolist()})["predictions"]
v2 = call("/v2/models/demo/infer", {"inputs": [
    {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
     "data": rows.reshape(-1).tolist()}]})
v2_out = next(o for o in v2["outputs"] if o["name"] == "predict")["data"]
print("--- the same 5 rows: mpiml.load(...).predict | POST /v1 ...:predict | POST /v2 .../infer")
for a, b, c in zip(local.tolist(), v1, v2_out):
    print(f"    {a!s:>6} | {b!s:>6} | {c!s:>6}")
same = [str(x) for x in local.tolist()] == [str(x) for x in v1] == [str(x) for x in v2_out]
print("--- server and library agree:", "yes" if same else "NO")
sys.exit(0 if same else 1)
PY
echo "--- stopping the server"
