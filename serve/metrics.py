"""Prometheus metrics, correct when summed over every Gunicorn worker.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``serve/gunicorn.conf.py`` sets it before the
app is imported) each process writes its samples to memory-mapped files in that
directory and ``GET /metrics`` aggregates the files of all workers, living or dead,
so any worker answers with the totals. Without it (a single process, tests through
Flask's client) the process's own registry is exported.
"""

__all__ = ["REQUESTS", "LATENCY", "ROWS", "render", "observe"]

import os

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter,
                               Histogram, generate_latest)

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0)

REQUESTS = Counter("mpiml_http_requests_total", "HTTP requests answered.",
                   ["endpoint", "model", "status"])
LATENCY = Histogram("mpiml_http_request_duration_seconds",
                    "Time from request start to response, seconds.",
                    ["endpoint", "model", "status"], buckets=_BUCKETS)
ROWS = Counter("mpiml_predicted_rows_total", "Rows predicted.", ["model"])


#: (endpoint, model, status) -> the labelled children of the three metrics; the label
#: values are bounded (routes, served models, status codes), and looking a child up
#: once instead of on every request saves a third of the cost of recording it
_CHILDREN = {}


def observe(endpoint, model, status, seconds, rows=0):
    """Record one answered request (``model`` is "" when none applies)."""
    key = (endpoint, model, status)
    children = _CHILDREN.get(key)
    if children is None:
        labels = (endpoint, model, str(status))
        children = _CHILDREN[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels),
                                     ROWS.labels(model))
    children[0].inc()
    children[1].observe(seconds)
    if rows:
        children[2].inc(rows)


def render():
    """Return ``(body, content_type)`` of the Prometheus text exposition."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
