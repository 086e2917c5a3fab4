"""The hot route without the framework: plain numeric ``:predict`` requests in WSGI.

Flask's routing, request context and response object cost about as much as predicting
one row with a linear model. :class:`FastPredict` wraps the Flask application and
answers the common request itself: ``POST /v1/models/NAME:predict`` with a JSON body
of plain numeric rows (``{"instances": [[...], ...]}``, read by
:func:`serve.fastjson.read_instances`) to a ready all-numeric model. The answer, its
headers and the metrics it records are those of the Flask route (``predict_v1``).

Every other request, and any request of that route that is not plain (another
Content-Type or encoding, no or a too large Content-Length, rows the reader does not
take, an input the model refuses), goes to the Flask application unchanged, with the
body it was sent, so that errors keep their messages and codes.
"""

__all__ = ["FastPredict", "v1_answer"]

import io
import time

from . import jsonio, metrics
from .fastjson import read_instances
from .validation import _is_json_content_type

_PREFIX = "/v1/models/"
_SUFFIX = ":predict"
_HEADERS_JSON = "application/json"


def _json_mimetype(content_type):
    """Whether a Content-Type header names JSON (the rule of :func:`read_json_bytes`)."""
    return _is_json_content_type(content_type.split(";", 1)[0].strip().lower())


def v1_answer(predictions, proba, info):
    """The body of a v1 ``:predict`` answer (``proba`` None for a regressor)."""
    out = {"predictions": jsonio.as_json_array(predictions)}
    if proba is not None:
        out["probabilities"] = jsonio.as_json_array(proba)
    out["model"] = info
    return jsonio.dumps(out)


class FastPredict:
    """WSGI middleware: answers plain numeric v1 predictions, passes the rest to ``app``.

    ``create_app`` installs it as ``app.wsgi_app``, so that Flask's test client goes
    through it too.

    Parameters
    ----------
    app : WSGI callable
        Flask's own ``wsgi_app``, which answers everything else.
    registry : ModelRegistry
    settings : Settings
    """

    def __init__(self, app, registry, settings):
        self.app = app
        self.registry = registry
        self.settings = settings
        self._plans = {}   # name -> (entry, plan); a reload replaces the entry

    def _plan(self, name, entry):
        """What the fast path needs of ``entry``: (n_features, is_classifier, the answer's
        "model" object), or None where it does not serve the model."""
        cached = self._plans.get(name)
        if cached is not None and cached[0] is entry:
            return cached[1]
        plan = None
        if entry.ready and not entry.has_categorical and entry.n_features:
            plan = (entry.n_features, entry.is_classifier,
                    {"name": entry.name, "version": entry.version, "sha256": entry.sha256})
        self._plans[name] = (entry, plan)
        return plan

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if (environ.get("REQUEST_METHOD") == "POST" and path.startswith(_PREFIX)
                and path.endswith(_SUFFIX)):
            answer = self._predict_v1(environ, start_response, path[len(_PREFIX):-len(_SUFFIX)])
            if answer is not None:
                return answer
        return self.app(environ, start_response)

    def _predict_v1(self, environ, start_response, name):
        started = time.perf_counter()
        if not name or "/" in name or ":" in name:
            return None
        entry = self.registry.get(name)
        if entry is None:
            return None
        plan = self._plan(name, entry)
        if (plan is None or not _json_mimetype(environ.get("CONTENT_TYPE", ""))
                or environ.get("HTTP_CONTENT_ENCODING") or environ.get("HTTP_TRANSFER_ENCODING")):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= self.settings.max_body_bytes:
            return None
        raw = environ["wsgi.input"].read(length)
        n_features, is_classifier, info = plan
        X = None
        if len(raw) == length:
            X = read_instances(raw, n_features, self.settings.max_rows)
        if X is not None:
            try:
                if is_classifier:
                    predictions, proba = entry.model.predict_with_proba(X)
                else:
                    predictions, proba = entry.model.predict(X), None
                body = v1_answer(predictions, proba, info)
            except Exception:  # noqa: BLE001 - the Flask route answers it with its error
                X = None
        if X is None:   # the Flask route reads the same body again
            environ["wsgi.input"] = io.BytesIO(raw)
            return None
        start_response("200 OK", [("Content-Type", _HEADERS_JSON),
                                  ("Content-Length", str(len(body)))])
        metrics.observe("predict_v1", name, 200, time.perf_counter() - started, X.shape[0])
        return [body]
