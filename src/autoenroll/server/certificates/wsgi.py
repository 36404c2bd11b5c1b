"""WSGI application of the plain-HTTP publication listener (`serve` runs it on AUTOENROLL_PUBLICATION_LISTEN).

The same Django project, but its URLconf is only the publication URLs: the admin pages and the
enrollment API, with their cookies and Kerberos tickets, are never reachable without TLS.
"""

import os

from django.core.handlers.wsgi import WSGIHandler

PUBLICATION_URLCONF = "autoenroll.server.certificates.urls"


class PublicationHandler(WSGIHandler):
    def get_response(self, request):
        request.urlconf = PUBLICATION_URLCONF
        return super().get_response(request)


def get_publication_application() -> PublicationHandler:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoenroll.server.settings")
    django.setup(set_prefix=False)
    return PublicationHandler()
