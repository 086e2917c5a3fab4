"""CSV files with a header, read in byte ranges: no rank reads or holds the whole file.

The bytes after the header are split into ``size`` equal ranges (the block partition).
A line belongs to the rank whose range holds its first byte, so every rank reads just
its own lines: it moves its start to the next line boundary and reads up to the line
boundary after its end. Line numbers in error messages are global (the header is line
1); they come from an exclusive scan of the per-rank line counts.

Column kinds are one collective decision: a feature column whose non-missing cells are
all numbers (on every rank) is numeric, any other is categorical; ``categorical`` and
``numeric`` force a kind. Empty cells and :data:`~mpiml.data.tables.NA_TOKENS` are
missing. A chunk of plain numbers goes through numpy's C parser; any other chunk (and
every chunk when a column is forced categorical, whose text must be kept as written,
"02134") is read as text cells.
"""

__all__ = ["read_csv"]

import csv as _csv
import io
import os

import numpy as np

from ..comm.partition import block_range
from .tables import NA_TOKENS, Table, summarize
from ._common import (DataError, Dataset, finish_target, forced_kinds, open_checked,
                      raise_first)


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


def _read_cells(chunk, ncols, first_line, delimiter):
    """The non-blank lines of a chunk as (line numbers, rows of cells), or an error
    message naming the first line that is not UTF-8, not CSV, or ragged."""
    lines, texts = [], []
    for i, raw in enumerate(chunk.split(b"\n")):
        try:
            text = raw.decode("utf-8").strip("\r")
        except UnicodeDecodeError:
            return None, None, f"line {first_line + i} is not valid UTF-8 text"
        if text.strip():
            lines.append(first_line + i)
            texts.append(text)
    rows = []
    reader = _csv.reader(texts, delimiter=delimiter, strict=True)
    try:
        for cells in reader:
            if reader.line_num != len(rows) + 1:  # a quoted field ran past its line
                raise _csv.Error("unterminated quoted field")
            rows.append(cells)
    except _csv.Error as exc:
        return None, None, f"line {lines[len(rows)]} cannot be read as CSV: {exc}"
    for line_no, cells in zip(lines, rows):
        if len(cells) != ncols:
            return None, None, (f"line {line_no} has {len(cells)} fields but the header "
                                f"has {ncols} (ragged rows)")
    return lines, rows, None


_NA_LIST = sorted(NA_TOKENS)


def _numbers(cells, lines):
    """One column's stripped cells as float64 (NaN missing), with its first
    non-numeric and first infinite cell as ``(line, cell)`` (or None) and its number of
    missing cells. A column with text needs no numbers: it is categorical, or an error."""
    arr = np.asarray(cells, dtype=str)
    na = np.isin(arr, _NA_LIST)
    try:
        values = np.where(na, "nan", arr).astype(np.float64)
    except ValueError:
        i = next((i for i, c in enumerate(cells) if not na[i] and not _parses(c)), None)
        if i is not None:
            return None, (lines[i], cells[i]), None, int(na.sum())
        values = np.array([np.nan if m else float(c) for c, m in zip(cells, na)])
    infinite = np.flatnonzero(np.isinf(values))
    first_inf = (lines[infinite[0]], cells[infinite[0]]) if infinite.size else None
    return values, None, first_inf, int(np.count_nonzero(np.isnan(values)))


