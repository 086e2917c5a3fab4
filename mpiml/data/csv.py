"""CSV files with a header, read in byte ranges: no rank reads or holds the whole file.

The bytes after the header are split into ``size`` equal ranges (the block partition).
A line belongs to the rank whose range holds its first byte, so every rank reads just
its own lines: it moves its start to the next line boundary and reads up to the line
boundary after its end. Line numbers in error messages are global (the header is line
1); they come from an exclusive scan of the per-rank line counts.
"""

__all__ = ["read_csv"]

import csv as _csv
import io
import os

import numpy as np

from ..comm.partition import block_range
from ._common import DataError, Dataset, open_checked, raise_first


def _aligned(f, pos, data_start):
    """First line boundary at or after ``pos`` (``pos`` itself if a line starts there)."""
    if pos <= data_start:
        return data_start
    f.seek(pos - 1)
    f.readline()
    return f.tell()


def _count_lines(chunk):
    return chunk.count(b"\n") + (1 if chunk and not chunk.endswith(b"\n") else 0)


def _cells(text, delimiter, line_no):
    """The fields of one line of text; raises DataError naming the line when the csv
    module cannot split it (a stray carriage return, a NUL byte)."""
    try:
        return next(_csv.reader([text], delimiter=delimiter))
    except _csv.Error as exc:
        raise DataError(f"line {line_no} cannot be read as CSV: {exc}") from None


def _parse_header(line, delimiter):
    text = line.decode("utf-8-sig", errors="replace").strip("\r\n")
    return [c.strip() for c in _cells(text, delimiter, 1)] if text else []


def _header_problem(names, path, target):
    """Why the header ``names`` cannot be used, or None."""
    if not names or names == [""]:
        return f"CSV file {str(path)!r} is empty (no header line)"
    if len(names) < 2:
        return (f"CSV file {str(path)!r} has a single column {names[0]!r}; "
                f"it needs features and a target")
    if target is not None and target not in names:
        return (f"target column {target!r} is not in {str(path)!r}; columns: "
                f"{', '.join(names)}")
    return None


def _fast_parse(chunk, ncols, delimiter):
    """All-numeric chunk through numpy's C parser; None when anything is unusual."""
    if not chunk.strip():
        return np.zeros((0, ncols))
    try:
        data = np.loadtxt(io.BytesIO(chunk), delimiter=delimiter, dtype=np.float64,
                          ndmin=2, quotechar='"', encoding="utf-8", comments=None)
    except (ValueError, UnicodeDecodeError):
        return None
    if data.shape[0] == 0:
        return np.zeros((0, ncols))
    if data.shape[1] != ncols or not np.isfinite(data).all():
        return None
    return data


def _slow_parse(chunk, names, target_idx, first_line, delimiter):
    """Line-by-line parse that names the first bad line and column.

    Returns (X, y_float or None, y_text, error message or None, first non-numeric target
    (line, cell) or None).
    """
    ncols = len(names)
    rows, y_text, y_vals = [], [], []
    bad_target = None
    feature_idx = [j for j in range(ncols) if j != target_idx]
    for i, raw in enumerate(chunk.split(b"\n")):
        line_no = first_line + i
        try:
            text = raw.decode("utf-8").strip("\r")
        except UnicodeDecodeError:
            return None, None, None, f"line {line_no} is not valid UTF-8 text", None
        if not text.strip():
            continue
        try:
            cells = _cells(text, delimiter, line_no)
        except DataError as exc:
            return None, None, None, str(exc), None
        if len(cells) != ncols:
            return None, None, None, (f"line {line_no} has {len(cells)} fields but the header "
                                      f"has {ncols} (ragged rows)"), None
        row = []
        for j in feature_idx:
            cell = cells[j].strip()
            try:
                value = float(cell)
            except ValueError:
                what = "empty cell" if not cell else f"non-numeric value {cell!r}"
                return None, None, None, f"line {line_no}, column {names[j]!r}: {what}", None
            if not np.isfinite(value):
                return None, None, None, (f"line {line_no}, column {names[j]!r}: NaN or "
                                          f"infinity ({cell!r})"), None
            row.append(value)
        rows.append(row)
        cell = cells[target_idx].strip()
        if not cell:
            return None, None, None, f"line {line_no}, column {names[target_idx]!r}: empty cell", None
        y_text.append(cell)
        try:
            value = float(cell)
        except ValueError:
            value = None
            if bad_target is None:
                bad_target = (line_no, cell)
        if value is not None and not np.isfinite(value):
            return None, None, None, (f"line {line_no}, column {names[target_idx]!r}: NaN or "
                                      f"infinity in the target ({cell!r})"), None
        y_vals.append(value)
    X = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(feature_idx))
    y = None if bad_target else np.asarray(y_vals, dtype=np.float64)
    return X, y, np.asarray(y_text, dtype=str), None, bad_target


