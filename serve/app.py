"""The Flask application factory of the mpiml model server.

``create_app()`` loads every model file of ``MPIML_MODELS`` once (under Gunicorn with
``preload_app``, in the master before the workers fork) and answers:

* ``GET /health``, ``GET /ready``
* ``GET /v1/models``, ``GET /v1/models/NAME``, ``POST /v1/models/NAME:predict``
* Open Inference Protocol v2: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/NAME``, ``/v2/models/NAME/ready``, ``POST /v2/models/NAME/infer``
* ``GET /metrics`` (Prometheus text), ``GET /openapi.json``

Every error is ``{"error": message, "error_code": CODE}`` with its HTTP status.
Nothing here imports the MPI bindings: serving needs only :mod:`mpiml.io` and the estimators.
"""

__all__ = ["create_app", "Settings"]

import logging
import os
import time
import uuid
from dataclasses import dataclass

import numpy as np
from flask import Flask, Response, g, request
from werkzeug.routing import BaseConverter

from . import jsonio, metrics
from .errors import ApiError, register_error_handlers
from .openapi import openapi_spec
from .registry import ModelRegistry
from .fastjson import read_instances
from .fastpath import FastPredict, v1_answer
from .binary import HEADER, encode_tensor
from .columns import instances_to_columns, matrix_to_input, model_input, v2_feature_columns
from .validation import (_tensor_header, instances_to_matrix, parse_json_bytes, read_json_bytes,
                         read_v2_body, v2_inputs_to_matrix)

log = logging.getLogger("mpiml.serve")

SERVER_NAME = "mpiml"


def _env_int(name, default, minimum=1):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"environment variable {name}={raw!r} must be >= {minimum}")
    return value


@dataclass
class Settings:
    """Server settings; :meth:`from_env` reads them from ``MPIML_*`` variables."""

    models_dir: str = "models"
    max_body_bytes: int = 64 * 1024 * 1024
    max_rows: int = 100_000
    warmup: bool = True

    @classmethod
    def from_env(cls):
        return cls(
            models_dir=os.environ.get("MPIML_MODELS") or cls.models_dir,
            max_body_bytes=_env_int("MPIML_MAX_BODY_BYTES", cls.max_body_bytes),
            max_rows=_env_int("MPIML_MAX_ROWS", cls.max_rows),
            warmup=os.environ.get("MPIML_WARMUP", "1").strip().lower() not in ("0", "false", "no"),
        )


class _ModelNameConverter(BaseConverter):
    """A model name: one path segment without ':' (``NAME:predict`` stays unambiguous)."""

    regex = r"[^/:]+"


def _json(obj, status=200):
    return Response(jsonio.dumps(obj), status=status, mimetype="application/json")


def _v2_datatype(dtype):
    kind, size = dtype.kind, dtype.itemsize
    if kind == "f":
        return {2: "FP16", 4: "FP32"}.get(size, "FP64")
    if kind in "iu":
        return ("INT" if kind == "i" else "UINT") + str(8 * size)
    if kind == "b":
        return "BOOL"
    return "BYTES"


def _setup_logging():
    gunicorn_log = logging.getLogger("gunicorn.error")
    if gunicorn_log.handlers:
        log.handlers = gunicorn_log.handlers
        log.setLevel(gunicorn_log.level)
        log.propagate = False
    elif not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def create_app(settings=None, registry=None):
    """Build the server.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.
    registry : ModelRegistry, optional
        Defaults to a registry of ``settings.models_dir``, loaded now.

    Returns
    -------
    flask.Flask
        The registry is ``app.extensions["mpiml"]``; ``reload()`` it to pick up
        changed files (``serve/gunicorn.conf.py`` does that on SIGHUP).
    """
    _setup_logging()
    settings = settings or Settings.from_env()
    if registry is None:
        registry = ModelRegistry(settings.models_dir, warmup=settings.warmup)
        registry.reload()
    if settings.warmup:
        read_instances(b'{"instances": [[0]]}', 1, 1)   # compiled (or loaded) before workers fork
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.converters["model"] = _ModelNameConverter
    app.url_map.strict_slashes = False
    app.extensions["mpiml"] = registry
    app.extensions["mpiml.settings"] = settings
    register_error_handlers(app)
    _register_metrics_hooks(app, registry)
    _register_routes(app, registry, settings)
    app.wsgi_app = FastPredict(app.wsgi_app, registry, settings)
    n_ready = sum(e.ready for e in registry.entries.values())
    log.info("serving %d of %d models from %s", n_ready, len(registry.entries), settings.models_dir)
    return app


