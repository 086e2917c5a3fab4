"""The benchmark suite's code, driven by scripts/bench.py and laid out like asv's benchmark
folders: one module per area (matmul, comm, linear, trees, gbdt, serving), each with its
sizes, its step count and its run, beside the modules they share: common (paths, child
processes, progress, figures), machine (the machine description), plots (the PNG plots)
and summary (the summary table)."""
