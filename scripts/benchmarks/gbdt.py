"""gbdt: gradient boosting against LightGBM, XGBoost, scikit-learn, by scripts/bench_gbdt.py."""

from .common import (INSTALL_HINT, SCRIPTS, AreaSkipped, cores, fit_figures, last_json,
                     missing_modules, mpiexec_path)

__all__ = ["GBDT_PEERS", "SIZES", "gbdt_steps", "run_gbdt"]

GBDT_PEERS = ("lightgbm", "xgboost", "sklearn")
SIZES = {
    "tiny": {"n_samples": 2000, "n_test": 500, "trees": 5, "leaves": 15,
             "peers": ["lightgbm", "xgboost"]},
    "quick": {"n_samples": 50_000, "n_test": 10_000, "trees": 30, "leaves": 31,
              "peers": list(GBDT_PEERS)},
    "full": {"n_samples": 1_000_000, "n_test": 200_000, "trees": 100, "leaves": 31,
             "peers": list(GBDT_PEERS)},
}


def gbdt_steps(params, ranks):
    return 1 + len(params["peers"])


def run_gbdt(ctx, params):
    if missing_modules(["sklearn"]):
        raise AreaSkipped(f"scikit-learn is not installed; bench_gbdt.py needs it for the "
                          f"AUC ({INSTALL_HINT})")
    common = ["python", SCRIPTS / "bench_gbdt.py", "--n-samples", params["n_samples"],
              "--n-test", params["n_test"], "--trees", params["trees"],
              "--leaves", params["leaves"], "--threads", cores(), "--json"]
    backend = "both" if mpiexec_path() else "threads"
    ctx.step(f"mpiml, {params['n_samples']} rows, {params['trees']} trees of "
             f"{params['leaves']} leaves, ranks {ctx.ranks} ({backend})")
    rows = last_json(ctx.run([*common, "--only", "mpiml", "--backend", backend,
                              "--ranks", ",".join(map(str, ctx.ranks))]))["results"]
    for peer in params["peers"]:
        ctx.step(f"{peer}, {cores()} threads")
        if missing_modules([peer]):
            ctx.skip(f"{peer} skipped: not installed ({INSTALL_HINT})")
            continue
        lines = ctx.run([*common, "--only", peer])
        for line in lines:
            if "skipped" in line:
                ctx.skip(line.strip())
        rows += last_json(lines)["results"]
    figures = [f for row in rows for f in fit_figures(
        row, library=row["library"], backend=row.get("backend"), ranks=row.get("ranks"),
        threads=row.get("threads"), n_samples=params["n_samples"], trees=params["trees"])]
    return {"raw": rows, "figures": figures}
