"""mpiml estimators.

:data:`ESTIMATORS` maps the model names of ``apps/train.py`` to ``{task: "module:Class"}``
(imported only when used). A new model needs only its entry here (and its model type
in :data:`mpiml.io.MODEL_TYPES`); the training app generates its flags from the
estimator's ``__init__`` signature.
"""

__all__ = ["ESTIMATORS", "estimator_class"]

import importlib

ESTIMATORS = {
    "linear": {"regression": "mpiml.models.linear:LinearRegression"},
    "logistic": {"classification": "mpiml.models.linear:LogisticRegression"},
    "mlp": {"classification": "mpiml.models.mlp:MLPClassifier",
            "regression": "mpiml.models.mlp:MLPRegressor"},
    "gbdt": {"classification": "mpiml.models.gbdt:GradientBoostingClassifier",
             "regression": "mpiml.models.gbdt:GradientBoostingRegressor"},
    "tree": {"classification": "mpiml.models.tree:DecisionTreeClassifier",
             "regression": "mpiml.models.tree:DecisionTreeRegressor"},
    "forest": {"classification": "mpiml.models.forest:RandomForestClassifier",
               "regression": "mpiml.models.forest:RandomForestRegressor"},
}


def estimator_class(model, task):
    """Import and return the estimator class registered for ``model`` and ``task``.

    Raises ``KeyError`` when no entry exists and ``ImportError``/``AttributeError``
    when the entry cannot be imported.
    """
    module, _, name = ESTIMATORS[model][task].partition(":")
    return getattr(importlib.import_module(module), name)
