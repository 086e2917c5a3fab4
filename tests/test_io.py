"""Model files: round trip, mmap, corruption and alteration, unknown types, no pickle, atomic write."""

import json
import os
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mpiml
from mpiml import io
from mpiml.comm.partition import block_range
from mpiml.models.linear import LinearRegression, LogisticRegression
from mpiml.models.mlp import MLPClassifier, MLPRegressor

RNG = np.random.default_rng(0)
X = RNG.standard_normal((60, 4))
Y_REG = X @ [1.0, -2.0, 0.5, 3.0] + 0.1 * RNG.standard_normal(60)
Y_CLS = np.array(["ham", "spam", "eggs"])[np.digitize(X[:, 0] + X[:, 1], [-0.5, 0.5])]


def _models():
    return [LinearRegression().fit(X, Y_REG, feature_names=["a", "b", "c", "d"]),
            LogisticRegression().fit(X, Y_CLS),
            LogisticRegression().fit(X, Y_CLS == "spam"),
            MLPClassifier(hidden_layer_sizes=(5, 3), max_iter=5, random_state=0).fit(X, Y_CLS),
            MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, Y_REG)]


@pytest.mark.parametrize("mmap", [False, True])
def test_round_trip(tmp_path, mmap):
    for i, model in enumerate(_models()):
        path = tmp_path / f"m{i}.mpiml"
        digest = mpiml.save(model, path, note="hello")
        assert digest == io.file_sha256(path)
        loaded = mpiml.load(path, mmap=mmap)
        assert type(loaded) is type(model)
        assert_array_equal(loaded.predict(X), model.predict(X))
        if hasattr(model, "predict_proba"):
            assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=0, atol=0)
            assert_array_equal(loaded.classes_, model.classes_)
        assert loaded.get_params() == model.get_params()
        manifest = io.read_manifest(path)
        assert manifest["model_type"] == model._model_type
        assert manifest["extra"] == {"note": "hello"}
        assert manifest["ranks"] == 1 and manifest["task"] in ("classification", "regression")
        for entry in manifest["arrays"]:
            assert entry["offset"] % 64 == 0


def test_generator_random_state_saves_as_none(tmp_path):
    from mpiml.models.forest import RandomForestClassifier
    for model in (MLPClassifier(hidden_layer_sizes=(3,), max_iter=2,
                                random_state=np.random.default_rng(4)).fit(X, Y_CLS),
                  RandomForestClassifier(n_estimators=2,
                                         random_state=np.random.RandomState(4)).fit(X, Y_CLS)):
        mpiml.save(model, tmp_path / "m.mpiml")
        loaded = mpiml.load(tmp_path / "m.mpiml")
        assert loaded.get_params()["random_state"] is None
        assert io.read_manifest(tmp_path / "m.mpiml")["params"]["random_state"] is None
        assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_manifest_fields(tmp_path):
    model = LinearRegression().fit(X, Y_REG, feature_names=["a", "b", "c", "d"])
    mpiml.save(model, tmp_path / "m.mpiml")
    m = io.read_manifest(tmp_path / "m.mpiml")
    for key in ("format_version", "model_type", "task", "feature_names_in_", "classes_", "params",
                "ranks", "backend", "created", "payload_sha256", "arrays"):
        assert key in m
    assert m["feature_names_in_"] == ["a", "b", "c", "d"]
    assert m["params"]["solver"] == "normal"


def test_mmap_arrays_are_read_only(tmp_path):
    mpiml.save(_models()[0], tmp_path / "m.mpiml")
    loaded = mpiml.load(tmp_path / "m.mpiml", mmap=True)
    assert not loaded.coef_.flags.writeable
    assert mpiml.load(tmp_path / "m.mpiml").coef_.flags.writeable


def _saved(tmp_path):
    path = tmp_path / "m.mpiml"
    mpiml.save(LogisticRegression().fit(X, Y_CLS), path)
    return path, path.read_bytes()


def _expect(path, data, pattern):
    path.write_bytes(data)
    with pytest.raises(mpiml.ModelFileError, match=pattern):
        mpiml.load(path)


