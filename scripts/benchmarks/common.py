"""What the areas share: the checkout's paths, rank counts, child processes and their
progress, and the figures they measure."""

import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["ROOT", "SCRIPTS", "PEER_MODULES", "INSTALL_HINT", "CHILD_TIMEOUT", "cores",
           "default_ranks", "missing_modules", "child_env", "mpiexec_path", "last_json",
           "import_script", "AreaSkipped", "ChildFailed", "Progress", "Context", "figure",
           "fit_figures"]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PEER_MODULES = {"lightgbm": "lightgbm", "xgboost": "xgboost", "sklearn": "sklearn",
                "scikit-learn": "sklearn", "matplotlib": "matplotlib"}
INSTALL_HINT = "pip install -e '.[bench]'"
CHILD_TIMEOUT = {"tiny": 300, "quick": 600, "full": 4 * 3600}


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_ranks():
    """1, 2, 4, ... up to the cores (at least 1 and 2): the strong-scaling rank counts."""
    ranks, p = [1], 2
    while p <= max(2, cores()):
        ranks.append(p)
        p *= 2
    if cores() > 2 and ranks[-1] != cores():
        ranks.append(cores())
    return ranks


def missing_modules(names):
    """The subset of ``names`` (peer names or module names) that cannot be imported."""
    return [n for n in names if importlib.util.find_spec(PEER_MODULES.get(n, n)) is None]


def child_env(**extra):
    """Environment of a child: the venv first on PATH, idle MPICH ranks yield, unbuffered
    output (progress streams), and no launcher variables (a nested mpiexec is its own job)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def mpiexec_path():
    local = Path(sys.executable).with_name("mpiexec")
    if local.exists():
        return str(local)
    import shutil
    return shutil.which("mpiexec")


def last_json(lines):
    """The last line of ``lines`` that is a JSON object or array, decoded (None if none)."""
    for line in reversed(lines):
        text = line.strip()
        if text[:1] in "{[":
            try:
                return json.loads(text)
            except ValueError:
                continue
    return None


def import_script(name):
    """Import ``scripts/NAME.py`` as a module (the scripts folder is not a package)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return __import__(name)


class AreaSkipped(Exception):
    """An area cannot run here (a library or a script is missing)."""


class ChildFailed(Exception):
    def __init__(self, command, returncode, tail, timed_out=False):
        what = "timed out" if timed_out else f"exited with {returncode}"
        super().__init__(f"{shlex.join(command)} {what}:\n" + "\n".join(tail))
        self.tail = tail


class Progress:
    """Progress lines on a stream: elapsed time, step i of N, the area, and child output."""

    def __init__(self, total, stream=None, verbose=True):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.started = time.monotonic()
        self._step_started = self.started
        self._lock = threading.Lock()

    def elapsed(self):
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    def _print(self, text):
        with self._lock:
            print(f"[{self.elapsed()}] {text}", file=self.stream, flush=True)

    def step(self, area, label):
        self.done += 1
        self._step_started = time.monotonic()
        self._print(f"({self.done}/{self.total}) {area}: {label}")

    def step_seconds(self):
        return time.monotonic() - self._step_started

    def output(self, line):
        text = line.strip()
        # a child's machine-readable JSON line is for the results file, not for the eye
        if self.verbose and text and not (text[:1] in "{[" and text[-1:] in "}]"):
            self._print(f"    {line}")

    def note(self, text):
        self._print(text)


class Context:
    """What an area needs: its parameters, the rank counts, a scratch folder, progress."""

    def __init__(self, size, ranks, scratch, progress, peers=None):
        self.size, self.ranks, self.scratch = size, ranks, Path(scratch)
        self.progress, self.peers = progress, peers
        self.timeout = CHILD_TIMEOUT[size]
        self.area = None
        self.commands = []
        self.skipped = []

    def step(self, label):
        self.progress.step(self.area, label)

    def skip(self, message):
        self.skipped.append(message)
        self.progress.note(f"{self.area}: {message}")

    def run(self, args, **env):
        """Run a child (``python`` stands for this interpreter), stream its output as
        progress, and return its output lines; raise ChildFailed on a non-zero exit."""
        command = [sys.executable if a == "python" else str(a) for a in args]
        for arg in args[1:2]:
            if str(arg).endswith(".py") and not Path(arg).exists():
                raise AreaSkipped(f"{Path(arg).relative_to(ROOT)} is missing in this checkout")
        self.commands.append(shlex.join(command))
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", cwd=ROOT, env=child_env(**env),
                                start_new_session=True)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and any mpiexec ranks it started
            except ProcessLookupError:
                pass

        timer = threading.Timer(self.timeout, kill)
        timer.start()
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                self.progress.output(lines[-1])
            returncode = proc.wait()
        except BaseException:  # Ctrl-C: the child has its own session and would live on
            kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        if returncode != 0 or timed_out.is_set():
            raise ChildFailed(command, returncode, lines[-25:], timed_out.is_set())
        return lines


def figure(name, value, unit, **labels):
    """One measured figure with its unit and what it was measured on."""
    out = {"name": name, "value": None if value is None else float(value), "unit": unit}
    out.update(labels)
    return out


def fit_figures(row, **labels):
    """The fit time, CPU time (when measured) and test AUC of one trained model's row."""
    figures = [figure("fit_time", row["seconds"], "s", **labels)]
    if "cpu_seconds" in row:
        figures.append(figure("fit_cpu_time", row["cpu_seconds"], "s", **labels))
    figures.append(figure("test_auc", row["auc"], "1", **labels))
    return figures


def _select(area, name, **labels):
    return [f for f in (area or {}).get("figures", [])
            if f["name"] == name and f["value"] is not None
            and all(f.get(k) == v for k, v in labels.items())]
