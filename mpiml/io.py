"""The mpiml model file format: ``save`` (atomic, checksummed) and ``load`` (no pickle, ever).

Layout of a model file (all integers little-endian)::

    offset 0   magic            8 bytes   b"\\x89MPIML\\r\\n"
    offset 8   format version   uint32
    offset 12  manifest length  uint64    (bytes of UTF-8 JSON)
    offset 20  manifest sha256  32 bytes
    offset 52  manifest         JSON object, UTF-8
               zero padding up to a multiple of 64 bytes: the payload starts here
    payload    the raw little-endian bytes of each array, each array starting at a
               multiple of 64 bytes from the start of the payload

The manifest holds ``format``, ``format_version``, ``model_type``, ``task``,
``feature_names_in_``, ``classes_``, ``params``, ``ranks``, ``backend``, ``created``
(ISO 8601, UTC), ``mpiml_version``, ``meta`` (the estimator's own JSON state),
``extra`` (whatever the caller of :func:`save` added), ``arrays`` (one entry per array:
``name``, ``dtype``, ``shape``, ``offset``, ``nbytes``), ``payload_nbytes`` and
``payload_sha256``. The header's checksum covers the manifest, the manifest's
checksum covers the payload, so any changed byte is detected.

Arrays hold plain numeric or bool dtypes only, so ``load(path, mmap=True)`` can hand
out read-only numpy views on a memory map (processes that load the same file share
its pages). Loading never runs code from the file.

Persistence contract for estimators: a class attribute ``_model_type`` (a key of
:data:`MODEL_TYPES`), a method ``_get_state(self) -> (meta, arrays)`` where ``meta`` is a
dict of JSON values and ``arrays`` a dict ``name -> numpy.ndarray``, and a classmethod
``_from_state(cls, meta, arrays)`` that rebuilds a fitted estimator.
"""

__all__ = ["save", "load", "read_manifest", "file_sha256", "register_model_type",
           "MODEL_TYPES", "FORMAT_VERSION", "MAGIC"]

import datetime
import hashlib
import importlib
import json
import mmap as _mmap
import os
import struct
import tempfile

import numpy as np

from .errors import ModelFileError

MAGIC = b"\x89MPIML\r\n"
FORMAT_VERSION = 1
ALIGN = 64
_HEADER = struct.Struct("<8sIQ32s")
_MAX_MANIFEST = 64 * 1024 * 1024
_DTYPE_KINDS = "biuf"  # bool, signed, unsigned, float
_MANIFEST_KEYS = ("format", "format_version", "model_type", "arrays", "payload_nbytes",
                  "payload_sha256", "meta")

#: ``model_type`` -> ``"module.path:ClassName"``, imported only when a file of that
#: type is loaded. One line per estimator class.
MODEL_TYPES = {
    "linear_regression": "mpiml.models.linear:LinearRegression",
    "logistic_regression": "mpiml.models.linear:LogisticRegression",
    "mlp_classifier": "mpiml.models.mlp:MLPClassifier",
    "mlp_regressor": "mpiml.models.mlp:MLPRegressor",
    "gbdt_classifier": "mpiml.models.gbdt:GradientBoostingClassifier",
    "gbdt_regressor": "mpiml.models.gbdt:GradientBoostingRegressor",
    "decision_tree_classifier": "mpiml.models.tree:DecisionTreeClassifier",
    "decision_tree_regressor": "mpiml.models.tree:DecisionTreeRegressor",
    "random_forest_classifier": "mpiml.models.forest:RandomForestClassifier",
    "random_forest_regressor": "mpiml.models.forest:RandomForestRegressor",
}


def register_model_type(model_type, target):
    """Map ``model_type`` to ``"module.path:ClassName"`` (or to a class) for :func:`load`."""
    if not isinstance(target, str):
        target = f"{target.__module__}:{target.__qualname__}"
    MODEL_TYPES[str(model_type)] = target


def _resolve(model_type, path):
    target = MODEL_TYPES.get(model_type)
    if target is None:
        raise ModelFileError(f"model file {str(path)!r}: unknown model type {model_type!r} "
                             f"(known: {', '.join(sorted(MODEL_TYPES))})")
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ModelFileError(f"model file {str(path)!r}: model type {model_type!r} is not "
                             f"available in this installation ({target}: {exc})") from None