def test_truncated(tmp_path):
    path, data = _saved(tmp_path)
    for cut in (len(data) - 1, len(data) // 2, 40, 10):
        _expect(path, data[:cut], "truncated|not an mpiml")


def test_flipped_payload_byte(tmp_path):
    path, data = _saved(tmp_path)
    flipped = bytearray(data)
    flipped[-5] ^= 0x01
    _expect(path, bytes(flipped), "checksum mismatch")


def test_altered_manifest(tmp_path):
    path, data = _saved(tmp_path)
    altered = data.replace(b'"solver": "lbfgs"', b'"solver": "sgd!!"')
    assert altered != data
    _expect(path, altered, "manifest checksum mismatch")


def test_trailing_bytes_and_garbage(tmp_path):
    path, data = _saved(tmp_path)
    _expect(path, data + b"\0", "trailing")
    _expect(path, b"PK\x03\x04" + b"\0" * 100, "not an mpiml model file")
    with pytest.raises(mpiml.ModelFileError, match="No such file"):
        mpiml.load(tmp_path / "missing.mpiml")


def _rewrite_manifest(data, change):
    """A consistently re-checksummed file whose manifest was changed by ``change``."""
    import hashlib
    magic, version, mlen, _ = io._HEADER.unpack(data[:io._HEADER.size])
    manifest = json.loads(data[io._HEADER.size:io._HEADER.size + mlen])
    change(manifest)
    old_start = io._align(io._HEADER.size + mlen)
    body = json.dumps(manifest).encode()
    head = io._HEADER.pack(magic, version, len(body), hashlib.sha256(body).digest()) + body
    head += b"\0" * (io._align(len(head)) - len(head))
    return head + data[old_start:]


def test_unknown_model_type(tmp_path):
    path, data = _saved(tmp_path)
    _expect(path, _rewrite_manifest(data, lambda m: m.update(model_type="evil_model")),
            "unknown model type 'evil_model'")


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("meta, message", [
    ({"classes_": {"dtype": "str", "values": ["a", "b", "c", "d", "e"]}}, "do not match"),
    ({"n_features_in_": 7}, "do not match"),
    ({"params": {"solver": "newton"}}, "solver must be one of"),
])
def test_inconsistent_state_refused(tmp_path, index, meta, message):
    model = _models()[index]
    if "classes_" in meta and not hasattr(model, "classes_"):
        pytest.skip("a regressor has no classes")
    path = tmp_path / "m.mpiml"
    mpiml.save(model, path)
    data = path.read_bytes()

    def change(manifest):
        for key, value in meta.items():
            if isinstance(value, dict) and key == "params":
                manifest["meta"][key] = dict(manifest["meta"][key], **value)
            else:
                manifest["meta"][key] = value
    _expect(path, _rewrite_manifest(data, change), message)


def test_object_dtype_refused(tmp_path):
    path, data = _saved(tmp_path)
    _expect(path, _rewrite_manifest(data, lambda m: m["arrays"][0].update(dtype="|O")),
            "unsupported dtype")
    _expect(path, _rewrite_manifest(data, lambda m: m["arrays"][0].update(offset=3)),
            "offset")


def test_pickle_is_never_used(tmp_path, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("pickle used")
    for name in ("load", "loads", "dump", "dumps", "Unpickler", "Pickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    for i, model in enumerate(_models()):
        mpiml.save(model, tmp_path / f"m{i}.mpiml")
        mpiml.load(tmp_path / f"m{i}.mpiml")
        mpiml.load(tmp_path / f"m{i}.mpiml", mmap=True)


def test_atomic_write_keeps_old_file(tmp_path, monkeypatch):
    path, data = _saved(tmp_path)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(mpiml.ModelFileError, match="No space left"):
        mpiml.save(LinearRegression().fit(X, Y_REG), path)
    assert path.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["m.mpiml"]


def test_save_errors(tmp_path):
    with pytest.raises(mpiml.ModelFileError, match="does not exist"):
        mpiml.save(_models()[0], tmp_path / "nodir" / "m.mpiml")
    with pytest.raises(mpiml.ModelFileError, match="cannot be saved"):
        mpiml.save(object(), tmp_path / "m.mpiml")
    assert not os.listdir(tmp_path)


def _collective_save(comm, directory, ok):
    s, e = block_range(len(X), comm.size, comm.rank)
    model = LinearRegression().fit(X[s:e], Y_REG[s:e], comm=comm)
    target = os.path.join(directory, "m.mpiml") if ok else os.path.join(directory, "no", "m")
    try:
        return mpiml.save(model, target, comm)
    except mpiml.ModelFileError as exc:
        return f"error: {exc}"


@pytest.mark.threads(1, 3)
def test_collective_save(spmd, tmp_path):
    directory = str(tmp_path)
    directory = spmd(lambda comm: comm.bcast(directory))[0]
    results = spmd(_collective_save, directory, True)
    assert len(set(results)) == 1 and not results[0].startswith("error")
    assert io.read_manifest(os.path.join(directory, "m.mpiml"))["ranks"] == len(results)
    results = spmd(_collective_save, directory, False)
    assert all(r.startswith("error") and "does not exist" in r for r in results)


def test_file_written_before_tables_loads_and_predicts_exactly():
    # tests/data/v1_logistic.mpiml predates the preprocessing stage: it loads as a model
    # of numeric features with the identity stage and predicts the bits it was saved with
    data = os.path.join(os.path.dirname(__file__), "data")
    model = mpiml.load(os.path.join(data, "v1_logistic.mpiml"))
    inputs = np.load(os.path.join(data, "v1_inputs.npz"))
    assert model.preprocessor_.identity
    assert_array_equal(model.predict_proba(inputs["X"]), inputs["logistic"])
    with pytest.raises(mpiml.DataError, match="saved before"):
        model.predict(np.where(np.arange(3) == 1, np.nan, inputs["X"][:2]))
