"""Random forests: identity over ranks, backends and parallel modes, oob, accuracy against
scikit-learn, persistence, progress, bad parameters."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from test_tree import _data, _split, fingerprint, shard

import mpiml
from mpiml.errors import InvalidParameterError
from mpiml.models.forest import RandomForestClassifier, RandomForestRegressor

pytestmark = pytest.mark.timeout(120)


def _forest_body(comm, make, X, y, empty_rank):
    rows = shard(comm, len(X), empty_rank)
    model = make().fit(X[rows], y[rows], comm=comm)
    oob = getattr(model, "oob_score_", None)
    return fingerprint(model), model._stacked[0]["threshold"], oob


CASES = {
    "trees": lambda: RandomForestClassifier(n_estimators=7, max_depth=5, oob_score=True,
                                            random_state=3, parallel="trees"),
    "data": lambda: RandomForestClassifier(n_estimators=7, max_depth=5, oob_score=True,
                                           random_state=3, parallel="data"),
    "regressor-trees": lambda: RandomForestRegressor(n_estimators=5, max_leaf_nodes=8,
                                                     max_samples=0.7, random_state=1),
    "regressor-data": lambda: RandomForestRegressor(n_estimators=5, max_leaf_nodes=8,
                                                    max_samples=0.7, random_state=1,
                                                    parallel="data"),
}


@pytest.mark.threads(1, 2, 3, 4)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("layout", ["sorted-labels", "empty-rank"])
def test_forest_identical_for_any_rank_count_and_mode(spmd, case, layout):
    X, y = _data(n=211, sort_labels=layout == "sorted-labels")
    if case.startswith("regressor"):
        y = X[:, 0] - X[:, 2] ** 2 + 0.1 * y
    # the serial reference is grown in the other mode: both modes give the same forest
    other = case.replace("data", "trees") if "data" in case else case.replace("trees", "data")
    want = CASES[other]().fit(X, y)
    results = spmd(_forest_body, CASES[case], X, y, layout == "empty-rank")
    for got_hash, thresholds, oob in results:
        assert got_hash == fingerprint(want)
        assert_array_equal(thresholds, want._stacked[0]["threshold"])
        if not case.startswith("regressor"):
            assert oob == want.oob_score_


def test_oob_score_matches_a_hand_count():
    from mpiml.models.forest import bootstrap_counts
    X, y = _data(n=150, n_classes=2)
    model = RandomForestClassifier(n_estimators=9, max_depth=3, oob_score=True,
                                   random_state=5).fit(X, y)
    votes = np.zeros((len(X), 2))
    seen = np.zeros(len(X))
    for t, tree in enumerate(model.trees_):
        out = bootstrap_counts(5, t, len(X), len(X)) == 0
        votes[out] += tree.predict(X[out])
        seen[out] += 1
    has = seen > 0
    want = np.mean(np.argmax(votes[has], axis=1) == y[has])
    assert model.oob_score_ == pytest.approx(want)
    assert_allclose(model.oob_decision_function_[has], votes[has] / seen[has, None])


@pytest.mark.parametrize("name", ["breast_cancer", "wine"])
def test_classifier_accuracy_close_to_scikit_learn(name):
    from sklearn import datasets, ensemble
    Xtr, Xte, ytr, yte = _split(getattr(datasets, f"load_{name}"))
    ours = RandomForestClassifier(n_estimators=30, random_state=0).fit(Xtr, ytr).score(Xte, yte)
    ref = ensemble.RandomForestClassifier(n_estimators=30, random_state=0).fit(Xtr, ytr)
    assert ours >= ref.score(Xte, yte) - 0.04


def test_regressor_r2_close_to_scikit_learn():
    from sklearn import datasets, ensemble
    Xtr, Xte, ytr, yte = _split(datasets.load_diabetes)
    ours = RandomForestRegressor(n_estimators=30, max_depth=6, random_state=0).fit(Xtr, ytr)
    ref = ensemble.RandomForestRegressor(n_estimators=30, max_depth=6, random_state=0).fit(Xtr, ytr)
    assert ours.score(Xte, yte) >= ref.score(Xte, yte) - 0.05


@pytest.mark.parametrize("make", [lambda: RandomForestClassifier(n_estimators=4, max_depth=4),
                                  lambda: RandomForestRegressor(n_estimators=3, max_depth=4)])
def test_save_load_predict(tmp_path, make):
    X, y = _data()
    model = make().fit(X, y)
    path = tmp_path / "forest.mpiml"
    mpiml.save(model, path)
    for mmap in (False, True):
        loaded = mpiml.load(path, mmap=mmap)
        assert type(loaded) is type(model)
        assert loaded.n_estimators_ == model.n_estimators_
        assert_array_equal(loaded.predict(X), model.predict(X))
        assert_array_equal(loaded.feature_importances_, model.feature_importances_)
        if hasattr(model, "predict_proba"):
            assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_progress_reports_every_tree():
    X, y = _data(n=60)
    calls = []
    RandomForestClassifier(n_estimators=3, max_depth=2).fit(
        X, y, progress=lambda it, loss=None, **f: calls.append((it, f["trees"])))
    assert calls == [(1, "1/3"), (2, "2/3"), (3, "3/3")]


@pytest.mark.parametrize("params, name, value", [
    ({"n_estimators": -1}, "n_estimators", "-1"),
    ({"max_depth": 0}, "max_depth", "0"),
    ({"max_features": 1.5}, "max_features", "1.5"),
    ({"max_samples": 1.5}, "max_samples", "1.5"),
    ({"parallel": "feature"}, "parallel", "'feature'"),
    ({"bootstrap": "yes"}, "bootstrap", "'yes'"),
    ({"random_state": -4}, "random_state", "-4"),
    ({"class_weight": "heavy"}, "class_weight", "'heavy'"),
])
def test_invalid_parameters(params, name, value):
    X, y = _data(n=20)
    with pytest.raises(InvalidParameterError, match=name) as info:
        RandomForestClassifier(**params).fit(X, y)
    assert value in str(info.value)
    with pytest.raises(InvalidParameterError, match=name):   # no data needed (apps/train.py)
        RandomForestClassifier(**params)._check_params()


@pytest.mark.parametrize("params", [{"oob_score": True}, {"max_samples": 0.5}])
def test_bootstrap_only_parameters_need_bootstrap(params):
    X, y = _data(n=20)
    name = next(iter(params))
    with pytest.raises(InvalidParameterError, match=f"{name}.*bootstrap"):
        RandomForestClassifier(bootstrap=False, **params).fit(X, y)


def test_max_samples_numpy_fraction():
    X, y = _data(n=40)
    model = RandomForestRegressor(n_estimators=2, max_samples=np.float32(0.5), random_state=0)
    want = RandomForestRegressor(n_estimators=2, max_samples=0.5, random_state=0).fit(X, y)
    assert fingerprint(model.fit(X, y)) == fingerprint(want)


def test_regressor_criterion_and_unfitted():
    X, y = _data(n=40)
    RandomForestRegressor(n_estimators=2, criterion="squared_error").fit(X, y.astype(float))
    with pytest.raises(InvalidParameterError, match="criterion"):
        RandomForestRegressor(criterion="entropy").fit(X, y.astype(float))
    for make in (RandomForestClassifier, RandomForestRegressor):
        with pytest.raises(mpiml.MpimlError, match="not fitted"):
            make().predict(X)


@pytest.mark.parametrize("make", [RandomForestClassifier, RandomForestRegressor])
def test_oob_without_out_of_bag_rows(make):
    from mpiml.models.forest import bootstrap_counts
    X, y = _data(n=2)
    y = np.array([0, 1])
    assert (bootstrap_counts(0, 0, 2, 2) > 0).all()     # tree 0 of seed 0 draws both rows
    with pytest.raises(mpiml.MpimlError, match="out of bag"):
        make(n_estimators=1, oob_score=True, random_state=0).fit(X, y)



def _metrics_body(comm, classifier, regressor, X, y, y_reg):
    from mpiml.metrics import roc_auc
    rows = shard(comm, len(X), empty_rank=True)
    auc = roc_auc(y[rows], classifier.predict_proba(X[rows])[:, 1], comm)
    return (auc, classifier.score(X[rows], y[rows], comm=comm),
            regressor.score(X[rows], y_reg[rows], comm=comm))


def test_metrics_are_computed_over_all_rows(spmd):
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
    X, y = _data(n=157, n_classes=2)
    y_reg = X[:, 0] - X[:, 2] ** 2
    classifier = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
    regressor = RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0).fit(X, y_reg)
    want_auc = roc_auc_score(y, classifier.predict_proba(X)[:, 1])
    want_acc = accuracy_score(y, classifier.predict(X))
    want_r2 = r2_score(y_reg, regressor.predict(X))
    for auc, acc, r2 in spmd(_metrics_body, classifier, regressor, X, y, y_reg):
        assert auc == pytest.approx(want_auc, rel=1e-12)
        assert acc == want_acc
        assert r2 == pytest.approx(want_r2, rel=1e-12)


# -- apps/train.py tree|forest ---------------------------------------------------------------

def test_train_app_forest_progress_and_model(tmp_path):
    import json

    from util import ROOT, run_app
    out = tmp_path / "forest.mpiml"
    proc = run_app([ROOT / "apps" / "train.py", "forest", "--task", "regression", "--data",
                    "synthetic:regression?n_samples=300&n_features=5&seed=2", "--out", out,
                    "--n-estimators", "6", "--max-depth", "4", "--max-samples", "0.5", "--json"],
                   threads=2)
    assert proc.returncode == 0, proc.stderr
    last = [line for line in proc.stderr.splitlines() if "trees" in line][-1]
    assert "trees 6/6" in last and "eta" in last and "elapsed" in last
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["metric"] == "r2" and report["ranks"] == 2
    model = mpiml.load(out)
    assert isinstance(model, RandomForestRegressor) and model.n_estimators_ == 6


@pytest.mark.parametrize("args, message, launch", [
    (["tree", "--max-depth", "0"], "max_depth must be an integer >= 1 or None, got 0", "mpi"),
    (["forest", "--max-features", "1.5"], "max_features must be", "mpi"),
    (["forest", "--n-estimators", "-1"], "n_estimators must be an integer >= 1, got -1", "threads"),
])
def test_train_app_bad_parameter(tmp_path, args, message, launch):
    """One message for the whole job, a non-zero exit, an older model file left as it was."""
    from util import ROOT, run_app
    out = tmp_path / "model.mpiml"
    out.write_bytes(b"older model")
    proc = run_app([ROOT / "apps" / "train.py", *args, "--data",
                    "synthetic:classification?n_samples=60&n_features=4", "--out", out],
                   **({"ranks": 2} if launch == "mpi" else {"threads": 2}))
    assert proc.returncode != 0
    assert proc.stderr.count(message) == 1, proc.stderr
    assert out.read_bytes() == b"older model"
