"""The OpenAPI 3.1 description served at ``GET /openapi.json``, exact for the served models.

Each ready model has its own ``/v1/models/NAME:predict`` and ``/v2/models/NAME/infer``
operations, whose request schemas accept exactly what the server accepts for that
model: its feature count, its feature names (object rows have those keys and no
others), finite numbers, each v2 datatype's range. JSON Schema cannot tie a v2 tensor's
``shape`` to the length of its ``data``, so the v2 schema lists the shapes of up to
:data:`DOC_ROWS` rows one by one (the server takes up to ``MPIML_MAX_ROWS`` rows of the
same form; the binary tensor data extension and one tensor per feature are described
in the text). Every status and body the server can send is listed, errors included.
"""

__all__ = ["openapi_spec", "DOC_ROWS"]

import sys
import urllib.parse

import numpy as np

from .columns import NUMBER_TEXT, NUMERIC, TEXT, feature_kinds
from .validation import V2_DTYPES

DOC_ROWS = 2

_MAX_FLOAT = sys.float_info.max
NUMBER = {"type": "number", "minimum": -_MAX_FLOAT, "maximum": _MAX_FLOAT}
ERROR = {"$ref": "#/components/schemas/Error"}
_OCTETS = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _json_content(schema):
    return {"application/json": {"schema": schema}}


def _answer(description, schema=ERROR):
    return {"description": description, "content": _json_content(schema)}


_ERRORS = {
    "400": _answer("Malformed request: bad JSON, missing field, wrong feature count or names, "
                   "a value of the wrong kind for its feature, NaN or infinite value (the "
                   "message names row and feature)"),
    "404": _answer("Unknown model or route"),
    "405": _answer("Method not allowed on this route (the Allow header lists the allowed ones)"),
    "413": _answer("Body larger than MPIML_MAX_BODY_BYTES or more rows than MPIML_MAX_ROWS"),
    "415": _answer("A Content-Type (or Content-Encoding) that this route does not take"),
    "503": _answer("The model is not loaded"),
}

_NAME = [{"name": "name", "in": "path", "required": True,
          "description": "Model name: the stem of its file in MPIML_MODELS",
          "schema": {"type": "string", "pattern": "^[^/:]+$"}}]


def _get(summary, schema, errors=(), params=None, **answers):
    responses = {"200": _answer("OK", schema), "405": _ERRORS["405"],
                 **{c: _ERRORS[c] for c in errors}, **answers}
    op = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    return {"get": op}


def _obj(required, properties, extra=True):
    schema = {"type": "object", "required": list(required), "properties": properties}
    if not extra:
        schema["additionalProperties"] = False
    return schema


_STRING = {"type": "string"}
_MODEL_STATUS = _obj(["status"], {"status": {"enum": ["ready", "failed"]}, "version": _STRING,
                                   "sha256": _STRING, "error": _STRING})

_SCHEMAS = {
    "Error": _obj(["error", "error_code"], {
        "error": {"type": "string", "description": "What went wrong"},
        "error_code": {"type": "string", "description": "Stable code, e.g. INVALID_VALUE"}}, extra=False),
    "ModelInfo": _obj(["name", "status"], {
        "name": _STRING, "status": {"enum": ["ready", "failed"]},
        "version": _STRING, "sha256": _STRING,
        "model_type": {"type": ["string", "null"]}, "task": {"type": ["string", "null"]},
        "n_features": {"type": ["integer", "null"]},
        "feature_names": {"type": ["array", "null"], "items": _STRING},
        "features": {"type": ["array", "null"], "description": "Each feature's kind and, for a "
                     "categorical one, its categories", "items": _obj(["name", "kind"], {
                         "name": _STRING, "kind": {"enum": ["numeric", "categorical"]},
                         "categories": {"type": "array"}})},
        "accepts_missing": {"type": "boolean",
                            "description": "Whether null (a missing value) is taken"},
        "classes": {"type": ["array", "null"]}, "params": {"type": "object"},
        "created": {"type": ["string", "null"]}, "error": _STRING, "error_code": _STRING}),
    "Ready": _obj(["ready", "models"], {
        "ready": {"type": "boolean"}, "models": {"type": "object", "additionalProperties": _MODEL_STATUS},
        "error": _STRING, "error_code": _STRING}),
    "ModelReady": _obj(["name", "ready"], {"name": _STRING, "ready": {"type": "boolean"},
                                           "error": _STRING, "error_code": _STRING}),
    "V2ModelMetadata": _obj(["name", "versions", "platform", "inputs", "outputs"], {
        "name": _STRING, "versions": {"type": "array", "items": _STRING}, "platform": _STRING,
        "inputs": {"type": "array"}, "outputs": {"type": "array"}, "parameters": {"type": "object"}}),
}


