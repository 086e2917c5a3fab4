"""The benchmark suite's code, driven by scripts/bench.py: common (paths, child processes,
progress, figures), machine (the machine description), plots (the PNG plots) and summary
(the summary table)."""
