"""WSGI entry point for gunicorn (`autoenroll-server serve`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoenroll.server.settings")
application = get_wsgi_application()
