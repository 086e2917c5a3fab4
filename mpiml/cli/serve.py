"""Serve every model file of a directory over HTTP with Gunicorn.

    mpiml serve models/                          # http://127.0.0.1:8000
    mpiml serve models/ --bind 0.0.0.0:8080 --workers 4
    mpiml serve models/ -- --access-logfile -    # after --: Gunicorn's own flags

Every ``*.mpiml`` file of the directory is served under its stem (``models/churn.mpiml``
is ``churn``). The flags set the environment variables that ``serve/gunicorn.conf.py``
reads (``MPIML_MODELS``, ``MPIML_BIND``, ``MPIML_WORKERS``, ``MPIML_THREADS``); the others
(``MPIML_MAX_ROWS``, ``MPIML_TIMEOUT``, ...) are read from the environment as they are.
The process becomes the Gunicorn master (``kill -HUP`` reloads changed model files).
"""

import argparse
import os
import sys
from pathlib import Path

from . import positive_int


def gunicorn_argv(extra=()):
    """The command line that starts the server: this Python's Gunicorn, the package's
    configuration file and the WSGI application ``serve.wsgi:app``."""
    import serve
    conf = Path(serve.__file__).resolve().with_name("gunicorn.conf.py")
    return [sys.executable, "-m", "gunicorn", "-c", str(conf), *extra, "serve.wsgi:app"]


def build_parser(prog="mpiml serve"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                     epilog="Arguments after -- go to Gunicorn unchanged.")
    parser.add_argument("models", nargs="?", metavar="MODELS_DIR",
                        help="directory of .mpiml files (default: $MPIML_MODELS, else ./models)")
    parser.add_argument("--bind", metavar="HOST:PORT",
                        help="address to listen on (default: $MPIML_BIND, else 127.0.0.1:8000)")
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="worker processes (default: $MPIML_WORKERS, else 2 x cores)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="threads per worker; 1: sync workers (default: $MPIML_THREADS, "
                             "else 2)")
    return parser


def main(argv=None, prog="mpiml serve"):
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    models = args.models or os.environ.get("MPIML_MODELS") or "models"
    if not Path(models).is_dir():
        parser.error(f"model directory {models!r} does not exist or is not a directory")
    env = dict(os.environ, MPIML_MODELS=str(Path(models).resolve()))
    for flag, var in (("bind", "MPIML_BIND"), ("workers", "MPIML_WORKERS"),
                      ("threads", "MPIML_THREADS")):
        if getattr(args, flag) is not None:
            env[var] = str(getattr(args, flag))
    command = gunicorn_argv(extra)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)


if __name__ == "__main__":
    sys.exit(main())
