#!/usr/bin/env bash
# Serve every model file of a directory over HTTP:
#   scripts/serve.sh [MODELS_DIR] [extra gunicorn flags...]
# Environment: MPIML_BIND (127.0.0.1:8000), MPIML_WORKERS (2 x cores), MPIML_THREADS,
# MPIML_MAX_BODY_BYTES, MPIML_MAX_ROWS, ... (see serve/gunicorn.conf.py).
# Reload changed model files without dropping requests: kill -HUP <master pid>.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -gt 0 && "$1" != -* ]]; then
    export MPIML_MODELS="$1"
    shift
fi
export MPIML_MODELS="$(realpath "${MPIML_MODELS:-$root/models}")"
python="${PYTHON:-$root/.venv/bin/python}"
[[ -x "$python" ]] || python="$(command -v python3)"
cd "$root"
exec "$python" -m gunicorn -c serve/gunicorn.conf.py "$@" serve.wsgi:app