def _register_metrics_hooks(app, registry):
    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()
        g.rows = 0

    @app.after_request
    def _record(response):
        started = g.get("started")
        if started is not None:
            rule = request.url_rule
            endpoint = rule.endpoint if rule is not None else "unmatched"
            name = (request.view_args or {}).get("name", "")
            if name and registry.get(name) is None:
                name = ""  # unknown names must not create unbounded label values
            metrics.observe(endpoint, name, response.status_code,
                            time.perf_counter() - started, g.get("rows", 0))
        return response


def _require_model(registry, name):
    entry = registry.get(name)
    if entry is None:
        known = ", ".join(sorted(registry.entries)) or "none"
        raise ApiError(404, "MODEL_NOT_FOUND", f"model {name!r} not found (served: {known})")
    if not entry.ready:
        raise ApiError(503, "MODEL_NOT_READY", f"model {name!r} is not ready: {entry.error}")
    return entry


def _n_rows(X):
    return len(next(iter(X.values()))) if isinstance(X, dict) else len(X)


def _predict(entry, X, want_proba):
    """Labels and (``want_proba``) probabilities of ``X``: a float64 matrix, or a dict of
    columns by feature name (:mod:`serve.columns`)."""
    model = entry.model
    try:
        if want_proba:  # every classifier: labels and probabilities from one evaluation
            predictions, proba = model.predict_with_proba(X)
        else:
            predictions, proba = model.predict(X), None
    except ValueError as exc:  # the estimator's own input checks (mpiml DataError is one)
        raise ApiError(400, "INVALID_INPUT", f"model {entry.name!r} refused the input: {exc}") from None
    g.rows = _n_rows(X)
    return np.asarray(predictions), (None if proba is None else np.asarray(proba))


