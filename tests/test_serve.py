"""The model server, end to end: a real Gunicorn on a loopback port, spoken to over HTTP.

One server (2 workers) is started for the module; the hot-reload test runs last
because it replaces a model file. Predictions are compared with
``mpiml.load(path).predict`` for exact equality.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import mpiml
from mpiml.io import file_sha256

requests = pytest.importorskip("requests")
pytest.importorskip("gunicorn")
pytest.importorskip("prometheus_client")
from serving import Server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UNDER_MPI = any(v in os.environ for v in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"))
pytestmark = pytest.mark.skipif(UNDER_MPI, reason="the server tests run once, outside mpiexec")

MAX_ROWS = 500
MAX_BODY = 300_000
FEATURES = ["age", "income", "score", "height"]


# -- model files ------------------------------------------------------------------------

def _data(seed, n=120, d=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, rng


def train_logistic(seed=0):
    from mpiml.models.linear import LogisticRegression

    X, rng = _data(seed)
    y = np.where(X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=len(X)) > 0, "yes", "no").astype("<U5")
    y[X[:, 2] > 1.2] = "maybe"
    return LogisticRegression(max_iter=50).fit(X, y, feature_names=FEATURES)


def train_linear(seed=1):
    from mpiml.models.linear import LinearRegression

    X, rng = _data(seed)
    return LinearRegression().fit(X, X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=len(X)))


def train_gbdt(seed=2):
    gbdt = pytest.importorskip("mpiml.models.gbdt")
    X, _ = _data(seed)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    return gbdt.GradientBoostingClassifier(n_estimators=5, max_depth=3).fit(X, y)


def train_forest(seed=3):
    forest = pytest.importorskip("mpiml.models.forest")
    X, _ = _data(seed)
    y = (X[:, 0] - X[:, 3] > 0).astype(np.int64)
    return forest.RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y)


def train_tree(seed=4):
    tree = pytest.importorskip("mpiml.models.tree")
    X, _ = _data(seed)
    y = np.where(X[:, 1] > 0.3, 2, np.where(X[:, 2] > 0, 1, 0))
    return tree.DecisionTreeClassifier(max_depth=4).fit(X, y)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Directory of model files: name -> path (plus broken.mpiml, which cannot load)."""
    directory = tmp_path_factory.mktemp("models")
    paths = {}
    trainers = [("logistic", train_logistic), ("linear", train_linear), ("gbdt", train_gbdt),
                ("forest", train_forest), ("tree", train_tree)]
    for name, trainer in trainers:
        try:
            model = trainer()
        except pytest.skip.Exception:  # a model type this checkout does not have yet
            continue
        paths[name] = directory / f"{name}.mpiml"
        mpiml.save(model, paths[name])
    (directory / "broken.mpiml").write_bytes(b"this is not a model file")
    return directory, paths


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    directory, _ = models
    srv = Server(directory, tmp_path_factory.mktemp("log") / "gunicorn.log",
                 MPIML_MAX_ROWS=MAX_ROWS, MPIML_MAX_BODY_BYTES=MAX_BODY)
    yield srv
    srv.stop()


def _rows(n, d=4, seed=7):
    return np.random.default_rng(seed).normal(size=(n, d)) * 3


def assert_error(resp, status, code, *words):
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body["error"], str) and body["error_code"] == code, body
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    for word in words:
        assert word in body["error"], body


# -- tests ------------------------------------------------------------------------------

def test_serving_path_never_imports_mpi4py(models):
    directory, _ = models
    env = {**os.environ, "MPIML_MODELS": str(directory)}
    code = "import serve.wsgi, sys; assert 'mpi4py' not in sys.modules, 'mpi4py imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120,
                   capture_output=True)


def test_health_and_ready(server, models):
    _, paths = models
    assert server.get("/health").json()["status"] == "ok"
    ready = server.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["models"]["broken"]["status"] == "failed"
    assert "not an mpiml model file" in body["models"]["broken"]["error"]
    for name in paths:
        assert body["models"][name]["status"] == "ready"
    assert "model broken: failed to load" in server.log()
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/health/ready").json() == {"ready": True}
    assert server.get("/v2").json()["name"] == "mpiml"


