"""Train a model on sharded data and save it as an mpiml model file.

    mpiml train logistic --data train.csv --target label --out model.mpiml
    mpiml train gbdt --data parts/ --target churn --categorical zip --out gbdt.mpiml
    mpiml train mlp --data "synthetic:classification?n_samples=100000&n_features=28" \\
        --hidden 64,32 --max-iter 20 --out mlp.mpiml --threads 2
    mpiexec -n 4 mpiml train linear --data data.npz --solver lbfgs --out lin.mpiml --json

MODEL is one of linear, logistic, mlp, tree, forest, gbdt (the estimators listed in
``mpiml.models.ESTIMATORS``). Model flags are generated from the estimator's parameters
(``--max-iter``, ``--solver``, ``--alpha``, ``--hidden-layer-sizes 64,32`` alias ``--hidden``,
...); ``MODEL --help`` lists them. ``--categorical A,B`` and ``--numeric C`` force CSV and
Parquet column kinds. Every rank reads only its rows; rank 0 prints the data's
categorical columns (with their number of categories) and missing cells per column and
progress (at most once a second, on stderr), a summary, and with ``--json`` one JSON
object on the last line of stdout. On bad input every rank exits non-zero, rank 0 prints
one message, and no model file is written (an older file of the same name is left as it
was).
"""

import argparse
import inspect
import json
import os
import sys
import time

import numpy as np

from mpiml import MAX
from mpiml.checks import global_classes
from mpiml.cli import add_launch_arguments, fraction, launch, non_negative_int
from mpiml.comm import agree, collective_error
from mpiml.errors import DataError, ModelFileError, MpimlError
from mpiml.models import ESTIMATORS, estimator_class
from mpiml.progress import ProgressReporter
from mpiml.run import under_mpiexec

