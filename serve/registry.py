"""The models a server process answers for: loaded from a directory, swapped on reload.

Each regular file in the model directory (hidden and temporary files excepted) is
one model, served under its file's stem. Models are loaded with ``mmap=True``: their
arrays are read-only views on the file's pages, so every Gunicorn worker forked from
the master (and any other process loading the same file) shares one copy in memory.

A file that fails to load is logged and kept in the registry with its error, so that
``/ready`` and ``/v1/models`` can report it while the other models serve. On
:meth:`ModelRegistry.reload` unchanged files keep their loaded model; a changed file
that fails to load keeps serving the previous version and reports the error.
"""

__all__ = ["ModelEntry", "ModelRegistry"]

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from mpiml.data.tables import Schema
from mpiml.io import file_sha256, load

log = logging.getLogger("mpiml.serve")


@dataclass
class ModelEntry:
    """One served model (``model`` is None when it never loaded)."""

    name: str
    path: str
    model: object = None
    manifest: dict = field(default_factory=dict)
    sha256: str = ""
    version: str = ""
    loaded_at: float = 0.0
    error: str = ""          # why the file (or its latest version) could not be loaded
    stat_key: tuple = ()     # (inode, size, mtime_ns) of the file that was loaded
    accepts_missing: bool = True   # whether predict takes a row of missing values

    @property
    def ready(self):
        return self.model is not None

    @property
    def is_classifier(self):
        return self.ready and hasattr(self.model, "predict_proba") and self.classes is not None

    @property
    def n_features(self):
        n = self.manifest.get("n_features_in_")
        if n is None and self.ready:
            n = getattr(self.model, "n_features_in_", None)
        return None if n is None else int(n)

    @property
    def feature_names(self):
        names = self.manifest.get("feature_names_in_")
        return None if names is None else [str(n) for n in names]

    @property
    def schema(self):
        """The model's :class:`~mpiml.data.tables.Schema` (kinds and vocabularies)."""
        schema = getattr(self.model, "feature_schema_", None)
        if schema is None and self.n_features:
            schema = Schema.numeric(self.n_features, self.feature_names)
        return schema

    @property
    def has_categorical(self):
        schema = self.schema
        return schema is not None and schema.has_categorical

    def features(self):
        """Each feature's name, kind and (categorical) categories, as JSON values."""
        schema = self.schema
        if schema is None:
            return None
        out = []
        for feature in schema.features:
            item = {"name": feature.name, "kind": feature.kind}
            if feature.is_categorical:
                item["categories"] = feature.categories.tolist()
            out.append(item)
        return out

    @property
    def classes(self):
        return self.manifest.get("classes_")

    @property
    def predict_datatype(self):
        """The v2 datatype of the model's ``predict`` output."""
        classes = self.classes
        if classes is None:
            return "FP64"
        if all(isinstance(c, bool) for c in classes):
            return "BOOL"
        if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
            return "INT64"
        if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
            return "FP64"
        return "BYTES"

    def describe(self):
        """JSON-able metadata, as answered by ``GET /v1/models/NAME``."""
        info = {"name": self.name, "status": "ready" if self.ready else "failed"}
        if self.ready:
            m = self.manifest
            info.update({
                "version": self.version,
                "sha256": self.sha256,
                "model_type": m.get("model_type"),
                "task": m.get("task"),
                "n_features": self.n_features,
                "feature_names": self.feature_names,
                "features": self.features(),
                "accepts_missing": self.accepts_missing,
                "classes": self.classes,
                "params": m.get("params", {}),
                "created": m.get("created"),
                "ranks": m.get("ranks"),
                "backend": m.get("backend"),
                "mpiml_version": m.get("mpiml_version"),
                "extra": m.get("extra", {}),
                "payload_nbytes": m.get("payload_nbytes"),
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
            })
        if self.error:
            info["error"] = self.error
        return info


def _stat_key(path):
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _model_files(directory):
    """(stem, path) for every candidate model file, sorted by file name."""
    files = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name.endswith((".tmp", "~")):
            continue
        if entry.is_file():
            files.append((os.path.splitext(entry.name)[0], entry.path))
    return files


def _version_of(manifest, sha256):
    """The trainer's ``extra.version`` if set, else ``<created, UTC>Z-<sha256 prefix>``."""
    extra = manifest.get("extra") or {}
    if isinstance(extra, dict) and extra.get("version") is not None:
        return str(extra["version"])
    created = "".join(ch for ch in str(manifest.get("created", ""))[:19] if ch.isalnum())
    return f"{created}Z-{sha256[:8]}" if created else sha256[:12]


