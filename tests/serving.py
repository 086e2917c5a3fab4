"""A real Gunicorn model server for tests, on a free loopback port, and models with
categorical features to serve."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]


class Server:
    """A Gunicorn master started from ``serve/gunicorn.conf.py`` on a free loopback port."""

    def __init__(self, models_dir, log_path, workers=2, command=None, cwd=REPO, **env):
        """``command``: the program that starts the master (default: Gunicorn from the
        checkout's ``serve/gunicorn.conf.py``); it reads the ``MPIML_*`` environment."""
        self.log_path = Path(log_path)
        environ = dict(os.environ)
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        environ.update({"MPIML_MODELS": str(models_dir), "MPIML_BIND": "127.0.0.1:0",
                        "MPIML_WORKERS": str(workers), "MPIML_TIMEOUT": "120",
                        "MPIML_GRACEFUL_TIMEOUT": "20",
                        **{k: str(v) for k, v in env.items()}})
        self._log = open(self.log_path, "wb")
        command = command or [sys.executable, "-m", "gunicorn", "-c", "serve/gunicorn.conf.py",
                              "serve.wsgi:app"]
        self.proc = subprocess.Popen([str(c) for c in command], cwd=cwd, env=environ,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.url = self._wait_listening()
        self.http = requests.Session()
        self._wait_workers(workers)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def _wait_listening(self, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", self.log())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not start listening:\n{self.log()}")

    def worker_pids(self):
        pids = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    pids.add(int(entry))
        return pids

    def _wait_workers(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.worker_pids()) >= n:
                try:
                    if self.http.get(self.url + "/health", timeout=10).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"workers did not come up:\n{self.log()}")

    def get(self, path, **kw):
        return self.http.get(self.url + path, timeout=30, **kw)

    def post(self, path, **kw):
        return self.http.post(self.url + path, timeout=30, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.http.close()


def triton_client(server):
    """A ``tritonclient.http`` client of ``server`` (a :class:`Server`)."""
    import tritonclient.http as http

    return http.InferenceServerClient(server.url.removeprefix("http://"),
                                      network_timeout=120.0, connection_timeout=60.0)


def categorical_frame(n, seed=0, missing=0.0):
    """A table of a text categorical ``color``, a numeric ``size``, a categorical
    ``zip`` with numeric categories and a numeric ``weight``; ``missing`` of the cells
    (any feature) are missing. Returns (frame, labels)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    color = rng.choice(np.array(["blue", "green", "red"], dtype=object), n)
    size = np.round(rng.normal(size=n), 3)
    zip_code = rng.choice([10.0, 20.0, 30.0], n)
    weight = np.round(rng.normal(size=n) * 10, 2)
    labels = np.where((color == "red") ^ (size > 0) ^ (zip_code == 20.0), "yes", "no")
    columns = {"color": color, "size": size, "zip": zip_code, "weight": weight}
    if missing:
        for name, col in columns.items():
            hole = rng.random(n) < missing
            columns[name] = np.where(hole, None, col).astype(object) if col.dtype == object \
                else np.where(hole, np.nan, col)
    frame = pd.DataFrame({"color": pd.Series(columns["color"], dtype=object),
                          "size": columns["size"],
                          "zip": pd.Categorical(columns["zip"], categories=[10.0, 20.0, 30.0]),
                          "weight": columns["weight"]})
    return frame, labels


def save_categorical_models(directory):
    """Save ``colors.mpiml`` (boosted classifier) and ``colors_reg.mpiml`` (boosted
    regressor) fitted on :func:`categorical_frame`; returns {name: path}."""
    import mpiml
    from mpiml.models.gbdt import GradientBoostingClassifier, GradientBoostingRegressor

    frame, labels = categorical_frame(300, seed=1)
    target = frame["size"].to_numpy() * 2 + (frame["color"] == "red").to_numpy()
    models = {
        "colors": GradientBoostingClassifier(n_estimators=6, max_leaf_nodes=6).fit(frame, labels),
        "colors_reg": GradientBoostingRegressor(n_estimators=6, max_leaf_nodes=6).fit(frame, target),
    }
    paths = {}
    for name, model in models.items():
        paths[name] = Path(directory) / f"{name}.mpiml"
        mpiml.save(model, paths[name])
    return paths