# A prediction of finite inputs may overflow float64; JSON then has null in its place.
_OUTPUT_NUMBER = {"type": ["number", "null"]}
_PROBABILITY = {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]}


def _label_schema(entry):
    classes = entry.classes
    return _OUTPUT_NUMBER if classes is None else {"enum": list(classes)}


def _model_ref(entry):
    return _obj(["name", "version", "sha256"], {"name": {"const": entry.name}, "version": _STRING,
                                                "sha256": _STRING}, extra=False)


def _cell_schema(feature, kind, accepts_missing):
    """The JSON values that a v1 row takes for one feature."""
    null = ["null"] if accepts_missing else []
    if kind == NUMERIC:
        return {**NUMBER, "type": ["number", *null]}
    categories = feature.categories.tolist()
    if kind == TEXT:
        return {"type": ["string", *null], "examples": categories,
                "description": f"Categorical: one of {categories}; any other string is an "
                               "unknown category, read as a missing value"}
    return {**NUMBER, "type": ["number", "string", *null], "examples": categories,
            "description": f"Categorical with numeric categories {categories}: a number or a "
                           f"string spelling one ({NUMBER_TEXT}); anything else is an unknown "
                           "category, read as a missing value"}


def _predict_v1(entry):
    n, names, schema = entry.n_features, entry.feature_names, entry.schema
    cells = [_cell_schema(f, kind, entry.accepts_missing)
             for f, kind in zip(schema.features, feature_kinds(schema))]
    if entry.has_categorical:
        row = {"type": "array", "minItems": n, "maxItems": n, "prefixItems": cells, "items": False}
    else:
        row = {"type": "array", "minItems": n, "maxItems": n, "items": cells[0]}
    forms = [{"type": "array", "minItems": 1, "items": row}]
    if names is not None:
        forms.append({"type": "array", "minItems": 1,
                      "items": _obj(names, dict(zip(names, cells)), extra=False)})
    missing = " null is a missing value." if entry.accepts_missing else ""
    request = _obj(["instances"], {"instances": {
        "description": f"Rows of the {n} features, as lists in the model's order"
                       + (f" ({', '.join(names)}) or as objects keyed by feature name" if names else "")
                       + "; categorical cells are strings." + missing,
        "anyOf": forms}})
    properties = {"predictions": {"type": "array", "minItems": 1, "items": _label_schema(entry)},
                  "model": _model_ref(entry)}
    required = ["predictions", "model"]
    if entry.is_classifier:
        k = len(entry.classes)
        properties["probabilities"] = {
            "type": "array", "minItems": 1,
            "description": "Columns follow the model's classes",
            "items": {"type": "array", "minItems": k, "maxItems": k,
                      "items": _PROBABILITY}}
        required.append("probabilities")
    response = _obj(required, properties, extra=False)
    return _post(f"Predict rows with model {entry.name!r}", request,
                 {"200": _answer("Predictions", response)})


def _item_schema(datatype):
    dtype = np.dtype(V2_DTYPES[datatype])
    if dtype.kind == "b":
        return {"type": "boolean"}
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    limit = float(np.finfo(dtype).max)
    return {"type": "number", "minimum": -limit, "maximum": limit}


def _tensor_forms(entry, max_rows):
    """One schema per datatype of a single [rows, n_features] input tensor, each listing
    its shapes of 1 to DOC_ROWS rows."""
    n = entry.n_features
    params = {"type": "object", "properties": {"binary_data_size": {"not": {}}},
              "description": "binary_data_size only with the binary tensor data extension"}
    forms = []
    for datatype in V2_DTYPES:
        item = _item_schema(datatype)
        shapes = []
        for rows in range(1, min(max_rows, DOC_ROWS) + 1):
            flat = {"type": "array", "minItems": rows * n, "maxItems": rows * n, "items": item}
            nested = {"type": "array", "minItems": rows, "maxItems": rows,
                      "items": {"type": "array", "minItems": n, "maxItems": n, "items": item}}
            shapes.append({"properties": {"shape": {"const": [rows, n]},
                                          "data": {"anyOf": [flat, nested]}}})
        form = _obj(["name", "shape", "datatype", "data"], {
            "name": _STRING, "datatype": {"const": datatype}, "parameters": params})
        form["anyOf"] = shapes
        forms.append(form)
    return forms


