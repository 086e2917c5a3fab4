"""The WSGI fast path of plain numeric ``:predict`` requests (serve/fastpath.py).

Each request goes once through the server (fast path first) and once through Flask's
route alone; the answers (status, headers, bytes) must be the same, for the requests the
fast path answers and for those it hands on.
"""

import gzip
import json

import numpy as np
import pytest
from werkzeug.test import Client

import mpiml

pytest.importorskip("prometheus_client")
from serve.app import Settings, create_app  # noqa: E402
from serve.fastpath import FastPredict  # noqa: E402

D = 5


def _fit(kind, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, D))
    if kind == "logistic3":
        from mpiml.models.linear import LogisticRegression
        return LogisticRegression().fit(X, np.digitize(X[:, 0] + X[:, 1], [-0.5, 0.5]))
    if kind == "gbdt":
        from mpiml.models.gbdt import GradientBoostingClassifier
        return GradientBoostingClassifier(n_estimators=15, random_state=0).fit(
            X, np.where(X[:, 2] > 0, "yes", "no"))
    if kind == "forest_reg":
        from mpiml.models.forest import RandomForestRegressor
        return RandomForestRegressor(n_estimators=5, random_state=0).fit(X, X[:, 0] * 2 + X[:, 3])
    from mpiml.models.linear import LinearRegression
    return LinearRegression().fit(X, X @ np.arange(1.0, D + 1))


MODELS = ["logistic3", "gbdt", "forest_reg", "linear"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    for seed, kind in enumerate(MODELS):
        mpiml.save(_fit(kind, seed), directory / f"{kind}.mpiml")
    rng = np.random.default_rng(9)
    import pandas as pd
    frame = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(["a", "b"], 200)})
    from mpiml.models.tree import DecisionTreeClassifier
    mpiml.save(DecisionTreeClassifier(max_depth=3).fit(frame, frame["c"] == "a"),
               directory / "table.mpiml")
    return create_app(Settings(models_dir=str(directory), max_body_bytes=4096, max_rows=20))


def _both(app, path, data, content_type="application/json", headers=None):
    """(through the server, through Flask's route alone) answers of one POST, and whether
    the server handed the request on to Flask."""
    fastpath = app.wsgi_app
    assert isinstance(fastpath, FastPredict)
    inner, handed_on = fastpath.app, []

    def counting(environ, start_response):
        handed_on.append(environ["PATH_INFO"])
        return inner(environ, start_response)
    kwargs = dict(data=data, content_type=content_type, headers=headers or {})
    fastpath.app = counting
    try:
        fast = app.test_client().post(path, **kwargs)
    finally:
        fastpath.app = inner
    plain = Client(inner).post(path, **kwargs)
    return fast, plain, bool(handed_on)


def _same(fast, plain):
    assert fast.status_code == plain.status_code
    assert fast.get_data() == plain.get_data()
    assert dict(fast.headers) == dict(plain.headers)


def _requests_count(app, name, status="200"):
    body = app.test_client().get("/metrics").get_data(as_text=True)
    for line in body.splitlines():
        if (line.startswith("mpiml_http_requests_total{") and 'endpoint="predict_v1"' in line
                and f'model="{name}"' in line and f'status="{status}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n_rows", [1, 7])
def test_plain_rows_get_the_answer_of_the_flask_route_and_of_the_model(app, name, n_rows):
    X = np.round(np.random.default_rng(n_rows).normal(size=(n_rows, D)), 6)
    fast, plain, handed_on = _both(app, f"/v1/models/{name}:predict",
                                   json.dumps({"instances": X.tolist()}))
    assert fast.status_code == 200 and not handed_on
    _same(fast, plain)
    model = app.extensions["mpiml"].get(name).model
    body = fast.get_json()
    assert body["predictions"] == model.predict(X).tolist()
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(body["probabilities"], model.predict_proba(X))
    assert body["model"]["name"] == name


def test_the_fast_path_records_the_route_metrics(app):
    before = _requests_count(app, "linear")
    body = json.dumps({"instances": [[0.5] * D] * 3})
    for _ in range(4):
        assert app.test_client().post("/v1/models/linear:predict", data=body,
                                      content_type="application/json").status_code == 200
    assert _requests_count(app, "linear") == before + 4


BAD = [
    # (why, path, body, content type, headers, status)
    ("booleans", "logistic3", '{"instances": [[true, 1, 2, 3, 4]]}', None, None, 400),
    ("too few columns", "logistic3", '{"instances": [[1, 2]]}', None, None, 400),
    ("NaN", "gbdt", '{"instances": [[NaN, 1, 2, 3, 4]]}', None, None, 400),
    ("another key", "linear", '{"instances": [[1, 2, 3, 4, 5]], "x": 1}', None, None, 200),
    ("object rows", "linear", '{"instances": [{"x0": 1}]}', None, None, 400),
    ("too many rows", "linear", json.dumps({"instances": [[1] * D] * 21}), None, None, 413),
    ("too large", "linear", json.dumps({"instances": [[1.123456789] * D] * 100}), None, None, 413),
    ("not JSON", "linear", "{[", None, None, 400),
    ("empty", "linear", "", None, None, 400),
    ("text/plain", "linear", '{"instances": [[1, 2, 3, 4, 5]]}', "text/plain", None, 415),
    ("json with charset", "linear", '{"instances": [[1, 2, 3, 4, 5]]}',
     "application/json; charset=utf-8", None, 200),
    ("+json", "linear", '{"instances": [[1, 2, 3, 4, 5]]}', "application/vnd.x+json", None, 200),
    ("unknown model", "nope", '{"instances": [[1, 2, 3, 4, 5]]}', None, None, 404),
    ("categorical model", "table", '{"instances": [[0.5, "a"]]}', None, None, 200),
    ("gzip", "linear", None, None, {"Content-Encoding": "gzip"}, None),
]


@pytest.mark.parametrize("why, name, body, content_type, headers, status", BAD,
                         ids=[b[0] for b in BAD])
def test_other_requests_get_the_flask_routes_answer(app, why, name, body, content_type,
                                                     headers, status):
    if body is None:
        body = gzip.compress(b'{"instances": [[1, 2, 3, 4, 5]]}')
    fast, plain, handed_on = _both(app, f"/v1/models/{name}:predict", body,
                                   content_type or "application/json", headers)
    if status is not None:
        assert fast.status_code == status, fast.get_data()
    assert handed_on == (why not in ("json with charset", "+json")), why
    _same(fast, plain)


def test_a_reloaded_model_is_served_at_once(app, tmp_path):
    registry = app.extensions["mpiml"]
    path = registry.get("linear").path
    body = json.dumps({"instances": [[1.0] * D]})
    first = app.test_client().post("/v1/models/linear:predict", data=body,
                                   content_type="application/json").get_json()
    model = _fit("linear", 5)
    model.fit(np.eye(D), np.arange(D, dtype=float) * 10)
    mpiml.save(model, path)
    registry.reload()
    second = app.test_client().post("/v1/models/linear:predict", data=body,
                                    content_type="application/json").get_json()
    assert second["model"]["sha256"] != first["model"]["sha256"]
    assert second["predictions"] == model.predict(np.ones((1, D))).tolist()