def read_csv(path, comm, target=None, task=None, delimiter=","):
    """Collective: read this rank's rows of a CSV file with a header line.

    Parameters
    ----------
    path : str
    comm : Communicator
    target : str, optional
        Name of the target column; default the last column.
    task : {"classification", "regression"}, optional
        A regression target must be numeric (else an error names the line). A
        classification target may hold text labels.
    delimiter : str

    Returns
    -------
    Dataset
        ``X`` float64; ``y`` float64 when every target cell on every rank is a number
        (int64 for classification when they are all whole numbers), else str.

    Raises
    ------
    DataError
        On every rank: missing file, empty file, unknown target, ragged rows,
        non-numeric cells, NaN or infinity (message names the line and column).
    """
    f = open_checked(path, comm)
    with f:
        size = os.fstat(f.fileno()).st_size
        header = f.readline()
        data_start = f.tell()
        try:
            names = _parse_header(header, delimiter)
            message = _header_problem(names, path, target)
        except DataError as exc:
            message = f"CSV file {str(path)!r}: {exc}"
        raise_first(comm, message)
        target_idx = len(names) - 1 if target is None else names.index(target)
        lo, hi = block_range(size - data_start, comm.size, comm.rank)
        start = _aligned(f, data_start + lo, data_start)
        stop = _aligned(f, data_start + hi, data_start)
        f.seek(start)
        chunk = f.read(max(stop - start, 0))
    counts = comm.allgather(_count_lines(chunk))
    first_line = 2 + sum(counts[:comm.rank])

    data = _fast_parse(chunk, len(names), delimiter) if chunk else np.zeros((0, len(names)))
    if data is not None:
        X = np.ascontiguousarray(np.delete(data, target_idx, axis=1))
        y = data[:, target_idx].copy()
        y_text, message, bad_target = None, None, None
    else:
        X, y, y_text, message, bad_target = _slow_parse(chunk, names, target_idx, first_line,
                                                        delimiter)
    raise_first(comm, message)
    bad_targets = [b for b in comm.allgather(bad_target) if b is not None]
    tname = names[target_idx]
    if bad_targets and task == "regression":
        line, cell = bad_targets[0]
        raise_first(comm, f"the regression target {tname!r} is not numeric "
                          f"(line {line}: {cell!r})")
    if bad_targets:
        if y_text is None:  # this rank parsed numbers; the labels are text elsewhere
            _, _, y_text, _, _ = _slow_parse(chunk, names, target_idx, first_line, delimiter)
        y = y_text
    elif task == "classification":
        whole = bool(np.all(y == np.round(y))) if y.size else True
        if all(comm.allgather(whole)):
            y = y.astype(np.int64)
    n_rows = comm.allgather(X.shape[0])
    return Dataset(X=X, y=y, feature_names=[n for j, n in enumerate(names) if j != target_idx],
                   target=tname, n_rows=sum(n_rows), offset=sum(n_rows[:comm.rank]),
                   source=str(path))
