"""A real Gunicorn model server for tests, on a free loopback port."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


class Server:
    """A Gunicorn master started from ``serve/gunicorn.conf.py`` on a free loopback port."""

    def __init__(self, models_dir, log_path, workers=2, **env):
        self.log_path = Path(log_path)
        environ = dict(os.environ)
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        environ.update({"MPIML_MODELS": str(models_dir), "MPIML_BIND": "127.0.0.1:0",
                        "MPIML_WORKERS": str(workers), "MPIML_TIMEOUT": "120",
                        "MPIML_GRACEFUL_TIMEOUT": "20",
                        **{k: str(v) for k, v in env.items()}})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "serve/gunicorn.conf.py", "serve.wsgi:app"],
            cwd=REPO, env=environ, stdout=self._log, stderr=subprocess.STDOUT)
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
