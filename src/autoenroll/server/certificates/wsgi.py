"""WSGI application of the plain-HTTP publication listener: `serve` runs it on AUTOENROLL_PUBLICATION_LISTEN,
behind `rsgi.Application` (`rsgi.get_publication_application`), as it runs the site.

The same Django project, but its URLconf is only the publication URLs: the admin pages and the
enrollment API, with their cookies and Kerberos tickets, are never reachable without TLS.
"""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections

PUBLICATION_URLCONF = "autoenroll.server.certificates.urls"


class PublicationHandler(WSGIHandler):
    """OCSP requests, the publication listener's bulk (every mail client that checks a signature asks), are
    answered without Django's middleware: sessions, CSRF, sign-in lockout and static files are nothing a
    relying party uses, and they cost more than reading an answer signed ahead. Only the database
    connection's upkeep of Django's request signals is kept."""

    def __init__(self) -> None:
        super().__init__()
        from .urls import OCSP_PATH  # the app registry is ready now

        self.ocsp_path = OCSP_PATH

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/ocsp/") and path.isascii() and (match := self.ocsp_path.fullmatch(path)):
            return self._ocsp(environ, start_response, **match.groupdict())
        return super().__call__(environ, start_response)

    def get_response(self, request):
        request.urlconf = PUBLICATION_URLCONF
        return super().get_response(request)

    def _ocsp(self, environ, start_response, slug: str, encoded: str | None = None):
        from .views import ocsp_exchange

        close_old_connections()  # what request_started does for the database: drop a broken or old connection
        try:
            length = environ.get("CONTENT_LENGTH")
            response = ocsp_exchange(
                environ["REQUEST_METHOD"], slug, encoded, length, lambda: environ["wsgi.input"].read(int(length or 0))
            )
        finally:
            close_old_connections()
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return [response.content]


def get_publication_application() -> PublicationHandler:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoenroll.server.settings")
    django.setup(set_prefix=False)
    return PublicationHandler()
