"""The model server through Triton's own client, ``tritonclient.http``: health, metadata,
JSON and binary tensors, the request id, a large binary batch. Every answer is compared
with ``mpiml.load(path)``."""

import os

import numpy as np
import pytest

import mpiml

triton = pytest.importorskip("tritonclient.http")
pytest.importorskip("gunicorn")
from serving import Server, triton_client  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

UNDER_MPI = any(v in os.environ for v in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"))
pytestmark = pytest.mark.skipif(UNDER_MPI, reason="the server tests run once, outside mpiexec")

N_FEATURES = 28


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from mpiml.models.gbdt import GradientBoostingClassifier
    from mpiml.models.linear import LinearRegression, LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, N_FEATURES))
    labels = np.where(X[:, 0] - X[:, 1] > 0, "up", "down")
    models = {
        "logistic": LogisticRegression(max_iter=30).fit(X, labels),
        "gbdt": GradientBoostingClassifier(n_estimators=8, max_leaf_nodes=7).fit(
            X, (X[:, 2] * X[:, 3] > 0).astype(np.int64)),
        "linear": LinearRegression().fit(X, X @ rng.normal(size=N_FEATURES)),
    }
    directory = tmp_path_factory.mktemp("models")
    paths = {}
    for name, model in models.items():
        paths[name] = directory / f"{name}.mpiml"
        mpiml.save(model, paths[name])
    server = Server(directory, tmp_path_factory.mktemp("log") / "gunicorn.log", workers=2)
    client = triton_client(server)
    yield client, paths
    client.close()
    server.stop()


def _input(X, binary, name="input-0", datatype="FP64"):
    tensor = triton.InferInput(name, list(X.shape), datatype)
    tensor.set_data_from_numpy(X, binary_data=binary)
    return tensor


def _rows(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES))


def test_health_and_metadata(served):
    client, paths = served
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("logistic") and not client.is_model_ready("nosuch")
    server = client.get_server_metadata()
    assert server["name"] == "mpiml" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("gbdt")
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, N_FEATURES]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert meta["parameters"]["classes"] == mpiml.load(paths["gbdt"]).classes_.tolist()
    with pytest.raises(InferenceServerException, match="not found"):
        client.get_model_metadata("nosuch")


@pytest.mark.parametrize("binary_in, binary_out", [(False, False), (True, False), (False, True),
                                                   (True, True)])
@pytest.mark.parametrize("name", ["logistic", "gbdt", "linear"])
def test_infer_equals_library(served, name, binary_in, binary_out):
    client, paths = served
    model = mpiml.load(paths[name])
    X = _rows(9, seed=len(name))
    outputs = [triton.InferRequestedOutput("predict", binary_data=binary_out)]
    if hasattr(model, "predict_proba"):
        outputs.append(triton.InferRequestedOutput("predict_proba", binary_data=binary_out))
    result = client.infer(name, [_input(X, binary_in)], outputs=outputs, request_id=f"req-{name}")
    assert result.get_response()["id"] == f"req-{name}"
    predict = result.as_numpy("predict")
    if predict.dtype == object:   # BYTES: class names come back as bytes
        predict = predict.astype(str)
    assert predict.tolist() == model.predict(X).tolist()
    if hasattr(model, "predict_proba"):
        assert np.array_equal(result.as_numpy("predict_proba"), model.predict_proba(X))


def test_binary_datatypes_and_default_outputs(served):
    client, paths = served
    model = mpiml.load(paths["logistic"])
    X = _rows(6, seed=5)
    for datatype, dtype in [("FP32", np.float32), ("FP16", np.float16), ("INT32", np.int32)]:
        Xt = (X * 10).astype(dtype)
        # all outputs, binary
        result = client.infer("logistic", [_input(Xt, True, datatype=datatype)])
        assert np.array_equal(result.as_numpy("predict_proba"), model.predict_proba(Xt.astype(np.float64)))
        predicted = model.predict(Xt.astype(np.float64)).tolist()
        assert result.as_numpy("predict").astype(str).tolist() == predicted


def test_one_input_per_feature_is_refused_without_names(served):
    client, _ = served
    X = _rows(3)
    inputs = [_input(np.ascontiguousarray(X[:, j]), True, name=f"f{j}") for j in range(N_FEATURES)]
    with pytest.raises(InferenceServerException, match="feature names"):
        client.infer("linear", inputs)


def test_wrong_feature_count_is_a_clear_error(served):
    client, _ = served
    with pytest.raises(InferenceServerException, match="expects 28 features"):
        client.infer("gbdt", [_input(_rows(2)[:, :5].copy(), True)])


def test_large_binary_batch(served):
    client, paths = served
    X = _rows(10_000, seed=11)
    for name in ("gbdt", "logistic"):
        model = mpiml.load(paths[name])
        result = client.infer(name, [_input(X, True)],
                              outputs=[triton.InferRequestedOutput("predict_proba", binary_data=True)])
        assert result.as_numpy("predict_proba").shape == (10_000, 2)
        assert np.array_equal(result.as_numpy("predict_proba"), model.predict_proba(X))