def _register_routes(app, registry, settings):
    @app.get("/health")
    def health():
        return _json({"status": "ok", "pid": os.getpid()})

    def _ready_body():
        models = {}
        for name, entry in registry.entries.items():
            item = {"status": "ready" if entry.ready else "failed"}
            if entry.ready:
                item["version"] = entry.version
                item["sha256"] = entry.sha256
            if entry.error:
                item["error"] = entry.error
            models[name] = item
        return models

    @app.get("/ready")
    def ready():
        body = {"ready": registry.ready, "models": _ready_body()}
        if registry.ready:
            return _json(body)
        body["error"] = registry.error or (
            "no model is ready" + (f" in {registry.directory!r}" if not registry.entries else ""))
        body["error_code"] = "NOT_READY"
        return _json(body, 503)

    @app.get("/v1/models")
    def list_models():
        return _json({"models": [e.describe() for e in registry.entries.values()]})

    @app.get("/v1/models/<model:name>")
    def model_metadata(name):
        entry = registry.get(name)
        if entry is None:
            _require_model(registry, name)
        if not entry.ready:
            return _json({**entry.describe(), "error_code": "MODEL_NOT_READY",
                          "error": f"model {name!r} is not ready: {entry.error}"}, 503)
        return _json(entry.describe())

    @app.post("/v1/models/<model:name>:predict")
    def predict_v1(name):
        entry = _require_model(registry, name)
        raw = read_json_bytes()
        X = None
        if not entry.has_categorical:
            X = read_instances(raw, entry.n_features, settings.max_rows)   # plain numeric rows
        if X is None:
            X = _v1_model_input(entry, raw, settings.max_rows)
        predictions, proba = _predict(entry, X, entry.is_classifier)
        info = {"name": entry.name, "version": entry.version, "sha256": entry.sha256}
        return Response(v1_answer(predictions, proba, info), mimetype="application/json")

    # -- Open Inference Protocol v2 ---------------------------------------------------

    @app.get("/v2")
    def v2_server_metadata():
        from mpiml import __version__
        return _json({"name": SERVER_NAME, "version": __version__,
                      "extensions": ["binary_tensor_data"]})

    @app.get("/v2/health/live")
    def v2_live():
        return _json({"live": True})

    @app.get("/v2/health/ready")
    def v2_ready():
        if registry.ready:
            return _json({"ready": True})
        return _json({"ready": False, "error": "no model is ready", "error_code": "NOT_READY"}, 503)

    @app.get("/v2/models/<model:name>")
    def v2_model_metadata(name):
        entry = _require_model(registry, name)
        outputs = [{"name": "predict", "datatype": entry.predict_datatype, "shape": [-1]}]
        if entry.is_classifier:
            outputs.append({"name": "predict_proba", "datatype": "FP64",
                            "shape": [-1, len(entry.classes)]})
        return _json({
            "name": entry.name,
            "versions": [entry.version],
            "platform": f"mpiml/{entry.manifest.get('model_type')}",
            "inputs": _v2_inputs_metadata(entry),
            "outputs": outputs,
            "parameters": {"sha256": entry.sha256, "task": entry.manifest.get("task"),
                           "feature_names": entry.feature_names, "classes": entry.classes},
        })

    @app.get("/v2/models/<model:name>/ready")
    def v2_model_ready(name):
        entry = registry.get(name)
        if entry is None:
            _require_model(registry, name)
        if entry.ready:
            return _json({"name": name, "ready": True})
        return _json({"name": name, "ready": False, "error_code": "MODEL_NOT_READY",
                      "error": f"model {name!r} is not ready: {entry.error}"}, 503)

    @app.post("/v2/models/<model:name>/infer")
    def v2_infer(name):
        entry = _require_model(registry, name)
        body, raw, binary = read_v2_body()
        request_id = body.get("id")
        if "id" in body and not isinstance(request_id, str):
            raise ApiError(400, "INVALID_FIELD", "'id' must be a string")
        if "inputs" not in body:
            raise ApiError(400, "MISSING_FIELD", "request body has no 'inputs' field")
        wanted = _requested_outputs(body, entry)
        X = _v2_model_input(entry, body["inputs"], settings.max_rows, raw, binary)
        predictions, proba = _predict(entry, X, "predict_proba" in wanted)
        tensors = []
        if "predict" in wanted:
            tensors.append(("predict", predictions))
        if proba is not None:
            tensors.append(("predict_proba", proba))
        header = {"model_name": entry.name, "model_version": entry.version,
                  "id": request_id if request_id is not None else str(uuid.uuid4()),
                  "parameters": {"sha256": entry.sha256}, "outputs": []}
        chunks = []
        for output, arr in tensors:
            tensor = {"name": output, "shape": list(arr.shape), "datatype": _v2_datatype(arr.dtype)}
            if wanted[output]:
                chunks.append(encode_tensor(arr, tensor["datatype"]))
                tensor["parameters"] = {"binary_data_size": len(chunks[-1])}
            else:
                tensor["data"] = jsonio.as_json_array(arr.ravel())
            header["outputs"].append(tensor)
        if not chunks:
            return _json(header)
        head = jsonio.dumps(header)
        return Response(b"".join([head, *chunks]), mimetype="application/octet-stream",
                        headers={HEADER: str(len(head))})

    @app.get("/metrics")
    def prometheus_metrics():
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.get("/openapi.json")
    def openapi():
        return _json(openapi_spec(registry, settings.max_rows))


