"""scripts/demo.sh runs the whole mission and cleans up after itself."""

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(sys.platform != "linux", reason="the demo is a bash script for Linux")
def test_demo_trains_serves_queries_and_stops(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "demo.sh")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "check: relative error" in out
    assert "trained in" in out
    assert "server and library agree: yes" in out
    rows = [line for line in out.splitlines() if line.count("|") == 2 and "POST" not in line]
    assert len(rows) == 5
    assert glob.glob(str(tmp_path / "mpiml-demo.*")) == []  # its directory is gone
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "a process of the demo is still running"
