"""Linear models and MLPs on tables: categories, missing values, the stage in the model file.

Every fit on P ranks (one of them empty from P=3 on, one with a column all missing from
P=4 on) gives the same bits as on one rank; the stage is scikit-learn's
``OneHotEncoder(handle_unknown="ignore")`` / ``SimpleImputer(add_indicator=True)`` /
``StandardScaler`` and the least-squares fit is the same problem as theirs.
"""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression as SkLinear
from sklearn.linear_model import LogisticRegression as SkLogistic
from sklearn.neural_network import MLPClassifier as SkMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import mpiml
from mpiml.comm import self_comm
from mpiml.comm.partition import block_range
from mpiml.data.tables import Table
from mpiml.errors import DataError
from mpiml.models.linear import LinearRegression, LogisticRegression
from mpiml.models.mlp import MLPClassifier, MLPRegressor

N_TRAIN, N_TEST = 239, 160
CATEGORICAL, NUMERIC = ["color", "shop"], ["size", "temp", "x"]


def _table(n, seed, unseen=False):
    """A DataFrame of text categories and numbers with NaN / None / pd.NA, and targets."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], n).astype(object)
    shop = rng.choice(["north", "south", "east", "west"], n).astype(object)
    size, temp, x = rng.normal(3, 2, n), rng.normal(20, 5, n), rng.normal(0, 1, n)
    y = (1.5 * (color == "red") - 1.0 * (color == "blue") + 0.8 * (shop == "east")
         + 0.6 * size - 0.2 * temp + 1.2 * x + rng.normal(0, 0.5, n))
    color[::11] = None
    color[5::13] = np.nan
    shop[3::17] = pd.NA
    if unseen:
        color[1::7] = "black"  # not in any rank's training rows: all zeros
    else:
        color[:4] = "violet"  # in rank 0's rows only, for any rank count
    size[2::9] = np.nan
    temp[-90:] = np.nan  # every row of the last rank from P=4 on
    df = pd.DataFrame({"color": color, "size": size, "shop": shop, "temp": temp, "x": x,
                       "void": np.full(n, np.nan)})  # missing everywhere: imputed by 0
    return df, y, np.where(y > np.median(y), "high", "low")


TRAIN, Y_TRAIN, C_TRAIN = _table(N_TRAIN, 0)
TEST, Y_TEST, C_TEST = _table(N_TEST, 1, unseen=True)
W_TRAIN = np.random.default_rng(2).uniform(0.2, 3.0, N_TRAIN)


def _rows(comm):
    """Uneven contiguous rows; from 3 ranks on, rank 1 holds none."""
    if comm.size < 3:
        return block_range(N_TRAIN, comm.size, comm.rank)
    if comm.rank == 1:
        return 0, 0
    r = comm.rank - (comm.rank > 1)
    return block_range(N_TRAIN, comm.size - 1, r)


MODELS = [
    (LinearRegression, {}, Y_TRAIN),
    (LinearRegression, {"solver": "lbfgs", "tol": 1e-10, "max_iter": 300}, Y_TRAIN),
    (LogisticRegression, {"tol": 1e-10, "max_iter": 300}, C_TRAIN),
    (MLPClassifier, {"hidden_layer_sizes": (6,), "max_iter": 25, "batch_size": N_TRAIN,
                     "learning_rate_init": 0.05, "random_state": 0}, C_TRAIN),
    (MLPRegressor, {"hidden_layer_sizes": (5,), "max_iter": 25, "batch_size": N_TRAIN,
                    "learning_rate_init": 0.05, "random_state": 0}, Y_TRAIN),
]
IDS = ["linear-normal", "linear-lbfgs", "logistic", "mlp-classifier", "mlp-regressor"]


def _learned(model):
    if hasattr(model, "coefs_"):
        return list(model.coefs_) + list(model.intercepts_)
    return [model.coef_, np.asarray(model.intercept_)]


def _fit_rows(comm, cls, params, y, weighted):
    s, e = _rows(comm)
    model = cls(**params).fit(TRAIN.iloc[s:e], y[s:e], comm=comm,
                              sample_weight=W_TRAIN[s:e] if weighted else None)
    out = model.predict_proba(TEST) if hasattr(model, "predict_proba") else model.predict(TEST)
    return (_learned(model) + [model.mean_, model.scale_, model.preprocessor_.impute, out],
            list(model.expanded_feature_names_))


@pytest.mark.threads(1, 2, 3, 4)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("cls, params, y", MODELS, ids=IDS)
def test_any_rank_count_gives_the_same_bits(spmd, cls, params, y, weighted):
    ref, names = _fit_rows(self_comm(), cls, params, y, weighted)
    assert names[:3] == ["color=blue", "color=green", "color=red"]
    assert "color=violet" in names and "temp_missing" in names and "void_missing" in names
    assert "x_missing" not in names and not any(n.startswith("shop_") for n in names)
    for arrays, got_names in spmd(_fit_rows, cls, params, y, weighted):
        assert got_names == names
        for got, want in zip(arrays, ref):
            assert_array_equal(got, want)


def _sk_frame(df):
    """The frame as scikit-learn's encoders take it: one missing marker in text columns,
    no column missing everywhere (SimpleImputer would drop it)."""
    out = df.drop(columns="void").copy()
    for c in CATEGORICAL:
        out[c] = out[c].map(lambda v: "__missing__" if pd.isna(v) else v)
    return out


def _sk_columns(categories="auto", handle_unknown="ignore"):
    return ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown=handle_unknown, categories=categories), CATEGORICAL),
        ("num", SimpleImputer(add_indicator=True), NUMERIC)])


def test_least_squares_equals_scikit_learn():
    ours = LinearRegression().fit(TRAIN, Y_TRAIN)
    # the same columns as ours: a missing category is one of none (all zeros)
    vocab = [list(f.categories) for f in ours.feature_schema_.features if f.is_categorical]
    sk = make_pipeline(_sk_columns(vocab), StandardScaler(), SkLinear())
    sk.fit(_sk_frame(TRAIN), Y_TRAIN)
    assert_allclose(ours.predict(TEST), sk.predict(_sk_frame(TEST)), rtol=1e-9, atol=1e-9)
    columns, scaler, linear = sk.steps[0][1], sk.steps[1][1], sk.steps[2][1]
    sk_coef = dict(zip(columns.get_feature_names_out(), linear.coef_ / scaler.scale_))
    for name, coef in zip(ours.expanded_feature_names_, ours.coef_):
        if name.startswith("void"):
            assert abs(coef) < 1e-12  # a constant column
            continue
        feature, _, category = name.partition("=")
        key = (f"cat__{feature}_{category}" if category else
               f"num__missingindicator_{name[:-len('_missing')]}" if name.endswith("_missing")
               else f"num__{name}")
        assert_allclose(coef, sk_coef[key], rtol=1e-8, atol=1e-10, err_msg=name)


_MLP_PARAMS = {"hidden_layer_sizes": (8,), "max_iter": 50, "alpha": 1.0,
               "learning_rate_init": 0.01, "random_state": 0}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cls, sk_model, params", [
    (LogisticRegression, SkLogistic(max_iter=1000), {}),
    (MLPClassifier, SkMLP(**_MLP_PARAMS), _MLP_PARAMS),
], ids=["logistic", "mlp"])
def test_held_out_accuracy_near_scikit_learn(cls, sk_model, params):
    sk = make_pipeline(_sk_columns(), StandardScaler(), sk_model)
    sk_acc = sk.fit(_sk_frame(TRAIN), C_TRAIN).score(_sk_frame(TEST), C_TEST)
    acc = cls(**params).fit(TRAIN, C_TRAIN).score(TEST, C_TEST)
    assert sk_acc > 0.8
    assert acc >= sk_acc - 0.03, (acc, sk_acc)


@pytest.mark.parametrize("cls, params, y", MODELS, ids=IDS)
def test_save_load_round_trip_on_a_dataframe(tmp_path, cls, params, y):
    model = cls(**params).fit(TRAIN, y, sample_weight=W_TRAIN)
    mpiml.save(model, tmp_path / "m.mpiml")
    loaded = mpiml.load(tmp_path / "m.mpiml")
    assert_array_equal(loaded.predict(TEST), model.predict(TEST))
    if hasattr(model, "predict_proba"):
        assert_array_equal(loaded.predict_proba(TEST), model.predict_proba(TEST))
    assert_array_equal(loaded.expanded_feature_names_, model.expanded_feature_names_)
    assert loaded.feature_schema_ == model.feature_schema_
    assert_array_equal(loaded.feature_names_in_, TRAIN.columns)


def test_array_dataframe_and_table_are_the_same_model():
    # NaN in an array is a missing value; the text columns as integer codes
    codes = {c: {v: float(i) for i, v in enumerate(["blue", "green", "red", "violet"]
                                                   if c == "color" else
                                                   ["east", "north", "south", "west"])}
             for c in CATEGORICAL}

    def as_codes(df):
        return np.column_stack([
            df[c].map(lambda v, c=c: codes[c].get(v, np.nan)).to_numpy(np.float64)
            if c in codes else df[c].to_numpy(np.float64) for c in df.columns])
    table = Table({c: TRAIN[c].to_numpy() for c in TRAIN.columns})
    by_frame = LogisticRegression().fit(TRAIN, C_TRAIN)
    by_table = LogisticRegression().fit(table, C_TRAIN)
    by_array = LogisticRegression(categorical_features=[0, 2]).fit(as_codes(TRAIN), C_TRAIN)
    assert_array_equal(by_table.coef_, by_frame.coef_)
    assert_array_equal(by_array.coef_, by_frame.coef_)
    test = TEST.assign(color=TEST["color"].where(TEST["color"] != "black", None))
    assert_array_equal(by_array.predict_proba(as_codes(test)), by_frame.predict_proba(TEST))


def test_numeric_data_without_missing_values_is_not_expanded():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 3))
    y = X @ [1.0, 2.0, -1.0] + 0.5
    model = LinearRegression().fit(X, y, feature_names=["a", "b", "c"])
    assert model.preprocessor_.identity
    assert_array_equal(model.expanded_feature_names_, ["a", "b", "c"])
    assert model.coef_.shape == (3,)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    assert_array_equal(model.predict(frame), model.predict(X))
    # a value missing only at prediction is imputed by the training mean
    holed = X[:2].copy()
    holed[0, 1] = np.nan
    want = X[:2].copy()
    want[0, 1] = X[:, 1].mean()
    assert_allclose(model.predict(holed), model.predict(want), rtol=1e-12)


def test_imputation_is_the_weighted_mean_of_present_values():
    model = MLPRegressor(max_iter=1).fit(TRAIN, Y_TRAIN, sample_weight=W_TRAIN)
    impute = dict(zip(TRAIN.columns, model.preprocessor_.impute))
    for c in ["size", "temp", "x"]:
        present = TRAIN[c].notna().to_numpy()
        assert_allclose(impute[c], np.average(TRAIN[c][present], weights=W_TRAIN[present]),
                        rtol=1e-13)
    assert impute["void"] == 0.0


def test_text_in_a_numeric_column_names_row_and_feature():
    model = LinearRegression().fit(TRAIN, Y_TRAIN)
    bad = TEST.head(6).astype({"size": object})
    bad.iloc[4, bad.columns.get_loc("size")] = "large"
    with pytest.raises(DataError, match=r"row 4, feature 'size'.*'large'"):
        model.predict(bad)
    with pytest.raises(DataError, match="infinity"):
        model.predict(TEST.head(3).assign(x=np.inf))