def _v2_inputs_metadata(entry):
    """The all-features tensor (all-numeric models), then one tensor per named feature
    with its kind (and categories) in ``parameters``."""
    inputs = []
    if not entry.has_categorical:
        inputs.append({"name": "input-0", "datatype": "FP64", "shape": [-1, entry.n_features]})
    if entry.feature_names is not None:
        for name, feature, info in zip(entry.feature_names, entry.schema.features, entry.features()):
            parameters = {k: v for k, v in info.items() if k != "name"}
            inputs.append({"name": name, "datatype": "BYTES" if feature.text else "FP64",
                           "shape": [-1], "parameters": parameters})
    return inputs


def _v1_model_input(entry, raw, max_rows):
    body = parse_json_bytes(raw)
    if "instances" not in body:
        raise ApiError(400, "MISSING_FIELD", "request body has no 'instances' field")
    instances = body["instances"]
    if entry.has_categorical:
        return instances_to_columns(instances, entry.schema, entry.feature_names, max_rows,
                                    entry.accepts_missing)
    X = instances_to_matrix(instances, entry.n_features, entry.feature_names, max_rows, raw,
                            entry.accepts_missing)
    return matrix_to_input(X, entry.schema)


def _v2_model_input(entry, inputs, max_rows, raw, binary):
    """The model's input from v2 ``inputs``: the one all-features tensor of an all-numeric
    model, or one tensor per feature."""
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "MISSING_FIELD", "'inputs' must be a non-empty list of tensors")
    name, shape, _, _ = _tensor_header(inputs[0], 0)
    n_cols = shape[1] if len(shape) == 2 else 1
    if len(inputs) == 1 and (n_cols != 1 or entry.n_features == 1):
        if entry.has_categorical and (n_cols != 1 or name not in (entry.feature_names or ())):
            categorical = [f.name for f in entry.schema.features if f.is_categorical]
            raise ApiError(400, "INVALID_TENSOR",
                           f"input {name!r}: model {entry.name!r} has categorical features "
                           f"{categorical}, so it takes one input per feature, named after it, of "
                           "shape [rows] (BYTES for categorical features), not one tensor of all "
                           "features")
        if not entry.has_categorical:
            return v2_inputs_to_matrix(inputs, entry.n_features, max_rows, raw, binary)
    columns = v2_feature_columns(inputs, entry.schema, entry.feature_names, max_rows,
                                 entry.accepts_missing, raw, binary)
    return model_input(columns, entry.schema)


def _flag(container, key, flag, where):
    """The boolean ``container[key][flag]``, or None where it is absent (``where`` names
    ``container[key]`` in errors)."""
    if key not in container:
        return None
    parameters = container[key]
    if not isinstance(parameters, dict):
        raise ApiError(400, "INVALID_FIELD", f"{where} must be an object")
    value = parameters.get(flag)
    if flag in parameters and not isinstance(value, bool):
        raise ApiError(400, "INVALID_FIELD", f"{where}.{flag} must be true or false")
    return value


def _requested_outputs(body, entry):
    """{output name: whether it is sent as binary data} of a v2 infer request."""
    binary_default = bool(_flag(body, "parameters", "binary_data_output", "'parameters'"))
    outputs = body.get("outputs")
    available = ["predict"] + (["predict_proba"] if entry.is_classifier else [])
    if outputs == [] or "outputs" not in body:
        return dict.fromkeys(available, binary_default)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise ApiError(400, "INVALID_FIELD", "'outputs' must be a list of objects with a 'name'")
    unknown = [o["name"] for o in outputs if o["name"] not in available]
    if unknown:
        raise ApiError(400, "UNKNOWN_OUTPUT",
                       f"unknown outputs {unknown}; model {entry.name!r} has {available}")
    wanted = {}
    for k, o in enumerate(outputs):
        binary = _flag(o, "parameters", "binary_data", f"outputs[{k}].parameters")
        wanted[o["name"]] = binary_default if binary is None else binary
    return wanted
