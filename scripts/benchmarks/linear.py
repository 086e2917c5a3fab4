"""linear: logistic regression (L-BFGS) against scikit-learn, by scripts/bench_linear.py."""

from .common import (INSTALL_HINT, SCRIPTS, AreaSkipped, ChildFailed, figure, last_json,
                     missing_modules, mpiexec_path)

__all__ = ["SIZES", "linear_steps", "run_linear"]

SIZES = {
    "tiny": {"n_samples": 4000, "n_features": 28},
    "quick": {"n_samples": 100_000, "n_features": 28},
    "full": {"n_samples": 1_000_000, "n_features": 28},
}


def linear_steps(params, ranks):
    return 1


def run_linear(ctx, params):
    if missing_modules(["sklearn"]):
        raise AreaSkipped(f"scikit-learn is not installed ({INSTALL_HINT})")
    ctx.step(f"logistic regression, {params['n_samples']} x {params['n_features']}: "
             "scikit-learn, mpiml threads P=1,2 and mpiexec -n 2")
    args = ["python", SCRIPTS / "bench_linear.py", "--n-samples", params["n_samples"],
            "--n-features", params["n_features"]]
    if mpiexec_path() is None:
        args.append("--no-mpi")
        ctx.skip("mpiexec not found: MPI rows left out")
    rows = last_json(ctx.run(args))
    if not isinstance(rows, list):
        raise ChildFailed(args, 0, ["no JSON rows in the output of bench_linear.py"])
    figures = []
    for row in rows:
        labels = {"library": row["impl"], "backend": row["backend"], "ranks": row["ranks"],
                  "n_samples": params["n_samples"]}
        figures.append(figure("fit_time", row["fit_seconds"], "s", **labels))
        figures.append(figure("time_to_target", row["seconds_to_target"], "s", **labels))
        figures.append(figure("train_log_loss", row["log_loss"], "1", **labels))
        figures.append(figure("iterations", row["n_iter"], "1", **labels))
    return {"raw": rows, "figures": figures}
