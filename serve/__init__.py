"""HTTP serving of mpiml model files: Flask app factory, WSGI entry point, Gunicorn config.

``MPIML_MODELS=DIR gunicorn -c serve/gunicorn.conf.py serve.wsgi:app``. Nothing in
this package imports the MPI bindings.
"""

from .app import Settings, create_app

__all__ = ["create_app", "Settings"]
