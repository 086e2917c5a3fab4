"""Distributed dense matrices: C = A @ B with SUMMA or Cannon, or C = A + B.

The program is ``mpiml.cli.matmul`` (``mpiml matmul`` where mpiml is installed); this file runs it
from a checkout: ``mpiexec -n 4 python apps/matmul.py ...``, ``python apps/matmul.py --threads 4 ...``.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpiml.cli.matmul import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="matmul.py"))