def _feature_tensor_forms(entry, max_rows):
    """The inputs of a model with categorical features: one tensor per feature, listed
    in the model's order, each of every datatype its kind takes, all with the same 1 to
    DOC_ROWS rows, with flat data. (The server also takes them in any order, and nested
    data of shape [rows, 1]: JSON Schema would spell that with more branches than
    schemathesis's canonical form holds.)"""
    schema = entry.schema
    params = {"type": "object", "properties": {"binary_data_size": {"not": {}}},
              "description": "binary_data_size only with the binary tensor data extension"}
    per_rows = []
    for rows in range(1, min(max_rows, DOC_ROWS) + 1):
        tensors = []
        for name, kind in zip(entry.feature_names, feature_kinds(schema)):
            datatypes = (["BYTES"] if kind == TEXT else list(V2_DTYPES) if kind == NUMERIC
                         else ["BYTES", *V2_DTYPES])
            forms = []
            for datatype in datatypes:
                item = dict(_STRING if datatype == "BYTES" else _item_schema(datatype))
                if entry.accepts_missing:
                    item["type"] = [item["type"], "null"]
                forms.append(_obj(["name", "shape", "datatype", "data"], {
                    "name": {"const": name}, "datatype": {"const": datatype}, "parameters": params,
                    "shape": {"enum": [[rows], [rows, 1]]},
                    "data": {"type": "array", "minItems": rows, "maxItems": rows, "items": item}}))
            tensors.append({"anyOf": forms})
        n = len(tensors)
        per_rows.append({"type": "array", "minItems": n, "maxItems": n, "prefixItems": tensors,
                         "items": False})
    return per_rows


