"""Train a model on sharded data and save it as an mpiml model file.

The program is ``mpiml.cli.train`` (``mpiml train`` where mpiml is installed); this file runs it
from a checkout: ``mpiexec -n 4 python apps/train.py ...``, ``python apps/train.py --threads 4 ...``.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpiml.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="train.py"))