def test_model_metadata(server, models):
    _, paths = models
    listed = {m["name"]: m for m in server.get("/v1/models").json()["models"]}
    assert set(listed) == set(paths) | {"broken"}
    assert listed["broken"]["status"] == "failed"
    info = server.get("/v1/models/logistic").json()
    manifest = mpiml.load(paths["logistic"]).model_manifest_
    assert info["sha256"] == file_sha256(paths["logistic"])
    assert info["version"] and info["version"] == listed["logistic"]["version"]
    assert info["model_type"] == "logistic_regression" and info["task"] == "classification"
    assert info["feature_names"] == FEATURES and info["n_features"] == 4
    assert info["classes"] == manifest["classes_"] == ["maybe", "no", "yes"]
    lin = server.get("/v1/models/linear").json()
    assert lin["feature_names"] is None and lin["classes"] is None
    v2 = server.get("/v2/models/logistic").json()
    assert v2["name"] == "logistic" and v2["versions"] == [info["version"]]
    assert v2["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}] + [
        {"name": f, "datatype": "FP64", "shape": [-1], "parameters": {"kind": "numeric"}}
        for f in FEATURES]
    assert info["features"] == [{"name": f, "kind": "numeric"} for f in FEATURES]
    assert [o["name"] for o in v2["outputs"]] == ["predict", "predict_proba"]
    assert v2["outputs"][0]["datatype"] == "BYTES"
    assert server.get("/v2/models/logistic/ready").json() == {"name": "logistic", "ready": True}
    broken = server.get("/v2/models/broken/ready")
    assert broken.status_code == 503 and broken.json()["ready"] is False


@pytest.mark.parametrize("digits", [None, 6])    # 6 digits: the one-pass reader's rows
@pytest.mark.parametrize("n_rows", [1, 7, MAX_ROWS])
def test_v1_predictions_equal_library(server, models, n_rows, digits):
    _, paths = models
    X = _rows(n_rows) if digits is None else np.round(_rows(n_rows), digits)
    for name, path in paths.items():
        model = mpiml.load(path)
        resp = server.post(f"/v1/models/{name}:predict", json={"instances": X.tolist()})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["predictions"] == model.predict(X).tolist(), name
        if hasattr(model, "predict_proba"):
            assert body["probabilities"] == model.predict_proba(X).tolist(), name
        else:
            assert "probabilities" not in body
        assert body["model"] == {"name": name, "version": server.get(f"/v1/models/{name}").json()["version"],
                                 "sha256": file_sha256(path)}


def test_v1_instances_as_objects(server, models):
    _, paths = models
    X = _rows(5)
    objects = [dict(reversed(list(zip(FEATURES, row)))) for row in X.tolist()]
    body = server.post("/v1/models/logistic:predict", json={"instances": objects}).json()
    assert body["predictions"] == mpiml.load(paths["logistic"]).predict(X).tolist()
    integers = server.post("/v1/models/logistic:predict", json={"instances": [[1, 2, 3, 4]]}).json()
    assert integers["predictions"] == mpiml.load(paths["logistic"]).predict(np.array([[1.0, 2, 3, 4]])).tolist()