class ModelRegistry:
    """Models loaded from ``directory``; a read of :attr:`entries` is always consistent.

    Parameters
    ----------
    directory : str
        The model directory (``MPIML_MODELS``).
    warmup : bool
        Predict one row of zeros after loading, so that compiled kernels and the
        pages a prediction touches are ready before workers fork.
    """

    def __init__(self, directory, warmup=True):
        self.directory = os.fspath(directory)
        self.warmup = warmup
        self.generation = 0
        self.error = ""          # directory-level problem (missing, unreadable)
        self._entries = {}
        self._lock = threading.Lock()

    @property
    def entries(self):
        """dict name -> ModelEntry; replaced as a whole on reload, never mutated."""
        return self._entries

    def get(self, name):
        return self._entries.get(name)

    @property
    def ready(self):
        return any(e.ready for e in self._entries.values())

    def reload(self):
        """(Re)scan the directory and load new or changed files. Returns the entries."""
        with self._lock:
            old = self._entries
            new = {}
            try:
                files = _model_files(self.directory)
                self.error = ""
            except OSError as exc:
                self.error = f"cannot read model directory {self.directory!r}: {exc.strerror or exc}"
                log.error("%s", self.error)
                files = []
            for name, path in files:
                if name in new:
                    new[name] = ModelEntry(name, path, error=(
                        f"two files have the stem {name!r} ({os.path.basename(new[name].path)}, "
                        f"{os.path.basename(path)}); rename one"))
                    log.error("model %s: %s", name, new[name].error)
                    continue
                if ":" in name or "/" in name:
                    new[name] = ModelEntry(name, path, error=f"model name {name!r} may not contain ':'")
                    log.error("model %s: %s", name, new[name].error)
                    continue
                new[name] = self._load_one(name, path, old.get(name))
            self._entries = new
            self.generation += 1
            for name in sorted(set(old) - set(new)):
                log.info("model %s: file removed, no longer served", name)
            return new

    def _load_one(self, name, path, previous):
        try:
            key = _stat_key(path)
        except OSError as exc:
            key = ()
            err = f"cannot read {path!r}: {exc.strerror or exc}"
        else:
            if previous is not None and previous.ready and previous.stat_key == key \
                    and previous.path == path:
                return previous  # unchanged file: keep the mapped model
            err = None
        if err is None:
            try:
                started = time.perf_counter()
                for _ in range(3):  # a file replaced while we read it is read again
                    model = load(path, mmap=True)
                    sha = file_sha256(path)
                    after = _stat_key(path)
                    if after == key:
                        break
                    key = after
                manifest = getattr(model, "model_manifest_", None) or {}
                entry = ModelEntry(name, path, model=model, manifest=manifest, sha256=sha,
                                   version=_version_of(manifest, sha), loaded_at=time.time(),
                                   stat_key=key)
                entry.accepts_missing = self._accepts_missing(entry)
                if self.warmup:
                    self._warm(entry)
                log.info("model %s: loaded %s (%s, version %s, sha256 %s) in %.3f s",
                         name, os.path.basename(path), manifest.get("model_type"),
                         entry.version, sha[:12], time.perf_counter() - started)
                return entry
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                err = str(exc) if getattr(exc, "args", None) else type(exc).__name__
                if not isinstance(exc, (OSError, ValueError)):
                    err = f"{type(exc).__name__}: {err}"
        if previous is not None and previous.ready:
            log.error("model %s: new file failed to load, still serving version %s: %s",
                      name, previous.version, err)
            kept = ModelEntry(**{**previous.__dict__, "error": f"reload failed: {err}"})
            return kept
        log.error("model %s: failed to load: %s", name, err)
        return ModelEntry(name, path, error=err, stat_key=key)

    @staticmethod
    def _accepts_missing(entry):
        """Whether the model predicts a row whose every cell is missing (else the server
        refuses ``null``, and its OpenAPI document does not offer it)."""
        schema = entry.schema
        if schema is None:
            return False
        row = {f.name: np.array([None], dtype=object) if f.text else np.array([np.nan])
               for f in schema.features}
        try:
            with np.errstate(all="ignore"):   # NaN predictions are an answer, not a refusal
                entry.model.predict(row)
                if entry.is_classifier:
                    entry.model.predict_proba(row)
        except Exception:  # noqa: BLE001 - any refusal means: no missing values
            return False
        return True

    @staticmethod
    def _warm(entry):
        n = entry.n_features
        if not n:
            return
        X = np.zeros((1, n))
        entry.model.predict(X)
        if entry.is_classifier:
            entry.model.predict_proba(X)
