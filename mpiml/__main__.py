"""``python -m mpiml COMMAND ...``: the ``mpiml`` command."""

import sys

from .cli.main import main

sys.exit(main())