def _output_schema(entry, name):
    if name == "predict":
        datatype, item = entry.predict_datatype, _label_schema(entry)
        shape = {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "integer"}}
    else:
        datatype, item = "FP64", _PROBABILITY
        shape = {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer"}}
    common = {"name": {"const": name}, "shape": shape, "datatype": {"const": datatype}}
    as_json = _obj(["name", "shape", "datatype", "data"],
                   {**common, "data": {"type": "array", "items": item}}, extra=False)
    as_binary = _obj(["name", "shape", "datatype", "parameters"], {**common, "parameters": _obj(
        ["binary_data_size"], {"binary_data_size": {"type": "integer", "minimum": 0}})}, extra=False)
    return as_json, as_binary


def _inputs_schema(entry, max_rows):
    if entry.has_categorical:
        return {"anyOf": _feature_tensor_forms(entry, max_rows)}
    return {"type": "array", "minItems": 1, "maxItems": 1,
            "items": {"anyOf": _tensor_forms(entry, max_rows)}}


def _infer_v2(entry, max_rows):
    names = ["predict"] + (["predict_proba"] if entry.is_classifier else [])
    binary_flag = {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}
    request = _obj(["inputs"], {
        "id": _STRING,
        "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
        "inputs": _inputs_schema(entry, max_rows),
        "outputs": {"type": "array", "items": _obj(["name"], {"name": {"enum": names},
                                                              "parameters": binary_flag})},
    })
    if entry.has_categorical:
        request["description"] = (
            "One input per feature, named after it, of shape [rows] or [rows, 1], in any "
            "order: BYTES (strings) for categorical features (numbers too where the "
            "categories are numeric), a numeric datatype for numeric ones; null is a missing "
            "value, and so is NaN in numeric data. The server also takes binary tensor data "
            "(application/octet-stream with Inference-Header-Content-Length, each input's bytes "
            "counted by parameters.binary_data_size)")
    else:
        request["description"] = (
            f"One input of shape [rows, {entry.n_features}] (flat row-major or nested data); "
            "the server also takes one input per feature named after it of shape [rows] "
            "(null or NaN missing), and binary tensor data (application/octet-stream with "
            "Inference-Header-Content-Length, each input's bytes counted by "
            "parameters.binary_data_size)")
    json_outputs = [_output_schema(entry, name)[0] for name in names]
    response = _obj(["model_name", "model_version", "id", "parameters", "outputs"], {
        "model_name": {"const": entry.name}, "model_version": _STRING, "id": _STRING,
        "parameters": _obj(["sha256"], {"sha256": _STRING}, extra=False),
        "outputs": {"type": "array", "minItems": 1, "items": {"anyOf": json_outputs}}}, extra=False)
    ok = {"description": "Outputs; application/octet-stream (JSON header, then the raw outputs) "
                         "when any output is asked for as binary data",
          "headers": {"Inference-Header-Content-Length": {
              "description": "Length of the JSON header of an application/octet-stream answer",
              "schema": {"type": "integer", "minimum": 1}}},
          "content": {**_json_content(response), **_OCTETS}}
    return _post(f"OIP v2 inference with model {entry.name!r}", request, {"200": ok})


def _post(summary, request_schema, answers):
    responses = {**answers, **{c: _ERRORS[c] for c in ("400", "404", "405", "413", "415", "503")}}
    return {"post": {"summary": summary,
                     "requestBody": {"required": True, "content": _json_content(request_schema)},
                     "responses": responses}}


_CACHE = {}


def openapi_spec(registry, max_rows):
    """The API description of ``registry``'s models as a JSON-able dict (built once per
    reload of the registry)."""
    key = (id(registry), registry.generation, max_rows)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _build(registry, max_rows)
    return _CACHE[key]


def _build(registry, max_rows):
    from mpiml import __version__

    obj = {"type": "object"}
    not_ready = {"503": _answer("No model is ready", {"$ref": "#/components/schemas/Ready"})}
    paths = {
        "/health": _get("Process is alive", _obj(["status", "pid"], {"status": {"const": "ok"},
                                                                     "pid": {"type": "integer"}})),
        "/ready": _get("At least one model is loaded; per-model status",
                       {"$ref": "#/components/schemas/Ready"}, **not_ready),
        "/v1/models": _get("Every model file found, with its status", _obj(["models"], {
            "models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelInfo"}}})),
        "/v1/models/{name}": _get("Model metadata: version, sha256, features, classes",
                                  {"$ref": "#/components/schemas/ModelInfo"}, ["404"], _NAME,
                                  **{"503": _answer("The model failed to load",
                                                    {"$ref": "#/components/schemas/ModelInfo"})}),
        "/v2": _get("Open Inference Protocol v2 server metadata", _obj(
            ["name", "version", "extensions"], {"name": _STRING, "version": _STRING,
                                                "extensions": {"type": "array", "items": _STRING}})),
        "/v2/health/live": _get("OIP v2 liveness", _obj(["live"], {"live": {"const": True}})),
        "/v2/health/ready": _get("OIP v2 readiness", _obj(["ready"], {"ready": {"type": "boolean"}}),
                                 **{"503": _answer("No model is ready", _obj(
                                     ["ready", "error", "error_code"], {"ready": {"const": False}}))}),
        "/v2/models/{name}": _get("OIP v2 model metadata",
                                  {"$ref": "#/components/schemas/V2ModelMetadata"}, ["404", "503"], _NAME),
        "/v2/models/{name}/ready": _get("OIP v2 model readiness",
                                        {"$ref": "#/components/schemas/ModelReady"}, ["404"], _NAME,
                                        **{"503": _answer("The model failed to load",
                                                          {"$ref": "#/components/schemas/ModelReady"})}),
        "/metrics": {"get": {"summary": "Prometheus metrics summed over all workers",
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": _STRING}}},
                                           "405": _ERRORS["405"]}}},
        "/openapi.json": _get("This document", obj),
    }
    for name, entry in sorted(registry.entries.items()):
        if not entry.ready or not entry.n_features:
            continue
        quoted = urllib.parse.quote(name, safe="")
        paths[f"/v1/models/{quoted}:predict"] = _predict_v1(entry)
        paths[f"/v2/models/{quoted}/infer"] = _infer_v2(entry, max_rows)
    return {
        "openapi": "3.1.0",
        "info": {"title": "mpiml model server", "version": __version__,
                 "description": "Serves every model file of MPIML_MODELS under its file's stem. "
                                "Every error is {\"error\": message, \"error_code\": CODE}."},
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
