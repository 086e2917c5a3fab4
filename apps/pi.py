"""Estimate pi by the midpoint rule with the intervals split over ranks.

The program is ``mpiml.cli.pi`` (``mpiml pi`` where mpiml is installed); this file runs it
from a checkout: ``mpiexec -n 4 python apps/pi.py ...``, ``python apps/pi.py --threads 4 ...``.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpiml.cli.pi import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="pi.py"))
