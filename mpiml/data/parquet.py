"""Parquet files, one or a directory of parts, split by row group: no rank reads them all.

Rank 0 reads the footers (schema and row counts of every row group, in file order) and
broadcasts them. The row groups, numbered over all files, are split into ``size``
contiguous blocks; with fewer groups than ranks, the rows themselves are split and a
rank streams just its slice of the groups that hold it. Either way rank r holds the
contiguous global rows ``[offset, offset + n_local)``, in file order, so the union of
the shards is the same table for any rank count.

A directory is read as Spark writes one: its ``*.parquet`` files sorted by name, files
whose names start with ``_`` or ``.`` (``_SUCCESS``, ``.crc``) left out. String and
dictionary columns are categorical, numeric and boolean columns numeric, nulls missing.
"""

__all__ = ["read_parquet", "parquet_files"]

import os

import numpy as np

from ..comm.partition import block_range
from .tables import NA_TOKENS, Table, _as_text, is_missing, summarize
from ._common import DataError, Dataset, finish_target, forced_kinds, raise_first

_INSTALL = "reading Parquet needs pyarrow: pip install 'mpiml[parquet]'"


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError(_INSTALL) from None
    return pyarrow


def parquet_files(path):
    """The Parquet files of ``path`` (itself, or a directory's part files by name)."""
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise DataError(f"cannot read data file {str(path)!r}: No such file or directory")
        return [str(path)]
    entries = sorted(e for e in os.listdir(path) if not e.startswith(("_", ".")))
    nested = [e for e in entries if os.path.isdir(os.path.join(path, e))]
    if nested:
        raise DataError(f"Parquet directory {str(path)!r} has subdirectories "
                        f"({', '.join(nested[:3])}); partitioned data sets are not supported")
    files = [os.path.join(path, e) for e in entries if e.endswith(".parquet")]
    if not files:
        raise DataError(f"Parquet directory {str(path)!r} holds no *.parquet part files")
    return files


def _kind(pa, field):
    """'categorical', 'numeric', 'null' (all cells null: either kind), or None for a
    type mpiml cannot read."""
    t = field.type
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "categorical"
    if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_decimal(t)):
        return "numeric"
    return None


def _layout(path):
    """Rank 0's reading of the footers: files, ``[(file index, group, rows)]``, column
    names and kinds."""
    pa = _pyarrow()
    files = parquet_files(path)
    groups, names, kinds = [], None, None
    for i, name in enumerate(files):
        try:
            meta = pa.parquet.ParquetFile(name)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read Parquet file {name!r}: {exc}") from None
        schema = meta.schema_arrow
        these = [str(n) for n in schema.names]
        their_kinds = [_kind(pa, f) for f in schema]
        bad = [f"{f.name} ({f.type})" for f, k in zip(schema, their_kinds) if k is None]
        if bad:
            raise DataError(f"Parquet file {name!r}: columns of types mpiml cannot read: "
                            f"{', '.join(bad)} (it reads numbers, booleans and strings)")
        if names is None:
            names, kinds = these, their_kinds
        elif these != names or any("null" not in (a, b) and a != b
                                   for a, b in zip(kinds, their_kinds)):
            raise DataError(f"Parquet file {name!r} has columns {these}, not those of "
                            f"{files[0]!r} ({names}) of the same kinds")
        kinds = [b if a == "null" else a for a, b in zip(kinds, their_kinds)]
        groups += [(i, g, meta.metadata.row_group(g).num_rows)
                   for g in range(meta.num_row_groups)]
    return files, groups, names, ["numeric" if k == "null" else k for k in kinds or []]


def _my_slices(groups, size, rank):
    """``[(file index, group, first row in the group, stop row)]`` of this rank."""
    if len(groups) >= size:
        lo, hi = block_range(len(groups), size, rank)
        return [(f, g, 0, n) for f, g, n in groups[lo:hi]]
    lo, hi = block_range(sum(n for _, _, n in groups), size, rank)
    out, start = [], 0
    for f, g, n in groups:
        a, b = max(lo - start, 0), min(hi - start, n)
        if a < b:
            out.append((f, g, a, b))
        start += n
    return out


def _read_slices(pa, files, slices, names):
    """This rank's rows as one pyarrow Table (streamed in batches where only a part of
    a group is wanted)."""
    parts, handles = [], {}
    for f, g, a, b in slices:
        handle = handles.get(f) or handles.setdefault(f, pa.parquet.ParquetFile(files[f]))
        if a == 0 and b == handle.metadata.row_group(g).num_rows:
            parts.append(handle.read_row_group(g, columns=names))
            continue
        seen = 0
        for batch in handle.iter_batches(batch_size=65536, row_groups=[g], columns=names):
            lo, hi = max(a - seen, 0), min(b - seen, batch.num_rows)
            if lo < hi:
                parts.append(pa.Table.from_batches([batch.slice(lo, hi - lo)]))
            seen += batch.num_rows
            if seen >= b:
                break
    if not parts:
        return None
    return pa.concat_tables(parts, promote_options="permissive")


