"""The PNG plots of a results file: one function per plot, each drawing what the results
have data for (None when they have none)."""

import math
import sys
from pathlib import Path

from .common import INSTALL_HINT, _select, missing_modules
from .machine import _machine_line

__all__ = ["PLOTS", "make_plots"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, source):
    fig.text(0.99, 0.005, source, ha="right", va="bottom", fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_matmul_gflops(results, out):
    area = results["benchmarks"].get("matmul")
    figs = _select(area, "gflops", impl="mpiml")
    if not figs:
        return None
    p = max(f["ranks"] for f in figs if f["algo"] == "summa") if any(
        f["algo"] == "summa" for f in figs) else max(f["ranks"] for f in figs)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    marks = {"summa": "o", "cannon": "s"}
    for algo in ("summa", "cannon"):
        for backend in ("mpi", "threads"):
            # Cannon runs on the next square rank count: the run paired with P ranks
            ranks = p if algo == "summa" else max(
                (f["ranks"] for f in figs if f["algo"] == algo), default=p)
            pts = sorted((f["n"], f["value"]) for f in figs if f["algo"] == algo
                         and f["backend"] == backend and f["ranks"] == ranks)
            if pts:
                ax.plot(*zip(*pts), marker=marks[algo], ls="-" if backend == "mpi" else "--",
                        label=f"mpiml {algo.upper() if algo == 'summa' else 'Cannon'}, "
                              f"{backend}, {ranks} ranks")
    threads = min(p, results.get("machine", {}).get("cores") or p)
    pts = sorted((f["n"], f["value"]) for f in _select(area, "gflops", impl="numpy")
                 if f.get("threads") == threads)
    if pts:
        ax.plot(*zip(*pts), marker="^", color="k", label=f"numpy A @ B, {threads} BLAS threads")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("matrix size n (n x n times n x n)")
    ax.set_ylabel("throughput (GFLOP/s)")
    ax.set_title("Distributed matrix multiply: GFLOP/s against n (float64)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "matmul_gflops.png", _machine_line(results))


def _scaling_plot(results, out, name, title, series):
    """``series``: list of (label, [(ranks, seconds)]) -> time and efficiency subplots."""
    series = [(label, sorted(pts)) for label, pts in series if pts]
    if not series:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    all_ranks = sorted({r for _, pts in series for r, _ in pts})
    for label, pts in series:
        ranks, seconds = zip(*pts)
        line, = left.plot(ranks, seconds, marker="o", label=label)
        base = dict(pts).get(1)
        if base:
            left.plot(ranks, [base / r for r in ranks], ls=":", color=line.get_color(), alpha=0.6)
            right.plot(ranks, [base / (s * r) for r, s in pts], marker="o",
                       color=line.get_color(), label=label)
    right.axhline(1.0, color="k", ls=":", lw=1, label="ideal")
    left.plot([], [], ls=":", color="0.4", label="ideal (time at 1 rank / P)")
    for ax in (left, right):
        ax.set_xlabel("ranks P")
        ax.set_xticks(all_ranks)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("time (s)")
    left.set_title("time against ranks")
    right.set_ylabel("parallel efficiency T(1) / (P T(P))")
    right.set_ylim(0, max(1.2, right.get_ylim()[1]))
    right.set_title("parallel efficiency")
    fig.suptitle(f"Strong scaling: {title}")
    return _save(fig, out / f"scaling_{name}.png", _machine_line(results))


def plot_scaling_matmul(results, out):
    area = results["benchmarks"].get("matmul")
    figs = _select(area, "time", impl="mpiml")
    if not figs:
        return None
    n = max(f["n"] for f in figs)
    series = []
    for algo in ("summa", "cannon"):
        for backend in ("mpi", "threads"):
            series.append((f"{algo}, {backend}", [(f["ranks"], f["value"]) for f in figs
                                                  if f["n"] == n and f["algo"] == algo
                                                  and f["backend"] == backend]))
    return _scaling_plot(results, out, "matmul", f"matrix multiply, n = {n}", series)


def plot_scaling_forest(results, out):
    figs = _select(results["benchmarks"].get("trees"), "fit_time", case="forest",
                   library="mpiml")
    return _scaling_plot(results, out, "forest", "random forest fit (mpiml, thread ranks)",
                         [("mpiml threads", [(f["ranks"], f["value"]) for f in figs])])


def plot_scaling_gbdt(results, out):
    figs = _select(results["benchmarks"].get("gbdt"), "fit_time", library="mpiml")
    series = [(f"mpiml {b}", [(f["ranks"], f["value"]) for f in figs if f.get("backend") == b])
              for b in ("threads", "mpi")]
    return _scaling_plot(results, out, "gbdt", "gradient boosting fit (mpiml)", series)


def _peer_label(f):
    if f["library"] == "mpiml":
        return f"mpiml {f.get('backend') or ''} P={f.get('ranks')}".replace("  ", " ")
    threads = f.get("threads")
    return f"{f['library']}" + (f" ({threads} thr)" if threads else "")


def _peers_plot(results, out, name, title, time_figs, quality_figs, quality_label):
    if not time_figs:
        return None
    plt = _pyplot()
    labels = [_peer_label(f) for f in time_figs]
    quality = {_peer_label(f): f["value"] for f in quality_figs}
    colors = ["tab:blue" if f["library"] == "mpiml" else "tab:orange" for f in time_figs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(labels) + 2.2))
    y = range(len(labels))
    bars = left.barh(y, [f["value"] for f in time_figs], color=colors)
    left.bar_label(bars, fmt="%.3g s", fontsize=7, padding=2)
    left.margins(x=0.15)
    left.set_yticks(list(y), labels)
    left.invert_yaxis()
    left.set_xlabel("training time (s)")
    left.set_title("training time (lower is better)")
    values = [quality.get(lb, math.nan) for lb in labels]
    bars = right.barh(y, values, color=colors)
    right.bar_label(bars, fmt="%.4f", fontsize=7, padding=2)
    right.set_yticks(list(y), labels)
    right.invert_yaxis()
    finite = [v for v in values if not math.isnan(v)]
    if finite:
        spread = max(finite) - min(finite)
        pad = max(spread, 0.01)
        right.set_xlim(min(finite) - pad, max(finite) + pad)
    from matplotlib.ticker import MaxNLocator
    right.xaxis.set_major_locator(MaxNLocator(5))
    right.set_xlabel(quality_label)
    right.set_title(quality_label.split(" (")[0])
    from matplotlib.patches import Patch
    left.legend(handles=[Patch(color="tab:blue", label="mpiml"),
                         Patch(color="tab:orange", label="peer")], fontsize=8, loc="lower right")
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title)
    return _save(fig, out / f"peers_{name}.png", _machine_line(results))


