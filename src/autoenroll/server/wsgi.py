"""WSGI entry point: `serve` runs it in each Granian worker behind `rsgi.Application`; a server started by
hand (Granian, gunicorn, mod_wsgi) takes `application`."""

import os


def get_application():
    from django.core.wsgi import get_wsgi_application

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoenroll.server.settings")
    handler = get_wsgi_application()

    from autoenroll.server.startup import prepare_kerberos

    prepare_kerberos()  # a no-op in the workers of `serve`, which prepared it before starting them
    return handler


def __getattr__(name: str):
    """`application`, built on first use and kept: Django's handler is made once per process."""
    if name == "application":
        globals()["application"] = handler = get_application()
        return handler
    raise AttributeError(name)