def _numeric_column(pa, column, kind, name, offset):
    """A column as float64 (NaN missing); a text cell in a forced-numeric column is a
    DataError naming its global row."""
    if kind == "numeric":
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(np.isinf(values))
        if bad.size:
            raise DataError(f"row {offset + int(bad[0])}, column {name!r}: infinity is "
                            f"not a value")
        return values
    values = np.full(len(column), np.nan)
    for i, cell in enumerate(column.to_pylist()):
        text = None if cell is None else str(cell).strip()
        if text is None or text in NA_TOKENS:
            continue
        try:
            values[i] = float(text)
        except ValueError:
            raise DataError(f"row {offset + i}, column {name!r}: non-numeric value "
                            f"{cell!r}") from None
    return values


def _categorical_column(pa, column, kind):
    """Text cells (None missing); forced-categorical numbers as their text ("2134")."""
    cells = column.to_pylist()
    if kind == "numeric":
        cells = [None if is_missing(c) else _as_text(c) for c in cells]
    return np.array(cells, dtype=object)


def _target(pa, column, kind, name, offset):
    """(float64 or None, text labels, first non-numeric (where, cell), error)."""
    nulls = column.null_count
    if nulls:
        first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        return None, None, None, f"row {offset + first}, column {name!r}: missing target"
    if kind == "numeric":
        y = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            return None, None, None, (f"row {offset + int(bad[0])}, column {name!r}: NaN or "
                                      f"infinity in the target")
        return y, None, None, None
    text = np.asarray([str(c).strip() for c in column.to_pylist()], dtype=str)
    try:
        return text.astype(np.float64), text, None, None
    except ValueError:
        i = next(i for i, c in enumerate(text.tolist()) if not _parses(c))
        return None, text, (f"row {offset + i}", str(text[i])), None


def _parses(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_parquet(path, comm, target=None, task=None, categorical=None, numeric=None):
    """Collective: read this rank's rows of a Parquet file or directory of part files.

    Parameters
    ----------
    path : str
        A ``.parquet`` file or a directory of ``*.parquet`` parts (Spark's layout).
    comm : Communicator
    target : str, optional
        Name of the target column; default the last column.
    task : {"classification", "regression"}, optional
    categorical, numeric : str or list of str, optional
        Columns forced categorical (numbers become their text) or numeric (a text cell
        is an error naming its global row).

    Returns
    -------
    Dataset
        As :func:`~mpiml.data.read_csv`: ``X`` a Table when some column is categorical
        or some cell is missing, else float64.

    Raises
    ------
    DataError
        On every rank: no pyarrow, missing file, unreadable footer, parts with
        different columns, columns of other types, unknown target, nulls in the target,
        a text cell in a ``numeric`` column (messages name the row by its global index
        from 0 and the column).
    """
    layout, message = None, None
    if comm.rank == 0:
        try:
            layout = _layout(path)
        except DataError as exc:
            message = str(exc)
    layout, message = comm.bcast((layout, message), root=0)
    raise_first(comm, message)
    files, groups, names, kinds = layout
    tname = names[-1] if target is None else target
    message = None
    if len(names) < 2:
        message = (f"Parquet data {str(path)!r} has {len(names)} column(s); it needs "
                   f"features and a target")
    elif tname not in names:
        message = (f"target column {tname!r} is not in {str(path)!r}; columns: "
                   f"{', '.join(names)}")
    forced_cat, forced_num, spec_error = forced_kinds(categorical, numeric, names, tname)
    raise_first(comm, message or spec_error)
    pa = _pyarrow()
    slices = _my_slices(groups, comm.size, comm.rank)
    counts = [sum(b - a for _, _, a, b in _my_slices(groups, comm.size, r))
              for r in range(comm.size)]
    offset = sum(counts[:comm.rank])
    table, message = None, None
    try:
        table = _read_slices(pa, files, slices, names)
    except (OSError, pa.ArrowException) as exc:
        message = f"cannot read Parquet data {str(path)!r}: {exc}"
    raise_first(comm, message)
    columns, y, y_text, bad_target, message = {}, None, None, None, None
    features = [n for n in names if n != tname]
    categorical_names = [n for n, k in zip(names, kinds)
                         if n != tname and (n in forced_cat or (k == "categorical"
                                                                and n not in forced_num))]
    try:
        for name, kind in zip(names, kinds):
            column = table.column(name) if table is not None else pa.chunked_array(
                [], type=pa.string() if kind == "categorical" else pa.float64())
            if name == tname:
                y, y_text, bad_target, message = _target(pa, column, kind, name, offset)
            elif name in categorical_names:
                columns[name] = _categorical_column(pa, column, kind)
            else:
                columns[name] = _numeric_column(pa, column, kind, name, offset)
    except DataError as exc:
        message = message or str(exc)
    raise_first(comm, message)
    if y_text is None:
        y_text = y
    y = finish_target(comm, y, y_text, bad_target, task, tname)
    X = Table(columns, categorical=categorical_names)
    any_missing = any(np.isnan(c).any() for n, c in columns.items()
                      if n not in categorical_names)
    if not categorical_names and not any(comm.allgather(bool(any_missing))):
        X = (np.column_stack([columns[n] for n in features]) if len(y)
             else np.zeros((0, len(features))))
    return Dataset(X=X, y=y, feature_names=features, target=tname, n_rows=sum(counts),
                   offset=offset, source=str(path), summary=summarize(X, comm, features))
