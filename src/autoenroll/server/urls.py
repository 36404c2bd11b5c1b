"""URL map of the server."""

from django.contrib import admin
from django.urls import include, path

from .api.root import api
from .health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/", api.urls),
    path("admin/", admin.site.urls),
    path("", include("autoenroll.server.certificates.urls")),  # CRL, OCSP, CA downloads (also over HTTPS)
    path("", include("autoenroll.server.ces.urls")),  # MS-XCEP / MS-WSTEP for Windows and certmonger
    path("", include("autoenroll.server.web.urls")),
]
