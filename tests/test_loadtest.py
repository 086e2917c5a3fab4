"""scripts/loadtest.py against a live Gunicorn server: v1, v2 JSON and v2 binary tensors,
no errors, and only loopback targets."""

import json
import subprocess
import sys

import numpy as np
import pytest

import mpiml
from mpiml.models.gbdt import GradientBoostingClassifier
from serving import REPO, Server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    mpiml.save(GradientBoostingClassifier(n_estimators=5).fit(X, X[:, 0] > 0), d / "gb.mpiml")
    srv = Server(d, d / "server.log", workers=1)
    yield srv
    srv.stop()


def _loadtest(*args):
    return subprocess.run([sys.executable, "scripts/loadtest.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("protocol", ["v1", "v2", "v2-binary"])
def test_each_protocol_serves_without_errors(server, protocol):
    out = _loadtest("--url", server.url, "--model", "gb", "--protocol", protocol, "--rows", 200,
                    "--concurrency", 2, "--duration", 1, "--warmup", 0, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"] == 0 and report["requests"] > 0, report
    assert report["protocol"] == protocol and report["rows"] == 200


def test_only_loopback_targets():
    out = _loadtest("--url", "http://192.0.2.1:8000", "--duration", 1)
    assert out.returncode != 0 and "loopback" in (out.stdout + out.stderr)
