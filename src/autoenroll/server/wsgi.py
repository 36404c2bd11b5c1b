"""WSGI entry point for gunicorn (`autoenroll-server serve`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoenroll.server.settings")
application = get_wsgi_application()

from autoenroll.server.startup import prepare_kerberos  # noqa: E402 - needs the settings configured above

prepare_kerberos()  # a no-op in the workers of `serve`, which prepared it before forking
