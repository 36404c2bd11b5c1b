"""URL map of the server. The admin pages are the `web` app's (the guide's screens); Django's own
admin site is not served: its Groups and Users would be a second, unrestricted way in."""

from django.urls import include, path

from .api.root import api
from .health import healthz
from .metrics import metrics_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/", api.urls),
    path("", include("autoenroll.server.certificates.urls")),  # CRL, OCSP, CA downloads (also over HTTPS)
    path("", include("autoenroll.server.ces.urls")),  # MS-XCEP / MS-WSTEP for Windows and certmonger
    path("", include("autoenroll.server.web.urls")),
]