def test_v2_infer(server, models):
    _, paths = models
    X = _rows(6)
    model = mpiml.load(paths["logistic"])
    flat = {"id": "req-42", "inputs": [{"name": "x", "shape": [6, 4], "datatype": "FP64",
                                        "data": X.ravel().tolist()}]}
    body = server.post("/v2/models/logistic/infer", json=flat).json()
    assert body["id"] == "req-42" and body["model_name"] == "logistic"
    out = {o["name"]: o for o in body["outputs"]}
    assert out["predict"] == {"name": "predict", "shape": [6], "datatype": "BYTES",
                              "data": model.predict(X).tolist()}
    assert out["predict_proba"]["shape"] == [6, 3] and out["predict_proba"]["datatype"] == "FP64"
    assert out["predict_proba"]["data"] == model.predict_proba(X).ravel().tolist()
    nested = {"inputs": [{"name": "x", "shape": [6, 4], "datatype": "FP64", "data": X.tolist()}],
              "outputs": [{"name": "predict"}]}
    body = server.post("/v2/models/logistic/infer", json=nested).json()
    assert [o["name"] for o in body["outputs"]] == ["predict"] and body["id"]
    assert body["outputs"][0]["data"] == model.predict(X).tolist()
    per_feature = {"inputs": [{"name": f, "shape": [6], "datatype": "FP64", "data": X[:, j].tolist()}
                              for j, f in reversed(list(enumerate(FEATURES)))]}
    body = server.post("/v2/models/logistic/infer", json=per_feature).json()
    assert body["outputs"][0]["data"] == model.predict(X).tolist()
    fp32 = {"inputs": [{"name": "x", "shape": [6, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    body = server.post("/v2/models/linear/infer", json=fp32).json()
    linear = mpiml.load(paths["linear"])
    assert body["outputs"][0]["data"] == linear.predict(X.astype(np.float32)).tolist()
    assert body["outputs"][0]["datatype"] == "FP64"
    ints = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32", "data": [1, -2, 3, 4]}]}
    body = server.post("/v2/models/linear/infer", json=ints).json()
    assert body["outputs"][0]["data"] == linear.predict(np.array([[1, -2, 3, 4]], dtype=np.int32)).tolist()


ROW_OK = [0.5, 1.0, -1.0, 2.0]


def test_v2_infer_content_types_and_binary_data(server, models):
    """JSON with no Content-Type, JSON as octet-stream with its length header, binary
    inputs of several datatypes, binary outputs: the library's answers."""
    _, paths = models
    X = _rows(5)
    model = mpiml.load(paths["logistic"])
    body = {"inputs": [{"name": "x", "shape": [5, 4], "datatype": "FP64", "data": X.ravel().tolist()}],
            "outputs": [{"name": "predict"}]}
    raw = json.dumps(body).encode()
    bare = server.http.post(server.url + INFER, data=raw, timeout=30)  # requests sends no Content-Type
    assert "Content-Type" not in bare.request.headers
    assert bare.status_code == 200, bare.text
    assert bare.json()["outputs"][0]["data"] == model.predict(X).tolist()
    as_octets = server.post(INFER, **_binary_request(body))
    assert as_octets.json()["outputs"][0]["data"] == model.predict(X).tolist()
    v1 = server.http.post(server.url + "/v1/models/logistic:predict",
                          data=json.dumps({"instances": X.tolist()}), timeout=30)
    assert_error(v1, 415, "UNSUPPORTED_MEDIA_TYPE", "application/json")
    for datatype, dtype in [("FP64", "<f8"), ("FP32", "<f4"), ("FP16", "<f2"), ("INT32", "<i4"),
                            ("UINT8", "u1"), ("INT64", "<i8")]:
        Xt = (np.abs(X) * 10).astype(dtype) if datatype.startswith(("INT", "UINT")) else X.astype(dtype)
        header = {"id": datatype, "inputs": [{"name": "x", "shape": [5, 4], "datatype": datatype,
                                               "parameters": {"binary_data_size": Xt.nbytes}}],
                  "outputs": [{"name": "predict", "parameters": {"binary_data": True}},
                              {"name": "predict_proba"}]}
        resp = server.post(INFER, **_binary_request(header, Xt.tobytes(), content_type=None))
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"] == "application/octet-stream"
        length = int(resp.headers["Inference-Header-Content-Length"])
        head = json.loads(resp.content[:length])
        assert head["id"] == datatype
        predict, proba = head["outputs"]
        assert predict["datatype"] == "BYTES" and "data" not in predict
        assert predict["parameters"]["binary_data_size"] == len(resp.content) - length
        labels, i = [], length
        while i < len(resp.content):
            n = int.from_bytes(resp.content[i:i + 4], "little")
            labels.append(resp.content[i + 4:i + 4 + n].decode())
            i += 4 + n
        assert labels == model.predict(Xt.astype(np.float64)).tolist()
        assert proba["data"] == model.predict_proba(Xt.astype(np.float64)).ravel().tolist()
    header = {"parameters": {"binary_data_output": True},
              "inputs": [{"name": f, "shape": [5], "datatype": "FP64", "parameters": {"binary_data_size": 40}}
                         for f in FEATURES]}
    resp = server.post("/v2/models/linear/infer", **_binary_request(header, X.T.copy().tobytes()))
    assert_error(resp, 400, "UNKNOWN_FEATURE", "feature names")
    resp = server.post(INFER, **_binary_request(header, X.T.copy().tobytes()))
    length = int(resp.headers["Inference-Header-Content-Length"])
    outputs = json.loads(resp.content[:length])["outputs"]
    assert [o["parameters"]["binary_data_size"] for o in outputs][1] == 5 * 3 * 8
    proba = np.frombuffer(resp.content[-5 * 3 * 8:], "<f8").reshape(5, 3)
    assert np.array_equal(proba, model.predict_proba(X))
    assert server.get("/v2").json()["extensions"] == ["binary_tensor_data"]
ERROR_CASES = [
    # (method, path, request kwargs, status, error_code, words in the message)
    ("post", "/v1/models/logistic:predict", {"data": "{\"instances\": [[1, 2", "headers": {"Content-Type": "application/json"}},
     400, "MALFORMED_JSON", ["not valid JSON"]),
    ("post", "/v1/models/logistic:predict", {"data": "", "headers": {"Content-Type": "application/json"}},
     400, "MALFORMED_JSON", ["empty"]),
    ("post", "/v1/models/logistic:predict", {"json": [ROW_OK]}, 400, "MALFORMED_JSON", ["JSON object"]),
    ("post", "/v1/models/logistic:predict", {"json": {"rows": [ROW_OK]}}, 400, "MISSING_FIELD", ["instances"]),
    ("post", "/v1/models/logistic:predict", {"json": {"instances": []}}, 400, "INVALID_SHAPE", ["empty"]),
    ("post", "/v1/models/logistic:predict", {"json": {"instances": [ROW_OK, [1, 2, 3]]}},
     400, "WRONG_FEATURE_COUNT", ["instances[1]", "3 values", "4 features"]),
    ("post", "/v1/models/logistic:predict", {"json": {"instances": [{"age": 1, "income": 2, "score": 3, "weight": 4}]}},
     400, "UNKNOWN_FEATURE", ["weight", "height"]),
    ("post", "/v1/models/linear:predict", {"json": {"instances": [{"a": 1}]}},
     400, "UNKNOWN_FEATURE", ["without feature names"]),
    ("post", "/v1/models/logistic:predict", {"json": {"instances": [ROW_OK, [1, "x", 3, 4]]}},
     400, "INVALID_VALUE", ["row 1", "column 1", "income", "not a number"]),
    ("post", "/v1/models/logistic:predict", {"json": {"instances": [ROW_OK, ROW_OK, [1, 2, {}, 4]]}},
     400, "INVALID_VALUE", ["row 2", "column 2", "not a number"]),
    ("post", "/v1/models/logistic:predict", {"json": {"instances": [[True, 2, 3, 4]]}},
     400, "INVALID_VALUE", ["row 0", "column 0", "not a number"]),
    ("post", "/v1/models/logistic:predict",
     {"data": '{"instances": [[1, 2, 3, 4], [1, NaN, 3, 4]]}', "headers": {"Content-Type": "application/json"}},
     400, "INVALID_VALUE", ["row 1", "column 1", "not finite"]),
    ("post", "/v1/models/linear:predict",
     {"data": '{"instances": [[1, 2, 3, -Infinity]]}', "headers": {"Content-Type": "application/json"}},
     400, "INVALID_VALUE", ["row 0", "column 3", "not finite"]),
    ("post", "/v1/models/linear:predict",
     {"data": '{"instances": [[1, 2, 1e999, 4]]}', "headers": {"Content-Type": "application/json"}},
     400, "INVALID_VALUE", ["row 0", "column 2", "not finite"]),
    ("post", "/v1/models/logistic:predict", {"data": "instances=1", "headers": {"Content-Type": "text/plain"}},
     415, "UNSUPPORTED_MEDIA_TYPE", ["application/json"]),
    ("post", "/v1/models/logistic:predict", {"data": {"instances": "1"}}, 415, "UNSUPPORTED_MEDIA_TYPE", []),
    ("post", "/v1/models/nosuch:predict", {"json": {"instances": [ROW_OK]}}, 404, "MODEL_NOT_FOUND", ["nosuch"]),
    ("get", "/v1/models/nosuch", {}, 404, "MODEL_NOT_FOUND", ["nosuch"]),
    ("get", "/v2/models/nosuch", {}, 404, "MODEL_NOT_FOUND", ["nosuch"]),
    ("post", "/v2/models/nosuch/infer", {"json": {"inputs": []}}, 404, "MODEL_NOT_FOUND", []),
    ("get", "/no/such/route", {}, 404, "NOT_FOUND", ["/no/such/route"]),
    ("get", "/v1/models/logistic:predict", {}, 405, "METHOD_NOT_ALLOWED", ["POST"]),
    ("delete", "/v1/models/logistic", {}, 405, "METHOD_NOT_ALLOWED", []),
    ("get", "/v2/models/logistic/infer", {}, 405, "METHOD_NOT_ALLOWED", []),
    ("post", "/health", {"json": {}}, 405, "METHOD_NOT_ALLOWED", []),
    ("post", "/v1/models/logistic:predict", {"json": {"instances": [ROW_OK] * (MAX_ROWS + 1)}},
     413, "TOO_MANY_ROWS", [str(MAX_ROWS + 1), "MPIML_MAX_ROWS"]),
    ("post", "/v1/models/logistic:predict",
     {"data": json.dumps({"instances": [[0.123456789] * 4] * 8000}), "headers": {"Content-Type": "application/json"}},
     413, "PAYLOAD_TOO_LARGE", [str(MAX_BODY), "MPIML_MAX_BODY_BYTES"]),
    ("post", "/v1/models/broken:predict", {"json": {"instances": [ROW_OK]}}, 503, "MODEL_NOT_READY", ["broken"]),
    ("get", "/v1/models/broken", {}, 503, "MODEL_NOT_READY", ["not an mpiml model file"]),
    ("post", "/v2/models/broken/infer", {"json": {"inputs": []}}, 503, "MODEL_NOT_READY", []),
    # Open Inference Protocol v2 requests
    ("post", "/v2/models/logistic/infer", {"json": {"input": []}}, 400, "MISSING_FIELD", ["inputs"]),
    ("post", "/v2/models/logistic/infer", {"json": {"inputs": [{"name": "x", "shape": [1, 4], "data": ROW_OK}]}},
     400, "MISSING_FIELD", ["datatype"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a"] * 4}]}},
     400, "INVALID_DATATYPE", ["BYTES"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROW_OK}]}},
     400, "INVALID_SHAPE", ["needs 8 values", "has 4"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": ROW_OK[:3]}]}},
     400, "WRONG_FEATURE_COUNT", ["3 columns", "4 features"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROW_OK + [1, 2, "z", 4]}]}},
     400, "INVALID_VALUE", ["row 1", "column 2", "not a number"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3.5, 4]}]}},
     400, "INVALID_VALUE", ["row 0", "column 2", "not an integer"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT8", "data": [1, 2, 300, 4]}]}},
     400, "INVALID_VALUE", ["does not fit INT8"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 1e300, 4]}]}},
     400, "INVALID_VALUE", ["row 0", "column 2", "FP32"]),
    ("post", "/v2/models/logistic/infer",
     {"data": '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, NaN]}]}',
      "headers": {"Content-Type": "application/json"}},
     400, "INVALID_VALUE", ["row 0", "column 3", "not finite"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [1.0]} for f in FEATURES[:3] + ["zz"]]}},
     400, "UNKNOWN_FEATURE", ["zz", "height"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW_OK}],
               "outputs": [{"name": "explain"}]}},
     400, "UNKNOWN_OUTPUT", ["explain"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"id": 7, "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW_OK}]}},
     400, "INVALID_FIELD", ["id"]),
    ("post", "/v2/models/logistic/infer",
     {"json": {"inputs": [{"name": "x", "shape": [MAX_ROWS + 1, 4], "datatype": "FP64",
                           "data": [0] * (4 * MAX_ROWS + 4)}]}},
     413, "TOO_MANY_ROWS", ["MPIML_MAX_ROWS"]),
]


