"""schemathesis against a live Gunicorn server: every request that ``/openapi.json``
allows is answered 2xx, every other one 4xx, and every answer (status, content type,
headers, body) is one that the document lists; with all-numeric models and a model with
categorical features."""

import os
import subprocess
import sys

import numpy as np
import pytest

import mpiml

pytest.importorskip("schemathesis")
pytest.importorskip("gunicorn")
from serving import Server, categorical_frame  # noqa: E402

UNDER_MPI = any(v in os.environ for v in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"))
pytestmark = pytest.mark.skipif(UNDER_MPI, reason="the server tests run once, outside mpiexec")

EXAMPLES = 200
SEED = 15


def _models(directory):
    from mpiml.models.gbdt import GradientBoostingClassifier
    from mpiml.models.linear import LinearRegression, LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    names = ["age", "income", "score"]
    mpiml.save(LogisticRegression(max_iter=20).fit(X, np.where(X[:, 0] > 0, "yes", "no"),
                                                   feature_names=names), directory / "churn.mpiml")
    mpiml.save(GradientBoostingClassifier(n_estimators=4, max_leaf_nodes=5).fit(
        X, (X[:, 1] > 0).astype(np.int64)), directory / "boost.mpiml")
    mpiml.save(LinearRegression().fit(X, X @ [1.0, 2.0, -1.0]), directory / "price.mpiml")
    frame, labels = categorical_frame(200, seed=2)
    mpiml.save(GradientBoostingClassifier(n_estimators=4, max_leaf_nodes=5).fit(frame, labels),
               directory / "colors.mpiml")


@pytest.mark.timeout(240)
def test_schemathesis_finds_nothing(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    _models(models)
    server = Server(models, tmp_path / "gunicorn.log", workers=2, MPIML_MAX_ROWS=50)
    try:
        config = tmp_path / "schemathesis.toml"
        config.write_text('[parameters]\nname = "churn"\n')
        st = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]
        proc = subprocess.run(
            st + ["--config-file", str(config), "run", f"{server.url}/openapi.json",
                  "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", str(SEED),
                  "--workers", "1", "--no-color", "--suppress-health-check", "all"],
            capture_output=True, text=True, timeout=220, cwd=tmp_path)
    finally:
        server.stop()
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    assert " passed" in proc.stdout and "failed" not in proc.stdout, report