def _align(n):
    return -(-n // ALIGN) * ALIGN


def _json_default(value):
    if isinstance(value, (np.random.Generator, np.random.RandomState)):
        return None  # a random_state generator is not saved: the loaded model has None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"value of type {type(value).__name__} is not JSON serialisable")


def _json_list(values):
    if values is None:
        return None
    return [v.item() if isinstance(v, np.generic) else v for v in np.asarray(values).tolist()]


def _prepare_arrays(arrays):
    """Little-endian contiguous copies (where needed) and the arrays table."""
    prepared, table, offset = [], [], 0
    for name, arr in arrays.items():
        if not isinstance(name, str):
            raise ModelFileError(f"array names must be strings, got {name!r}")
        arr = np.asarray(arr)
        if arr.dtype.kind not in _DTYPE_KINDS or arr.dtype.hasobject:
            raise ModelFileError(f"array {name!r} has dtype {arr.dtype}; model files hold only "
                                 f"bool, integer and float arrays")
        arr = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)
        offset = _align(offset)
        table.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape),
                      "offset": offset, "nbytes": int(arr.nbytes)})
        prepared.append((offset, arr))
        offset += arr.nbytes
    return prepared, table, offset


def _array_bytes(arr):
    return memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b""


def _build(model, ranks, backend, extra):
    """Return (header+manifest bytes, prepared arrays, payload size)."""
    cls = type(model)
    model_type = getattr(cls, "_model_type", None)
    if not isinstance(model_type, str) or not hasattr(model, "_get_state"):
        raise ModelFileError(f"{cls.__name__} cannot be saved: it has no _model_type/_get_state")
    if model_type not in MODEL_TYPES:
        raise ModelFileError(f"{cls.__name__} cannot be saved: model type {model_type!r} is not "
                             f"registered in mpiml.io.MODEL_TYPES")
    meta, arrays = model._get_state()
    prepared, table, payload_nbytes = _prepare_arrays(arrays)
    digest = hashlib.sha256()
    pos = 0
    for offset, arr in prepared:
        digest.update(b"\0" * (offset - pos))
        digest.update(_array_bytes(arr))
        pos = offset + arr.nbytes
    get_params = getattr(model, "get_params", None)
    try:
        from . import __version__ as version
    except ImportError:
        version = None
    manifest = {
        "format": "mpiml-model",
        "format_version": FORMAT_VERSION,
        "model_type": model_type,
        "task": getattr(model, "_task", None),
        "feature_names_in_": _json_list(getattr(model, "feature_names_in_", None)),
        "n_features_in_": getattr(model, "n_features_in_", None),
        "features": _features_json(model),
        "classes_": _json_list(getattr(model, "classes_", None)),
        "params": get_params() if callable(get_params) else {},
        "ranks": ranks,
        "backend": backend,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mpiml_version": version,
        "meta": meta,
        "extra": extra,
        "arrays": table,
        "payload_nbytes": payload_nbytes,
        "payload_sha256": digest.hexdigest(),
    }
    try:
        text = json.dumps(manifest, default=_json_default, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{cls.__name__} cannot be saved: its state is not JSON: {exc}") from None
    body = text.encode("utf-8")
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(body), hashlib.sha256(body).digest())
    head = header + body
    head += b"\0" * (_align(len(head)) - len(head))
    return head, prepared, payload_nbytes


def _features_json(model):
    """Each feature's name, kind and vocabulary (None for a model without a schema)."""
    schema = getattr(model, "feature_schema_", None)
    return None if schema is None else schema.to_json()


def _attach_schema(model, manifest):
    """Set ``feature_schema_`` from the manifest; files without one hold numeric features."""
    from .data.tables import Schema
    state = manifest.get("features")
    n = manifest.get("n_features_in_")
    if state:
        schema = Schema.from_json(state)
    elif isinstance(n, int):
        names = manifest.get("feature_names_in_")
        schema = Schema.numeric(n, [str(x) for x in names] if names else None)
    else:
        return
    try:
        model.feature_schema_ = schema
        model.is_categorical_ = schema.is_categorical.copy()
    except AttributeError:
        pass