def _binary_request(header, payload=b"", content_type="application/octet-stream", length=None):
    """Request kwargs of a v2 body in the binary tensor data extension."""
    head = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(head) if length is None else length)}
    if content_type:
        headers["Content-Type"] = content_type
    return {"data": head + payload, "headers": headers}


def _binary_input(size, datatype="FP64", shape=(1, 4), name="x"):
    return {"inputs": [{"name": name, "shape": list(shape), "datatype": datatype,
                        "parameters": {"binary_data_size": size}}]}


ROW_BYTES = np.array(ROW_OK).tobytes()
INFER = "/v2/models/logistic/infer"
ERROR_CASES += [
    ("post", INFER, _binary_request(_binary_input(24), ROW_BYTES[:24]),
     400, "INVALID_BINARY_DATA", ["binary_data_size is 24", "32"]),
    ("post", INFER, _binary_request(_binary_input(32), ROW_BYTES[:20]),
     400, "INVALID_BINARY_DATA", ["only 20 bytes"]),
    ("post", INFER, _binary_request(_binary_input(32), ROW_BYTES + b"\0" * 8),
     400, "INVALID_BINARY_DATA", ["8 bytes", "no input"]),
    ("post", INFER, _binary_request(_binary_input(4, "BOOL"), bytes([1, 0, 2, 1])),
     400, "INVALID_VALUE", ["element 2", "BOOL"]),
    ("post", INFER, _binary_request(_binary_input(32), np.array([1, 2, np.nan, 4]).tobytes()),
     400, "INVALID_VALUE", ["row 0", "column 2", "not finite"]),
    ("post", INFER, _binary_request(_binary_input(6, "BYTES"), b"\x05\0\0\0ab"),
     400, "INVALID_BINARY_DATA", ["element 0", "5 bytes"]),
    ("post", INFER, _binary_request(_binary_input(20, "BYTES"),
                                    b"".join(b"\x01\0\0\0" + bytes([c]) for c in b"abcd")),
     400, "INVALID_DATATYPE", ["BYTES", "categorical"]),
    ("post", INFER, _binary_request(_binary_input(-1)), 400, "INVALID_BINARY_DATA", ["non-negative"]),
    ("post", INFER, {"json": _binary_input(32)}, 400, "INVALID_BINARY_DATA",
     ["Inference-Header-Content-Length"]),
    ("post", INFER, _binary_request({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                                 "data": ROW_OK, "parameters": {"binary_data_size": 32}}]},
                                    ROW_BYTES),
     400, "INVALID_TENSOR", ["both"]),
    ("post", INFER, _binary_request(_binary_input(32), ROW_BYTES, length=10 ** 6),
     400, "INVALID_HEADER", ["only"]),
    ("post", INFER, _binary_request(_binary_input(32), ROW_BYTES, length="12a"),
     400, "INVALID_HEADER", ["non-negative integer"]),
    ("post", INFER, _binary_request(_binary_input(32), ROW_BYTES, length=5),
     400, "MALFORMED_JSON", ["not valid JSON"]),
    ("post", INFER, {"data": json.dumps(_binary_input(32)).encode() + ROW_BYTES,
                     "headers": {"Content-Type": "application/octet-stream"}},
     400, "INVALID_HEADER", ["Inference-Header-Content-Length"]),
    ("post", INFER, {"data": "inputs", "headers": {"Content-Type": "text/plain"}},
     415, "UNSUPPORTED_MEDIA_TYPE", ["application/octet-stream"]),
    ("post", INFER, {"data": b"x", "headers": {"Content-Type": "application/json",
                                                "Content-Encoding": "br"}},
     415, "UNSUPPORTED_MEDIA_TYPE", ["br"]),
    ("post", INFER, {"data": b"not gzip", "headers": {"Content-Encoding": "gzip"}},
     400, "MALFORMED_BODY", ["gzip"]),
    ("post", INFER, {"json": {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
                                          "data": [[1, 2], [3, 4], [5, 6], [7, 8]]}]}},
     400, "INVALID_SHAPE", ["2 rows of 4"]),
    ("post", INFER, {"json": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                          "data": ROW_OK, "parameters": 3}]}},
     400, "INVALID_TENSOR", ["parameters"]),
    ("post", INFER, {"json": {"parameters": {"binary_data_output": "yes"},
                              "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW_OK}]}},
     400, "INVALID_FIELD", ["binary_data_output"]),
    ("post", INFER, {"json": {"outputs": [{"name": "predict", "parameters": {"binary_data": 1}}],
                              "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW_OK}]}},
     400, "INVALID_FIELD", ["binary_data"]),
    ("post", "/v1/models/logistic:predict", {"json": {"instances": [[1, 2, 3, 10 ** 400]]}},
     400, "INVALID_VALUE", ["column 3", "float64 range"]),
    ("post", INFER, {"json": {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP64", "data": []}]}},
     400, "INVALID_SHAPE", ["positive"]),
]


@pytest.mark.parametrize("method, path, kwargs, status, code, words", ERROR_CASES,
                         ids=[f"{c[3]}-{c[4]}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_errors(server, method, path, kwargs, status, code, words):
    resp = getattr(server.http, method)(server.url + path, timeout=30, **kwargs)
    assert_error(resp, status, code, *words)


def test_bad_requests_never_take_a_worker_down(server):
    before = server.worker_pids()
    nasty = ["[" * 100_000, '{"instances": ' + "[" * 50_000 + "]" * 50_000 + "}",
             '{"instances": [[' + "9" * 5000 + ", 1, 2, 3]]}", "\xff\xfe garbage", '{"instances": 5}',
             '{"instances": [[1, 2, 3, 4], 5]}', '{"instances": [[[1], 2, 3, 4]]}']
    for _ in range(3):
        for body in nasty:
            resp = server.post("/v1/models/logistic:predict", data=body.encode("utf-8", "surrogateescape"),
                               headers={"Content-Type": "application/json"})
            assert resp.status_code in (400, 413), (body[:40], resp.text)
            assert set(resp.json()) == {"error", "error_code"}
    assert server.worker_pids() == before
    assert server.get("/health").status_code == 200


def test_several_workers_answer(server):
    def pid(_):
        return server.http.get(server.url + "/health", timeout=30).json()["pid"]

    seen = set()
    deadline = time.monotonic() + 30
    with ThreadPoolExecutor(6) as pool:
        while len(seen) < 2 and time.monotonic() < deadline:
            seen |= set(pool.map(pid, range(24)))
    assert len(seen) >= 2 and seen <= server.worker_pids()


def _sample(text, name, **labels):
    pattern = re.escape(name) + r"\{([^}]*)\} ([0-9.e+]+)"
    total = 0.0
    for match in re.finditer(pattern, text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_metrics_sum_over_workers(server):
    before = server.get("/metrics").text
    n = 30
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: requests.post(server.url + "/v1/models/linear:predict",
                                              json={"instances": [ROW_OK, ROW_OK]}, timeout=30), range(n)))
        bad = list(pool.map(lambda _: requests.post(server.url + "/v1/models/linear:predict",
                                                    json={"instances": [[1]]}, timeout=30), range(5)))
    assert all(r.status_code == 400 for r in bad)
    for _ in range(4):  # whichever worker answers, the totals are the same
        resp = server.get("/metrics")
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
        after = resp.text
        labels = {"endpoint": "predict_v1", "model": "linear"}
        ok = {**labels, "status": "200"}
        assert _sample(after, "mpiml_http_requests_total", **ok) - _sample(before, "mpiml_http_requests_total", **ok) == n
        assert (_sample(after, "mpiml_http_request_duration_seconds_count", **ok)
                - _sample(before, "mpiml_http_request_duration_seconds_count", **ok)) == n
        bad400 = {**labels, "status": "400"}
        assert (_sample(after, "mpiml_http_requests_total", **bad400)
                - _sample(before, "mpiml_http_requests_total", **bad400)) == 5
        assert (_sample(after, "mpiml_predicted_rows_total", model="linear")
                - _sample(before, "mpiml_predicted_rows_total", model="linear")) == 2 * n
    assert "# TYPE mpiml_http_request_duration_seconds histogram" in after


def test_openapi(server, models):
    _, paths = models
    spec = server.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    per_model = {p for name in paths for p in (f"/v1/models/{name}:predict", f"/v2/models/{name}/infer")}
    assert set(spec["paths"]) == per_model | {
        "/health", "/ready", "/v1/models", "/v1/models/{name}", "/v2", "/v2/health/live",
        "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready", "/metrics", "/openapi.json"}
    predict = spec["paths"]["/v1/models/logistic:predict"]["post"]
    assert set(predict["responses"]) == {"200", "400", "404", "405", "413", "415", "503"}
    rows = predict["requestBody"]["content"]["application/json"]["schema"]["properties"]["instances"]["anyOf"]
    assert rows[0]["items"]["minItems"] == rows[0]["items"]["maxItems"] == 4
    assert rows[1]["items"]["required"] == FEATURES and rows[1]["items"]["additionalProperties"] is False
    answer = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["predictions"]["items"] == {"enum": ["maybe", "no", "yes"]}
    infer = spec["paths"]["/v2/models/linear/infer"]["post"]
    assert set(infer["responses"]["200"]["content"]) == {"application/json", "application/octet-stream"}


def test_no_model_ready_is_503(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "junk.mpiml").write_bytes(b"\x89MPIML\r\n truncated")
    srv = Server(tmp_path / "models", tmp_path / "gunicorn.log", workers=1,
                 MPIML_MAX_ROWS=MAX_ROWS, MPIML_MAX_BODY_BYTES=MAX_BODY)
    try:
        ready = srv.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["error_code"] == "NOT_READY"
        assert ready.json()["models"]["junk"]["status"] == "failed"
        assert_error(srv.get("/v2/health/ready"), 503, "NOT_READY")
        assert_error(srv.post("/v1/models/junk:predict", json={"instances": [ROW_OK]}), 503, "MODEL_NOT_READY")
        assert srv.get("/health").status_code == 200
    finally:
        srv.stop()


def test_reload_under_load_loses_no_request(server, models):
    """Replace a model file, SIGHUP the master: the new version is served, no request fails."""
    directory, paths = models
    X = _rows(3, seed=11)
    payload = {"instances": X.tolist()}
    old_pred = mpiml.load(paths["logistic"]).predict_proba(X).tolist()
    new_model = train_logistic(seed=5)
    new_pred = new_model.predict_proba(X).tolist()
    assert new_pred != old_pred
    old_sha = file_sha256(paths["logistic"])

    stop = threading.Event()
    results, failures = [], []

    def client():
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    resp = http.post(server.url + "/v1/models/logistic:predict", json=payload, timeout=60)
                    if resp.status_code != 200:
                        failures.append(f"{resp.status_code} {resp.text[:200]}")
                    else:
                        body = resp.json()
                        results.append((body["model"]["sha256"], body["probabilities"]))
                except requests.RequestException as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        staging = directory / ".staging"
        staging.mkdir()
        new_sha = mpiml.save(new_model, staging / "logistic.mpiml")
        os.replace(staging / "logistic.mpiml", paths["logistic"])  # the atomic swap
        shutil.copy(paths["linear"], directory / "added.mpiml")
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        streak = 0
        while streak < 10 and time.monotonic() < deadline:
            sha = server.get("/v1/models/logistic").json()["sha256"]
            streak = streak + 1 if sha == new_sha else 0
            time.sleep(0.05)
        assert streak == 10, server.log()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:5]
    shas = {sha for sha, _ in results}
    assert shas == {old_sha, new_sha}, shas
    for sha, proba in results:
        assert proba == (new_pred if sha == new_sha else old_pred)
    assert results[-1][0] == new_sha
    assert server.get("/v1/models/added").json()["status"] == "ready"
    assert server.get("/v1/models/logistic").json()["version"] != ""
    assert server.get("/ready").json()["models"]["broken"]["status"] == "failed"


@pytest.mark.parametrize("use_orjson", [True, False])
def test_json_codec_is_exact_with_and_without_orjson(monkeypatch, use_orjson):
    from serve import jsonio

    if use_orjson and jsonio.orjson is None:
        pytest.skip("orjson is not installed")
    if not use_orjson:
        monkeypatch.setattr(jsonio, "orjson", None)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 3)) * 10.0 ** rng.integers(-300, 300, size=(50, 3))
    small = (rng.normal(size=20) * 10.0 ** rng.integers(-30, 30, size=20)).astype(np.float32)
    for arr in (values, small, np.arange(5), np.array(["a", "b"]), np.array([True, False])):
        text = jsonio.dumps({"x": jsonio.as_json_array(arr)})
        back = json.loads(text)["x"]
        assert np.array_equal(np.array(back, dtype=arr.dtype), arr)
        assert back == arr.astype(np.float64).tolist() if arr.dtype.kind == "f" else back == arr.tolist()
    assert jsonio.loads(b'{"a": [1, NaN, -Infinity, 1e999]}')["a"][0] == 1
    assert np.isnan(jsonio.loads(b"[NaN]")[0])
    with pytest.raises(ValueError):
        jsonio.loads(b"[1, 2")


def test_unexpected_error_is_json_500_without_traceback(models, monkeypatch):
    from serve.app import Settings, create_app

    directory, _ = models
    app = create_app(Settings(models_dir=str(directory), warmup=False))
    entry = app.extensions["mpiml"].get("linear")

    def explode(X):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(entry.model, "predict", explode)
    resp = app.test_client().post("/v1/models/linear:predict", json={"instances": [ROW_OK]})
    assert resp.status_code == 500
    assert resp.get_json() == {"error": "internal server error", "error_code": "INTERNAL_ERROR"}
    assert b"secret" not in resp.data and b"Traceback" not in resp.data
