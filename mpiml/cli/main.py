"""The ``mpiml`` command: ``mpiml train``, ``mpiml matmul``, ``mpiml serve``, ``mpiml pi``.

    mpiexec -n 4 mpiml train gbdt --data table.csv --target label --out gbdt.mpiml
    mpiexec -n 4 mpiml matmul --n 4096 --check
    mpiml matmul --threads 4 --op add --shared
    mpiml serve models/

``mpiml COMMAND --help`` lists a command's flags. The same programs are ``apps/train.py``,
``apps/matmul.py`` and ``apps/pi.py`` in a checkout, and ``python -m mpiml COMMAND``.
"""

import sys

COMMANDS = {
    "train": ("mpiml.cli.train", "train a model on sharded data and save it"),
    "matmul": ("mpiml.cli.matmul", "multiply or add distributed matrices"),
    "serve": ("mpiml.cli.serve", "serve a directory of model files over HTTP (Gunicorn)"),
    "pi": ("mpiml.cli.pi", "estimate pi over ranks (a first SPMD program)"),
}


def _usage():
    lines = ["usage: mpiml COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "mpiml COMMAND --help shows a command's flags."]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from .. import __version__
        print(f"mpiml {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"mpiml: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    import importlib
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest, prog=f"mpiml {name}")


if __name__ == "__main__":
    sys.exit(main())