def _parses(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _target_cells(cells, lines, tname):
    """(float64 or None, text labels, first non-numeric (where, cell) or None, error)."""
    values = np.empty(len(cells), dtype=np.float64)
    bad = None
    for i, cell in enumerate(cells):
        if cell in NA_TOKENS:
            what = "empty cell" if not cell else f"missing value {cell!r}"
            return None, None, None, f"line {lines[i]}, column {tname!r}: {what} in the target"
        try:
            values[i] = float(cell)
        except ValueError:
            bad = bad or (f"line {lines[i]}", cell)
            continue
        if not np.isfinite(values[i]):
            return None, None, None, (f"line {lines[i]}, column {tname!r}: NaN or "
                                      f"infinity in the target ({cell!r})")
    return (None if bad else values), np.asarray(cells, dtype=str), bad, None


class _Chunk:
    """This rank's lines, parsed: the fast numeric matrix or the text cells."""

    def __init__(self, chunk, names, first_line, delimiter, fast):
        self.raw, self.names, self.first_line, self.delimiter = (chunk, names, first_line,
                                                                 delimiter)
        self.data = None
        if fast:
            self.data = (_fast_parse(chunk, len(names), delimiter) if chunk
                         else np.zeros((0, len(names))))
        self.lines = self.rows = self._columns = None
        self.message = None if self.data is not None else self._read()

    def _read(self):
        self.lines, self.rows, message = _read_cells(self.raw, len(self.names),
                                                     self.first_line, self.delimiter)
        return message

    def text_columns(self):
        """Cells as columns of stripped text (read now if the fast parser had them)."""
        if self._columns is None:
            if self.rows is None:
                self._read()
            self._columns = ([[c.strip() for c in col] for col in zip(*self.rows)]
                             if self.rows else [[] for _ in self.names])
        return self._columns


def _feature_report(chunk, feature_idx):
    """Per feature: (numbers or None, first text cell, first infinite cell, missing)."""
    if chunk.data is not None:
        return [(chunk.data[:, j], None, None, 0) for j in feature_idx]
    cols = chunk.text_columns()
    return [_numbers(cols[j], chunk.lines) for j in feature_idx]


def _kind_problem(names, feature_idx, reports, forced_numeric):
    """(categorical feature positions, error message or None) from every rank's
    ``(text, infinite, missing)`` per feature; the lowest rank's (so the first line's)
    bad cell is named."""
    categorical, message = set(), None
    for k, j in enumerate(feature_idx):
        text = next((r[k][0] for r in reports if r[k][0] is not None), None)
        infinite = next((r[k][1] for r in reports if r[k][1] is not None), None)
        if text is not None and names[j] not in forced_numeric:
            categorical.add(k)
        elif message is None and text is not None:
            message = f"line {text[0]}, column {names[j]!r}: non-numeric value {text[1]!r}"
        elif message is None and infinite is not None:
            message = (f"line {infinite[0]}, column {names[j]!r}: NaN or infinity "
                       f"({infinite[1]!r})")
    return categorical, message


def read_csv(path, comm, target=None, task=None, delimiter=",", categorical=None,
             numeric=None):
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
    categorical, numeric : str or list of str, optional
        Feature columns forced categorical (their text kept as written) or numeric (a
        text cell in one is an error naming its line); a comma-separated string or a
        list of names.

    Returns
    -------
    Dataset
        ``X`` a :class:`~mpiml.data.tables.Table` when some column is categorical or
        some cell is missing (on any rank), else float64; ``y`` float64 when every
        target cell on every rank is a number (int64 for classification when they are
        all whole numbers), else str; ``summary`` as :func:`~mpiml.data.tables.summarize`.

    Raises
    ------
    DataError
        On every rank: missing file, empty file, unknown target or column, ragged rows,
        a text cell in a ``numeric`` column, infinity, a missing target cell (the
        message names the line and column).
    """
    f = open_checked(path, comm)
    with f:
        size = os.fstat(f.fileno()).st_size
        header = f.readline()
        data_start = f.tell()
        forced_cat = forced_num = []
        try:
            names = _parse_header(header, delimiter)
            message = _header_problem(names, path, target)
        except DataError as exc:
            names, message = [], f"CSV file {str(path)!r}: {exc}"
        if message is None:
            tname = names[-1] if target is None else target
            forced_cat, forced_num, message = forced_kinds(categorical, numeric, names, tname)
        raise_first(comm, message)
        target_idx = len(names) - 1 if target is None else names.index(target)
        lo, hi = block_range(size - data_start, comm.size, comm.rank)
        start = _aligned(f, data_start + lo, data_start)
        stop = _aligned(f, data_start + hi, data_start)
        f.seek(start)
        raw = f.read(max(stop - start, 0))
    counts = comm.allgather(_count_lines(raw))
    chunk = _Chunk(raw, names, 2 + sum(counts[:comm.rank]), delimiter, fast=not forced_cat)
    raise_first(comm, chunk.message)
    tname = names[target_idx]
    feature_idx = [j for j in range(len(names)) if j != target_idx]
    reports = _feature_report(chunk, feature_idx)
    every = comm.allgather([r[1:] for r in reports])  # (text, infinite, missing) per rank
    cat_positions, message = _kind_problem(names, feature_idx, every, set(forced_num))
    cat_positions |= {feature_idx.index(names.index(c)) for c in forced_cat}
    raise_first(comm, message)
    any_missing = any(r[2] for rank in every for r in rank)
    X = _features(chunk, reports, feature_idx, cat_positions, any_missing)
    y, y_text, bad_target, message = _target(chunk, target_idx, tname)
    raise_first(comm, message)
    y = finish_target(comm, y, y_text, bad_target, task, tname)
    n_rows = comm.allgather(len(y))
    feature_names = [names[j] for j in feature_idx]
    return Dataset(X=X, y=y, feature_names=feature_names, target=tname,
                   n_rows=sum(n_rows), offset=sum(n_rows[:comm.rank]), source=str(path),
                   summary=summarize(X, comm, feature_names))


def _features(chunk, reports, feature_idx, cat_positions, any_missing):
    """This rank's features: a float64 matrix when every column is numeric and no cell
    is missing (on any rank), else a Table."""
    if not cat_positions and not any_missing:
        if chunk.data is not None:
            return np.ascontiguousarray(chunk.data[:, feature_idx])
        return np.column_stack([r[0] for r in reports]) if reports else np.zeros((0, 0))
    text = chunk.text_columns() if cat_positions else None
    columns = {}
    for k, j in enumerate(feature_idx):
        if k in cat_positions:
            columns[chunk.names[j]] = np.array(
                [None if c in NA_TOKENS else c for c in text[j]], dtype=object)
        else:
            columns[chunk.names[j]] = reports[k][0]
    return Table(columns, categorical=[chunk.names[feature_idx[k]] for k in cat_positions])


def _target(chunk, target_idx, tname):
    """(float64 or None, text labels or a function giving them, first non-numeric cell,
    error message)."""
    if chunk.data is not None:
        y = chunk.data[:, target_idx].copy()
        return y, lambda: _target_cells(chunk.text_columns()[target_idx], chunk.lines,
                                        tname)[1], None, None
    return _target_cells(chunk.text_columns()[target_idx], chunk.lines, tname)
