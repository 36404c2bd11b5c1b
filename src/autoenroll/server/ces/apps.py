from django.apps import AppConfig


class CesConfig(AppConfig):
    """The CEP/CES web services (no models: templates live in code, request ids derive from the pipeline's)."""

    name = "autoenroll.server.ces"
    label = "ces"
    verbose_name = "Certificate enrollment web services (MS-XCEP / MS-WSTEP)"
