"""The ceiling of the serving stack: a bare Flask app that reads each request and
answers a constant, served by the same Gunicorn settings as the model server::

    gunicorn -c serve/gunicorn.conf.py scripts.ceiling_app:app

It answers the routes that ``scripts/loadtest.py`` calls (the model list and both
predict routes), so the load test runs against it unchanged. ``CEILING_FEATURES`` sets the
number of features it claims (default 20).
"""

import json
import os

from flask import Flask, Response, request

app = Flask(__name__)
_FEATURES = int(os.environ.get("CEILING_FEATURES", "20"))
_MODELS = json.dumps({"models": [{"name": "ceiling", "status": "ready",
                                  "n_features": _FEATURES}]})
_V1 = json.dumps({"predictions": [0]})
_V2 = json.dumps({"model_name": "ceiling", "outputs": [
    {"name": "predict", "datatype": "INT64", "shape": [1], "data": [0]}]})


@app.get("/v1/models")
def models():
    return Response(_MODELS, mimetype="application/json")


@app.post("/v1/models/<name>:predict")
def predict_v1(name):
    request.get_data()
    return Response(_V1, mimetype="application/json")


@app.post("/v2/models/<name>/infer")
def predict_v2(name):
    request.get_data()
    return Response(_V2, mimetype="application/json")