def _write_atomic(path, head, prepared):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ModelFileError(f"cannot write model file {path!r}: directory {directory!r} "
                             f"does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"cannot write model file {path!r}: it is a directory")
    digest = hashlib.sha256()
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                                   suffix=".tmp")
    except OSError as exc:
        raise ModelFileError(f"cannot write model file {path!r}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            digest.update(head)
            pos = 0
            for offset, arr in prepared:
                pad = b"\0" * (offset - pos)
                data = _array_bytes(arr)
                f.write(pad)
                f.write(data)
                digest.update(pad)
                digest.update(data)
                pos = offset + arr.nbytes
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ModelFileError(f"cannot write model file {path!r}: {exc.strerror or exc}") from None
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    return digest.hexdigest()


def save(model, path, comm=None, **manifest_extra):
    """Write a fitted estimator to ``path`` atomically.

    Collective when ``comm`` is given: every rank holds the same fitted model, rank 0
    writes the file, and the outcome is broadcast so that every rank returns the same
    digest or raises the same :class:`~mpiml.errors.ModelFileError`.

    Parameters
    ----------
    model : estimator
        A fitted estimator following the persistence contract (module docstring).
    path : str or os.PathLike
        Destination. Its directory must exist. A file of that name is replaced only
        once the new file is complete and on disk; on failure it stays as it was.
    comm : Communicator, optional
        The ranks that trained the model; ``None`` for one process.
    **manifest_extra
        JSON values stored under ``extra`` in the manifest (e.g. ``metric="accuracy"``).
        ``ranks`` and ``backend`` override the values taken from ``comm``.

    Returns
    -------
    str
        The sha256 hex digest of the whole file as written.
    """
    ranks = manifest_extra.pop("ranks", comm.size if comm is not None else 1)
    backend = manifest_extra.pop("backend", comm.backend if comm is not None else "serial")
    outcome = None
    if comm is None or comm.rank == 0:
        try:
            head, prepared, _ = _build(model, ranks, backend, manifest_extra)
            outcome = ("ok", _write_atomic(path, head, prepared))
        except ModelFileError as exc:
            outcome = ("error", str(exc))
        except Exception as exc:  # any failure must reach every rank, not hang them
            outcome = ("error", f"cannot save model to {os.fspath(path)!r}: "
                                f"{type(exc).__name__}: {exc}")
    if comm is not None:
        outcome = comm.bcast(outcome, root=0)
    status, value = outcome
    if status != "ok":
        raise ModelFileError(value)
    return value


def _read_header(f, path, size):
    raw = f.read(_HEADER.size)
    if len(raw) < 8 or raw[:8] != MAGIC:
        raise ModelFileError(f"{path!r} is not an mpiml model file (bad magic bytes)")
    if len(raw) < _HEADER.size:
        raise ModelFileError(f"model file {path!r} is truncated (incomplete header)")
    _, version, mlen, mdigest = _HEADER.unpack(raw)
    if version != FORMAT_VERSION:
        raise ModelFileError(f"model file {path!r} has format version {version}; this mpiml "
                             f"reads version {FORMAT_VERSION}")
    if mlen > _MAX_MANIFEST or _HEADER.size + mlen > size:
        raise ModelFileError(f"model file {path!r} is truncated (manifest of {mlen} bytes "
                             f"does not fit in {size} bytes)")
    body = f.read(mlen)
    if hashlib.sha256(body).digest() != mdigest:
        raise ModelFileError(f"model file {path!r}: manifest checksum mismatch "
                             f"(the manifest was altered or corrupted)")
    try:
        manifest = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"model file {path!r}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ModelFileError(f"model file {path!r}: manifest is not a JSON object")
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ModelFileError(f"model file {path!r}: manifest lacks {', '.join(missing)}")
    if manifest["format"] != "mpiml-model" or manifest["format_version"] != FORMAT_VERSION:
        raise ModelFileError(f"model file {path!r}: manifest format "
                             f"{manifest['format']!r} v{manifest['format_version']!r} is not "
                             f"mpiml-model v{FORMAT_VERSION}")
    return manifest, _align(_HEADER.size + mlen)


def _check_table(manifest, path, payload_start, size):
    def bad(why):
        return ModelFileError(f"model file {path!r}: invalid arrays table ({why})")
    nbytes = manifest["payload_nbytes"]
    if not isinstance(nbytes, int) or nbytes < 0:
        raise bad(f"payload_nbytes {nbytes!r}")
    if payload_start + nbytes > size:
        raise ModelFileError(f"model file {path!r} is truncated: {size} bytes, expected "
                             f"{payload_start + nbytes}")
    if payload_start + nbytes < size:
        raise ModelFileError(f"model file {path!r} has {size - payload_start - nbytes} "
                             f"unexpected trailing bytes")
    table = manifest["arrays"]
    if not isinstance(table, list):
        raise bad("not a list")
    specs, names, end = [], set(), 0
    for entry in table:
        if not isinstance(entry, dict) or set(entry) != {"name", "dtype", "shape", "offset", "nbytes"}:
            raise bad(f"entry {entry!r}")
        name, shape, offset = entry["name"], entry["shape"], entry["offset"]
        if not isinstance(name, str) or name in names:
            raise bad(f"array name {name!r}")
        names.add(name)
        try:
            dtype = np.dtype(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        except TypeError:
            dtype = None
        if (dtype is None or dtype.kind not in _DTYPE_KINDS or dtype.hasobject
                or dtype.byteorder == ">" or dtype.fields is not None or dtype.subdtype):
            raise bad(f"array {name!r} has unsupported dtype {entry['dtype']!r}")
        if (not isinstance(shape, list)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise bad(f"array {name!r} has shape {shape!r}")
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if entry["nbytes"] != count * dtype.itemsize:
            raise bad(f"array {name!r}: nbytes {entry['nbytes']!r} does not match shape and dtype")
        if not isinstance(offset, int) or offset % ALIGN or offset < end:
            raise bad(f"array {name!r} has offset {offset!r}")
        end = offset + entry["nbytes"]
        if end > nbytes:
            raise bad(f"array {name!r} runs past the payload")
        specs.append((name, dtype, tuple(shape), offset, count))
    return specs


def read_manifest(path):
    """The manifest of the model file at ``path`` as a dict (checked, arrays not read).

    Raises :class:`~mpiml.errors.ModelFileError` for a missing, truncated or altered
    header/manifest. The payload checksum is verified only by :func:`load`.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            manifest, _ = _read_header(f, path, size)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path!r}: {exc.strerror or exc}") from None
    return manifest


def load(path, mmap=False):
    """Read a model file and return the fitted estimator. No MPI is needed.

    Parameters
    ----------
    path : str or os.PathLike
    mmap : bool, default False
        If True, the estimator's arrays are read-only views on a memory map of the file,
        so that processes loading the same file share its pages. Otherwise they are
        private writable copies.

    Returns
    -------
    estimator
        The manifest is available as ``estimator.model_manifest_`` (a dict).

    Raises
    ------
    mpiml.ModelFileError
        The file is missing, not an mpiml model file, truncated, corrupted (checksum
        mismatch), altered, of an unknown model type, or its state is inconsistent.
    """
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path!r}: {exc.strerror or exc}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        manifest, payload_start = _read_header(f, path, size)
        specs = _check_table(manifest, path, payload_start, size)
        cls = _resolve(manifest["model_type"], path)
        nbytes = manifest["payload_nbytes"]
        if mmap and nbytes:
            buf = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
        else:
            f.seek(payload_start)
            buf = f.read(nbytes)
            payload_start = 0
    view = memoryview(buf)[payload_start:payload_start + nbytes]
    if hashlib.sha256(view).hexdigest() != manifest["payload_sha256"]:
        raise ModelFileError(f"model file {path!r}: payload checksum mismatch "
                             f"(the file is corrupted or was altered)")
    arrays = {}
    for name, dtype, shape, offset, count in specs:
        arr = np.frombuffer(buf, dtype=dtype, count=count,
                            offset=payload_start + offset).reshape(shape)
        arrays[name] = arr if mmap else arr.copy()
    try:
        model = cls._from_state(manifest["meta"], arrays)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"model file {path!r}: cannot rebuild {manifest['model_type']!r} "
                             f"from its state ({type(exc).__name__}: {exc})") from None
    try:
        model.model_manifest_ = manifest
    except AttributeError:
        pass
    try:
        _attach_schema(model, manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model file {path!r}: bad feature list ({exc})") from None
    return model


def file_sha256(path, chunk=1 << 20):
    """sha256 hex digest of the whole file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
