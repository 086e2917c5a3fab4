"""trees: random forest and decision tree against scikit-learn, by scripts/bench_trees.py."""

from .common import (INSTALL_HINT, SCRIPTS, AreaSkipped, cores, fit_figures, last_json,
                     missing_modules)

__all__ = ["SIZES", "trees_steps", "run_trees"]

SIZES = {
    "tiny": {"forest_samples": 2000, "tree_samples": 4000, "trees": 5, "depth": 4},
    "quick": {"forest_samples": 20_000, "tree_samples": 50_000, "trees": 20, "depth": 8},
    "full": {"forest_samples": 200_000, "tree_samples": 1_000_000, "trees": 50, "depth": 10},
}


def trees_steps(params, ranks):
    return 2


def run_trees(ctx, params):
    if missing_modules(["sklearn"]):
        raise AreaSkipped(f"scikit-learn is not installed ({INSTALL_HINT})")
    rows = []
    common = ["--ranks", ",".join(map(str, ctx.ranks)), "--sklearn-jobs", cores(), "--json"]
    ctx.step(f"random forest, {params['forest_samples']} rows, {params['trees']} trees: "
             f"mpiml on {ctx.ranks} thread ranks, scikit-learn")
    rows += last_json(ctx.run(["python", SCRIPTS / "bench_trees.py", "--only", "forest",
                               "--forest-samples", params["forest_samples"],
                               "--trees", params["trees"], *common]))["results"]
    ctx.step(f"decision tree, {params['tree_samples']} rows, depth {params['depth']}: "
             f"mpiml on {ctx.ranks} thread ranks, scikit-learn")
    rows += last_json(ctx.run(["python", SCRIPTS / "bench_trees.py", "--only", "tree",
                               "--tree-samples", params["tree_samples"],
                               "--depth", params["depth"], *common]))["results"]
    figures = [f for row in rows for f in fit_figures(
        row, case=row["case"], library=row["library"],
        backend="threads" if row["library"] == "mpiml" else None, ranks=row.get("ranks"),
        threads=None if row["library"] == "mpiml" else cores())]
    return {"raw": rows, "figures": figures}
