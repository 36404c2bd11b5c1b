"""Publication URLs (PublicationURLs.for_ca): `crl/<ca>.crl`, `crl/<ca>/<partition>.crl`, `ocsp/<ca>`,
`ca/<ca>.crt` and downloads.

Included at the root of the server's URLconf, and the whole URLconf of the plain-HTTP
publication listener (see `wsgi.py` here).
"""

import re

from django.urls import path, re_path

from . import views

_SLUG = r"(?P<slug>[a-z0-9][a-z0-9_-]{0,62})"

#: The three OCSP routes below in one pattern, for the publication listener's path without Django's
#: request cycle (`wsgi.PublicationHandler`); what it does not match goes through these routes.
OCSP_PATH = re.compile(rf"/ocsp/{_SLUG}(?:/(?P<encoded>.+)?)?")

urlpatterns = [
    path("crl/<slug:slug>.crl", views.crl, name="crl"),
    re_path(rf"^crl/{_SLUG}/(?P<partition>[0-9]{{1,4}})\.crl$", views.crl, name="crl-partition"),
    path("ocsp/<slug:slug>", views.ocsp_view, name="ocsp"),
    path("ocsp/<slug:slug>/", views.ocsp_view, name="ocsp-post-slash"),
    re_path(rf"^ocsp/{_SLUG}/(?P<encoded>.+)$", views.ocsp_view, name="ocsp-get"),
    re_path(rf"^ca/{_SLUG}\.(?P<fmt>crt|cer|der|pem|p7b|p7c)$", views.ca_certificate, name="ca-certificate"),
]