MODELS = ("linear", "logistic", "mlp", "tree", "forest", "gbdt")
TASKS = ("classification", "regression")
METRICS = {"classification": "accuracy", "regression": "r2"}
ALIASES = {"hidden_layer_sizes": ["--hidden"]}
MAX_INFERRED_CLASSES = 50


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line on stderr (rank 0 only under mpiexec) and exit status 2."""

    def error(self, message):
        _fail(message)


def _rank():
    for var in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        if var in os.environ and under_mpiexec():
            return int(os.environ[var])
    return 0


def _fail(message, status=2):
    if _rank() == 0:
        sys.stdout.flush()
        print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


# -- model flags from the estimator signature ---------------------------------------------

def _bool(text):
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


def _int_tuple(text):
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}")
    return values


def _auto(text):
    """A flag whose default is None: int, float, none, or the text itself."""
    if text.lower() == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _flag_type(default):
    if isinstance(default, bool):
        return _bool, "{true,false}"
    if isinstance(default, int):
        return int, "INT"
    if isinstance(default, float):
        return float, "FLOAT"
    if isinstance(default, tuple):
        return _int_tuple, "N[,N...]"
    if isinstance(default, str):
        return str, "STR"
    return _auto, "VALUE"


def model_parameters(classes):
    """{name: default} of the keyword parameters of the estimator classes (union)."""
    params = {}
    for cls in classes:
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                params.setdefault(p.name, p.default)
    return params


def add_model_flags(parser, params):
    group = parser.add_argument_group("model parameters")
    taken = {opt for action in parser._actions for opt in action.option_strings}
    for name, default in params.items():
        flag = "--" + name.replace("_", "-")
        if flag in taken:
            continue
        kind, metavar = _flag_type(default)
        flags = [flag] + [a for a in ALIASES.get(name, []) if a not in taken]
        group.add_argument(*flags, dest="model__" + name, type=kind, metavar=metavar,
                           default=argparse.SUPPRESS, help=f"default: {default!r}")


def available_classes(model):
    """{task: class} for MODEL, or exit with a clear message when it is not available."""
    entry = ESTIMATORS.get(model)
    if not entry:
        _fail(f"model {model!r} is not available in this installation "
              f"(available: {', '.join(m for m in MODELS if m in ESTIMATORS)})")
    classes = {}
    for task in entry:
        try:
            classes[task] = estimator_class(model, task)
        except (ImportError, AttributeError) as exc:
            _fail(f"model {model!r} ({task}) is not available in this installation: {exc}")
    return classes


def build_parser(model=None, params=None, prog="mpiml train"):
    parser = _Parser(prog=prog, description="Train a model on sharded data "
                     "(every rank reads only its rows) and save it as an mpiml model file.")
    parser.add_argument("model", choices=MODELS, metavar="MODEL",
                        help=f"one of {', '.join(MODELS)}")
    parser.add_argument("--data", required=True, metavar="SOURCE",
                        help="CSV with a header, .parquet or a directory of Parquet parts, "
                             ".npz with X and y, .npy, or "
                             "synthetic:classification?n_samples=N&n_features=D&seed=S "
                             "(or synthetic:regression?...)")
    parser.add_argument("--out", required=True, metavar="FILE", help="model file to write")
    parser.add_argument("--target", metavar="COLUMN",
                        help="target column (CSV or Parquet name, .npy index); default the "
                             "last column")
    parser.add_argument("--categorical", metavar="A,B",
                        help="CSV/Parquet columns that are categorical whatever their cells "
                             "(numeric codes such as zip codes keep their text)")
    parser.add_argument("--numeric", metavar="C,D",
                        help="CSV/Parquet columns that must be numeric (a text cell is an error)")
    parser.add_argument("--task", choices=TASKS,
                        help="default: the model's only task, else inferred from the target")
    parser.add_argument("--test-fraction", type=fraction, default=0.2, metavar="F",
                        help="rows held out for the test score, chosen by global row index "
                             "(default 0.2; 0 trains on every row)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                        help="seed of the split and of the model's random_state (default 0)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on the last line of stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--resume", metavar="FILE", help="continue a saved model (gbdt)")
    parser.add_argument("--checkpoint-every", type=non_negative_int, metavar="K",
                        help="save the model every K iterations to --out (gbdt)")
    add_launch_arguments(parser)
    if params:
        add_model_flags(parser, params)
    return parser


# -- the SPMD program ---------------------------------------------------------------------

def _check_paths(comm, args):
    """Collective: the --out directory exists (checked on rank 0, the writer)."""
    message = None
    if comm.rank == 0:
        directory = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(directory):
            message = f"--out directory {directory!r} does not exist"
        elif os.path.isdir(args.out):
            message = f"--out {args.out!r} is a directory"
        elif args.resume is not None and not os.path.isfile(args.resume):
            message = f"--resume file {args.resume!r} does not exist"
    message = comm.bcast(message, root=0)
    if message:
        raise collective_error(MpimlError(message))


def _infer_task(y, comm, classes):
    """Collective: classification for text or few whole-number labels, else regression."""
    if len(classes) == 1:
        return next(iter(classes))
    if y.dtype.kind in "USO":
        return "classification"
    whole = bool(np.all(y == np.round(y))) if y.size else True
    if all(comm.allgather(whole)) and global_classes(y, comm).size <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def _fit_options(cls, args, out):
    fit_params = inspect.signature(cls.fit).parameters
    options = {}
    if args.resume is not None or args.checkpoint_every is not None:
        if "resume_from" not in fit_params or "checkpoint_every" not in fit_params:
            raise collective_error(MpimlError(
                f"--resume and --checkpoint-every are not supported by {cls.__name__}"))
        options.update(checkpoint_every=args.checkpoint_every, checkpoint_path=out,
                       resume_from=args.resume)
    return options, fit_params


def run_training(comm, args, classes, params):
    _check_paths(comm, args)
    task = args.task
    if task is not None and task not in classes:
        raise collective_error(MpimlError(
            f"model {args.model!r} does not do {task} (it does {', '.join(classes)})"))
    if task is None and len(classes) == 1:
        task = next(iter(classes))
    from mpiml.data import describe, load_data, take_rows, train_test_split
    data = load_data(args.data, comm, target=args.target, task=task,
                     categorical=args.categorical, numeric=args.numeric)
    if comm.rank == 0 and not args.quiet:
        print(f"data: {describe(data.summary)}", file=sys.stderr, flush=True)
    if task is None:
        task = _infer_task(data.y, comm, classes)
    if task == "classification" and data.y.dtype.kind == "f":
        whole = bool(np.all(data.y == np.round(data.y)))
        if all(comm.allgather(whole)):  # labels 0.0/1.0 read from a file become 0/1
            data.y = data.y.astype(np.int64)
    if task == "regression" and data.y.dtype.kind not in "biuf":
        raise collective_error(DataError(f"the regression target {data.target!r} is not numeric"))
    cls = classes[task]
    accepted = set(model_parameters([cls]))
    unknown = sorted(set(params) - accepted)
    error = None
    if unknown:
        error = MpimlError(f"{cls.__name__} has no parameter(s) "
                           f"{', '.join('--' + u.replace('_', '-') for u in unknown)}")
    kwargs = dict(params)
    if "random_state" in accepted and "random_state" not in kwargs:
        kwargs["random_state"] = args.seed
    try:
        estimator = cls(**kwargs)
        if error is None and hasattr(estimator, "_check_params"):
            estimator._check_params()
    except (MpimlError, ValueError, TypeError) as exc:
        error = error or MpimlError(str(exc))
    agree(comm, error)
    options, fit_params = _fit_options(cls, args, args.out)
    if "progress" in fit_params and not args.quiet:
        options["progress"] = ProgressReporter(comm, label=args.model)
    if "feature_names" in fit_params:
        options["feature_names"] = data.feature_names

    if args.test_fraction > 0:
        X_train, y_train, X_test, y_test = train_test_split(data, args.test_fraction, args.seed)
    else:
        X_train, y_train = data.X, data.y
        X_test, y_test = take_rows(data.X, slice(0)), data.y[:0]
    n_test = sum(comm.allgather(len(y_test)))
    start = time.perf_counter()
    estimator.fit(X_train, y_train, comm=comm, **options)
    seconds = comm.allreduce(time.perf_counter() - start, op=MAX)
    if "progress" in options:
        options["progress"].done()
    train_score = estimator.score(X_train, y_train, comm=comm)
    test_score = estimator.score(X_test, y_test, comm=comm) if n_test else None
    metric = METRICS[task]
    try:
        import mpiml
        digest = mpiml.save(estimator, args.out, comm, metric=metric, train_score=train_score,
                            test_score=test_score, data=args.data, seconds=seconds)
    except ModelFileError as exc:
        raise collective_error(exc) from None
    if comm.rank != 0:
        return None
    return {"model": args.model, "task": task, "backend": comm.backend, "ranks": comm.size,
            "rows": data.n_rows, "features": data.n_features, "seconds": seconds,
            "metric": metric, "train_score": train_score, "test_score": test_score,
            "out": args.out, "sha256": digest}


def summary(report):
    test = "n/a" if report["test_score"] is None else f"{report['test_score']:.4f}"
    return (f"{report['model']} ({report['task']}): {report['rows']} rows x "
            f"{report['features']} features on {report['ranks']} rank(s) "
            f"({report['backend']}), trained in {report['seconds']:.2f} s\n"
            f"{report['metric']}: train {report['train_score']:.4f}  test {test}\n"
            f"saved {report['out']} (sha256 {report['sha256'][:16]}...)")


def main(argv=None, prog="mpiml train"):
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if a in MODELS), None)
    params, classes = None, {}
    if first is not None:
        classes = available_classes(first)
        params = model_parameters(classes.values())
    args = build_parser(first, params, prog).parse_args(argv)
    model_params = {k[len("model__"):]: v for k, v in vars(args).items()
                    if k.startswith("model__")}
    report = launch(run_training, args, args, classes, model_params)
    if report is None:
        return 0
    if not args.quiet or not args.json:
        print(summary(report), flush=True)
    if args.json:
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
