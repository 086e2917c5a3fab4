"""WSGI entry point: ``gunicorn -c serve/gunicorn.conf.py serve.wsgi:app``.

Importing this module loads every model of ``MPIML_MODELS``; with the Gunicorn
configuration's ``preload_app`` that happens once, in the master, before the
workers fork.
"""

from serve.app import create_app

app = create_app()
