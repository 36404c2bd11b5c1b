from django.apps import AppConfig


class CertificatesConfig(AppConfig):
    name = "autoenroll.server.certificates"
    label = "certificates"
    verbose_name = "Certificates"