def plot_peers_gbdt(results, out):
    area = results["benchmarks"].get("gbdt")
    return _peers_plot(results, out, "gbdt", "Gradient boosting: mpiml against LightGBM, "
                       "XGBoost and scikit-learn", _select(area, "fit_time"),
                       _select(area, "test_auc"), "test AUC (higher is better)")


def plot_peers_forest(results, out):
    area = results["benchmarks"].get("trees")
    return _peers_plot(results, out, "forest", "Random forest: mpiml against scikit-learn",
                       _select(area, "fit_time", case="forest"),
                       _select(area, "test_auc", case="forest"), "test AUC (higher is better)")


def plot_peers_tree(results, out):
    area = results["benchmarks"].get("trees")
    return _peers_plot(results, out, "tree", "Decision tree: mpiml against scikit-learn",
                       _select(area, "fit_time", case="tree"),
                       _select(area, "test_auc", case="tree"), "test AUC (higher is better)")


def plot_peers_linear(results, out):
    area = results["benchmarks"].get("linear")
    return _peers_plot(results, out, "linear", "Logistic regression (L-BFGS): mpiml against "
                       "scikit-learn", _select(area, "fit_time"),
                       _select(area, "train_log_loss"), "training log-loss (lower is better)")


def plot_serving_latency(results, out):
    area = results["benchmarks"].get("serving") or {}
    histograms = {m: h for m, h in area.get("latency_histograms", {}).items() if h["counts"]}
    if not histograms:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, hist in histograms.items():
        edges, counts = hist["edges_ms"], hist["counts"]
        total = sum(counts) or 1
        line, = ax.step(edges, [counts[0] / total] + [c / total for c in counts], where="pre",
                        label=model)
        for q, ls in (("latency_p50", "--"), ("latency_p99", ":")):
            for f in _select(area, q, model=model):
                ax.axvline(f["value"], color=line.get_color(), ls=ls, lw=1)
    ax.plot([], [], color="0.4", ls="--", label="p50")
    ax.plot([], [], color="0.4", ls=":", label="p99")
    params = (results.get("params", {}).get("serving") or {})
    ax.set_xscale("log")
    ax.set_xlabel("request latency (ms, log scale)")
    ax.set_ylabel("fraction of requests per bin")
    ax.set_title(f"Serving latency: one row per request, {params.get('concurrency', '?')} "
                 "keep-alive clients")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "serving_latency.png", _machine_line(results))


def plot_comm(results, out):
    area = results["benchmarks"].get("comm")
    figs = _select(area, "bandwidth")
    if not figs:
        return None
    plt = _pyplot()
    ops = sorted({f["op"] for f in figs})
    fig, axes = plt.subplots(1, len(ops), figsize=(4 * len(ops), 4), squeeze=False)
    for ax, op in zip(axes[0], ops):
        for impl in ("threads", "mpi", "mpi4py"):
            pts = sorted((f["bytes"], f["value"]) for f in figs if f["op"] == op
                         and f["impl"] == impl)
            if pts:
                ax.plot(*zip(*pts), marker="o", label={"threads": "mpiml threads",
                                                       "mpi": "mpiml MPI",
                                                       "mpi4py": "raw mpi4py"}[impl])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("bandwidth (GB/s)")
        ax.set_title(op)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Communication on {figs[0].get('ranks', '?')} ranks")
    return _save(fig, out / "comm_bandwidth.png", _machine_line(results))


PLOTS = (plot_matmul_gflops, plot_scaling_matmul, plot_scaling_forest, plot_scaling_gbdt,
         plot_peers_gbdt, plot_peers_forest, plot_peers_tree, plot_peers_linear,
         plot_serving_latency, plot_comm)


def make_plots(results, out):
    """Write every plot that ``results`` has data for into ``out``; return the file names."""
    if missing_modules(["matplotlib"]):
        print(f"plots skipped: matplotlib is not installed ({INSTALL_HINT})", file=sys.stderr)
        return []
    out = Path(out)
    written = []
    for plot in PLOTS:
        path = plot(results, out)
        if path is not None:
            written.append(Path(path).name)
    return written
