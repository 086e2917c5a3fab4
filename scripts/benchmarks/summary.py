"""The summary of a results file: the Markdown table of headline figures (summary.md) and
the lines printed at the end of a run."""

from pathlib import Path

from .common import _select, cores
from .machine import _machine_line

__all__ = ["summary_table", "write_summary", "summary_lines"]


def _one(area, name, **labels):
    found = _select(area, name, **labels)
    return found[0]["value"] if found else None


def _fmt(value, unit=""):
    if value is None:
        return "-"
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {unit}".rstrip()


def _ratio(ours, theirs, higher_is_better):
    if not ours or not theirs:
        return "-"
    return f"{(ours / theirs if higher_is_better else theirs / ours):.2f}x"


def _matmul_rows(area):
    rows = []
    sizes = sorted({f["n"] for f in _select(area, "gflops", impl="mpiml")})
    if not sizes:
        return rows
    n = sizes[-1]
    for algo in ("summa", "cannon"):
        ranks = sorted({f["ranks"] for f in _select(area, "gflops", algo=algo, n=n)})
        for p in [r for r in ranks if r > 1][-1:]:
            numpy = _one(area, "gflops", impl="numpy", n=n, threads=min(p, cores()))
            for backend in ("mpi", "threads"):
                ours = _one(area, "gflops", algo=algo, backend=backend, ranks=p, n=n)
                rows.append((f"matmul {algo}, n = {n}, {backend} P = {p}",
                             _fmt(ours, "GFLOP/s"), f"numpy `A @ B`: {_fmt(numpy, 'GFLOP/s')}",
                             _ratio(ours, numpy, True)))
    return rows


def _comm_rows(area):
    sizes = sorted({f["bytes"] for f in _select(area, "latency", op="Allreduce")})
    if not sizes:
        return []
    size = max([b for b in sizes if b <= 8 << 20] or sizes)
    raw = _one(area, "latency", op="Allreduce", impl="mpi4py", bytes=size)
    return [(f"Allreduce {size:,} bytes, {backend} backend",
             _fmt(_one(area, "latency", op="Allreduce", impl=backend, bytes=size), "us"),
             f"raw mpi4py: {_fmt(raw, 'us')}",
             _ratio(_one(area, "latency", op="Allreduce", impl=backend, bytes=size), raw, False))
            for backend in ("threads", "mpi")]


PEER_TITLES = {
    "linear": "logistic regression, L-BFGS to the peer's log-loss, {n_samples:,} rows",
    "forest": "random forest, {trees} trees, {forest_samples:,} rows",
    "tree": "decision tree, depth {depth}, {tree_samples:,} rows",
    "gbdt": "gradient boosting, {trees} trees of {leaves} leaves, {n_samples:,} rows",
}


def _peer_rows(area, case, time_name, quality_name, quality_label):
    labels = {"case": case} if case in ("forest", "tree") else {}
    figures = _select(area, time_name, **labels)
    ours = [f for f in figures if f.get("library") == "mpiml"]
    peers = [f for f in figures if f.get("library") != "mpiml"] or [None]
    if not ours:
        return []
    title = PEER_TITLES[case].format(**area.get("params", {}))
    top = max(f["ranks"] for f in ours)
    rows = []
    for f in (f for f in ours if f["ranks"] == top):
        quality = _one(area, quality_name, **labels, library="mpiml", backend=f["backend"],
                       ranks=top)
        for peer in peers:
            peer_text = "-" if peer is None else (
                f"{peer['library']}: {_fmt(peer['value'], 's')}, {quality_label} "
                f"{_one(area, quality_name, **labels, library=peer['library']):.5f}")
            rows.append((f"{title}; {f['backend']} P = {top}",
                         f"{_fmt(f['value'], 's')}, {quality_label} {quality:.5f}", peer_text,
                         _ratio(f["value"], peer and peer["value"], False)))
    return rows


def _serving_rows(area):
    rows = []
    for f in _select(area, "throughput"):
        labels = {k: f[k] for k in ("model", "concurrency", "rows", "workers")}
        p50, p99 = (_one(area, f"latency_{q}", **labels) for q in ("p50", "p99"))
        errors = _one(area, "errors", **labels)
        rows.append((f"serving {f['model']}, {f['rows']} row(s), {f['concurrency']} clients, "
                     f"{f['workers']} workers",
                     f"{_fmt(f['value'], 'req/s')}, p50 {_fmt(p50, 'ms')}, p99 "
                     f"{_fmt(p99, 'ms')}, {_fmt(errors)} errors", "-", "-"))
    return rows


def summary_table(results):
    """Markdown table of the headline figures in ``results``: mpiml, the peer, the ratio.

    A ratio above 1 means mpiml is faster (time, latency) or higher (GFLOP/s).
    """
    benchmarks = results.get("benchmarks", {})
    area = {name: entry for name, entry in benchmarks.items() if entry.get("status") == "ok"}
    rows = []
    if "matmul" in area:
        rows += _matmul_rows(area["matmul"])
    if "comm" in area:
        rows += _comm_rows(area["comm"])
    if "linear" in area:
        rows += _peer_rows(area["linear"], "linear", "time_to_target", "train_log_loss",
                           "log-loss")
    for case in ("forest", "tree"):
        if "trees" in area:
            rows += _peer_rows(area["trees"], case, "fit_time", "test_auc", "AUC")
    if "gbdt" in area:
        rows += _peer_rows(area["gbdt"], "gbdt", "fit_time", "test_auc", "AUC")
    if "serving" in area:
        rows += _serving_rows(area["serving"])
    lines = [f"Command: `{results.get('command', '?')}`; {_machine_line(results)}.", "",
             "| benchmark | mpiml | peer | mpiml vs peer |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "mpiml vs peer: above 1x, mpiml takes less time (or does more GFLOP/s); "
              "P: ranks."]
    return "\n".join(lines) + "\n"


def write_summary(results, out):
    path = Path(out) / "summary.md"
    path.write_text(summary_table(results))
    return path


def summary_lines(results):
    lines = []
    for name, area in results["benchmarks"].items():
        head = f"{name:8s} {area['status']:8s} {area.get('seconds', 0):7.1f} s"
        if area["status"] != "ok":
            head += f"  {area.get('reason', '').splitlines()[0] if area.get('reason') else ''}"
        lines.append(head)
        for message in area.get("skipped", []):
            lines.append(f"{'':8s} note: {message}")
    return lines
