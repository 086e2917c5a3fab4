"""Gunicorn configuration of the mpiml model server.

    MPIML_MODELS=models/ gunicorn -c serve/gunicorn.conf.py serve.wsgi:app

Environment variables (defaults in brackets):

MPIML_BIND [127.0.0.1:8000]      address to listen on (comma-separated for several)
MPIML_WORKERS [2 x cores]        worker processes
MPIML_THREADS [2]                threads per worker; above 1 the worker class is gthread
MPIML_WORKER_CLASS [gthread]     sync with MPIML_THREADS=1 (no keep-alive)
MPIML_TIMEOUT [30]               seconds a worker may stay silent before it is restarted
MPIML_GRACEFUL_TIMEOUT [30]      seconds a stopping worker gets to finish its requests
MPIML_KEEPALIVE [5]              seconds an idle keep-alive connection stays open (gthread)
MPIML_MAX_REQUESTS [20000]       requests after which a worker is replaced (0: never) ...
MPIML_MAX_REQUESTS_JITTER [10%]  ... plus a random 0..jitter, so workers do not restart together
MPIML_LOG_LEVEL [info]
MPIML_ACCESS_LOG [none]          access log file, "-" for stderr
MPIML_CONTROL_SOCKET [none]      path of Gunicorn's control socket (off by default)
MPIML_PREDICT_THREADS [cores]    threads that share the rows of one large batch to a
                                 forest or boosted model (small batches use one)
PROMETHEUS_MULTIPROC_DIR         where workers keep their metrics (a private temporary
                                 directory by default; emptied at start)

Models are loaded once, in the master (``preload_app``), before the workers fork;
their arrays are memory-mapped read-only, so the workers share one copy. SIGHUP to
the master reloads changed model files (``on_reload`` below), then Gunicorn starts
new workers from the reloaded master and stops the old ones gracefully, so no
request is lost.
"""

import os
import shutil
import tempfile


def _int(name, default):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"error: {name}={raw!r} is not an integer") from None


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# Workers share the cores: one BLAS/OpenMP/numba thread each (set before numpy loads).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# ... but a large batch to a tree ensemble is split over the cores: it is answered
# sooner, and its rows' predictions are the same whatever the split.
os.environ.setdefault("MPIML_PREDICT_THREADS", str(_cores()))

# Multiprocess Prometheus metrics: must be set before prometheus_client is imported.
# This file is read again on every reload; the directory is made only once.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mpiml-metrics-")
    os.environ["MPIML_OWNS_METRICS_DIR"] = "1"
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

wsgi_app = "serve.wsgi:app"
bind = [b.strip() for b in os.environ.get("MPIML_BIND", "127.0.0.1:8000").split(",") if b.strip()]
workers = _int("MPIML_WORKERS", 2 * _cores())
# gthread with 2 threads: keep-alive connections and a second request in flight while
# numpy runs without the GIL; measured ahead of sync (1.4-1.8x requests/s) and of
# 4 threads for single-row predictions with 4 workers on 2 cores.
threads = _int("MPIML_THREADS", 2)
worker_class = os.environ.get("MPIML_WORKER_CLASS") or ("gthread" if threads > 1 else "sync")
timeout = _int("MPIML_TIMEOUT", 30)
graceful_timeout = _int("MPIML_GRACEFUL_TIMEOUT", 30)
keepalive = _int("MPIML_KEEPALIVE", 5)
max_requests = _int("MPIML_MAX_REQUESTS", 20000)
max_requests_jitter = _int("MPIML_MAX_REQUESTS_JITTER", max_requests // 10)
preload_app = True
proc_name = "mpiml-serve"
# Gunicorn >= 25 opens a control socket at a fixed per-user path, which several
# servers on one machine would fight over; MPIML_CONTROL_SOCKET=PATH enables it.
control_socket_disable = not os.environ.get("MPIML_CONTROL_SOCKET")
if os.environ.get("MPIML_CONTROL_SOCKET"):
    control_socket = os.environ["MPIML_CONTROL_SOCKET"]
loglevel = os.environ.get("MPIML_LOG_LEVEL", "info")
errorlog = "-"
accesslog = os.environ.get("MPIML_ACCESS_LOG") or None


def on_starting(server):
    """Empty the metrics directory: samples of an earlier run must not be counted."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def on_reload(server):
    """SIGHUP: reload changed model files in the master before new workers fork."""
    app = getattr(server.app, "callable", None)
    registry = getattr(app, "extensions", {}).get("mpiml") if app is not None else None
    if registry is not None:
        server.log.info("reloading models from %s", registry.directory)
        registry.reload()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.get("MPIML_OWNS_METRICS_DIR") == "1":
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def pre_fork(server, worker):
    """Move every object of the master out of the garbage collector's reach before the
    fork: collections in a worker then never write to (and so copy) the pages it shares
    with the master, the loaded models' Python objects included."""
    import gc

    gc.freeze()
