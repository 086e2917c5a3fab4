"""The OpenAPI 3.1 description served at ``GET /openapi.json``."""

__all__ = ["openapi_spec"]

import functools


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema):
    return {"application/json": {"schema": schema}}


def _answer(description, schema):
    return {"description": description, "content": _json_content(schema)}


_ERRORS = {
    "400": _answer("Malformed request: bad JSON, missing field, wrong feature count or names, "
                   "non-numeric, NaN or infinite value (the message names row and column)", _ref("Error")),
    "404": _answer("Unknown model or route", _ref("Error")),
    "405": _answer("Method not allowed on this route", _ref("Error")),
    "413": _answer("Body larger than MPIML_MAX_BODY_BYTES or more rows than MPIML_MAX_ROWS", _ref("Error")),
    "415": _answer("Content-Type is not application/json", _ref("Error")),
    "503": _answer("The model failed to load", _ref("Error")),
}

_NAME = [{"name": "name", "in": "path", "required": True,
          "description": "Model name: the stem of its file in MPIML_MODELS",
          "schema": {"type": "string", "pattern": "^[^/:]+$"}}]


def _get(summary, schema, errors=(), params=None):
    op = {"summary": summary, "responses": {"200": _answer("OK", schema),
                                            **{c: _ERRORS[c] for c in errors}}}
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(summary, request_schema, schema, errors):
    return {"post": {"summary": summary, "parameters": _NAME,
                     "requestBody": {"required": True, "content": _json_content(request_schema)},
                     "responses": {"200": _answer("OK", schema), **{c: _ERRORS[c] for c in errors}}}}


_SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error", "error_code"],
        "properties": {"error": {"type": "string", "description": "What went wrong"},
                       "error_code": {"type": "string", "description": "Stable code, e.g. INVALID_VALUE"}},
    },
    "ModelInfo": {
        "type": "object", "required": ["name", "status"],
        "properties": {
            "name": {"type": "string"}, "status": {"enum": ["ready", "failed"]},
            "version": {"type": "string"}, "sha256": {"type": "string"},
            "model_type": {"type": "string"}, "task": {"type": ["string", "null"]},
            "n_features": {"type": ["integer", "null"]},
            "feature_names": {"type": ["array", "null"], "items": {"type": "string"}},
            "classes": {"type": ["array", "null"]}, "params": {"type": "object"},
            "created": {"type": "string"}, "error": {"type": "string"},
        },
    },
    "PredictRequest": {
        "type": "object", "required": ["instances"],
        "properties": {"instances": {
            "description": "Rows as lists of numbers, or objects keyed by feature name",
            "oneOf": [{"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                      {"type": "array", "items": {"type": "object",
                                                  "additionalProperties": {"type": "number"}}}]}},
    },
    "PredictResponse": {
        "type": "object", "required": ["predictions", "model"],
        "properties": {
            "predictions": {"type": "array"},
            "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                              "description": "Classifiers only; columns follow the model's classes"},
            "model": {"type": "object", "properties": {"name": {"type": "string"},
                                                       "version": {"type": "string"},
                                                       "sha256": {"type": "string"}}},
        },
    },
    "Tensor": {
        "type": "object", "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                  "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]},
            "parameters": {"type": "object"},
            "data": {"type": "array", "description": "Row-major, flat or nested"},
        },
    },
    "InferenceRequest": {
        "type": "object", "required": ["inputs"],
        "description": "One input of shape [rows, n_features], or one input per feature "
                       "(named after it) of shape [rows]",
        "properties": {
            "id": {"type": "string"}, "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": _ref("Tensor")},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"enum": ["predict", "predict_proba"]}}}},
        },
    },
    "InferenceResponse": {
        "type": "object", "required": ["model_name", "outputs"],
        "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                       "id": {"type": "string"}, "parameters": {"type": "object"},
                       "outputs": {"type": "array", "items": _ref("Tensor")}},
    },
}


@functools.lru_cache(maxsize=1)
def openapi_spec():
    """The API description as a JSON-able dict (built once per process)."""
    from mpiml import __version__

    obj = {"type": "object"}
    paths = {
        "/health": _get("Process is alive", obj),
        "/ready": _get("At least one model is loaded; per-model status", obj, ["503"]),
        "/v1/models": _get("Every model file found, with its status", obj),
        "/v1/models/{name}": _get("Model metadata: version, sha256, features, classes",
                                  _ref("ModelInfo"), ["404", "503"], _NAME),
        "/v1/models/{name}:predict": _post("Predict rows", _ref("PredictRequest"),
                                           _ref("PredictResponse"),
                                           ["400", "404", "405", "413", "415", "503"]),
        "/v2": _get("Open Inference Protocol v2 server metadata", obj),
        "/v2/health/live": _get("OIP v2 liveness", obj),
        "/v2/health/ready": _get("OIP v2 readiness", obj, ["503"]),
        "/v2/models/{name}": _get("OIP v2 model metadata", obj, ["404", "503"], _NAME),
        "/v2/models/{name}/ready": _get("OIP v2 model readiness", obj, ["404", "503"], _NAME),
        "/v2/models/{name}/infer": _post("OIP v2 inference", _ref("InferenceRequest"),
                                         _ref("InferenceResponse"),
                                         ["400", "404", "405", "413", "415", "503"]),
        "/metrics": {"get": {"summary": "Prometheus metrics summed over all workers",
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {}}}}}},
        "/openapi.json": _get("This document", obj),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mpiml model server", "version": __version__,
                 "description": "Serves every model file of MPIML_MODELS under its file's stem."},
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
