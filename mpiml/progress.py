"""Progress reports from long fits.

An estimator whose ``fit`` accepts ``progress=None`` calls ``report = as_progress(progress)``
once and then ``report(iteration, loss)`` (plus optional keyword fields, e.g.
``trees=12``) after each iteration, epoch or tree, on every rank. The call is local
and cheap (no communication); :class:`ProgressReporter` prints on rank 0 at most once
per interval. ``apps/train.py`` passes a reporter to every ``fit`` that accepts one.
"""

__all__ = ["ProgressReporter", "as_progress"]

import sys
import time


class ProgressReporter:
    """Prints ``iteration, loss, elapsed`` on rank 0 at most once per ``interval`` seconds.

    Call it on every rank after each iteration: ``report(iteration, loss, **fields)``.
    It never communicates. ``report.done()`` prints the last line if it was skipped.

    Parameters
    ----------
    comm : Communicator or None
        Only rank 0 prints.
    interval : float
        Minimum seconds between two lines.
    stream : file, default sys.stderr
    label : str
        Prefix of each line (e.g. the model name).
    """

    def __init__(self, comm=None, interval=1.0, stream=None, label="fit"):
        self.enabled = comm is None or comm.rank == 0
        self.interval = interval
        self.stream = stream
        self.label = label
        self.start = time.perf_counter()
        self._last = None
        self._pending = None

    def __call__(self, iteration, loss=None, **fields):
        if not self.enabled:
            return
        now = time.perf_counter()
        self._pending = (iteration, loss, fields, now)
        if self._last is None or now - self._last >= self.interval:
            self._emit()

    def _emit(self):
        iteration, loss, fields, now = self._pending
        parts = [f"{self.label}: iter {iteration}"]
        if loss is not None:
            parts.append(f"loss {loss:.6g}")
        parts.extend(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in fields.items())
        parts.append(f"elapsed {now - self.start:.1f}s")
        print("  ".join(parts), file=self.stream or sys.stderr, flush=True)
        self._last = now
        self._pending = None

    def done(self):
        if self.enabled and self._pending is not None:
            self._emit()


def _no_progress(iteration, loss=None, **fields):
    return None


def as_progress(progress):
    """A callable ``report(iteration, loss=None, **fields)``: ``progress`` or a no-op."""
    return _no_progress if progress is None else progress
