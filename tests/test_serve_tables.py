"""Serving raw rows: categorical features as strings, missing values as null, one v2 tensor
per feature (BYTES for categorical ones), through Flask's test client and, for
``tritonclient``, a live Gunicorn. Every answer equals
``mpiml.load(path).predict(pandas.DataFrame(rows))``."""

import json
import os

import numpy as np
import pandas as pd
import pytest

import mpiml

pytest.importorskip("flask")
from serving import Server, categorical_frame, save_categorical_models, triton_client  # noqa: E402

from serve.app import Settings, create_app  # noqa: E402

UNDER_MPI = any(v in os.environ for v in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"))
pytestmark = pytest.mark.skipif(UNDER_MPI, reason="the server tests run once, outside mpiexec")

FEATURES = ["color", "size", "zip", "weight"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from mpiml.models.linear import LinearRegression

    directory = tmp_path_factory.mktemp("models")
    paths = save_categorical_models(directory)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    paths["numeric"] = directory / "numeric.mpiml"
    mpiml.save(LinearRegression().fit(X, X @ [1.0, 2.0, 3.0], feature_names=["a", "b", "c"]),
               paths["numeric"])
    return directory, paths


@pytest.fixture(scope="module")
def client(models):
    directory, _ = models
    app = create_app(Settings(models_dir=str(directory), max_rows=1000))
    return app.test_client()


def _rows(n, seed=3, missing=0.3):
    """Rows as JSON objects (null for missing cells) and the library's DataFrame of them."""
    frame, _ = categorical_frame(n, seed=seed, missing=missing)
    rows = []
    for record in frame.astype(object).to_dict("records"):
        rows.append({k: (None if (v is None or (isinstance(v, float) and np.isnan(v))) else v)
                     for k, v in record.items()})
    return rows


def _expected(path, rows):
    model = mpiml.load(path)
    frame = pd.DataFrame(rows)
    proba = model.predict_proba(frame) if hasattr(model, "predict_proba") else None
    return model.predict(frame), proba


def _predict(client, name, instances):
    return client.post(f"/v1/models/{name}:predict", json={"instances": instances})


def _error(resp, status, code, *words):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error", "error_code"} and body["error_code"] == code, body
    for word in words:
        assert word in body["error"], body
    return body["error"]


# -- v1 ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["colors", "colors_reg"])
@pytest.mark.parametrize("form", ["objects", "lists"])
def test_v1_rows_with_strings_and_nulls(client, models, name, form):
    _, paths = models
    rows = _rows(40)
    assert any(None in r.values() for r in rows) and any(r["color"] is None for r in rows)
    instances = rows if form == "objects" else [[r[f] for f in FEATURES] for r in rows]
    resp = _predict(client, name, instances)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    labels, proba = _expected(paths[name], rows)
    body = resp.get_json()
    assert body["predictions"] == labels.tolist()
    if proba is not None:
        assert np.array_equal(np.array(body["probabilities"]), proba)


def test_v1_numeric_categories_as_numbers_or_strings(client, models):
    _, paths = models
    rows = [{"color": "red", "size": 0.5, "zip": 20, "weight": 1.0},
            {"color": "blue", "size": -1, "zip": 30.0, "weight": None}]
    as_text = [{**r, "zip": str(r["zip"])} for r in rows]
    labels, proba = _expected(paths["colors"], rows)
    for instances in (rows, as_text):
        body = _predict(client, "colors", instances).get_json()
        assert body["predictions"] == labels.tolist()
        assert np.array_equal(np.array(body["probabilities"]), proba)


def test_unknown_category_is_missing(client, models):
    _, paths = models
    unknown = [{"color": "purple", "size": 0.1, "zip": 40, "weight": 2.0},
               {"color": "teal", "size": 0.1, "zip": "x", "weight": 2.0}]
    missing = [{"color": None, "size": 0.1, "zip": None, "weight": 2.0}] * 2
    got = _predict(client, "colors", unknown).get_json()
    labels, proba = _expected(paths["colors"], missing)
    assert got["predictions"] == labels.tolist()
    assert np.array_equal(np.array(got["probabilities"]), proba)


@pytest.mark.parametrize("instances, words", [
    ([{"color": 1.5, "size": 0, "zip": 10, "weight": 0}], ["row 0", "'color'", "string"]),
    ([[ "red", 0, 10, 0], ["red", "big", 10, 0]], ["row 1", "'size'", "number"]),
    ([["red", 0, 10, 0], ["red", 0, 10, True]], ["row 1", "'weight'", "number"]),
    ([["red", 0, True, 0]], ["row 0", "'zip'"]),
    ([["red", 0, 10, 0], ["red", [1], 10, 0]], ["row 1", "'size'"]),
    ([{"color": {"a": 1}, "size": 0, "zip": 10, "weight": 0}], ["row 0", "'color'"]),
])
def test_wrong_kind_names_row_and_feature(client, instances, words):
    _error(_predict(client, "colors", instances), 400, "INVALID_VALUE", *words)


def test_unknown_and_missing_feature_keys(client):
    row = {"color": "red", "size": 0, "zip": 10, "weight": 0}
    _error(_predict(client, "colors", [row, {**row, "shade": "x"}]), 400, "UNKNOWN_FEATURE",
           "instances[1]", "shade")
    partial = {k: v for k, v in row.items() if k != "zip"}
    _error(_predict(client, "colors", [partial]), 400, "UNKNOWN_FEATURE", "missing", "zip")
    _error(_predict(client, "colors", [["red", 0, 10]]), 400, "WRONG_FEATURE_COUNT", "instances[0]")


# -- v2 ------------------------------------------------------------------------------

def _v2_inputs(rows, shape1=False):
    inputs = []
    for f in FEATURES:
        values = [r[f] for r in rows]
        datatype = "BYTES" if f == "color" else "FP64"
        shape = [len(rows), 1] if shape1 else [len(rows)]
        inputs.append({"name": f, "shape": shape, "datatype": datatype, "data": values})
    return inputs


@pytest.mark.parametrize("shape1", [False, True])
def test_v2_json_tensor_per_feature(client, models, shape1):
    _, paths = models
    rows = _rows(25, seed=5)
    resp = client.post("/v2/models/colors/infer", json={"inputs": _v2_inputs(rows, shape1)[::-1]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    outputs = {o["name"]: o for o in resp.get_json()["outputs"]}
    labels, proba = _expected(paths["colors"], rows)
    assert outputs["predict"]["data"] == labels.tolist()
    assert np.array_equal(np.array(outputs["predict_proba"]["data"]).reshape(proba.shape), proba)


def test_v2_numeric_categories_as_bytes_and_nan(client, models):
    _, paths = models
    rows = [{"color": "green", "size": 0.3, "zip": 30.0, "weight": None},
            {"color": "red", "size": None, "zip": None, "weight": 1.5}]
    inputs = _v2_inputs(rows)
    inputs[2] = {"name": "zip", "shape": [2], "datatype": "BYTES", "data": ["30", None]}
    body = json.dumps({"inputs": inputs}).replace("null]", "NaN]", 1)   # weight: [NaN, 1.5]
    assert "NaN" in body
    resp = client.post("/v2/models/colors_reg/infer", data=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    labels, _ = _expected(paths["colors_reg"], rows)
    assert resp.get_json()["outputs"][0]["data"] == labels.tolist()


def test_v2_errors(client):
    rows = _rows(3, seed=2, missing=0)
    inputs = _v2_inputs(rows)
    bad = [dict(t) for t in inputs]
    bad[0] = {**bad[0], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}
    _error(client.post("/v2/models/colors/infer", json={"inputs": bad}), 400, "INVALID_DATATYPE",
           "'color'", "categorical", "BYTES")
    bad = [dict(t) for t in inputs]
    bad[1] = {**bad[1], "datatype": "BYTES", "data": ["a", "b", "c"]}
    _error(client.post("/v2/models/colors/infer", json={"inputs": bad}), 400, "INVALID_DATATYPE",
           "'size'", "numeric")
    bad = [dict(t) for t in inputs]
    bad[0] = {**bad[0], "data": ["red", 3, "blue"]}
    _error(client.post("/v2/models/colors/infer", json={"inputs": bad}), 400, "INVALID_VALUE",
           "'color'", "row 1")
    bad = [dict(t) for t in inputs]
    bad[3] = {**bad[3], "data": [1.0, "x", 2.0]}
    _error(client.post("/v2/models/colors/infer", json={"inputs": bad}), 400, "INVALID_VALUE",
           "'weight'", "row 1")
    _error(client.post("/v2/models/colors/infer", json={"inputs": inputs[:3]}), 400,
           "UNKNOWN_FEATURE", "missing", "weight")
    extra = inputs + [{"name": "shade", "shape": [3], "datatype": "BYTES", "data": ["a"] * 3}]
    _error(client.post("/v2/models/colors/infer", json={"inputs": extra}), 400,
           "UNKNOWN_FEATURE", "shade")
    short = [dict(t) for t in inputs]
    short[3] = {**short[3], "shape": [2], "data": [1.0, 2.0]}
    _error(client.post("/v2/models/colors/infer", json={"inputs": short}), 400, "INVALID_SHAPE",
           "same number of rows")
    whole = [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [0, 0, 10, 0]}]
    _error(client.post("/v2/models/colors/infer", json={"inputs": whole}), 400, "INVALID_TENSOR",
           "categorical", "one input per feature")


def _binary_body(tensors):
    """A v2 body with binary tensor data: [(name, datatype, shape, raw bytes)]."""
    header = {"inputs": [{"name": n, "datatype": d, "shape": s,
                          "parameters": {"binary_data_size": len(b)}} for n, d, s, b in tensors]}
    head = json.dumps(header).encode()
    return {"data": head + b"".join(t[3] for t in tensors),
            "headers": {"Content-Type": "application/octet-stream",
                        "Inference-Header-Content-Length": str(len(head))}}


def _strings(values):
    return b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in values)


def test_v2_binary_tensors(client, models):
    _, paths = models
    rows = [{"color": "red", "size": None, "zip": 20.0, "weight": 1.0},
            {"color": None, "size": 0.5, "zip": None, "weight": -2.0},
            {"color": "mauve", "size": 1.5, "zip": 10.0, "weight": None}]
    size = np.array([np.nan, 0.5, 1.5])
    weight = np.array([1.0, -2.0, np.nan], dtype=np.float32)
    tensors = [("weight", "FP32", [3, 1], weight.tobytes()),
               ("color", "BYTES", [3], _strings(["red", "", "mauve"])),   # "": missing
               ("zip", "BYTES", [3], _strings(["20", "NA", "10.0"])),
               ("size", "FP64", [3], size.tobytes())]
    resp = client.post("/v2/models/colors/infer", **_binary_body(tensors))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    labels, proba = _expected(paths["colors"], rows)
    outputs = {o["name"]: o for o in resp.get_json()["outputs"]}
    assert outputs["predict"]["data"] == labels.tolist()
    assert np.array_equal(np.array(outputs["predict_proba"]["data"]).reshape(-1, 2), proba)
    inf = [*tensors[:3], ("size", "FP64", [3], np.array([0.0, np.inf, 1.0]).tobytes())]
    _error(client.post("/v2/models/colors/infer", **_binary_body(inf)), 400, "INVALID_VALUE",
           "'size'", "row 1", "not finite")
    as_bytes = [*tensors[:3], ("size", "BYTES", [3], _strings(["1", "2", "3"]))]
    _error(client.post("/v2/models/colors/infer", **_binary_body(as_bytes)), 400,
           "INVALID_DATATYPE", "'size'", "numeric")


def test_model_without_missing_values_refuses_null(models):
    directory, _ = models
    app = create_app(Settings(models_dir=str(directory), warmup=False))
    app.extensions["mpiml"].get("colors").accepts_missing = False
    local = app.test_client()
    row = {"color": "red", "size": None, "zip": 10, "weight": 0}
    _error(_predict(local, "colors", [row]), 400, "INVALID_VALUE", "row 0", "'size'",
           "missing values")
    spec = local.get("/openapi.json").get_json()
    objects = spec["paths"]["/v1/models/colors:predict"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["instances"]["anyOf"][1]
    assert objects["items"]["properties"]["size"]["type"] == ["number"]
    assert objects["items"]["properties"]["color"]["type"] == ["string"]


# -- metadata --------------------------------------------------------------------------

def test_metadata_lists_kinds_and_categories(client):
    features = [{"name": "color", "kind": "categorical", "categories": ["blue", "green", "red"]},
                {"name": "size", "kind": "numeric"},
                {"name": "zip", "kind": "categorical", "categories": [10.0, 20.0, 30.0]},
                {"name": "weight", "kind": "numeric"}]
    info = client.get("/v1/models/colors").get_json()
    assert info["features"] == features and info["feature_names"] == FEATURES
    assert info["accepts_missing"] is True
    v2 = client.get("/v2/models/colors").get_json()
    assert v2["inputs"] == [
        {"name": f["name"], "datatype": "BYTES" if f["name"] == "color" else "FP64", "shape": [-1],
         "parameters": {k: v for k, v in f.items() if k != "name"}} for f in features]
    numeric = client.get("/v2/models/numeric").get_json()["inputs"]
    assert numeric[0] == {"name": "input-0", "datatype": "FP64", "shape": [-1, 3]}
    assert [i["name"] for i in numeric[1:]] == ["a", "b", "c"]
    assert all(i["parameters"] == {"kind": "numeric"} for i in numeric[1:])


# -- all-numeric models ------------------------------------------------------------------

def test_all_numeric_model_unchanged_and_takes_null(client, models):
    _, paths = models
    model = mpiml.load(paths["numeric"])
    X = np.random.default_rng(4).normal(size=(5, 3))
    body = _predict(client, "numeric", X.tolist()).get_json()
    assert body["predictions"] == model.predict(X).tolist()
    resp = client.post("/v2/models/numeric/infer", json={"inputs": [
        {"name": "input-0", "shape": [5, 3], "datatype": "FP64", "data": X.ravel().tolist()}]})
    assert resp.get_json()["outputs"][0]["data"] == model.predict(X).tolist()
    rows = [{"a": 1.0, "b": None, "c": 2.0}]
    got = _predict(client, "numeric", [[1.0, None, 2.0]]).get_json()["predictions"]
    expected = model.predict(pd.DataFrame(rows))
    assert np.array_equal(np.array(got, dtype=float), expected, equal_nan=True)
    _error(_predict(client, "numeric", [[1.0, "x", 2.0]]), 400, "INVALID_VALUE", "row 0", "'b'")


def test_openapi_describes_each_feature(client):
    spec = client.get("/openapi.json").get_json()
    instances = spec["paths"]["/v1/models/colors:predict"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["instances"]["anyOf"]
    lists, objects = instances
    assert [c["type"] for c in lists["items"]["prefixItems"]] == [
        ["string", "null"], ["number", "null"], ["number", "string", "null"], ["number", "null"]]
    props = objects["items"]["properties"]
    assert props["color"]["type"] == ["string", "null"]
    assert props["color"]["examples"] == ["blue", "green", "red"]
    assert objects["items"]["required"] == FEATURES


# -- tritonclient against a live Gunicorn ---------------------------------------------------

@pytest.fixture(scope="module")
def triton(models, tmp_path_factory):
    http = pytest.importorskip("tritonclient.http")
    directory, _ = models
    server = Server(directory, tmp_path_factory.mktemp("log") / "gunicorn.log", workers=1)
    client = triton_client(server)
    yield http, client
    client.close()
    server.stop()


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_input_per_feature(triton, models, binary):
    http, client = triton
    _, paths = models
    rows = _rows(30, seed=9)
    inputs = []
    for f in FEATURES:
        if f == "color":
            data = np.array([r[f] for r in rows], dtype=object)   # None -> "None": missing
            tensor = http.InferInput(f, [len(rows)], "BYTES")
        else:
            data = np.array([np.nan if r[f] is None else r[f] for r in rows], dtype=np.float64)
            tensor = http.InferInput(f, [len(rows)], "FP64")
        tensor.set_data_from_numpy(data, binary_data=binary)
        inputs.append(tensor)
    outputs = [http.InferRequestedOutput(o, binary_data=binary) for o in ("predict", "predict_proba")]
    result = client.infer("colors", inputs, outputs=outputs)
    labels, proba = _expected(paths["colors"], rows)
    assert result.as_numpy("predict").astype(str).tolist() == labels.tolist()
    assert np.array_equal(result.as_numpy("predict_proba"), proba)
    meta = client.get_model_metadata("colors")
    assert meta["inputs"][0]["parameters"]["categories"] == ["blue", "green", "red"]
